//! The load and soak test: 1,000 concurrent clients (tasks spread over several client
//! processes, `oxrmi-test-peer load`) call one server (`oxrmi-test-peer serve-load`) for a fixed
//! time, passing and dropping references; at the end no reply may be lost, duplicated or
//! misrouted, every lease must be released, and the server's file descriptors and memory must be
//! back to where they were.
//!
//! It saturates both cores of a small machine for its duration, which would make the suite's
//! timing-sensitive tests (deadlines, short leases) run beside it starved, so it is `#[ignore]`d
//! in the ordinary run and runs alone in a step of its own (`.ci/run` does this). The CI variant
//! (10 seconds of load, well under two minutes with start-up, in debug):
//!
//! ```text
//! cargo test -p oxrmi-tests --test tests load:: -- --ignored --nocapture
//! ```
//!
//! The soak (ten minutes of load; release, so the load is the runtime's and not the debug
//! build's):
//!
//! ```text
//! OXRMI_LOAD_SECONDS=600 cargo test --release -p oxrmi-tests --test tests load:: -- --ignored --nocapture
//! ```
//!
//! Other knobs: `OXRMI_LOAD_PROCESSES` (client processes, 4), `OXRMI_LOAD_TASKS` (tasks per
//! process, 250) and `OXRMI_LOAD_TRANSPORT` (`tcp`, the default, `unix`, `fifo` or `shm`). The figures (calls, calls/s, errors, peak and final memory, descriptors)
//! are printed to standard error, so `--nocapture` shows them.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use oxrmi::Remote;
use oxrmi_tests::{LoadBank, LoadReport};
use tokio::process::Command;

use crate::harness::{Peer, Transport, eventually, fds, peer_bin, status_kib};

/// How long the server has, after the last client exited, to drop every account, forget every
/// holder and close every connection: releases are sent at once (batched per owner) and at
/// shutdown, so this is generous; a lease expiry (a minute by default) would not fit in it.
const SETTLE: Duration = Duration::from_secs(20);

/// Descriptors the server may hold beyond its warmed-up count: none should remain, but an
/// accept in progress or an epoll's internal fd may come and go.
const FD_TOLERANCE: usize = 4;

/// A setting from the environment, or its default.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
        Err(_) => default,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs `processes` load clients of `tasks` tasks each against `server` for `seconds`, and
