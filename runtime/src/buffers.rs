//! Spare buffers for large frames, reused instead of freed.
//!
//! A frame of a megabyte, allocated and freed per call, costs more in page faults than in
//! copying: the allocator hands freshly mapped (or freshly trimmed) memory back, and the kernel
//! zeroes every page on first touch. Frames that were written are kept here and become the
//! buffers the next large frames are read into. Small frames never come here, and the spare
//! memory is bounded ([`KEEP_BYTES`], [`KEEP_BUFFERS`]).
//!
//! A frame being read gets no more room than its bytes need so far ([`take_to_read`],
//! [`grow_to_read`]): a peer announcing the largest frame and sending a trickle (or nothing)
//! ties up what it sent, not what it announced.

use std::sync::{Mutex, PoisonError};

/// Frames at least this large are worth keeping.
pub(crate) const LARGE: usize = 128 * 1024;
/// Spare memory kept at most, process-wide.
const KEEP_BYTES: usize = 32 << 20;
/// Spare buffers kept at most.
const KEEP_BUFFERS: usize = 16;

/// Room a frame being read starts with when no spare buffer fits it; it doubles as bytes
/// arrive.
const FIRST_READ: usize = 64 * 1024;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `len` bytes: a spare one when `len` is large and one fits.
pub(crate) fn take(len: usize) -> Vec<u8> {
    spare(len).unwrap_or_else(|| Vec::with_capacity(len))
}

/// An empty buffer to read a frame of `len` bytes into: a spare one that fits (its memory is
/// counted in the spares' bound already), else one with room for the first [`FIRST_READ`]
/// bytes only, which [`grow_to_read`] enlarges as they arrive.
pub(crate) fn take_to_read(len: usize) -> Vec<u8> {
    spare(len).unwrap_or_else(|| Vec::with_capacity(len.min(FIRST_READ)))
}

/// Makes room in `buf`, full, for more of a frame of `len` bytes: doubles it, up to `len`.
/// Doubling copies each byte at most once more on average (and a large block is moved by
/// remapping, not copying).
pub(crate) fn grow_to_read(buf: &mut Vec<u8>, len: usize) {
    if buf.len() == buf.capacity() {
        let more = buf
            .capacity()
            .max(FIRST_READ)
            .min(len.saturating_sub(buf.len()));
        buf.reserve_exact(more);
    }
}

/// A spare buffer with room for `len` bytes, the smallest that fits, if `len` is large.
fn spare(len: usize) -> Option<Vec<u8>> {
    if len >= LARGE {
        let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
        // The smallest spare that fits, so large ones stay for large frames.
        let best = spare
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            return Some(spare.swap_remove(i));
        }
    }
    None
}

/// Keeps `buf` for a later [`take`] if it held a large frame and there is room; frees it
/// otherwise (a buffer that merely grew past the threshold is not worth keeping).
pub(crate) fn recycle(mut buf: Vec<u8>) {
    if buf.len() < LARGE {
        return;
    }
    buf.clear();
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    let kept: usize = spare.iter().map(Vec::capacity).sum();
    if spare.len() < KEEP_BUFFERS && kept + buf.capacity() <= KEEP_BYTES {
        spare.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_and_small_ones_do_not() {
        let mut big = take(LARGE * 2);
        big.resize(LARGE * 2, 1);
        let ptr = big.as_ptr();
        recycle(big);
        let again = take(LARGE + 1);
        assert_eq!(again.as_ptr(), ptr, "the spare buffer was not reused");
        assert!(again.is_empty());
        recycle(again);
        let small = take(10);
        assert!(small.capacity() < LARGE);
        recycle(small);
        // Never more than the bound.
        for _ in 0..KEEP_BUFFERS * 2 {
            recycle(vec![0; LARGE]);
        }
        assert!(SPARE.lock().unwrap().len() <= KEEP_BUFFERS);
    }

    #[test]
    fn a_frame_being_read_gets_room_as_its_bytes_arrive() {
        // Larger than any spare buffer, so none is handed out.
        let len = KEEP_BYTES * 4;
        let mut buf = take_to_read(len);
        assert_eq!(
            buf.capacity(),
            FIRST_READ,
            "not the announced length up front"
        );
        buf.resize(FIRST_READ, 1);
        grow_to_read(&mut buf, len);
        assert!(buf.capacity() >= 2 * FIRST_READ && buf.capacity() < 4 * FIRST_READ);
        // Never beyond the frame.
        let mut small = take_to_read(FIRST_READ + 10);
        small.resize(FIRST_READ, 0);
        grow_to_read(&mut small, FIRST_READ + 10);
        assert_eq!(small.capacity(), FIRST_READ + 10);
    }
}
