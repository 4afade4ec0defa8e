//! A registry store on etcd (v3 API): any number of registry nodes share one namespace.
//!
//! # How bindings are kept
//! - A binding is the key `<prefix><name>` whose value is the bound object's [`StoredRef`] (its
//!   wire form, uncounted), so any node can hand out a handle to the owner's object: a node
//!   that did not accept the bind imports the reference into a handle of its own runtime (which
//!   acquires its own oxrmi lease from the owner) and passes that on like any handle.
//! - Every key is attached to an etcd lease, granted per owner runtime by the node that accepted
//!   the bind. Every node keeps alive (every third of the TTL) the lease of each binding in its
//!   cache for as long as the binding's owner answers that node's ping (a call to the owner's
//!   introspection service). So a binding outlives the node that accepted it (another node
//!   renews it), and when the owner dies or is cut off from every node, no node renews its
//!   lease and etcd deletes its keys after the TTL.
//! - `bind` is an etcd transaction "create if `create_revision == 0`", so of two nodes binding
//!   one name at once exactly one wins; `rebind` is one put, `unbind` one delete.
//!
//! # How lookups are answered
//! From a cache of every binding under the prefix, read once and then kept current by an etcd
//! watch, so a lookup costs no round trip to etcd. A cached answer lags etcd by the watch's
//! delivery delay (milliseconds on a healthy cluster). When the watch is lost (etcd down, the
//! node cut off, history compacted), the store is marked unhealthy and stale: lookups keep
//! being answered from the cache as it was, writes are refused with a clear error, and the
//! store retries; when etcd answers again it reads the whole prefix afresh (resync), replaces
//! the cache and watches from that revision, and is healthy again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use oxrmi::registry::{Binding, RegistryStore, StoreRuntime, StoreStatus, StoredRef};
use oxrmi::{AnyRemote, RemoteError, RuntimeId};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/oxrmi/registry/";

/// The default TTL of a binding's etcd lease: how long a binding outlives its owner (or the
/// node that keeps it alive). Short enough that names of dead owners go quickly, long enough
/// that a busy owner's ping is not mistaken for death.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// How long one request to etcd may take before the store counts etcd as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the store checks that etcd answers, and waits before retrying a lost watch.
const PROBE_PERIOD: Duration = Duration::from_millis(500);

/// Where and how an [`EtcdStore`] keeps its bindings.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// etcd's client endpoints, `host:port` (or `http://host:port`).
    pub endpoints: Vec<String>,
    /// Prepended to every name: deployments with different prefixes share a cluster safely.
    pub prefix: String,
    /// The TTL of each binding's lease (whole seconds, at least 2).
    pub lease_ttl: Duration,
}

impl EtcdConfig {
    /// The configuration for a `--store` URL, `etcd://host:port[,host:port...]`, with the
    /// default prefix and TTL.
    pub fn from_url(url: &str) -> Result<EtcdConfig, String> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("`{url}`: a store URL starts with etcd://"))?;
        let endpoints: Vec<String> = rest
            .split(',')
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(format!("`{url}` names no etcd endpoint"));
        }
        Ok(EtcdConfig {
            endpoints,
            prefix: DEFAULT_PREFIX.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
        })
    }

    fn url(&self) -> String {
        format!("etcd://{}", self.endpoints.join(","))
    }

    fn ttl_secs(&self) -> i64 {
        self.lease_ttl.as_secs().max(2) as i64
    }
}

/// A registry store on etcd; see the module's documentation.
pub struct EtcdStore {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    config: EtcdConfig,
    /// Every binding under the prefix as of `Cache::revision`.
    cache: Mutex<Cache>,
    health: Mutex<Health>,
    /// Counts changes to the cache (see `RegistryStore::generation`).
    generation: AtomicU64,
    /// The runtime serving this store, set by `attach`.
    runtime: OnceLock<StoreRuntime>,
    /// The leases this node granted and renews.
    leases: Mutex<Leases>,
}

#[derive(Default)]
struct Cache {
    entries: BTreeMap<String, Entry>,
}

struct Entry {
    stored: StoredRef,
    /// The key's mod revision: an entry is replaced only by a newer write.
    revision: i64,
    /// The etcd lease the key is attached to.
    lease: i64,
    /// The handle lookups hand out, made on the first lookup (or the bound handle itself on
    /// the node that accepted the bind).
    handle: Option<AnyRemote>,
}

struct Health {
    /// etcd answered the last probe.
    reachable: bool,
    /// The watch is live, so the cache is current.
    watching: bool,
    /// The last error, or how the cache was filled.
    detail: String,
    /// When `reachable` or `watching` last changed.
    since: Instant,
}

