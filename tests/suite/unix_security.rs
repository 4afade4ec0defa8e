//! Unix sockets admit only processes of the server's own user: the socket file is mode 0600
//! and the server checks each peer's credentials. Needs root (to run a peer as `nobody` with
//! setpriv); without it the test says so loudly and skips, except under CI=true, where it fails.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{Peer, Transport, peer_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_another_user_cannot_connect() {
    let server = Peer::serve(Transport::Unix).await;
    let path = server
        .endpoint()
        .strip_prefix("unix://")
        .unwrap()
        .to_string();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket file is open to others");

    // The same user gets in.
    let out = Command::new(peer_bin())
        .args(["calls", &server.url("counter"), "1", "own"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let probe = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot run a process as another user (setpriv, root needed)"
        );
        eprintln!("SKIPPED unix_security: cannot run a process as another user");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            peer_bin(),
        ])
        .args(["calls", &server.url("counter"), "1", "own"])
        .output()
        .unwrap();
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
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            peer_bin(),
        ])
        .args(["calls", &server.url("counter"), "1", "own"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the server served another user's process"
    );
    assert!(stderr.contains("connection lost"), "{stderr}");
    // Its own user is still served.
    let out = Command::new(peer_bin())
        .args(["calls", &server.url("counter"), "1", "own"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_user_is_served() {
    let probe = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot run a process as another user (setpriv, root needed)"
        );
        eprintln!("SKIPPED unix_security: cannot run a process as another user");
        return;
    }
    let server = Peer::start(&["serve-open", &Transport::Unix.listen(), "65534"]).await;
    let path = server
        .endpoint()
        .strip_prefix("unix://")
        .unwrap()
        .to_string();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            peer_bin(),
        ])
        .args(["calls", &server.url("counter"), "3", "own"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the allowed user was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server's own user still is served too.
    let out = Command::new(peer_bin())
        .args(["calls", &server.url("counter"), "1", "own"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
