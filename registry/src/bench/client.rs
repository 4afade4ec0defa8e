//! The `bench-client` role: times calls against the bench server and their raw twins against
//! the raw echo server, and prints one JSON [`Measurement`] a line on stdout.
//!
//! Each raw twin runs right before its figure, so a drift of the machine (frequency, a noisy
//! neighbour) touches both alike.

use std::future::Future;
use std::io::Write;

use anyhow::Context;
use oxrmi::{Remote, Runtime};

use super::interface::{BENCH_NAME, Bench};
use super::measurement::{Measurement, Unit};
use super::oxrmi_calls;
use super::plan::{IN_FLIGHT, LARGE_ECHO, Plan, RAW_PING, SMALL_ECHO};
use super::raw_calls;
use super::stats::Summary;
use crate::cli::BenchClientArgs;
use crate::tokio_runtime;

/// Measures everything and reports it.
pub(crate) fn run(args: BenchClientArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args.quick);
    let tokio = tokio_runtime::build().context("cannot start the tokio runtime")?;
    let rt = tokio.block_on(Runtime::builder().start())?;
    let url = format!("{}/{BENCH_NAME}", args.server);
    let bench: Remote<dyn Bench> = tokio
        .block_on(rt.lookup_url(&url))
        .with_context(|| format!("cannot look up {url}"))?;
    let transport = args.transport;
    let raw_connect = || {
        transport
            .raw_connect(&args.raw)
            .with_context(|| format!("cannot connect to the raw echo server at {}", args.raw))
    };
    let mut raw = raw_connect()?;
    let mut out = Emitter;

    let raw_null = raw_calls::ping_pong(&mut *raw, RAW_PING, plan.small)?.summarize();
    let null = on_workers(&tokio, oxrmi_calls::null(bench.clone(), plan.small))?.summarize();
    out.latency("null_call", "null call", null, Some(raw_null))?;

    for (size, id, label, count) in [
        (SMALL_ECHO, "echo_1k", "echo 1 KiB", plan.small),
        (LARGE_ECHO, "echo_64k", "echo 64 KiB", plan.large),
    ] {
        let raw_echo = raw_calls::ping_pong(&mut *raw, size, count)?.summarize();
        let echo = on_workers(&tokio, oxrmi_calls::echo(bench.clone(), size, count))?.summarize();
        out.latency(id, label, echo, Some(raw_echo))?;
    }

    // A fresh raw connection: the pipelined run leaves messages in flight when it stops.
    let raw_rate = raw_calls::pipelined(&mut *raw_connect()?, RAW_PING, IN_FLIGHT, plan.in_flight)?;
    let (rate, completed) = on_workers(
        &tokio,
        oxrmi_calls::null_in_flight(bench.clone(), IN_FLIGHT, plan.in_flight),
    )?;
    out.emit(&Measurement {
        metric: format!("null_calls_per_second_{IN_FLIGHT}_in_flight"),
        label: format!("null calls/s, {IN_FLIGHT} in flight"),
        unit: Unit::CallsPerSecond,
        ours: rate,
        raw: Some(raw_rate),
        samples: completed,
    })?;

    let registry = rt.registry_at(&args.server);
    let lookups =
        on_workers(&tokio, oxrmi_calls::lookups(registry.clone(), plan.lookups))?.summarize();
    out.emit(&Measurement {
        metric: "registry_lookup_p50".into(),
        label: "registry lookup p50".into(),
        unit: Unit::Micros,
        ours: lookups.p50_us,
        raw: None,
        samples: lookups.count,
    })?;
    out.emit(&Measurement {
        metric: "registry_lookups_per_second".into(),
        label: "registry lookups/s, sequential".into(),
        unit: Unit::LookupsPerSecond,
        ours: lookups.per_second,
        raw: None,
        samples: lookups.count,
    })?;
    let (lookup_rate, looked_up) = on_workers(
        &tokio,
        oxrmi_calls::lookups_in_flight(registry, IN_FLIGHT, plan.in_flight),
    )?;
    out.emit(&Measurement {
        metric: format!("registry_lookups_per_second_{IN_FLIGHT}_in_flight"),
        label: format!("registry lookups/s, {IN_FLIGHT} in flight"),
        unit: Unit::LookupsPerSecond,
        ours: lookup_rate,
        raw: None,
        samples: looked_up,
    })?;

    rt.shutdown();
    Ok(())
}

/// Runs `work` as a task, not on the thread blocked in `block_on`: on a multi-thread runtime
/// that keeps the measured loop on a worker, next to the connection's tasks, instead of paying
/// a thread hand-off on every wake-up.
fn on_workers<T: Send + 'static>(
    tokio: &tokio::runtime::Runtime,
    work: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    // `Runtime::spawn`, not `tokio::spawn`: this thread is outside the runtime's context.
    let task = tokio.spawn(work);
    tokio.block_on(task).context("a measurement task failed")?
}

/// Writes measurements to stdout, one JSON object a line, each flushed at once.
struct Emitter;

impl Emitter {
    fn emit(&mut self, m: &Measurement) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, m)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }

    /// The p50 and p99 of a latency run, each with its raw twin.
    fn latency(
        &mut self,
        id: &str,
        label: &str,
        ours: Summary,
        raw: Option<Summary>,
    ) -> anyhow::Result<()> {
        for (pct, ours_us, raw_us) in [
            ("p50", ours.p50_us, raw.map(|r| r.p50_us)),
            ("p99", ours.p99_us, raw.map(|r| r.p99_us)),
        ] {
            self.emit(&Measurement {
                metric: format!("{id}_{pct}"),
                label: format!("{label} {pct}"),
                unit: Unit::Micros,
                ours: ours_us,
                raw: raw_us,
                samples: ours.count,
            })?;
        }
        Ok(())
    }
}