#[derive(Default)]
struct Leases {
    /// Per owner runtime (`None`: objects of this runtime or well-known ones), the lease this
    /// node attaches the owner's new bindings to.
    granted: HashMap<Option<RuntimeId>, i64>,
    /// The leases this node runs a keeper for.
    kept: HashSet<i64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EtcdStore {
    /// Connects to etcd (lazily: an unreachable etcd makes the store unhealthy, not this call
    /// fail) and starts the watch that fills the cache. Must be called inside a tokio runtime.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, etcd_client::Error> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), REQUEST_TIMEOUT);
        let client = Client::connect(&config.endpoints, Some(options)).await?;
        let shared = Arc::new(Shared {
            client,
            config,
            cache: Mutex::default(),
            health: Mutex::new(Health {
                reachable: false,
                watching: false,
                detail: "connecting to etcd".into(),
                since: Instant::now(),
            }),
            generation: AtomicU64::new(0),
            runtime: OnceLock::new(),
            leases: Mutex::default(),
        });
        tokio::spawn(watch_loop(Arc::downgrade(&shared)));
        tokio::spawn(probe_loop(Arc::downgrade(&shared)));
        Ok(EtcdStore { shared })
    }

    /// Waits until the store is healthy (the cache filled and the watch live), at most `limit`.
    pub async fn ready(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.status().healthy {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Shared {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.config.prefix)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn set_health(&self, reachable: Option<bool>, watching: Option<bool>, detail: Option<String>) {
        let mut h = lock(&self.health);
        let was = (h.reachable, h.watching);
        if let Some(r) = reachable {
            h.reachable = r;
        }
        if let Some(w) = watching {
            h.watching = w;
        }
        if (h.reachable, h.watching) != was {
            h.since = Instant::now();
            if h.reachable && h.watching {
                tracing::info!(store = %self.config.url(), "etcd store healthy");
            } else {
                tracing::warn!(store = %self.config.url(), reachable = h.reachable, watching = h.watching, detail = ?detail, "etcd store unhealthy");
            }
        }
        if let Some(d) = detail {
            h.detail = d;
        }
    }

    /// Refuses writes while the store is unhealthy: a write we cannot see come back through
    /// the watch would leave this node's cache wrong.
    fn check_healthy(&self, op: &str) -> Result<(), RemoteError> {
        let h = lock(&self.health);
        if h.reachable && h.watching {
            return Ok(());
        }
        Err(RemoteError::ConnectionRefused {
            endpoint: self.config.url(),
            reason: format!(
                "the registry's etcd store is unhealthy ({}); {op} is refused until it is back",
                h.detail
            ),
        })
    }

    fn etcd_error(&self, op: &str, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::ConnectionRefused {
            endpoint: self.config.url(),
            reason: format!("{op} failed in etcd: {e}"),
        }
    }

    fn runtime(&self) -> Result<&StoreRuntime, RemoteError> {
        self.runtime.get().ok_or_else(|| RemoteError::Setup {
            reason: "the etcd store is not attached to a runtime".into(),
        })
    }

    /// The etcd lease this node attaches `owner`'s new bindings to, granted on first use.
    async fn lease_for(self: &Arc<Self>, owner: Option<RuntimeId>) -> Result<i64, RemoteError> {
        if let Some(id) = lock(&self.leases).granted.get(&owner) {
            return Ok(*id);
        }
        let mut lease = self.client.lease_client();
        let granted =
            tokio::time::timeout(REQUEST_TIMEOUT, lease.grant(self.config.ttl_secs(), None))
                .await
                .map_err(|_| self.etcd_error("lease grant", "timed out"))?
                .map_err(|e| self.etcd_error("lease grant", e))?;
        // Another bind for the same owner may have got there first: use its lease (ours
        // lapses unused). The keeper forgets a lease no binding uses.
        let id = *lock(&self.leases)
            .granted
            .entry(owner)
            .or_insert(granted.id());
        self.keep(id);
        Ok(id)
    }

    /// Starts a keeper for `lease` unless one runs.
    fn keep(self: &Arc<Self>, lease: i64) {
        if lease != 0 && lock(&self.leases).kept.insert(lease) {
            tokio::spawn(keep_lease(Arc::downgrade(self), lease));
        }
    }

    /// Records a binding this node wrote at `revision`.
    fn wrote(
        self: &Arc<Self>,
        name: String,
        object: AnyRemote,
        stored: StoredRef,
        lease: i64,
        revision: i64,
    ) {
        let mut cache = lock(&self.cache);
        let newer = cache
            .entries
            .get(&name)
            .is_some_and(|e| e.revision > revision);
        if !newer {
            cache.entries.insert(
                name,
                Entry {
                    stored,
                    revision,
                    lease,
                    handle: Some(object),
                },
            );
            self.changed();
        }
        drop(cache);
        self.keep(lease);
    }

    /// Applies a put seen through the watch.
    fn put(self: &Arc<Self>, cache: &mut Cache, name: String, kv: &etcd_client::KeyValue) {
        let revision = kv.mod_revision();
        if cache
            .entries
            .get(&name)
            .is_some_and(|e| e.revision >= revision)
        {
            return;
        }
        match StoredRef::from_bytes(kv.value()) {
            Ok(stored) => {
                cache.entries.insert(
                    name,
                    Entry {
                        stored,
                        revision,
                        lease: kv.lease(),
                        handle: None,
                    },
                );
                self.changed();
                self.keep(kv.lease());
            }
            Err(e) => {
                tracing::warn!(%name, error = %e, "ignored a binding that is not a stored reference")
            }
        }
    }

    fn delete(&self, cache: &mut Cache, name: &str) {
        if cache.entries.remove(name).is_some() {
            self.changed();
        }
    }

    /// Reads every binding afresh and replaces the cache; returns the revision read at.
    async fn resync(self: &Arc<Self>) -> Result<i64, String> {
        let mut kv = self.client.kv_client();
        let resp = tokio::time::timeout(
            REQUEST_TIMEOUT,
            kv.get(
                self.config.prefix.as_str(),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await
        .map_err(|_| "reading the bindings timed out".to_string())?
        .map_err(|e| format!("reading the bindings: {e}"))?;
        let revision = resp
            .header()
            .map(|h| h.revision())
            .ok_or("etcd's answer has no header")?;
        let mut leases = HashSet::new();
        {
            let mut cache = lock(&self.cache);
            let mut fresh = BTreeMap::new();
            for kv in resp.kvs() {
                let Some(name) = kv
                    .key_str()
                    .ok()
                    .and_then(|k| k.strip_prefix(self.config.prefix.as_str()))
                else {
                    continue;
                };
                // An unchanged binding keeps the handle made for it.
                let keep = cache
                    .entries
                    .remove(name)
                    .filter(|e| e.revision == kv.mod_revision());
                let entry = match keep {
                    Some(e) => e,
                    None => match StoredRef::from_bytes(kv.value()) {
                        Ok(stored) => Entry {
                            stored,
                            revision: kv.mod_revision(),
                            lease: kv.lease(),
                            handle: None,
                        },
                        Err(_) => continue,
                    },
                };
                leases.insert(entry.lease);
                fresh.insert(name.to_string(), entry);
            }
            cache.entries = fresh;
        }
        for lease in leases {
            self.keep(lease);
        }
        self.changed();
        Ok(revision)
    }
}

/// Reads the bindings, then follows the watch; after a lost watch, marks the store stale and
/// starts over (resync). Ends when the store is dropped.
async fn watch_loop(weak: Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let revision = match shared.resync().await {
            Ok(r) => r,
            Err(e) => {
                shared.set_health(None, Some(false), Some(format!("{e}; retrying")));
                drop(shared);
                tokio::time::sleep(PROBE_PERIOD).await;
                continue;
            }
        };
        let mut watch = shared.client.watch_client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = tokio::time::timeout(
            REQUEST_TIMEOUT,
            watch.watch(shared.config.prefix.as_str(), Some(options)),
        )
        .await;
        let mut stream = match stream {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.set_health(None, Some(false), Some(format!("watch: {e}; retrying")));
                drop(shared);
                tokio::time::sleep(PROBE_PERIOD).await;
                continue;
            }
            Err(_) => {
                shared.set_health(None, Some(false), Some("watch: timed out; retrying".into()));
                drop(shared);
                tokio::time::sleep(PROBE_PERIOD).await;
                continue;
            }
        };
        shared.set_health(
            Some(true),
            Some(true),
            Some(format!(
                "cache current (read at revision {revision}, watch live)"
            )),
        );
        drop(shared);
        let lost = loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if weak.strong_count() == 0 { return }
                    continue;
                }
            };
            let Some(shared) = weak.upgrade() else { return };
            match msg {
                Ok(Some(resp)) => {
                    if resp.canceled() || resp.compact_revision() > 0 {
                        break format!(
                            "watch cancelled ({}; compacted at {})",
                            resp.cancel_reason(),
                            resp.compact_revision()
                        );
                    }
                    let mut cache = lock(&shared.cache);
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let Some(name) = kv
                            .key_str()
                            .ok()
                            .and_then(|k| k.strip_prefix(shared.config.prefix.as_str()))
                        else {
                            continue;
                        };
                        match ev.event_type() {
                            EventType::Put => shared.put(&mut cache, name.to_string(), kv),
                            EventType::Delete => shared.delete(&mut cache, name),
                        }
                    }
                }
                Ok(None) => break "etcd ended the watch".into(),
                Err(e) => break format!("watch lost: {e}"),
            }
        };
        if let Some(shared) = weak.upgrade() {
            shared.set_health(
                None,
                Some(false),
                Some(format!(
                    "{lost}; lookups answered from the cache, resyncing"
                )),
            );
        }
        tokio::time::sleep(PROBE_PERIOD).await;
    }
}

