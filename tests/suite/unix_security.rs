//! The local transports admit only processes of the server's own user: the file (Unix socket,
//! shared-memory rendezvous socket, listening FIFO) is mode 0600 and the server checks each
//! peer's credentials (SO_PEERCRED; for FIFOs, the owner of the connection's FIFOs). Needs root
//! (to run a peer as `nobody` with setpriv); without it the test says so loudly and skips,
//! except under CI=true, where it fails.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use crate::harness::{Peer, Transport, peer_bin};

/// The user the other process runs as.
const NOBODY: &str = "65534";

/// Whether a process can be run as `nobody` here; if not, says so (and fails under CI).
fn can_run_as_nobody() -> bool {
    let ok = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot run a process as another user (setpriv, root needed)"
        );
        eprintln!("SKIPPED unix_security: cannot run a process as another user");
    }
    ok
}

/// `oxrmi-test-peer calls URL N own`, as this user or as `nobody`.
fn calls(url: &str, n: &str, as_nobody: bool) -> Output {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            peer_bin(),
        ]);
        c
    } else {
        Command::new(peer_bin())
    };
    cmd.args(["calls", url, n, "own"]).output().unwrap()
}

/// The mode bits of the server's endpoint file.
fn socket_mode(server: &Peer) -> (String, u32) {
    let ep: oxrmi::Endpoint = server.endpoint().parse().unwrap();
    let path = ep.path().expect("a local endpoint").to_string();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    (path, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_another_user_cannot_connect_over_unix() {
    another_user_is_refused(Transport::Unix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_another_user_cannot_connect_over_shm() {
    another_user_is_refused(Transport::Shm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_another_user_cannot_connect_over_fifo() {
    another_user_is_refused(Transport::Fifo).await;
}

async fn another_user_is_refused(t: Transport) {
    let server = Peer::serve(t).await;
    let (path, mode) = socket_mode(&server);
    assert_eq!(mode, 0o600, "the socket file is open to others");

    // The same user gets in.
    let out = calls(&server.url("counter"), "1", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    if !can_run_as_nobody() {
        return;
    }
    let out = calls(&server.url("counter"), "1", true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a process of another user was served"
    );
    assert!(
        stderr.contains("connection refused") || stderr.contains("ermission denied"),
        "{stderr}"
    );

    // Second line of defence: with the file opened to everyone, the server still checks the
    // peer's credentials and drops the stranger before the handshake.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = calls(&server.url("counter"), "1", true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the server served another user's process"
    );
    assert!(
        stderr.contains("connection lost") || stderr.contains("connection refused"),
        "{stderr}"
    );
    // Its own user is still served.
    let out = calls(&server.url("counter"), "1", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_user_is_served() {
    if !can_run_as_nobody() {
        return;
    }
    let server = Peer::start(&["serve-open", &Transport::Unix.listen(), NOBODY]).await;
    let (_, mode) = socket_mode(&server);
    assert_eq!(mode, 0o666);
    let out = calls(&server.url("counter"), "3", true);
    assert!(
        out.status.success(),
        "the allowed user was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server's own user still is served too.
    let out = calls(&server.url("counter"), "1", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
