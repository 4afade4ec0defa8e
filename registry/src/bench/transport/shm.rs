//! The raw twin over shared memory: two byte rings in one sealed memfd that the client creates
//! and passes over a Unix socket (SCM_RIGHTS), blocking reads and writes that spin briefly and
//! then sleep on a futex in the segment (shared, not PRIVATE: the waker is another process). No
//! framing and no checks of the peer beyond what keeps us in bounds: this is the floor the
//! runtime's `shm://` transport is compared with, both ends ours.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use oxrmi::Endpoint;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::thread::futex;

use super::unix::fresh_path;
use super::{RawListener, RawStream};

/// Bytes of each ring, as the runtime's default.
const CAPACITY: usize = 2 << 20;
/// The header page: per ring one control block of four cache lines.
const HEADER: usize = 4096;
const CONTROL: [usize; 2] = [0, 256];
const HEAD: usize = 0;
const TAIL: usize = 64;
/// Futex word bumped by the producer to wake a consumer waiting for data, and its flag.
const DATA_SEQ: usize = 128;
const DATA_WAITER: usize = 132;
/// The same for a producer waiting for space.
const SPACE_SEQ: usize = 192;
const SPACE_WAITER: usize = 196;
/// Spin before sleeping: as set by [`set_spin`] (the bench sets it from the placement: the
/// runtime's default budget where the two sides may run on separate CPUs, none where they share
/// one, as spinning there only delays the peer we wait for); unset, 30 µs when this process may
/// run on more than one CPU, none otherwise.
fn spin() -> Duration {
    match SPIN_US.load(Ordering::Relaxed) {
        UNSET => {
            if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
                RUNTIME_SPIN
            } else {
                Duration::ZERO
            }
        }
        us => Duration::from_micros(us),
    }
}

/// The runtime's default spin budget on a machine with more than one CPU.
pub(crate) const RUNTIME_SPIN: Duration = Duration::from_micros(30);
/// The spin [`set_spin`] set, in microseconds, or [`UNSET`].
static SPIN_US: AtomicU64 = AtomicU64::new(UNSET);
const UNSET: u64 = u64::MAX;

/// Fixes how long raw links of this process spin before they sleep.
pub(crate) fn set_spin(spin: Duration) {
    let us = u64::try_from(spin.as_micros())
        .unwrap_or(UNSET - 1)
        .min(UNSET - 1);
    SPIN_US.store(us, Ordering::Relaxed);
}
/// A sleeper wakes this often to see whether the peer's socket closed.
const CHECK_PEER: Duration = Duration::from_millis(100);
const SEGMENT: usize = HEADER + 2 * CAPACITY;

/// A mapped segment; unmapped on drop.
struct Segment {
    ptr: *mut u8,
}

// SAFETY: shared memory touched only through atomics and raw copies; see `Segment`'s methods.
unsafe impl Send for Segment {}

impl Segment {
    fn map(fd: &OwnedFd) -> io::Result<Segment> {
        // SAFETY: a fresh mapping of a sealed file of exactly `SEGMENT` bytes, aliasing nothing.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                SEGMENT,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        Ok(Segment { ptr: ptr.cast() })
    }

    fn u64_at(&self, at: usize) -> &AtomicU64 {
        assert!(at.is_multiple_of(8) && at + 8 <= HEADER);
        // SAFETY: aligned, inside the header page, valid while `self` is.
        unsafe { &*self.ptr.add(at).cast::<AtomicU64>() }
    }

    fn u32_at(&self, at: usize) -> &AtomicU32 {
        assert!(at.is_multiple_of(4) && at + 4 <= HEADER);
        // SAFETY: as for `u64_at`.
        unsafe { &*self.ptr.add(at).cast::<AtomicU32>() }
    }

    /// Copies between ring `ring`'s data at position `pos` and private memory; `len` bytes,
    /// wrapping at the end of the ring.
    fn copy(&self, ring: usize, pos: u64, private: *mut u8, len: usize, into_ring: bool) {
        assert!(len <= CAPACITY);
        let start = (pos as usize) & (CAPACITY - 1);
        let first = len.min(CAPACITY - start);
        let data = HEADER + ring * CAPACITY;
        for (off, from, n) in [(start, 0, first), (0, first, len - first)] {
            // SAFETY: `off + n <= CAPACITY`, so the shared range is inside ring `ring`; the
            // private range is inside the caller's slice of `len` bytes; they cannot overlap.
            unsafe {
                let shared = self.ptr.add(data + off);
                if into_ring {
                    std::ptr::copy_nonoverlapping(private.add(from), shared, n);
                } else {
                    std::ptr::copy_nonoverlapping(shared, private.add(from), n);
                }
            }
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), SEGMENT) };
    }
}

/// One end of a raw shared-memory link.
pub(super) struct RawShmStream {
    seg: Segment,
    /// How long to spin before sleeping, fixed when the link is made.
    spin: Duration,
    /// The rendezvous socket, kept open: its end of stream means the peer is gone.
    sock: UnixStream,
    out: usize,
    inn: usize,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl RawShmStream {
    fn ctl(&self, ring: usize, at: usize) -> usize {
        CONTROL[ring] + at
    }

    /// Whether the peer closed its socket.
    fn peer_gone(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            rustix::net::recv(&self.sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT),
            Ok((0, _))
        )
    }

