//! Registry nodes sharing one namespace on etcd (`oxrmi_registry::etcd::EtcdStore`): real etcd
//! processes started here on loopback ports with temporary data directories, registry nodes
//! and owners in separate processes (`oxrmi-test-peer etcd-registry`, `bind`).
//!
//! Needs the `etcd` binary (Debian: etcd-server; `OXRMI_ETCD` names another); without it each
//! test says so loudly and skips, except in CI (`CI=true`), where it fails.

use std::process::Stdio;
use std::time::Duration;

use oxrmi::registry::Registry;
use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::{Counter, TestCounter};
use tokio::process::{Child, Command};

use crate::harness::{Peer, eventually, fresh_path};

/// Lease TTL of the tests that wait for bindings to lapse: short, so they end soon.
const SHORT_TTL: &str = "2";
/// Lease TTL of the tests where nothing should lapse.
const LONG_TTL: &str = "30";
/// How long a change through one node may take to show on another (the watch's delay).
const PROPAGATION: Duration = Duration::from_secs(5);

/// The etcd binary, or `None` after saying loudly why the test skips (a failure in CI).
fn etcd_bin() -> Option<String> {
    if let Some(p) = std::env::var_os("OXRMI_ETCD") {
        return Some(p.to_string_lossy().into_owned());
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p.display().to_string()),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "etcd is not installed (Debian: apt-get install etcd-server); CI must run this test"
            )
        }
        None => {
            eprintln!(
                "SKIPPED: etcd is not installed (Debian: apt-get install etcd-server, or set OXRMI_ETCD): \
                 the etcd registry test did not run"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// An etcd cluster of loopback processes with temporary data directories.
struct Etcd {
    bin: String,
    dir: String,
    members: Vec<Member>,
}

struct Member {
    client: u16,
    peer: u16,
    process: Option<Child>,
}

impl Etcd {
    /// Starts `n` members and waits until the cluster answers.
    async fn start(bin: String, n: usize) -> Etcd {
        let dir = fresh_path("etcd");
        std::fs::create_dir_all(&dir).expect("the etcd data directory");
        let members = (0..n)
            .map(|_| Member {
                client: free_port(),
                peer: free_port(),
                process: None,
            })
            .collect();
        let mut etcd = Etcd { bin, dir, members };
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_ready(i).await;
        }
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("e{j}=http://127.0.0.1:{}", m.peer))
            .collect();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::File::create(format!("{}/e{i}.log", self.dir)).expect("etcd's log");
        let child = Command::new(&self.bin)
            .args(["--name", &format!("e{i}")])
            .args(["--data-dir", &format!("{}/e{i}", self.dir)])
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-token",
                &self.dir,
                "--initial-cluster-state",
                "new",
            ])
            // Fast elections, so losing a member costs a second, not ten.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start etcd");
        self.members[i].process = Some(child);
    }

    /// Waits until member `i` serves its client port (and, in a cluster, has a leader: a
    /// registry node's first read then answers).
    async fn wait_ready(&self, i: usize) {
        let port = self.members[i].client;
        let up = eventually(Duration::from_secs(30), || async move {
            let url = format!("http://127.0.0.1:{port}/health");
            health(&url).await
        })
        .await;
        assert!(
            up,
            "etcd member {i} did not become healthy; see {}/e{i}.log",
            self.dir
        );
    }

    /// The store URL naming every member.
    fn url(&self) -> String {
        let eps: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        format!("etcd://{}", eps.join(","))
    }

    async fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].process.take() {
            let _ = c.kill().await;
        }
    }

    async fn restart(&mut self, i: usize) {
        self.kill(i).await;
        self.spawn(i);
        self.wait_ready(i).await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(c) = &mut m.process {
                let _ = c.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether etcd's `/health` answers `"health":"true"` (a plain HTTP/1.0 GET, no client crate).
async fn health(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
    else {
        return false;
    };
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").await.is_err() {
        return false;
    }
    let mut body = String::new();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body)).await,
        Ok(Ok(_))
    ) && body.contains("\"health\":\"true\"")
}

/// A registry node on `etcd` under `prefix`.
async fn node(etcd: &Etcd, prefix: &str, ttl: &str) -> Peer {
    Peer::start(&["etcd-registry", &etcd.url(), prefix, ttl]).await
}

/// A fresh key prefix, so tests sharing nothing never see each other's names.
fn prefix() -> String {
    format!("/{}/", fresh_path("ns").rsplit('/').next().unwrap_or("ns"))
}

