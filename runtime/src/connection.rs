//! One connection between two runtimes: the handshake, a reader task that turns bytes into
//! messages, the [`Outbox`] that writes frames, and the tables of calls in flight in each
//! direction. Calls go both ways over one connection (callbacks need no second
//! connection and no listening port on the caller's side).
//!
//! **Invariant:** a caller waiting on a reply is always woken: by the reply, by its deadline,
//! or by [`Connection::close`], which fails every pending call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::frame::{self, LENGTH_LEN, PREAMBLE_LEN};
use crate::id::{CallId, IdMap, ObjId, RuntimeId};
use crate::message::Status;
use crate::message::{self, CallFrame, CallHeader, Hello, Message, flags};
use crate::outbox::{Closed, Outbox, Sent, Tried};
use crate::runtime::RuntimeInner;
use crate::transport::{BoxRead, Link};
use crate::{BoxFuture, RemoteError};

/// How long a closing connection may spend writing what is still queued (an error frame).
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(1);

/// What a caller receives for a call it sent.
pub(crate) enum Received {
    /// The reply frame (kind byte first) and where its payload starts.
    Reply {
        status: Status,
        frame: Vec<u8>,
        payload: usize,
    },
    /// The peer received a one-way call (zero-capacity links).
    Ack,
    /// A one-way call was handed to the transport.
    Sent,
}

type PendingTx = oneshot::Sender<Result<Received, RemoteError>>;

/// A live connection to a peer runtime. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: Arc<ConnInner>,
}

pub(crate) struct ConnInner {
    /// The peer runtime.
    pub(crate) peer: RuntimeId,
    /// The transport's URL scheme.
    pub(crate) scheme: &'static str,
    /// The peer's transport address.
    pub(crate) peer_addr: Arc<str>,
    pub(crate) peer_is_local_host: bool,
    /// The peer's user, where the transport tells it.
    pub(crate) peer_uid: Option<u32>,
    /// The subject of the certificate the peer proved in a TLS handshake, if it did.
    pub(crate) peer_subject: Option<Arc<str>>,
    /// The peer's one-way calls running here.
    oneway_running: std::sync::atomic::AtomicUsize,
    /// The peer's one-way calls dropped at the limit of calls in flight, for the log.
    oneway_dropped: AtomicU64,
    /// Tasks spawned to send a small frame that found the send buffer full (`send_soon`);
    /// at most `max_calls_in_flight`, so a peer that reads nothing cannot make them pile up.
    deferred: std::sync::atomic::AtomicUsize,
    max_deferred: usize,
    /// The host the peer reached us at, when known.
    pub(crate) local_host: Option<String>,
    /// The lease the peer grants on its objects: we renew at a quarter of it.
    pub(crate) peer_lease: Duration,
    /// Frames to write; bounded, so senders wait when the peer does not keep up.
    outbox: Arc<Outbox>,
    /// The runtime, to close the connection from a task that only has the connection.
    rt: Weak<RuntimeInner>,
    /// Calls we sent and wait a reply for, by call id. **Invariant:** after `closed` is set,
    /// nothing is inserted that `close` would not see (see `call`).
    pending: Mutex<IdMap<u64, PendingTx>>,
    /// Handlers running in tasks of their own for calls the peer sent, so a cancel or a
    /// disconnect can stop them. A handler that finished at its first poll never enters it.
    running: Mutex<IdMap<u64, AbortHandle>>,
    /// How many `running` holds, stored under its lock at each change: read without it.
    serving: std::sync::atomic::AtomicUsize,
    next_call: AtomicU64,
    closed: AtomicBool,
    /// Turns true when the connection closes, for whoever waits on [`Connection::closed`].
    gone: tokio::sync::watch::Sender<bool>,
    /// The tokio runtime this connection's tasks run on.
    handle: tokio::runtime::Handle,
    /// That runtime runs every task on one thread: a handler is polled once where the call is
    /// read before it gets a task of its own (`start_tracked`).
    single_thread: bool,
    /// Over shared memory: the spin a lone call runs for its reply before its caller sleeps
    /// (see [`SpinUntilReadable`](crate::transport::SpinUntilReadable)).
    spin_until_readable: Option<Box<dyn crate::transport::SpinUntilReadable>>,
    /// The reader holds bytes of further frames beyond the call it is handing out: a reply
    /// written now would be followed by others at once, so it waits for a batch.
    more_incoming: AtomicBool,
    max_frame: usize,
    /// Calls this side sent and served, for introspection.
    pub(crate) calls_sent: AtomicU64,
    pub(crate) calls_served: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the maps inconsistent (single inserts and
    // removes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    pub(crate) fn peer(&self) -> RuntimeId {
        self.inner.peer
    }

