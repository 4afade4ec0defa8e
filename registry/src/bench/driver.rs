//! The `bench` command: for each placement, start the roles, collect the client's
//! measurements, stop the servers; then print the report.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::child_process::{ServerProcess, run_client};
use super::client::ROUNDS;
use super::measurement::Measurement;
use super::placement::{Pin, Pinning, Placement};
use super::plan::{BENCH_LEASE_MS, MEMORY_OBJECTS, Plan};
use super::report;
use super::transport::TransportKind;
use crate::cli::BenchArgs;
use crate::tokio_runtime;

/// Runs the benchmark and prints its report on stdout (progress on stderr).
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(store) = &args.registry {
        return super::registry_store::run(store, args.quick, args.json);
    }
    let exe = std::env::current_exe()
        .context("cannot find this executable to start the benchmark's processes")?;
    let pinning = Pinning::detect();
    let (placements, warnings) = pinning.placements(args.pin);
    for w in &warnings {
        eprintln!("oxrmi bench: WARNING: {w}");
    }
    let cpus = tokio_runtime::usable_cpus();
    let plan = Plan::new(args.quick);
    let mut figures = Vec::new();
    for transport in args.transport.kinds() {
        for placement in &placements {
            eprintln!(
                "oxrmi bench: measuring {} over {} ...",
                placement.describe(),
                transport.name()
            );
            let measured =
                measure(&exe, &pinning, placement, transport, args.quick).with_context(|| {
                    format!("{} placement {}", transport.name(), placement.describe())
                })?;
            let these = report::figures(measured, placement, transport, cpus);
            if args.json {
                let mut out = std::io::stdout().lock();
                for f in &these {
                    writeln!(out, "{}", report::json_line(f))?;
                }
                out.flush()?;
            }
            figures.extend(these);
        }
    }
    if !args.json {
        let mut out = std::io::stdout().lock();
        out.write_all(header(&args, &pinning, &placements, &warnings, cpus, &plan).as_bytes())?;
        out.write_all(report::table(&figures).as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// One placement: both servers, then the client against them. Over pipes, the client starts
/// its servers itself (they are its children), pinned where the placement says.
fn measure(
    exe: &Path,
    pinning: &Pinning,
    placement: &Placement,
    kind: TransportKind,
    quick: bool,
) -> anyhow::Result<Vec<Measurement>> {
    let transport = kind.name();
    if kind.is_child_pipes() {
        let mut client = pinning.command(exe, placement.client_cpu);
        client.args(["bench-client", "--transport", transport]);
        if let Some(cpu) = placement.server_cpu {
            client.arg("--server-cpu").arg(cpu.to_string());
        }
        if quick {
            client.arg("--quick");
        }
        return run_client(client);
    }
    let raw_spin_us = placement.raw_spin().as_micros().to_string();
    let server_command = |role: &str| {
        let mut c = pinning.command(exe, placement.server_cpu);
        c.args([role, "--transport", transport]);
        c
    };
    let bench_server = |lease: Duration| {
        let mut c = server_command("bench-server");
        c.arg("--lease-ms").arg(lease.as_millis().to_string());
        c
    };
    // The runtime's default lease for the call figures: the client's raw twins block its only
    // thread for seconds in a pinned placement, time in which it cannot renew; a short lease
    // would lapse and the server would drop the bench object.
    let (server, server_endpoint) =
        ServerProcess::start("bench server", bench_server(oxrmi::DEFAULT_LEASE))?;
    let (raw_server, raw_endpoint) = ServerProcess::start("raw echo server", {
        let mut c = server_command("bench-raw-server");
        c.arg("--raw-spin-us").arg(&raw_spin_us);
        c
    })?;
    // A fresh server for the lifetime figures: nothing else holds its objects (so the renewals
    // it counts are the measured holder's) nor has freed memory in it (so its resident set
    // grows with what it hands out), and its lease is short.
    let lifetimes_server = match kind.has_lifetimes() {
        true => Some(ServerProcess::start(
            "lifetimes bench server",
            bench_server(Duration::from_millis(BENCH_LEASE_MS)),
        )?),
        false => None,
    };
    let mut client = pinning.command(exe, placement.client_cpu);
    client.args(["bench-client", "--transport", transport]);
    client.arg("--server").arg(server_endpoint.to_string());
    client.arg("--raw").arg(raw_endpoint.to_string());
    client.arg("--raw-spin-us").arg(&raw_spin_us);
    if let Some((_, lifetimes_endpoint)) = &lifetimes_server {
        client
            .arg("--lifetimes")
            .arg(lifetimes_endpoint.to_string());
    }
    if quick {
        client.arg("--quick");
    }
    let measured = run_client(client)?;
    drop(lifetimes_server);
    drop(raw_server);
    drop(server);
    Ok(measured)
}

/// What a reader needs to quote the table: transport, CPUs, placements, baseline, sizes.
fn header(
    args: &BenchArgs,
    pinning: &Pinning,
    placements: &[Placement],
    warnings: &[String],
    cpus: usize,
    plan: &Plan,
) -> String {
    let names: Vec<&str> = args.transport.kinds().iter().map(|k| k.name()).collect();
    let mut h = format!(
        "oxrmi bench: transport {}, {cpus} CPUs available{}\n",
        names.join(", "),
        if args.quick {
            ", QUICK run (not for quoting)"
        } else {
            ""
        },
    );
    for w in warnings {
        h += &format!("WARNING: {w}\n");
    }
    let described: Vec<String> = placements.iter().map(Placement::describe).collect();
    match pinning.taskset() {
        Some(t) if args.pin != Pin::None => {
            h += &format!("placements (pinned with {}): ", t.display())
        }
        _ => h += "placements: ",
    }
    h += &described.join("; ");
    h += "\n";
    h += "tokio: current_thread in a process pinned to one CPU, one worker per CPU otherwise\n";
    h += &format!(
        "raw baseline: same transport, same run, blocking reads and writes (shm: futex \
         wake-ups after a 30 µs spin, or none when both sides share one CPU) against a byte \
         echo: null call = 8-byte ping-pong, echo = ping-pong of the same size, in flight = \
         8-byte messages kept 64 deep; ratio = ours / raw; each latency figure and its raw \
         twin taken in {ROUNDS} alternating rounds\n"
    );
    if args.transport.kinds().contains(&TransportKind::Grpc) {
        h += "grpc: ours = a unary call through the gRPC bridge (tonic client, HTTP/2 over \
              loopback); baseline = the same call, messages and client against a hand-written \
              tonic service (prost) in a process of its own, same placement; no registry or \
              lifetime figures\n";
    }
    if args.transport.kinds().iter().any(|k| k.is_child_pipes()) {
        h += "pipe: the client starts both servers as its children (the pipes of a child reach \
              only its parent), so the lifetime figures, which need runtimes of their own, are \
              not measured over it\n";
    }
    let objects = report::thousands(MEMORY_OBJECTS as f64);
    h += &format!(
        "lifetimes, no raw twin (against a bench server of their own, lease {BENCH_LEASE_MS} \
         ms; the other figures' server has the default lease):\n  \
         reference received + dropped = 1 call returning a new object by reference + 1 one-way \
         release (releases are batched per owner; the next figure counts them)\n  \
         renewals/min: sent by one client runtime holding the handles, counted by the server \
         over whole renewal periods\n  \
         owner bytes: growth of the server's resident set (statm) while it hands out \
         {objects} references, / {objects}, measured first on it: per new one-byte object exported \
         to one holder; per second holder of the same objects\n"
    );
    h += &format!("measured: {}\n\n", plan.describe());
    h
}
