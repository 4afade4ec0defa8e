//! The registry: names for remote objects, like Java's `rmiregistry`.
//!
//! [`Registry`] is an ordinary remote interface (the first user of `#[remote]`), served by any
//! runtime built with `.registry()` under the well-known object id 1, so it is reached with an
//! endpoint alone: [`locate`]. A registry keeps its bindings in memory; names bound by URL
//! ([`Runtime::bind_url`]) are bound again by their owners when it restarts (`OwnedNames`).

mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::endpoint::{Endpoint, ObjectUrl};
use crate::id::RuntimeId;
use crate::runtime::RuntimeInner;
use crate::{AnyRemote, Caller, Remote, RemoteError, Runtime, remote};

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

/// The default of [`RuntimeBuilder::rebind_interval`](crate::RuntimeBuilder::rebind_interval).
pub const DEFAULT_REBIND_INTERVAL: Duration = Duration::from_secs(2);

/// Names a runtime bound in registries by URL ([`Runtime::bind_url`], [`Runtime::rebind_url`],
/// and so [`crate::bind`] and [`crate::rebind`]), so it can bind them again when their registry
/// restarts (a registry keeps its bindings in memory only: its owners re-register).
///
/// Each name remembers the runtime that served the registry when the name was last bound there.
/// Every [`rebind_interval`](crate::RuntimeBuilder::rebind_interval) the lease housekeeping asks
/// [`OwnedNames::check`]: while a live connection to each registry's endpoint leads to that same
/// runtime, nothing is sent. Otherwise one task per endpoint dials it; if another runtime answers
/// (the registry restarted), each of our names is bound there again with `bind`, never `rebind`,
/// so a name someone else bound meanwhile stays theirs (and we forget ours, with a warning).
#[derive(Default)]
pub(crate) struct OwnedNames {
    state: Mutex<OwnedState>,
}

#[derive(Default)]
struct OwnedState {
    /// Per registry endpoint, the names we bound there.
    registries: HashMap<Endpoint, EndpointNames>,
    /// When the last check ran.
    last_check: Option<Instant>,
}

#[derive(Default)]
struct EndpointNames {
    /// Name → our object and the registry runtime it was last bound in.
    names: BTreeMap<String, (AnyRemote, RuntimeId)>,
    /// A check task runs for this endpoint: one at a time.
    checking: bool,
}

impl OwnedNames {
    fn state(&self) -> std::sync::MutexGuard<'_, OwnedState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, ep: &Endpoint, name: String, object: AnyRemote, served_by: RuntimeId) {
        self.state()
            .registries
            .entry(ep.clone())
            .or_default()
            .names
            .insert(name, (object, served_by));
    }

    fn forget(&self, ep: &Endpoint, name: &str) {
        let mut s = self.state();
        if let Some(e) = s.registries.get_mut(ep) {
            e.names.remove(name);
            if e.names.is_empty() && !e.checking {
                s.registries.remove(ep);
            }
        }
    }

    /// One round of housekeeping: at most every `rebind_interval`, starts a check of each
    /// registry endpoint whose live connection (if any) does not lead to the runtime our names
    /// were bound in.
    pub(crate) fn check(rt: &Arc<RuntimeInner>) {
        let now = Instant::now();
        let due: Vec<Endpoint> = {
            let mut s = rt.owned_names.state();
            if s.registries.is_empty()
                || s.last_check
                    .is_some_and(|t| now.saturating_duration_since(t) < rt.config.rebind_interval)
            {
                return;
            }
            s.last_check = Some(now);
            s.registries
                .iter_mut()
                .filter(|(ep, e)| {
                    !e.checking
                        && match rt.conns.by_endpoint(ep) {
                            Some(c) => e.names.values().any(|(_, id)| *id != c.peer()),
                            None => true,
                        }
                })
                .map(|(ep, e)| {
                    e.checking = true;
                    ep.clone()
                })
                .collect()
        };
        for ep in due {
            let rt2 = rt.clone();
            rt.handle.spawn(async move {
                rebind_at(&rt2, &ep).await;
                let mut s = rt2.owned_names.state();
                if let Some(e) = s.registries.get_mut(&ep) {
                    e.checking = false;
                    if e.names.is_empty() {
                        s.registries.remove(&ep);
                    }
                }
            });
        }
    }
}

