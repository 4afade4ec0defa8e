//! Deadlines: a call never waits past its deadline, and the server stops the handler when the
//! caller gives up or goes away.

use std::time::Duration;

use oxrmi::{Remote, RemoteError};
use oxrmi_tests::Counter;

use crate::harness::{Peer, behaviour, eventually, signal};

behaviour!(an_expired_deadline_cancels_the_handler, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    let started = tokio::time::Instant::now();
    let r = oxrmi::with_timeout(Duration::from_millis(300), counter.sleep(60_000)).await;
    let took = started.elapsed();
    assert!(
        matches!(r, Err(RemoteError::Timeout { millis: 290..=300 })),
        "{r:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The server learns of it and stops the handler (its drop guard counts the stop).
    let stopped = eventually(Duration::from_secs(5), || async {
        counter.cancelled().await.unwrap() == 1
    })
    .await;
    assert!(stopped, "the server kept running the abandoned handler");
});

behaviour!(
    the_runtime_default_deadline_applies,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let client = oxrmi::Runtime::builder()
            .call_timeout(Duration::from_millis(200))
            .start()
            .await
            .unwrap();
        let counter: Remote<dyn Counter> = client.lookup_url(&server.url("counter")).await.unwrap();
        let r = counter.sleep(10_000).await;
        assert!(
            matches!(r, Err(RemoteError::Timeout { millis: 200 })),
            "{r:?}"
        );
        // A deadline longer than the work lets it finish.
        oxrmi::with_timeout(Duration::from_secs(5), counter.sleep(10))
            .await
            .unwrap();
    }
);

behaviour!(the_server_deadline_travels_with_the_call, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    // The caller abandons its future before the deadline: the drop sends a cancel.
    let fut = counter.sleep(60_000);
    let _ = tokio::time::timeout(Duration::from_millis(200), fut).await;
    let stopped = eventually(Duration::from_secs(5), || async {
        counter.cancelled().await.unwrap() == 1
    })
    .await;
    assert!(stopped, "dropping the call did not stop the handler");
});

behaviour!(
    a_caller_that_dies_mid_call_stops_the_handler,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let mut caller = Peer::start(&["sleep", &server.url("counter"), "60000"]).await;
        assert_eq!(caller.first_line, "calling");
        let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        caller.kill().await;
        let stopped = eventually(Duration::from_secs(5), || async {
            counter.cancelled().await.unwrap() == 1
        })
        .await;
        assert!(stopped, "the handler outlived its caller");
    }
);

behaviour!(
    a_zero_buffer_one_way_call_waits_for_receipt,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let buffered = oxrmi::Runtime::builder().start().await.unwrap();
        let zero = oxrmi::Runtime::builder()
            .send_buffer(0)
            .start()
            .await
            .unwrap();
        let b: Remote<dyn Counter> = buffered.lookup_url(&server.url("counter")).await.unwrap();
        let z: Remote<dyn Counter> = zero.lookup_url(&server.url("counter")).await.unwrap();
        z.log("while running".into()).await.unwrap();

        // Freeze the server: it can receive bytes (the kernel buffers them) but not read them.
        signal(server.pid(), "STOP");
        let buffered_result =
            oxrmi::with_timeout(Duration::from_millis(500), b.log("buffered".into())).await;
        let zero_result =
            oxrmi::with_timeout(Duration::from_millis(500), z.log("zero".into())).await;
        signal(server.pid(), "CONT");

        assert_eq!(
            buffered_result,
            Ok(()),
            "a buffered one-way call returns once queued"
        );
        assert!(
            matches!(zero_result, Err(RemoteError::Timeout { millis: 490..=500 })),
            "a zero-buffer one-way call waits for the peer to receive it: {zero_result:?}"
        );
    }
);
