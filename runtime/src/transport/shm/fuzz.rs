//! The fuzz driver of the rings (`oxrmi::__private::fuzzing::shm_ring`): the real [`Producer`]
//! and [`Consumer`] of both rings of a real segment, driven by a script, while the script also
//! plays a hostile peer storing arbitrary values into the segment.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::rendezvous;
use super::ring::{
    CAPACITY_AT, CLOSED, CONTROL_AT, Consumer, Corrupt, DATA_WAITER, GONE, HEAD, HEADER_LEN,
    Layout, MAGIC_AT, Producer, SPACE_WAITER, TAIL, VERSION_AT, ends,
};
use super::segment::Mapping;

/// One segment per layout, made on first use and zeroed for each input: creating a memfd and its
/// pipes per input would only measure the kernel. A static, not a thread-local, so
/// LeakSanitizer sees it.
static SEGMENTS: Mutex<Option<Segments>> = Mutex::new(None);

/// Mappings by ring capacities.
type Segments = HashMap<(u64, u64), Arc<Mapping>>;

/// Reads the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn u64(&mut self) -> Option<u64> {
        let (b, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*b))
    }
}

/// One ring as this process sees it: both ends, and what must come out while the peer has not
/// touched it.
struct Ring {
    producer: Producer,
    consumer: Consumer,
    /// Bytes written and not yet read, in order.
    model: VecDeque<u8>,
    /// The peer stored into this ring's positions or data: the model no longer applies.
    tainted: bool,
    /// An end reported `Corrupt`: like the connection it would close, the ring is not used again.
    broken: bool,
    /// Written so far, to make each byte written distinct from its neighbours.
    written: u64,
}

impl Ring {
    fn check(&mut self, r: Result<usize, Corrupt>) -> Option<usize> {
        match r {
            Ok(n) => Some(n),
            Err(Corrupt) => {
                assert!(self.tainted, "an untouched ring reported corruption");
                self.broken = true;
                None
            }
        }
    }
}

