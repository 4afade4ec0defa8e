//! The shared-memory transport's own cases: the segment has no name anyone could attach by,
//! and a peer that corrupts the ring is dropped while everyone else is served.

use std::collections::BTreeSet;
use std::time::Duration;

use oxrmi::__private::shm_testing::RawShmClient;
use oxrmi::Remote;
use oxrmi_tests::Counter;

use crate::harness::{Peer, Transport};

/// The entries of /dev/shm (empty if it does not exist).
fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The System V shared-memory segments created by process `pid` (`/proc/sysvipc/shm`, the
/// table `ipcs -m` prints: its creator pid is the 8th column).
fn sysv_segments_of(pid: i32) -> usize {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(7) == Some(&pid.to_string()))
        .count()
}

/// The memfd mappings of process `pid` (`/proc/PID/maps` shows them as `/memfd:NAME (deleted)`).
fn memfd_mappings(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("/memfd:"))
        .map(str::to_string)
        .collect()
}

/// The rendezvous socket's path of a peer serving shared memory.
fn rendezvous(server: &Peer) -> String {
    let ep: oxrmi::Endpoint = server.endpoint().parse().unwrap();
    ep.path().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_segment_has_no_name_in_dev_shm_or_system_v() {
    let before = dev_shm();
    let server = Peer::serve(Transport::Shm).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    assert_eq!(counter.add(1).await.unwrap(), 1);
    // In use now: the server maps a memfd, a file with no name anyone could open.
    let maps = memfd_mappings(server.pid());
    assert!(!maps.is_empty(), "the server maps no memfd");
    assert!(maps.iter().all(|m| m.ends_with("(deleted)")), "{maps:?}");
    assert_eq!(dev_shm(), before, "a segment appeared in /dev/shm");
    assert_eq!(
        sysv_segments_of(server.pid()),
        0,
        "the server made a System V segment"
    );
    assert_eq!(sysv_segments_of(std::process::id() as i32), 0);
    if let Ok(out) = std::process::Command::new("ipcs").arg("-m").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(&format!(" {} ", server.pid())),
            "ipcs -m lists the server: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_with_corrupt_indices_gets_its_writer_dropped() {
    let server = Peer::serve(Transport::Shm).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    let path = rendezvous(&server);
    // (head, tail) pairs no honest writer produces: far beyond the capacity, behind the tail,
    // at the very end of the u64 range.
    for (head, tail) in [
        (1 << 40, 0),
        (5, 10),
        (u64::MAX, 0),
        (u64::MAX, u64::MAX - 3),
    ] {
        let client = tokio::task::spawn_blocking({
            let path = path.clone();
            move || {
                let client = RawShmClient::connect(&path).expect("connect a raw shm client");
                client.corrupt_indices(head, tail);
                client.wait_peer_closed(Duration::from_secs(10))
            }
        });
        assert!(
            client.await.unwrap(),
            "the server kept a peer that wrote head {head}, tail {tail}"
        );
        // Everyone else is still served.
        assert!(counter.add(1).await.is_ok());
    }
    // And garbage bytes in an honest ring: refused at the preamble.
    let path2 = path.clone();
    let closed = tokio::task::spawn_blocking(move || {
        let mut client = RawShmClient::connect(&path2).unwrap();
        client.write_bytes(&[0xff; 64]).unwrap();
        client.wait_peer_closed(Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(closed, "the server kept a peer that sent garbage");
    assert_eq!(counter.get().await.unwrap(), 4);
    let fresh: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    assert_eq!(fresh.get().await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sabotages_its_wake_ups_stalls_nobody() {
    let server = Peer::serve(Transport::Shm).await;
    let counter: Remote<dyn Counter> = oxrmi::lookup(&server.url("counter")).await.unwrap();
    let path = rendezvous(&server);
    // More such peers at once than the server has threads: were a wake-up of any of them to
    // block, the server would serve nobody.
    let hostile = tokio::task::spawn_blocking(move || {
        let clients: Vec<RawShmClient> = (0..4)
            .map(|_| {
                let client = RawShmClient::connect(&path).expect("connect a raw shm client");
                client.sabotage_wake_ups().expect("sabotage the wake-ups");
                client
            })
            .collect();
        // Garbage: the server answers with an Error frame (a publication, and so a wake-up,
        // with the flag raised) and closes the link.
        clients
            .into_iter()
            .map(|mut client| {
                client.write_bytes(&[0xff; 64]).unwrap();
                client.wait_peer_closed(Duration::from_secs(10))
            })
            .collect::<Vec<bool>>()
    });
    let closed = tokio::time::timeout(Duration::from_secs(30), hostile)
        .await
        .expect("the hostile peers hung")
        .unwrap();
    assert!(
        closed.iter().all(|c| *c),
        "the server kept a hostile peer: {closed:?}"
    );
    let add = tokio::time::timeout(Duration::from_secs(10), counter.add(1)).await;
    assert_eq!(add.expect("the server stalled").unwrap(), 1);
}
