//! The `bench-client` role: times calls against the bench server and their raw twins against
//! the raw echo server, then measures the lifetime figures against the second bench server,
//! and prints one JSON [`Measurement`] a line on stdout.
//!
//! Each latency figure and its raw twin are taken in alternating rounds ([`ROUNDS`]), and
//! each other baseline right before its figure, so a drift of the machine (frequency, a noisy
//! neighbour, on a virtual machine how far apart its vCPUs run) touches both alike.

use std::future::Future;
use std::io::Write;

use anyhow::Context;
use oxrmi::{Remote, Runtime};

use super::grpc;
use super::interface::{BENCH_NAME, Bench};
use super::lifetimes::{self, Holder};
use super::measurement::{Measurement, Unit};
use super::oxrmi_calls;
use super::placement::Pinning;
use super::plan::{
    BULK_ECHO, Count, HELD_FEW, HELD_MANY, IN_FLIGHT, LARGE_ECHO, MEMORY_OBJECTS, Plan, RAW_PING,
    SMALL_ECHO,
};
use super::raw_calls;
use super::report;
use super::stats::{Samples, Summary};
use super::transport::pipe::ChildPipes;
use super::transport::{RawStream, TransportKind};
use crate::cli::BenchClientArgs;
use crate::tokio_runtime;

/// Measures everything and reports it.
pub(crate) fn run(args: BenchClientArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args.quick);
    if let Some(us) = args.raw_spin_us {
        super::transport::shm::set_spin(std::time::Duration::from_micros(us));
    }
    let tokio = tokio_runtime::build().context("cannot start the tokio runtime")?;
    if args.transport == TransportKind::Grpc {
        return grpc_figures(&tokio, &args, &plan);
    }
    let rt = tokio.block_on(Runtime::builder().start())?;
    let transport = args.transport;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let pinning = Pinning::detect();
    // Over pipes the servers are our children: started here, pinned where asked.
    let role = |role: &str| {
        let mut c = pinning.command(&exe, args.server_cpu);
        c.args([role, "--transport", transport.name()]);
        c
    };
    let (server, bench, _child) = match &args.server {
        Some(ep) => {
            let url = oxrmi::ObjectUrl::of(ep, BENCH_NAME).to_string();
            let bench: Remote<dyn Bench> = tokio
                .block_on(rt.lookup_url(&url))
                .with_context(|| format!("cannot look up {url}"))?;
            (ep.clone(), bench, None)
        }
        None if transport.is_child_pipes() => {
            let mut c = role("bench-server");
            c.arg("--lease-ms")
                .arg(oxrmi::DEFAULT_LEASE.as_millis().to_string());
            let child = tokio
                .block_on(rt.spawn_child(c))
                .context("cannot start the bench server as a child")?;
            // Offered once it is bound: waiting for it means the child is ready.
            let bench: Remote<dyn Bench> = tokio
                .block_on(child.bootstrap())
                .context("cannot reach the child's bench object")?;
            (child.endpoint(), bench, Some(child))
        }
        None => anyhow::bail!("--server is needed over {}", transport.name()),
    };
    let raw_connect = || -> anyhow::Result<Box<dyn RawStream>> {
        match &args.raw {
            Some(raw) => transport
                .raw_connect(raw)
                .with_context(|| format!("cannot connect to the raw echo server at {raw}")),
            None => Ok(Box::new(
                ChildPipes::spawn(role("bench-raw-server"))
                    .context("cannot start the raw echo server as a child")?,
            )),
        }
    };
    let mut raw = raw_connect()?;
    let mut out = Emitter;

    let (raw_null, null) = alternating(
        plan.small,
        |count| Ok(raw_calls::ping_pong(&mut *raw, RAW_PING, count)?),
        |count| on_workers(&tokio, oxrmi_calls::null(bench.clone(), count)),
    )?;
    out.latency("null_call", "null call", null, Some(raw_null))?;

    for (size, id, label, count) in [
        (SMALL_ECHO, "echo_1k", "echo 1 KiB", plan.small),
        (LARGE_ECHO, "echo_64k", "echo 64 KiB", plan.large),
    ] {
        let (raw_echo, echo) = alternating(
            count,
            |count| Ok(raw_calls::ping_pong(&mut *raw, size, count)?),
            |count| on_workers(&tokio, oxrmi_calls::echo(bench.clone(), size, count)),
        )?;
        out.latency(id, label, echo, Some(raw_echo))?;
    }

    // Bulk: 1 MiB each way per call, as payload bytes per second each way.
    let (raw_bulk, bulk) = alternating(
        plan.bulk,
        |count| Ok(raw_calls::ping_pong(&mut *raw, BULK_ECHO, count)?),
        |count| on_workers(&tokio, oxrmi_calls::echo(bench.clone(), BULK_ECHO, count)),
    )?;
    out.latency("echo_1m", "echo 1 MiB", bulk, Some(raw_bulk))?;
    out.emit(&Measurement {
        metric: "echo_1m_bytes_per_second".into(),
        label: "echo 1 MiB, payload each way".into(),
        unit: Unit::BytesPerSecond,
        ours: bulk.per_second * BULK_ECHO as f64,
        raw: Some(raw_bulk.per_second * BULK_ECHO as f64),
        samples: bulk.count,
    })?;

    // A fresh raw connection: the pipelined run leaves messages in flight when it stops.
    let raw_rate = raw_calls::pipelined(&mut *raw_connect()?, RAW_PING, IN_FLIGHT, plan.in_flight)?;
    let (rate, completed) = on_workers(
        &tokio,
        oxrmi_calls::null_in_flight(bench.clone(), IN_FLIGHT, plan.in_flight),
    )?;
    out.in_flight(rate, raw_rate, completed)?;

    let registry = rt.registry_at(&server);
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

    // Not over pipes: the lifetime figures need runtimes of their own, which a child's pipes
    // (reaching only the parent runtime) cannot serve.
    if let Some(lifetimes) = &args.lifetimes {
        lifetime_figures(&tokio, &rt, lifetimes, &plan, &mut out)?;
    }
    rt.shutdown();
    Ok(())
}