    pub(crate) fn info(&self) -> &ConnInner {
        &self.inner
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// How cheap calls over this connection are (see [`Endpoint::cost_rank`]).
    pub(crate) fn cost_rank(&self) -> u8 {
        crate::endpoint::scheme_rank(self.inner.scheme)
    }

    /// The send buffer's byte bound (`RuntimeBuilder::send_buffer_bytes`).
    pub(crate) fn send_buffer_bytes(&self) -> usize {
        self.inner.outbox.byte_bound()
    }

    pub(crate) fn max_frame(&self) -> usize {
        self.inner.max_frame
    }

    pub(crate) fn same(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Sends a frame: written at once when nobody else writes and `eager` (or the transport
    /// says [writes at once](Self::writes_at_once) pay), else queued for a batch; waits while
    /// the send buffer is full.
    ///
    /// The send is tried without waiting first; only a full buffer awaits the outbox, in a
    /// boxed future, so the futures of calls and handlers do not carry its state.
    pub(crate) async fn send(&self, frame: Vec<u8>, eager: bool) -> Result<(), RemoteError> {
        let eager = eager || self.writes_at_once();
        let sent = match self.inner.outbox.try_send(frame, eager) {
            Ok(Ok(sent)) => Ok(sent),
            Ok(Err(frame)) => Box::pin(self.inner.outbox.send(frame, eager)).await,
            Err(Closed) => Err(Closed),
        };
        match sent {
            Ok(sent) => {
                self.after_send(sent);
                Ok(())
            }
            Err(Closed) => Err(RemoteError::lost("the connection is closed")),
        }
    }

    /// Sends a reply: as [`send`](Self::send), but `Ok(Err(frame))` back at once if the
    /// replies already waiting for the peer are over the send buffer's byte bound (see
    /// [`Outbox::send_reply`]).
    pub(crate) async fn send_reply(
        &self,
        frame: Vec<u8>,
        eager: bool,
    ) -> Result<Result<(), Vec<u8>>, RemoteError> {
        let eager = eager || self.writes_at_once();
        let sent = match self.inner.outbox.try_send_reply(frame, eager) {
            Ok(Tried::Sent(sent)) => Ok(Ok(sent)),
            Ok(Tried::Refused(frame)) => Ok(Err(frame)),
            Ok(Tried::Full(frame)) => Box::pin(self.inner.outbox.send_reply(frame, eager)).await,
            Err(Closed) => Err(Closed),
        };
        match sent {
            Ok(Ok(sent)) => {
                self.after_send(sent);
                Ok(Ok(()))
            }
            Ok(Err(frame)) => Ok(Err(frame)),
            Err(Closed) => Err(RemoteError::lost("the connection is closed")),
        }
    }

    /// Whether a frame is better written at once than batched, even with other frames due
    /// soon: over shared memory with the peer on another CPU, where a write costs no system
    /// call and the peer starts on the frame while we prepare the next. Batching there makes
    /// the two sides take turns, each idle (or asleep) while the other works through a batch.
    fn writes_at_once(&self) -> bool {
        self.inner
            .spin_until_readable
            .as_ref()
            .is_some_and(|s| s.peer_on_other_cpu())
    }

    /// Sends a small frame (a control frame, a refusal) without waiting; if the buffer is
    /// full, a task sends it, unless `max_calls_in_flight` such tasks wait already: then the
    /// peer has read nothing for that long, and the frame is dropped with a log line.
    pub(crate) fn send_soon(&self, frame: Vec<u8>) {
        match self.inner.outbox.try_send(frame, true) {
            Ok(Ok(sent)) => self.after_send(sent),
            Ok(Err(frame)) => {
                let waiting = self.inner.deferred.fetch_add(1, Ordering::AcqRel);
                if waiting >= self.inner.max_deferred {
                    self.inner.deferred.fetch_sub(1, Ordering::AcqRel);
                    tracing::debug!(peer = %self.inner.peer, waiting, "the peer reads nothing; a frame for it is dropped");
                    return;
                }
                let conn = self.clone();
                // The runtime's own handle: this may run where no tokio context is (a call
                // future dropped by another executor).
                self.inner.handle.spawn(async move {
                    let _ = conn.send(frame, true).await;
                    conn.inner.deferred.fetch_sub(1, Ordering::AcqRel);
                });
            }
            Err(Closed) => {}
        }
    }

    /// Spawns the job that finishes a write the socket could not take at once.
    fn after_send(&self, sent: Sent) {
        if let Sent::Deferred(job) = sent {
            let conn = self.clone();
            self.inner.handle.spawn(async move {
                if let Err(e) = job.run().await {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        tracing::warn!(peer = %conn.inner.peer, addr = %conn.inner.peer_addr, error = %e, "the peer stopped reading; closing the connection");
                    }
                    conn.fail(&RemoteError::lost(format!("write failed: {e}")));
                }
            });
        }
    }

    /// Closes the connection from anywhere (the runtime may be gone already).
    fn fail(&self, reason: &RemoteError) {
        if let Some(rt) = self.inner.rt.upgrade() {
            self.close(&rt, reason);
        }
    }

    /// Queues a one-way call without waiting (for use where nothing can be awaited, as at
    /// shutdown); false if the connection is closed or its buffer is full.
    pub(crate) fn send_oneway_now(&self, object: ObjId, method: &str, args: &[u8]) -> bool {
        let header = CallHeader {
            call: CallId(self.inner.next_call.fetch_add(1, Ordering::Relaxed)),
            object,
            method,
            // Nobody waits for it; the peer runs it without hurry.
            timeout_us: 60_000_000,
            flags: flags::ONEWAY,
        };
        let mut f = message::call(&header, args.len());
        f.body().extend_from_slice(args);
        let Ok(frame) = f.finish(self.inner.max_frame) else {
            return false;
        };
        match self.inner.outbox.try_send(frame, true) {
            Ok(Ok(sent)) => {
                self.after_send(sent);
                true
            }
            _ => false,
        }
    }

    /// Starts the frame of a new call on this connection (a fresh call id; `left`, the time
    /// left until the call's deadline, which the peer gives the handler); the caller encodes
    /// the arguments into it and hands it to [`Connection::call`].
    pub(crate) fn start_call(&self, object: ObjId, method: &str, left: Duration) -> CallFrame {
        let header = CallHeader {
            call: CallId(self.inner.next_call.fetch_add(1, Ordering::Relaxed)),
            object,
            method,
            timeout_us: left.as_micros().min(u64::MAX as u128) as u64,
            flags: 0,
        };
        message::call(&header, 0)
    }

    /// Sends a call started by [`Connection::start_call`] and waits for its reply (or, for a
    /// one-way call, until it is sent or acked). Dropping the returned future before the reply
    /// tells the peer to stop the handler.
    pub(crate) async fn call(
        &self,
        mut frame: CallFrame,
        call_flags: u8,
    ) -> Result<Received, RemoteError> {
        let id = frame.id().0;
        let oneway = call_flags & flags::ONEWAY != 0;
        let wants_answer = !oneway || call_flags & flags::ACK != 0;
        frame.set_flags(call_flags);
        let frame = frame.finish(self.inner.max_frame)?;

        let mut guard = PendingGuard {
            conn: self,
            id,
            armed: false,
            sent: false,
        };
        let mut alone = true;
        let rx = if wants_answer {
            let (tx, rx) = oneshot::channel();
            {
                let mut pending = lock(&self.inner.pending);
                pending.insert(id, tx);
                alone = pending.len() == 1;
            }
            guard.armed = true;
            // `close` sets `closed` before draining `pending`: either it drained our entry, or we
            // see the flag here.
            if self.is_closed() {
                return Err(RemoteError::lost("the connection is closed"));
            }
            Some(rx)
        } else {
            None
        };
        self.inner.calls_sent.fetch_add(1, Ordering::Relaxed);
        // A lone call is written at once; with others in flight, frames are batched.
        self.send(frame, alone).await?;
        guard.sent = true;
        let Some(rx) = rx else {
            return Ok(Received::Sent);
        };
        if alone && let Some(spin) = &self.inner.spin_until_readable {
            // The reader sleeps on the transport's wake-up; it is woken at once if the reply
            // arrives during the spin, as this thread then finds it without sleeping.
            spin.spin();
        }
        let r = rx
            .await
            .unwrap_or_else(|_| Err(RemoteError::lost("the connection is closed")));
        guard.armed = false;
        r
    }

    /// Hands the answer to call `id` to its caller; how many of our calls still wait for one.
    fn complete(&self, id: u64, r: Result<Received, RemoteError>) -> usize {
        let (tx, waiting) = {
            let mut pending = lock(&self.inner.pending);
            (pending.remove(&id), pending.len())
        };
        match tx {
            Some(tx) => {
                let _ = tx.send(r);
            }
            // A late answer to a call whose caller gave up.
            None => tracing::trace!(call = id, "answer to a call nobody waits for"),
        }
        waiting
    }

    /// Starts a handler: on a current-thread runtime it is polled once here first, and
    /// spawned only if it does not finish at once (see [`run_first_poll`]); otherwise, and on
    /// a multi-thread runtime, it is spawned and registered so a cancel or a disconnect can
    /// stop it; the task forgets it once the handler is done. The lock is held across spawn
    /// and insert: the task's `untrack` cannot run before the insert.
    pub(crate) fn start_tracked(&self, call: CallId, fut: BoxFuture<'static, ()>) {
        let Some(fut) = run_first_poll(self.inner.single_thread, fut) else {
            return;
        };
        let conn = self.clone();
        let fut = async move {
            fut.await;
            conn.untrack(call);
            conn.spin_for_next_call();
        };
        let mut running = lock(&self.inner.running);
        let h = self.inner.handle.spawn(fut);
        running.insert(call.0, h.abort_handle());
        self.inner.serving.store(running.len(), Ordering::Release);
    }

    /// After the last handler running in a task of its own is done (a two-way call's sent its
    /// reply): where the transport lets us see the peer's bytes arrive without a system call
    /// (shared memory), spins for the peer's next call as a caller spins for its reply, and has
    /// the reader woken from here if it comes. The reader sleeps meanwhile (it went on reading
    /// while the handler ran); without this the next call would wake it through the
    /// transport's wake-up, which on a virtual machine costs several microseconds when its CPU
    /// went idle. The spin is the transport's, and spins only while spinning pays.
    fn spin_for_next_call(&self) {
        if self.calls_running() == 0
            && !self.is_closed()
            && let Some(spin) = &self.inner.spin_until_readable
        {
            spin.spin();
        }
    }

    /// Starts a handler nobody can cancel (a one-way call's): polled once here first on a
    /// current-thread runtime, like [`Connection::start_tracked`]'s, spawned otherwise.
    pub(crate) fn start(&self, fut: BoxFuture<'static, ()>) {
        if let Some(fut) = run_first_poll(self.inner.single_thread, fut) {
            let conn = self.clone();
            self.inner.handle.spawn(async move {
                fut.await;
                conn.spin_for_next_call();
            });
        }
    }

    /// Counts a one-way call of the peer's dropped at the limit; returns how many so far.
    pub(crate) fn oneway_dropped(&self) -> u64 {
        self.inner.oneway_dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a one-way call of the peer's now running; the guard uncounts it.
    pub(crate) fn oneway_started(&self) -> OnewayGuard {
        self.inner.oneway_running.fetch_add(1, Ordering::AcqRel);
        OnewayGuard(self.inner.clone())
    }

    /// How many of the peer's calls run here: two-way and one-way.
    pub(crate) fn calls_running(&self) -> usize {
        self.serving() + self.inner.oneway_running.load(Ordering::Acquire)
    }

    /// How many of our calls wait for a reply.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Whether the reader had more bytes to read when it handed out its last call: replies
    /// then wait to go out in one batch.
    pub(crate) fn more_incoming(&self) -> bool {
        self.inner.more_incoming.load(Ordering::Relaxed)
    }

    /// How many handlers of the peer's calls run in tasks of their own.
    pub(crate) fn serving(&self) -> usize {
        self.inner.serving.load(Ordering::Acquire)
    }

    /// Forgets a handler that ran in a task of its own: it finished, or it is to be stopped.
    fn untrack(&self, call: CallId) -> Option<AbortHandle> {
        let mut running = lock(&self.inner.running);
        let h = running.remove(&call.0);
        self.inner.serving.store(running.len(), Ordering::Release);
        h
    }

    /// Closes the connection: fails every pending call, stops every running handler, flushes
    /// what is queued (an error frame) and stops the writer. Idempotent.
    pub(crate) fn close(&self, rt: &RuntimeInner, reason: &RemoteError) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(peer = %self.inner.peer, addr = %self.inner.peer_addr, %reason, "connection closed");
        // Out of the table before any caller hears of the loss: one that looks again finds it
        // gone.
        rt.conns.remove(self);
        let pending: Vec<PendingTx> = lock(&self.inner.pending).drain().map(|(_, v)| v).collect();
        for tx in pending {
            let _ = tx.send(Err(RemoteError::lost(reason)));
        }
        let running: Vec<AbortHandle> = {
            let mut running = lock(&self.inner.running);
            self.inner.serving.store(0, Ordering::Release);
            running.drain().map(|(_, v)| v).collect()
        };
        for h in running {
            h.abort();
        }
        let outbox = self.inner.outbox.clone();
        // Writes what is queued (an error frame for the peer) within a bound, then shuts down.
        self.inner.handle.spawn(async move {
            let _ = tokio::time::timeout(FLUSH_ON_CLOSE, outbox.close()).await;
        });
        self.inner.gone.send_replace(true);
    }

    /// Resolves once the connection has closed.
    pub(crate) async fn closed(&self) {
        let mut rx = self.inner.gone.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail while we hold it.
        let _ = rx.wait_for(|gone| *gone).await;
    }
}

/// Forgets a pending call if the caller stops waiting, and tells the peer to stop its handler.
struct PendingGuard<'a> {
    conn: &'a Connection,
    id: u64,
    armed: bool,
    sent: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        lock(&self.conn.inner.pending).remove(&self.id);
        if self.sent && !self.conn.is_closed() {
            self.conn.send_soon(message::cancel(CallId(self.id)));
        }
    }
}

