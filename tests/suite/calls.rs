//! Lookup and calls between processes: results, application errors, one-way calls.

use std::time::Duration;

use oxrmi::{Remote, RemoteError};
use oxrmi_tests::{Counter, MathError};

use crate::harness::{Peer, behaviour, eventually};

behaviour!(lookup_and_call, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    assert!(!counter.is_local());
    assert_eq!(counter.add(5).await.unwrap(), 5);
    assert_eq!(counter.add(-2).await.unwrap(), 3);
    assert_eq!(counter.get().await.unwrap(), 3);
    // A second handle from a second lookup is the same object and equal to the first.
    let again: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    assert_eq!(again, counter);
    assert_eq!(again.get().await.unwrap(), 3);
});

behaviour!(application_errors_arrive_intact, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    counter.add(10).await.unwrap();
    assert_eq!(counter.divide(2).await, Ok(5));
    assert_eq!(counter.divide(0).await, Err(MathError::DivideByZero));
});

behaviour!(
    one_way_calls_return_at_once_and_arrive_in_order,
    |t| async move {
        let server = Peer::serve(t).await;
        let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
        for i in 0..50 {
            counter.log(format!("line {i}")).await.unwrap();
        }
        let expected: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
        // Each one-way call runs as its own task, so they may finish in any order; all arrive.
        let arrived = eventually(Duration::from_secs(5), || async {
            let mut got = counter.logged().await.unwrap();
            got.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
            got == expected
        })
        .await;
        assert!(arrived, "one-way calls were lost");
    }
);

behaviour!(large_arguments_travel_as_bytes, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    let data = serde_bytes::ByteBuf::from(vec![7u8; 4 * 1024 * 1024]);
    assert_eq!(
        counter.echo(9, data, 0).await.unwrap(),
        (9, 4 * 1024 * 1024)
    );
});

behaviour!(
    a_frame_over_the_limit_is_refused_before_sending,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let client = oxrmi::Runtime::builder()
            .max_frame_size(64 * 1024)
            .start()
            .await
            .unwrap();
        let counter: Remote<dyn Counter> = client.lookup_url(&server.url("counter")).await.unwrap();
        let data = serde_bytes::ByteBuf::from(vec![1u8; 100 * 1024]);
        let e = counter.echo(1, data, 0).await.unwrap_err();
        assert!(matches!(e, RemoteError::Marshalling { .. }), "{e:?}");
        // The connection is still good.
        assert_eq!(counter.add(1).await.unwrap(), 1);
    }
);

behaviour!(the_server_sees_a_loopback_caller_as_local, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    assert!(counter.caller_is_local().await.unwrap());
});
