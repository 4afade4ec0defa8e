//! A factory returning objects by reference, and their distributed lifetimes.
//!
//! The bank (this process) opens accounts for clients in child processes and keeps no handle to
//! them: each account lives exactly as long as some client holds it. Alice deposits and drops
//! her account: the bank releases it at once. Bob's process is killed while he holds his: the
//! bank releases it when his lease expires. Each release is the account's `Drop` running in the
//! bank's process.
//!
//! Run it with `cargo run --example bank`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use oxrmi::{Remote, RemoteError, Runtime, remote};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Leases on the bank's accounts: short, so a killed client's account goes quickly.
const LEASE: Duration = Duration::from_secs(1);

/// The bank: a factory of accounts.
#[remote]
pub trait Bank: Send + Sync {
    /// A new account for `owner`, returned by reference.
    async fn open(&self, owner: String) -> Result<Remote<dyn Account>, RemoteError>;
}

/// An account, living in the bank's process.
#[remote]
pub trait Account: Send + Sync {
    /// Adds `amount`; returns the balance.
    async fn deposit(&self, amount: i64) -> Result<i64, RemoteError>;
}

struct MyBank {
    open_accounts: Arc<AtomicUsize>,
}

#[remote]
impl Bank for MyBank {
    async fn open(&self, owner: String) -> Result<Remote<dyn Account>, RemoteError> {
        println!("[bank] opening an account for {owner}");
        self.open_accounts.fetch_add(1, Ordering::SeqCst);
        Ok(Remote::new(MyAccount {
            owner,
            balance: AtomicI64::new(0),
            open_accounts: self.open_accounts.clone(),
            opened: std::time::Instant::now(),
        }))
    }
}

struct MyAccount {
    owner: String,
    balance: AtomicI64,
    open_accounts: Arc<AtomicUsize>,
    opened: std::time::Instant,
}

#[remote]
impl Account for MyAccount {
    async fn deposit(&self, amount: i64) -> Result<i64, RemoteError> {
        Ok(self.balance.fetch_add(amount, Ordering::SeqCst) + amount)
    }
}

impl Drop for MyAccount {
    fn drop(&mut self) {
        println!(
            "[bank] released the account of {} (balance {}, {:.1} s after opening): its Drop ran",
            self.owner,
            self.balance.load(Ordering::SeqCst),
            self.opened.elapsed().as_secs_f64()
        );
        self.open_accounts.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        None => bank().await,
        Some("client") => {
            let url = args.get(2).context("client needs a URL")?;
            let name = args.get(3).context("client needs a name")?;
            client(url, name).await
        }
        Some(other) => bail!("unknown mode `{other}` (run without arguments)"),
    }
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..200 {
        if ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out waiting until {what}")
}

/// Starts a client process and waits for its first line (`ready`).
async fn start_client(url: &str, name: &str) -> anyhow::Result<tokio::process::Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["client", url, name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("piped stdout")?).lines();
    loop {
        match lines.next_line().await? {
            Some(l) if l.ends_with("ready") => {
                println!("{l}");
                break;
            }
            Some(l) => println!("{l}"),
            None => bail!("{name} exited early"),
        }
    }
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            println!("{l}");
        }
    });
    Ok(child)
}

async fn bank() -> anyhow::Result<()> {
    let rt = Runtime::builder()
        .listen("tcp://127.0.0.1:0")
        .registry()
        .lease(LEASE)
        .start()
        .await?;
    let open_accounts = Arc::new(AtomicUsize::new(0));
    rt.bind(
        "bank",
        Remote::<dyn Bank>::new(MyBank {
            open_accounts: open_accounts.clone(),
        }),
    )
    .await?;
    let url = format!("{}/bank", rt.endpoints()[0]);
    println!("[bank] open at {url}; leases last {LEASE:?}");

    let mut alice = start_client(&url, "alice").await?;
    let mut bob = start_client(&url, "bob").await?;
    println!(
        "[bank] {} accounts open",
        open_accounts.load(Ordering::SeqCst)
    );

    // Alice drops her handle: the release reaches the bank at once.
    drop(alice.stdin.take());
    alice.wait().await?;
    wait_until("alice's account is released", || {
        open_accounts.load(Ordering::SeqCst) == 1
    })
    .await?;

    // Bob's process is killed: nobody releases his account; his lease runs out.
    println!("[bank] killing bob's process (SIGKILL)");
    bob.kill().await?;
    wait_until("bob's lease expired", || {
        open_accounts.load(Ordering::SeqCst) == 0
    })
    .await?;
    println!("[bank] no accounts open; closing");
    rt.shutdown();
    Ok(())
}

async fn client(url: &str, name: &str) -> anyhow::Result<()> {
    let bank: Remote<dyn Bank> = oxrmi::lookup(url).await?;
    let account = bank.open(name.to_string()).await?;
    let balance = account.deposit(100).await?;
    println!("  [{name}] deposited 100, balance {balance}; ready");
    // Hold the account until told to go (stdin closes).
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
    println!("  [{name}] dropping my handle to the account");
    drop(account);
    // Before the process ends: send the releases still queued, close the connections.
    oxrmi::default_runtime().shutdown();
    Ok(())
}