/// Why reading a frame stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the stream between frames.
    Eof,
    /// The transport failed.
    Io(std::io::Error),
    /// The peer broke the protocol; it gets an error frame.
    Protocol(RemoteError),
    /// The peer started a frame and sent no byte of it for the stall timeout.
    Stalled(Duration),
}

/// Reads one frame (kind byte and body), checking its length before allocating.
pub(crate) async fn read_frame(
    r: &mut BufReader<BoxRead>,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    read_frame_within(r, max, None).await
}

/// [`read_frame`], and once the frame has started, at most `stall` without a byte arriving.
///
/// Silence before a frame is the peer's right (an idle connection); inside one it is not: a
/// sender writes a frame in one go, so a gap means a dead or hostile peer. A slow link still
/// moves bytes, and every byte starts the time again, so a large frame on a slow link is
/// never cut. The buffer grows with the bytes that arrived (`buffers::take_to_read`), so a
/// peer that announces a large frame and stops ties up only what it sent.
pub(crate) async fn read_frame_within(
    r: &mut BufReader<BoxRead>,
    max: usize,
    stall: Option<Duration>,
) -> Result<Vec<u8>, ReadError> {
    // The first byte may take as long as the peer likes; the frame starts with it.
    let first = match r.fill_buf().await {
        Ok([]) => return Err(ReadError::Eof),
        Ok(bytes) => bytes,
        Err(e) => return Err(ReadError::Io(e)),
    };
    // The common case: the read that brought the first byte brought the whole frame (a small
    // one, or a frame that arrived at once): taken from the buffer in one copy.
    if let Some((prefix, rest)) = first.split_first_chunk::<LENGTH_LEN>() {
        let len = frame::check_length(*prefix, max).map_err(ReadError::Protocol)?;
        if let Some(body) = rest.get(..len) {
            let mut buf = crate::buffers::take_to_read(len);
            crate::buffers::extend_in_pieces(&mut buf, body);
            r.consume(LENGTH_LEN + len);
            return Ok(buf);
        }
    }
    let mut len = [0u8; LENGTH_LEN];
    match r.read_exact(&mut len[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Eof),
        Err(e) => return Err(ReadError::Io(e)),
    }
    let mut got = 1;
    while got < LENGTH_LEN {
        let buffered = !r.buffer().is_empty();
        got += progress(stall, buffered, r.read(&mut len[got..])).await?;
    }
    let len = frame::check_length(len, max).map_err(ReadError::Protocol)?;
    // Read into uninitialised capacity: zero-filling a large frame first costs as much as
    // copying it.
    let mut buf = crate::buffers::take_to_read(len);
    while buf.len() < len {
        crate::buffers::grow_to_read(&mut buf, len);
        let remaining = len - buf.len();
        let buffered = !r.buffer().is_empty();
        let mut room = bytes::BufMut::limit(&mut buf, remaining);
        progress(stall, buffered, r.read_buf(&mut room)).await?;
    }
    Ok(buf)
}

