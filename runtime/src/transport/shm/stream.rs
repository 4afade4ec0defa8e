//! The two halves of a shared-memory link as tokio byte streams, and how they wait.
//!
//! A half that cannot go on (nothing to read, no space to write) first spins for
//! [`ShmOptions::spin`](super::ShmOptions) polling the ring, then announces it sleeps (a flag in
//! the ring's control block), fences, checks the ring once more and only then awaits its wake-up
//! pipe ([`wake`](super::wake)) and the rendezvous socket. The other side, after publishing a
//! position, fences and, if the flag is set, clears it and writes a byte to that pipe. Either
//! the sleeper's re-check sees the new position or the publisher sees the flag: no wake-up is
//! lost.
//!
//! A caller spinning for its reply (see [`SpinUntilReadable`]) on a thread of a tokio runtime
//! takes over a sleeping reader's wake-up: it takes the waker the reader left in
//! [`ReaderSleep`] and withdraws the reader's flag, so the peer writes no wake-up, and wakes
//! the reader itself when the spin ends (bytes seen or not). On a current-thread runtime the
//! reader could run only once the caller yields anyway; on a multi-thread one the wake-up puts
//! the reader in this worker's next slot, where it reads the reply as soon as the caller
//! yields, instead of another worker being woken through the pipe and the reactor to read
//! it (on a virtual machine a wake-up of an idle CPU alone costs several microseconds). The
//! reader stores its waker and raises its flag under the same lock the caller takes both under,
//! so either the caller holds the waker of a reader whose flag it cleared, or the flag stays
//! raised: a reader never sleeps with nobody to wake it.

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::rendezvous::Segment;
use super::ring::{Arrivals, Consumer, CpuHint, Producer, ends};
use super::segment::watch;
use super::wake::{Waiting, WakePipe, Woken};
use crate::transport::SpinUntilReadable;

/// Which end of the link this process is: the client writes ring 0 and reads ring 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Created the segment and dialled.
    Client,
    /// Accepted the segment.
    Server,
}

/// Splits an accepted or created segment into the two halves of a link. `sock` is the
/// rendezvous socket (non-blocking), watched by both halves for the peer's death.
pub(super) fn split(
    segment: Segment,
    role: Role,
    sock: OwnedFd,
    spin: Duration,
) -> io::Result<(ShmReader, ShmWriter)> {
    let (out_ring, in_ring) = match role {
        Role::Client => (0, 1),
        Role::Server => (1, 0),
    };
    // Each side's number in the hint is the ring it writes: 0 the client, 1 the server.
    let hint = Arc::new(CpuHint::new(segment.map.clone(), out_ring));
    let (producer, _) = ends(segment.map.clone(), &segment.layout, out_ring);
    let (_, consumer) = ends(segment.map, &segment.layout, in_ring);
    let wakes = segment.wakes;
    let unanswered = Arc::new(Unanswered::default());
    let reader = ShmReader {
        unanswered: unanswered.clone(),
        ring: consumer,
        data: Waiting::new(wakes.data)?,
        space_peer: wakes.peer_space,
        sock: watch(sock.try_clone()?)?,
        peer_gone: false,
        spinner: Spinner::new(spin, Some(hint.clone())),
        sleep: Arc::default(),
    };
    let writer = ShmWriter {
        ring: producer,
        space: Waiting::new(wakes.space)?,
        data_peer: wakes.peer_data,
        unanswered,
        sock: watch(sock)?,
        peer_gone: false,
        shut: false,
        spinner: Spinner::new(spin, Some(hint)),
    };
    Ok((reader, writer))
}

/// The read half: consumes the peer's ring.
pub(crate) struct ShmReader {
    ring: Consumer,
    /// Woken when the peer published data for us while we slept.
    data: Waiting,
    /// Wakes the peer's writer when we free space.
    space_peer: WakePipe,
    /// The rendezvous socket (our own descriptor of it): readable at the peer's end.
    sock: AsyncFd<OwnedFd>,
    /// The socket reported the peer's end: drain the ring, then end of stream.
    peer_gone: bool,
    spinner: Spinner,
    /// Where this half leaves its waker when it sleeps.
    sleep: Arc<ReaderSleep>,
    /// Bytes our writer wrote that the peer has not answered yet.
    unanswered: Arc<Unanswered>,
}

