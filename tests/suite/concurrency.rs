//! Many calls at once over one connection.

use std::collections::HashSet;
use std::time::Duration;

use oxrmi::Remote;
use oxrmi_tests::Counter;

use crate::harness::{Peer, behaviour};

behaviour!(
    two_hundred_concurrent_callers_get_their_own_replies,
    |t| async move {
        let server = Peer::serve(t).await;
        let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
        let mut tasks = Vec::new();
        for tag in 0..200u64 {
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                // Replies come back in any order: later callers sleep less.
                let micros = (200 - tag) * 50;
                let data = serde_bytes::ByteBuf::from(vec![0u8; tag as usize]);
                counter.echo(tag, data, micros).await.unwrap()
            }));
        }
        let mut seen = HashSet::new();
        for task in tasks {
            let (tag, len) = task.await.unwrap();
            assert_eq!(tag as usize, len, "a reply went to the wrong caller");
            assert!(seen.insert(tag), "reply {tag} arrived twice");
        }
        assert_eq!(seen.len(), 200);
    }
);

behaviour!(a_slow_call_does_not_block_another, |t| async move {
    let server = Peer::serve(t).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    let slow = tokio::spawn({
        let counter = counter.clone();
        async move { counter.sleep(3_000).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(counter.add(1).await.unwrap(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!slow.is_finished());
    slow.abort();
});
