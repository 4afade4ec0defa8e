//! Property: decoding arbitrary bytes never panics and never takes more memory than the decode
//! limits allow. A counting global allocator measures the peak of live heap bytes while each
//! input is decoded as several types through the same budgeted decoder every argument and
//! result goes through (`oxrmi::__private::fuzzing::bounded_decode`).
//!
//! One test in this binary, so no other thread allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use oxrmi::__private::fuzzing::bounded_decode;
use proptest::prelude::*;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the new block arriving before the old one goes, as a move would.
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most heap bytes decoding `data` took beyond what was live before.
fn peak_while_decoding(data: &[u8], max_decoded: u64, max_len: u64) -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let _ = bounded_decode(data, max_decoded, max_len);
    PEAK.load(Ordering::Relaxed) - before
}

/// The decoded-size limit of the property.
const MAX_DECODED: u64 = 256 * 1024;
/// What decoding may take beyond it: the growth slack of collections (see `oxrmi::budget`),
/// error messages, and each type's decode starting afresh.
fn bound(input: usize) -> usize {
    3 * MAX_DECODED as usize + 2 * input + 64 * 1024
}

/// MessagePack-ish bytes that make decoders work: length headers of every width, claiming
/// anything, around short runs of random bytes.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        (0x90u8..=0x9f).prop_map(|b| vec![b]),
        (0x80u8..=0x8f).prop_map(|b| vec![b]),
        any::<u16>().prop_map(|n| [vec![0xdc], n.to_be_bytes().to_vec()].concat()),
        any::<u32>().prop_map(|n| [vec![0xdd], n.to_be_bytes().to_vec()].concat()),
        any::<u32>().prop_map(|n| [vec![0xdf], n.to_be_bytes().to_vec()].concat()),
        any::<u32>().prop_map(|n| [vec![0xdb], n.to_be_bytes().to_vec()].concat()),
        Just(vec![0xa0]),
        Just(vec![0xc0]),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(header, 0..400).prop_map(|parts| parts.concat())
}

/// Runs the property (2,000 cases, shrunk on failure), after checking that the measurement can
/// fail: the same kind of input decoded without a meaningful limit takes far more than the
/// bound, and with the limit it does not. One test, so nothing else allocates meanwhile.
#[test]
fn decoding_arbitrary_bytes_stays_within_its_bounds() {
    // 60,000 empty strings: 60 KB of MessagePack, 1.4 MB as a `Vec<String>`.
    let mut data = vec![0xdc];
    data.extend_from_slice(&60_000u16.to_be_bytes());
    data.extend(std::iter::repeat_n(0xa0, 60_000));
    let unlimited = peak_while_decoding(&data, u64::MAX, u64::MAX);
    assert!(unlimited > bound(data.len()), "{unlimited}");
    let limited = peak_while_decoding(&data, MAX_DECODED, 1 << 20);
    assert!(limited <= bound(data.len()), "{limited}");

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    });
    let inputs = (
        prop_oneof![prop::collection::vec(any::<u8>(), 0..4096), hostile()],
        1usize..64,
    );
    let outcome = runner.run(&inputs, |(data, repeat)| {
        // Repeating an input makes long runs of the same claim (a thousand nested headers).
        let data = data.repeat(repeat);
        let peak = peak_while_decoding(&data, MAX_DECODED, 1 << 20);
        prop_assert!(
            peak <= bound(data.len()),
            "{} input bytes took {peak} bytes while decoding (bound {})",
            data.len(),
            bound(data.len())
        );
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