    /// Blocks until `ready()` (spin, then futex on `seq` with `waiter` raised).
    fn wait(
        &self,
        ring: usize,
        seq: usize,
        waiter: usize,
        ready: impl Fn() -> bool,
    ) -> io::Result<()> {
        let start = Instant::now();
        while start.elapsed() < self.spin {
            for _ in 0..32 {
                if ready() {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
        }
        let seq = self.seg.u32_at(self.ctl(ring, seq));
        let waiter = self.seg.u32_at(self.ctl(ring, waiter));
        loop {
            let s = seq.load(Ordering::SeqCst);
            waiter.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if ready() {
                return Ok(());
            }
            let timeout = rustix::thread::futex::Timespec {
                tv_sec: 0,
                tv_nsec: CHECK_PEER.as_nanos() as _,
            };
            match futex::wait(seq, futex::Flags::empty(), s, Some(&timeout)) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => {}
                Err(e) if e == rustix::io::Errno::TIMEDOUT => {
                    if self.peer_gone() && !ready() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// After publishing: wakes the peer if it sleeps on `seq`.
    fn wake(&self, ring: usize, seq: usize, waiter: usize) {
        fence(Ordering::SeqCst);
        let w = self.seg.u32_at(self.ctl(ring, waiter));
        if w.load(Ordering::SeqCst) != 0 && w.swap(0, Ordering::SeqCst) != 0 {
            let seq = self.seg.u32_at(self.ctl(ring, seq));
            seq.fetch_add(1, Ordering::SeqCst);
            let _ = futex::wake(seq, futex::Flags::empty(), 1);
        }
    }
}

impl Read for RawShmStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let r = self.inn;
        let head = self.seg.u64_at(self.ctl(r, HEAD));
        let tail = self.seg.u64_at(self.ctl(r, TAIL));
        let t = tail.load(Ordering::Relaxed);
        let ready = || head.load(Ordering::Acquire) != t;
        if !ready() {
            match self.wait(r, DATA_SEQ, DATA_WAITER, ready) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                other => other?,
            }
        }
        let h = head.load(Ordering::Acquire);
        if h < t || h - t > CAPACITY as u64 {
            return Err(bad("corrupt ring"));
        }
        let n = ((h - t) as usize).min(buf.len());
        self.seg.copy(r, t, buf.as_mut_ptr(), n, false);
        tail.store(t + n as u64, Ordering::Release);
        self.wake(r, SPACE_SEQ, SPACE_WAITER);
        Ok(n)
    }
}

impl Write for RawShmStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let r = self.out;
        let head = self.seg.u64_at(self.ctl(r, HEAD));
        let tail = self.seg.u64_at(self.ctl(r, TAIL));
        let h = head.load(Ordering::Relaxed);
        let ready = || h - tail.load(Ordering::Acquire) < CAPACITY as u64;
        if !ready() {
            match self.wait(r, SPACE_SEQ, SPACE_WAITER, ready) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                other => other?,
            }
        }
        let t = tail.load(Ordering::Acquire);
        if t > h || h - t > CAPACITY as u64 {
            return Err(bad("corrupt ring"));
        }
        let n = (CAPACITY - (h - t) as usize).min(buf.len());
        // The copy only reads through the pointer.
        self.seg.copy(r, h, buf.as_ptr().cast_mut(), n, true);
        head.store(h + n as u64, Ordering::Release);
        self.wake(r, DATA_SEQ, DATA_WAITER);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The rendezvous socket's listener; its file is removed when it goes.
pub(super) struct RawShmListener {
    listener: UnixListener,
    path: PathBuf,
}

impl RawShmListener {
    pub(super) fn bind() -> io::Result<Self> {
        let path = fresh_path("raw-shm");
        Ok(RawShmListener {
            listener: UnixListener::bind(&path)?,
            path,
        })
    }
}

impl Drop for RawShmListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RawListener for RawShmListener {
    fn accept(&self) -> io::Result<Box<dyn RawStream>> {
        let (sock, _) = self.listener.accept()?;
        let mut byte = [0u8; 1];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let mut memfd = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = m {
                memfd = fds.next();
            }
        }
        let memfd = memfd.ok_or_else(|| bad("no memfd with the offer"))?;
        let seals = rustix::fs::fcntl_get_seals(&memfd)?;
        let size = rustix::fs::fstat(&memfd)?.st_size;
        if !seals.contains(SealFlags::SHRINK) || usize::try_from(size).ok() != Some(SEGMENT) {
            return Err(bad("unsealed or missized segment"));
        }
        let seg = Segment::map(&memfd)?;
        Ok(Box::new(RawShmStream {
            seg,
            spin: spin(),
            sock,
            out: 1,
            inn: 0,
        }))
    }

    fn endpoint(&self) -> io::Result<Endpoint> {
        Ok(Endpoint::shm(self.path.to_string_lossy()))
    }
}

/// Connects to a raw shared-memory endpoint: creates and passes the segment.
pub(super) fn connect(endpoint: &Endpoint) -> io::Result<RawShmStream> {
    let Endpoint::Shm { path } = endpoint else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{endpoint} is not a shared-memory endpoint"),
        ));
    };
    let sock = UnixStream::connect(path)?;
    let memfd = rustix::fs::memfd_create(
        "oxrmi-bench-shm",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    rustix::fs::ftruncate(&memfd, SEGMENT as u64)?;
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    let seg = Segment::map(&memfd)?;
    let fds = [memfd.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        &sock,
        &[IoSlice::new(&[0])],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(RawShmStream {
        seg,
        spin: spin(),
        sock,
        out: 0,
        inn: 1,
    })
}
