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
//!
//! Frames of one kind differ by a few bytes (a call id one byte longer, another method name),
//! so large buffers get their room rounded up ([`room`]): the next frame of about the same size
//! fits the buffer the last one left. A frame being built grows through [`Appender`], which
//! takes a spare buffer when it turns large, rather than a fresh allocation.
//!
//! Large blocks are copied [`COPY_PIECE`] bytes at a time ([`extend_in_pieces`], and the
//! shared-memory rings' copies) where one copy could be slow ([`copy_could_be_slow`]): glibc
//! before 2.39 copies blocks from about 2 KiB to about the cache's size with `rep movsb`, and
//! on AMD Zen processors that runs 15 to 25 times slower when the destination lies 1 to 15
//! bytes past the source modulo 64 (measured on the project's machines: 3-4 GB/s instead of
//! 41-100, from 2.5 KiB to 896 KiB). A frame's payload starts a few header bytes into its
//! buffer, so an echoed 64 KiB value was appended to its reply that way every time; blocks of
//! 2 KiB glibc copies with vector moves at full speed whatever the alignment. A 64 KiB echo
//! over shared memory with a core each took 35 µs; copied in pieces where needed, 18-21 µs.

use std::sync::{Mutex, PoisonError};

/// Frames at least this large are worth keeping: any frame that outgrows the room a read
/// starts with ([`FIRST_READ`]).
pub(crate) const LARGE: usize = 64 * 1024;
/// Bytes copied at a time by [`extend_in_pieces`] (see the module's documentation).
pub(crate) const COPY_PIECE: usize = 2048;

/// Appends `bytes` to `buf`, [`COPY_PIECE`] bytes at a time where one copy could be slow (see
/// the module's documentation), else at once.
pub(crate) fn extend_in_pieces(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.reserve(bytes.len());
    let dst = buf.as_ptr().wrapping_add(buf.len());
    if !copy_could_be_slow(bytes.as_ptr(), dst, bytes.len()) {
        buf.extend_from_slice(bytes);
        return;
    }
    for piece in bytes.chunks(COPY_PIECE) {
        buf.extend_from_slice(piece);
    }
}

/// Whether copying `len` bytes from `src` to `dst` with one `memcpy` could take the slow path
/// of the module's documentation: more than a piece and less than [`SLOW_COPY_BELOW`], the
/// destination 1 to 15 bytes past the source modulo 64. Copied in pieces such a block moves at
/// 17-20 GB/s (3-4 in one); at other offsets one `memcpy` is the faster (41-57 GB/s).
pub(crate) fn copy_could_be_slow(src: *const u8, dst: *const u8, len: usize) -> bool {
    (COPY_PIECE + 1..SLOW_COPY_BELOW).contains(&len)
        && (1..16).contains(&((dst as usize).wrapping_sub(src as usize) % 64))
}

/// From this size up glibc copies without `rep movsb` (its threshold follows the cache's size:
/// on the project's machines between 896 KiB and 1 MiB), fast at every offset (47 GB/s), and
/// faster than in pieces.
const SLOW_COPY_BELOW: usize = 1 << 20;

/// Spare memory kept at most, process-wide.
const KEEP_BYTES: usize = 32 << 20;
/// Spare buffers kept at most.
const KEEP_BUFFERS: usize = 16;

/// Large buffers get room in steps of this many bytes, or of the power of two at or above an
/// eighth of their size if that is more: at most a quarter more than they need.
const ROOM_STEP: usize = 64 * 1024;

/// Room a frame being read starts with when no spare buffer fits it; it doubles as bytes
/// arrive.
const FIRST_READ: usize = 64 * 1024;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `len` bytes: a spare one when `len` is large and one fits.
pub(crate) fn take(len: usize) -> Vec<u8> {
    spare(len).unwrap_or_else(|| Vec::with_capacity(room(len)))
}

/// The room to give a buffer for `len` bytes: `len` itself when small; rounded up when large,
/// so that a buffer kept for reuse fits the next frames of about its size too.
fn room(len: usize) -> usize {
    if len < LARGE {
        return len;
    }
    let step = ROOM_STEP.max((len / 8).next_power_of_two());
    len.div_ceil(step).saturating_mul(step)
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
        let target = buf.capacity().max(FIRST_READ).saturating_mul(2).min(len);
        // The last step takes the frame's rounded room, so the buffer is worth keeping.
        let target = if target == len { room(len) } else { target };
        buf.reserve_exact(target - buf.len());
    }
}

/// Appends to a buffer that may grow large, like `Vec`'s own appending (and its `io::Write`),
/// but a buffer growing past [`LARGE`] moves into a spare one, or into a fresh one with
/// [`room`] to spare, rather than doubling through the allocator.
pub(crate) struct Appender<'a>(pub(crate) &'a mut Vec<u8>);

impl Appender<'_> {
    /// Appends `bytes`.
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        let need = self.0.len().saturating_add(bytes.len());
        if need > self.0.capacity() && need >= LARGE {
            let want = need.max(self.0.capacity().saturating_mul(2));
            let mut bigger = spare(need).unwrap_or_else(|| Vec::with_capacity(room(want)));
            extend_in_pieces(&mut bigger, self.0);
            recycle(std::mem::replace(self.0, bigger));
        }
        extend_in_pieces(self.0, bytes);
    }
}

