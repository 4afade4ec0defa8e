//! The segment's layout and the single-producer single-consumer byte rings in it.
//!
//! ```text
//! offset 0      header: magic u64, version u32, (pad), capacity[0] u64, capacity[1] u64
//! offset 256    ring 0 control (client → server), 256 bytes
//! offset 512    ring 1 control (server → client), 256 bytes
//! offset 4096   ring 0 data, capacity[0] bytes
//!               ring 1 data, capacity[1] bytes
//! ```
//! A ring's control block holds one cache line per writer: `head` and `closed` (the producer's),
//! `tail` and `gone` (the consumer's), `data_waiter` (set by a consumer about to sleep, cleared
//! by the producer that wakes it) and `space_waiter` (the same the other way round).
//!
//! `head` and `tail` are byte positions that only grow; `head - tail` bytes are in the ring. Each
//! side keeps its own position privately and reads only the peer's from shared memory, checking
//! every value it reads: a position that moves backwards, past the other, or further apart than
//! the capacity is [`Corrupt`], and so is our own position changed behind our back.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use tokio::io::ReadBuf;

use super::segment::Mapping;

/// Identifies an oxrmi shared-memory segment ("OXRMISHM", little-endian).
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"OXRMISHM");
/// The version of the layout and rendezvous; a peer with another one is refused. 2: wake-ups
/// through pipes each side makes (1 had eventfds the client made for both).
pub(super) const VERSION: u32 = 2;
/// Bytes before the first ring's data: the header and control blocks, one page.
pub(super) const HEADER_LEN: usize = 4096;
/// The smallest ring accepted: one page.
pub(super) const MIN_CAPACITY: u64 = 4096;
/// The largest segment a receiver maps: beyond it a peer could make us reserve arbitrary
/// amounts of memory; 256 MiB leaves room for two 64 MiB rings with margin.
pub(super) const MAX_SEGMENT: u64 = 256 << 20;

// Offsets in the segment; `pub(super)` for the fuzz driver, which plays a hostile peer.
pub(super) const MAGIC_AT: usize = 0;
pub(super) const VERSION_AT: usize = 8;
pub(super) const CAPACITY_AT: [usize; 2] = [16, 24];
pub(super) const CONTROL_AT: [usize; 2] = [256, 512];
/// Where the client and the server note the CPU they last waited on (plus one; 0: not known).
pub(super) const CPU_AT: [usize; 2] = [64, 128];
// Within a control block; one 64-byte line per writer.
pub(super) const HEAD: usize = 0;
pub(super) const CLOSED: usize = 8;
pub(super) const TAIL: usize = 64;
pub(super) const GONE: usize = 72;
pub(super) const DATA_WAITER: usize = 128;
pub(super) const SPACE_WAITER: usize = 192;

/// The peer broke the ring protocol; the connection cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Corrupt;

impl From<Corrupt> for std::io::Error {
    fn from(_: Corrupt) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt ring from peer")
    }
}

/// The capacities of the two rings; once validated, the only copy of them we ever use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    /// Ring 0 carries client → server, ring 1 server → client.
    pub(super) capacity: [u64; 2],
}

impl Layout {
    /// A layout, if both capacities are powers of two of at least [`MIN_CAPACITY`] and the whole
    /// segment is at most [`MAX_SEGMENT`].
    pub(super) fn new(c0: u64, c1: u64) -> Option<Layout> {
        let ok = |c: u64| c.is_power_of_two() && c >= MIN_CAPACITY;
        let layout = Layout { capacity: [c0, c1] };
        (ok(c0) && ok(c1) && layout.total_len()? <= MAX_SEGMENT).then_some(layout)
    }

    /// Bytes of the whole segment.
    pub(super) fn total_len(&self) -> Option<u64> {
        (HEADER_LEN as u64)
            .checked_add(self.capacity[0])?
            .checked_add(self.capacity[1])
    }

    fn data_at(&self, ring: usize) -> usize {
        HEADER_LEN
            + if ring == 0 {
                0
            } else {
                self.capacity[0] as usize
            }
    }

