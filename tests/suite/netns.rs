//! A second "host" for tests: a network namespace joined to this one by a veth pair, both made
//! by the test and removed when it ends, and a way to cut the link between them.
//!
//! Needs root and iproute2. [`OtherHost::create_or_skip`] says so loudly and skips without them,
//! except in CI (`CI=true`), where it fails.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::harness::peer_bin;

/// A MAC address no interface has: frames sent to it are dropped by the receiving veth.
const NOWHERE_MAC: &str = "02:00:00:00:00:01";

/// A network namespace joined to this host by a veth pair; removed on drop.
pub(crate) struct OtherHost {
    /// The namespace's name (`ip netns exec NAME ..`).
    pub(crate) ns: String,
    host_if: String,
    peer_if: String,
    /// This host's address on the link.
    pub(crate) here: String,
    /// The other host's address on the link.
    pub(crate) there: String,
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
    /// A fresh namespace and link, unique to this call (tests run in parallel).
    pub(crate) fn create() -> Result<OtherHost, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id();
        // A /30 of our own per test and process, on a link only this test's processes use.
        let subnet = format!("10.{}.{}", 213 + n % 40, id % 250);
        let tag = format!("{}x{n}", id % 100_000);
        let mut other = OtherHost {
            ns: format!("oxrmi-t{tag}"),
            host_if: String::new(),
            peer_if: format!("oxp{tag}"),
            here: format!("{subnet}.1"),
            there: format!("{subnet}.2"),
        };
        ip(&["netns", "add", &other.ns])?;
        // From here on, Drop cleans up whatever was made.
        let host_if = format!("oxh{tag}");
        ip(&[
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            &other.peer_if,
        ])?;
        other.host_if = host_if;
        ip(&["link", "set", &other.peer_if, "netns", &other.ns])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", other.here),
            "dev",
            &other.host_if,
        ])?;
        ip(&["link", "set", &other.host_if, "up"])?;
        other.exec_ip(&[
            "addr",
            "add",
            &format!("{}/30", other.there),
            "dev",
            &other.peer_if,
        ])?;
        other.exec_ip(&["link", "set", &other.peer_if, "up"])?;
        other.exec_ip(&["link", "set", "lo", "up"])?;
        Ok(other)
    }

    /// [`create`](Self::create), or `None` after saying loudly why the test `test` is skipped;
    /// in CI (`CI=true`) a failure to create it fails the test instead.
    pub(crate) fn create_or_skip(test: &str) -> Option<OtherHost> {
        match OtherHost::create() {
            Ok(o) => Some(o),
            Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!(
                    "SKIPPED {test}: cannot create a second host with a network namespace: {e}"
                );
                None
            }
            Err(e) => panic!("{test}: cannot create a second host with a network namespace: {e}"),
        }
    }

    /// Runs `ip ARGS..` inside the namespace.
    fn exec_ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The command line that runs the test peer on the other host.
    pub(crate) fn peer_command(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns, peer_bin()]
            .map(str::to_string)
            .to_vec()
    }

    /// Runs the test peer on the other host to its end.
    pub(crate) fn peer(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, peer_bin()])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the peer in the namespace")
    }

    /// Cuts the link both ways: packets are dropped, not refused (each side sends to a MAC
    /// address nobody has, which the receiving veth drops). This kernel has no netem qdisc or
    /// drop action, and this needs neither; new connections time out as on a real partition.
    pub(crate) fn partition(&self) {
        ip(&[
            "neigh",
            "replace",
            &self.there,
            "lladdr",
            NOWHERE_MAC,
            "dev",
            &self.host_if,
            "nud",
            "permanent",
        ])
        .expect("partition this side");
        self.exec_ip(&[
            "neigh",
            "replace",
            &self.here,
            "lladdr",
            NOWHERE_MAC,
            "dev",
            &self.peer_if,
            "nud",
            "permanent",
        ])
        .expect("partition the other side");
    }

    /// Ends [`partition`](Self::partition): both sides find each other by ARP again.
    pub(crate) fn heal(&self) {
        ip(&["neigh", "del", &self.there, "dev", &self.host_if]).expect("heal this side");
        self.exec_ip(&["neigh", "del", &self.here, "dev", &self.peer_if])
            .expect("heal the other side");
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        if !self.host_if.is_empty() {
            let _ = ip(&["link", "del", &self.host_if]);
        }
        let _ = ip(&["netns", "del", &self.ns]);
    }
}
