//! Shared memory between processes of one host: two byte rings in one anonymous memory file.
//!
//! # Rendezvous
//! The endpoint `shm:///path` names a Unix socket, bound with exactly the rules of
//! [`unix`](super::unix): mode from `UnixAccess` (0600 by default), a stale file replaced and a
//! live one refused, SO_PEERCRED checked on accept (same user or an allowed uid), the file
//! removed when the listener goes. The dialling client creates a `memfd` (CLOEXEC,
//! ALLOW_SEALING) sized for a header page and two rings, seals it (SHRINK, GROW, SEAL) before
//! mapping it, and passes it over the socket (SCM_RIGHTS) with the read ends of the two pipes
//! it wakes the server through; the server answers with the read ends of its own two; see
//! [`rendezvous`] and [`wake`]. The memory has no name: nothing appears in `/dev/shm` or `ipcs -m`.
//!
//! The server trusts nothing it receives: it checks the seals (a file that can shrink under a
//! mapping turns reads into SIGBUS), the size against the offer and [`ring::MAX_SEGMENT`], the
//! wake-up pipes, and the header, before and after mapping; any mismatch refuses the connection with
//! a logged warning. Afterwards every position read from the segment is checked on every use
//! ([`ring`]); a peer that breaks the ring gets `InvalidData` ("corrupt ring from peer"), which
//! the runtime turns into a protocol error and a closed connection. Bytes are copied into
//! private memory before the frame layer sees them.
//!
//! # Waiting
//! A half with nothing to do spins first, polling the ring, for [`ShmOptions::spin`]: by default
//! 30 µs when the machine has more than one CPU (waking a sleeping process on another CPU costs
//! tens of microseconds, a spinning one answers in well under one), and not at all on a single
//! CPU, where spinning only delays the peer we wait for. The spin runs inside `poll_read` /
//! `poll_write` and so holds a tokio worker: it is bounded by the knob and done once per poll.
//! A wait for the peer's answer to bytes it has not answered yet lasts longer, by a
//! nanosecond per 8 of them (up to 1 ms), while the peer last waited on another CPU: a peer
//! taking in a megabyte needs more than the budget to copy and decode it, and waking us after
//! our CPU went idle would cost more than the rest of the spin ([`stream`]'s `Unanswered`).
//! Then it sleeps on a wake-up pipe: one per ring and purpose ("data published", "space freed"),
//! so a reader and a writer never steal each other's wake-ups, read back only once in a while
//! (the reactor watches it edge-triggered: each write is a new event, so a wake-up costs the
//! sleeper no system call beyond its wait); the flag protocol is in [`stream`]. Each side makes
//! the pipes it writes and passes only their read ends, so a hostile peer can never make a
//! wake-up block ([`wake`]).
//!
//! A half is polled only when it is woken, so its own spin does not cover a caller waiting for
//! a reply: the reader went to sleep before the call was even sent. The caller of a lone call
//! (the only one in flight on its connection) therefore spins on the ring itself after sending
//! ([`SpinUntilReadable`](crate::transport::SpinUntilReadable), run by `Connection::call`), with
//! the same budget. On a thread of a tokio runtime the caller holds the sleeping reader's
//! wake-up while it spins (the waker the reader left, its flag withdrawn from the ring), so the
//! peer writes no wake-up and the reader is woken by the caller's thread when the spin ends: a
//! reply seen during the spin costs neither process a system call, and on a multi-thread
//! runtime the reader runs on the caller's worker instead of another worker being woken for it.
//! The serving side does the same for the peer's next call: a handler that ran as a task of its
//! own (on a multi-thread runtime, every handler, one-way ones too), once it is done (its reply
//! out) and no other handler runs, spins on the ring for the next call with the reader's
//! wake-up in hand (`Connection::start_tracked`, `Connection::start`); a handler that finished
//! inside the reader leaves the reader to spin itself.
//! Whether spinning pays is judged per half and per caller ([`stream`]'s `Spinner`): on one CPU
//! it soon stops, and probes only on one wait in 64, and not even then while the peer last
//! waited on the same CPU (each side notes its CPU in the segment's header: [`ring`]'s
//! `CpuHint`).
//!
//! A write of 128 KiB or more, while the peer last waited on another CPU, is published in
//! 64 KiB parts, the peer's reader woken after the first: it copies one part out of the ring
//! while the writer copies the next in. With the peer on our CPU (or nothing known of it) a
//! write is published once: a reader woken early there would only take the CPU from the writer.
//!
//! The same hint decides how a connection sends frames while others are due (calls in flight,
//! the replies to a batch of calls): with the peer on our CPU they are batched, one publication
//! and at most one wake-up per batch; while the peer last waited on another CPU each one is
//! written at once ([`SpinUntilReadable::peer_on_other_cpu`](crate::transport::SpinUntilReadable),
//! read by `Connection::send`), so the peer works on one frame while we make the next instead
//! of the two sides taking turns, each idle while the other works through a batch.
//!
//! # End of the link
//! The rendezvous socket stays open as long as either half lives, and both halves watch it: when
//! the peer dies or drops its link, a reader drains what is left in the ring and then reports
//! the end of the stream, and a writer fails with `BrokenPipe`, so a call to a dead peer ends in
//! an error, not a hang. Shutting down (or dropping) a writer closes its ring: the peer reads
//! the rest and then the end of the stream. Dropping a reader tells the peer's writer, which
//! then fails with `BrokenPipe` rather than wait for space forever.
//!
//! # Layout
//! - [`segment`]: the mapping; the only `unsafe` code, behind a safe API.
//! - [`ring`]: the layout and the checked SPSC rings.
//! - [`rendezvous`]: creating, passing and verifying the segment.
//! - [`wake`]: the wake-up pipes.
//! - [`stream`]: the halves as `AsyncRead` / `AsyncWrite`, spinning and sleeping.
//! - [`testing`]: a raw client for hostile-peer tests.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc};

