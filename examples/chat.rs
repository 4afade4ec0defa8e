//! A chat room with callbacks, across processes.
//!
//! The room runs in this process; three members (alice, bob, carol) run in child processes that
//! listen on no port. Each passes a listener into the room by reference and gets back a
//! membership by reference. When someone speaks, the room calls every member's listener: those
//! calls travel back over the connections the members opened. A member that leaves drops its
//! membership, and the room hears of it at once; carol is killed instead, and disappears from
//! the room when her lease on the membership expires.
//!
//! Run it with `cargo run --example chat`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use oxrmi::{Remote, RemoteError, Runtime, remote};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long a member's lease lasts: short, so a killed member leaves the room quickly.
const LEASE: Duration = Duration::from_secs(1);

/// The room, as members see it.
#[remote]
pub trait Room: Send + Sync {
    /// Joins as `name`; the room will call `listener` with every line said.
    async fn join(
        &self,
        name: String,
        listener: Remote<dyn Listener>,
    ) -> Result<Remote<dyn Membership>, RemoteError>;
}

/// A member's seat in the room: dropping the last handle to it leaves the room.
#[remote]
pub trait Membership: Send + Sync {
    /// Says a line to everyone.
    async fn say(&self, text: String) -> Result<(), RemoteError>;
}

/// What the room calls back in each member's process.
#[remote]
pub trait Listener: Send + Sync {
    /// A line said in the room.
    #[oneway]
    async fn hear(&self, line: String) -> Result<(), RemoteError>;
}

/// A member: seat id, name, and the listener in the member's process.
type Member = (u64, String, Remote<dyn Listener>);

#[derive(Default)]
struct Members {
    list: Mutex<Vec<Member>>,
    next: AtomicU64,
}

impl Members {
    fn broadcast(&self, line: &str) {
        println!("[room] {line}");
        let listeners: Vec<_> = self
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, _, l)| l.clone())
            .collect();
        for l in listeners {
            let line = line.to_string();
            tokio::spawn(async move {
                let _ = l.hear(line).await;
            });
        }
    }

    fn names(&self) -> Vec<String> {
        let list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().map(|(_, n, _)| n.clone()).collect()
    }
}

struct ChatRoom {
    members: Arc<Members>,
}

#[remote]
impl Room for ChatRoom {
    async fn join(
        &self,
        name: String,
        listener: Remote<dyn Listener>,
    ) -> Result<Remote<dyn Membership>, RemoteError> {
        let id = self.members.next.fetch_add(1, Ordering::Relaxed);
        self.members
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, name.clone(), listener));
        self.members.broadcast(&format!("{name} joined"));
        Ok(Remote::new(Seat {
            id,
            name,
            members: self.members.clone(),
        }))
    }
}

/// A member's seat; its `Drop` runs when the member's last handle is released or its lease
/// expires.
struct Seat {
    id: u64,
    name: String,
    members: Arc<Members>,
}

#[remote]
impl Membership for Seat {
    async fn say(&self, text: String) -> Result<(), RemoteError> {
        self.members.broadcast(&format!("{}: {text}", self.name));
        Ok(())
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.members
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _, _)| *id != self.id);
        self.members.broadcast(&format!("{} left", self.name));
    }
}

/// A member's listener: prints what it hears.
struct Printer {
    name: String,
}

#[remote]
impl Listener for Printer {
    async fn hear(&self, line: String) -> Result<(), RemoteError> {
        println!("    [{} hears] {line}", self.name);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        None => room().await,
        Some("member") => {
            let url = args.get(2).context("member needs a URL")?;
            let name = args.get(3).context("member needs a name")?;
            member(url, name).await
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

async fn room() -> anyhow::Result<()> {
    let rt = Runtime::builder()
        .listen("tcp://127.0.0.1:0")
        .registry()
        .lease(LEASE)
        .start()
        .await?;
    let members = Arc::new(Members::default());
    rt.bind(
        "room",
        Remote::<dyn Room>::new(ChatRoom {
            members: members.clone(),
        }),
    )
    .await?;
    let url = format!("{}/room", rt.endpoints()[0]);
    println!("[room] open at {url}; leases last {LEASE:?}");

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut child = Command::new(&exe)
            .args(["member", &url, name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        // Pass the member's output through, line by line.
        let out = child.stdout.take().context("piped stdout")?;
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                println!("{l}");
            }
        });
        children.push((name, child));
        let n = children.len();
        wait_until("the member joined", || members.names().len() == n).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Carol's process dies without a word: nobody releases her seat, her lease runs out.
    let (_, carol) = &mut children[2];
    println!("[room] killing carol's process (SIGKILL)");
    carol.kill().await?;
    let killed_at = tokio::time::Instant::now();
    wait_until("carol's lease expired", || {
        !members.names().contains(&"carol".to_string())
    })
    .await?;
    println!(
        "[room] carol's seat was dropped {:.1} s after her process died (lease {LEASE:?})",
        killed_at.elapsed().as_secs_f64()
    );

    // Alice and bob leave properly: closing their stdin makes them drop their seats.
    for (name, child) in children.iter_mut().take(2) {
        drop(child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
        if !status.success() {
            bail!("{name} failed: {status}");
        }
    }
    wait_until("the room is empty", || members.names().is_empty()).await?;
    println!("[room] empty; closing");
    rt.shutdown();
    Ok(())
}

async fn member(url: &str, name: &str) -> anyhow::Result<()> {
    // A runtime that listens on no port: the room's calls come back over our own connection.
    let rt = Runtime::builder().start().await?;
    let room: Remote<dyn Room> = rt.lookup_url(url).await?;
    let listener = Remote::<dyn Listener>::new(Printer {
        name: name.to_string(),
    });
    let seat = room.join(name.to_string(), listener).await?;
    seat.say(format!(
        "hello, I am {name} (process {})",
        std::process::id()
    ))
    .await?;
    // Stay until told to go (stdin closes), then say goodbye and leave.
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
    seat.say("goodbye".into()).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(seat);
    // Before the process ends: send the release still queued, close the connection.
    rt.shutdown();
    Ok(())
}
