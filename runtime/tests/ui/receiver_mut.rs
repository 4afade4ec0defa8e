use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Counter {
    async fn add(&mut self, n: i64) -> Result<i64, RemoteError>;
}

struct MyCounter(i64);

// The impl still compiles against the trait as written: the only error is the one above.
#[oxrmi::remote]
impl Counter for MyCounter {
    async fn add(&mut self, n: i64) -> Result<i64, RemoteError> {
        self.0 += n;
        Ok(self.0)
    }
}

fn main() {}