/// One read inside a frame: at least one byte, within `stall` if set. A read from bytes
/// already `buffered` needs no timer.
async fn progress(
    stall: Option<Duration>,
    buffered: bool,
    read: impl std::future::Future<Output = std::io::Result<usize>>,
) -> Result<usize, ReadError> {
    let n = match stall {
        Some(limit) if !buffered => tokio::time::timeout(limit, read)
            .await
            .map_err(|_| ReadError::Stalled(limit))?,
        _ => read.await,
    }
    .map_err(ReadError::Io)?;
    if n == 0 {
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(n)
}

/// Runs the handshake on a fresh link and starts the connection's tasks.
pub(crate) async fn establish(
    rt: &Arc<RuntimeInner>,
    link: Link,
) -> Result<Connection, RemoteError> {
    let Link {
        reader,
        mut writer,
        scheme,
        peer,
        local_host,
        peer_is_local_host,
        peer_uid,
        peer_subject,
        spin_until_readable,
    } = link;
    let max = rt.config.max_frame;
    let mut reader = BufReader::with_capacity(64 * 1024, reader);

    // At the limit of connections: the peer reads our preamble and an error in place of a
    // Hello, so its handshake fails with the reason.
    let open = rt.conns.count();
    if open >= rt.config.max_connections {
        let e = RemoteError::Overloaded {
            what: "connections to this runtime".into(),
            limit: rt.config.max_connections as u64,
        };
        tracing::warn!(%peer, open, error = %e, "refused a peer at the handshake");
        let mut out = frame::preamble().to_vec();
        out.extend_from_slice(&message::error(&e));
        let _ = writer.write_all(&out).await;
        let _ = writer.shutdown().await;
        return Err(e);
    }
    let challenge = rt.config.secret.as_ref().map(|_| crate::auth::challenge());
    let hello = Hello {
        runtime: rt.id,
        endpoints: rt.advertised_for(local_host.as_deref()),
        auth: challenge.clone().map(serde_bytes::ByteBuf::from),
        lease_ms: rt.leases.duration().as_millis() as u64,
    };
    let mut out = frame::preamble().to_vec();
    out.extend_from_slice(&message::hello(&hello, max)?);
    writer
        .write_all(&out)
        .await
        .map_err(|e| handshake_io(&peer, e))?;

    let mut p = [0u8; PREAMBLE_LEN];
    reader
        .read_exact(&mut p)
        .await
        .map_err(|e| handshake_io(&peer, e))?;
    if let Err(e) = frame::check_preamble(&p) {
        tracing::warn!(%peer, error = %e, "rejected a peer at the handshake");
        let _ = writer.write_all(&message::error(&e)).await;
        let _ = writer.shutdown().await;
        return Err(e);
    }
    let theirs = match handshake_frame(&mut reader, &mut writer, max, &peer).await? {
        Message::Hello(h) => h,
        _ => {
            let e = RemoteError::protocol("expected a hello frame");
            let _ = writer.write_all(&message::error(&e)).await;
            return Err(e);
        }
    };
    if let Err(e) = authenticate(
        rt,
        challenge.as_deref(),
        &theirs,
        &mut reader,
        &mut writer,
        &peer,
    )
    .await
    {
        tracing::warn!(%peer, error = %e, "refused a peer at the handshake");
        if !matches!(e, RemoteError::ConnectionLost { .. }) {
            let _ = writer.write_all(&message::error(&e)).await;
            let _ = writer.shutdown().await;
        }
        return Err(e);
    }

    let conn = Connection {
        inner: Arc::new(ConnInner {
            peer: theirs.runtime,
            scheme,
            peer_addr: peer.into(),
            peer_is_local_host,
            peer_uid,
            peer_subject,
            oneway_running: Default::default(),
            oneway_dropped: AtomicU64::new(0),
            deferred: Default::default(),
            max_deferred: rt.config.max_calls_in_flight,
            local_host,
            peer_lease: Duration::from_millis(theirs.lease_ms),
            outbox: Outbox::new(
                writer,
                crate::outbox::Limits {
                    frames: rt.config.send_buffer,
                    bytes: rt.config.send_buffer_bytes,
                    stall: Some(rt.config.stall_timeout),
                },
            ),
            rt: Arc::downgrade(rt),
            pending: Mutex::default(),
            running: Mutex::default(),
            serving: Default::default(),
            next_call: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            gone: tokio::sync::watch::Sender::new(false),
            handle: rt.handle.clone(),
            single_thread: rt.handle.runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread,
            spin_until_readable,
            more_incoming: AtomicBool::new(false),
            max_frame: max,
            calls_sent: AtomicU64::new(0),
            calls_served: AtomicU64::new(0),
        }),
    };
    rt.handle.spawn(read_loop(conn.clone(), rt.clone(), reader));
    Ok(conn)
}

/// On a current-thread runtime (`single_thread`), polls `fut` once on this thread, within the
/// task that read the call, and gives it back only if it is not finished.
///
/// A handler that completes at its first poll (most do: no I/O, no lock held elsewhere) then
/// costs no task: no task cell, no trip through the scheduler's queue. Nothing is lost on one
/// thread: a spawned task could not have run beside the reader anyway, and a handler that
/// blocks blocks that thread either way. On a multi-thread runtime a handler always gets its
/// own task, so a slow one never holds the calls read after it.
///
/// The first poll uses a waker that does nothing: a future that is not finished is spawned at
/// once, and tokio polls a new task straight away, which registers its real waker; anything
/// that became ready in between is seen by that poll. The future comes boxed, so the task cell
/// stays small (a large cell is an aligned allocation that costs the allocator a consolidation
/// pass).
fn run_first_poll(
    single_thread: bool,
    mut fut: BoxFuture<'static, ()>,
) -> Option<BoxFuture<'static, ()>> {
    if single_thread {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if fut.as_mut().poll(&mut cx).is_ready() {
            return None;
        }
    }
    Some(fut)
}

