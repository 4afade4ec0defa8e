//! The resident memory of this process, as Linux counts it: `/proc/self/statm`'s second field
//! (resident pages) times the page size, which the kernel passes in the auxiliary vector.

use std::io;

/// `AT_PAGESZ`: the auxiliary vector's entry for the page size.
const AT_PAGESZ: u64 = 6;

/// This process's resident set, in bytes (heap, stacks, and the pages of the executable and
/// libraries touched so far).
pub(crate) fn bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    Ok(resident_pages(&statm)? * page_size()?)
}

/// The second field of `/proc/self/statm`: resident pages.
fn resident_pages(statm: &str) -> io::Result<u64> {
    statm
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad(format!("/proc/self/statm reads {statm:?}")))
}

/// The page size, from `/proc/self/auxv`: pairs of native words, (type, value).
fn page_size() -> io::Result<u64> {
    let auxv = std::fs::read("/proc/self/auxv")?;
    auxv_entry(&auxv, AT_PAGESZ).ok_or_else(|| bad("no page size in /proc/self/auxv".into()))
}

fn auxv_entry(auxv: &[u8], wanted: u64) -> Option<u64> {
    const WORD: usize = size_of::<usize>();
    let word = |b: &[u8]| {
        let mut w = [0u8; WORD];
        w.copy_from_slice(b);
        usize::from_ne_bytes(w) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .map(|pair| (word(&pair[..WORD]), word(&pair[WORD..])))
        .find(|(kind, _)| *kind == wanted)
        .map(|(_, value)| value)
}

fn bad(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_gives_resident_pages() {
        assert_eq!(resident_pages("2048 512 100 10 0 300 0\n").unwrap(), 512);
        assert!(resident_pages("2048").is_err());
    }

    #[test]
    fn auxv_pairs_are_read_in_native_words() {
        let mut v = Vec::new();
        for (k, val) in [(3usize, 64usize), (AT_PAGESZ as usize, 16384), (0, 0)] {
            v.extend_from_slice(&k.to_ne_bytes());
            v.extend_from_slice(&val.to_ne_bytes());
        }
        assert_eq!(auxv_entry(&v, AT_PAGESZ), Some(16384));
        assert_eq!(auxv_entry(&v, 99), None);
    }

    #[test]
    fn this_process_has_a_resident_set_of_whole_pages() {
        let page = page_size().unwrap();
        assert!(page.is_power_of_two() && page >= 4096, "page size {page}");
        let rss = bytes().unwrap();
        assert!(rss > 0 && rss.is_multiple_of(page), "{rss} bytes resident");
    }
}
