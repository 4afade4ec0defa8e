//! The gRPC bridge from an ordinary gRPC client in another language: `tests/python/bridge_test.py`
//! (grpcio) against `oxrmi-test-peer serve-grpc`, with the `.proto` files `oxrmi proto` writes
//! compiled by a stock protoc.
//!
//! The Python is `OXRMI_PYTHON`, else `target/grpc-venv/bin/python` (which `.ci/run` makes);
//! without either the test says SKIPPED and passes, unless `CI` is set: then it fails.
//! The `oxrmi` binary is the one built next to the peer binary (`cargo test --workspace` builds
//! it; after `cargo test -p oxrmi-tests` alone, `cargo build -p oxrmi-registry` first).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::harness::{Peer, fresh_path, peer_bin};

/// The whole Python run, protoc included.
const PYTHON_LIMIT: Duration = Duration::from_secs(120);
/// `oxrmi proto`.
const PROTO_LIMIT: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
}

/// The Python to run the script with, if there is one.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OXRMI_PYTHON").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let venv = repo().join("target/grpc-venv/bin/python");
    venv.exists().then_some(venv)
}

/// The `oxrmi` CLI, from the same build as the peer (not built here: see the module docs).
fn oxrmi_cli() -> PathBuf {
    let cli = Path::new(peer_bin()).with_file_name("oxrmi");
    assert!(
        cli.exists(),
        "{} is missing: build it with `cargo build -p oxrmi-registry` \
         (`cargo test --workspace` does)",
        cli.display()
    );
    cli
}

/// A directory removed when dropped, even when the test fails.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` to its end within `limit` (killed if it overruns), output captured.
async fn run(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("wait for {what}: {e}"))
}

fn show(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_through_the_bridge() {
    let Some(python) = python() else {
        let why = "no Python with grpcio for the gRPC bridge test \
                   (set OXRMI_PYTHON or run .ci/run, which makes target/grpc-venv)";
        assert!(
            std::env::var_os("CI").is_none(),
            "{why}; CI is set: failing, not skipping"
        );
        // Straight to the process's stderr: the test harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n**** SKIPPED: grpc_python: {why} ****\n"
        );
        return;
    };
    let cli = oxrmi_cli();

    let server = Peer::start(&["serve-grpc"]).await;
    let (tcp, grpc) = match server.first_line.split_whitespace().collect::<Vec<_>>()[..] {
        [tcp, "grpc", grpc] => (tcp.to_string(), grpc.to_string()),
        _ => panic!("unexpected first line {:?}", server.first_line),
    };

    // No account exists yet: `oxrmi proto` describes `Account` all the same, as the product of
    // the bank's `open` (a client can generate its stubs before any object is made).
    let dir = TempDir(PathBuf::from(fresh_path("grpc-python")));
    let protos = dir.0.join("protos");
    let generated = dir.0.join("generated");
    let mut cmd = Command::new(&cli);
    cmd.arg("proto").arg(&tcp).arg("--out").arg(&protos);
    let out = run(cmd, PROTO_LIMIT, "oxrmi proto").await;
    assert!(out.status.success(), "oxrmi proto failed: {}", show(&out));
    for file in ["oxrmi/test/counter.proto", "oxrmi/test/account.proto"] {
        assert!(
            protos.join(file).exists(),
            "oxrmi proto wrote no {file}: {}",
            show(&out)
        );
    }

    let mut cmd = Command::new(&python);
    cmd.arg(repo().join("tests/python/bridge_test.py"))
        .arg("--address")
        .arg(&grpc)
        .arg("--protos")
        .arg(&protos)
        .arg("--out")
        .arg(&generated)
        // Nothing written next to the sources; lines as they come.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let out = run(cmd, PYTHON_LIMIT, "tests/python/bridge_test.py").await;
    assert!(
        out.status.success(),
        "the Python gRPC client failed ({}): {}",
        python.display(),
        show(&out)
    );
    // Passed: the checks' lines are shown with --nocapture.
    print!("{}", String::from_utf8_lossy(&out.stdout));

    let status = server.stop().await;
    assert!(status.success(), "the peer exited with {status}");
}