/// Runs one script.
///
/// Byte 0 picks the capacities: ring 0 gets `4096 << (b & 3)`, ring 1 `4096 << ((b >> 2) & 3)`.
/// Then each step is an opcode byte (bit 0: which ring; the rest, mod 8: what) and its operands:
///
/// | op | operands | does |
/// |---:|----------|------|
/// | 0 | `n: u16` | the consumer reads up to `n` bytes |
/// | 1 | `n: u16` | the producer writes `n` bytes |
/// | 2 | `v: u64` | the peer stores `v` as `head` |
/// | 3 | `v: u64` | the peer stores `v` as `tail` |
/// | 4 | `w: u8, v: u64` | the peer stores `v` into control word `w` (closed, gone, waiters) |
/// | 5 | `at: u16, n: u8` | the peer overwrites `n` data bytes at `at` (mod capacity) |
/// | 6 | `w: u8` | one step of the waiter protocol or the end-of-stream flags |
/// | 7 | `w: u8, v: u64` | the peer stores `v` into the header, which is then checked |
pub(crate) fn ring(data: &[u8]) {
    let mut s = Script(data);
    let Some(sizes) = s.byte() else { return };
    let layout = Layout::new(4096 << (sizes & 3), 4096 << ((sizes >> 2) & 3))
        .expect("capacities from 4 to 32 KiB are a valid layout");
    let Some(map) = segment(layout) else { return };
    let mut rings = [0, 1].map(|i| {
        let (producer, consumer) = ends(map.clone(), &layout, i);
        Ring {
            producer,
            consumer,
            model: VecDeque::new(),
            tainted: false,
            broken: false,
            written: 0,
        }
    });
    let mut buf = Vec::new();
    while let Some(op) = s.byte() {
        let i = usize::from(op & 1);
        let control = CONTROL_AT[i];
        let capacity = layout.capacity[i];
        let data_at = HEADER_LEN
            + if i == 0 {
                0
            } else {
                layout.capacity[0] as usize
            };
        let ring = &mut rings[i];
        let step = match (op >> 1) % 8 {
            // Sizes beyond the capacity behave as the capacity plus one: no need to copy more.
            0 => s.u16().map(|n| {
                buf.resize(usize::from(n).min(capacity as usize + 1), 0);
                let r = ring.consumer.read_slice(&mut buf);
                if let Some(n) = ring.check(r)
                    && !ring.tainted
                {
                    assert!(n == buf.len().min(ring.model.len()), "short read");
                    let expected: Vec<u8> = ring.model.drain(..n).collect();
                    assert!(buf[..n] == expected[..], "read other bytes than written");
                }
            }),
            1 => s.u16().map(|n| {
                let src: Vec<u8> = (0..u64::from(n).min(capacity + 1))
                    .map(|k| ((ring.written + k) % 251) as u8)
                    .collect();
                let r = ring.producer.write(&src);
                if let Some(n) = ring.check(r) {
                    ring.written += n as u64;
                    if !ring.tainted {
                        let free = capacity as usize - ring.model.len();
                        assert!(n == src.len().min(free), "short write");
                        ring.model.extend(&src[..n]);
                    }
                }
            }),
            2 | 3 => s.u64().map(|v| {
                let at = if (op >> 1) % 8 == 2 { HEAD } else { TAIL };
                map.u64_at(control + at).store(v, Ordering::SeqCst);
                ring.tainted = true;
            }),
            4 => s.byte().zip(s.u64()).map(|(w, v)| match w % 4 {
                0 => map.u64_at(control + CLOSED).store(v, Ordering::SeqCst),
                1 => map.u64_at(control + GONE).store(v, Ordering::SeqCst),
                2 => map
                    .u32_at(control + DATA_WAITER)
                    .store(v as u32, Ordering::SeqCst),
                _ => map
                    .u32_at(control + SPACE_WAITER)
                    .store(v as u32, Ordering::SeqCst),
            }),
            5 => s.u16().zip(s.byte()).map(|(at, n)| {
                let at = usize::from(at) % capacity as usize;
                let n = usize::from(n).min(capacity as usize - at);
                map.copy_in(data_at + at, &vec![0x5a; n]);
                ring.tainted = true;
            }),
            6 => s.byte().map(|w| match w % 8 {
                0 => ring.consumer.announce_data_waiter(),
                1 => {
                    let _ = ring.producer.take_data_waiter();
                }
                2 => ring.producer.announce_space_waiter(),
                3 => {
                    let _ = ring.consumer.take_space_waiter();
                }
                4 => {
                    let _ = ring.consumer.producer_closed();
                }
                5 => {
                    let _ = ring.producer.consumer_gone();
                }
                6 => ring.producer.close(),
                _ => ring.consumer.mark_gone(),
            }),
            _ => s.byte().zip(s.u64()).map(|(w, v)| {
                match w % 4 {
                    0 => map.u64_at(MAGIC_AT).store(v, Ordering::SeqCst),
                    1 => map.u32_at(VERSION_AT).store(v as u32, Ordering::SeqCst),
                    c => map
                        .u64_at(CAPACITY_AT[c as usize - 2])
                        .store(v, Ordering::SeqCst),
                }
                let _ = layout.check_header(&map);
                let _ = Layout::new(v, v.rotate_left(32));
            }),
        };
        if step.is_none() || rings.iter().all(|r| r.broken) {
            break;
        }
    }
    // Drain what is left, as a reader does at the end of a stream.
    for ring in &mut rings {
        buf.resize(4096, 0);
        while !ring.broken {
            let r = ring.consumer.read_slice(&mut buf);
            match ring.check(r) {
                Some(0) | None => break,
                Some(n) if !ring.tainted => {
                    let expected: Vec<u8> = ring.model.drain(..n).collect();
                    assert!(buf[..n] == expected[..], "read other bytes than written");
                }
                Some(_) => {}
            }
        }
        if !ring.tainted && !ring.broken {
            assert!(ring.model.is_empty(), "bytes written were never read");
        }
    }
}

/// The zeroed segment for `layout`, with its header written.
fn segment(layout: Layout) -> Option<Arc<Mapping>> {
    let key = (layout.capacity[0], layout.capacity[1]);
    let map = {
        let mut s = SEGMENTS.lock().unwrap_or_else(PoisonError::into_inner);
        let s = s.get_or_insert_with(HashMap::new);
        match s.get(&key) {
            Some(m) => m.clone(),
            None => {
                let created = rendezvous::create(layout).ok()?;
                s.insert(key, created.map.clone());
                created.map
            }
        }
    };
    map.copy_in(0, &vec![0; map.len()]);
    layout.write_header(&map);
    Some(map)
}
