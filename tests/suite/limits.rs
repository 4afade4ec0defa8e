//! Resource limits between processes: a server refuses calls beyond its limit of calls in flight
//! per connection, and connections beyond its limit, with `Overloaded`, and serves again once
//! below them.

use std::time::Duration;

use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::Counter;

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
