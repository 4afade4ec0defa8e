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
//! in one batch.
//!
//! **Invariant:** `busy` is true exactly while one party (a direct writer or a flush job) owns
//! the right to write; bytes are written in the order frames were accepted.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

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
    /// Frames that may wait in the queue.
    capacity: usize,
}

#[derive(Default)]
struct State {
    queue: Vec<Vec<u8>>,
    busy: bool,
    closed: bool,
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

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Outbox {
    pub(crate) fn new(writer: BoxWrite, capacity: usize) -> Arc<Self> {
        Arc::new(Outbox {
            state: Mutex::default(),
            writer: tokio::sync::Mutex::new(writer),
            space: Notify::new(),
            capacity: capacity.max(1),
        })
    }

    /// Sends a frame, waiting while the queue is full; `eager`: write at once if nobody writes.
    pub(crate) async fn send(
        self: &Arc<Self>,
        frame: Vec<u8>,
        eager: bool,
    ) -> Result<Sent, Closed> {
        let mut frame = Some(frame);
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            // Registered before looking at the state, so a wake-up in between is not lost.
            notified.as_mut().enable();
            if let Some(sent) = self.offer(&mut frame, eager)? {
                return Ok(sent);
            }
            notified.await;
        }
    }

    /// Sends a frame without waiting; `Err(frame)` back if the queue is full.
    pub(crate) fn try_send(
        self: &Arc<Self>,
        frame: Vec<u8>,
    ) -> Result<Result<Sent, Vec<u8>>, Closed> {
        let mut frame = Some(frame);
        match self.offer(&mut frame, true)? {
            Some(sent) => Ok(Ok(sent)),
            None => Ok(Err(frame.take().unwrap_or_default())),
        }
    }

    /// Writes the frame now, queues it, or leaves it in `frame` if the queue is full.
    fn offer(
        self: &Arc<Self>,
        frame: &mut Option<Vec<u8>>,
        eager: bool,
    ) -> Result<Option<Sent>, Closed> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Closed);
        }
        if !st.busy {
            st.busy = true;
            let first = frame.take().unwrap_or_default();
            if eager {
                drop(st);
                return Ok(Some(self.write_now(first)));
            }
            // Others are about to send too: let a job write them all in one go.
            st.queue.push(first);
            drop(st);
            return Ok(Some(Sent::Deferred(self.job(Vec::new()))));
        }
        if st.queue.len() < self.capacity {
            st.queue.push(frame.take().unwrap_or_default());
            return Ok(Some(Sent::Queued));
        }
        Ok(None)
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
        let mut frames = std::mem::take(&mut st.queue);
        drop(st);
        self.space.notify_waiters();
        if frames.len() == 1 {
            return frames.pop();
        }
        let mut joined = Vec::with_capacity(frames.iter().map(Vec::len).sum());
        for f in frames {
            joined.extend_from_slice(&f);
            crate::buffers::recycle(f);
        }
        Some(joined)
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
            std::mem::take(&mut st.queue)
        };
        self.space.notify_waiters();
        let mut w = self.writer.lock().await;
        for f in queued {
            if w.write_all(&f).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    }
}

impl FlushJob {
    /// Writes the rest and everything queued behind it, waiting for the socket as needed, then
    /// gives up the right to write.
    pub(crate) async fn run(self) -> std::io::Result<()> {
        let outbox = self.outbox;
        let mut w = outbox.writer.lock().await;
        let mut batch = self.rest;
        let mut start = self.start;
        loop {
            if batch.len() <= start {
                // A deferred start: the frames are all in the queue.
            } else if let Err(e) = w.write_all(&batch[start..]).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_through_a_full_socket() {
        // A small pipe fills up at once, so most frames go through queue and flush jobs.
        let (client, mut server) = tokio::io::duplex(64);
        let outbox = Outbox::new(Box::new(client), 4);
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

    #[tokio::test]
    async fn a_closed_outbox_refuses_frames() {
        let (client, _server) = tokio::io::duplex(1024);
        let outbox = Outbox::new(Box::new(client), 4);
        outbox.close().await;
        assert!(outbox.send(vec![1], true).await.is_err());
    }
}