/// A sleeping reader's waker, for a spinning caller to take over its wake-up.
#[derive(Default)]
struct ReaderSleep {
    waker: Mutex<Option<Waker>>,
    /// A caller's spin saw bytes since the reader last asked: callers cover the waiting, so the
    /// reader skips its next probe. (On a runtime with one thread a reader's spin holds up the
    /// caller it waits for; each probe would be a 30 µs stall of one call in 64.)
    caller_paid: AtomicBool,
}

impl ReaderSleep {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        // The slot holds a waker and nothing else: a panic elsewhere cannot leave it invalid.
        self.waker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The write half: produces into our ring.
pub(crate) struct ShmWriter {
    ring: Producer,
    /// Woken when the peer freed space for us while we slept.
    space: Waiting,
    /// Wakes the peer's reader when we publish data.
    data_peer: WakePipe,
    /// Bytes written since the peer last wrote us anything.
    unanswered: Arc<Unanswered>,
    sock: AsyncFd<OwnedFd>,
    peer_gone: bool,
    /// Shut down: the ring is closed, no more writes.
    shut: bool,
    spinner: Spinner,
}

impl ShmReader {
    /// A spin for this half's next bytes, for the caller of a call sent over the link (see
    /// [`SpinUntilReadable`]). It has its own [`Spinner`]: whether spinning pays for a caller
    /// says nothing of whether it pays for the reader, and the other way round.
    pub(super) fn spin_until_readable(&self) -> Box<dyn SpinUntilReadable> {
        Box::new(ArrivalSpin {
            hint: self.spinner.hint.clone(),
            arrivals: self.ring.arrivals(),
            spinner: Mutex::new(Spinner::new(self.spinner.budget, self.spinner.hint.clone())),
            reader: self.sleep.clone(),
            unanswered: self.unanswered.clone(),
        })
    }

    /// Leaves the waker of the task polling this half and announces that it sleeps; the caller
    /// checks the ring again afterwards.
    fn announce_sleep(&mut self, waker: &Waker) {
        self.data.announcing();
        let mut slot = self.sleep.slot();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
        self.ring.announce_data_waiter();
    }
}

/// Spins on a ring's arrivals, waking the ring's reader itself when it took over its wake-up.
struct ArrivalSpin {
    /// Where each side last ran (the reader's spinner holds the same).
    hint: Option<Arc<CpuHint>>,
    arrivals: Arrivals,
    spinner: Mutex<Spinner>,
    reader: Arc<ReaderSleep>,
    unanswered: Arc<Unanswered>,
}

impl SpinUntilReadable for ArrivalSpin {
    fn spin(&self) -> bool {
        // Marked before the first look: bytes published after it end the spin even if a reader
        // on another thread takes them before this thread looks again.
        let mark = self.arrivals.mark();
        if self.arrivals.since(mark) {
            return true;
        }
        // Two callers at once: one spin is enough.
        let Ok(mut spinner) = self.spinner.try_lock() else {
            return false;
        };
        if !spinner.should_spin(|| true) {
            return false;
        }
        // The reader sleeps (or slept, and its waker is stale: waking it again is harmless):
        // the peer need not wake it through the pipe, this thread will. Only on a thread of
        // a tokio runtime: from elsewhere the wake-up would cost what the peer's does.
        let sleeper = {
            let mut slot = self.reader.slot();
            // Asked only when a reader sleeps: the answer clones the runtime's handle.
            if slot.is_some() && in_tokio_runtime() {
                self.arrivals.withdraw_data_waiter();
                slot.take()
            } else {
                None
            }
        };
        let seen = spinner.run_longer(self.unanswered.patience(), || self.arrivals.since(mark));
        if seen {
            self.reader.caller_paid.store(true, Ordering::Relaxed);
        }
        // Seen or not, the reader polls again: it reads the bytes, or announces its sleep anew.
        if let Some(waker) = sleeper {
            waker.wake();
        }
        seen
    }

