//! The write side of a connection.
//!
//! A frame goes straight to the socket from the task that sends it when nobody else is writing:
//! no hop through a writer task, and for a caller on another executor no cross-thread wake-up.
//! Frames sent while someone writes wait in a bounded queue, and whoever writes takes them too,
//! in one batch (one syscall for many frames under load). Senders wait when the queue is full:
//! that is the connection's backpressure.
//!
//! The direct write never waits: it writes what the socket takes now. When the socket is full,
//! the rest moves to a [`FlushJob`] that the connection spawns as a task. So a caller whose
//! future is dropped mid-call can never leave half a frame on the wire.
//!
//! Writing at once is right for a lone call (latency) and wrong for many (one syscall each):
//! a sender that knows other calls are in flight sends with `eager = false`, and its frame waits
//! for a flush job that runs after the tasks ready now have queued theirs, then writes them all
//! in one batch (the job first steps behind the tasks ready when it starts: on a multi-thread
//! runtime a task spawned from a worker would run before them). Over shared memory a write
//! costs no syscall, and while the peer reads on another CPU the connection sends every frame
//! eagerly (`Connection::writes_at_once`).
//!
//! The queue is bounded in frames and in bytes ([`Limits`]). A reply does not wait behind more
//! than the byte bound of frames already queued or waiting ([`Outbox::send_reply`] refuses it,
//! and the caller sends a small error instead): a peer that stops reading its replies cannot make
//! a connection hold one encoded reply per call in flight. A peer that reads nothing for the
//! stall timeout while frames wait for it fails the write, which closes the connection.
//!
//! **Invariant:** `busy` is true exactly while one party (a direct writer or a flush job) owns
//! the right to write; bytes are written in the order frames were accepted.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::transport::BoxWrite;

/// The outbox of one connection.
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// The transport's write half. Held by the direct writer (`try_lock`), a flush job, or the
    /// closer.
    writer: tokio::sync::Mutex<BoxWrite>,
    /// Woken when queued frames are taken for writing (room for waiting senders) or on close.
    space: Notify,
    limits: Limits,
}

/// The bounds of an outbox.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Frames that may wait in the queue (at least 1).
    pub(crate) frames: usize,
    /// Bytes that may wait in the queue (a larger frame goes alone, into an empty queue), and
    /// the most bytes of replies queued or waiting before a further reply is refused.
    pub(crate) bytes: usize,
    /// How long a write may take no byte before it fails; `None`: as long as it takes.
    pub(crate) stall: Option<Duration>,
}

#[derive(Default)]
struct State {
    queue: Vec<Vec<u8>>,
    /// Bytes of the frames in `queue`.
    queued_bytes: usize,
    /// Bytes of frames whose senders wait for room.
    waiting_bytes: usize,
    busy: bool,
    closed: bool,
}

/// How [`Outbox::offer`] treats a frame that does not fit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// The sender waits for room.
    Wait,
    /// A reply: refused if it would take the bytes queued and waiting beyond the bound.
    Reply,
}

/// What [`Outbox::offer`] did with a frame.
enum Offer {
    Sent(Sent),
    /// No room now; the frame is still the sender's.
    Full,
    /// Refused for good (a reply over the byte bound); the frame is still the sender's.
    Refused,
}

/// What became of a frame handed to [`Outbox::send`].
pub(crate) enum Sent {
    /// Written to the transport (with whatever was queued behind it).
    Written,
    /// Queued: the current writer will write it.
    Queued,
    /// Left to a flush job (the socket is full, or the frame waits for a batch). The caller must
    /// spawn the job.
    Deferred(FlushJob),
}

/// What [`Outbox::try_send_reply`] did with a frame.
pub(crate) enum Tried {
    /// Taken: written, queued or left to a flush job.
    Sent(Sent),
    /// No room now; the frame is handed back.
    Full(Vec<u8>),
    /// Over the byte bound of replies; the frame is handed back.
    Refused(Vec<u8>),
}

/// The outbox is closed; nothing more is sent.
#[derive(Debug)]
pub(crate) struct Closed;

