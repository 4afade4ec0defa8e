use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Factory {
    async fn create(name: String) -> Result<u64, RemoteError>;
}

fn main() {}
