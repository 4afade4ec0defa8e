use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Counter {
    fn get(&self) -> Result<i64, RemoteError>;
}

struct MyCounter;

#[oxrmi::remote]
impl Counter for MyCounter {
    fn get(&self) -> Result<i64, RemoteError> {
        Ok(0)
    }
}

fn main() {}
