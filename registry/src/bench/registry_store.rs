//! `oxrmi bench --registry STORE`: lookups and binds through a registry node on another store
//! (etcd) beside the in-memory registry, in the same run: both registries are `oxrmi registry`
//! child processes on loopback TCP, and this process binds the bench object in each and
//! measures against each in turn, so only the store differs.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use oxrmi::registry::Registry;
use oxrmi::{Remote, Runtime};

use super::child_process::ServerProcess;
use super::interface::{BENCH_NAME, Bench, BenchService};
use super::oxrmi_calls;
use super::plan::{IN_FLIGHT, Plan};
use crate::table::Table;
use crate::tokio_runtime;

/// How many binds (each a distinct name) are timed per registry; they are unbound afterwards.
const BINDS: usize = 500;

/// The registry figures of one store.
struct Figures {
    lookup_p50_us: f64,
    lookups_per_second: f64,
    lookups_in_flight_per_second: f64,
    binds_per_second: f64,
}

/// Runs the comparison and prints its table (or JSON lines).
pub(crate) fn run(store: &str, quick: bool, json: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let start = |args: &[&str]| {
        let mut cmd = Command::new(&exe);
        cmd.args(["registry", "--listen", "tcp://127.0.0.1:0"])
            .args(args);
        // Their info lines (one per bind) would drown the report; warnings still show.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        ServerProcess::start("registry", cmd)
    };
    // A prefix of our own, so the run neither sees nor leaves names of anyone else's.
    let prefix = format!("/oxrmi-bench-{}/", uuid::Uuid::new_v4().simple());
    let (memory, memory_ep) = start(&[])?;
    let (other, other_ep) = start(&["--store", store, "--prefix", &prefix])?;
    let plan = Plan::new(quick);
    let measured = tokio_runtime::build()
        .context("cannot start the tokio runtime")?
        .block_on(async {
            let rt = Runtime::builder()
                .listen("tcp://127.0.0.1:0")
                .start()
                .await?;
            eprintln!("oxrmi bench: registry lookups and binds, in memory ...");
            let m = measure(rt.registry_at(&memory_ep), &plan).await?;
            eprintln!("oxrmi bench: registry lookups and binds, on {store} ...");
            let o = measure(rt.registry_at(&other_ep), &plan).await?;
            rt.shutdown();
            anyhow::Ok((m, o))
        });
    memory.terminate();
    other.terminate();
    let (m, o) = measured?;
    print(store, &m, &o, json);
    Ok(())
}

async fn measure(registry: Remote<dyn Registry>, plan: &Plan) -> anyhow::Result<Figures> {
    let status = registry.store().await.context("the registry's store")?;
    anyhow::ensure!(
        status.healthy,
        "the registry's store {} is unhealthy: {}",
        status.store,
        status.detail
    );
    let bench = Remote::<dyn Bench>::new(BenchService::default());
    registry
        .rebind(BENCH_NAME.into(), bench.clone().into_any())
        .await
        .context("bind the bench object")?;
    let sequential = oxrmi_calls::lookups(registry.clone(), plan.lookups)
        .await?
        .summarize();
    let (in_flight, _) =
        oxrmi_calls::lookups_in_flight(registry.clone(), IN_FLIGHT, plan.in_flight).await?;
    let binds = if plan.lookups.timed < 10_000 {
        BINDS / 10
    } else {
        BINDS
    };
    let names: Vec<String> = (0..binds).map(|i| format!("bench-bind-{i}")).collect();
    let t = Instant::now();
    for name in &names {
        registry
            .bind(name.clone(), bench.clone().into_any())
            .await
            .with_context(|| format!("bind {name}"))?;
    }
    let binds_per_second = binds as f64 / t.elapsed().as_secs_f64();
    for name in names {
        registry.unbind(name).await?;
    }
    registry.unbind(BENCH_NAME.into()).await?;
    Ok(Figures {
        lookup_p50_us: sequential.p50_us,
        lookups_per_second: sequential.per_second,
        lookups_in_flight_per_second: in_flight,
        binds_per_second,
    })
}

fn print(store: &str, m: &Figures, o: &Figures, json: bool) {
    let rows = [
        (
            "registry_lookup_p50_us",
            "lookup p50 (µs)",
            m.lookup_p50_us,
            o.lookup_p50_us,
        ),
        (
            "registry_lookups_per_second",
            "lookups/s, sequential",
            m.lookups_per_second,
            o.lookups_per_second,
        ),
        (
            "registry_lookups_per_second_in_flight",
            "lookups/s, 64 in flight",
            m.lookups_in_flight_per_second,
            o.lookups_in_flight_per_second,
        ),
        (
            "registry_binds_per_second",
            "binds/s, sequential",
            m.binds_per_second,
            o.binds_per_second,
        ),
    ];
    if json {
        for (metric, _, mem, other) in rows {
            println!(
                "{}",
                serde_json::json!({"metric": metric, "memory": mem, "store": store, "ours": other})
            );
        }
        return;
    }
    let mut table = Table::new(&["FIGURE", "IN MEMORY", "ON STORE", "STORE / MEMORY"]);
    for (_, label, mem, other) in rows {
        table.push(vec![
            label.into(),
            format!("{mem:.1}"),
            format!("{other:.1}"),
            format!("{:.2}×", other / mem),
        ]);
    }
    println!(
        "registry on {store} (cached lookups) beside the in-memory registry, TCP loopback, unpinned"
    );
    print!("{}", table.render());
    let slower = m.lookups_per_second / o.lookups_per_second;
    println!(
        "cached lookups take {slower:.2}× the in-memory registry's time (target: within 1.2×)"
    );
}