use super::unix::{UnixAccess, bind_socket};
use super::{Link, Listener};
use crate::BoxFuture;
use crate::endpoint::Endpoint;

mod fuzz;
mod rendezvous;
mod ring;
mod segment;
mod stream;
pub mod testing;
#[cfg(test)]
mod tests;
mod wake;

pub(crate) use fuzz::ring as fuzz_ring;
use ring::Layout;
use stream::Role;

/// Bytes of each ring by default: a 1 MiB message streams through with room to spare, and two
/// rings plus the header stay well under a few megabytes per connection.
pub(crate) const DEFAULT_CAPACITY: u64 = 2 << 20;

/// How long a connecting client may take to make its offer: a client that connects and says
/// nothing must not hold a handshake slot for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes under way at once at most; more wait in the socket's backlog.
const ACCEPT_QUEUE: usize = 16;

/// Tuning of shared-memory links.
#[derive(Clone, Debug)]
pub(crate) struct ShmOptions {
    /// How long a half spins polling the ring before it sleeps on its wake-up pipe.
    pub(crate) spin: Duration,
    /// Bytes of each ring this side creates (a power of two, at least 4 KiB); the client
    /// chooses, the server accepts what passes its checks.
    pub(crate) capacity: u64,
}

/// The spin budget by default: 30 µs on a machine with more than one CPU online (the peer may
/// run on another: waking it there costs tens of microseconds, a spinning one answers in well
/// under one), none on a single CPU. Whether a link keeps spinning adapts to whether it pays
/// (see `stream::Spinner`): this process's own CPU affinity says nothing about the peer's.
pub(crate) fn default_spin() -> Duration {
    if online_cpus() > 1 {
        Duration::from_micros(30)
    } else {
        Duration::ZERO
    }
}

/// CPUs online on this machine (`/sys/devices/system/cpu/online`, as `0-3,6`), whatever this
/// process's affinity.
fn online_cpus() -> usize {
    let Ok(list) = std::fs::read_to_string("/sys/devices/system/cpu/online") else {
        return std::thread::available_parallelism().map_or(1, |n| n.get());
    };
    list.trim()
        .split(',')
        .filter_map(|range| match range.split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()?.checked_sub(a.parse().ok()?)? + 1),
            None => range.parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

impl Default for ShmOptions {
    fn default() -> Self {
        ShmOptions {
            spin: default_spin(),
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// A bound shared-memory listener: the rendezvous socket and the task accepting on it.
pub(crate) struct ShmTransport {
    path: PathBuf,
    /// Links whose segment passed every check, from the accepting task.
    incoming: Mutex<mpsc::Receiver<Link>>,
    /// The accepting task, stopped when the listener goes.
    acceptor: tokio::task::AbortHandle,
}

impl ShmTransport {
    /// Binds the rendezvous socket at `path` with the default options.
    #[cfg(test)]
    pub(crate) fn bind(path: &str, access: &UnixAccess) -> io::Result<Self> {
        Self::bind_with(path, access, ShmOptions::default())
    }

    /// Binds the rendezvous socket at `path`; must run inside a tokio runtime, on which the
    /// accepting task runs.
    pub(crate) fn bind_with(
        path: &str,
        access: &UnixAccess,
        options: ShmOptions,
    ) -> io::Result<Self> {
        let path = PathBuf::from(path);
        let (listener, uids) = bind_socket(&path, access)?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor = tokio::spawn(accept_loop(listener, uids, path.clone(), options, tx));
        Ok(ShmTransport {
            path,
            incoming: Mutex::new(rx),
            acceptor: acceptor.abort_handle(),
        })
    }
}

/// Accepts rendezvous connections for as long as the listener lives; each handshake runs as its
/// own task, so a slow or silent client delays nobody else.
async fn accept_loop(
    listener: UnixListener,
    uids: Vec<u32>,
    path: PathBuf,
    options: ShmOptions,
    tx: mpsc::Sender<Link>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, path = %path.display(), "shm accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no credentials for a shm peer");
                continue;
            }
        };
        if !uids.contains(&cred.uid()) {
            tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), path = %path.display(), "refused a peer of another user");
            continue;
        }
        let tx = tx.clone();
        let spin = options.spin;
        tokio::spawn(async move {
            let pid = cred.pid();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_segment(stream, pid, spin)).await {
                Ok(Ok(link)) => {
                    let _ = tx.send(link).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(pid = ?pid, error = %e, "refused a shared-memory segment");
                }
                Err(_) => tracing::warn!(pid = ?pid, "no shared-memory offer in time; dropped"),
            }
        });
    }
}

