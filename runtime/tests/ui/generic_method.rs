use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Store {
    async fn put<T>(&self, value: T) -> Result<(), RemoteError>;
}

fn main() {}
