use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Session {
    async fn close(self: Box<Self>) -> Result<(), RemoteError>;
}

fn main() {}