/// The server's side of the rendezvous: receive the offer, verify it, accept it.
async fn accept_segment(stream: UnixStream, pid: Option<i32>, spin: Duration) -> io::Result<Link> {
    let offer = stream
        .async_io(Interest::READABLE, || {
            rendezvous::recv_offer(stream.as_fd())
        })
        .await?;
    let segment = rendezvous::verify(offer)?;
    stream
        .async_io(Interest::WRITABLE, || {
            rendezvous::send_answer(stream.as_fd(), &segment.wakes)
        })
        .await?;
    link(segment, Role::Server, stream, pid, spin)
}

impl Listener for ShmTransport {
    fn accept(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            self.incoming.lock().await.recv().await.ok_or_else(|| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the shm accepting task ended")
            })
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::shm(self.path.to_string_lossy())
    }
}

impl Drop for ShmTransport {
    fn drop(&mut self) {
        self.acceptor.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Dials the rendezvous socket at `path` with the default options.
#[cfg(test)]
pub(crate) async fn connect(path: &str) -> io::Result<Link> {
    connect_with(path, &ShmOptions::default()).await
}

/// Dials the rendezvous socket at `path`: creates the segment, offers it, and waits for the
/// server to accept it.
pub(crate) async fn connect_with(path: &str, options: &ShmOptions) -> io::Result<Link> {
    let (reader, writer, pid) = connect_halves(path, options).await?;
    Ok(link_of(reader, writer, pid))
}

/// [`connect_with`], giving the halves themselves and the server's pid.
async fn connect_halves(
    path: &str,
    options: &ShmOptions,
) -> io::Result<(stream::ShmReader, stream::ShmWriter, Option<i32>)> {
    let layout = Layout::new(options.capacity, options.capacity).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad shared-memory ring capacity {}", options.capacity),
        )
    })?;
    let stream = UnixStream::connect(path).await?;
    let pid = stream.peer_cred().ok().and_then(|c| c.pid());
    let created = rendezvous::create(layout)?;
    let offer = rendezvous::offer_bytes(&layout);
    stream
        .async_io(Interest::WRITABLE, || {
            rendezvous::send_offer(
                stream.as_fd(),
                &offer,
                created.memfd.as_fd(),
                &created.outgoing,
            )
        })
        .await?;
    let theirs = stream
        .async_io(Interest::READABLE, || {
            rendezvous::recv_answer(stream.as_fd())
        })
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("shm rendezvous at {path}: {e}")))?;
    let sock: OwnedFd = stream.into_std()?.into();
    let segment = created.accepted(theirs);
    let (reader, writer) = stream::split(segment, Role::Client, sock, options.spin)?;
    Ok((reader, writer, pid))
}

fn link(
    segment: rendezvous::Segment,
    role: Role,
    stream: UnixStream,
    pid: Option<i32>,
    spin: Duration,
) -> io::Result<Link> {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let sock: OwnedFd = stream.into_std()?.into();
    let (reader, writer) = stream::split(segment, role, sock, spin)?;
    let mut l = link_of(reader, writer, pid);
    l.peer_uid = uid;
    Ok(l)
}

fn link_of(reader: stream::ShmReader, writer: stream::ShmWriter, pid: Option<i32>) -> Link {
    let spin_until_readable = Some(reader.spin_until_readable());
    Link {
        scheme: "shm",
        reader: Box::new(reader),
        writer: Box::new(writer),
        peer: match pid {
            Some(pid) => format!("shm pid {pid}"),
            None => "shm".to_string(),
        },
        local_host: None,
        peer_is_local_host: true,
        peer_uid: None,
        peer_subject: None,
        spin_until_readable,
    }
}
