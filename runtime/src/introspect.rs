//! Introspection: what a runtime exports, who keeps each object alive, what it holds of others,
//! and its connections. Every runtime serves [`Introspect`] under a well-known id, so
//! `oxrmi ipcs ENDPOINT` (like `ipcs -a`) can ask any of them.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::id::{IdMap, ObjId};
use crate::runtime::RuntimeInner;
use crate::types::InterfaceTypes;
use crate::{Remote, RemoteError, remote};

/// The introspection interface every runtime serves.
#[remote(name = "oxrmi.Introspect")]
pub trait Introspect: Send + Sync {
    /// A snapshot of the runtime's objects, leases, holdings and connections.
    async fn report(&self) -> Result<Report, RemoteError>;
    /// The interfaces the runtime serves: those of its exported objects and of the local
    /// objects bound in its registry (its lease and bootstrap machinery left out).
    async fn interfaces(&self) -> Result<Vec<String>, RemoteError>;
    /// The shapes of everything `interface`'s methods exchange, from which `oxrmi proto` writes
    /// a `.proto`; the runtime must serve the interface.
    async fn describe(&self, interface: String) -> Result<InterfaceTypes, RemoteError>;
}

/// A snapshot of one runtime.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The runtime's id.
    pub runtime: String,
    /// Its endpoints.
    pub endpoints: Vec<String>,
    /// The lease it grants on its objects, in milliseconds.
    pub lease_ms: u64,
    /// The objects it exports.
    pub objects: Vec<ObjectReport>,
    /// Other runtimes' objects it holds handles to.
    pub holdings: Vec<HoldingReport>,
    /// Its connections.
    pub connections: Vec<ConnectionReport>,
    /// Lease renewals received from holders since start.
    pub renewals_received: u64,
    /// Release messages received from holders since start.
    pub releases_received: u64,
}

/// One exported object and who keeps it alive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectReport {
    /// Its id.
    pub id: u64,
    /// Its interface.
    pub interface: String,
    /// Handles to it in its own process, besides the export table's.
    pub local_handles: u64,
    /// Whether it is a well-known object, exported for the life of the runtime.
    pub pinned: bool,
    /// The remote runtimes holding a lease on it.
    pub holders: Vec<HolderReport>,
}

/// A remote runtime's lease on an object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HolderReport {
    /// The holding runtime.
    pub runtime: String,
    /// References sent to it and not yet released.
    pub references: u64,
    /// Time left before its lease expires unless renewed.
    pub expires_in_ms: u64,
}

/// A handle this runtime holds to another runtime's object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HoldingReport {
    /// The owner.
    pub owner: String,
    /// The object's id there.
    pub object: u64,
    /// Its interface.
    pub interface: String,
    /// References received under the current lease.
    pub references: u64,
    /// Handles in this process.
    pub handles: u64,
}

/// One connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionReport {
    /// The peer runtime.
    pub peer: String,
    /// The peer's transport address.
    pub address: String,
    /// Calls of ours waiting for a reply.
    pub calls_in_flight: u64,
    /// Calls of the peer's being served now.
    pub serving: u64,
    /// Calls sent since the connection opened.
    pub calls_sent: u64,
    /// Calls served since the connection opened.
    pub calls_served: u64,
    /// The transport (`tcp`, `tls`, `unix`, `fifo`, `shm`, `pipe`).
    #[serde(default)]
    pub transport: String,
    /// Whether new calls to that peer take this connection (its cheapest live one).
    #[serde(default)]
    pub preferred: bool,
}

/// The introspection service of one runtime.
pub(crate) struct IntrospectEndpoint {
    pub(crate) rt: Weak<RuntimeInner>,
}

#[remote]
impl Introspect for IntrospectEndpoint {
    async fn report(&self) -> Result<Report, RemoteError> {
        let rt = self.rt.upgrade().ok_or(RemoteError::Shutdown)?;
        Ok(report(&rt))
    }

    async fn interfaces(&self) -> Result<Vec<String>, RemoteError> {
        let rt = self.rt.upgrade().ok_or(RemoteError::Shutdown)?;
        Ok(crate::types::served(&rt)
            .into_iter()
            .map(|(s, _)| s.name.to_string())
            .collect())
    }

    async fn describe(&self, interface: String) -> Result<InterfaceTypes, RemoteError> {
        let rt = self.rt.upgrade().ok_or(RemoteError::Shutdown)?;
        crate::types::of_served(&rt, &interface)
    }
}

/// The report of `rt`.
pub(crate) fn report(rt: &RuntimeInner) -> Report {
    // Who holds each object, gathered once: a report on a runtime holding many objects for many
    // peers stays linear.
    let mut holders: IdMap<ObjId, Vec<HolderReport>> = IdMap::default();
    for h in rt.leases.view() {
        for (object, references) in h.objects {
            holders.entry(object).or_default().push(HolderReport {
                runtime: h.runtime.to_string(),
                references,
                expires_in_ms: h.expires_in_ms,
            });
        }
    }
    let objects = rt
        .objects
        .view()
        .into_iter()
        .map(|o| ObjectReport {
            id: o.id.0,
            interface: o.interface,
            local_handles: o.local_handles as u64,
            pinned: o.pinned,
            holders: holders.remove(&o.id).unwrap_or_default(),
        })
        .collect();
    let holdings = rt
        .holdings
        .live()
        .into_iter()
        .map(|stub| {
            let t = stub.target();
            let (_, references) = stub.receipts().unwrap_or_default();
            HoldingReport {
                owner: t.runtime.map(|r| r.to_string()).unwrap_or_default(),
                object: t.object.0,
                interface: t.interface.clone(),
                references,
                // The report's own temporary reference is not a handle.
                handles: (std::sync::Arc::strong_count(&stub) as u64).saturating_sub(1),
            }
        })
        .collect();
    let connections = rt
        .conns
        .all()
        .into_iter()
        .map(|c| {
            let i = c.info();
            ConnectionReport {
                peer: i.peer.to_string(),
                address: i.peer_addr.to_string(),
                calls_in_flight: c.in_flight() as u64,
                serving: c.serving() as u64,
                calls_sent: i.calls_sent.load(Ordering::Relaxed),
                calls_served: i.calls_served.load(Ordering::Relaxed),
                transport: i.scheme.to_string(),
                preferred: rt.conns.connection(i.peer).is_some_and(|p| p.same(&c)),
            }
        })
        .collect();
    Report {
        runtime: rt.id.to_string(),
        endpoints: rt.endpoints.iter().map(ToString::to_string).collect(),
        lease_ms: rt.leases.duration().as_millis() as u64,
        objects,
        holdings,
        connections,
        renewals_received: rt.leases.renewals.load(Ordering::Relaxed),
        releases_received: rt.leases.releases.load(Ordering::Relaxed),
    }
}

/// A handle to the introspection service of the runtime at `endpoint`, through the process-wide
/// default runtime.
pub fn locate(endpoint: &Endpoint) -> Remote<dyn Introspect> {
    crate::naming::default_runtime().introspect_at(endpoint)
}
