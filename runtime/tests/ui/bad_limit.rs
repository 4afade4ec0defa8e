use oxrmi::{RemoteError, remote};

#[remote]
pub trait Store: Send + Sync {
    async fn unknown(&self, #[limit(count = 3)] items: Vec<u8>) -> Result<(), RemoteError>;
    async fn not_a_number(&self, #[limit(len = "3")] items: Vec<u8>) -> Result<(), RemoteError>;
    async fn bare(&self, #[limit] items: Vec<u8>) -> Result<(), RemoteError>;
    async fn twice(&self, #[limit(len = 1)] #[limit(size = 2)] items: Vec<u8>) -> Result<(), RemoteError>;
    async fn on_self(#[limit(len = 1)] &self) -> Result<(), RemoteError>;
}

fn main() {}