    fn peer_on_other_cpu(&self) -> bool {
        self.hint.as_ref().is_some_and(|h| !h.shares_cpu())
    }
}

/// Whether this thread belongs to a tokio runtime (runs its tasks, or blocks in it).
fn in_tokio_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Spinning that pays only while it pays: it helps when the peer runs on another CPU at the
/// same time (it answers within the spin), and only delays the peer when both share one CPU or
/// the peer is idle. Each successful spin earns credit, each failed one costs more; without
/// credit a half spins only on every [`PROBE_EVERY`]th wait, to notice when spinning would pay
/// again. So a ping-pong across two CPUs keeps spinning, and one on a single CPU, or an idle
/// link, soon sleeps at once. A probe is skipped when the peer last waited on this CPU (the
/// [`CpuHint`]): it could not answer while we spin, and each such probe would hold up the call
/// it waits for by the whole budget.
struct Spinner {
    budget: Duration,
    credit: u8,
    waits: u32,
    hint: Option<Arc<CpuHint>>,
}

/// Bytes written to the peer since it last wrote us anything: how much it has to take in
/// before it can answer. A spin waiting for its answer lasts longer than the budget by one
/// nanosecond per [`PATIENCE_BYTES_PER_NS`] of them (up to [`MAX_PATIENCE`]): before it
/// answers, the peer copies the bytes out of the ring and decodes them (and, for an answer as
/// large, encodes it and copies it in), and with a megabyte that takes longer than the budget;
/// a side that slept meanwhile is woken when the answer comes, which on a virtual machine costs
/// tens of microseconds when its CPU went idle. Measured with a core each, a 1 MiB echo: 225 µs
/// with the plain 30 µs budget, 179 µs spinning 200 µs, and as fast with this.
#[derive(Default)]
struct Unanswered(AtomicUsize);

/// See [`Unanswered`]: well under the speed of a copy, as the peer makes several.
const PATIENCE_BYTES_PER_NS: usize = 8;
/// See [`Unanswered`].
const MAX_PATIENCE: Duration = Duration::from_millis(1);

impl Unanswered {
    /// We wrote `n` bytes. (Only the writer adds and only the reader clears, each with a load
    /// and a store: a clear lost in between only makes one spin longer.)
    fn wrote(&self, n: usize) {
        let before = self.0.load(Ordering::Relaxed);
        self.0.store(before.saturating_add(n), Ordering::Relaxed);
    }

    /// The peer wrote us bytes.
    fn heard(&self) {
        if self.0.load(Ordering::Relaxed) != 0 {
            self.0.store(0, Ordering::Relaxed);
        }
    }

    /// How much longer than its budget a spin for the peer's answer lasts.
    fn patience(&self) -> Duration {
        let n = self.0.load(Ordering::Relaxed) / PATIENCE_BYTES_PER_NS;
        Duration::from_nanos(n as u64).min(MAX_PATIENCE)
    }
}

/// Bytes a large write publishes at a time while the peer runs on another CPU.
const STREAM_PART: usize = 64 * 1024;

/// Most credit a run of successful spins earns.
const MAX_CREDIT: u8 = 8;
/// Without credit, one wait in this many still spins.
const PROBE_EVERY: u32 = 64;

impl Spinner {
    fn new(budget: Duration, hint: Option<Arc<CpuHint>>) -> Self {
        Spinner {
            budget,
            credit: 1,
            waits: 0,
            hint,
        }
    }

    /// Spins up to the budget until `ready()`, if spinning has paid lately; whether it became
    /// ready.
    fn spin_until(&mut self, ready: impl FnMut() -> bool) -> bool {
        self.should_spin(|| true) && self.run(ready)
    }

    /// Counts a wait; whether it should spin: spinning has paid lately, or the wait is a probe,
    /// `probe()` allows it and the peer does not share our CPU.
    fn should_spin(&mut self, probe: impl FnOnce() -> bool) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        self.waits = self.waits.wrapping_add(1);
        self.credit > 0
            || (self.waits.is_multiple_of(PROBE_EVERY)
                && probe()
                && !self.hint.as_ref().is_some_and(|h| h.shares_cpu()))
    }

    /// Whether the peer is known to share our CPU, or nothing is known (no hint): the peer
    /// then cannot run while we do. Notes our CPU in the hint.
    fn peer_shares_cpu(&self) -> bool {
        self.hint.as_ref().is_none_or(|h| h.shares_cpu())
    }

