//! `oxrmi registry`: a standalone registry server, like Java's `rmiregistry`.
//!
//! Prints `listening on <endpoint>` on stdout for each bound endpoint (scripts and tests parse
//! that line), logs to stderr, and stops on Ctrl-C or SIGTERM with exit code 0.

use std::io::Write;

use anyhow::Context;
use oxrmi::Runtime;

use crate::cli::RegistryArgs;
use crate::shutdown_signal::ShutdownSignal;
use crate::tokio_runtime;

/// The prefix of the line announcing each endpoint.
pub(crate) const LISTENING_PREFIX: &str = "listening on ";

/// Runs the registry until a signal asks it to stop.
pub(crate) fn run(args: RegistryArgs) -> anyhow::Result<()> {
    tokio_runtime::build()
        .context("cannot start the tokio runtime")?
        .block_on(serve(args))
}

async fn serve(args: RegistryArgs) -> anyhow::Result<()> {
    // Before announcing anything: a SIGTERM sent right after the announcement must find the
    // handler in place.
    let mut shutdown = ShutdownSignal::install().context("cannot install signal handlers")?;
    let mut builder = Runtime::builder()
        .shared_secret_from_env()
        .tls_from_env()
        .registry()
        .registry_accepts_remote_writes(args.allow_remote_writes);
    if args.store != "memory" {
        builder = builder.registry_store(store(&args).await?);
    }
    for endpoint in &args.listen {
        builder = builder.listen(endpoint);
    }
    let rt = builder.start().await.context("cannot start the registry")?;
    announce(&rt.endpoints())?;
    tracing::info!(
        remote_writes = args.allow_remote_writes,
        store = %args.store,
        "registry serving; Ctrl-C or SIGTERM stops it"
    );
    let signal = shutdown.recv().await;
    tracing::info!(signal, "shutting down");
    rt.shutdown();
    Ok(())
}

/// The store `--store` names (anything but `memory`).
#[cfg(feature = "etcd")]
async fn store(
    args: &RegistryArgs,
) -> anyhow::Result<std::sync::Arc<dyn oxrmi::registry::RegistryStore>> {
    use oxrmi_registry::etcd::{EtcdConfig, EtcdStore};
    let mut config = EtcdConfig::from_url(&args.store).map_err(anyhow::Error::msg)?;
    config.prefix = args.prefix.clone();
    config.lease_ttl = std::time::Duration::from_secs(args.lease_ttl);
    let store = EtcdStore::connect(config)
        .await
        .with_context(|| format!("cannot use the store {}", args.store))?;
    // Serve at once even if etcd is down: lookups fail as unbound and writes are refused with
    // a clear error until it answers, which the status (`oxrmi list`) shows.
    if !store.ready(std::time::Duration::from_secs(5)).await {
        tracing::warn!(store = %args.store, "etcd does not answer yet; serving, unhealthy");
    }
    Ok(std::sync::Arc::new(store))
}

/// The store `--store` names: without the `etcd` feature only `memory` exists.
#[cfg(not(feature = "etcd"))]
async fn store(
    args: &RegistryArgs,
) -> anyhow::Result<std::sync::Arc<dyn oxrmi::registry::RegistryStore>> {
    anyhow::bail!(
        "--store {}: this oxrmi was built without the `etcd` feature (cargo build -p oxrmi-registry --features etcd)",
        args.store
    )
}

/// Prints one `listening on` line per endpoint and flushes, so a reader of a pipe sees them now.
pub(crate) fn announce(endpoints: &[oxrmi::Endpoint]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for endpoint in endpoints {
        writeln!(out, "{LISTENING_PREFIX}{endpoint}")?;
    }
    out.flush()
}
