//! The client side of a call: [`StubHandle`] is what a generated stub holds. It finds (or
//! opens) the connection to the object's owner, sends the call under its deadline and decodes
//! the reply.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;

use crate::RemoteError;
use crate::connection::{Connection, Received};
use crate::context;
use crate::id::{ObjId, RuntimeId};
use crate::lease::{self, Holdings, Released};
use crate::marshal::{self, ArgsEncoder, MarshalCtx};
use crate::message::{Status, flags};
use crate::remote::{HandleIdentity, ObjRef};
use crate::runtime::RuntimeInner;

/// The link from a generated client stub to the remote object it stands for.
#[doc(hidden)]
#[derive(Clone)]
pub struct StubHandle {
    inner: Arc<StubInner>,
}

/// The state behind every handle this process has to one remote object.
pub(crate) struct StubInner {
    rt: Arc<RuntimeInner>,
    target: ObjRef,
    /// The connection last used; replaced when it closes.
    conn: Mutex<Option<Connection>>,
    /// Our lease on the object: how many references we received under which epoch. `None` for
    /// objects that are not leased (well-known ones).
    lease: Option<Mutex<Receipts>>,
    /// The peer whose reference made this stub, counted in `Holdings::introduced` while the
    /// stub lives.
    introducer: Option<RuntimeId>,
}

/// References received from the owner, under one lease epoch.
#[derive(Default)]
struct Receipts {
    epoch: u64,
    received: u64,
}

impl Receipts {
    /// Counts one reference received under `epoch`. A newer epoch means the owner lost our old
    /// lease (it expired): the old counts are void there, so they are here.
    fn count(&mut self, epoch: u64) {
        if epoch == 0 {
            return;
        }
        match epoch.cmp(&self.epoch) {
            std::cmp::Ordering::Equal => self.received += 1,
            std::cmp::Ordering::Greater => {
                self.epoch = epoch;
                self.received = 1;
            }
            std::cmp::Ordering::Less => {}
        }
    }
}