/// Binds our names at `ep` again where the registry there is not the one they were bound in.
async fn rebind_at(rt: &Arc<RuntimeInner>, ep: &Endpoint) {
    let served_by = match rt.dial(ep).await {
        Ok(c) => c.peer(),
        Err(e) => {
            tracing::debug!(%ep, error = %e, "registry unreachable; our names there wait");
            return;
        }
    };
    let stale: Vec<(String, AnyRemote)> = match rt.owned_names.state().registries.get(ep) {
        Some(e) => e
            .names
            .iter()
            .filter(|(_, (_, id))| *id != served_by)
            .map(|(n, (o, _))| (n.clone(), o.clone()))
            .collect(),
        None => return,
    };
    let reg = Runtime { inner: rt.clone() }.registry_at(ep);
    for (name, object) in stale {
        let outcome = match reg.bind(name.clone(), object.clone()).await {
            Ok(()) => Ok(true),
            // Bound already: ours (bound meanwhile by another path) or someone else's.
            Err(RemoteError::AlreadyBound { .. }) => {
                reg.lookup(name.clone()).await.map(|found| found == object)
            }
            Err(e) => Err(e),
        };
        let mut s = rt.owned_names.state();
        let Some(entry) = s
            .registries
            .get_mut(ep)
            .and_then(|e| e.names.get_mut(&name))
            // Forgotten or bound again by the owner meanwhile: that call decides.
            .filter(|(o, _)| *o == object)
        else {
            continue;
        };
        match outcome {
            Ok(true) => {
                tracing::info!(%ep, %name, registry = %served_by, "bound again in a restarted registry");
                entry.1 = served_by;
            }
            Ok(false) => {
                tracing::warn!(%ep, %name, "the restarted registry has another object under our name; forgetting ours");
                if let Some(e) = s.registries.get_mut(ep) {
                    e.names.remove(&name);
                }
            }
            Err(e) => {
                tracing::debug!(%ep, %name, error = %e, "could not bind again; retrying later")
            }
        }
    }
}

impl Runtime {
    /// Binds `object` under the name in `url` (`tcp://host:port/name`) in the registry there;
    /// fails with `AlreadyBound` if the name is taken. The runtime remembers the name and binds
    /// it again if that registry restarts (see [`rebind_interval`]); it keeps `object` alive
    /// until [`unbind_url`](Self::unbind_url).
    ///
    /// [`rebind_interval`]: crate::RuntimeBuilder::rebind_interval
    pub async fn bind_url(
        &self,
        url: &str,
        object: impl Into<AnyRemote>,
    ) -> Result<(), RemoteError> {
        self.write_url(url, object.into(), false).await
    }

    /// As [`bind_url`](Self::bind_url), replacing any earlier binding of the name.
    pub async fn rebind_url(
        &self,
        url: &str,
        object: impl Into<AnyRemote>,
    ) -> Result<(), RemoteError> {
        self.write_url(url, object.into(), true).await
    }

    /// Removes the name in `url` from the registry there, and forgets it (it is not bound again
    /// when that registry restarts).
    pub async fn unbind_url(&self, url: &str) -> Result<(), RemoteError> {
        let url: ObjectUrl = url.parse()?;
        let name = url.require_name()?.to_string();
        self.inner.owned_names.forget(&url.endpoint, &name);
        self.registry_at(&url.endpoint).unbind(name).await
    }

    async fn write_url(
        &self,
        url: &str,
        object: AnyRemote,
        replace: bool,
    ) -> Result<(), RemoteError> {
        let url: ObjectUrl = url.parse()?;
        let name = url.require_name()?.to_string();
        // The registry's runtime, learnt before the write: if it restarts in between, the
        // check finds a runtime that differs and makes sure the name is bound there.
        let served_by = self.inner.dial(&url.endpoint).await?.peer();
        let reg = self.registry_at(&url.endpoint);
        if replace {
            reg.rebind(name.clone(), object.clone()).await?;
        } else {
            reg.bind(name.clone(), object.clone()).await?;
        }
        self.inner
            .owned_names
            .remember(&url.endpoint, name, object, served_by);
        Ok(())
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
            certificate_subject: None,
        }
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_secs(60)
    }

    fn owned(rt: &Runtime) -> Vec<String> {
        rt.inner
            .owned_names
            .state()
            .registries
            .values()
            .flat_map(|e| e.names.keys().cloned())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn names_bound_by_url_are_remembered_until_unbound() {
        let registry = Runtime::builder()
            .listen("tcp://127.0.0.1:0")
            .registry()
            .start()
            .await
            .unwrap();
        let owner = Runtime::builder()
            .listen("tcp://127.0.0.1:0")
            .start()
            .await
            .unwrap();
        let url = |name: &str| ObjectUrl::of(&registry.endpoints()[0], name).to_string();
        let object = || {
            Remote::<dyn Registry>::new(RegistryService::new(
                Arc::new(MemoryStore::default()),
                false,
            ))
        };
        owner.bind_url(&url("x"), object()).await.unwrap();
        owner.rebind_url(&url("y"), object()).await.unwrap();
        // A refused bind is not remembered.
        let e = owner.bind_url(&url("x"), object()).await.unwrap_err();
        assert_eq!(e, RemoteError::AlreadyBound { name: "x".into() });
        assert_eq!(owned(&owner), ["x", "y"]);
        owner.unbind_url(&url("x")).await.unwrap();
        assert_eq!(owned(&owner), ["y"]);
        let names: Vec<String> = registry
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["y"]);
        owner.shutdown();
        registry.shutdown();
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
