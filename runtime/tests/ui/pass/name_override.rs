use oxrmi::{Interface, Remote, RemoteError};

/// A counter.
#[oxrmi::remote(name = "my.Counter")]
pub trait Counter: Send + Sync {
    /// Adds `n` and returns the new total.
    async fn add(&self, n: i64) -> Result<i64, RemoteError>;
    /// Logs a line; the caller does not wait.
    #[oneway]
    async fn log(&self, line: String) -> Result<(), RemoteError>;
}

struct MyCounter;

#[oxrmi::remote]
impl Counter for MyCounter {
    async fn add(&self, n: i64) -> Result<i64, RemoteError> {
        Ok(n)
    }
    async fn log(&self, _line: String) -> Result<(), RemoteError> {
        Ok(())
    }
}

/// A trait with no `Send`/`Sync` written and a name taken from its path.
#[oxrmi::remote]
pub trait Plain {
    async fn ping(&self) -> Result<(), RemoteError>;
}

fn main() {
    assert_eq!(<dyn Counter as Interface>::NAME, "my.Counter");
    assert_eq!(Remote::<dyn Counter>::new(MyCounter).interface(), "my.Counter");
    let schema = <dyn Counter as Interface>::schema();
    assert_eq!(schema.name, "my.Counter");
    assert_eq!(schema.docs, "A counter.");
    assert_eq!(schema.methods.len(), 2);
    assert_eq!(schema.methods[0].name, "add");
    assert_eq!(schema.methods[0].args[0].name, "n");
    assert_eq!(schema.methods[0].args[0].ty, "i64");
    assert_eq!(schema.methods[0].ok, "i64");
    assert_eq!(schema.methods[0].err, "RemoteError");
    assert!(!schema.methods[0].oneway);
    assert_eq!(schema.methods[0].docs, "Adds `n` and returns the new total.");
    assert!(schema.methods[1].oneway);

    assert_eq!(<dyn Plain as Interface>::NAME, format!("{}::Plain", module_path!()));
    // `Send + Sync` were added, so the trait object crosses threads.
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn Plain>();
}