/// Bytes that could not be written without waiting, and the right to write them.
pub(crate) struct FlushJob {
    outbox: Arc<Outbox>,
    /// A batch whose bytes from `start` on are still to write (an offset, not a drain: a large
    /// frame the socket takes a piece at a time is not moved for each piece).
    rest: Vec<u8>,
    start: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Outbox {
    pub(crate) fn new(writer: BoxWrite, limits: Limits) -> Arc<Self> {
        Arc::new(Outbox {
            state: Mutex::default(),
            writer: tokio::sync::Mutex::new(writer),
            space: Notify::new(),
            limits: Limits {
                frames: limits.frames.max(1),
                bytes: limits.bytes.max(1),
                ..limits
            },
        })
    }

    /// The byte bound of the queue and of replies waiting ([`Limits::bytes`]).
    pub(crate) fn byte_bound(&self) -> usize {
        self.limits.bytes
    }

    /// Sends a frame, waiting while the queue is full; `eager`: write at once if nobody writes.
    pub(crate) async fn send(
        self: &Arc<Self>,
        frame: Vec<u8>,
        eager: bool,
    ) -> Result<Sent, Closed> {
        match self.send_with(frame, eager, Policy::Wait).await? {
            Ok(sent) => Ok(sent),
            // `Wait` never refuses; should it, the frame is lost as if the connection closed.
            Err(_) => Err(Closed),
        }
    }

    /// Sends a reply as [`send`](Self::send) does, unless the bytes queued and waiting would
    /// go beyond the byte bound with it: then `Err(frame)` back at once, for the caller to send
    /// something smaller. A reply into an empty backlog is never refused, whatever its size.
    pub(crate) async fn send_reply(
        self: &Arc<Self>,
        frame: Vec<u8>,
        eager: bool,
    ) -> Result<Result<Sent, Vec<u8>>, Closed> {
        self.send_with(frame, eager, Policy::Reply).await
    }

    async fn send_with(
        self: &Arc<Self>,
        frame: Vec<u8>,
        eager: bool,
        policy: Policy,
    ) -> Result<Result<Sent, Vec<u8>>, Closed> {
        let len = frame.len();
        let mut frame = Some(frame);
        // Counts the frame as waiting while it does, however the wait ends (even dropped).
        let mut waiting = WaitingBytes {
            outbox: self,
            len: 0,
        };
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            // Registered before looking at the state, so a wake-up in between is not lost.
            notified.as_mut().enable();
            // The first look counts against the bound; later looks need only room.
            let policy = if waiting.len == 0 {
                policy
            } else {
                Policy::Wait
            };
            match self.offer(&mut frame, eager, policy, &mut waiting, len)? {
                Offer::Sent(sent) => return Ok(Ok(sent)),
                Offer::Refused => return Ok(Err(frame.take().unwrap_or_default())),
                Offer::Full => {}
            }
            notified.await;
        }
    }

    /// Sends a frame without waiting; `Err(frame)` back if the queue is full. `eager` as for
    /// [`send`](Self::send).
    pub(crate) fn try_send(
        self: &Arc<Self>,
        frame: Vec<u8>,
        eager: bool,
    ) -> Result<Result<Sent, Vec<u8>>, Closed> {
        match self.try_offer(frame, eager, Policy::Wait)? {
            Tried::Sent(sent) => Ok(Ok(sent)),
            Tried::Full(frame) | Tried::Refused(frame) => Ok(Err(frame)),
        }
    }

    /// Sends a reply without waiting: [`Tried::Full`] if the queue has no room now,
    /// [`Tried::Refused`] if it is over the byte bound (as [`send_reply`](Self::send_reply)
    /// would refuse it).
    pub(crate) fn try_send_reply(
        self: &Arc<Self>,
        frame: Vec<u8>,
        eager: bool,
    ) -> Result<Tried, Closed> {
        self.try_offer(frame, eager, Policy::Reply)
    }

    fn try_offer(
        self: &Arc<Self>,
        frame: Vec<u8>,
        eager: bool,
        policy: Policy,
    ) -> Result<Tried, Closed> {
        let len = frame.len();
        let mut frame = Some(frame);
        let mut none = WaitingBytes {
            outbox: self,
            len: 0,
        };
        let offer = self.offer(&mut frame, eager, policy, &mut none, len)?;
        // `none` must stay uncounted: a frame handed back does not wait here.
        let _ = self.unwait(&mut none);
        let back = frame.take().unwrap_or_default();
        Ok(match offer {
            Offer::Sent(sent) => Tried::Sent(sent),
            Offer::Full => Tried::Full(back),
            Offer::Refused => Tried::Refused(back),
        })
    }