/// Checks every `PROBE_PERIOD` that etcd answers a read. Ends when the store is dropped.
async fn probe_loop(weak: Weak<Shared>) {
    loop {
        tokio::time::sleep(PROBE_PERIOD).await;
        let Some(shared) = weak.upgrade() else { return };
        let mut kv = shared.client.kv_client();
        let probe = tokio::time::timeout(
            REQUEST_TIMEOUT,
            kv.get(
                shared.config.prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            ),
        )
        .await;
        match probe {
            Ok(Ok(_)) => shared.set_health(Some(true), None, None),
            Ok(Err(e)) => {
                shared.set_health(Some(false), None, Some(format!("etcd unreachable: {e}")))
            }
            Err(_) => shared.set_health(Some(false), None, Some("etcd does not answer".into())),
        }
    }
}

/// Keeps `lease` alive while bindings on it are in the cache and their owner answers this
/// node's pings. Stops when no binding uses it any more, or when etcd says it expired; skips a
/// renewal while the owner does not answer (its bindings lapse after the TTL unless another
/// node still reaches the owner).
async fn keep_lease(weak: Weak<Shared>, lease: i64) {
    let period = match weak.upgrade() {
        Some(shared) => Duration::from_secs(shared.config.ttl_secs() as u64) / 3,
        None => return,
    };
    let mut keeper = None;
    let mut owner_silent = false;
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = weak.upgrade() else { return };
        let bound = lock(&shared.cache)
            .entries
            .values()
            .find(|e| e.lease == lease)
            .map(|e| e.stored.clone());
        let Some(stored) = bound else {
            shared.forget_lease(lease);
            tracing::debug!(lease, "no binding left on the lease: no longer renewed");
            return;
        };
        let Ok(rt) = shared.runtime().cloned() else {
            continue;
        };
        match rt.ping(&stored, period).await {
            Ok(()) if owner_silent => {
                tracing::info!(owner = ?stored.owner(), "the owner answers again: its bindings are kept");
                owner_silent = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !owner_silent {
                    tracing::warn!(owner = ?stored.owner(), error = %e, "the owner does not answer: its bindings lapse unless it returns");
                    owner_silent = true;
                }
                continue;
            }
        }
        if keeper.is_none() {
            let mut client = shared.client.lease_client();
            match tokio::time::timeout(REQUEST_TIMEOUT, client.keep_alive(lease)).await {
                Ok(Ok(k)) => keeper = Some(k),
                Ok(Err(e)) => {
                    tracing::debug!(lease, error = %e, "cannot open the lease's keep-alive");
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some((k, stream)) = keeper.as_mut() else {
            continue;
        };
        let renewed = async {
            k.keep_alive().await?;
            stream.message().await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, renewed).await {
            Ok(Ok(Some(resp))) if resp.ttl() <= 0 => {
                // etcd forgot the lease (nobody renewed it in time): its keys are gone and the
                // watch removes them; the owner must bind again.
                tracing::warn!(lease, owner = ?stored.owner(), "the lease expired: its bindings are gone");
                shared.forget_lease(lease);
                return;
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => keeper = None,
        }
    }
}

impl Shared {
    /// `bind` (`exclusive`: a transaction that puts only if the key does not exist) or
    /// `rebind` (a put).
    async fn write(
        self: &Arc<Self>,
        name: String,
        object: AnyRemote,
        exclusive: bool,
    ) -> Result<(), RemoteError> {
        let op = if exclusive { "bind" } else { "rebind" };
        self.check_healthy(op)?;
        let stored = self.runtime()?.stored_ref(&object)?;
        let key = self.key(&name);
        // Twice at most: a lease this node granted may have expired unseen (etcd down longer
        // than its TTL); the second attempt is on a fresh one.
        let mut attempt = 0;
        let (lease, resp) = loop {
            attempt += 1;
            let lease = self.lease_for(stored.owner()).await?;
            let put = TxnOp::put(
                key.clone(),
                stored.to_bytes(),
                Some(PutOptions::new().with_lease(lease)),
            );
            let txn = if exclusive {
                Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([put])
            } else {
                Txn::new().and_then([put])
            };
            let mut kv = self.client.kv_client();
            match tokio::time::timeout(REQUEST_TIMEOUT, kv.txn(txn)).await {
                Err(_) => return Err(self.etcd_error(op, "timed out")),
                Ok(Ok(resp)) => break (lease, resp),
                Ok(Err(e)) if attempt == 1 && e.to_string().contains("lease not found") => {
                    self.forget_lease(lease);
                }
                Ok(Err(e)) => return Err(self.etcd_error(op, e)),
            }
        };
        if !resp.succeeded() {
            return Err(RemoteError::AlreadyBound { name });
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        tracing::info!(%name, interface = object.interface(), revision, "{op} in etcd");
        self.wrote(name, object, stored, lease, revision);
        Ok(())
    }

    /// Stops renewing `lease`, and stops attaching new bindings to it.
    fn forget_lease(&self, lease: i64) {
        let mut leases = lock(&self.leases);
        leases.kept.remove(&lease);
        leases.granted.retain(|_, l| *l != lease);
    }
}

#[async_trait::async_trait]
impl RegistryStore for EtcdStore {
    fn attach(&self, runtime: StoreRuntime) {
        let _ = self.shared.runtime.set(runtime);
    }

    async fn bind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.shared.write(name, object, true).await
    }

    async fn rebind(&self, name: String, object: AnyRemote) -> Result<(), RemoteError> {
        self.shared.write(name, object, false).await
    }

    async fn unbind(&self, name: String) -> Result<(), RemoteError> {
        let s = &self.shared;
        s.check_healthy("unbind")?;
        let mut kv = s.client.kv_client();
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, kv.delete(s.key(&name), None))
            .await
            .map_err(|_| s.etcd_error("unbind", "timed out"))?
            .map_err(|e| s.etcd_error("unbind", e))?;
        if resp.deleted() == 0 {
            return Err(RemoteError::NotBound { name });
        }
        tracing::info!(%name, "unbound in etcd");
        s.delete(&mut lock(&s.cache), &name);
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<AnyRemote, RemoteError> {
        let s = &self.shared;
        let mut cache = lock(&s.cache);
        let entry = cache
            .entries
            .get_mut(name)
            .ok_or_else(|| RemoteError::NotBound { name: name.into() })?;
        if let Some(h) = &entry.handle {
            return Ok(h.clone());
        }
        let handle = s.runtime()?.import(&entry.stored)?;
        entry.handle = Some(handle.clone());
        Ok(handle)
    }

    fn list(&self) -> Vec<Binding> {
        lock(&self.shared.cache)
            .entries
            .iter()
            .map(|(name, e)| Binding {
                name: name.clone(),
                interface: e.stored.interface().to_string(),
            })
            .collect()
    }

    fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    fn local_objects(&self) -> Vec<AnyRemote> {
        lock(&self.shared.cache)
            .entries
            .values()
            .filter_map(|e| e.handle.as_ref().filter(|h| h.is_local()).cloned())
            .collect()
    }

    fn status(&self) -> StoreStatus {
        let s = &self.shared;
        let bindings = lock(&s.cache).entries.len() as u64;
        let h = lock(&s.health);
        let healthy = h.reachable && h.watching;
        let detail = if healthy {
            h.detail.clone()
        } else {
            format!("{} (for {} s)", h.detail, h.since.elapsed().as_secs())
        };
        StoreStatus {
            store: format!("{} prefix {}", s.config.url(), s.config.prefix),
            healthy,
            stale: !h.watching,
            detail,
            bindings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_lists_etcd_endpoints() {
        let c = EtcdConfig::from_url("etcd://10.0.0.1:2379, 10.0.0.2:2379/").unwrap();
        assert_eq!(c.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.url(), "etcd://10.0.0.1:2379,10.0.0.2:2379");
        assert!(EtcdConfig::from_url("etcd://").is_err());
        assert!(EtcdConfig::from_url("tcp://10.0.0.1:2379").is_err());
    }
}