    /// Writes the header of a fresh segment (the creator's side).
    pub(super) fn write_header(&self, map: &Mapping) {
        map.u64_at(MAGIC_AT).store(MAGIC, Ordering::Relaxed);
        map.u32_at(VERSION_AT).store(VERSION, Ordering::Relaxed);
        for (ring, at) in CAPACITY_AT.iter().enumerate() {
            map.u64_at(*at)
                .store(self.capacity[ring], Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
    }

    /// Reads the header the peer wrote; `Err` with the reason if it is not this layout.
    pub(super) fn check_header(&self, map: &Mapping) -> Result<(), String> {
        let magic = map.u64_at(MAGIC_AT).load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(format!("bad magic {magic:#x}"));
        }
        let version = map.u32_at(VERSION_AT).load(Ordering::Acquire);
        if version != VERSION {
            return Err(format!("layout version {version}, we speak {VERSION}"));
        }
        let c = CAPACITY_AT.map(|at| map.u64_at(at).load(Ordering::Acquire));
        if c != self.capacity {
            return Err(format!(
                "header says capacities {c:?}, the handshake said {:?}",
                self.capacity
            ));
        }
        Ok(())
    }
}

/// What one side of a ring needs: the mapping, where the ring lives, its capacity.
#[derive(Clone)]
struct RingRef {
    map: Arc<Mapping>,
    control: usize,
    data: usize,
    capacity: u64,
}

impl RingRef {
    fn new(map: Arc<Mapping>, layout: &Layout, ring: usize) -> RingRef {
        let r = RingRef {
            control: CONTROL_AT[ring],
            data: layout.data_at(ring),
            capacity: layout.capacity[ring],
            map,
        };
        debug_assert!(r.data as u64 + r.capacity <= r.map.len() as u64);
        r
    }

    fn word(&self, at: usize) -> &std::sync::atomic::AtomicU64 {
        self.map.u64_at(self.control + at)
    }

    fn flag(&self, at: usize) -> &std::sync::atomic::AtomicU32 {
        self.map.u32_at(self.control + at)
    }

    /// Asks the CPU for the cache lines of the bytes at position `at` and 64 past it (see
    /// [`RingRef::ahead`]). A reader spinning for the peer's next bytes does this on every
    /// turn, so its cache asks for them alongside the peer's `head`: once `head` moves, they are
    /// on their way too, instead of being fetched only after it (a second trip between the
    /// CPUs' caches per message; measured with a core each: 20 ns a hop when the two vCPUs'
    /// caches are near, 110 ns when they are far).
    fn touch(&self, at: u64) {
        for offset in self.ahead(at) {
            self.map.prefetch(offset);
        }
    }

    /// Where in the mapping the bytes at position `at`, and 64 past it, lie: always inside
    /// this ring's data, whatever `at` is (a peer may have written it).
    fn ahead(&self, at: u64) -> [usize; 2] {
        let mask = self.capacity - 1;
        [at, at.wrapping_add(64)].map(|pos| self.data + (pos & mask) as usize)
    }

    /// The (at most two) ranges of the data area holding positions `from..from + len`, as
    /// (offset in the mapping, length) pairs. `len <= capacity` is the caller's invariant.
    fn spans(&self, from: u64, len: usize) -> [(usize, usize); 2] {
        let start = (from & (self.capacity - 1)) as usize;
        let first = len.min(self.capacity as usize - start);
        [(self.data + start, first), (self.data, len - first)]
    }
}

/// Which CPU each side last waited on, so that a side can skip spinning for a peer that shares
/// its CPU (the peer cannot run while it spins). The peer writes what it likes there: a wrong
/// value costs one spin or one sleep, nothing more.
pub(super) struct CpuHint {
    map: Arc<Mapping>,
    ours: usize,
    theirs: usize,
}

impl CpuHint {
    /// The hint of side `side` (0 the client, 1 the server).
    pub(super) fn new(map: Arc<Mapping>, side: usize) -> CpuHint {
        CpuHint {
            map,
            ours: CPU_AT[side],
            theirs: CPU_AT[1 - side],
        }
    }

    /// Notes the CPU this thread runs on; whether the peer last waited on the same one.
    pub(super) fn shares_cpu(&self) -> bool {
        let cpu = u32::try_from(rustix::thread::sched_getcpu()).map_or(0, |c| c.saturating_add(1));
        // Stored only when it changed: the peer reads this line, and a store would take it
        // back from the peer's cache on every call.
        let ours = self.map.u32_at(self.ours);
        if ours.load(Ordering::Relaxed) != cpu {
            ours.store(cpu, Ordering::Relaxed);
        }
        cpu != 0 && self.map.u32_at(self.theirs).load(Ordering::Relaxed) == cpu
    }
}

/// The writing end of a ring.
pub(super) struct Producer {
    ring: RingRef,
    /// Our position; the shared `head` must always equal it.
    head: u64,
    /// The highest `tail` seen: it never moves backwards.
    tail_seen: u64,
}

/// The reading end of a ring.
pub(super) struct Consumer {
    ring: RingRef,
    /// Our position; the shared `tail` must always equal it.
    tail: u64,
    /// The highest `head` seen.
    head_seen: u64,
}

/// Whether the peer has published bytes (since a mark, or not taken yet by the reading end),
/// judged from the shared positions alone: for spinning on, without the reading end. The peer controls `head`,
/// so the answer is a hint (a wrong one ends a spin early or late, nothing more); the reading
/// end checks everything when it reads.
pub(super) struct Arrivals {
    ring: RingRef,
}

impl Arrivals {
    /// The peer's position now, for [`Arrivals::since`].
    pub(super) fn mark(&self) -> u64 {
        self.ring.word(HEAD).load(Ordering::Acquire)
    }

