//! Latency samples and their percentiles.

use std::time::Duration;

/// Per-call times of a timed run, in nanoseconds, and the run's wall time.
#[derive(Clone, Debug, Default)]
pub(crate) struct Samples {
    pub(crate) nanos: Vec<u64>,
    pub(crate) wall: Duration,
}

/// What a latency figure reports about a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Summary {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Calls completed per second of wall time.
    pub(crate) per_second: f64,
    pub(crate) count: u64,
}

impl Samples {
    /// Adds a further run's samples and wall time to these, as if one run.
    pub(crate) fn append(&mut self, run: Samples) {
        self.nanos.extend(run.nanos);
        self.wall += run.wall;
    }

    /// Sorts the samples and reads the percentiles off them.
    pub(crate) fn summarize(mut self) -> Summary {
        self.nanos.sort_unstable();
        let us = |ns: u64| ns as f64 / 1_000.0;
        let count = self.nanos.len() as u64;
        Summary {
            p50_us: us(percentile(&self.nanos, 50.0)),
            p99_us: us(percentile(&self.nanos, 99.0)),
            per_second: if self.wall.is_zero() {
                0.0
            } else {
                count as f64 / self.wall.as_secs_f64()
            },
            count,
        }
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample with at least `pct`
/// percent of the samples at or below it (0 for no samples).
pub(crate) fn percentile(sorted: &[u64], pct: f64) -> u64 {
    debug_assert!(sorted.is_sorted(), "percentile of unsorted samples");
    if sorted.is_empty() {
        return 0;
    }
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // Two samples: the median is the lower one, the 99th the upper one.
        assert_eq!(percentile(&[1, 9], 50.0), 1);
        assert_eq!(percentile(&[1, 9], 99.0), 9);
    }

    #[test]
    fn runs_appended_count_as_one() {
        let mut pooled = Samples::default();
        for (nanos, ms) in [(vec![1_000, 3_000], 1), (vec![2_000, 100_000], 1)] {
            pooled.append(Samples {
                nanos,
                wall: Duration::from_millis(ms),
            });
        }
        let s = pooled.summarize();
        assert_eq!((s.p50_us, s.p99_us, s.count), (2.0, 100.0, 4));
        assert_eq!(s.per_second, 2_000.0);
    }

    #[test]
    fn a_summary_sorts_and_converts_to_microseconds() {
        let s = Samples {
            nanos: vec![3_000, 1_000, 2_000, 100_000],
            wall: Duration::from_millis(2),
        }
        .summarize();
        assert_eq!(s.p50_us, 2.0);
        assert_eq!(s.p99_us, 100.0);
        assert_eq!(s.count, 4);
        assert_eq!(s.per_second, 2_000.0);
    }
}
