use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Greeter {
    async fn greet(&self, name: &str) -> Result<String, RemoteError>;
}

fn main() {}