/// Tells `forwarder` that the reference it sent with `token` is covered by our own lease now.
fn transit_done(rt: &Arc<RuntimeInner>, forwarder: RuntimeId, token: u64) {
    // Over the connection the reference came on (found by runtime id): the forwarder may listen
    // nowhere.
    let service = lease::lease_service(rt, forwarder, Vec::new());
    rt.handle.spawn(async move {
        if let Err(e) = service.transit_done(vec![token]).await {
            tracing::debug!(%forwarder, error = %e, "transit not acknowledged; its hold times out");
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StubInner {
    pub(crate) fn target(&self) -> &ObjRef {
        &self.target
    }

    /// Gives up what this stub counts, for a release sent on its behalf (at shutdown): its Drop
    /// then releases nothing.
    pub(crate) fn take_receipts(&self) -> Option<Released> {
        let lease = self.lease.as_ref()?;
        let mut r = lock(lease);
        if r.received == 0 {
            return None;
        }
        let released = Released {
            object: self.target.object,
            count: r.received,
            epoch: r.epoch,
        };
        r.received = 0;
        Some(released)
    }

    /// The lease epoch and references received, for introspection.
    pub(crate) fn receipts(&self) -> Option<(u64, u64)> {
        self.lease.as_ref().map(|l| {
            let r = lock(l);
            (r.epoch, r.received)
        })
    }
}

impl Drop for StubInner {
    fn drop(&mut self) {
        if let Some(peer) = self.introducer {
            let mut introduced = lock(&self.rt.holdings.introduced);
            if let Some(n) = introduced.get_mut(&peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    introduced.remove(&peer);
                }
            }
        }
        let (Some(owner), Some(lease)) = (self.target.runtime, self.lease.as_ref()) else {
            return;
        };
        let key = (owner, self.target.object);
        {
            let mut imports = lock(&self.rt.holdings.imports);
            if imports
                .get(&key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), self as *const StubInner))
            {
                imports.remove(&key);
            }
        }
        let r = lock(lease);
        if r.received == 0 {
            return;
        }
        let released = Released {
            object: self.target.object,
            count: r.received,
            epoch: r.epoch,
        };
        drop(r);
        Holdings::release(&self.rt, owner, &self.target.endpoints, released);
    }
}

impl StubHandle {
    /// The handle for a reference read from the wire. `via` is the connection it arrived on: if
    /// it leads to the owner, calls use it (a callback needs no listening port on the owner's
    /// side) and the reference counts in our lease; a reference from a third party is acquired
    /// from the owner. A peer may have made at most `max_handles_per_peer` of this runtime's
    /// live stubs; beyond that its references are refused with `LimitExceeded`.
    pub(crate) fn import(
        rt: Arc<RuntimeInner>,
        target: ObjRef,
        via: Option<Connection>,
    ) -> Result<Self, RemoteError> {
        let Some(owner) = target
            .runtime
            .filter(|_| target.object.0 >= ObjId::FIRST_DYNAMIC)
        else {
            return Ok(Self::unleased(rt, target, via));
        };
        let from_owner = via.as_ref().is_some_and(|c| c.peer() == owner);
        // A forwarded reference: once we hold a lease of our own, the forwarder may let go.
        let forwarder = via
            .as_ref()
            .filter(|_| target.transit != 0 && !from_owner)
            .map(|c| (c.peer(), target.transit));
        let key = (owner, target.object);
        let mut imports = lock(&rt.holdings.imports);
        if let Some(inner) = imports.get(&key).and_then(Weak::upgrade) {
            drop(imports);
            if from_owner && let Some(lease) = &inner.lease {
                lock(lease).count(target.lease);
            }
            if let Some((forwarder, token)) = forwarder {
                // Our lease covers this copy already.
                transit_done(&rt, forwarder, token);
            }
            return Ok(StubHandle { inner });
        }
        let introducer = via.as_ref().map(Connection::peer);
        if let Some(peer) = introducer {
            let mut introduced = lock(&rt.holdings.introduced);
            let n = introduced.entry(peer).or_insert(0);
            let limit = rt.config.max_handles_per_peer;
            if *n >= limit {
                drop(introduced);
                tracing::warn!(%peer, limit, "refused a reference from a peer at its limit of handles");
                if from_owner && target.lease != 0 {
                    // The owner counted this reference for us: give it back at once.
                    let released = Released {
                        object: target.object,
                        count: 1,
                        epoch: target.lease,
                    };
                    Holdings::release(&rt, owner, &target.endpoints, released);
                }
                return Err(RemoteError::LimitExceeded {
                    what: format!(
                        "the handles this runtime holds from references runtime {peer} sent"
                    ),
                    limit: limit as u64,
                });
            }
            *n += 1;
        }
        let mut receipts = Receipts::default();
        if from_owner {
            receipts.count(target.lease);
        }
        let inner = Arc::new(StubInner {
            rt: rt.clone(),
            conn: Mutex::new(
                via.filter(|c| c.peer() == owner && rt.is_cheapest(c, &target.endpoints)),
            ),
            target,
            lease: Some(Mutex::new(receipts)),
            introducer,
        });
        imports.insert(key, Arc::downgrade(&inner));
        drop(imports);
        if !from_owner {
            // Forwarded by a third party, which keeps its handle until we have a lease of our
            // own. The task keeps the stub alive until then, so a release can only follow the
            // acquisition.
            let stub = inner.clone();
            rt.handle.spawn(async move {
                let t = &stub.target;
                let service = lease::lease_service(&stub.rt, owner, t.endpoints.clone());
                match service.acquire(t.object).await {
                    Ok(epoch) => {
                        if let Some(lease) = &stub.lease {
                            lock(lease).count(epoch);
                        }
                    }
                    Err(e) => tracing::debug!(object = %t, error = %e, "could not acquire a lease"),
                }
                if let Some((forwarder, token)) = forwarder {
                    transit_done(&stub.rt, forwarder, token);
                }
            });
        }
        Ok(StubHandle { inner })
    }

    /// A handle to an object outside lease accounting.
    fn unleased(rt: Arc<RuntimeInner>, target: ObjRef, via: Option<Connection>) -> Self {
        let conn = via
            .filter(|c| Some(c.peer()) == target.runtime && rt.is_cheapest(c, &target.endpoints));
        StubHandle {
            inner: Arc::new(StubInner {
                rt,
                target,
                conn: Mutex::new(conn),
                lease: None,
                introducer: None,
            }),
        }
    }

    /// A handle to a well-known object (registry, lease service) of a runtime, known or not.
    pub(crate) fn well_known(
        rt: Arc<RuntimeInner>,
        runtime: impl Into<Option<RuntimeId>>,
        object: ObjId,
        interface: &str,
        endpoints: Vec<String>,
    ) -> Self {
        let target = ObjRef {
            runtime: runtime.into(),
            object,
            interface: interface.to_string(),
            endpoints,
            lease: 0,
            transit: 0,
        };
        Self::unleased(rt, target, None)
    }

    pub(crate) fn target(&self) -> &ObjRef {
        &self.inner.target
    }

    /// Whether this handle holds a lease (a dynamic object of a known runtime).
    pub(crate) fn is_leased(&self) -> bool {
        self.inner.lease.is_some()
    }

    pub(crate) fn identity(&self) -> HandleIdentity {
        let t = &self.inner.target;
        let via = match t.runtime {
            Some(_) => None,
            None => t.endpoints.first().cloned(),
        };
        HandleIdentity::Remote(t.runtime, t.object, via)
    }

    fn cached(&self) -> Option<Connection> {
        lock(&self.inner.conn).clone().filter(|c| !c.is_closed())
    }

    async fn connection(&self) -> Result<Connection, RemoteError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let t = &self.inner.target;
        let c = self
            .inner
            .rt
            .connect(t.runtime, &t.endpoints, || t.to_string())
            .await?;
        *lock(&self.inner.conn) = Some(c.clone());
        Ok(c)
    }

    /// Starts a call of `method` with `n` arguments: fixes its deadline and finds the
    /// connection first, so a `Remote` among the arguments is counted as held by the peer that
    /// receives it, and the arguments are encoded straight into the call's frame.
    pub async fn args(&self, method: &str, n: usize) -> Result<ArgsEncoder, RemoteError> {
        let start = Instant::now();
        let deadline = context::deadline(start, self.inner.rt.config.call_timeout);
        let millis = deadline
            .saturating_duration_since(start)
            .as_micros()
            .div_ceil(1000) as u64;
        // The common case, a live cached connection, needs no timer. The dial is boxed: its
        // future is large, and every call's future would carry it otherwise.
        let (conn, left) = match self.cached() {
            Some(c) => (c, deadline.saturating_duration_since(start)),
            None => match tokio::time::timeout_at(deadline, Box::pin(self.connection())).await {
                // The dial took a while: the peer gets the time that is left now.
                Ok(c) => (c?, deadline.saturating_duration_since(Instant::now())),
                Err(_) => return Err(RemoteError::Timeout { millis }),
            },
        };
        let frame = conn.start_call(self.inner.target.object, method, left);
        let ctx = MarshalCtx {
            rt: self.inner.rt.clone(),
            conn: Some(conn),
        };
        Ok(ArgsEncoder::call(ctx, frame, n, deadline, millis))
    }

    async fn invoke(
        &self,
        args: ArgsEncoder,
        call_flags: u8,
    ) -> Result<(Received, Connection, u64), RemoteError> {
        let (frame, conn, deadline, millis) = args.finish()?;
        let work = conn.call(frame, call_flags);
        match crate::timer::timeout_at(deadline, work).await {
            Ok(r) => Ok((r?, conn, millis)),
            Err(_) => Err(RemoteError::Timeout { millis }),
        }
    }

    /// Calls `method` and waits for its result.
    pub async fn call<T, E>(&self, method: &'static str, args: ArgsEncoder) -> Result<T, E>
    where
        T: DeserializeOwned + Send,
        E: DeserializeOwned + From<RemoteError> + Send,
    {
        let span = tracing::debug_span!(
            "oxrmi.call",
            interface = %self.inner.target.interface,
            method,
            object = %self.inner.target.object,
            peer = tracing::field::Empty,
            transport = tracing::field::Empty,
            outcome = tracing::field::Empty,
            micros = tracing::field::Empty,
        );
        // With nobody listening (the common case in production), no span wraps the call: the
        // wrapper costs a copy of the whole call's future and a clock read per call.
        if span.is_disabled() {
            return self.call_inner(method, args).await;
        }
        let start = std::time::Instant::now();
        let r = self.call_inner(method, args).instrument(span.clone()).await;
        span.record("outcome", if r.is_ok() { "ok" } else { "error" });
        span.record("micros", start.elapsed().as_micros() as u64);
        r
    }

    async fn call_inner<T, E>(&self, method: &'static str, args: ArgsEncoder) -> Result<T, E>
    where
        T: DeserializeOwned + Send,
        E: DeserializeOwned + From<RemoteError> + Send,
    {
        let (received, conn, millis) = self.invoke(args, 0).await.map_err(E::from)?;
        let span = tracing::Span::current();
        span.record("peer", tracing::field::display(conn.peer()));
        span.record("transport", conn.info().scheme);
        let Received::Reply {
            status,
            frame,
            payload,
        } = received
        else {
            return Err(E::from(RemoteError::protocol("expected a reply")));
        };
        let ctx = MarshalCtx {
            rt: self.inner.rt.clone(),
            conn: Some(conn),
        };
        let bytes = &frame[payload..];
        match status {
            Status::Ok => {
                let r = marshal::decode_value(&ctx, bytes, || format!("the result of `{method}`"));
                // Decoded: the frame's buffer can take the next large frame.
                crate::buffers::recycle(frame);
                r.map_err(E::from)
            }
            Status::AppError => {
                Err(
                    marshal::decode_value(&ctx, bytes, || format!("the error of `{method}`"))
                        .map_err(E::from)?,
                )
            }
            Status::Failed => {
                let e: RemoteError =
                    marshal::decode_value(&ctx, bytes, || format!("the error of `{method}`"))
                        .map_err(E::from)?;
                // The server enforces the same deadline and may report it first, measured
                // from a slightly later start: the caller sees its own deadline either way.
                let e = match e {
                    RemoteError::Timeout { .. } => RemoteError::Timeout { millis },
                    e => e,
                };
                Err(E::from(e))
            }
        }
    }

    /// A call whose reply the caller decodes itself (the gRPC bridge, which knows the result's
    /// shape but not its Rust type): the reply's status and payload, and the context to decode
    /// the payload in. A one-way call (`oneway`) answers `Status::Ok` with an empty payload.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) async fn call_raw(
        &self,
        args: ArgsEncoder,
        oneway: bool,
    ) -> Result<RawReply, RemoteError> {
        let call_flags = if oneway { self.oneway_flags() } else { 0 };
        let (received, conn, millis) = self.invoke(args, call_flags).await?;
        let ctx = MarshalCtx {
            rt: self.inner.rt.clone(),
            conn: Some(conn),
        };
        match received {
            Received::Reply {
                status,
                frame,
                payload,
            } => Ok(RawReply {
                status,
                frame,
                payload,
                ctx,
                millis,
            }),
            Received::Ack | Received::Sent => Ok(RawReply {
                status: Status::Ok,
                frame: Vec::new(),
                payload: 0,
                ctx,
                millis,
            }),
        }
    }

    /// Sends a one-way call: returns once it is handed to the transport (or, on a link with a
    /// send buffer of zero, once the peer has received it).
    pub async fn call_oneway<E>(&self, args: ArgsEncoder) -> Result<(), E>
    where
        E: From<RemoteError> + Send,
    {
        self.invoke(args, self.oneway_flags())
            .await
            .map_err(E::from)?;
        Ok(())
    }

    /// The flags of a one-way call: on a link with a send buffer of zero, the caller waits for
    /// the peer's Ack.
    fn oneway_flags(&self) -> u8 {
        if self.inner.rt.config.send_buffer == 0 {
            flags::ONEWAY | flags::ACK
        } else {
            flags::ONEWAY
        }
    }
}

/// A reply as [`StubHandle::call_raw`] returns it.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) struct RawReply {
    pub(crate) status: Status,
    /// The reply frame; the payload starts at `payload`.
    pub(crate) frame: Vec<u8>,
    pub(crate) payload: usize,
    /// The runtime and connection references in the payload belong to.
    pub(crate) ctx: MarshalCtx,
    /// The call's deadline in milliseconds, for a `Timeout` the caller reports.
    pub(crate) millis: u64,
}

#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
impl RawReply {
    /// The payload bytes.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.frame[self.payload.min(self.frame.len())..]
    }
}
