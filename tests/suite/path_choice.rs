//! Choosing the cheapest path: a runtime on this host is reached over its cheapest endpoint,
//! whatever URL found it; a failing endpoint falls back to the next; a pinned transport is kept.

use oxrmi::introspect::ConnectionReport;
use oxrmi::{Remote, Runtime};
use oxrmi_tests::Counter;

use crate::harness::{Peer, fresh_path};

/// A server listening on TCP, a FIFO, a Unix socket and shared memory, in that order.
async fn serve_on_everything() -> (Peer, Vec<String>) {
    let unix = format!("unix://{}", fresh_path("sock"));
    let fifo = format!("fifo://{}", fresh_path("fifo"));
    let shm = format!("shm://{}", fresh_path("shm"));
    let server = Peer::start(&["serve-many", "tcp://127.0.0.1:0", &fifo, &unix, &shm]).await;
    let eps: Vec<String> = server.first_line.split(' ').map(str::to_string).collect();
    assert_eq!(eps.len(), 4, "{eps:?}");
    (server, eps)
}

/// Removes the file of a local endpoint: connecting there fails from now on.
fn break_endpoint(ep: &str) {
    let ep: oxrmi::Endpoint = ep.parse().unwrap();
    std::fs::remove_file(ep.path().unwrap()).unwrap();
}

/// The connection new calls to the server take, from the client's report.
fn preferred(client: &Runtime) -> ConnectionReport {
    let r = client.report();
    let mut preferred: Vec<ConnectionReport> =
        r.connections.into_iter().filter(|c| c.preferred).collect();
    assert_eq!(preferred.len(), 1, "{preferred:?}");
    preferred.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_over_tcp_moves_calls_to_the_cheapest_local_transport() {
    let (_server, eps) = serve_on_everything().await;
    let client = Runtime::builder().start().await.unwrap();
    let counter: Remote<dyn Counter> = client
        .lookup_url(&format!("{}/counter", eps[0]))
        .await
        .unwrap();
    assert_eq!(counter.add(2).await.unwrap(), 2);
    assert_eq!(counter.add(3).await.unwrap(), 5);
    let used = preferred(&client);
    assert_eq!(used.transport, "shm", "{used:?}");
    assert!(used.calls_sent >= 2, "{used:?}");
    // The lookup itself went where the URL said.
    let r = client.report();
    assert!(r.connections.iter().any(|c| c.transport == "tcp"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_falls_back_to_the_next() {
    let (_server, eps) = serve_on_everything().await;
    // The files of the shared-memory and Unix endpoints disappear: shm fails, then unix, and
    // the FIFO is next.
    break_endpoint(&eps[3]);
    break_endpoint(&eps[2]);
    let client = Runtime::builder().start().await.unwrap();
    let counter: Remote<dyn Counter> = client
        .lookup_url(&format!("{}/counter", eps[0]))
        .await
        .unwrap();
    assert_eq!(counter.add(1).await.unwrap(), 1);
    assert_eq!(preferred(&client).transport, "fifo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_transport_is_kept() {
    let (_server, eps) = serve_on_everything().await;
    for pin in ["tcp", "fifo", "unix"] {
        let client = Runtime::builder().pin_transport(pin).start().await.unwrap();
        let counter: Remote<dyn Counter> = client
            .lookup_url(&format!("{}/counter", eps[0]))
            .await
            .unwrap();
        assert_eq!(counter.get().await.unwrap(), 0);
        assert_eq!(preferred(&client).transport, pin);
    }
    let e = Runtime::builder()
        .pin_transport("carrier-pigeon")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, oxrmi::RemoteError::Setup { .. }), "{e:?}");
}
