use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Counter {
    async fn get(&self) -> Result<i64, RemoteError>;
}

struct MyCounter;

// The name belongs on the trait. The impl is still expanded, so it still implements the trait.
#[oxrmi::remote(name = "my.Counter")]
impl Counter for MyCounter {
    async fn get(&self) -> Result<i64, RemoteError> {
        Ok(0)
    }
}

fn main() {
    let _ = oxrmi::Remote::<dyn Counter>::new(MyCounter);
}
