//! A second host, made with a network namespace and a veth pair that this test creates
//! (`netns`): the registry refuses bind from another host (as Java's does) while lookups and
//! calls from there work. Needs root and iproute2; without them the test says so loudly and
//! skips, except in CI (`CI=true`), where it fails.

use crate::harness::Peer;
use crate::netns::OtherHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_binds_from_another_host_but_serves_its_lookups() {
    let Some(other) = OtherHost::create_or_skip("remote_host") else {
        return;
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
