//! # oxrmi: remote objects for Rust
//!
//! Processes call methods on each other's objects as if they were local. A remote interface is
//! a trait marked [`#[remote]`](remote); a [`Runtime`] exports objects and names them in a
//! registry; another process looks one up and gets a [`Remote<dyn Trait>`](Remote) whose methods
//! travel over the network.
//!
//! ```
//! use oxrmi::{remote, Remote, RemoteError, Runtime};
//! use std::sync::atomic::{AtomicI64, Ordering};
//!
//! #[remote]
//! pub trait Counter: Send + Sync {
//!     async fn add(&self, n: i64) -> Result<i64, RemoteError>;
//! }
//!
//! #[derive(Default)]
//! struct MyCounter(AtomicI64);
//!
//! #[remote]
//! impl Counter for MyCounter {
//!     async fn add(&self, n: i64) -> Result<i64, RemoteError> {
//!         Ok(self.0.fetch_add(n, Ordering::SeqCst) + n)
//!     }
//! }
//!
//! # async fn run() -> Result<(), RemoteError> {
//! let server = Runtime::builder().listen("tcp://127.0.0.1:0").registry().start().await?;
//! server.bind("counter", Remote::<dyn Counter>::new(MyCounter::default())).await?;
//!
//! let url = format!("{}/counter", server.endpoints()[0]);
//! let counter: Remote<dyn Counter> = oxrmi::lookup(&url).await?;
//! assert_eq!(counter.add(5).await?, 5);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
//! ```
//!
//! # Layout
//! - [`remote`](macro@remote): the attribute that writes stub, dispatch and schema.
//! - `remote`: [`Remote`], [`AnyRemote`], [`Interface`]: handles and references.
//! - `runtime`: [`Runtime`], [`RuntimeBuilder`]: exporting, listening, connecting.
//! - [`registry`]: the registry interface and service; `naming`: [`lookup`] and friends by URL.
//! - [`blocking`]: the same from synchronous code.
//! - `lease`: distributed lifetimes (leases, releases, renewals); [`introspect`]: what a runtime
//!   exports and who keeps it alive.
//! - `connection`, `dispatch`, `stub`: a call's way out and back; `frame`, `message`: the wire
//!   format (`docs/PROTOCOL.md`); `transport`: TCP.
//! - [`schema`]: machine-readable interface descriptions.

#![deny(unsafe_code)]

// Generated code names `::oxrmi::...`; this makes those paths work inside this crate too.
extern crate self as oxrmi;

mod auth;
pub mod authorize;
pub mod blocking;
mod buffers;
mod child;
mod connection;
mod context;
mod dispatch;
mod endpoint;
mod error;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "grpc")]
pub mod grpc;
mod id;
pub mod introspect;
mod lease;
mod marshal;
mod message;
mod naming;
mod object;
mod outbox;
pub mod proto;
pub mod registry;
mod remote;
mod runtime;
pub mod schema;
mod stub;
mod transport;
pub mod types;
mod unwind;

pub use child::{Bootstrap, ChildProcess};
pub use context::{Caller, with_timeout};
pub use endpoint::{Endpoint, ObjectUrl};
pub use error::RemoteError;
pub use frame::DEFAULT_MAX_FRAME;
pub use id::{InvalidRuntimeId, ObjId, RuntimeId};
pub use lease::DEFAULT_LEASE;
pub use naming::{bind, default_runtime, list, lookup, rebind, unbind};
pub use remote::{AnyRemote, Interface, Remote};
pub use runtime::{
    DEFAULT_MAX_CALLS_IN_FLIGHT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SEND_BUFFER_BYTES,
    DEFAULT_STALL_TIMEOUT, Runtime, RuntimeBuilder,
};

/// Marks a remote interface (on a trait) or an implementation of one (on an impl).
///
/// On a trait, every method must be `async fn name(&self, ..) -> Result<T, E>` with serde
/// arguments and `T`, and `E: From<RemoteError>` plus serde; `#[oneway]` marks a method whose
/// caller does not wait (its `T` must be `()`). `#[remote(name = "pkg.Name")]` sets the
/// interface's wire name (default: `module::path::Trait`).
///
/// It writes the client stub, the server dispatch and the interface's [`schema`].
pub use oxrmi_codegen::remote;

/// The environment variable naming a file that holds the shared secret of the process-wide
/// default runtime and of the `oxrmi` tool ([`RuntimeBuilder::shared_secret_from_env`]).
pub const SECRET_FILE_ENV: &str = "OXRMI_SHARED_SECRET_FILE";

/// A boxed future, as generated code and trait objects return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Items the code written by `#[remote]` uses. Not a public API: names may change.
#[doc(hidden)]
pub mod __private {
    pub use crate::BoxFuture;
    pub use crate::fuzzing;
    pub use crate::marshal::{ArgsDecoder, ArgsEncoder, CallCtx, Outcome, failed};
    pub use crate::remote::{Interface, Wrap};
    pub use crate::schema::{ArgSchema, InterfaceSchema, MethodSchema};
    pub use crate::stub::StubHandle;
    pub use crate::transport::RawLink;
    pub use crate::transport::shm::testing as shm_testing;
    pub use crate::types::TypeTracer;
    pub use async_trait::async_trait;
    pub use std::borrow::Cow;
}
