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
//! - `context`: [`Caller`] (who calls, [`Identity`]) and deadlines ([`with_timeout`]).
//! - `remote`: [`Remote`], [`AnyRemote`], [`Interface`]: handles and references.
//! - `runtime`: [`Runtime`], [`RuntimeBuilder`]: exporting, listening, connecting.
//! - [`registry`]: the registry interface and service; `naming`: [`lookup`] and friends by URL.
//! - [`blocking`]: the same from synchronous code.
//! - `lease`: distributed lifetimes (leases, releases, renewals); [`introspect`]: what a runtime
//!   exports and who keeps it alive.
//! - `connection`, `dispatch`, `stub`: a call's way out and back; `frame`, `message`: the wire
//!   format (`docs/PROTOCOL.md`); `transport`: TCP, TLS, Unix sockets, FIFOs, shared memory.
//! - [`schema`]: machine-readable interface descriptions.

#![deny(unsafe_code)]

// Generated code names `::oxrmi::...`; this makes those paths work inside this crate too.
extern crate self as oxrmi;

mod auth;
pub mod authorize;
mod behind_ready;
pub mod blocking;
mod budget;
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
mod timer;
mod transport;
pub mod types;
mod unwind;

pub use budget::{DEFAULT_MAX_COLLECTION_LEN, DEFAULT_MAX_DECODED_SIZE};
pub use child::{Bootstrap, ChildProcess};
pub use context::{Caller, Identity, with_timeout};
pub use endpoint::{Endpoint, ObjectUrl};
pub use error::RemoteError;
pub use frame::DEFAULT_MAX_FRAME;
pub use id::{InvalidRuntimeId, ObjId, RuntimeId};
pub use lease::DEFAULT_LEASE;
pub use naming::{bind, default_runtime, list, lookup, rebind, unbind};
pub use remote::{AnyRemote, Interface, Remote};
pub use runtime::{
    DEFAULT_MAX_CALLS_IN_FLIGHT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HANDLES_PER_PEER,
    DEFAULT_MAX_LEASES_PER_PEER, DEFAULT_SEND_BUFFER_BYTES, DEFAULT_STALL_TIMEOUT, Runtime,
    RuntimeBuilder,
};

/// Marks a remote interface (on a trait) or an implementation of one (on an impl).
///
/// On a trait, every method must be `async fn name(&self, ..) -> Result<T, E>` with serde
/// arguments and `T`, and `E: From<RemoteError>` plus serde; `#[oneway]` marks a method whose
/// caller does not wait (its `T` must be `()`). `#[remote(name = "pkg.Name")]` sets the
/// interface's wire name (default: `module::path::Trait`). `#[limit(len = N, size = M)]` on an
/// argument bounds it while it is decoded on the receiving side: `len`, the elements, entries or
/// bytes of its outermost collection, string or byte buffer; `size`, the bytes it may decode
/// into. A call beyond them fails with [`RemoteError::LimitExceeded`] naming the argument.
///
/// It writes the client stub, the server dispatch and the interface's [`schema`].
pub use oxrmi_codegen::remote;

/// The environment variable naming a file that holds the shared secret of the process-wide
/// default runtime and of the `oxrmi` tool ([`RuntimeBuilder::shared_secret_from_env`]).
pub const SECRET_FILE_ENV: &str = "OXRMI_SHARED_SECRET_FILE";

/// The environment variable naming a PEM file of CAs that `tls://` servers must chain to
/// ([`RuntimeBuilder::tls_from_env`]: [`tls_trust`](RuntimeBuilder::tls_trust)).
pub const TLS_CA_FILE_ENV: &str = "OXRMI_TLS_CA_FILE";
/// The environment variable naming a PEM file of this process's certificate chain
/// ([`RuntimeBuilder::tls_from_env`]: [`tls_identity`](RuntimeBuilder::tls_identity), with
/// [`TLS_KEY_FILE_ENV`]).
pub const TLS_CERT_FILE_ENV: &str = "OXRMI_TLS_CERT_FILE";
/// The environment variable naming a PEM file of the private key of [`TLS_CERT_FILE_ENV`]'s
/// certificate ([`RuntimeBuilder::tls_from_env`]).
pub const TLS_KEY_FILE_ENV: &str = "OXRMI_TLS_KEY_FILE";
/// The environment variable naming a PEM file of CAs that clients' certificates must chain to
/// ([`RuntimeBuilder::tls_from_env`]: [`tls_client_ca`](RuntimeBuilder::tls_client_ca)).
pub const TLS_CLIENT_CA_FILE_ENV: &str = "OXRMI_TLS_CLIENT_CA_FILE";

/// A boxed future, as generated code and trait objects return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Items the code written by `#[remote]` uses. Not a public API: names may change.
#[doc(hidden)]
pub mod __private {
    pub use crate::BoxFuture;
    pub use crate::budget::ArgLimit;
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
