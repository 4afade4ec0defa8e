use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Counter {
    async fn add(&self, __n: i64) -> Result<i64, RemoteError>;
}

fn main() {}