    /// Whether bytes (or the end of the stream) wait in the ring, or the peer published bytes
    /// since `mark` was taken: the reading end, running elsewhere, may have taken them already.
    /// Asks for the next bytes' cache lines too ([`RingRef::touch`]): this is what spins.
    pub(super) fn since(&self, mark: u64) -> bool {
        let head = self.ring.word(HEAD).load(Ordering::Acquire);
        let tail = self.ring.word(TAIL).load(Ordering::Relaxed);
        self.ring.touch(tail);
        head != mark || head != tail || self.ring.word(CLOSED).load(Ordering::Acquire) != 0
    }

    /// Withdraws the reading end's announcement that it sleeps: the producer will not wake it,
    /// so whoever calls this must.
    pub(super) fn withdraw_data_waiter(&self) {
        self.ring.flag(DATA_WAITER).store(0, Ordering::SeqCst);
    }
}

/// Both ends of ring `ring` over `map` (only one is used per process; tests use both).
pub(super) fn ends(map: Arc<Mapping>, layout: &Layout, ring: usize) -> (Producer, Consumer) {
    let r = RingRef::new(map, layout, ring);
    (
        Producer {
            ring: r.clone(),
            head: 0,
            tail_seen: 0,
        },
        Consumer {
            ring: r,
            tail: 0,
            head_seen: 0,
        },
    )
}

impl Producer {
    /// Free bytes, after checking the peer's `tail` and our own `head`.
    pub(super) fn free(&mut self) -> Result<u64, Corrupt> {
        self.check_own_head()?;
        let r = &self.ring;
        let tail = r.word(TAIL).load(Ordering::Acquire);
        if tail < self.tail_seen || tail > self.head || self.head - tail > r.capacity {
            return Err(Corrupt);
        }
        self.tail_seen = tail;
        Ok(r.capacity - (self.head - tail))
    }

    /// Our position in shared memory is still ours: nobody wrote over it.
    fn check_own_head(&self) -> Result<(), Corrupt> {
        if self.ring.word(HEAD).load(Ordering::Relaxed) != self.head {
            return Err(Corrupt);
        }
        Ok(())
    }

    /// Copies as much of `src` as fits and publishes it; 0 if the ring is full.
    ///
    /// The consumer only ever frees space, so the room left by the `tail` we saw last is there
    /// still: the shared `tail` is read again only when that room is too small for `src`.
    /// Reading it for every write would pull the consumer's cache line over to this CPU and
    /// make the consumer's next store pull it back, on every message, for nothing.
    pub(super) fn write(&mut self, src: &[u8]) -> Result<usize, Corrupt> {
        let seen = self.ring.capacity - (self.head - self.tail_seen);
        let room = if seen >= src.len() as u64 {
            self.check_own_head()?;
            seen
        } else {
            self.free()?
        };
        let n = (room.min(usize::MAX as u64) as usize).min(src.len());
        if n == 0 {
            return Ok(0);
        }
        let [(a, la), (b, lb)] = self.ring.spans(self.head, n);
        self.ring.map.copy_in(a, &src[..la]);
        self.ring.map.copy_in(b, &src[la..la + lb]);
        self.head += n as u64;
        self.ring.word(HEAD).store(self.head, Ordering::Release);
        Ok(n)
    }

    /// After publishing: whether the consumer sleeps waiting for data and must be woken.
    /// Clears its flag, so one producer wakes it once.
    pub(super) fn take_data_waiter(&self) -> bool {
        fence(Ordering::SeqCst);
        // Load first: the common case (nobody sleeps) then costs no write to a shared line.
        let flag = self.ring.flag(DATA_WAITER);
        flag.load(Ordering::SeqCst) != 0 && flag.swap(0, Ordering::SeqCst) != 0
    }

