//! Resource limits between processes: a server refuses calls beyond its limit of calls in flight
//! per connection, and connections beyond its limit, with `Overloaded`, and serves again once
//! below them; values beyond a decoding limit (declared on an argument, or the runtime's decoded
//! size and collection length) are refused with `LimitExceeded`, on either side of a call.

use std::time::Duration;

use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::{Account, Bank, Counter, Store};

use crate::harness::Peer;

async fn client() -> Runtime {
    Runtime::builder()
        .connect_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn calls_beyond_the_limit_in_flight_are_refused_not_queued() {
    let server = Peer::start(&["serve-limited", "1", "64"]).await;
    let rt = client().await;
    let counter: Remote<dyn Counter> = rt.lookup_url(&server.url("counter")).await.unwrap();
    let a = counter.clone();
    let slow = tokio::spawn(async move { a.sleep(1_500).await });
    // Once the sleep runs on the server (nothing else does), another call is refused at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = tokio::time::Instant::now();
    let e = counter.get().await.expect_err("a second call in flight");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "refused, not queued"
    );
    assert!(
        matches!(&e, RemoteError::Overloaded { limit: 1, what } if what.contains("calls in flight")),
        "{e:?}"
    );
    assert!(e.is_transient());
    slow.await.unwrap().expect("the sleep itself was served");
    // Below the limit again.
    counter.get().await.expect("served once the sleeps ended");
    rt.shutdown();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let server = Peer::start(&["serve-limited", "64", "2"]).await;
    let url = server.url("counter");
    let first = client().await;
    let second = client().await;
    let a: Remote<dyn Counter> = first.lookup_url(&url).await.unwrap();
    let b: Remote<dyn Counter> = second.lookup_url(&url).await.unwrap();
    a.get().await.unwrap();
    b.get().await.unwrap();
    let third = client().await;
    let e = third
        .lookup_url::<dyn Counter>(&url)
        .await
        .expect_err("a third connection");
    assert!(
        matches!(&e, RemoteError::Overloaded { limit: 2, what } if what.contains("connections")),
        "{e:?}"
    );
    // The first two are served as before; when one goes, there is room again.
    a.get().await.unwrap();
    first.shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match third.lookup_url::<dyn Counter>(&url).await {
            Ok(c) => {
                c.get().await.unwrap();
                break;
            }
            Err(RemoteError::Overloaded { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    second.shutdown();
    third.shutdown();
}

/// The `what` and `limit` of a `LimitExceeded`, or a panic naming what came instead.
fn limit_exceeded<T: std::fmt::Debug>(r: Result<T, RemoteError>) -> (String, u64) {
    match r {
        Err(RemoteError::LimitExceeded { what, limit }) => (what, limit),
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}

#[tokio::test]
async fn declared_argument_limits_are_enforced_while_decoding_and_named() {
    let server = Peer::start(&["serve-store", "67108864", "1000000"]).await;
    let store: Remote<dyn Store> = oxrmi::lookup(&server.url("store")).await.unwrap();
    assert_eq!(
        store.put("k".into(), vec!["a".into(); 100]).await.unwrap(),
        100
    );

    let (what, limit) = limit_exceeded(store.put("k".repeat(17), vec![]).await);
    assert_eq!(
        (what.as_str(), limit),
        ("the length of argument `key` of `put`", 16)
    );
    let (what, limit) = limit_exceeded(store.put("k".into(), vec![String::new(); 101]).await);
    assert_eq!(
        (what.as_str(), limit),
        ("the length of argument `values` of `put`", 100)
    );
    // 100 strings of 100 bytes: within the length, beyond the declared 4,096 decoded bytes.
    let (what, limit) = limit_exceeded(store.put("k".into(), vec!["x".repeat(100); 100]).await);
    assert_eq!(
        (what.as_str(), limit),
        ("the decoded size of argument `values` of `put`", 4096)
    );
    // None of the refused calls ran, and the connection goes on serving.
    assert_eq!(store.put("k".into(), vec![]).await.unwrap(), 100);
    // The schema carries the limits, for tools and other languages.
    let schema = <dyn Store as oxrmi::Interface>::schema();
    let put = schema.method("put").unwrap();
    assert_eq!(
        put.to_string(),
        "async fn put(&self, #[limit(len = 16)] key: String, \
         #[limit(len = 100, size = 4096)] values: Vec < String >) -> Result<usize, RemoteError>"
    );
}

#[tokio::test]
async fn a_small_frame_cannot_inflate_past_the_decoded_size_limit() {
    // 1 MiB of decoded data per message on the server.
    let server = Peer::start(&["serve-store", "1048576", "1000000"]).await;
    let store: Remote<dyn Store> = oxrmi::lookup(&server.url("store")).await.unwrap();
    // 100,000 empty strings: about 100 KB on the wire, 2.4 MB as `Vec<String>`.
    let (what, limit) = limit_exceeded(store.count(vec![String::new(); 100_000]).await);
    assert_eq!(
        (what.as_str(), limit),
        (
            "the decoded size of argument `values` of `count` (with what came before it)",
            1_048_576
        )
    );
    assert_eq!(
        store.count(vec![String::new(); 10_000]).await.unwrap(),
        10_000
    );
}

#[tokio::test]
async fn collections_longer_than_the_limit_are_refused() {
    let server = Peer::start(&["serve-store", "67108864", "1000"]).await;
    let store: Remote<dyn Store> = oxrmi::lookup(&server.url("store")).await.unwrap();
    assert_eq!(store.count(vec![String::new(); 1000]).await.unwrap(), 1000);
    let (what, limit) = limit_exceeded(store.count(vec![String::new(); 1001]).await);
    assert_eq!(
        (what.as_str(), limit),
        (
            "the length of a collection in argument `values` of `count`",
            1000
        )
    );
}

#[tokio::test]
async fn a_client_bounds_what_a_reply_may_decode_into() {
    let server = Peer::start(&["serve-store", "67108864", "100000000"]).await;
    let client = Runtime::builder()
        .max_decoded_size(1 << 20)
        .start()
        .await
        .unwrap();
    let store: Remote<dyn Store> = client.lookup_url(&server.url("store")).await.unwrap();
    assert_eq!(store.blanks(1000).await.unwrap().len(), 1000);
    let (what, limit) = limit_exceeded(store.blanks(1_000_000).await);
    assert_eq!(
        (what.as_str(), limit),
        (
            "the decoded size of the result of `blanks` (with what came before it)",
            1 << 20
        )
    );
    assert_eq!(store.blanks(5).await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_peer_cannot_hold_more_leases_than_the_owner_allows() {
    // Each peer may hold leases on 5 of the server's objects; the bank itself is one.
    let server = Peer::start(&["serve-leases", "5"]).await;
    let client = client().await;
    let bank: Remote<dyn Bank> = client.lookup_url(&server.url("bank")).await.unwrap();
    let mut accounts: Vec<Remote<dyn Account>> = Vec::new();
    for i in 0..4 {
        accounts.push(bank.open(format!("owner {i}")).await.unwrap());
    }
    let (what, limit) = limit_exceeded(bank.open("one too many".into()).await);
    assert_eq!(limit, 5);
    assert!(
        what.starts_with(&format!(
            "the objects runtime {} holds leases on",
            client.id()
        )),
        "{what}"
    );
    // The refused account was never handed out: the server dropped it.
    assert!(
        bank.dropped()
            .await
            .unwrap()
            .contains(&"one too many".to_string())
    );
    // Giving one back makes room again (once the release has arrived).
    drop(accounts.pop());
    let reopened = crate::harness::eventually(Duration::from_secs(10), || {
        let bank = bank.clone();
        async move { bank.open("again".into()).await.is_ok() }
    })
    .await;
    assert!(reopened, "the released lease never made room");
    assert_eq!(accounts[0].deposit(7).await.unwrap(), 7);
}

#[tokio::test]
async fn a_runtime_keeps_no_more_handles_from_one_peer_than_it_allows() {
    let server = Peer::start(&["serve", "tcp://127.0.0.1:0"]).await;
    let client = Runtime::builder()
        .max_handles_per_peer(3)
        .start()
        .await
        .unwrap();
    // The bank is the first handle from the server's runtime.
    let bank: Remote<dyn Bank> = client.lookup_url(&server.url("bank")).await.unwrap();
    let a = bank.open("a".into()).await.unwrap();
    let b = bank.open("b".into()).await.unwrap();
    let (what, limit) = limit_exceeded(bank.open("c".into()).await);
    assert_eq!(limit, 3);
    assert!(what.starts_with("the handles this runtime holds"), "{what}");
    // The refused reference was given back: its object is dropped by its owner.
    let dropped = crate::harness::eventually(Duration::from_secs(10), || {
        let bank = bank.clone();
        async move { bank.dropped().await.unwrap().contains(&"c".to_string()) }
    })
    .await;
    assert!(dropped, "the refused account was never released");
    drop(a);
    let more = crate::harness::eventually(Duration::from_secs(10), || {
        let bank = bank.clone();
        async move { bank.open("d".into()).await.is_ok() }
    })
    .await;
    assert!(more, "dropping a handle never made room");
    assert_eq!(b.deposit(1).await.unwrap(), 1);
}