/// Over `grpc`: the null call, the 1 KiB echo and null calls in flight, through the bridge
/// (`--server`) and against the plain tonic service (`--raw`), each baseline right before its
/// figure.
fn grpc_figures(
    tokio: &tokio::runtime::Runtime,
    args: &BenchClientArgs,
    plan: &Plan,
) -> anyhow::Result<()> {
    let addr = |ep: &Option<oxrmi::Endpoint>, what: &str| -> anyhow::Result<std::net::SocketAddr> {
        let ep = ep
            .as_ref()
            .with_context(|| format!("--{what} is needed over grpc"))?;
        let text = ep.to_string();
        text.trim_start_matches("tcp://")
            .parse()
            .with_context(|| format!("--{what} {text} is not a TCP address"))
    };
    let (bridge_addr, plain_addr) = (addr(&args.server, "server")?, addr(&args.raw, "raw")?);
    let (bridge, plain) = tokio.block_on(async {
        Ok::<_, anyhow::Error>((
            grpc::connect(bridge_addr).await?,
            grpc::connect(plain_addr).await?,
        ))
    })?;
    let mut out = Emitter;
    let base = on_workers(tokio, grpc::null(plain.clone(), plan.small))?.summarize();
    let ours = on_workers(tokio, grpc::null(bridge.clone(), plan.small))?.summarize();
    out.latency("null_call", "null call", ours, Some(base))?;
    let base = on_workers(tokio, grpc::echo(plain.clone(), SMALL_ECHO, plan.small))?.summarize();
    let ours = on_workers(tokio, grpc::echo(bridge.clone(), SMALL_ECHO, plan.small))?.summarize();
    out.latency("echo_1k", "echo 1 KiB", ours, Some(base))?;
    let (base, _) = on_workers(
        tokio,
        grpc::null_in_flight(plain, IN_FLIGHT, plan.in_flight),
    )?;
    let (rate, completed) = on_workers(
        tokio,
        grpc::null_in_flight(bridge, IN_FLIGHT, plan.in_flight),
    )?;
    out.in_flight(rate, base, completed)
}

