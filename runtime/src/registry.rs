//! The registry: names for remote objects, like Java's `rmiregistry`.
//!
//! [`Registry`] is an ordinary remote interface (the first user of `#[remote]`), served by any
//! runtime built with `.registry()` under the well-known object id 1, so it is reached with an
//! endpoint alone: [`locate`].

mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, ObjectUrl};
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

/// Splits `tcp://a:1099,tcp://b:1099/name` into the registry endpoints to try, in order, and the
/// URL of the last one (which carries the name). Earlier parts may repeat the name or omit it.
pub(crate) fn failover_url(url: &str) -> Result<(Vec<Endpoint>, ObjectUrl), RemoteError> {
    let parts: Vec<&str> = url.split(',').map(str::trim).collect();
    let (last, earlier) = parts
        .split_last()
        .ok_or_else(|| RemoteError::InvalidEndpoint {
            endpoint: url.into(),
            reason: "empty".into(),
        })?;
    let last: ObjectUrl = last.parse()?;
    let mut endpoints = Vec::with_capacity(parts.len());
    for part in earlier {
        let u: ObjectUrl = part.parse()?;
        if u.name.is_some() && u.name != last.name {
            return Err(RemoteError::InvalidEndpoint {
                endpoint: url.into(),
                reason: "the registries of one URL name different objects".into(),
            });
        }
        endpoints.push(u.endpoint);
    }
    endpoints.push(last.endpoint.clone());
    Ok((endpoints, last))
}

impl crate::Runtime {
    /// A handle to one namespace served by several registries (registry nodes sharing a store),
    /// reached through this runtime: each call goes to the registry that answered last, and
    /// moves on to the next in order when one does not answer (refused, connection lost,
    /// deadline passed, store unavailable). An application answer (`NotBound`, `AlreadyBound`,
    /// `AccessDenied`) is final. With one endpoint it is [`registry_at`](Self::registry_at).
    ///
    /// A write whose connection broke after the registry applied it is tried on the next one,
    /// where a `bind` then fails with `AlreadyBound`.
    pub fn registry_at_any(&self, endpoints: &[Endpoint]) -> Remote<dyn Registry> {
        match endpoints {
            [one] => self.registry_at(one),
            _ => Remote::new(FailoverRegistry {
                nodes: endpoints.iter().map(|e| self.registry_at(e)).collect(),
                preferred: AtomicUsize::new(0),
            }),
        }
    }
}

/// Several registries of one namespace, tried in turn (see [`crate::Runtime::registry_at_any`]).
struct FailoverRegistry {
    nodes: Vec<Remote<dyn Registry>>,
    /// The node that answered last: tried first.
    preferred: AtomicUsize,
}

impl FailoverRegistry {
    /// Runs `call` on each node in turn, from the preferred one, until one answers.
    async fn each<T, F, Fut>(&self, call: F) -> Result<T, RemoteError>
    where
        F: Fn(Remote<dyn Registry>) -> Fut,
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let n = self.nodes.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = RemoteError::Unreachable {
            object: "a registry (no endpoint given)".into(),
        };
        for i in (0..n).map(|k| (start + k) % n) {
            match call(self.nodes[i].clone()).await {
                Err(e) if does_not_answer(&e) => {
                    tracing::debug!(registry = i, error = %e, "registry does not answer: trying the next");
                    last = e;
                }
                answer => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        Err(last)
    }
}

/// Errors that mean the callee did not answer: after them another registry of the namespace
/// may, and an owner that gives them to every ping is taken for dead.
pub(crate) fn does_not_answer(e: &RemoteError) -> bool {
    matches!(
        e,
        RemoteError::ConnectionRefused { .. }
            | RemoteError::ConnectionLost { .. }
            | RemoteError::Timeout { .. }
            | RemoteError::Unreachable { .. }
    )
}

#[remote]
impl Registry for FailoverRegistry {
    async fn bind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.each(|r| {
            let (name, object) = (name.clone(), object.clone());
            async move { r.bind(name, object).await }
        })
        .await
    }

    async fn rebind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.each(|r| {
            let (name, object) = (name.clone(), object.clone());
            async move { r.rebind(name, object).await }
        })
        .await
    }

    async fn unbind(&self, name: String) -> Result<(), RemoteError> {
        self.each(|r| {
            let name = name.clone();
            async move { r.unbind(name).await }
        })
        .await
    }

    async fn lookup(&self, name: String) -> Result<AnyRemote, RemoteError> {
        self.each(|r| {
            let name = name.clone();
            async move { r.lookup(name).await }
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Binding>, RemoteError> {
        self.each(|r| async move { r.list().await }).await
    }

    async fn store(&self) -> Result<StoreStatus, RemoteError> {
        self.each(|r| async move { r.store().await }).await
    }
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

    #[test]
    fn a_url_may_list_several_registries() {
        let (eps, url) = failover_url("tcp://a:1099,tcp://b:1099/name").unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].to_string(), "tcp://a:1099");
        assert_eq!(url.endpoint.to_string(), "tcp://b:1099");
        assert_eq!(url.name.as_deref(), Some("name"));
        let (eps, _) = failover_url("tcp://a:1099/name").unwrap();
        assert_eq!(eps.len(), 1);
        assert!(failover_url("tcp://a:1099/x,tcp://b:1099/y").is_err());
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