/// The next frame of the handshake, decoded; an Error frame from the peer is its error. A
/// malformed frame is answered with an Error frame.
async fn handshake_frame(
    reader: &mut BufReader<BoxRead>,
    writer: &mut crate::transport::BoxWrite,
    max: usize,
    peer: &str,
) -> Result<Message<'static>, RemoteError> {
    match read_frame(reader, max).await {
        Ok(f) => match message::decode(&f) {
            Ok(Message::Error(e)) => Err(e),
            Ok(m) => Ok(m.into_owned()),
            Err(e) => {
                let _ = writer.write_all(&message::error(&e)).await;
                Err(e)
            }
        },
        Err(ReadError::Protocol(e)) => {
            let _ = writer.write_all(&message::error(&e)).await;
            Err(e)
        }
        Err(ReadError::Eof) => Err(RemoteError::lost(format!(
            "{peer} closed during the handshake"
        ))),
        Err(ReadError::Io(e)) => Err(handshake_io(peer, e)),
        // No stall timeout in the handshake: the connect timeout bounds all of it.
        Err(ReadError::Stalled(_)) => Err(RemoteError::lost(format!(
            "{peer} stalled during the handshake"
        ))),
    }
}

/// The error of a handshake whose transport failed: [`AccessDenied`](RemoteError::AccessDenied)
/// when the failure is a TLS peer refusing our certificate (with TLS 1.3 a client learns it only
/// at its first read), else [`ConnectionLost`](RemoteError::ConnectionLost).
fn handshake_io(peer: &str, e: std::io::Error) -> RemoteError {
    match crate::transport::tls::refused_certificate(&e) {
        Some(reason) => RemoteError::AccessDenied {
            reason: format!("TLS handshake with {peer}: {reason}"),
        },
        None => RemoteError::lost(format!("handshake with {peer}: {e}")),
    }
}

