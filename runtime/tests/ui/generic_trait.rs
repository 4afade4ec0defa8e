use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Store<T> {
    async fn get(&self, key: String) -> Result<T, RemoteError>;
}

fn main() {}