    /// Spins up to the budget until `ready()` and books the outcome; whether it became ready.
    fn run(&mut self, ready: impl FnMut() -> bool) -> bool {
        self.run_longer(Duration::ZERO, ready)
    }

    /// [`run`](Self::run), up to the budget plus `extra` while the peer last waited on another
    /// CPU (sharing ours, a longer spin would only hold it up longer).
    fn run_longer(&mut self, extra: Duration, ready: impl FnMut() -> bool) -> bool {
        let extra = if extra.is_zero() || self.peer_shares_cpu() {
            Duration::ZERO
        } else {
            extra
        };
        let ok = spin_until(self.budget + extra, ready);
        self.credit = if ok {
            (self.credit + 1).min(MAX_CREDIT)
        } else {
            self.credit.saturating_sub(2)
        };
        ok
    }
}

/// Spins up to `spin` until `ready()`; whether it became ready.
fn spin_until(spin: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if spin.is_zero() {
        return false;
    }
    let start = Instant::now();
    loop {
        for _ in 0..32 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= spin {
            return false;
        }
    }
}

/// Sleeps on a half's wake-up pipe and on the rendezvous socket: `Ready(false)` on a wake-up,
/// `Ready(true)` once the peer is gone (it closed its end of the pipe or of the socket).
fn sleep(
    waiting: &Waiting,
    sock: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<bool>> {
    if let Poll::Ready(woken) = waiting.poll(cx)? {
        return Poll::Ready(Ok(woken == Woken::PeerGone));
    }
    poll_peer_gone(sock, cx).map_ok(|()| true)
}

/// Polls the rendezvous socket; `Ready` once the peer's end is closed (it died, or dropped the
/// link). The peer never sends on it after the handshake, so bytes there are a protocol error.
fn poll_peer_gone(sock: &AsyncFd<OwnedFd>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    loop {
        let mut guard = ready!(sock.poll_read_ready(cx))?;
        let mut byte = [0u8; 1];
        let peek = guard.try_io(|s| {
            let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
            Ok(rustix::net::recv(s.get_ref(), &mut byte, flags)?.0)
        });
        match peek {
            Ok(Ok(0)) => return Poll::Ready(Ok(())),
            Ok(Ok(_)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the peer sent bytes on the rendezvous socket",
                )));
            }
            // Reset and the like: the peer is gone just the same.
            Ok(Err(_)) => return Poll::Ready(Ok(())),
            Err(_would_block) => continue,
        }
    }
}

impl AsyncRead for ShmReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut spun = false;
        loop {
            let available = this.ring.available()?;
            if available > 0 || buf.remaining() == 0 {
                // Straight into the caller's unfilled bytes: zeroing a large frame's buffer
                // first would cost as much as the copy.
                let n = this.ring.read(buf)?;
                if n > 0 {
                    this.unanswered.heard();
                    if this.ring.take_space_waiter() {
                        this.space_peer.wake();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if this.ring.producer_closed() || this.peer_gone {
                // Whatever was published before the close is visible by now.
                if this.ring.available()? > 0 {
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            if !spun {
                spun = true;
                let caller_paid = &this.sleep.caller_paid;
                let ring = &mut this.ring;
                let patience = this.unanswered.patience();
                if this
                    .spinner
                    .should_spin(|| !caller_paid.swap(false, Ordering::Relaxed))
                    && this.spinner.run_longer(patience, || {
                        ring.touch_next();
                        ring.available() != Ok(0) || ring.producer_closed()
                    })
                {
                    continue;
                }
            }
            this.announce_sleep(cx.waker());
            if this.ring.available()? > 0 || this.ring.producer_closed() {
                continue;
            }
            let gone = ready!(sleep(&this.data, &this.sock, cx))?;
            this.peer_gone |= gone;
        }
    }
}

impl Drop for ShmReader {
    fn drop(&mut self) {
        self.ring.mark_gone();
        if self.ring.take_space_waiter() {
            self.space_peer.wake();
        }
    }
}

impl ShmWriter {
    /// Waits until there is space (or the peer is gone / broke the ring), then writes.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&mut Producer) -> Result<usize, super::ring::Corrupt>,
    ) -> Poll<io::Result<usize>> {
        if self.shut {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let mut spun = false;
        loop {
            if self.peer_gone || self.ring.consumer_gone() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the shared-memory peer is gone",
                )));
            }
            let n = write(&mut self.ring)?;
            if n > 0 {
                self.unanswered.wrote(n);
                if self.ring.take_data_waiter() {
                    self.data_peer.wake();
                }
                return Poll::Ready(Ok(n));
            }
            if !spun {
                spun = true;
                let ring = &mut self.ring;
                if self
                    .spinner
                    .spin_until(|| ring.free() != Ok(0) || ring.consumer_gone())
                {
                    continue;
                }
            }
            self.space.announcing();
            self.ring.announce_space_waiter();
            if self.ring.free()? > 0 || self.ring.consumer_gone() {
                continue;
            }
            let gone = ready!(sleep(&self.space, &self.sock, cx))?;
            self.peer_gone |= gone;
        }
    }

    fn close(&mut self) {
        if !self.shut {
            self.shut = true;
            self.ring.close();
            if self.ring.take_data_waiter() {
                self.data_peer.wake();
            }
        }
    }
}

