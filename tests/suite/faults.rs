//! Faults with real processes: a server killed mid-call and restarted at the same endpoint, a
//! network partition (packets dropped, not refused) between a client and a server on another
//! host (a network namespace, `netns`), and a registry restarted under its owners' names.

use std::time::Duration;

use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::{Account, Bank, Counter, Hub};
use tokio::time::Instant;

use crate::harness::{Peer, Transport, behaviour, eventually};
use crate::netns::OtherHost;

/// An endpoint that stays the same across restarts: a TCP port that was free a moment ago, or a
/// fresh path.
fn fixed_endpoint(t: Transport) -> String {
    match t {
        Transport::Tcp => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port())
        }
        _ => t.listen(),
    }
}

behaviour!(
    a_restarted_server_serves_old_well_known_handles_but_not_old_objects,
    addressable,
    |t| async move {
        let endpoint = fixed_endpoint(t);
        let mut first = Peer::start(&["serve", &endpoint]).await;
        let registry = oxrmi::registry::locate(&endpoint.parse().unwrap());
        let counter: Remote<dyn Counter> = oxrmi::lookup(&first.url("counter")).await.unwrap();
        assert_eq!(counter.add(5).await.unwrap(), 5);

        // Killed mid-call: the caller learns at once.
        let call = tokio::spawn({
            let counter = counter.clone();
            async move { counter.sleep(60_000).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let killed = Instant::now();
        first.kill().await;
        let r = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the call hung after its server died")
            .unwrap();
        assert!(
            matches!(r, Err(RemoteError::ConnectionLost { .. })),
            "{r:?}"
        );
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "{:?}",
            killed.elapsed()
        );

        // Another process at the same endpoint: a new runtime, whose counter happens to have the
        // same object id as the old one.
        let second = Peer::start(&["serve", &endpoint]).await;
        assert_eq!(second.endpoint(), first.endpoint());
        // The registry is a well-known object, reached by endpoint alone: the old handle works.
        let names: Vec<String> = registry
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert!(names.contains(&"counter".to_string()), "{names:?}");
        // The old counter is gone with its runtime: never a call on the new one.
        let e = counter.add(100).await.unwrap_err();
        assert!(matches!(e, RemoteError::NoSuchObject { .. }), "{e:?}");
        let e = counter.get().await.unwrap_err();
        assert!(matches!(e, RemoteError::NoSuchObject { .. }), "{e:?}");
        let fresh: Remote<dyn Counter> = oxrmi::lookup(&second.url("counter")).await.unwrap();
        assert_eq!(
            fresh.get().await.unwrap(),
            0,
            "a call reached the new counter"
        );
    }
);

/// Runs the test peer in `other` to its end and returns its standard output.
async fn run_there(other: &OtherHost, args: &[&str]) -> String {
    let launcher = other.peer_command();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&launcher[0])
            .args(&launcher[1..])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the peer in the namespace")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_times_calls_out_expires_leases_and_heals() {
    let Some(other) = OtherHost::create_or_skip("faults::partition") else {
        return;
    };
    const LEASE: Duration = Duration::from_secs(1);
    const DEADLINE: Duration = Duration::from_secs(1);
    const SLACK: Duration = Duration::from_millis(500);
    let server = Peer::start_via(
        &other.peer_command(),
        &[
            "serve",
            &format!("tcp://{}:0", other.there),
            &LEASE.as_millis().to_string(),
        ],
    )
    .await;
    let bank_url = server.url("bank");
    let client = Runtime::builder()
        .call_timeout(DEADLINE)
        .dead_peer_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let bank: Remote<dyn Bank> = client.lookup_url(&bank_url).await.unwrap();
    let account: Remote<dyn Account> = bank.open("cut-off".into()).await.unwrap();
    assert_eq!(account.deposit(1).await.unwrap(), 1);
    let counter: Remote<dyn Counter> = client.lookup_url(&server.url("counter")).await.unwrap();
    counter.get().await.unwrap();
    assert_eq!(
        run_there(&other, &["dropped", &bank_url]).await.trim(),
        "dropped"
    );

    // A call in flight when the link goes, and a new one after: both hit their deadline.
    let in_flight = tokio::spawn({
        let counter = counter.clone();
        async move {
            let started = Instant::now();
            (counter.sleep(600).await, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    other.partition();
    let cut = Instant::now();
    let started = Instant::now();
    let e = counter.get().await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, RemoteError::Timeout { .. }), "{e:?}");
    assert!(took >= DEADLINE && took < DEADLINE + SLACK, "{took:?}");
    let (r, took) = in_flight.await.unwrap();
    assert!(matches!(r, Err(RemoteError::Timeout { .. })), "{r:?}");
    assert!(took >= DEADLINE && took < DEADLINE + SLACK, "{took:?}");

    // The server, seen from its own host, lets the account go once our lease runs out.
    let dropped = eventually(Duration::from_secs(5), || async {
        run_there(&other, &["dropped", &bank_url])
            .await
            .contains("cut-off")
    })
    .await;
    assert!(dropped, "the lease did not expire during the partition");
    assert!(cut.elapsed() >= LEASE - Duration::from_millis(300));

    // The client gives the silent connection up (see `dead_peer_timeout`)...
    let closed = eventually(Duration::from_secs(5), || async {
        client.connections() == 0
    })
    .await;
    assert!(closed, "the dead connection was kept");
    other.heal();
    // ... so its next call, once the link is back, reconnects at once.
    let healed = Instant::now();
    assert_eq!(counter.get().await.unwrap(), 0);
    assert!(healed.elapsed() < DEADLINE, "{:?}", healed.elapsed());
    // The account went with the lease.
    let e = account.deposit(1).await.unwrap_err();
    assert!(matches!(e, RemoteError::NoSuchObject { .. }), "{e:?}");
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_bind_their_names_again_in_a_restarted_registry() {
    const REBIND: Duration = Duration::from_millis(300);
    let endpoint = fixed_endpoint(Transport::Tcp);
    let mut registry = Peer::start(&["serve", &endpoint]).await;
    // `x` bound by the owner; `hub` rebound over the registry's own hub.
    let owner = Peer::start(&[
        "own-names",
        &endpoint,
        &REBIND.as_millis().to_string(),
        "x",
        "hub",
    ])
    .await;
    assert_eq!(owner.first_line, "bound");
    let x: Remote<dyn Counter> = oxrmi::lookup(&registry.url("x")).await.unwrap();
    assert_eq!(x.add(7).await.unwrap(), 7);
    oxrmi::lookup::<dyn Counter>(&registry.url("hub"))
        .await
        .unwrap();

    registry.kill().await;
    // A new registry at the same endpoint, which binds a hub of its own as it starts.
    let restarted = Instant::now();
    let registry = Peer::start(&["serve", &endpoint]).await;
    let back = eventually(REBIND * 10, || async {
        oxrmi::lookup::<dyn Counter>(&registry.url("x"))
            .await
            .is_ok()
    })
    .await;
    assert!(back, "x was not bound again");
    assert!(restarted.elapsed() < REBIND * 10);
    // The same object as before: the owner kept it.
    let x: Remote<dyn Counter> = oxrmi::lookup(&registry.url("x")).await.unwrap();
    assert_eq!(x.add(1).await.unwrap(), 8);
    // A name someone else bound meanwhile is not taken back.
    tokio::time::sleep(REBIND * 3).await;
    oxrmi::lookup::<dyn Hub>(&registry.url("hub"))
        .await
        .unwrap();
}
