//! Distributed lifetimes: leases.
//!
//! **Owner side** ([`LeaseTable`]): for every holder runtime, a lease (an epoch and an expiry)
//! and, per object, how many references to it were *sent* to that holder. An object stays
//! exported while some holder counts it; when the last count goes, the object table lets go of it
//! and its `Drop` runs unless local handles remain.
//!
//! **Holder side** ([`Holdings`]): one stub per (owner, object) per process counts the references
//! it *received*; when its last handle drops, it releases that many ([`LeaseService::release`]).
//! Holders renew one lease per owner runtime every quarter of that owner's lease (at the first
//! housekeeping round after it), however many handles they hold ([`LeaseService::renew`]); a
//! holder that stops renewing (crashed, cut off) loses everything when its lease expires.
//!
//! Why nothing is freed early (the argument, also in ARCHITECTURE.md): the owner's count for a
//! holder is "sent", the holder's release is "received", so a reference still in flight is in the
//! first and not yet in the second and keeps the count above zero, whatever the order messages
//! arrive in. A release carries the epoch of the lease it was counted under, so a release from
//! before an expiry cannot touch counts made after it. A reference forwarded by a third party is
//! not counted by the owner: the receiver acquires its own lease from the owner at once
//! ([`LeaseService::acquire`]) and then tells the forwarder ([`LeaseService::transit_done`]),
//! which keeps its own handle (and so its own lease) alive until then. If the receiver dies
//! before telling, the forwarder lets go after [`TRANSIT_HOLD_LEASES`] of the owner's leases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::id::{IdMap, ObjId, RuntimeId};
use crate::object::ObjectTable;
use crate::remote::Exported;
use crate::runtime::RuntimeInner;
use crate::stub::StubHandle;
use crate::{Caller, RemoteError, remote};

/// The default lease: long enough that renewals (three per lease, per peer) cost nothing and a
/// stalled peer is not dropped for a hiccup; short enough that a crashed client's objects go
/// within a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How many of the owner's leases a forwarder keeps a forwarded handle at most, waiting for the
/// receiver's `transit_done`: only a receiver that died mid-way makes the wait run out, and a
/// longer one would only keep the object longer.
pub(crate) const TRANSIT_HOLD_LEASES: u32 = 10;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One release: `count` references to `object`, counted under lease `epoch`. **Wire type.**
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Released {
    /// The object.
    pub(crate) object: ObjId,
    /// How many references the holder received (and now gives back).
    pub(crate) count: u64,
    /// The lease they were counted under.
    pub(crate) epoch: u64,
}

/// The lease service every runtime serves under a well-known id: the distributed garbage
/// collector's interface, called by runtimes, not by users.
#[remote(name = "oxrmi.Leases")]
pub(crate) trait LeaseService: Send + Sync {
    /// The caller received a reference to `object` from a third party: count it for the caller
    /// as if sent to it. Returns the caller's lease epoch.
    async fn acquire(&self, object: ObjId) -> Result<u64, RemoteError>;
    /// The caller dropped every handle to these objects.
    #[oneway]
    async fn release(&self, released: Vec<Released>) -> Result<(), RemoteError>;
    /// The caller still holds what it holds.
    #[oneway]
    async fn renew(&self) -> Result<(), RemoteError>;
    /// The caller received references this runtime forwarded (their transit tokens) and has
    /// its own lease on them now: this runtime may let go of the handles it kept for them.
    #[oneway]
    async fn transit_done(&self, tokens: Vec<u64>) -> Result<(), RemoteError>;
}

/// A holder's lease at this owner.
struct Holder {
    /// Changes when the lease is created anew after an expiry; releases must carry it.
    epoch: u64,
    expires: Instant,
    /// References sent to this holder, per object, minus those it released.
    objects: IdMap<ObjId, u64>,
}

/// What one holder holds, for introspection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HolderView {
    pub(crate) runtime: RuntimeId,
    pub(crate) epoch: u64,
    pub(crate) expires_in_ms: u64,
    pub(crate) objects: Vec<(ObjId, u64)>,
}

/// The owner side: who holds which of this runtime's objects.
pub(crate) struct LeaseTable {
    holders: Mutex<IdMap<RuntimeId, Holder>>,
    next_epoch: AtomicU64,
    duration: Duration,
    /// Most objects one holder may hold leases on.
    max_per_holder: usize,
    /// Renewals received, for introspection (and the test that renewals are batched).
    pub(crate) renewals: AtomicU64,
    /// Release messages received.
    pub(crate) releases: AtomicU64,
}

impl LeaseTable {
    pub(crate) fn new(duration: Duration, max_per_holder: usize) -> Self {
        LeaseTable {
            holders: Mutex::default(),
            next_epoch: AtomicU64::new(1),
            duration,
            max_per_holder,
            renewals: AtomicU64::new(0),
            releases: AtomicU64::new(0),
        }
    }

