//! Starting and stopping peer processes, and running one test body per transport.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// How long a child may take to print its first line.
const STARTUP: Duration = Duration::from_secs(20);

/// A transport the behaviour tests run over.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Transport {
    Tcp,
    Unix,
    Fifo,
    Shm,
    /// A child started with `spawn_child` by the test's default runtime, over its pipes.
    Pipe,
}

impl Transport {
    /// What a server listens on for this transport (a fresh path for the local ones).
    pub(crate) fn listen(self) -> String {
        match self {
            Transport::Tcp => "tcp://127.0.0.1:0".to_string(),
            Transport::Unix => format!("unix://{}", fresh_path("sock")),
            Transport::Fifo => format!("fifo://{}", fresh_path("fifo")),
            Transport::Shm => format!("shm://{}", fresh_path("shm")),
            Transport::Pipe => "pipe:".to_string(),
        }
    }
}

/// A fresh path in the temporary directory, unique to this process.
pub(crate) fn fresh_path(suffix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!("oxrmi-test-{}-{n}.{suffix}", std::process::id()))
        .display()
        .to_string()
}

/// Runs a behaviour body over every transport: `behaviour!(name, |t| async move { .. })`
/// makes a module `name` with one `#[tokio::test]` per transport. A behaviour that needs a
/// third process to reach the server by its endpoint (which a child's pipes are not) says
/// `behaviour!(name, addressable, |t| ..)` and runs on every other transport.
macro_rules! behaviour {
    ($name:ident, |$t:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::harness::behaviour!(@addressable $t, $body);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pipe() {
                let $t = $crate::harness::Transport::Pipe;
                $body.await
            }
        }
    };
    ($name:ident, addressable, |$t:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::harness::behaviour!(@addressable $t, $body);
        }
    };
    (@addressable $t:ident, $body:expr) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                let $t = $crate::harness::Transport::Tcp;
                $body.await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unix() {
                let $t = $crate::harness::Transport::Unix;
                $body.await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fifo() {
                let $t = $crate::harness::Transport::Fifo;
                $body.await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shm() {
                let $t = $crate::harness::Transport::Shm;
                $body.await
            }
    };
}
pub(crate) use behaviour;

/// The peer binary built with these tests.
pub(crate) fn peer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_oxrmi-test-peer")
}

/// A child process running `oxrmi-test-peer`. Killed when dropped, and its socket file
/// (which a killed process cannot remove) removed.
pub(crate) struct Peer {
    child: Proc,
    /// Kept open: the child serves until its standard input closes.
    stdin: Option<ChildStdin>,
    /// The first line the child printed, minus `listening on ` where present.
    pub(crate) first_line: String,
}

/// How a peer process was started.
enum Proc {
    /// As an ordinary child of the test process.
    Os(Child),
    /// With `spawn_child` by the default runtime: its stdin and stdout are oxrmi's pipes.
    Piped(oxrmi::ChildProcess),
}

impl Peer {
    /// Starts `oxrmi-test-peer ARGS..` and waits for its first line on stdout.
    pub(crate) async fn start(args: &[&str]) -> Peer {
        Peer::start_via(&[peer_bin().to_string()], args).await
    }

    /// As [`start`](Self::start), with the command line `launcher..` that runs the peer (the
    /// peer binary itself last, e.g. `ip netns exec NS oxrmi-test-peer`).
    pub(crate) async fn start_via(launcher: &[String], args: &[&str]) -> Peer {
        let (program, pre) = launcher.split_first().expect("a launcher");
        let mut child = Command::new(program)
            .args(pre)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start oxrmi-test-peer");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(STARTUP, lines.next_line())
            .await
            .expect("the peer printed nothing in time")
            .expect("read the peer's stdout")
            .expect("the peer exited before printing");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let first_line = line
            .strip_prefix("listening on ")
            .unwrap_or(&line)
            .to_string();
        Peer {
            child: Proc::Os(child),
            stdin,
            first_line,
        }
    }

    /// Starts `oxrmi-test-peer serve-child ARGS..` as a child of the default runtime, over pipes.
    pub(crate) async fn spawn_child(args: &[&str]) -> Peer {
        let mut cmd = std::process::Command::new(peer_bin());
        cmd.arg("serve-child").args(args);
        let child = oxrmi::default_runtime()
            .spawn_child(cmd)
            .await
            .expect("spawn_child oxrmi-test-peer");
        // The child offers its counter once everything is bound: wait for it.
        let _ready: oxrmi::Remote<dyn oxrmi_tests::Counter> = child
            .bootstrap()
            .await
            .expect("the child's bootstrap object");
        Peer {
            first_line: child.endpoint().to_string(),
            child: Proc::Piped(child),
            stdin: None,
        }
    }

    /// A server with a registry holding `counter` and `versioned`.
    pub(crate) async fn serve(t: Transport) -> Peer {
        match t {
            Transport::Pipe => Peer::spawn_child(&[]).await,
            _ => Peer::start(&["serve", &t.listen()]).await,
        }
    }

    /// A server that grants leases of `lease`.
    pub(crate) async fn serve_with_lease(t: Transport, lease: Duration) -> Peer {
        let ms = lease.as_millis().to_string();
        match t {
            Transport::Pipe => Peer::spawn_child(&[&ms]).await,
            _ => Peer::start(&["serve", &t.listen(), &ms]).await,
        }
    }

    /// The server's endpoint.
    pub(crate) fn endpoint(&self) -> &str {
        &self.first_line
    }

    /// The URL of `name` in the server's registry (`tcp://h:p/name`, `unix:///path#name`).
    pub(crate) fn url(&self, name: &str) -> String {
        let endpoint: oxrmi::Endpoint = self.first_line.parse().expect("the peer's endpoint");
        if name.is_empty() {
            return endpoint.to_string();
        }
        oxrmi::ObjectUrl::of(&endpoint, name).to_string()
    }

    pub(crate) fn pid(&self) -> i32 {
        let pid = match &self.child {
            Proc::Os(c) => c.id(),
            Proc::Piped(c) => c.pid(),
        };
        pid.expect("the peer is running") as i32
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) async fn kill(&mut self) {
        let _ = match &mut self.child {
            Proc::Os(c) => c.kill().await,
            Proc::Piped(c) => c.kill().await,
        };
    }

    /// The file of a peer listening on a local transport.
    fn socket_file(&self) -> Option<String> {
        let ep: oxrmi::Endpoint = self.first_line.parse().ok()?;
        ep.path().map(str::to_string)
    }

    /// Writes a line to the child's standard input.
    pub(crate) async fn send_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Closes the child's stdin (it stops serving) and waits for it to exit.
    pub(crate) async fn stop(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let Proc::Os(child) = &mut self.child else {
            panic!("a peer over pipes stops when its parent goes");
        };
        tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the peer did not exit in time")
            .expect("wait for the peer")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(path) = self.socket_file() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Sends a signal to a process (`kill -SIG PID`).
pub(crate) fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Polls `f` until it returns true, at most `limit`; false if it never did.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub(crate) fn status_kib(pid: i32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The server's open file descriptors.
pub(crate) fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's fds")
        .count()
}
