//! The `bench` command: for each placement, start the roles, collect the client's
//! measurements, stop the servers; then print the report.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::child_process::{ServerProcess, run_client};
use super::measurement::Measurement;
use super::placement::{Pin, Pinning, Placement};
use super::plan::Plan;
use super::report;
use crate::cli::BenchArgs;
use crate::tokio_runtime;

/// Runs the benchmark and prints its report on stdout (progress on stderr).
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
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
    for placement in &placements {
        eprintln!("oxrmi bench: measuring {} ...", placement.describe());
        let measured = measure(&exe, &pinning, placement, &args)
            .with_context(|| format!("placement {}", placement.describe()))?;
        let these = report::figures(measured, placement, args.transport, cpus);
        if args.json {
            let mut out = std::io::stdout().lock();
            for f in &these {
                writeln!(out, "{}", report::json_line(f))?;
            }
            out.flush()?;
        }
        figures.extend(these);
    }
    if !args.json {
        let mut out = std::io::stdout().lock();
        out.write_all(header(&args, &pinning, &placements, &warnings, cpus, &plan).as_bytes())?;
        out.write_all(report::table(&figures).as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// One placement: both servers, then the client against them.
fn measure(
    exe: &Path,
    pinning: &Pinning,
    placement: &Placement,
    args: &BenchArgs,
) -> anyhow::Result<Vec<Measurement>> {
    let transport = args.transport.name();
    let server_command = |role: &str| {
        let mut c = pinning.command(exe, placement.server_cpu);
        c.args([role, "--transport", transport]);
        c
    };
    let (server, server_endpoint) =
        ServerProcess::start("bench server", server_command("bench-server"))?;
    let (raw_server, raw_endpoint) =
        ServerProcess::start("raw echo server", server_command("bench-raw-server"))?;
    let mut client = pinning.command(exe, placement.client_cpu);
    client.args(["bench-client", "--transport", transport]);
    client.arg("--server").arg(server_endpoint.to_string());
    client.arg("--raw").arg(raw_endpoint.to_string());
    if args.quick {
        client.arg("--quick");
    }
    let measured = run_client(client)?;
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
    let mut h = format!(
        "oxrmi bench: transport {}, {cpus} CPUs available{}\n",
        args.transport.name(),
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
    h += "raw baseline: same transport, same run, blocking sockets against a byte echo: null call \
          = 8-byte ping-pong, echo = ping-pong of the same size, in flight = 8-byte messages \
          kept 64 deep; ratio = ours / raw\n";
    h += &format!("measured: {}\n\n", plan.describe());
    h
}