    pub(crate) fn duration(&self) -> Duration {
        self.duration
    }

    /// A reference to `id` goes to `peer`: count it. Returns the epoch to write in it, or
    /// `LimitExceeded` if `peer` holds leases on as many objects as it may already.
    pub(crate) fn sent(
        &self,
        objects: &ObjectTable,
        peer: RuntimeId,
        id: ObjId,
    ) -> Result<u64, RemoteError> {
        let mut holders = lock(&self.holders);
        let holder = holders.entry(peer).or_insert_with(|| Holder {
            epoch: self.next_epoch.fetch_add(1, Ordering::Relaxed),
            expires: Instant::now() + self.duration,
            objects: IdMap::default(),
        });
        if holder.objects.len() >= self.max_per_holder && !holder.objects.contains_key(&id) {
            let limit = self.max_per_holder as u64;
            if holder.objects.is_empty() {
                holders.remove(&peer);
            }
            tracing::warn!(%peer, limit, "refused to lease one more object to a holder at its limit");
            return Err(RemoteError::LimitExceeded {
                what: format!("the objects runtime {peer} holds leases on"),
                limit,
            });
        }
        let count = holder.objects.entry(id).or_insert(0);
        if *count == 0 {
            objects.add_holder(id);
        }
        *count += 1;
        Ok(holder.epoch)
    }

    /// `peer` gives back references; returns the objects no holder counts any more (to be dropped
    /// by the caller, outside every lock).
    pub(crate) fn released(
        &self,
        objects: &ObjectTable,
        peer: RuntimeId,
        released: &[Released],
    ) -> Vec<Arc<dyn Exported>> {
        self.releases.fetch_add(1, Ordering::Relaxed);
        let mut gone = Vec::new();
        let mut holders = lock(&self.holders);
        let Some(holder) = holders.get_mut(&peer) else {
            return gone;
        };
        for r in released {
            if r.epoch != holder.epoch {
                // Counted under a lease that expired since: those counts are gone already.
                continue;
            }
            let Some(count) = holder.objects.get_mut(&r.object) else {
                continue;
            };
            *count = count.saturating_sub(r.count);
            if *count == 0 {
                holder.objects.remove(&r.object);
                gone.extend(objects.remove_holder(r.object));
            }
        }
        if holder.objects.is_empty() {
            holders.remove(&peer);
        }
        gone
    }

    /// `peer` still holds its references.
    pub(crate) fn renewed(&self, peer: RuntimeId) {
        self.renewals.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = lock(&self.holders).get_mut(&peer) {
            h.expires = Instant::now() + self.duration;
        }
    }

    /// Drops the leases that expired; returns their holders and the objects nobody holds now.
    pub(crate) fn expire(&self, objects: &ObjectTable) -> (Vec<RuntimeId>, Vec<Arc<dyn Exported>>) {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        let mut holders = lock(&self.holders);
        holders.retain(|rt, h| {
            if h.expires > now {
                return true;
            }
            expired.push(*rt);
            for id in h.objects.keys() {
                gone.extend(objects.remove_holder(*id));
            }
            false
        });
        (expired, gone)
    }

    /// Every holder and what it holds.
    pub(crate) fn view(&self) -> Vec<HolderView> {
        let now = Instant::now();
        lock(&self.holders)
            .iter()
            .map(|(rt, h)| HolderView {
                runtime: *rt,
                epoch: h.epoch,
                expires_in_ms: h.expires.saturating_duration_since(now).as_millis() as u64,
                objects: h.objects.iter().map(|(id, n)| (*id, *n)).collect(),
            })
            .collect()
    }
}

/// The lease service of one runtime.
pub(crate) struct LeaseEndpoint {
    pub(crate) rt: Weak<RuntimeInner>,
}

impl LeaseEndpoint {
    fn caller_and_runtime(&self) -> Result<(RuntimeId, Arc<RuntimeInner>), RemoteError> {
        let caller = Caller::current().ok_or_else(|| RemoteError::AccessDenied {
            reason: "the lease service is for remote runtimes".into(),
        })?;
        let rt = self.rt.upgrade().ok_or(RemoteError::Shutdown)?;
        Ok((caller.runtime(), rt))
    }
}

#[remote]
impl LeaseService for LeaseEndpoint {
    async fn acquire(&self, object: ObjId) -> Result<u64, RemoteError> {
        let (peer, rt) = self.caller_and_runtime()?;
        if rt.objects.get(object).is_none() {
            return Err(RemoteError::NoSuchObject {
                object: object.to_string(),
            });
        }
        rt.leases.sent(&rt.objects, peer, object)
    }

