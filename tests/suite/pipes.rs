//! The `pipe` transport's own cases: a parent and the child it started with `spawn_child`
//! finding each other through bootstrap objects, each noticing the other's death, and children
//! that do not speak the protocol. (The behaviours every transport shares run over pipes too,
//! through `behaviour!`.)

use std::time::Duration;

use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::{Counter, Hub, Listener, Recorder, TestCounter};

use crate::harness::{Peer, eventually, peer_bin};

fn child_command(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(peer_bin());
    cmd.args(args);
    cmd
}

/// Whether process `pid` still runs (a zombie does not count).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `pid (comm) S ...`.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_and_child_reach_each_other_without_registry_or_port() {
    let parent_counter = std::sync::Arc::new(TestCounter::default());
    let rt = Runtime::builder()
        .bootstrap(Remote::<dyn Counter>::from_arc(parent_counter.clone()))
        .start()
        .await
        .unwrap();
    assert!(rt.endpoints().is_empty(), "the parent listens nowhere");
    // The child calls the parent's bootstrap object, then exits.
    let mut child = rt
        .spawn_child(child_command(&["child-calls-parent", "5"]))
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the child did not finish")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(parent_counter.get().await.unwrap(), 5);

    // And the other way: the parent calls a child's objects, and the child calls back into a
    // listener of the parent's, over the same pipes.
    let child = rt
        .spawn_child(child_command(&["serve-child"]))
        .await
        .unwrap();
    let counter: Remote<dyn Counter> = child.bootstrap().await.unwrap();
    assert_eq!(counter.add(7).await.unwrap(), 7);
    let hub: Remote<dyn Hub> = child
        .registry()
        .lookup("hub".into())
        .await
        .unwrap()
        .downcast()
        .unwrap();
    let recorder = Remote::<dyn Listener>::new(Recorder::default());
    hub.call_back(recorder.clone(), "through the pipes".into())
        .await
        .unwrap();
    assert_eq!(recorder.seen().await.unwrap(), vec!["through the pipes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_exits_when_its_parent_dies() {
    let mut parent = Peer::start(&["spawn-child"]).await;
    let child: i32 = parent
        .first_line
        .strip_prefix("child ")
        .and_then(|p| p.parse().ok())
        .expect("the parent printed its child's pid");
    assert!(running(child));
    parent.kill().await;
    assert!(
        eventually(Duration::from_secs(10), || async move { !running(child) }).await,
        "the child outlived its parent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_sees_its_child_die_and_reaps_it() {
    let rt = Runtime::builder().start().await.unwrap();
    let mut child = rt
        .spawn_child(child_command(&["serve-child"]))
        .await
        .unwrap();
    let counter: Remote<dyn Counter> = child.bootstrap().await.unwrap();
    let call = tokio::spawn({
        let counter = counter.clone();
        async move { counter.sleep(60_000).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.pid().unwrap() as i32;
    crate::harness::signal(pid, "KILL");
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call hung after the child died")
        .unwrap();
    assert!(
        matches!(r, Err(RemoteError::ConnectionLost { .. })),
        "{r:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the child was not reaped")
        .unwrap();
    assert!(!status.success());
    assert_eq!(rt.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_that_do_not_speak_the_protocol_are_refused_in_time() {
    let rt = Runtime::builder()
        .connect_timeout(Duration::from_millis(800))
        .start()
        .await
        .unwrap();
    // Garbage on its stdout: refused at the preamble.
    let mut garbage = std::process::Command::new("sh");
    garbage.args(["-c", "echo 'HTTP/1.1 200 OK'; sleep 30"]);
    let started = std::time::Instant::now();
    let e = rt.spawn_child(garbage).await.unwrap_err();
    assert!(matches!(e, RemoteError::Protocol { .. }), "{e:?}");
    // Silence: refused when the handshake times out.
    let mut silent = std::process::Command::new("sleep");
    silent.arg("30");
    let e = rt.spawn_child(silent).await.unwrap_err();
    assert!(matches!(e, RemoteError::ConnectionRefused { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A program that does not exist.
    let e = rt
        .spawn_child(std::process::Command::new("/nonexistent/oxrmi-child"))
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::Setup { .. }), "{e:?}");
    // The runtime still starts good children.
    let child = rt
        .spawn_child(child_command(&["serve-child"]))
        .await
        .unwrap();
    let counter: Remote<dyn Counter> = child.bootstrap().await.unwrap();
    assert_eq!(counter.add(1).await.unwrap(), 1);
}

#[tokio::test]
async fn parent_pipe_outside_a_spawned_child_is_a_clear_error() {
    let out = std::process::Command::new(peer_bin())
        .arg("serve-child")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spawn_child"), "{err}");
}
