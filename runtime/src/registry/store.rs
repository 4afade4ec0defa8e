//! Where a registry keeps its bindings: the [`RegistryStore`] trait, the in-memory
//! [`MemoryStore`] (the default), and what a store outside the runtime needs from it
//! ([`StoreRuntime`], [`StoredRef`]).
//!
//! A store that keeps bindings elsewhere (the `oxrmi` tool's etcd store) cannot keep live
//! handles there: it keeps each binding as a [`StoredRef`] (the reference's wire form) and turns
//! it back into a handle of the registry's own runtime with [`StoreRuntime::import`], so the
//! ordinary lease machinery applies to whatever it hands out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Binding;
use crate::id::{ObjId, RuntimeId};
use crate::introspect::Introspect;
use crate::remote::ObjRef;
use crate::runtime::RuntimeInner;
use crate::stub::StubHandle;
use crate::{AnyRemote, Interface, Remote, RemoteError};

/// Where a registry keeps its bindings. The registry checks who may write before it calls a
/// store; the store decides what a name is bound to.
///
/// Lookups and listings are synchronous: a store answers them from memory (a cache, for a
/// store kept elsewhere), so a lookup costs no round trip.
#[async_trait::async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Called once, when the runtime serving this store has started: a store kept outside the
    /// runtime keeps `runtime` to turn stored references into handles. The default ignores it.
    fn attach(&self, runtime: StoreRuntime) {
        let _ = runtime;
    }
    /// Binds `name` to `object`; fails with `AlreadyBound` if the name is taken, atomically.
    async fn bind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError>;
    /// Binds `name` to `object`, replacing any earlier binding.
    async fn rebind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError>;
    /// Removes `name`; fails with `NotBound` if it is not bound.
    async fn unbind(&self, name: String) -> Result<(), RemoteError>;
    /// The object bound to `name`; fails with `NotBound` naming it.
    fn lookup(&self, name: &str) -> Result<AnyRemote, RemoteError>;
    /// Every binding, sorted by name.
    fn list(&self) -> Vec<Binding>;
    /// Counts changes, so a cache of lookups (the gRPC bridge's) knows when it is stale.
    fn generation(&self) -> u64;
    /// The handles this store holds to objects of its own runtime (their interfaces are
    /// served by the runtime: `oxrmi proto`, the gRPC bridge).
    fn local_objects(&self) -> Vec<AnyRemote>;
    /// What the store is and whether it is healthy.
    fn status(&self) -> StoreStatus;
}

/// What a registry keeps its bindings in, and its health: [`Registry::store`](super::Registry::store),
/// shown by `oxrmi list` and `oxrmi ipcs`. **Wire type.**
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The store: `memory`, or `etcd://host:port[,more]` followed by its key prefix.
    pub store: String,
    /// Whether the store accepts writes: reachable, and the registry's view of it current.
    pub healthy: bool,
    /// Whether lookups are answered from a cache that may be out of date (the store was
    /// unreachable or its change feed lost; it is read afresh when it returns).
    pub stale: bool,
    /// One line on the state: the last error, or how current the cache is.
    pub detail: String,
    /// How many names are bound.
    pub bindings: u64,
}

/// The in-memory store: the default, in the registry's process, gone with it.
#[derive(Default)]
pub struct MemoryStore {
    bindings: Mutex<BTreeMap<String, AnyRemote>>,
    /// Counts changes (see [`RegistryStore::generation`]).
    generation: AtomicU64,
}

impl MemoryStore {
    fn bindings(&self) -> MutexGuard<'_, BTreeMap<String, AnyRemote>> {
        self.bindings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[async_trait::async_trait]
impl RegistryStore for MemoryStore {
    async fn bind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
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
        tracing::info!(%name, interface = object.interface(), "rebound");
        self.bindings().insert(name, object);
        self.changed();
        Ok(())
    }

    async fn unbind(&self, name: String) -> Result<(), RemoteError> {
        match self.bindings().remove(&name) {
            Some(_) => {
                tracing::info!(%name, "unbound");
                self.changed();
                Ok(())
            }
            None => Err(RemoteError::NotBound { name }),
        }
    }

    fn lookup(&self, name: &str) -> Result<AnyRemote, RemoteError> {
        self.bindings()
            .get(name)
            .cloned()
            .ok_or_else(|| RemoteError::NotBound { name: name.into() })
    }