    async fn release(&self, released: Vec<Released>) -> Result<(), RemoteError> {
        let (peer, rt) = self.caller_and_runtime()?;
        let gone = rt.leases.released(&rt.objects, peer, &released);
        if !gone.is_empty() {
            tracing::debug!(%peer, objects = gone.len(), "released by their last holder");
        }
        drop(gone);
        Ok(())
    }

    async fn renew(&self) -> Result<(), RemoteError> {
        let (peer, rt) = self.caller_and_runtime()?;
        rt.leases.renewed(peer);
        Ok(())
    }

    async fn transit_done(&self, tokens: Vec<u64>) -> Result<(), RemoteError> {
        let (_, rt) = self.caller_and_runtime()?;
        let ended = rt.holdings.end_transit(&tokens);
        // Dropped outside the lock: a drop may queue a release.
        drop(ended);
        Ok(())
    }
}

/// The holder side: this runtime's stubs of other runtimes' objects, the releases waiting to be
/// sent, and the handles kept alive while a forwarded reference is in transit.
#[derive(Default)]
pub(crate) struct Holdings {
    /// One stub per (owner, object), so every handle in this process shares one count.
    pub(crate) imports:
        Mutex<std::collections::HashMap<(RuntimeId, ObjId), Weak<crate::stub::StubInner>>>,
    /// Releases per owner, sent by one task per owner.
    pending: Mutex<IdMap<RuntimeId, PendingReleases>>,
    /// Handles kept alive after being forwarded to a third party, by transit token, until the
    /// receiver says it has its own lease (or the deadline, if it never does).
    transit: Mutex<IdMap<u64, (Instant, StubHandle)>>,
    next_transit: AtomicU64,
    /// When each owner was last sent a renewal.
    renewed: Mutex<IdMap<RuntimeId, Instant>>,
    /// Per peer runtime, how many of the stubs in `imports` came from references it sent.
    pub(crate) introduced: Mutex<IdMap<RuntimeId, usize>>,
}

struct PendingReleases {
    endpoints: Vec<String>,
    released: Vec<Released>,
}

impl Holdings {
    /// Queues a release for `owner`; the first one queued starts a task that sends the batch.
    pub(crate) fn release(
        rt: &Arc<RuntimeInner>,
        owner: RuntimeId,
        endpoints: &[String],
        r: Released,
    ) {
        let first = {
            let mut pending = lock(&rt.holdings.pending);
            match pending.get_mut(&owner) {
                Some(p) => {
                    p.released.push(r);
                    false
                }
                None => {
                    pending.insert(
                        owner,
                        PendingReleases {
                            endpoints: endpoints.to_vec(),
                            released: vec![r],
                        },
                    );
                    true
                }
            }
        };
        if first {
            let rt2 = rt.clone();
            rt.handle.spawn(async move {
                // Let the drops of this moment join the batch.
                tokio::task::yield_now().await;
                let Some(batch) = lock(&rt2.holdings.pending).remove(&owner) else {
                    return;
                };
                let service = lease_service(&rt2, owner, batch.endpoints);
                if let Err(e) = service.release(batch.released).await {
                    // The owner will let the lease expire instead.
                    tracing::debug!(%owner, error = %e, "release not delivered");
                }
            });
        }
    }

    /// Keeps `handle` alive while it is in transit to a third party; returns the token the
    /// receiver gives back in `transit_done`. `owner_lease` bounds the wait.
    pub(crate) fn hold_in_transit(&self, handle: StubHandle, owner_lease: Duration) -> u64 {
        // Tokens start at 1: 0 on the wire means "not in transit".
        let token = self.next_transit.fetch_add(1, Ordering::Relaxed) + 1;
        let deadline = Instant::now() + owner_lease * TRANSIT_HOLD_LEASES;
        lock(&self.transit).insert(token, (deadline, handle));
        token
    }

    /// The receiver has its own lease: lets go of these holds. Returns the handles, for the
    /// caller to drop outside the lock.
    fn end_transit(&self, tokens: &[u64]) -> Vec<StubHandle> {
        let mut t = lock(&self.transit);
        tokens
            .iter()
            .filter_map(|k| t.remove(k))
            .map(|(_, h)| h)
            .collect()
    }