impl AsyncWrite for ShmWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        if src.len() < 2 * STREAM_PART || this.spinner.peer_shares_cpu() {
            return this.poll_write_with(cx, |ring| ring.write(src));
        }
        // A large write with the peer on another CPU goes out part by part, each published
        // (and the peer's reader woken after the first): the reader copies one part out while
        // we copy the next in, instead of starting when the last byte is in.
        let mut done = 0;
        while done < src.len() {
            let part = &src[done..src.len().min(done + STREAM_PART)];
            match this.poll_write_with(cx, |ring| ring.write(part)) {
                Poll::Ready(Ok(n)) => done += n,
                Poll::Ready(Err(_)) | Poll::Pending if done > 0 => break,
                other => return other,
            }
        }
        Poll::Ready(Ok(done))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_write_with(cx, |ring| {
            let mut total = 0;
            for b in bufs {
                let n = ring.write(b)?;
                total += n;
                if n < b.len() {
                    break;
                }
            }
            Ok(total)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are in shared memory and published already.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for ShmWriter {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
use std::os::fd::{AsFd, BorrowedFd};

#[cfg(test)]
impl ShmReader {
    /// The rendezvous socket, to kill the link under the halves.
    pub(super) fn sock_for_tests(&self) -> BorrowedFd<'_> {
        self.sock.get_ref().as_fd()
    }

    /// The mapping, to write into it as the peer.
    pub(super) fn map_for_tests(&self) -> std::sync::Arc<super::segment::Mapping> {
        self.ring.map_for_tests()
    }

    /// The read end of the pipe this half sleeps on.
    pub(super) fn data_pipe_for_tests(&self) -> BorrowedFd<'_> {
        self.data.fd_for_tests()
    }
}

#[cfg(test)]
impl ShmWriter {
    /// The ring, to corrupt it as the peer.
    pub(super) fn ring_for_tests(&self) -> &Producer {
        &self.ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of `waits` waits a spinner without credit spins on (each spin failing).
    fn probes(spinner: &mut Spinner, waits: u32, allow: bool) -> u32 {
        let mut spun = 0;
        for _ in 0..waits {
            if spinner.should_spin(|| allow) {
                assert!(!spinner.run(|| false));
                spun += 1;
            }
        }
        spun
    }

    #[test]
    fn a_spinner_without_credit_probes_one_wait_in_64_unless_told_not_to() {
        let mut spinner = Spinner::new(Duration::from_micros(1), None);
        // The first wait spins on the credit a spinner starts with, and loses it.
        assert!(!spinner.spin_until(|| false));
        assert_eq!(probes(&mut spinner, PROBE_EVERY * 4, true), 4);
        assert_eq!(probes(&mut spinner, PROBE_EVERY * 4, false), 0);
        // A spin that pays earns credit back: the next waits spin without asking.
        assert_eq!(probes(&mut spinner, PROBE_EVERY, true), 1);
        assert!(spinner.run(|| true));
        assert!(spinner.should_spin(|| false));
    }
}
