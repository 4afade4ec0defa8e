//! The timed loops over our runtime: sequential calls timed one by one, many callers in flight
//! on one handle, registry lookups.

use std::time::Instant;

use anyhow::{Context, ensure};
use oxrmi::Remote;
use oxrmi::registry::Registry;
use serde_bytes::ByteBuf;
use tokio::task::JoinSet;

use super::interface::{BENCH_NAME, Bench};
use super::plan::{Count, Window};
use super::raw_calls::pattern;
use super::stats::Samples;

/// Evaluates `$call` (an expression that awaits one call) `count.warmup` times, then
/// `count.timed` times timing each; gives the [`Samples`].
///
/// A macro and not a function taking an async closure: the future of an `AsyncFnMut` borrows
/// the closure for a lifetime `Send` cannot yet be proven for, and `tokio::spawn` needs `Send`.
macro_rules! time_calls {
    ($count:expr, $call:expr) => {{
        let count: Count = $count;
        for _ in 0..count.warmup {
            $call;
        }
        let mut nanos = Vec::with_capacity(count.timed);
        let wall = ::std::time::Instant::now();
        for _ in 0..count.timed {
            let t = ::std::time::Instant::now();
            $call;
            nanos.push(t.elapsed().as_nanos() as u64);
        }
        $crate::bench::stats::Samples {
            nanos,
            wall: wall.elapsed(),
        }
    }};
}
pub(crate) use time_calls;

/// Sequential null calls.
pub(crate) async fn null(bench: Remote<dyn Bench>, count: Count) -> anyhow::Result<Samples> {
    Ok(time_calls!(count, bench.null().await?))
}

/// Sequential references received and dropped: `make` returns a new object by reference and
/// the handle is dropped at once, which queues a one-way release. A task of the client's
/// runtime sends it, so it goes out while the next call is under way: the time between two
/// calls includes it.
pub(crate) async fn make_and_drop(
    bench: Remote<dyn Bench>,
    count: Count,
) -> anyhow::Result<Samples> {
    Ok(time_calls!(count, drop(bench.make().await?)))
}

/// Sequential echoes of `size` bytes. The payload is cloned for every call: the interface takes
/// it by value, as a caller's would.
pub(crate) async fn echo(
    bench: Remote<dyn Bench>,
    size: usize,
    count: Count,
) -> anyhow::Result<Samples> {
    let payload = ByteBuf::from(pattern(size));
    // Checked once, outside timing: the echo is whole and in order.
    let back = bench.echo(payload.clone()).await?;
    ensure!(back == payload, "the bench server echoed other bytes");
    Ok(time_calls!(count, {
        let back = bench.echo(payload.clone()).await?;
        ensure!(
            back.len() == size,
            "the bench server echoed {} bytes",
            back.len()
        );
    }))
}

/// Null calls from `callers` tasks looping on one handle (so one connection). Returns calls
/// completed per second within the measured window; calls completing during the warm-up, or
/// after the window, are not counted.
pub(crate) async fn null_in_flight(
    bench: Remote<dyn Bench>,
    callers: usize,
    window: Window,
) -> anyhow::Result<(f64, u64)> {
    in_flight(callers, window, move || {
        let bench = bench.clone();
        async move { Ok(bench.null().await?) }
    })
    .await
}

/// Lookups (each checked for its interface) from `callers` tasks sharing one registry handle.
pub(crate) async fn lookups_in_flight(
    registry: Remote<dyn Registry>,
    callers: usize,
    window: Window,
) -> anyhow::Result<(f64, u64)> {
    in_flight(callers, window, move || {
        let registry = registry.clone();
        async move {
            let found = registry.lookup(BENCH_NAME.to_string()).await?;
            found.downcast::<dyn Bench>()?;
            Ok(())
        }
    })
    .await
}

/// Runs `op` in a loop on each of `callers` tasks; returns operations completed per second within
/// the measured window, and how many that was.
pub(crate) async fn in_flight<F, Fut>(
    callers: usize,
    window: Window,
    op: F,
) -> anyhow::Result<(f64, u64)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let from = start + window.warmup;
    let until = from + window.measured;
    let mut tasks = JoinSet::new();
    for _ in 0..callers {
        let op = op.clone();
        tasks.spawn(async move {
            let mut completed = 0u64;
            loop {
                op().await?;
                let now = Instant::now();
                if now >= until {
                    return Ok::<u64, anyhow::Error>(completed);
                }
                if now >= from {
                    completed += 1;
                }
            }
        });
    }
    let mut completed = 0;
    while let Some(done) = tasks.join_next().await {
        completed += done.context("a caller task failed")??;
    }
    Ok((completed as f64 / window.measured.as_secs_f64(), completed))
}

/// Sequential lookups of the bench object's name, each checked for its interface (what a
/// client's `lookup` does).
pub(crate) async fn lookups(
    registry: Remote<dyn Registry>,
    count: Count,
) -> anyhow::Result<Samples> {
    Ok(time_calls!(count, {
        let found = registry.lookup(BENCH_NAME.to_string()).await?;
        found.downcast::<dyn Bench>()?;
    }))
}