    /// Releases, now and without waiting, everything this runtime holds of others' objects and
    /// every release still queued, over the connections open to their owners. For shutdown: a
    /// process that ends right after does not leave its owners waiting a lease.
    pub(crate) fn release_all(rt: &Arc<RuntimeInner>) {
        let mut by_owner: IdMap<RuntimeId, Vec<Released>> = IdMap::default();
        for (owner, p) in lock(&rt.holdings.pending).drain() {
            by_owner.entry(owner).or_default().extend(p.released);
        }
        let transit: Vec<(Instant, StubHandle)> =
            lock(&rt.holdings.transit).drain().map(|(_, v)| v).collect();
        let live = rt.holdings.live();
        for stub in &live {
            if let (Some(owner), Some(r)) = (stub.target().runtime, stub.take_receipts()) {
                by_owner.entry(owner).or_default().push(r);
            }
        }
        for (owner, released) in by_owner {
            let Some(conn) = rt.conns.connection(owner) else {
                // No connection: the owner's lease runs out instead.
                continue;
            };
            let mut args = Vec::new();
            let encoded = rmp::encode::write_array_len(&mut args, 1).is_ok()
                && rmp_serde::encode::write(&mut args, &released).is_ok();
            if !encoded || !conn.send_oneway_now(ObjId::LEASES, "release", &args) {
                tracing::debug!(%owner, "release at shutdown not sent; the lease will expire");
            }
        }
        // Dropped outside every lock; their receipts are taken, so their Drops release nothing.
        drop(live);
        drop(transit);
    }

    /// Lets go of transit holds whose receiver never answered.
    fn drop_expired_transit(&self) {
        let now = Instant::now();
        let expired: Vec<(Instant, StubHandle)> = {
            let mut t = lock(&self.transit);
            let tokens: Vec<u64> = t
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(k, _)| *k)
                .collect();
            tokens.iter().filter_map(|k| t.remove(k)).collect()
        };
        // Dropped outside the lock: a drop may queue a release.
        drop(expired);
    }

    /// The owners this runtime holds live objects of, with where to reach them.
    fn owners(&self) -> Vec<(RuntimeId, Vec<String>)> {
        // Upgraded under the lock, dropped after it: the last handle to a stub may go while we
        // look, and its Drop takes this lock.
        let live = self.live();
        let mut owners: IdMap<RuntimeId, Vec<String>> = IdMap::default();
        for stub in &live {
            if let Some(owner) = stub.target().runtime {
                owners
                    .entry(owner)
                    .or_insert_with(|| stub.target().endpoints.clone());
            }
        }
        drop(live);
        owners.into_iter().collect()
    }

    /// How many stubs are alive, for introspection.
    pub(crate) fn live(&self) -> Vec<Arc<crate::stub::StubInner>> {
        lock(&self.imports)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

/// A handle to `owner`'s lease service.
pub(crate) fn lease_service(
    rt: &Arc<RuntimeInner>,
    owner: RuntimeId,
    endpoints: Vec<String>,
) -> crate::Remote<dyn LeaseService> {
    crate::Remote::from_stub(StubHandle::well_known(
        rt.clone(),
        owner,
        ObjId::LEASES,
        <dyn LeaseService as crate::Interface>::NAME,
        endpoints,
    ))
}

/// The runtime's lease housekeeping, one task: renew what we hold, expire who stopped renewing,
/// let go of transit holds. Ends when the runtime is dropped or shut down.
pub(crate) async fn housekeeping(rt: Weak<RuntimeInner>, period: Duration) {
    // The first round at once, then one `period` after the end of each (a late round delays
    // the next rather than bunching them). Slept on the process's own timers, not tokio's, so
    // an idle runtime waits without a timeout armed (see `timer`).
    let mut next = std::time::Instant::now();
    loop {
        crate::timer::sleep_until(next).await;
        let Some(rt) = rt.upgrade() else { return };
        if rt.is_shut_down() {
            return;
        }
        // Renew: one message per owner per quarter of its lease, whatever the number of handles.
        let now = Instant::now();
        for (owner, endpoints) in rt.holdings.owners() {
            let owner_lease = rt
                .conns
                .peer_lease(owner)
                .unwrap_or_else(|| rt.leases.duration());
            {
                let mut renewed = lock(&rt.holdings.renewed);
                let last = renewed.entry(owner).or_insert(now);
                if now.saturating_duration_since(*last) < owner_lease / 4 {
                    continue;
                }
                *last = now;
            }
            let service = lease_service(&rt, owner, endpoints);
            rt.handle.spawn(async move {
                if let Err(e) = service.renew().await {
                    tracing::debug!(%owner, error = %e, "lease renewal not delivered");
                }
            });
        }
        // Expire: holders that stopped renewing lose what they held.
        let (expired, gone) = rt.leases.expire(&rt.objects);
        for holder in &expired {
            tracing::info!(%holder, "lease expired; its references are released");
        }
        drop(gone);
        rt.objects.sweep();
        rt.holdings.drop_expired_transit();
        // Names bound by URL in a registry that restarted are bound again.
        crate::registry::OwnedNames::check(&rt);
        next = std::time::Instant::now() + period;
    }
}