/// The shared-secret step of the handshake (see [`auth`](crate::auth)): answers the peer's
/// challenge and checks its answer to ours. Nothing to do when neither side has a secret.
async fn authenticate(
    rt: &Arc<RuntimeInner>,
    ours: Option<&[u8]>,
    theirs: &Hello,
    reader: &mut BufReader<BoxRead>,
    writer: &mut crate::transport::BoxWrite,
    peer: &str,
) -> Result<(), RemoteError> {
    let denied = |reason: &str| RemoteError::AccessDenied {
        reason: reason.to_string(),
    };
    let (secret, ours, their) = match (&rt.config.secret, ours, &theirs.auth) {
        (None, _, None) => return Ok(()),
        (None, _, Some(_)) => {
            return Err(denied(
                "the peer requires a shared secret and this runtime has none \
                 (RuntimeBuilder::shared_secret)",
            ));
        }
        (Some(_), _, None) => {
            return Err(denied(
                "this runtime requires a shared secret and the peer offered none",
            ));
        }
        (Some(secret), Some(ours), Some(their)) => (secret, ours, their.as_slice()),
        (Some(_), None, Some(_)) => return Err(denied("no challenge of ours to check")),
    };
    if their.len() != crate::auth::CHALLENGE_LEN || their == ours || theirs.runtime == rt.id {
        return Err(denied("the peer's challenge is malformed or our own"));
    }
    let answer = secret.answer(their, ours, rt.id, theirs.runtime);
    writer
        .write_all(&message::auth(&answer))
        .await
        .map_err(|e| handshake_io(peer, e))?;
    match handshake_frame(reader, writer, rt.config.max_frame, peer).await? {
        Message::Auth(mac) if secret.check(&mac, ours, their, rt.id, theirs.runtime) => Ok(()),
        Message::Auth(_) => Err(denied("wrong shared secret")),
        _ => Err(RemoteError::protocol("expected an auth frame")),
    }
}

