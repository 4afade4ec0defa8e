//! The registry: names for remote objects, like Java's `rmiregistry`.
//!
//! [`Registry`] is an ordinary remote interface (the first user of `#[remote]`), served by any
//! runtime built with `.registry()` under the well-known object id 1, so it is reached with an
//! endpoint alone: [`locate`].

mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::{AnyRemote, Caller, Remote, RemoteError, remote};

pub use store::{MemoryStore, RegistryStore, StoreRuntime, StoreStatus, StoredRef};

/// One name in a registry and the interface of the object bound to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The name.
    pub name: String,
    /// The bound object's interface.
    pub interface: String,
}

/// The registry's remote interface.
///
/// `bind`, `rebind` and `unbind` are accepted only from the registry's own host unless the
/// runtime was built with `registry_accepts_remote_writes(true)`; `lookup` and `list` from anywhere.
#[remote(name = "oxrmi.Registry")]
pub trait Registry: Send + Sync {
    /// Binds `name` to `object`; fails with `AlreadyBound` if the name is taken.
    async fn bind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError>;
    /// Binds `name` to `object`, replacing any earlier binding.
    async fn rebind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError>;
    /// Removes `name`; fails with `NotBound` if it is not bound.
    async fn unbind(&self, name: String) -> Result<(), RemoteError>;
    /// The object bound to `name`; fails with `NotBound` naming it.
    async fn lookup(&self, name: String) -> Result<AnyRemote, RemoteError>;
    /// Every binding, sorted by name.
    async fn list(&self) -> Result<Vec<Binding>, RemoteError>;
    /// What the registry keeps its bindings in (memory, etcd) and whether that store is healthy.
    async fn store(&self) -> Result<StoreStatus, RemoteError>;
}

/// The registry a runtime serves: the host rule for writes, then its [`RegistryStore`].
pub(crate) struct RegistryService {
    store: Arc<dyn RegistryStore>,
    /// Whether other hosts may bind, rebind and unbind.
    pub(crate) remote_writes: bool,
}

impl RegistryService {
    pub(crate) fn new(store: Arc<dyn RegistryStore>, remote_writes: bool) -> Self {
        RegistryService {
            store,
            remote_writes,
        }
    }

    /// The store, told which runtime serves it.
    pub(crate) fn attach(&self, runtime: StoreRuntime) {
        self.store.attach(runtime);
    }

    fn check_write(&self, op: &str) -> Result<(), RemoteError> {
        match Caller::current() {
            Some(c) if !c.is_local_host() && !self.remote_writes => {
                tracing::warn!(caller = %c.address(), op, "refused a registry write from another host");
                Err(RemoteError::AccessDenied {
                    reason: format!("{op} is accepted only from the registry's own host"),
                })
            }
            _ => Ok(()),
        }
    }

    /// How many times the bindings changed.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn generation(&self) -> u64 {
        self.store.generation()
    }

    /// The interfaces of the local objects bound here.
    pub(crate) fn local_interfaces(&self) -> Vec<crate::object::InterfaceEntry> {
        self.store
            .local_objects()
            .iter()
            .filter_map(|o| o.local_interface())
            .collect()
    }
}

#[remote]
impl Registry for RegistryService {
    async fn bind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.check_write("bind")?;
        self.store.bind(name, object).await
    }

    async fn rebind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.check_write("rebind")?;
        self.store.rebind(name, object).await
    }

    async fn unbind(&self, name: String) -> Result<(), RemoteError> {
        self.check_write("unbind")?;
        self.store.unbind(name).await
    }

    async fn lookup(&self, name: String) -> Result<AnyRemote, RemoteError> {
        self.store.lookup(&name)
    }

    async fn list(&self) -> Result<Vec<Binding>, RemoteError> {
        Ok(self.store.list())
    }

    async fn store(&self) -> Result<StoreStatus, RemoteError> {
        Ok(self.store.status())
    }
}

/// A handle to the registry served at `endpoint`, through the process-wide default runtime.
/// No connection is opened until the first call.
pub fn locate(endpoint: &Endpoint) -> Remote<dyn Registry> {
    crate::naming::default_runtime().registry_at(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::serve_scope;
    use crate::id::RuntimeId;

    fn caller(local_host: bool) -> Caller {
        Caller {
            runtime: RuntimeId::random(),
            address: "192.0.2.7:40000".into(),
            local_host,
            uid: None,
        }
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_secs(60)
    }

    #[tokio::test]
    async fn writes_from_another_host_are_refused_unless_allowed() {
        let strict = RegistryService::new(Arc::new(MemoryStore::default()), false);
        let r = serve_scope(caller(false), far(), strict.unbind("x".into())).await;
        assert!(matches!(r, Err(RemoteError::AccessDenied { .. })), "{r:?}");
        // Reads are open to everyone.
        let r = serve_scope(caller(false), far(), strict.list()).await;
        assert_eq!(r, Ok(vec![]));
        // The same write from this host gets past the check (and fails on the name instead).
        let r = serve_scope(caller(true), far(), strict.unbind("x".into())).await;
        assert_eq!(r, Err(RemoteError::NotBound { name: "x".into() }));

        let open = RegistryService::new(Arc::new(MemoryStore::default()), true);
        let r = serve_scope(caller(false), far(), open.unbind("x".into())).await;
        assert_eq!(r, Err(RemoteError::NotBound { name: "x".into() }));
    }
}
