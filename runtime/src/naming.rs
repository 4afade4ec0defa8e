//! URL-based naming, like `java.rmi.Naming`: [`lookup`], [`bind`], [`rebind`], [`unbind`] and
//! [`list`] take `tcp://host:port/name` and act on the registry there through a process-wide
//! default runtime that listens on no port.
//!
//! The default runtime runs on a small tokio runtime of its own, so it keeps working whatever
//! the caller's executor does (a `#[tokio::test]` that ends, or no async runtime at all, see
//! [`blocking`](crate::blocking)).
//!
//! It is configured from the environment only: the shared secret
//! ([`SECRET_FILE_ENV`](crate::SECRET_FILE_ENV)) and the TLS certificates
//! ([`RuntimeBuilder::tls_from_env`](crate::RuntimeBuilder::tls_from_env): `OXRMI_TLS_CA_FILE`
//! to dial `tls://` URLs, `OXRMI_TLS_CERT_FILE` and `OXRMI_TLS_KEY_FILE` for a client
//! certificate).

use std::sync::OnceLock;

use crate::endpoint::ObjectUrl;
use crate::registry::{Binding, Registry};
use crate::{AnyRemote, Interface, Remote, RemoteError, Runtime};

/// Worker threads of the default runtime's tokio runtime: it only moves bytes and wakes callers.
const DEFAULT_RUNTIME_THREADS: usize = 2;

struct Default {
    runtime: Runtime,
    // Kept alive for the life of the process; the runtime's tasks run on it.
    _tokio: tokio::runtime::Runtime,
}

static DEFAULT: OnceLock<Default> = OnceLock::new();

/// The process-wide runtime used by the URL functions: no listening port, started on first use.
pub fn default_runtime() -> &'static Runtime {
    &DEFAULT
        .get_or_init(|| {
            // Failing to start threads at all leaves nothing sensible to do.
            let tokio = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(DEFAULT_RUNTIME_THREADS)
                .thread_name("oxrmi")
                .enable_all()
                .build()
                .expect("oxrmi: cannot start the default runtime's threads");
            let handle = tokio.handle().clone();
            let runtime = std::thread::scope(|s| {
                // Started from a plain thread: this function may be called inside another tokio
                // runtime, where blocking on this one would panic.
                s.spawn(|| {
                    tokio.block_on(async {
                        match Runtime::builder()
                            .shared_secret_from_env()
                            .tls_from_env()
                            .start_on(handle.clone())
                            .await
                        {
                            Ok(rt) => Ok(rt),
                            Err(e) => {
                                // A bad secret or TLS file: go on without them, so peers that
                                // require a secret or a certificate refuse us with AccessDenied,
                                // and `tls://` cannot be dialled (safe), and say why here.
                                tracing::error!(error = %e, "the default runtime has no shared secret and no TLS settings");
                                Runtime::builder().start_on(handle).await
                            }
                        }
                    })
                })
                .join()
                .expect("oxrmi: the default runtime panicked while starting")
            })
            .expect("oxrmi: a runtime without endpoints or secret cannot fail to start");
            Default {
                runtime,
                _tokio: tokio,
            }
        })
        .runtime
}

fn registry_of(url: &str) -> Result<(Remote<dyn Registry>, ObjectUrl), RemoteError> {
    // `tcp://a:1099,tcp://b:1099/name`: several registries of one namespace, tried in turn.
    let (endpoints, url) = crate::registry::failover_url(url)?;
    Ok((default_runtime().registry_at_any(&endpoints), url))
}

/// Looks up the object named by `url` (`tcp://host:port/name`) and checks its interface.
///
/// ```no_run
/// # use oxrmi::{remote, Remote, RemoteError};
/// # #[remote] pub trait Counter: Send + Sync { async fn get(&self) -> Result<i64, RemoteError>; }
/// # async fn f() -> Result<(), RemoteError> {
/// let counter: Remote<dyn Counter> = oxrmi::lookup("tcp://server:1099/counter").await?;
/// println!("{}", counter.get().await?);
/// # Ok(()) }
/// ```
pub async fn lookup<T: ?Sized + Interface>(url: &str) -> Result<Remote<T>, RemoteError> {
    let (reg, url) = registry_of(url)?;
    reg.lookup(url.require_name()?.to_string())
        .await?
        .downcast()
}

/// Binds `object` under the name in `url`; fails if the name is taken. The default runtime binds
/// it again if that registry restarts, until [`unbind`] ([`Runtime::bind_url`]).
pub async fn bind(url: &str, object: impl Into<AnyRemote>) -> Result<(), RemoteError> {
    default_runtime().bind_url(url, object).await
}

/// Binds `object` under the name in `url`, replacing any earlier binding; bound again if that
/// registry restarts, as with [`bind`].
pub async fn rebind(url: &str, object: impl Into<AnyRemote>) -> Result<(), RemoteError> {
    default_runtime().rebind_url(url, object).await
}

/// Removes the name in `url` from its registry (and stops binding it again).
pub async fn unbind(url: &str) -> Result<(), RemoteError> {
    default_runtime().unbind_url(url).await
}

/// Every binding of the registry at `url` (`tcp://host:port`; a name, if given, is ignored).
pub async fn list(url: &str) -> Result<Vec<Binding>, RemoteError> {
    let (reg, _) = registry_of(url)?;
    reg.list().await
}