async fn read_loop(conn: Connection, rt: Arc<RuntimeInner>, mut r: BufReader<BoxRead>) {
    let max = rt.config.max_frame;
    let stall = Some(rt.config.stall_timeout);
    // A connection closed from elsewhere (a write that failed or stalled, shutdown) stops its
    // reader too, which holds the socket: a peer that sends nothing more must not keep it open.
    let closed = conn.closed();
    tokio::pin!(closed);
    let reason = loop {
        let read = tokio::select! {
            biased;
            read = read_frame_within(&mut r, max, stall) => read,
            () = &mut closed => return,
        };
        let frame = match read {
            Ok(f) => f,
            Err(ReadError::Eof) => break RemoteError::lost("the peer closed the connection"),
            Err(ReadError::Io(e)) => break RemoteError::lost(e),
            Err(ReadError::Protocol(e)) => break reject(&conn, e),
            Err(ReadError::Stalled(limit)) => {
                break reject(
                    &conn,
                    RemoteError::protocol(format!(
                        "no byte of a started frame arrived for {limit:?} \
                         (RuntimeBuilder::stall_timeout)"
                    )),
                );
            }
        };
        let msg = match message::decode(&frame) {
            Ok(m) => m,
            Err(e) => break reject(&conn, e),
        };
        match msg {
            Message::Call { header, payload } => {
                conn.inner.calls_served.fetch_add(1, Ordering::Relaxed);
                if header.flags & flags::ACK != 0 {
                    conn.send_soon(message::ack(header.call));
                }
                conn.inner
                    .more_incoming
                    .store(!r.buffer().is_empty(), Ordering::Relaxed);
                let handler = crate::dispatch::serve(&rt, &conn, header, &frame[payload..]);
                // The arguments are decoded: the frame's buffer can take the next frame, or
                // the reply of a handler that runs at once.
                crate::buffers::recycle(frame);
                if let Some(handler) = handler {
                    handler.start(&conn);
                }
            }
            Message::Reply {
                call,
                status,
                payload,
            } => {
                let waiting = conn.complete(
                    call.0,
                    Ok(Received::Reply {
                        status,
                        frame,
                        payload,
                    }),
                );
                step_aside(&conn, r.buffer().is_empty(), waiting).await;
            }
            Message::Ack(call) => {
                let waiting = conn.complete(call.0, Ok(Received::Ack));
                step_aside(&conn, r.buffer().is_empty(), waiting).await;
            }
            Message::Cancel(call) => {
                if let Some(h) = conn.untrack(call) {
                    tracing::debug!(call = call.0, "the caller cancelled; stopping the handler");
                    h.abort();
                }
            }
            Message::Error(e) => {
                tracing::warn!(peer = %conn.inner.peer, error = %e, "the peer closed the connection with an error");
                break e;
            }
            Message::Hello(_) | Message::Auth(_) => {
                break reject(&conn, RemoteError::protocol("unexpected handshake frame"));
            }
        }
    };
    conn.close(&rt, &reason);
}

/// After handing a caller its answer, with no further bytes read (`nothing_read`; `waiting`:
/// our calls still waiting for theirs): lets the callers woken run before the reader looks at
/// its transport again. Over shared memory a caller then sends its next call before the reader
/// announces that it sleeps, and the peer, finding no flag, answers without waking us through
/// our wake-up pipe (on one CPU a null call took 9.3 µs before, 7.4 µs with this); with calls in
/// flight, the callers' next calls go out before the reader turns to the transport. Not for a
/// lone call on a multi-thread runtime: there the woken caller runs next anyway, and a task
/// that steps aside wakes an idle worker to steal it.
async fn step_aside(conn: &Connection, nothing_read: bool, waiting: usize) {
    if nothing_read && (conn.inner.single_thread || waiting > 0) {
        crate::behind_ready::behind_ready_tasks().await;
    }
}

/// Logs a protocol violation and queues an error frame for the peer before the connection closes.
fn reject(conn: &Connection, e: RemoteError) -> RemoteError {
    tracing::warn!(peer = %conn.inner.peer, addr = %conn.inner.peer_addr, error = %e, "protocol violation; closing the connection");
    conn.send_soon(message::error(&e));
    e
}

/// A running one-way call, counted toward the connection's limit until dropped.
pub(crate) struct OnewayGuard(Arc<ConnInner>);

