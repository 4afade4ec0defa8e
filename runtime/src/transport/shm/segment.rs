//! The mapping of a shared-memory segment, and the registration of descriptors with tokio
//! (through [`crate::transport::fd::register`]): the mapping is the shared-memory transport's
//! only `unsafe` code.
//!
//! Everything in the segment may be written by the peer at any moment, so nothing here ever makes
//! a Rust reference to plain bytes of it: control words are reached as atomics (whose whole point
//! is concurrent modification), and ring bytes are copied in and out through raw pointers, into
//! and from private memory, which is all the layers above ever interpret.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::mm::{MapFlags, ProtFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, ReadBuf};

/// A shared, read-write mapping of a whole memory file, unmapped on drop.
pub(super) struct Mapping {
    /// Start of the mapping; page aligned, valid for `len` bytes until drop.
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all access through it goes through
// atomics or raw copies that tolerate concurrent writers, so sharing it across threads is as
// safe as sharing it with the peer process.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` only hands out atomics and raw copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared and read-write. The caller has checked that the
    /// file is at least `len` long and cannot shrink (`F_SEAL_SHRINK`): otherwise an access past
    /// its end would raise SIGBUS.
    pub(super) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty shared-memory segment",
            ));
        }
        // SAFETY: a fresh mapping at an address the kernel picks aliases no Rust object; the
        // file's length and seals were checked by the caller, so every byte of it stays backed.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Mapping { ptr, len })
    }

    /// The mapping's length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The 8-byte word at `offset`, a constant of our layout (never a value read from the peer).
    ///
    /// # Panics
    /// If `offset` is misaligned or out of the mapping: a bug in the layout, not peer input.
    pub(super) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        // SAFETY: in bounds and 8-aligned (the mapping is page aligned), valid while `self`
        // lives; an atomic may be modified concurrently by anyone, including the peer.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// Asks the CPU to fetch the cache line holding byte `offset` (a hint: no access to the
    /// memory happens, so a line the peer is writing meanwhile is no race). Out of the mapping:
    /// nothing.
    pub(super) fn prefetch(&self, offset: usize) {
        if offset >= self.len {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and reads nothing into the program; the address is in
        // the mapping anyway.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(self.ptr.as_ptr().add(offset).cast::<i8>());
        }
    }

    /// The 4-byte word at `offset`; see [`Mapping::u64_at`].
    pub(super) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len);
        // SAFETY: in bounds and 4-aligned, valid while `self` lives; atomics tolerate concurrent
        // modification.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// Appends the `len` bytes at `offset` to the filled part of `dst`, copying them straight
    /// into its unfilled memory (which need not be initialised: a large frame's buffer is not
    /// zeroed first).
    ///
    /// # Panics
    /// If the range is out of the mapping, or `dst` has less room than `len`: callers compute
    /// offsets from bounds-checked, masked ring positions and clamp `len` to the room, so this is
    /// a bug, never peer input.
    pub(super) fn copy_out(&self, offset: usize, len: usize, dst: &mut ReadBuf<'_>) {
        assert!(offset <= self.len && len <= self.len - offset && len <= dst.remaining());
        // SAFETY: the source range is inside the mapping and cannot overlap `dst` (private
        // memory); the destination is the first `len` bytes of `dst`'s unfilled part, which the
        // assert bounds, and writing there needs no initialised bytes. After the copy exactly
        // those `len` bytes are initialised, which is what `assume_init` records. The peer may
        // write the source bytes concurrently; then we copy torn garbage, which is harmless
        // because only the private copy is ever interpreted, and checked there.
        unsafe {
            let unfilled = dst.unfilled_mut();
            copy_in_pieces(
                self.ptr.as_ptr().add(offset),
                unfilled.as_mut_ptr().cast::<u8>(),
                len,
            );
            dst.assume_init(len);
        }
        dst.advance(len);
    }

    /// Copies `src` into the segment starting at `offset`.
    ///
    /// # Panics
    /// If the range is out of the mapping (a bug, as for [`Mapping::copy_out`]).
    pub(super) fn copy_in(&self, offset: usize, src: &[u8]) {
        assert!(offset <= self.len && src.len() <= self.len - offset);
        // SAFETY: the destination range is inside the mapping and cannot overlap `src`. No Rust
        // reference to these bytes exists; the peer reads them only after we publish `head`.
        unsafe {
            copy_in_pieces(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
    }
}

/// Copies `len` bytes from `src` to `dst`, with one `memcpy` per
/// [`COPY_PIECE`](crate::buffers::COPY_PIECE) bytes where one `memcpy` could be slow: ring
/// positions fall on any byte, and some C libraries copy large blocks many times slower at some
/// offsets (see [`crate::buffers`]).
///
/// # Safety
/// As for `ptr::copy_nonoverlapping`: both ranges valid for `len` bytes, not overlapping.
unsafe fn copy_in_pieces(src: *const u8, dst: *mut u8, len: usize) {
    if !crate::buffers::copy_could_be_slow(src, dst, len) {
        // SAFETY: as the caller vouched.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut done = 0;
    while done < len {
        let n = (len - done).min(crate::buffers::COPY_PIECE);
        // SAFETY: `done + n <= len`, so both subranges lie within the ranges the caller
        // vouched for, which do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and every reference handed out
        // borrows `self`, so none outlives the mapping.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::warn!(error = %e, "munmap of a shared-memory segment failed");
        }
    }
}

/// Registers `fd` with the current tokio reactor for readability (wake-up pipes and the rendezvous
/// socket are only ever waited on for that). Must run inside a tokio runtime.
pub(super) fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    crate::transport::fd::register(fd, Interest::READABLE)
}
