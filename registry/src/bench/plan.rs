//! How much each figure measures: warm-up and timed calls, durations. `--quick` divides the
//! counts by ten and halves the renewal windows; the numbers of objects held stay the same
//! (they are what the lifetime figures are about).

use std::time::Duration;

/// The payload of the small echo.
pub(crate) const SMALL_ECHO: usize = 1024;
/// The payload of the large echo.
pub(crate) const LARGE_ECHO: usize = 64 * 1024;
/// The payload of the bulk echo, whose figure is bytes per second each way.
pub(crate) const BULK_ECHO: usize = 1024 * 1024;
/// The bytes each way of the raw twin of a null call, as in the anchor figures.
pub(crate) const RAW_PING: usize = 8;
/// Calls in flight over one connection in the throughput figure.
pub(crate) const IN_FLIGHT: usize = 64;
/// The lease the bench server of the lifetime figures grants (`bench-server --lease-ms`'s
/// default), in milliseconds: short, so a window of seconds sees several renewals.
pub(crate) const BENCH_LEASE_MS: u64 = 1_000;
/// Handles a client holds in the first renewal window.
pub(crate) const HELD_FEW: usize = 10;
/// Handles a client holds in the second renewal window.
pub(crate) const HELD_MANY: usize = 10_000;
/// Objects exported for the memory figures.
pub(crate) const MEMORY_OBJECTS: usize = 10_000;
/// References asked for in one call when a client wants many (`make_many`, `pool`): replies
/// of tens of kilobytes, so their buffers are reused from one call to the next instead of
/// growing the server's resident memory by the size of one huge reply.
pub(crate) const REF_BATCH: usize = 500;

/// Untimed calls first (connections, caches, allocator and branch predictors warm up), then
/// calls timed one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) warmup: usize,
    pub(crate) timed: usize,
}

impl Count {
    /// Round `round`'s share (of `rounds`) of these calls: the whole split as evenly as can
    /// be, so the rounds add up to exactly these counts.
    pub(crate) fn share(self, round: usize, rounds: usize) -> Count {
        let part = |n: usize| n / rounds + usize::from(round < n % rounds);
        Count {
            warmup: part(self.warmup),
            timed: part(self.timed),
        }
    }
}

/// A run of calls kept in flight for a while, counted only after a warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) warmup: Duration,
    pub(crate) measured: Duration,
}

/// Everything the client measures, sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Null calls and 1 KiB echoes, and their raw twins.
    pub(crate) small: Count,
    /// 64 KiB echoes and their raw twin: each costs tens of microseconds, so fewer.
    pub(crate) large: Count,
    /// 1 MiB echoes and their raw twin: each costs hundreds of microseconds.
    pub(crate) bulk: Count,
    /// Null calls with [`IN_FLIGHT`] callers.
    pub(crate) in_flight: Window,
    /// Registry lookups.
    pub(crate) lookups: Count,
    /// References received and dropped, one at a time.
    pub(crate) references: Count,
    /// Each renewal window: handles held for at least `warmup` first, then renewals counted
    /// over about `measured` (a whole number of renewal periods).
    pub(crate) holding: Window,
}

impl Plan {
    /// The full plan, or about a tenth of it.
    pub(crate) fn new(quick: bool) -> Self {
        let full = Plan {
            small: Count {
                warmup: 10_000,
                timed: 100_000,
            },
            large: Count {
                warmup: 2_000,
                timed: 20_000,
            },
            bulk: Count {
                warmup: 100,
                timed: 1_000,
            },
            in_flight: Window {
                warmup: Duration::from_millis(300),
                measured: Duration::from_secs(3),
            },
            lookups: Count {
                warmup: 1_000,
                timed: 20_000,
            },
            references: Count {
                warmup: 2_000,
                timed: 20_000,
            },
            holding: Window {
                warmup: Duration::from_millis(500),
                measured: Duration::from_secs(3),
            },
        };
        if !quick {
            return full;
        }
        let tenth = |c: Count| Count {
            warmup: c.warmup / 10,
            timed: c.timed / 10,
        };
        Plan {
            small: tenth(full.small),
            large: tenth(full.large),
            bulk: tenth(full.bulk),
            in_flight: Window {
                warmup: Duration::from_millis(100),
                measured: Duration::from_millis(500),
            },
            lookups: tenth(full.lookups),
            references: tenth(full.references),
            holding: Window {
                warmup: Duration::from_millis(300),
                measured: Duration::from_millis(1_500),
            },
        }
    }

    /// One line saying how much was measured.
    pub(crate) fn describe(&self) -> String {
        format!(
            "null and 1 KiB: {} warm-up + {} timed calls; 64 KiB: {} + {}; 1 MiB: {} + {}; \
             {IN_FLIGHT} in flight: {:.1} s after {:.1} s; lookups: {} + {}; references: {} + {}; \
             renewals: {:.1} s with {HELD_FEW}, then with {HELD_MANY} handles held (after {:.1} s); \
             memory: {MEMORY_OBJECTS} objects",
            self.small.warmup,
            self.small.timed,
            self.large.warmup,
            self.large.timed,
            self.bulk.warmup,
            self.bulk.timed,
            self.in_flight.measured.as_secs_f64(),
            self.in_flight.warmup.as_secs_f64(),
            self.lookups.warmup,
            self.lookups.timed,
            self.references.warmup,
            self.references.timed,
            self.holding.measured.as_secs_f64(),
            self.holding.warmup.as_secs_f64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_a_count_add_up_to_it() {
        for (warmup, timed) in [(10, 100), (1_000, 10_000), (3, 7), (0, 1), (2_000, 20_001)] {
            let count = Count { warmup, timed };
            let shares: Vec<Count> = (0..4).map(|r| count.share(r, 4)).collect();
            assert_eq!(shares.iter().map(|c| c.warmup).sum::<usize>(), warmup);
            assert_eq!(shares.iter().map(|c| c.timed).sum::<usize>(), timed);
            let (least, most) = (
                shares.iter().map(|c| c.timed).min().unwrap(),
                shares.iter().map(|c| c.timed).max().unwrap(),
            );
            assert!(most - least <= 1, "{count:?}: {shares:?}");
        }
    }
}
