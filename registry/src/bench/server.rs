//! The `bench-server` role: a runtime serving the bench object, bound in its own registry,
//! until the parent closes stdin. Prints `listening on <endpoint>` first (over `grpc`, the
//! gRPC bridge's address as `tcp://`).
//!
//! Its lease is `--lease-ms`, [`BENCH_LEASE_MS`](super::BENCH_LEASE_MS) by default: short, so
//! the renewal figures see renewals within seconds. The driver gives the server of the call
//! figures the runtime's default lease instead: there the client's only thread is busy with a
//! raw twin for seconds at a time, unable to renew, and a short lease would lapse.

use std::time::Duration;

use anyhow::Context;
use oxrmi::{Endpoint, Remote, Runtime};
use tokio::sync::oneshot;

use super::interface::{BENCH_NAME, Bench, BenchService};
use super::parent_watch;
use super::transport::TransportKind;
use crate::cli::BenchServerArgs;
use crate::serve_registry::announce;
use crate::tokio_runtime;

/// Serves until stdin closes.
pub(crate) fn run(args: BenchServerArgs) -> anyhow::Result<()> {
    tokio_runtime::build()
        .context("cannot start the tokio runtime")?
        .block_on(serve(args))
}

async fn serve(args: BenchServerArgs) -> anyhow::Result<()> {
    let builder = Runtime::builder()
        .registry()
        .lease(Duration::from_millis(args.lease_ms));
    let Some(listen) = args.transport.oxrmi_listen() else {
        // Over pipes: the client started us; our stdin and stdout are the link, and the
        // runtime ends the process when the client goes.
        let rt = builder
            .parent_pipe()
            .start()
            .await
            .context("cannot start the bench server's runtime")?;
        let bench = Remote::<dyn Bench>::new(BenchService::default());
        rt.bind(BENCH_NAME, bench.clone()).await?;
        rt.set_bootstrap(bench);
        std::future::pending::<()>().await;
        return Ok(());
    };
    let (closed_tx, closed) = oneshot::channel();
    parent_watch::on_stdin_closed(move || {
        let _ = closed_tx.send(());
    })?;
    let grpc = args.transport == TransportKind::Grpc;
    let mut builder = builder.listen(listen);
    if grpc {
        builder = builder.listen("grpc://127.0.0.1:0");
    }
    let rt = builder
        .start()
        .await
        .context("cannot start the bench server's runtime")?;
    rt.bind(
        BENCH_NAME,
        Remote::<dyn Bench>::new(BenchService::default()),
    )
    .await?;
    match rt.grpc_address() {
        // Over gRPC the client needs the bridge's address (as a TCP endpoint) and nothing else.
        Some(addr) if grpc => announce(&[Endpoint::tcp(addr.ip().to_string(), addr.port())])?,
        _ => announce(&rt.endpoints())?,
    }
    // A dropped sender (the watch thread died) ends serving as well.
    let _ = closed.await;
    rt.shutdown();
    Ok(())
}