impl std::io::Write for Appender<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A spare buffer with room for `len` bytes, the smallest that fits, if `len` is large.
fn spare(len: usize) -> Option<Vec<u8>> {
    if len >= LARGE {
        let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
        // The smallest spare that fits, so large ones stay for large frames; of equals, the
        // one kept last, whose memory is likeliest still in the cache.
        let best = spare
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            // In order: the rest stay oldest first.
            return Some(spare.remove(i));
        }
    }
    None
}

/// Keeps `buf` for a later [`take`] if it held a large frame; frees it otherwise (a buffer that
/// merely grew past the threshold is not worth keeping). When the spares are at their bound,
/// `buf` takes the place of smaller ones if that keeps within it: frames that grew larger
/// than the spares must not find them all too small for good.
pub(crate) fn recycle(mut buf: Vec<u8>) {
    if buf.len() < LARGE || buf.capacity() > KEEP_BYTES {
        return;
    }
    buf.clear();
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    let mut kept: usize = spare.iter().map(Vec::capacity).sum();
    while spare.len() >= KEEP_BUFFERS || kept + buf.capacity() > KEEP_BYTES {
        let Some((i, smallest)) = spare
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, b)| (i, b.capacity()))
        else {
            break;
        };
        if smallest >= buf.capacity() {
            // Everything kept is at least as large: this one goes.
            return;
        }
        kept -= smallest;
        spare.remove(i);
    }
    spare.push(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spares are process-wide: tests that count or fill them take turns.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn appending_in_pieces_keeps_every_byte_in_order() {
        let source = crate::transport::test_pattern(3 * COPY_PIECE + 7 + 64);
        let mut in_pieces = 0;
        // Every offset of the source against the destination modulo 64: some of them are
        // copied in pieces.
        for from in 0..64 {
            for len in [0, 1, COPY_PIECE, COPY_PIECE + 1, 3 * COPY_PIECE + 7] {
                let bytes = &source[from..from + len];
                // After a few bytes already there, as a frame's header leaves them.
                let mut buf = Vec::with_capacity(13 + len);
                buf.extend_from_slice(&[9u8; 13]);
                let dst = buf.as_ptr().wrapping_add(13);
                in_pieces += usize::from(copy_could_be_slow(bytes.as_ptr(), dst, len));
                extend_in_pieces(&mut buf, bytes);
                assert_eq!(&buf[..13], &[9u8; 13]);
                assert_eq!(&buf[13..], bytes, "{len} bytes from {from}");
            }
        }
        // 15 offsets in 64, two lengths over a piece.
        assert_eq!(in_pieces, 30);
    }

    /// Builds a frame of `len` bytes and recycles it, as a written frame is; where its memory is.
    fn kept_frame(len: usize) -> *const u8 {
        let mut frame = take(len);
        frame.resize(len, 1);
        let ptr = frame.as_ptr();
        recycle(frame);
        ptr
    }

    #[test]
    fn large_buffers_come_back_and_small_ones_do_not() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
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
        // Never beyond the frame's room.
        let mut small = vec![0; FIRST_READ];
        grow_to_read(&mut small, FIRST_READ + 10);
        assert_eq!(small.capacity(), room(FIRST_READ + 10));
        assert!(room(FIRST_READ + 10) < 2 * FIRST_READ + 10);
    }

    #[test]
    fn frames_a_few_bytes_longer_fit_the_buffer_of_the_last_one() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        // A size no other test uses, so the spare found is ours.
        let len = 3 * (1 << 20) + 5;
        let ptr = kept_frame(len);
        // The next call's frame: a call id one byte longer.
        let next = take(len + 1);
        assert_eq!(next.as_ptr(), ptr, "a frame one byte longer found no spare");
        // Read frames too: the buffer a frame is read into ends with the same room.
        let mut read = take_to_read(len + 2);
        while read.len() < len + 2 {
            grow_to_read(&mut read, len + 2);
            read.resize(read.capacity().min(len + 2), 0);
        }
        assert!(
            read.capacity() >= len + 64,
            "a read frame's buffer got no room to spare"
        );
        recycle(next);
        recycle(read);
    }

    #[test]
    fn larger_frames_displace_smaller_spares_at_the_bound() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..KEEP_BUFFERS {
            recycle(vec![0; LARGE]);
        }
        let larger = 5 * (1 << 20) + 7;
        let ptr = kept_frame(larger);
        let again = take(larger);
        assert_eq!(
            again.as_ptr(),
            ptr,
            "the larger frame's buffer was not kept"
        );
        let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(spare.len() <= KEEP_BUFFERS);
        assert!(spare.iter().map(Vec::capacity).sum::<usize>() <= KEEP_BYTES);
    }

    #[test]
    fn a_body_growing_large_moves_into_a_spare_buffer() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let len = 7 * (1 << 20) + 3;
        let ptr = kept_frame(len);
        let mut body = vec![9u8; 4];
        {
            let mut appender = Appender(&mut body);
            appender.extend_from_slice(&vec![2u8; len - 4]);
            std::io::Write::write_all(&mut appender, &[3]).unwrap();
        }
        assert_eq!(
            body.as_ptr(),
            ptr,
            "the body did not move into the spare buffer"
        );
        assert_eq!(body.len(), len + 1);
        assert_eq!(&body[..5], &[9, 9, 9, 9, 2]);
        assert_eq!(body[len], 3);
    }
}
