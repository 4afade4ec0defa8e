//! The `oxrmi` command-line tool, run as a separate process: a standalone registry that objects
//! of another process bind into, `oxrmi list` against it, and a clean stop on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use oxrmi::{Remote, RemoteError, Runtime, remote};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A tiny interface to bind.
#[remote(name = "oxrmi.cli_test.Greeter")]
pub trait Greeter: Send + Sync {
    /// Greets.
    async fn greet(&self, name: String) -> Result<String, RemoteError>;
}

struct English;

#[remote]
impl Greeter for English {
    async fn greet(&self, name: String) -> Result<String, RemoteError> {
        Ok(format!("hello, {name}"))
    }
}

fn oxrmi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxrmi"));
    c.stdin(Stdio::null()).kill_on_drop(true);
    c
}

async fn output(args: &[&str]) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(30), oxrmi().args(args).output())
        .await
        .expect("oxrmi did not finish in time")
        .expect("run oxrmi")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_registry_list_and_sigterm() {
    let mut registry = oxrmi()
        .args(["registry", "--listen", "tcp://127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(registry.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let endpoint = line.strip_prefix("listening on ").expect(&line).to_string();

    // This process binds an object into the standalone registry and serves it.
    let me = Runtime::builder()
        .listen("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let reg = me.registry_at(&endpoint.parse().unwrap());
    let greeter = Remote::<dyn Greeter>::new(English);
    reg.bind("greeter".into(), greeter.into_any())
        .await
        .unwrap();

    // A third process lists it.
    let out = output(&["list", &endpoint]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("NAME"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("greeter") && l.contains("oxrmi.cli_test.Greeter")),
        "{text}"
    );
    let out = output(&["list", "--json", &endpoint]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json[0]["name"], "greeter");
    assert_eq!(json[0]["interface"], "oxrmi.cli_test.Greeter");

    // And a client reaches the object through the standalone registry.
    let found: Remote<dyn Greeter> = oxrmi::lookup(&format!("{endpoint}/greeter")).await.unwrap();
    assert_eq!(found.greet("ada".into()).await.unwrap(), "hello, ada");

    // `oxrmi ipcs` on this process says who keeps the greeter alive: the registry's runtime and,
    // while `found` lives, this process's default runtime; then the registry alone.
    let mine = me.endpoints()[0].to_string();
    let holders = || async {
        let out = output(&["ipcs", "--json", &mine]).await;
        assert!(out.status.success(), "{out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let greeter = report["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["interface"] == "oxrmi.cli_test.Greeter")
            .cloned()
            .expect("the greeter is exported");
        greeter["holders"].as_array().unwrap().len()
    };
    assert_eq!(holders().await, 2);
    drop(found);
    let mut left = 0;
    for _ in 0..50 {
        left = holders().await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "dropping the handle did not release its lease");
    let out = output(&["ipcs", &mine]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("EXPORTED OBJECTS") && text.contains("oxrmi.cli_test.Greeter"),
        "{text}"
    );

    // SIGTERM stops it cleanly.
    let pid = registry.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), registry.wait())
        .await
        .expect("the registry did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn list_of_an_unreachable_registry_fails_with_a_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = output(&["list", &format!("tcp://127.0.0.1:{port}")]).await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("connection refused"), "{err}");
}

#[tokio::test]
async fn bench_rejects_an_unknown_transport() {
    let out = output(&["bench", "--transport", "carrier-pigeon"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("tcp") && err.contains("unix"), "{err}");
}
