//! A second host, made with a network namespace and a veth pair that this test creates: the
//! registry refuses bind from another host (as Java's does) while lookups and calls from there
//! work. Needs root and iproute2; without them the test says so loudly and skips, except in CI
//! (`CI=true`), where it fails.

use std::process::Command;

use crate::harness::{Peer, peer_bin};

/// A network namespace joined to this host by a veth pair; removed on drop.
struct OtherHost {
    ns: String,
    host_if: String,
    /// This host's address on the link.
    here: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl OtherHost {
    fn create() -> Result<OtherHost, String> {
        let id = std::process::id();
        // A /30 of our own per test process, on a link only this test's processes use.
        let subnet = format!("10.213.{}", id % 250);
        let other = OtherHost {
            ns: format!("oxrmi-t{id}"),
            host_if: format!("oxh{}", id % 100_000),
            here: format!("{subnet}.1"),
        };
        let peer_if = format!("oxp{}", id % 100_000);
        ip(&["netns", "add", &other.ns])?;
        ip(&[
            "link",
            "add",
            &other.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ])?;
        ip(&["link", "set", &peer_if, "netns", &other.ns])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", other.here),
            "dev",
            &other.host_if,
        ])?;
        ip(&["link", "set", &other.host_if, "up"])?;
        ip(&[
            "netns",
            "exec",
            &other.ns,
            "ip",
            "addr",
            "add",
            &format!("{subnet}.2/30"),
            "dev",
            &peer_if,
        ])?;
        ip(&[
            "netns", "exec", &other.ns, "ip", "link", "set", &peer_if, "up",
        ])?;
        ip(&["netns", "exec", &other.ns, "ip", "link", "set", "lo", "up"])?;
        Ok(other)
    }

    /// Runs the test peer on the other host.
    fn peer(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, peer_bin()])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the peer in the namespace")
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_binds_from_another_host_but_serves_its_lookups() {
    let other = match OtherHost::create() {
        Ok(o) => o,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "SKIPPED remote_host: cannot create a second host with a network namespace: {e}"
            );
            return;
        }
        Err(e) => panic!("cannot create a second host with a network namespace: {e}"),
    };
    let server = Peer::start(&["serve", &format!("tcp://{}:0", other.here)]).await;
    let url = server.url("");
    let out = other.peer(&["bind", &url, "from-elsewhere"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bind from another host was accepted"
    );
    assert!(stderr.contains("access denied"), "{stderr}");

    // Lookups and calls from the other host are served.
    let out = other.peer(&["calls", &server.url("counter"), "10", "own"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("10 calls"), "{stdout}");
}