/// This process as an owner of objects: it listens, so the nodes and others can call back.
async fn owner() -> Runtime {
    Runtime::builder()
        .listen("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap()
}

fn registry(rt: &Runtime, node: &Peer) -> Remote<dyn Registry> {
    rt.registry_at(&node.endpoint().parse().unwrap())
}

/// A fresh counter of this process holding `start`.
async fn counter(start: i64) -> oxrmi::AnyRemote {
    let c = Remote::<dyn Counter>::new(TestCounter::default());
    c.add(start).await.unwrap();
    c.into_any()
}

async fn lookup_value(rt: &Runtime, node: &Peer, name: &str) -> Result<i64, RemoteError> {
    let c: Remote<dyn Counter> = rt.lookup_url(&node.url(name)).await?;
    c.get().await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_one_namespace_and_exactly_one_concurrent_bind_wins() {
    let Some(bin) = etcd_bin() else { return };
    let etcd = Etcd::start(bin, 1).await;
    let ns = prefix();
    let a = node(&etcd, &ns, LONG_TTL).await;
    let b = node(&etcd, &ns, LONG_TTL).await;
    let me = owner().await;
    let (ra, rb) = (registry(&me, &a), registry(&me, &b));

    ra.bind("counter".into(), counter(7).await).await.unwrap();
    // Node B learns it through its watch and hands out a handle to this process's object.
    let client = Runtime::builder().start().await.unwrap();
    assert!(
        eventually(PROPAGATION, || async {
            lookup_value(&client, &b, "counter").await == Ok(7)
        })
        .await,
        "a name bound through node A was not looked up through node B"
    );
    assert_eq!(
        rb.bind("counter".into(), counter(1).await).await,
        Err(RemoteError::AlreadyBound {
            name: "counter".into()
        })
    );

    // Two nodes binding one name at once: exactly one wins, every time.
    const ROUNDS: usize = 30;
    for i in 0..ROUNDS {
        let name = format!("race{i}");
        let (one, two) = (counter(1).await, counter(2).await);
        let (x, y) = tokio::join!(ra.bind(name.clone(), one), rb.bind(name.clone(), two));
        let wins = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {i}: {x:?} {y:?}");
        for r in [x, y] {
            if let Err(e) = r {
                assert_eq!(e, RemoteError::AlreadyBound { name: name.clone() });
            }
        }
    }
    // Both nodes see the same namespace, with the same winner.
    for r in [&ra, &rb] {
        let full = eventually(PROPAGATION, || async {
            r.list().await.map(|l| l.len()).unwrap_or(0) == ROUNDS + 1
        })
        .await;
        assert!(full, "{:?}", r.list().await);
    }
    for i in 0..ROUNDS {
        let name = format!("race{i}");
        let va = lookup_value(&client, &a, &name).await.unwrap();
        let vb = lookup_value(&client, &b, &name).await.unwrap();
        assert_eq!(va, vb, "{name}: the nodes disagree on the winner");
    }

    // rebind and unbind through one node show on the other.
    rb.rebind("counter".into(), counter(9).await).await.unwrap();
    assert!(
        eventually(PROPAGATION, || async {
            lookup_value(&client, &a, "counter").await == Ok(9)
        })
        .await
    );
    ra.unbind("counter".into()).await.unwrap();
    assert_eq!(
        ra.unbind("counter".into()).await,
        Err(RemoteError::NotBound {
            name: "counter".into()
        })
    );
    assert!(
        eventually(PROPAGATION, || async {
            matches!(
                lookup_value(&client, &b, "counter").await,
                Err(RemoteError::NotBound { .. })
            )
        })
        .await
    );
    let status = ra.store().await.unwrap();
    assert!(status.healthy && !status.stale, "{status:?}");
    assert!(status.store.starts_with("etcd://"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_owner_s_bindings_vanish_from_every_node_after_the_lease_time() {
    let Some(bin) = etcd_bin() else { return };
    let etcd = Etcd::start(bin, 1).await;
    let ns = prefix();
    let a = node(&etcd, &ns, SHORT_TTL).await;
    let b = node(&etcd, &ns, SHORT_TTL).await;
    let client = Runtime::builder().start().await.unwrap();

    let mut owner = Peer::start(&["bind", &a.url("doomed"), "doomed"]).await;
    assert_eq!(owner.first_line, "bound");
    assert!(
        eventually(PROPAGATION, || async {
            lookup_value(&client, &b, "doomed").await == Ok(0)
        })
        .await
    );
    // Still bound well after a few lease periods while the owner lives: node A keeps it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lookup_value(&client, &b, "doomed").await, Ok(0));

    owner.kill().await;
    for n in [&a, &b] {
        let gone = eventually(Duration::from_secs(20), || async {
            matches!(
                client
                    .lookup_url::<dyn Counter>(&n.url("doomed"))
                    .await
                    .map(drop),
                Err(RemoteError::NotBound { .. })
            )
        })
        .await;
        assert!(
            gone,
            "the dead owner's binding is still on {}",
            n.endpoint()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn while_etcd_is_down_nodes_answer_lookups_from_their_cache_and_refuse_binds() {
    let Some(bin) = etcd_bin() else { return };
    let mut etcd = Etcd::start(bin, 1).await;
    let ns = prefix();
    let a = node(&etcd, &ns, LONG_TTL).await;
    let b = node(&etcd, &ns, LONG_TTL).await;
    let me = owner().await;
    let (ra, rb) = (registry(&me, &a), registry(&me, &b));
    let client = Runtime::builder().start().await.unwrap();
    ra.bind("kept".into(), counter(5).await).await.unwrap();
    assert!(
        eventually(PROPAGATION, || async {
            lookup_value(&client, &b, "kept").await == Ok(5)
        })
        .await
    );

    etcd.kill(0).await;
    for r in [&ra, &rb] {
        let unhealthy = eventually(Duration::from_secs(10), || async {
            r.store().await.is_ok_and(|s| !s.healthy && s.stale)
        })
        .await;
        assert!(unhealthy, "{:?}", r.store().await);
    }
    // Lookups still answered, from the cache.
    assert_eq!(lookup_value(&client, &a, "kept").await, Ok(5));
    assert_eq!(lookup_value(&client, &b, "kept").await, Ok(5));
    // Writes refused, saying why.
    match rb.bind("new".into(), counter(1).await).await {
        Err(RemoteError::ConnectionRefused { endpoint, reason }) => {
            assert!(endpoint.starts_with("etcd://"), "{endpoint}");
            assert!(reason.contains("unhealthy"), "{reason}");
        }
        other => panic!("a bind while etcd is down: {other:?}"),
    }

    etcd.restart(0).await;
    for r in [&ra, &rb] {
        let healthy = eventually(Duration::from_secs(20), || async {
            r.store().await.is_ok_and(|s| s.healthy && !s.stale)
        })
        .await;
        assert!(
            healthy,
            "no resync after etcd returned: {:?}",
            r.store().await
        );
    }
    // Nothing bound was lost, and writes work again on both nodes.
    assert_eq!(lookup_value(&client, &b, "kept").await, Ok(5));
    rb.bind("new".into(), counter(3).await).await.unwrap();
    assert!(
        eventually(PROPAGATION, || async {
            lookup_value(&client, &a, "new").await == Ok(3)
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_member_cluster_losing_one_member_keeps_working() {
    let Some(bin) = etcd_bin() else { return };
    let mut etcd = Etcd::start(bin, 3).await;
    let ns = prefix();
    let a = node(&etcd, &ns, LONG_TTL).await;
    let b = node(&etcd, &ns, LONG_TTL).await;
    let me = owner().await;
    let (ra, rb) = (registry(&me, &a), registry(&me, &b));
    let client = Runtime::builder().start().await.unwrap();
    ra.bind("before".into(), counter(1).await).await.unwrap();

    etcd.kill(0).await;
    // Binds through either node succeed again once its client has moved to a live member.
    for (i, r) in [&ra, &rb].into_iter().enumerate() {
        let name = format!("after{i}");
        let bound = eventually(Duration::from_secs(20), || async {
            match r.bind(name.clone(), counter(2).await).await {
                Ok(()) => true,
                Err(RemoteError::AlreadyBound { .. }) => true,
                Err(_) => false,
            }
        })
        .await;
        assert!(bound, "{name} could not be bound with one etcd member down");
    }
    for n in [&a, &b] {
        for (name, value) in [("before", 1), ("after0", 2), ("after1", 2)] {
            let found = eventually(PROPAGATION * 2, || async {
                lookup_value(&client, n, name).await == Ok(value)
            })
            .await;
            assert!(found, "{name} on {}", n.endpoint());
        }
    }
    for r in [&ra, &rb] {
        let healthy = eventually(Duration::from_secs(20), || async {
            r.store().await.is_ok_and(|s| s.healthy)
        })
        .await;
        assert!(healthy, "{:?}", r.store().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_fail_over_when_a_registry_node_dies_and_nothing_bound_is_lost() {
    let Some(bin) = etcd_bin() else { return };
    let etcd = Etcd::start(bin, 1).await;
    let ns = prefix();
    let mut a = node(&etcd, &ns, SHORT_TTL).await;
    let b = node(&etcd, &ns, SHORT_TTL).await;
    // The owner binds through node A, which grants the binding's lease.
    let owner = Peer::start(&["bind", &a.url("svc"), "svc"]).await;
    assert_eq!(owner.first_line, "bound");
    let url = format!("{},{}", a.endpoint(), b.url("svc"));
    assert!(
        eventually(PROPAGATION, || async {
            let c: Result<Remote<dyn Counter>, _> = oxrmi::lookup(&b.url("svc")).await;
            c.is_ok()
        })
        .await
    );
    let counter: Remote<dyn Counter> = oxrmi::lookup(&url).await.unwrap();
    counter.add(1).await.unwrap();

    a.kill().await;
    // Lookups through the list go on, through node B; the handle keeps calling the owner.
    for i in 0..5 {
        let c: Remote<dyn Counter> = oxrmi::lookup(&url)
            .await
            .unwrap_or_else(|e| panic!("lookup {i} after node A died: {e}"));
        assert_eq!(c.get().await, Ok(1 + i));
        counter.add(1).await.unwrap();
    }
    // Several lease periods later the binding is still there: node B renews its lease while
    // the owner answers, though the node that granted it is gone.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let c: Remote<dyn Counter> = oxrmi::lookup(&url).await.unwrap();
    assert_eq!(c.get().await, Ok(6));
    // And a list whose every registry is dead says so.
    let dead = format!("{},{}", a.endpoint(), a.url("svc"));
    assert!(matches!(
        oxrmi::lookup::<dyn Counter>(&dead).await.map(drop),
        Err(RemoteError::ConnectionRefused { .. })
    ));
}