    /// Announces that we are about to sleep until there is space. The caller checks [`free`]
    /// again afterwards, so a consumer that freed space in between is not missed.
    ///
    /// [`free`]: Producer::free
    pub(super) fn announce_space_waiter(&self) {
        self.ring.flag(SPACE_WAITER).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Tells the consumer no more bytes will come (end of stream once it has drained them).
    pub(super) fn close(&self) {
        self.ring.word(CLOSED).store(1, Ordering::Release);
    }

    /// Whether the consumer has gone (dropped its end): nobody will ever make space again.
    pub(super) fn consumer_gone(&self) -> bool {
        self.ring.word(GONE).load(Ordering::Acquire) != 0
    }

    /// Writes raw values over both positions, as a hostile peer would (tests and
    /// [`testing`](super::testing) only).
    pub(super) fn corrupt(&self, head: u64, tail: u64) {
        self.ring.word(HEAD).store(head, Ordering::SeqCst);
        self.ring.word(TAIL).store(tail, Ordering::SeqCst);
    }
}

impl Consumer {
    /// Bytes readable, after checking the peer's `head` and our own `tail`.
    pub(super) fn available(&mut self) -> Result<u64, Corrupt> {
        let r = &self.ring;
        let head = r.word(HEAD).load(Ordering::Acquire);
        if r.word(TAIL).load(Ordering::Relaxed) != self.tail
            || head < self.head_seen
            || head < self.tail
            || head - self.tail > r.capacity
        {
            return Err(Corrupt);
        }
        self.head_seen = head;
        Ok(head - self.tail)
    }

    /// Copies up to `dst.remaining()` bytes out, appending them to `dst`, and frees their
    /// space; 0 if the ring is empty.
    pub(super) fn read(&mut self, dst: &mut ReadBuf<'_>) -> Result<usize, Corrupt> {
        let n = (self.available()?.min(usize::MAX as u64) as usize).min(dst.remaining());
        if n == 0 {
            return Ok(0);
        }
        let [(a, la), (b, lb)] = self.ring.spans(self.tail, n);
        self.ring.map.copy_out(a, la, dst);
        self.ring.map.copy_out(b, lb, dst);
        self.tail += n as u64;
        self.ring.word(TAIL).store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// Asks for the cache lines of the bytes the producer writes next; see [`RingRef::touch`].
    pub(super) fn touch_next(&self) {
        self.ring.touch(self.tail);
    }

    /// A probe of this ring's arrivals, for another party to spin on.
    pub(super) fn arrivals(&self) -> Arrivals {
        Arrivals {
            ring: self.ring.clone(),
        }
    }

    /// [`Consumer::read`] into a slice: how many bytes went to its start.
    pub(super) fn read_slice(&mut self, dst: &mut [u8]) -> Result<usize, Corrupt> {
        self.read(&mut ReadBuf::new(dst))
    }

    /// After freeing space: whether the producer sleeps waiting for it and must be woken.
    pub(super) fn take_space_waiter(&self) -> bool {
        fence(Ordering::SeqCst);
        let flag = self.ring.flag(SPACE_WAITER);
        flag.load(Ordering::SeqCst) != 0 && flag.swap(0, Ordering::SeqCst) != 0
    }

    /// Announces that we are about to sleep until data comes; the caller checks again after.
    pub(super) fn announce_data_waiter(&self) {
        self.ring.flag(DATA_WAITER).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Whether the producer closed its end. Data published before the close is visible once
    /// this returns true, so "closed and empty" is the end of the stream.
    pub(super) fn producer_closed(&self) -> bool {
        self.ring.word(CLOSED).load(Ordering::Acquire) != 0
    }

    /// The mapping this ring lives in.
    #[cfg(test)]
    pub(super) fn map_for_tests(&self) -> Arc<Mapping> {
        self.ring.map.clone()
    }

    /// Tells the producer we have gone: it will get `BrokenPipe` instead of waiting for space.
    pub(super) fn mark_gone(&self) {
        self.ring.word(GONE).store(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_ahead_stays_in_the_ring_s_data_wherever_the_position_points() {
        let layout = Layout::new(MIN_CAPACITY, 2 * MIN_CAPACITY).unwrap();
        let map = super::super::rendezvous::create(layout).unwrap().map;
        for ring in 0..2 {
            let r = RingRef::new(map.clone(), &layout, ring);
            let data = r.data..r.data + r.capacity as usize;
            let edges = [0, 1, 63, 64, r.capacity - 64, r.capacity - 1, r.capacity];
            let far = [u64::MAX, u64::MAX - 63, u64::MAX / 2, 1 << 63];
            for at in edges
                .into_iter()
                .chain(far)
                .chain((0..3 * r.capacity).step_by(17))
            {
                let [this, next] = r.ahead(at);
                assert!(
                    data.contains(&this) && data.contains(&next),
                    "{at}: {this}, {next}"
                );
                assert_eq!(this - r.data, (at % r.capacity) as usize);
                assert_eq!(
                    next - r.data,
                    ((at % r.capacity + 64) % r.capacity) as usize
                );
                r.touch(at);
            }
        }
        // Asked past its end, the mapping ignores the hint.
        map.prefetch(map.len());
        map.prefetch(usize::MAX);
    }
}