impl Drop for OnewayGuard {
    fn drop(&mut self) {
        self.0.oneway_running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::run_first_poll;

    /// Reads frames from `stream` handed over `chunk` bytes at a time through a buffer of
    /// `buffer` bytes, until the first error, which comes back too.
    async fn frames_from(
        stream: &[u8],
        chunk: usize,
        buffer: usize,
        max: usize,
    ) -> (Vec<Vec<u8>>, super::ReadError) {
        let reader: crate::transport::BoxRead =
            Box::new(crate::fuzzing::Trickle::new(stream.to_vec(), chunk));
        let mut r = tokio::io::BufReader::with_capacity(buffer, reader);
        let mut frames = Vec::new();
        loop {
            match super::read_frame(&mut r, max).await {
                Ok(f) => frames.push(f),
                Err(e) => return (frames, e),
            }
        }
    }

    #[tokio::test]
    async fn frames_are_read_whole_however_their_bytes_arrive() {
        let bodies: Vec<Vec<u8>> = [1usize, 5, 300, 5000]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let mut stream = Vec::new();
        for b in &bodies {
            stream.extend_from_slice(&(b.len() as u32).to_be_bytes());
            stream.extend_from_slice(b);
        }
        // Whole frames in the buffer (the fast path), frames straddling reads, and frames
        // larger than the buffer.
        for chunk in [0, 1, 3, 7, 64, 1000] {
            for buffer in [8, 64, 8192] {
                let (frames, end) = frames_from(&stream, chunk, buffer, 1 << 20).await;
                assert_eq!(frames, bodies, "chunk {chunk}, buffer {buffer}");
                assert!(
                    matches!(end, super::ReadError::Eof),
                    "chunk {chunk}: {end:?}"
                );
            }
        }
        // Cut inside the last frame: the stream ended in mid-frame, not between frames.
        let cut = &stream[..stream.len() - 1];
        for chunk in [0, 1, 64] {
            let (frames, end) = frames_from(cut, chunk, 8192, 1 << 20).await;
            assert_eq!(frames, bodies[..3], "chunk {chunk}");
            assert!(
                matches!(end, super::ReadError::Io(_)),
                "chunk {chunk}: {end:?}"
            );
        }
        // A length over the limit is refused whether the frame is buffered whole or not.
        for chunk in [0, 2] {
            let (frames, end) = frames_from(&stream, chunk, 8192, 4999).await;
            assert_eq!(frames, bodies[..3], "chunk {chunk}");
            assert!(
                matches!(end, super::ReadError::Protocol(_)),
                "chunk {chunk}: {end:?}"
            );
        }
    }

    /// A transport's view of where the peer runs, fixed for a test.
    struct PeerPlace {
        other_cpu: bool,
    }

    impl crate::transport::SpinUntilReadable for PeerPlace {
        fn spin(&self) -> bool {
            false
        }

        fn peer_on_other_cpu(&self) -> bool {
            self.other_cpu
        }
    }

    /// How many bytes of a frame sent with others due (`eager = false`) are written by the
    /// time `send` returns, and after the runtime ran its other ready tasks, over a link whose
    /// transport says the peer runs on another CPU (`other_cpu`) or on ours.
    async fn written_by_send(other_cpu: bool) -> (usize, usize) {
        let rt = crate::Runtime::builder().start().await.expect("runtime");
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        tokio::io::AsyncWriteExt::write_all(&mut theirs, &crate::fuzzing::handshake([7; 16]))
            .await
            .expect("the peer's handshake");
        let (reader, _) = tokio::io::split(ours);
        let out = crate::outbox::Recorder::default();
        let written = || super::lock(&out.bytes).len();
        let link = crate::transport::Link {
            reader: Box::new(reader),
            writer: Box::new(out.clone()),
            scheme: "shm",
            peer: "test".into(),
            local_host: None,
            peer_is_local_host: true,
            peer_uid: None,
            peer_subject: None,
            spin_until_readable: Some(Box::new(PeerPlace { other_cpu })),
        };
        let conn = super::establish(&rt.inner, link).await.expect("handshake");
        let before = written();
        let frame = crate::message::ack(crate::id::CallId(1));
        let len = frame.len();
        conn.send(frame, false).await.expect("sent");
        let at_once = written() - before;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let later = written() - before;
        assert_eq!(later, len, "the frame, whole, once");
        drop(theirs);
        (at_once, later)
    }

    #[tokio::test]
    async fn frames_go_out_at_once_while_the_peer_reads_on_another_cpu() {
        // The peer reads on our CPU: the frame waits for the batch the tasks ready now make.
        assert_eq!(written_by_send(false).await.0, 0);
        // The peer reads elsewhere: it can start on this frame while we make the next.
        let (at_once, whole) = written_by_send(true).await;
        assert_eq!(at_once, whole);
    }

    #[test]
    fn a_handler_that_finishes_at_once_runs_inline_on_one_thread_only() {
        let runs = Arc::new(AtomicUsize::new(0));
        let handler = |runs: Arc<AtomicUsize>| async move {
            runs.fetch_add(1, Ordering::SeqCst);
        };
        // One thread: polled here, finished, nothing to spawn.
        assert!(run_first_poll(true, Box::pin(handler(runs.clone()))).is_none());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Several threads: not polled, handed back to be spawned.
        let fut = run_first_poll(false, Box::pin(handler(runs.clone()))).expect("handed back");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(fut);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_handler_that_waits_is_handed_back_and_finishes_in_its_task() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let got = Arc::new(AtomicUsize::new(0));
        let seen = got.clone();
        let fut = run_first_poll(
            true,
            Box::pin(async move {
                let v = rx.await.unwrap_or(0);
                seen.store(v as usize, Ordering::SeqCst);
            }),
        )
        .expect("not finished: handed back");
        // The value arrives between the first poll (whose waker does nothing) and the task's.
        tx.send(7).expect("receiver alive");
        rt.block_on(rt.spawn(fut)).expect("task");
        assert_eq!(got.load(Ordering::SeqCst), 7);
    }
}
