use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Store {
    type Value;
    const CAPACITY: usize;
    async fn len(&self) -> Result<u64, RemoteError>;
}

fn main() {}