    /// Stops counting a sender's frame as waiting.
    fn unwait(&self, waiting: &mut WaitingBytes<'_>) -> usize {
        let len = std::mem::take(&mut waiting.len);
        if len > 0 {
            let mut st = lock(&self.state);
            st.waiting_bytes = st.waiting_bytes.saturating_sub(len);
        }
        len
    }

    /// Writes the frame now, queues it, or leaves it in `frame` if the queue is full (counting it
    /// in `waiting`, `len` bytes) or, under `Policy::Reply`, over the byte bound.
    fn offer(
        self: &Arc<Self>,
        frame: &mut Option<Vec<u8>>,
        eager: bool,
        policy: Policy,
        waiting: &mut WaitingBytes<'_>,
        len: usize,
    ) -> Result<Offer, Closed> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Closed);
        }
        // Leaving the wait (to be sent now, or refused): uncount the frame.
        let was_waiting = std::mem::take(&mut waiting.len);
        st.waiting_bytes = st.waiting_bytes.saturating_sub(was_waiting);
        if policy == Policy::Reply && st.busy {
            let backlog = st.queued_bytes + st.waiting_bytes;
            if backlog > 0 && backlog + len > self.limits.bytes {
                return Ok(Offer::Refused);
            }
        }
        if !st.busy {
            st.busy = true;
            let first = frame.take().unwrap_or_default();
            if eager {
                drop(st);
                return Ok(Offer::Sent(self.write_now(first)));
            }
            // Others are about to send too: let a job write them all in one go.
            st.queued_bytes += first.len();
            st.queue.push(first);
            drop(st);
            return Ok(Offer::Sent(Sent::Deferred(self.job(Vec::new()))));
        }
        let room = st.queue.len() < self.limits.frames
            && (st.queue.is_empty() || st.queued_bytes + len <= self.limits.bytes);
        if room {
            st.queued_bytes += len;
            st.queue.push(frame.take().unwrap_or_default());
            return Ok(Offer::Sent(Sent::Queued));
        }
        st.waiting_bytes += len;
        waiting.len = len;
        Ok(Offer::Full)
    }

    /// With the right to write: writes `batch` and then whatever queues up meanwhile, as far as
    /// the socket takes it without waiting.
    fn write_now(self: &Arc<Self>, mut batch: Vec<u8>) -> Sent {
        let Ok(mut w) = self.writer.try_lock() else {
            // The closer holds the writer; let a job wait for it.
            return Sent::Deferred(self.job(batch));
        };
        loop {
            let written = write_without_waiting(&mut w, &batch);
            if written < batch.len() {
                return Sent::Deferred(self.job_from(batch, written));
            }
            crate::buffers::recycle(batch);
            match self.take_queue() {
                Some(next) => batch = next,
                None => return Sent::Written,
            }
        }
    }

    /// Takes the queue as one batch, or gives up the right to write if it is empty.
    fn take_queue(&self) -> Option<Vec<u8>> {
        let mut st = lock(&self.state);
        if st.queue.is_empty() {
            st.busy = false;
            return None;
        }
        let frames = std::mem::take(&mut st.queue);
        st.queued_bytes = 0;
        drop(st);
        self.space.notify_waiters();
        joined(frames)
    }

    fn job(self: &Arc<Self>, rest: Vec<u8>) -> FlushJob {
        self.job_from(rest, 0)
    }

    fn job_from(self: &Arc<Self>, rest: Vec<u8>, start: usize) -> FlushJob {
        FlushJob {
            outbox: self.clone(),
            rest,
            start,
        }
    }

    /// Refuses further frames, writes what is queued (an error frame for the peer, replies) and
    /// shuts the write half down. Waits for a flush job in progress.
    pub(crate) async fn close(&self) {
        let queued = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.queued_bytes = 0;
            std::mem::take(&mut st.queue)
        };
        self.space.notify_waiters();
        let mut w = self.writer.lock().await;
        if let Some(batch) = joined(queued) {
            let _ = w.write_all(&batch).await;
        }
        let _ = w.shutdown().await;
    }
}

