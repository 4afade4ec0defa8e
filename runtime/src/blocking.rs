//! Synchronous use, from code without an async runtime: every function blocks the calling
//! thread until the answer arrives. No tokio set-up is needed; the work runs on the default
//! runtime's own threads.
//!
//! ```no_run
//! # use oxrmi::{remote, Remote, RemoteError};
//! # #[remote] pub trait Counter: Send + Sync { async fn add(&self, n: i64) -> Result<i64, RemoteError>; }
//! fn main() -> Result<(), RemoteError> {
//!     let counter: Remote<dyn Counter> = oxrmi::blocking::lookup("tcp://server:1099/counter")?;
//!     let total = oxrmi::blocking::wait(counter.add(5))?;
//!     println!("{total}");
//!     Ok(())
//! }
//! ```
//!
//! These functions must not be called from inside an async task (they would block its worker
//! thread); tokio panics if they are.

use std::future::Future;

use crate::naming::default_runtime;
use crate::registry::Binding;
use crate::{AnyRemote, Interface, Remote, RemoteError};

/// Runs `fut` (a remote call, or any future) to completion on the calling thread.
pub fn wait<F: Future>(fut: F) -> F::Output {
    default_runtime().inner.handle.block_on(fut)
}

/// Blocking [`lookup`](crate::lookup).
pub fn lookup<T: ?Sized + Interface>(url: &str) -> Result<Remote<T>, RemoteError> {
    wait(crate::lookup(url))
}

/// Blocking [`bind`](crate::bind).
pub fn bind(url: &str, object: impl Into<AnyRemote>) -> Result<(), RemoteError> {
    wait(crate::bind(url, object))
}

/// Blocking [`rebind`](crate::rebind).
pub fn rebind(url: &str, object: impl Into<AnyRemote>) -> Result<(), RemoteError> {
    wait(crate::rebind(url, object))
}

/// Blocking [`unbind`](crate::unbind).
pub fn unbind(url: &str) -> Result<(), RemoteError> {
    wait(crate::unbind(url))
}

/// Blocking [`list`](crate::list).
pub fn list(url: &str) -> Result<Vec<Binding>, RemoteError> {
    wait(crate::list(url))
}
