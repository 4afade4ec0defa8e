use oxrmi::RemoteError;

#[oxrmi::remote(nme = "my.Counter")]
pub trait Counter {
    async fn get(&self) -> Result<i64, RemoteError>;
}

fn main() {}