/// Frames as one batch to write, in order (a lone frame as it is); `None` for no frames.
fn joined(mut frames: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    if frames.len() <= 1 {
        return frames.pop();
    }
    let mut joined = Vec::with_capacity(frames.iter().map(Vec::len).sum());
    for f in frames {
        joined.extend_from_slice(&f);
        crate::buffers::recycle(f);
    }
    Some(joined)
}

impl FlushJob {
    /// Writes the rest and everything queued behind it, waiting for the socket as needed, then
    /// gives up the right to write.
    pub(crate) async fn run(self) -> std::io::Result<()> {
        let outbox = self.outbox;
        if self.rest.len() <= self.start {
            // A batch to gather: the senders it is for run first (a task spawned from a worker
            // of a multi-thread runtime would run before them).
            crate::behind_ready::behind_ready_tasks().await;
        }
        let mut w = outbox.writer.lock().await;
        let mut batch = self.rest;
        let mut start = self.start;
        loop {
            if batch.len() <= start {
                // A deferred start: the frames are all in the queue.
            } else if let Err(e) =
                write_all_within(&mut w, &batch[start..], outbox.limits.stall).await
            {
                // Nobody can write after a failed write; the connection is closing.
                lock(&outbox.state).busy = false;
                return Err(e);
            }
            crate::buffers::recycle(batch);
            start = 0;
            match outbox.take_queue() {
                Some(next) => batch = next,
                None => break,
            }
        }
        drop(w);
        Ok(())
    }
}

/// Bytes of a sender's frame counted in `waiting_bytes`; uncounted when dropped, so a sender
/// whose future is dropped while it waits leaves no count behind.
struct WaitingBytes<'a> {
    outbox: &'a Outbox,
    len: usize,
}

impl Drop for WaitingBytes<'_> {
    fn drop(&mut self) {
        let outbox = self.outbox;
        outbox.unwait(self);
    }
}

/// Writes all of `buf`, failing with `TimedOut` if the transport takes no byte for `stall`.
async fn write_all_within(
    w: &mut BoxWrite,
    mut buf: &[u8],
    stall: Option<Duration>,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = match stall {
            Some(limit) => tokio::time::timeout(limit, w.write(buf))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the peer read nothing for {limit:?} (RuntimeBuilder::stall_timeout)"
                        ),
                    )
                })??,
            None => w.write(buf).await?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Writes as much of `buf` as the transport takes now; returns how much. An error counts as
/// nothing written: the flush job that follows meets the same error and reports it.
fn write_without_waiting(w: &mut BoxWrite, buf: &[u8]) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut done = 0;
    while done < buf.len() {
        match Pin::new(&mut *w).poll_write(&mut cx, &buf[done..]) {
            Poll::Ready(Ok(n)) if n > 0 => done += n,
            _ => break,
        }
    }
    done
}

/// A write half that takes everything at once and keeps it, counting the writes, for tests to
/// look at.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    pub(crate) bytes: Arc<Mutex<Vec<u8>>>,
    pub(crate) writes: Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(test)]
impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        lock(&self.bytes).extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn frames_of_senders_ready_together_go_out_in_one_write_on_a_multi_thread_runtime() {
        // One worker, so no other thread steals a task: the order is the scheduler's own.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let out = Recorder::default();
        let outbox = Outbox::new(Box::new(out.clone()), frames(64));
        rt.block_on(rt.spawn(async move {
            let senders: Vec<_> = (0..8u8)
                .map(|i| {
                    let outbox = outbox.clone();
                    tokio::spawn(async move {
                        // As a caller with other calls in flight sends (`Connection::send`).
                        match outbox.send(vec![i; 3], false).await.unwrap() {
                            Sent::Deferred(job) => Some(tokio::spawn(job.run())),
                            Sent::Queued | Sent::Written => None,
                        }
                    })
                })
                .collect();
            for s in senders {
                if let Some(job) = s.await.unwrap() {
                    job.await.unwrap().unwrap();
                }
            }
        }))
        .expect("the senders");
        let bytes = lock(&out.bytes).clone();
        assert_eq!(bytes.len(), 24, "every frame, once");
        for frame in bytes.chunks(3) {
            assert!(frame.iter().all(|&b| b == frame[0]), "a frame was torn");
        }
        let writes = out.writes.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(writes, 1, "the frames went out in {writes} writes");
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_through_a_full_socket() {
        // A small pipe fills up at once, so most frames go through queue and flush jobs.
        let (client, mut server) = tokio::io::duplex(64);
        let outbox = Outbox::new(Box::new(client), frames(4));
        let sender = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                for i in 0..200u32 {
                    let frame = vec![(i % 251) as u8; 1 + (i as usize % 300)];
                    match outbox.send(frame, i % 3 == 0).await.unwrap() {
                        Sent::Deferred(job) => {
                            tokio::spawn(job.run());
                        }
                        Sent::Written | Sent::Queued => {}
                    }
                }
                outbox.close().await;
            })
        };
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        sender.await.unwrap();
        let mut expected = Vec::new();
        for i in 0..200u32 {
            expected.extend(std::iter::repeat_n((i % 251) as u8, 1 + (i as usize % 300)));
        }
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes reordered or torn");
    }

    fn frames(n: usize) -> Limits {
        Limits {
            frames: n,
            bytes: usize::MAX,
            stall: None,
        }
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_replies_beyond_it_are_refused() {
        // Nobody reads: the first frame fills the pipe and its job waits.
        let (client, _server) = tokio::io::duplex(16);
        let outbox = Outbox::new(
            Box::new(client),
            Limits {
                frames: 100,
                bytes: 1000,
                stall: None,
            },
        );
        let Ok(Sent::Deferred(job)) = outbox.send(vec![0; 100], true).await else {
            panic!("the pipe takes 16 bytes only")
        };
        let job = tokio::spawn(job.run());
        // A frame larger than the bound goes into the empty queue; the next one waits.
        assert!(matches!(
            outbox.try_send(vec![1; 2000], true),
            Ok(Ok(Sent::Queued))
        ));
        assert!(matches!(outbox.try_send(vec![2; 10], true), Ok(Err(_))));
        // A reply that would wait behind that backlog is refused at once.
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            outbox.send_reply(vec![3; 10], true),
        )
        .await
        .expect("refused, not waiting");
        assert!(matches!(refused, Ok(Err(f)) if f.len() == 10));
        // A waiting sender is counted while it waits and uncounted when it gives up.
        let wait = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            outbox.send(vec![4; 10], true),
        );
        assert!(wait.await.is_err(), "no room: it waits");
        assert_eq!(lock(&outbox.state).waiting_bytes, 0);
        job.abort();
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_stall_timeout() {
        let (client, _server) = tokio::io::duplex(16);
        let outbox = Outbox::new(
            Box::new(client),
            Limits {
                frames: 4,
                bytes: 1 << 20,
                stall: Some(std::time::Duration::from_millis(100)),
            },
        );
        let Ok(Sent::Deferred(job)) = outbox.send(vec![0; 100], true).await else {
            panic!("the pipe takes 16 bytes only")
        };
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), job.run())
            .await
            .expect("the stall timeout ends the write")
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    }

    #[tokio::test]
    async fn closing_writes_the_queued_frames_in_order_in_one_write() {
        let out = Recorder::default();
        let outbox = Outbox::new(Box::new(out.clone()), frames(64));
        // A batch gathers behind a flush job that has not run when the connection closes.
        let mut jobs = Vec::new();
        for i in 0..5u8 {
            if let Sent::Deferred(job) = outbox.send(vec![i; 3], false).await.unwrap() {
                jobs.push(job);
            }
        }
        assert_eq!(jobs.len(), 1, "one job for the batch");
        outbox.close().await;
        let expected: Vec<u8> = (0..5u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(*lock(&out.bytes), expected);
        let writes = out.writes.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(writes, 1, "the queue went out in {writes} writes");
    }

    #[tokio::test]
    async fn a_closed_outbox_refuses_frames() {
        let (client, _server) = tokio::io::duplex(1024);
        let outbox = Outbox::new(Box::new(client), frames(4));
        outbox.close().await;
        assert!(outbox.send(vec![1], true).await.is_err());
    }
}
