//! The registry: names for remote objects, like Java's `rmiregistry`.
//!
//! [`Registry`] is an ordinary remote interface (the first user of `#[remote]`), served by any
//! runtime built with `.registry()` under the well-known object id 1, so it is reached with an
//! endpoint alone: [`locate`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::{AnyRemote, Caller, Remote, RemoteError, remote};

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
}

/// The in-memory registry a runtime serves.
#[derive(Default)]
pub(crate) struct RegistryService {
    bindings: Mutex<BTreeMap<String, AnyRemote>>,
    /// Whether other hosts may bind, rebind and unbind.
    pub(crate) remote_writes: bool,
    /// Counts changes, so a cache of lookups (the gRPC bridge's) knows when it is stale.
    generation: std::sync::atomic::AtomicU64,
}

impl RegistryService {
    pub(crate) fn new(remote_writes: bool) -> Self {
        RegistryService {
            bindings: Mutex::default(),
            remote_writes,
            generation: Default::default(),
        }
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
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The interfaces of the local objects bound here.
    pub(crate) fn local_interfaces(&self) -> Vec<crate::object::InterfaceEntry> {
        self.bindings()
            .values()
            .filter_map(|o| o.local_interface())
            .collect()
    }

    fn bindings(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AnyRemote>> {
        self.bindings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[remote]
impl Registry for RegistryService {
    async fn bind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.check_write("bind")?;
        let mut b = self.bindings();
        if b.contains_key(&name) {
            return Err(RemoteError::AlreadyBound { name });
        }
        tracing::info!(%name, interface = object.interface(), "bound");
        b.insert(name, object);
        self.changed();
        Ok(())
    }

    async fn rebind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.check_write("rebind")?;
        tracing::info!(%name, interface = object.interface(), "rebound");
        self.bindings().insert(name, object);
        self.changed();
        Ok(())
    }

    async fn unbind(&self, name: String) -> Result<(), RemoteError> {
        self.check_write("unbind")?;
        match self.bindings().remove(&name) {
            Some(_) => {
                tracing::info!(%name, "unbound");
                self.changed();
                Ok(())
            }
            None => Err(RemoteError::NotBound { name }),
        }
    }

    async fn lookup(&self, name: String) -> Result<AnyRemote, RemoteError> {
        self.bindings()
            .get(&name)
            .cloned()
            .ok_or(RemoteError::NotBound { name })
    }

    async fn list(&self) -> Result<Vec<Binding>, RemoteError> {
        Ok(self
            .bindings()
            .iter()
            .map(|(name, o)| Binding {
                name: name.clone(),
                interface: o.interface().to_string(),
            })
            .collect())
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
            certificate_subject: None,
        }
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_secs(60)
    }

    #[tokio::test]
    async fn writes_from_another_host_are_refused_unless_allowed() {
        let strict = RegistryService::new(false);
        let r = serve_scope(caller(false), far(), strict.unbind("x".into())).await;
        assert!(matches!(r, Err(RemoteError::AccessDenied { .. })), "{r:?}");
        // Reads are open to everyone.
        let r = serve_scope(caller(false), far(), strict.list()).await;
        assert_eq!(r, Ok(vec![]));
        // The same write from this host gets past the check (and fails on the name instead).
        let r = serve_scope(caller(true), far(), strict.unbind("x".into())).await;
        assert_eq!(r, Err(RemoteError::NotBound { name: "x".into() }));

        let open = RegistryService::new(true);
        let r = serve_scope(caller(false), far(), open.unbind("x".into())).await;
        assert_eq!(r, Err(RemoteError::NotBound { name: "x".into() }));
    }
}
