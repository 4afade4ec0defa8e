//! The `bench-server` role: a runtime serving the bench object, bound in its own registry,
//! until the parent closes stdin. Prints `listening on <endpoint>` first.

use anyhow::Context;
use oxrmi::{Remote, Runtime};
use tokio::sync::oneshot;

use super::interface::{BENCH_NAME, Bench, BenchService};
use super::parent_watch;
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
    let (closed_tx, closed) = oneshot::channel();
    parent_watch::on_stdin_closed(move || {
        let _ = closed_tx.send(());
    })?;
    let rt = Runtime::builder()
        .listen(args.transport.oxrmi_listen())
        .registry()
        .start()
        .await
        .context("cannot start the bench server's runtime")?;
    rt.bind(BENCH_NAME, Remote::<dyn Bench>::new(BenchService))
        .await?;
    announce(&rt.endpoints())?;
    // A dropped sender (the watch thread died) ends serving as well.
    let _ = closed.await;
    rt.shutdown();
    Ok(())
}
