//! Spare buffers for large frames, reused instead of freed.
//!
//! A frame of a megabyte, allocated and freed per call, costs more in page faults than in
//! copying: the allocator hands freshly mapped (or freshly trimmed) memory back, and the kernel
//! zeroes every page on first touch. Frames that were written are kept here and become the
//! buffers the next large frames are read into. Small frames never come here, and the spare
//! memory is bounded ([`KEEP_BYTES`], [`KEEP_BUFFERS`]).

use std::sync::{Mutex, PoisonError};

/// Frames at least this large are worth keeping.
pub(crate) const LARGE: usize = 128 * 1024;
/// Spare memory kept at most, process-wide.
const KEEP_BYTES: usize = 32 << 20;
/// Spare buffers kept at most.
const KEEP_BUFFERS: usize = 16;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `len` bytes: a spare one when `len` is large and one fits.
pub(crate) fn take(len: usize) -> Vec<u8> {
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
            return spare.swap_remove(i);
        }
    }
    Vec::with_capacity(len)
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
}