/// returns their reports; every client must exit 0 in time.
async fn run_clients(
    server: &Peer,
    processes: u64,
    tasks: u64,
    seconds: f64,
    seed: u64,
) -> Vec<LoadReport> {
    let children: Vec<_> = (0..processes)
        .map(|p| {
            Command::new(peer_bin())
                .args([
                    "load",
                    server.endpoint(),
                    &tasks.to_string(),
                    &seconds.to_string(),
                ])
                .arg((seed + p).to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("start a load client")
        })
        .collect();
    // The run, the clients' grace period for their last calls (70 s, see peer/load.rs) and
    // start-up.
    let limit = Duration::from_secs_f64(seconds) + Duration::from_secs(100);
    let deadline = tokio::time::Instant::now() + limit;
    let mut reports = Vec::new();
    for (p, child) in children.into_iter().enumerate() {
        let out = tokio::time::timeout_at(deadline, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("load client {p} did not finish within {limit:?}"))
            .expect("wait for a load client");
        assert!(
            out.status.success(),
            "load client {p} failed: {}",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .last()
            .expect("a load client printed no report");
        let report: LoadReport = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("load client {p} printed {line:?}: {e}"));
        reports.push(report);
    }
    reports
}

/// The sum of one figure over every client.
fn total(reports: &[LoadReport], f: impl Fn(&LoadReport) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

/// Waits until the server holds no account, no holder but this process, no reference of
/// anyone's and no connection but ours; panics with what remains if that does not happen
/// within [`SETTLE`].
async fn settle(server: &Peer, bank: &Remote<dyn LoadBank>, what: &str) {
    let endpoint: oxrmi::Endpoint = server.endpoint().parse().unwrap();
    let introspect = oxrmi::default_runtime().introspect_at(&endpoint);
    let me = oxrmi::default_runtime().id().to_string();
    let leftovers = || async {
        let mut left = Vec::new();
        let live = bank.live().await.unwrap();
        if live != 0 {
            left.push(format!("{live} accounts alive"));
        }
        let report = introspect.report().await.unwrap();
        for o in &report.objects {
            if o.interface == <dyn oxrmi_tests::Account as oxrmi::Interface>::NAME {
                left.push(format!("account {} still exported", o.id));
            }
            for h in o.holders.iter().filter(|h| h.runtime != me) {
                left.push(format!(
                    "object {} ({}) held by {} ({} references)",
                    o.id, o.interface, h.runtime, h.references
                ));
            }
        }
        for h in &report.holdings {
            left.push(format!(
                "the server holds object {} ({}) of {}",
                h.object, h.interface, h.owner
            ));
        }
        for c in report.connections.iter().filter(|c| c.peer != me) {
            left.push(format!("connection to {} ({}) open", c.peer, c.address));
        }
        left
    };
    let settled = eventually(SETTLE, || async { leftovers().await.is_empty() }).await;
    if !settled {
        let left = leftovers().await;
        let shown: Vec<_> = left.iter().take(20).collect();
        panic!(
            "{what}: {} leftovers {SETTLE:?} after the clients exited: {shown:#?}",
            left.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "saturates the machine: run alone, `cargo test -p oxrmi-tests --test tests load:: -- --ignored` (.ci/run does)"]
async fn thousand_clients_lose_no_reply_and_leak_nothing() {
    let seconds: f64 = setting("OXRMI_LOAD_SECONDS", 10.0);
    let processes: u64 = setting("OXRMI_LOAD_PROCESSES", 4);
    let tasks: u64 = setting("OXRMI_LOAD_TASKS", 250);

    let transport = match setting("OXRMI_LOAD_TRANSPORT", "tcp".to_string()).as_str() {
        "tcp" => Transport::Tcp,
        "unix" => Transport::Unix,
        "fifo" => Transport::Fifo,
        "shm" => Transport::Shm,
        other => panic!("OXRMI_LOAD_TRANSPORT={other}: tcp, unix, fifo or shm"),
    };

    let server = Peer::start(&["serve-load", &transport.listen()]).await;
    let pid = server.pid();
    let bank: Remote<dyn LoadBank> = oxrmi::lookup(&server.url("loadbank")).await.unwrap();

    // Warm-up: one short client, so the baseline includes what any load leaves allocated once
    // (thread-local caches, the allocator's arenas, lazily built tables).
    let warm = run_clients(&server, 1, 100, 1.0, 1 << 15).await;
    assert_eq!(
        total(&warm, |r| r.errors),
        0,
        "errors in the warm-up: {warm:#?}"
    );
    settle(&server, &bank, "after the warm-up").await;
    let rss_start = status_kib(pid, "VmRSS");
    let fds_start = fds(pid);

    // Samples the server's memory during the run.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = tokio::spawn({
        let (stop, peak) = (stop.clone(), peak.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib(pid, "VmRSS"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let started = std::time::Instant::now();
    let reports = run_clients(&server, processes, tasks, seconds, 1).await;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let fds_end_of_run = fds(pid);

    let settling = std::time::Instant::now();
    settle(&server, &bank, "after the run").await;
    let settled_in = settling.elapsed();
    let fds_end = fds(pid);
    let rss_end = status_kib(pid, "VmRSS");
    let hwm = status_kib(pid, "VmHWM");
    let peak = peak.load(Ordering::Relaxed).max(rss_end);
    let (opened, dropped) = bank.counts().await.unwrap();

    let calls = total(&reports, |r| r.calls);
    let errors = total(&reports, |r| r.errors);
    eprintln!(
        "load: {processes} processes x {tasks} tasks over {transport:?} for {seconds} s \
         ({elapsed:.1} s with start-up)"
    );
    eprintln!(
        "load: {calls} calls ({:.0}/s), {errors} errors ({} timeouts), {} wrong and {} duplicated \
         replies, {} bad values, {} stuck tasks",
        calls as f64 / seconds,
        total(&reports, |r| r.timeouts),
        total(&reports, |r| r.wrong),
        total(&reports, |r| r.duplicated),
        total(&reports, |r| r.bad_values),
        total(&reports, |r| r.stuck_tasks),
    );
    eprintln!(
        "load: {} accounts opened and dropped by the clients, {} listeners passed; the bank \
         opened {opened} and dropped {dropped} in all (warm-up included)",
        total(&reports, |r| r.accounts_opened),
        total(&reports, |r| r.listeners_passed),
    );
    eprintln!(
        "load: server RSS {:.1} MiB at the start, {:.1} MiB peak (sampled; VmHWM {:.1} MiB), \
         {:.1} MiB at the end",
        mib(rss_start),
        mib(peak),
        mib(hwm),
        mib(rss_end)
    );
    eprintln!(
        "load: server fds {fds_start} at the start, {fds_end_of_run} as the last client exited, \
         {fds_end} at the end; everything released {settled_in:?} after the last client exited"
    );
    let samples: Vec<_> = reports.iter().flat_map(|r| &r.error_samples).collect();
    if !samples.is_empty() {
        eprintln!("load: errors seen: {samples:#?}");
    }

    // Every reply reached its own caller, once, and nothing failed.
    assert_eq!(errors, 0, "calls failed: {samples:#?}");
    assert_eq!(
        total(&reports, |r| r.wrong),
        0,
        "replies reached the wrong call"
    );
    assert_eq!(total(&reports, |r| r.duplicated), 0, "replies came twice");
    assert_eq!(
        total(&reports, |r| r.bad_values),
        0,
        "references led to the wrong objects"
    );
    assert_eq!(
        total(&reports, |r| r.stuck_tasks),
        0,
        "clients never finished"
    );
    assert!(calls > 0, "no calls were made");
    // Every account the clients received was released, and the bank saw each drop.
    let received = total(&reports, |r| r.accounts_opened) + total(&warm, |r| r.accounts_opened);
    assert_eq!(
        opened, received,
        "the bank opened accounts no client counted"
    );
    assert_eq!(dropped, opened, "accounts never dropped");
    assert_eq!(
        total(&reports, |r| r.accounts_dropped),
        total(&reports, |r| r.accounts_opened)
    );
    // No descriptor leaked: every client's connection was closed.
    assert!(
        fds_end <= fds_start + FD_TOLERANCE,
        "the server holds {fds_end} fds, {fds_start} before the run"
    );
    // Memory is back near its start. glibc's malloc keeps freed memory in its arenas (and a
    // freed chunk below a live one cannot be trimmed), so RSS does not return to the byte:
    // the tolerance is half the start or 32 MiB, whichever is larger, against a peak that grows
    // with the load (each in-flight call holds frames and a task). A leak per call, per
    // reference or per connection exceeds it over a run of this size, and over a soak by far.
    let allowed = (rss_start * 3 / 2).max(rss_start + 32 * 1024);
    assert!(
        rss_end <= allowed,
        "the server's RSS is {:.1} MiB after the run, {:.1} MiB before (at most {:.1} MiB allowed)",
        mib(rss_end),
        mib(rss_start),
        mib(allowed)
    );
    drop(bank);
    server.stop().await;
}