/// The figures of distributed lifetimes (no raw twin), against the server at `server`, which
/// nothing else uses: a reference received and dropped, renewals against handles held, the
/// server's memory per object and per holder. Each is measured through runtimes of its own in
/// this process; `rt` only reads the server's introspection, which holds no lease.
fn lifetime_figures(
    tokio: &tokio::runtime::Runtime,
    rt: &Runtime,
    server: &oxrmi::Endpoint,
    plan: &Plan,
    out: &mut Emitter,
) -> anyhow::Result<()> {
    let (memory, cost, few, many) = on_workers(tokio, {
        let (introspect, server, plan) = (rt.introspect_at(server), server.clone(), *plan);
        async move {
            // First, while the server has freed next to nothing: what the objects take would
            // otherwise come out of freed memory, unseen (see `lifetimes::memory`).
            let memory = lifetimes::memory(&server, &introspect, MEMORY_OBJECTS).await?;
            lifetimes::wait_no_holders(&introspect).await?;
            let holder = Holder::start(&server).await?;
            let cost = lifetimes::reference_cost(&holder, &introspect, plan.references).await?;
            let few = lifetimes::renewals(&holder, &introspect, HELD_FEW, plan.holding).await?;
            let many = lifetimes::renewals(&holder, &introspect, HELD_MANY, plan.holding).await?;
            holder.close(&introspect).await?;
            Ok((memory, cost, few, many))
        }
    })?;
    out.latency(
        "reference_receive_drop",
        "reference received + dropped",
        cost.latency,
        None,
    )?;
    out.emit(&Measurement {
        metric: "reference_releases_per_reference".into(),
        label: "one-way releases per reference (batched)".into(),
        unit: Unit::MessagesPerReference,
        ours: cost.releases_per_reference,
        raw: None,
        samples: cost.references,
    })?;
    let lease = format!("lease {} s", many.lease_ms as f64 / 1_000.0);
    for (held, r) in [(HELD_FEW, &few), (HELD_MANY, &many)] {
        out.emit(&Measurement {
            metric: format!("lease_renewals_per_minute_{held}_handles"),
            label: format!("renewals/min, {} handles, {lease}", count(held)),
            unit: Unit::PerMinute,
            ours: r.per_minute,
            raw: None,
            samples: r.count,
        })?;
    }
    out.emit(&Measurement {
        metric: format!("lease_renewals_ratio_{HELD_MANY}_vs_{HELD_FEW}_handles"),
        label: format!(
            "renewals, {} vs {} handles",
            count(HELD_MANY),
            count(HELD_FEW)
        ),
        unit: Unit::Ratio,
        // Not zero: a window without renewals is an error.
        ours: many.per_minute / few.per_minute,
        raw: None,
        samples: few.count + many.count,
    })?;

    out.emit(&Measurement {
        metric: "owner_bytes_per_exported_object".into(),
        label: format!("owner bytes/object, {} exported", count(MEMORY_OBJECTS)),
        unit: Unit::Bytes,
        ours: memory.per_object,
        raw: None,
        samples: MEMORY_OBJECTS as u64,
    })?;
    out.emit(&Measurement {
        metric: "owner_bytes_per_remote_holder".into(),
        label: format!("owner bytes/holder, {} objects", count(MEMORY_OBJECTS)),
        unit: Unit::Bytes,
        ours: memory.per_holder,
        raw: None,
        samples: MEMORY_OBJECTS as u64,
    })?;
    Ok(())
}

/// `10,000`.
fn count(n: usize) -> String {
    report::thousands(n as f64)
}

/// Rounds in which a latency figure and its raw twin are taken, alternately.
pub(crate) const ROUNDS: usize = 4;

/// A raw twin and its figure taken in [`ROUNDS`] alternating rounds (raw first), `count`'s
/// warm-up and timed calls shared out among the rounds; each side's samples pooled and
/// summarized.
fn alternating(
    count: Count,
    mut raw: impl FnMut(Count) -> anyhow::Result<Samples>,
    mut ours: impl FnMut(Count) -> anyhow::Result<Samples>,
) -> anyhow::Result<(Summary, Summary)> {
    let (mut raw_samples, mut our_samples) = (Samples::default(), Samples::default());
    for round in 0..ROUNDS {
        let share = count.share(round, ROUNDS);
        raw_samples.append(raw(share)?);
        our_samples.append(ours(share)?);
    }
    Ok((raw_samples.summarize(), our_samples.summarize()))
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

    /// Null calls per second with [`IN_FLIGHT`] in flight, beside the baseline's rate.
    fn in_flight(&mut self, rate: f64, raw: f64, completed: u64) -> anyhow::Result<()> {
        self.emit(&Measurement {
            metric: format!("null_calls_per_second_{IN_FLIGHT}_in_flight"),
            label: format!("null calls/s, {IN_FLIGHT} in flight"),
            unit: Unit::CallsPerSecond,
            ours: rate,
            raw: Some(raw),
            samples: completed,
        })
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
