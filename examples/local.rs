//! Processes on one host: a child over its pipes, and shared memory chosen automatically.
//!
//! The parent offers a `Log` object and starts itself again as a child with
//! `Runtime::spawn_child`: the two runtimes talk over the child's stdin and stdout, with no
//! port, socket file or registry, and find each other's objects through bootstrap objects. The
//! parent calls the child's `Worker` over the pipes (the child listens nowhere else). The
//! worker reports progress to the parent's log; the parent also listens on TCP and shared
//! memory, so those calls take the cheapest path to a runtime on the same host, shared memory,
//! by themselves. Finally the child looks the same log up in the parent's registry by a
//! `tcp://` URL: it gets the very same object, still reached over shared memory, as the child's
//! own report of its connections shows.
//!
//! Run it with `cargo run --example local`.

use std::time::Duration;

use anyhow::{Context, bail};
use oxrmi::{Remote, RemoteError, Runtime, remote};

/// Where progress lines go: in the parent.
#[remote]
pub trait Log: Send + Sync {
    /// Prints `line`, saying which process sent it.
    async fn line(&self, from: String, line: String) -> Result<(), RemoteError>;
}

/// The child's work.
#[remote]
pub trait Worker: Send + Sync {
    /// The squares of 1..=n, reporting progress to the parent's log on the way.
    async fn squares(&self, n: u64) -> Result<Vec<u64>, RemoteError>;
}

struct PrintLog;

#[remote]
impl Log for PrintLog {
    async fn line(&self, from: String, line: String) -> Result<(), RemoteError> {
        println!("[parent] {from} says: {line}");
        Ok(())
    }
}

struct Squarer {
    log: Remote<dyn Log>,
}

#[remote]
impl Worker for Squarer {
    async fn squares(&self, n: u64) -> Result<Vec<u64>, RemoteError> {
        let mut out = Vec::new();
        for i in 1..=n {
            out.push(i * i);
            if i % 2 == 0 {
                self.log
                    .line("child".into(), format!("{i} of {n} done"))
                    .await?;
            }
        }
        Ok(out)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => parent().await,
        Some("--child") => child(args.get(1).context("the parent's URL")?).await,
        Some(other) => bail!("unknown argument {other}"),
    }
}

async fn parent() -> anyhow::Result<()> {
    let dir = std::env::temp_dir();
    let shm = dir.join(format!("oxrmi-local-example-{}.shm", std::process::id()));
    let log = Remote::<dyn Log>::new(PrintLog);
    let rt = Runtime::builder()
        .listen("tcp://127.0.0.1:0")
        .listen(format!("shm://{}", shm.display()))
        .registry()
        .bootstrap(log.clone())
        .start()
        .await?;
    rt.bind("log", log).await?;
    let tcp = rt.endpoints()[0].clone();
    println!("[parent] listening on {tcp} and {}", rt.endpoints()[1]);

    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--child").arg(format!("{tcp}/log"));
    let mut child = rt.spawn_child(cmd).await?;
    println!(
        "[parent] started child pid {} (runtime {}), talking over its pipes",
        child.pid().unwrap_or(0),
        child.runtime_id()
    );
    let worker: Remote<dyn Worker> = child.bootstrap().await?;
    let squares = worker.squares(6).await?;
    println!("[parent] the child computed {squares:?}");
    assert_eq!(squares, vec![1, 4, 9, 16, 25, 36]);

    // The child ends by itself once it has shown its path; then we reap it.
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .context("the child did not finish")??;
    println!("[parent] the child exited: {status}");
    if !status.success() {
        bail!("the child failed");
    }
    rt.shutdown();
    Ok(())
}

async fn child(url: &str) -> anyhow::Result<()> {
    // stdin and stdout are the pipes to the parent from here on; println! goes to stderr.
    let rt = Runtime::builder().parent_pipe().start().await?;
    let log: Remote<dyn Log> = rt.parent_bootstrap().await?;
    rt.set_bootstrap(Remote::<dyn Worker>::new(Squarer { log: log.clone() }));
    log.line("child".into(), "hello over the pipes".into())
        .await?;

    // Wait until the parent has had its squares, then look the log up by URL.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let by_url: Remote<dyn Log> = rt.lookup_url(url).await?;
    assert_eq!(
        by_url, log,
        "one object, one identity, whichever way it was found"
    );
    by_url
        .line("child".into(), format!("found you again at {url}"))
        .await?;
    let transports: Vec<String> = rt
        .report()
        .connections
        .iter()
        .map(|c| {
            format!(
                "{}{}",
                c.transport,
                if c.preferred { " (used)" } else { "" }
            )
        })
        .collect();
    by_url
        .line(
            "child".into(),
            format!("my connections to you: {}", transports.join(", ")),
        )
        .await?;
    if !transports.iter().any(|t| t == "shm (used)") {
        bail!("the lookup over TCP did not move to shared memory: {transports:?}");
    }
    rt.shutdown();
    Ok(())
}
