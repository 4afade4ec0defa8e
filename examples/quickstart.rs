//! The main demo: an embedded registry and a server in this process, and a client in a child
//! process that this program spawns (itself, with `client URL`), talking over TCP on loopback.
//!
//! Run it with `cargo run --release --example quickstart`: no set-up needed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Context, bail};
use oxrmi::{Remote, RemoteError, Runtime, remote};
use serde::{Deserialize, Serialize};

/// An application error: it reaches the caller as this type, intact.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum MathError {
    /// Division by zero.
    #[error("division by zero")]
    DivideByZero,
    /// The call itself failed (network, deadline, ...).
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// A counter that lives in one process and is used from another.
#[remote]
pub trait Counter: Send + Sync {
    /// Adds `n` and returns the new value.
    async fn add(&self, n: i64) -> Result<i64, RemoteError>;
    /// The current value.
    async fn get(&self) -> Result<i64, RemoteError>;
    /// The value divided by `by`.
    async fn divide(&self, by: i64) -> Result<i64, MathError>;
    /// Writes a line to the server's log; the caller does not wait.
    #[oneway]
    async fn log(&self, line: String) -> Result<(), RemoteError>;
}

#[derive(Default)]
struct MyCounter {
    value: AtomicI64,
    log: Mutex<Vec<String>>,
}

#[remote]
impl Counter for MyCounter {
    async fn add(&self, n: i64) -> Result<i64, RemoteError> {
        Ok(self.value.fetch_add(n, Ordering::SeqCst) + n)
    }

    async fn get(&self) -> Result<i64, RemoteError> {
        Ok(self.value.load(Ordering::SeqCst))
    }

    async fn divide(&self, by: i64) -> Result<i64, MathError> {
        match by {
            0 => Err(MathError::DivideByZero),
            by => Ok(self.value.load(Ordering::SeqCst) / by),
        }
    }

    async fn log(&self, line: String) -> Result<(), RemoteError> {
        println!("[server] log: {line}");
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        None => server().await,
        Some("client") => client(args.get(2).context("client needs a URL")?).await,
        Some(other) => bail!("unknown mode `{other}` (run without arguments)"),
    }
}

async fn server() -> anyhow::Result<()> {
    let rt = Runtime::builder()
        .listen("tcp://127.0.0.1:0")
        .registry()
        .start()
        .await?;
    let endpoint = &rt.endpoints()[0];
    println!(
        "[server] runtime {} listening on {endpoint}, with an embedded registry",
        rt.id()
    );

    rt.bind("counter", Remote::<dyn Counter>::new(MyCounter::default()))
        .await?;
    println!(
        "[server] bound `counter` ({})",
        <dyn Counter as oxrmi::Interface>::NAME
    );

    let url = format!("{endpoint}/counter");
    println!("[server] starting a client in a separate process: {url}");
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .args(["client", &url])
        .status()
        .await?;
    if !status.success() {
        bail!("the client failed: {status}");
    }

    // The client's calls changed this process's object.
    let local: Remote<dyn Counter> = rt.lookup("counter").await?;
    println!(
        "[server] the counter here now reads {} (a local handle: no network)",
        local.get().await?
    );
    rt.shutdown();
    println!("[server] done");
    Ok(())
}

async fn client(url: &str) -> anyhow::Result<()> {
    let pid = std::process::id();
    let counter: Remote<dyn Counter> = oxrmi::lookup(url).await?;
    println!(
        "[client {pid}] looked up {url}: a handle to {}",
        counter.interface()
    );

    println!("[client {pid}] add(5)  -> {}", counter.add(5).await?);
    println!("[client {pid}] add(37) -> {}", counter.add(37).await?);
    println!("[client {pid}] get()   -> {}", counter.get().await?);
    println!("[client {pid}] divide(2) -> {:?}", counter.divide(2).await);
    println!(
        "[client {pid}] divide(0) -> {:?}  (the server's own error type)",
        counter.divide(0).await
    );

    counter.log(format!("hello from process {pid}")).await?;
    println!("[client {pid}] log(..) sent one-way: returned without waiting");

    let missing = oxrmi::lookup::<dyn Counter>(&url.replace("/counter", "/nothing")).await;
    println!(
        "[client {pid}] lookup of an unbound name -> {}",
        missing.err().map(|e| e.to_string()).unwrap_or_default()
    );

    // A final two-way call: replies on one connection come after the one-way call was queued.
    println!("[client {pid}] get()   -> {}", counter.get().await?);
    Ok(())
}