    fn list(&self) -> Vec<Binding> {
        self.bindings()
            .iter()
            .map(|(name, o)| Binding {
                name: name.clone(),
                interface: o.interface().to_string(),
            })
            .collect()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn local_objects(&self) -> Vec<AnyRemote> {
        self.bindings()
            .values()
            .filter(|o| o.is_local())
            .cloned()
            .collect()
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            store: "memory".into(),
            healthy: true,
            stale: false,
            detail: "in the registry's process".into(),
            bindings: self.bindings().len() as u64,
        }
    }
}

/// A reference as a store keeps it: which object, in which runtime, of which interface, and the
/// owner's endpoints; [`to_bytes`](Self::to_bytes) is its MessagePack form (`ObjRef` in
/// docs/PROTOCOL.md, uncounted: any runtime that imports it acquires its own lease).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRef(ObjRef);

impl StoredRef {
    /// The bytes a store keeps.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain data: encoding into a Vec cannot fail.
        rmp_serde::to_vec(&self.0).unwrap_or_default()
    }

    /// Reads the bytes [`to_bytes`](Self::to_bytes) wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoredRef, RemoteError> {
        let mut r: ObjRef = rmp_serde::from_slice(bytes).map_err(|e| RemoteError::Marshalling {
            what: "a stored reference".into(),
            detail: e.to_string(),
        })?;
        // Whoever wrote it, a stored reference is never counted for the reader.
        r.lease = 0;
        r.transit = 0;
        Ok(StoredRef(r))
    }

    /// The object's interface.
    pub fn interface(&self) -> &str {
        &self.0.interface
    }

    /// The runtime that owns the object (`None` for a well-known object reached by endpoint).
    pub fn owner(&self) -> Option<RuntimeId> {
        self.0.runtime
    }
}

impl std::fmt::Display for StoredRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a [`RegistryStore`] may ask of the runtime that serves it. Holds the runtime weakly:
/// a store kept by the runtime must not keep the runtime alive.
#[derive(Clone)]
pub struct StoreRuntime {
    rt: Weak<RuntimeInner>,
}

impl StoreRuntime {
    pub(crate) fn new(rt: &Arc<RuntimeInner>) -> Self {
        StoreRuntime {
            rt: Arc::downgrade(rt),
        }
    }

    fn runtime(&self) -> Result<Arc<RuntimeInner>, RemoteError> {
        self.rt.upgrade().ok_or(RemoteError::Shutdown)
    }

    /// The id of the runtime.
    pub fn id(&self) -> Option<RuntimeId> {
        self.rt.upgrade().map(|rt| rt.id)
    }

    /// The reference another runtime can import `object` from. An object of this runtime is
    /// exported (the store's handle keeps it alive); it names this runtime's endpoints.
    pub fn stored_ref(&self, object: &AnyRemote) -> Result<StoredRef, RemoteError> {
        let rt = self.runtime()?;
        let mut r = match object.stub() {
            Some(h) => h.target().clone(),
            None => {
                let e = object.exported();
                let id = rt.objects.export(e.clone());
                ObjRef {
                    runtime: Some(rt.id),
                    object: id,
                    interface: e.schema().name.to_string(),
                    endpoints: rt.advertised(None),
                    lease: 0,
                    transit: 0,
                }
            }
        };
        r.lease = 0;
        r.transit = 0;
        Ok(StoredRef(r))
    }

    /// A handle of this runtime to the object `r` names: the local object if this runtime owns
    /// it, else a stub that acquires its own lease from the owner.
    pub fn import(&self, r: &StoredRef) -> Result<AnyRemote, RemoteError> {
        AnyRemote::import(self.runtime()?, r.0.clone())
    }

    /// Whether the owner of the object `r` names answers within `timeout`: one call to its
    /// introspection service (a real round trip; dials again if the connection was closed).
    /// Any answer counts, even an error; only no answer (refused, lost, deadline passed) fails.
    /// An object of this runtime, or a well-known one, is always alive.
    pub async fn ping(&self, r: &StoredRef, timeout: Duration) -> Result<(), RemoteError> {
        let rt = self.runtime()?;
        let Some(owner) = r.0.runtime.filter(|o| *o != rt.id) else {
            return Ok(());
        };
        let introspect: Remote<dyn Introspect> = Remote::from_stub(StubHandle::well_known(
            rt,
            Some(owner),
            ObjId::INTROSPECT,
            <dyn Introspect as Interface>::NAME,
            r.0.endpoints.clone(),
        ));
        match crate::with_timeout(timeout, introspect.interfaces()).await {
            // Any answer proves the owner alive, even a refusal by its authorization checks.
            Err(e) if super::does_not_answer(&e) || e == RemoteError::Shutdown => Err(e),
            _ => Ok(()),
        }
    }
}
