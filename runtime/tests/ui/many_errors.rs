// Every broken rule is reported, not just the first.
use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Counter {
    fn get(&self) -> Result<i64, RemoteError>;
    async fn add(&mut self, n: i64) -> i64;
    #[oneway]
    async fn log(&self, __line: String) -> Result<bool, RemoteError>;
}

fn main() {}
