//! Slow and stalling peers, and slow handlers: a server (`oxrmi-test-peer serve-slow`, 4 worker
//! threads) must not hold memory or tasks beyond its limits for peers that handshake a byte at a
//! time, stop inside a frame, stop reading their replies, or flood one-way calls, and slow or
//! blocked handlers must not starve other callers. Each test measures the server process: its
//! resident and virtual memory (`/proc/PID/status`), its file descriptors, its own report, and
//! whether it still serves a well-behaved client promptly.

use std::time::Duration;

use oxrmi::__private::RawLink;
use oxrmi::{Remote, RemoteError, Runtime};
use oxrmi_tests::{Counter, Slow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::harness::{Peer, eventually, fds, status_kib};
use crate::hostile::{handshake, raw};

/// A client runtime of the test process (its own connection to the server).
async fn client() -> Runtime {
    Runtime::builder()
        .connect_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap()
}

/// A well-behaved client is served, and promptly: a fresh runtime (so a fresh connection) looks
/// up the counter and calls it within `limit`.
async fn served_promptly(server: &Peer, limit: Duration) {
    let start = Instant::now();
    let rt = client().await;
    let counter: Remote<dyn Counter> =
        tokio::time::timeout(limit, rt.lookup_url(&server.url("counter")))
            .await
            .expect("a good client's lookup took too long")
            .unwrap();
    tokio::time::timeout(limit, counter.add(1))
        .await
        .expect("a good client's call took too long")
        .unwrap();
    assert!(start.elapsed() < limit, "served in {:?}", start.elapsed());
    rt.shutdown();
}

/// The server's report (through the default runtime: one more connection).
async fn report(server: &Peer) -> oxrmi::introspect::Report {
    let endpoint: oxrmi::Endpoint = server.endpoint().parse().unwrap();
    oxrmi::introspect::locate(&endpoint).report().await.unwrap()
}

/// A raw connection that has done the handshake (the server's bytes are left unread).
async fn raw_after_handshake(server: &Peer) -> RawLink {
    let mut s = raw(server).await;
    s.write_all(&handshake()).await.unwrap();
    s
}

/// Whether the server closed `s`: everything it sent read, then end of stream, within `limit`.
async fn closed_by_server(s: &mut RawLink, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A msgpack uint64 (always 9 bytes: the decoder takes any width).
fn uint(out: &mut Vec<u8>, v: u64) {
    out.push(0xcf);
    out.extend_from_slice(&v.to_be_bytes());
}

/// A Call frame (docs/PROTOCOL.md): `[call, object, method, timeout_us, flags]`, then the
/// arguments `[arg]` for a method of one integer argument.
fn call_frame(call: u64, object: u64, method: &str, arg: u64, flags: u8) -> Vec<u8> {
    let mut body = vec![0x02, 0x95];
    uint(&mut body, call);
    uint(&mut body, object);
    body.push(0xa0 | method.len() as u8);
    body.extend_from_slice(method.as_bytes());
    uint(&mut body, 30_000_000);
    body.push(flags);
    body.push(0x91);
    uint(&mut body, arg);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The id of the server's `slow` object, from its report.
async fn slow_id(server: &Peer) -> u64 {
    report(server)
        .await
        .objects
        .iter()
        .find(|o| o.interface == "oxrmi.test.Slow")
        .expect("the slow object in the report")
        .id
}

/// The p99 of `samples`.
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99).div_ceil(100) - 1]
}

#[tokio::test]
async fn peers_that_never_finish_the_handshake_are_dropped_at_the_handshake_timeout() {
    let server = Peer::start(&["serve-slow", "handshake_ms=3000"]).await;
    let pid = server.pid();
    served_promptly(&server, Duration::from_secs(2)).await;
    let before = fds(pid);
    // 150 peers send nothing; 150 send the preamble a byte every 500 ms (it would take 4 s).
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(raw(&server).await);
    }
    let mut trickling = Vec::new();
    for _ in 0..150 {
        let mut s = raw(&server).await;
        trickling.push(tokio::spawn(async move {
            for b in handshake() {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            s
        }));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            fds(pid) >= before + 280
        })
        .await,
        "the server did not accept them all: {} fds, {before} before",
        fds(pid)
    );
    // Meanwhile a good client is served.
    served_promptly(&server, Duration::from_secs(1)).await;
    // At the timeout every one of them is dropped: the server's sockets are closed...
    assert!(
        eventually(Duration::from_secs(10), || async { fds(pid) <= before + 5 }).await,
        "the slowloris connections are still open: {} fds, {before} before",
        fds(pid)
    );
    // ... and the peers see it.
    for s in silent.iter_mut().take(10) {
        assert!(closed_by_server(s, Duration::from_secs(5)).await);
    }
    served_promptly(&server, Duration::from_secs(1)).await;
    for t in trickling {
        t.abort();
    }
}

#[tokio::test]
async fn handshakes_in_progress_are_bounded_like_connections() {
    let server = Peer::start(&["serve-slow", "connections=20", "handshake_ms=5000"]).await;
    let pid = server.pid();
    let before = fds(pid);
    // 60 silent peers: 20 wait for the handshake timeout, the others are dropped at once.
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(raw(&server).await);
    }
    let mut dropped = 0;
    for s in &mut silent {
        if closed_by_server(s, Duration::from_millis(50)).await {
            dropped += 1;
        }
    }
    assert!(dropped >= 40, "{dropped} of 60 dropped at once");
    assert!(
        fds(pid) <= before + 20,
        "{} fds, {before} before: more than 20 handshakes held",
        fds(pid)
    );
}

#[tokio::test]
async fn peers_that_stop_inside_a_large_frame_hold_neither_its_length_nor_the_connection() {
    let server = Peer::start(&["serve-slow", "stall_ms=3000"]).await;
    let pid = server.pid();
    served_promptly(&server, Duration::from_secs(2)).await;
    let (rss, vm, before) = (
        status_kib(pid, "VmRSS"),
        status_kib(pid, "VmSize"),
        fds(pid),
    );
    // 200 peers announce a frame of the largest size (16 MiB) and send 4 KiB of it; half stop
    // there, half go on at a byte a second (a slow link, not a stall).
    let announce = |s: &mut Vec<u8>| {
        s.extend_from_slice(&(16u32 << 20).to_be_bytes());
        s.push(0x02);
        s.extend_from_slice(&[0x95; 4096]);
    };
    let mut stopped = Vec::new();
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = raw(&server).await;
        let mut bytes = handshake();
        announce(&mut bytes);
        s.write_all(&bytes).await.unwrap();
        if i % 2 == 0 {
            stopped.push(s);
        } else {
            slow.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if s.write_all(&[0x95]).await.is_err() {
                        return;
                    }
                }
            }));
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            fds(pid) >= before + 190
        })
        .await,
        "the server did not accept them all"
    );
    served_promptly(&server, Duration::from_secs(1)).await;
    // 200 × 16 MiB would be 3.2 GiB of address space (and of commit charge where overcommit is
    // off); what arrived is under 1 MiB.
    let (rss_now, vm_now) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmSize"));
    eprintln!("200 stalled 16 MiB frames: RSS {rss} → {rss_now} KiB, VmSize {vm} → {vm_now} KiB");
    assert!(
        rss_now < rss + 64 * 1024,
        "RSS grew from {rss} to {rss_now} KiB"
    );
    assert!(
        vm_now < vm + 1024 * 1024,
        "VmSize grew from {vm} to {vm_now} KiB"
    );
    // The stopped ones are closed at the stall timeout; the slow ones are not.
    assert!(
        eventually(Duration::from_secs(10), || async {
            fds(pid) <= before + 105
        })
        .await,
        "the stalled connections are still open: {} fds, {before} before",
        fds(pid)
    );
    assert!(
        closed_by_server(&mut stopped[0], Duration::from_secs(5)).await,
        "a stalled peer was not disconnected"
    );
    assert!(
        fds(pid) >= before + 95,
        "a slow but moving frame was cut: {} fds, {before} before",
        fds(pid)
    );
    served_promptly(&server, Duration::from_secs(1)).await;
    for t in slow {
        t.abort();
    }
    assert!(
        eventually(Duration::from_secs(10), || async { fds(pid) <= before + 5 }).await,
        "connections left open after the peers went"
    );
}

#[tokio::test]
async fn a_peer_that_reads_no_replies_holds_bounded_memory_and_everything_goes_with_it() {
    // Replies queued or waiting per connection: 8 MiB; stall timeout long enough to measure.
    let server = Peer::start(&["serve-slow", "reply_bytes=8388608", "stall_ms=20000"]).await;
    let pid = server.pid();
    let observer = client().await;
    let slow: Remote<dyn Slow> = observer.lookup_url(&server.url("slow")).await.unwrap();
    // Warm up the large-frame path, so the spare buffers count in the baseline.
    for _ in 0..4 {
        slow.bytes(1 << 20).await.unwrap();
    }
    let object = slow_id(&server).await;
    let (rss, before) = (status_kib(pid, "VmRSS"), fds(pid));
    let connections = report(&server).await.connections.len();
    // 300 calls, each answered with 1 MiB; the peer never reads.
    let mut s = raw_after_handshake(&server).await;
    let mut calls = Vec::new();
    for call in 1..=300 {
        calls.extend_from_slice(&call_frame(call, object, "bytes", 1 << 20, 0));
    }
    s.write_all(&calls).await.unwrap();
    let served = |r: &oxrmi::introspect::Report| {
        r.connections
            .iter()
            .find(|c| c.peer.contains("abababab"))
            .map(|c| c.calls_served)
    };
    // The peak, sampled while the server reads the calls and for a second after.
    let peak = &std::cell::Cell::new(rss);
    let srv = &server;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            peak.set(peak.get().max(status_kib(pid, "VmRSS")));
            served(&report(srv).await) == Some(300)
        })
        .await,
        "the server did not read the stalled peer's calls: {:?}",
        served(&report(&server).await)
    );
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(1) {
        peak.set(peak.get().max(status_kib(pid, "VmRSS")));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_now = peak.get();
    eprintln!("300 unread 1 MiB replies: RSS {rss} → {rss_now} KiB at most");
    assert!(
        rss_now < rss + 64 * 1024,
        "RSS grew from {rss} to {rss_now} KiB: unread replies are not bounded"
    );
    // Others are served, on the same object too.
    served_promptly(&server, Duration::from_secs(1)).await;
    tokio::time::timeout(Duration::from_secs(1), slow.ping())
        .await
        .expect("the slow object answers others")
        .unwrap();
    // The peer goes: its connection, socket and queued replies go with it.
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || async {
            report(&server).await.connections.len() == connections && fds(pid) <= before
        })
        .await,
        "the stalled peer's connection outlived it: {} fds, {before} before",
        fds(pid)
    );
    observer.shutdown();
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_disconnected_at_the_stall_timeout() {
    let server = Peer::start(&["serve-slow", "reply_bytes=8388608", "stall_ms=2000"]).await;
    let pid = server.pid();
    let observer = client().await;
    let _: Remote<dyn Slow> = observer.lookup_url(&server.url("slow")).await.unwrap();
    let object = slow_id(&server).await;
    let before = fds(pid);
    let mut s = raw_after_handshake(&server).await;
    let mut calls = Vec::new();
    for call in 1..=64 {
        calls.extend_from_slice(&call_frame(call, object, "bytes", 1 << 20, 0));
    }
    s.write_all(&calls).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { fds(pid) > before }).await,
        "the raw connection was not accepted"
    );
    // It reads nothing: at the stall timeout the server closes the connection (log line
    // "the peer stopped reading"), though the peer keeps its end open.
    assert!(
        eventually(Duration::from_secs(15), || async { fds(pid) <= before }).await,
        "the server kept a connection whose peer reads nothing: {} fds, {before} before",
        fds(pid)
    );
    served_promptly(&server, Duration::from_secs(1)).await;
    drop(s);
    observer.shutdown();
}

#[tokio::test]
async fn one_way_calls_beyond_the_limit_in_flight_are_dropped_not_queued() {
    let server = Peer::start(&["serve-slow", "calls=8"]).await;
    let flooder = client().await;
    let slow: Remote<dyn Slow> = flooder.lookup_url(&server.url("slow")).await.unwrap();
    let observer = client().await;
    let watch: Remote<dyn Slow> = observer.lookup_url(&server.url("slow")).await.unwrap();
    // One-way calls of 3 s each on one connection, 50 at a time, until 8 run (the limit; a
    // call of the runtime's own, such as a lease renewal, may hold a place for a moment).
    let sent = &std::cell::Cell::new(0);
    let (flood, watching) = (&slow, &watch);
    assert!(
        eventually(Duration::from_secs(2), || async move {
            for _ in 0..50 {
                flood.tick(3_000).await.unwrap();
            }
            sent.set(sent.get() + 50);
            watching.ticks().await.unwrap().0 >= 8
        })
        .await,
        "fewer than 8 one-way calls run"
    );
    // While they run, a two-way call on the same connection is refused at once.
    let e = slow
        .ping()
        .await
        .expect_err("the connection is at its limit");
    assert!(
        matches!(&e, RemoteError::Overloaded { limit: 8, .. }),
        "{e:?}"
    );
    // The rest were dropped, not queued: once these finish, nothing more starts.
    assert!(
        eventually(Duration::from_secs(6), || async {
            let (s, f, _) = watch.ticks().await.unwrap();
            s == f
        })
        .await
    );
    let (started, finished, most) = watch.ticks().await.unwrap();
    assert_eq!(
        (started, finished, most),
        (8, 8, 8),
        "of {} one-way calls: started, finished, most at once",
        sent.get()
    );
    // And the connection serves again.
    slow.ping().await.unwrap();
    flooder.shutdown();
    observer.shutdown();
}

#[tokio::test]
async fn a_thousand_sleeping_handlers_do_not_delay_a_fast_call() {
    let server = Peer::start(&["serve-slow"]).await;
    let rt = client().await;
    let slow: Remote<dyn Slow> = rt.lookup_url(&server.url("slow")).await.unwrap();
    let counter: Remote<dyn Counter> = rt.lookup_url(&server.url("counter")).await.unwrap();
    let naps: Vec<_> = (0..1000)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move { slow.nap(5_000).await })
        })
        .collect();
    let observer = client().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            report(&server)
                .await
                .connections
                .iter()
                .any(|c| c.serving >= 1000)
        })
        .await,
        "the naps did not all start"
    );
    // Fast calls on the same connection, to the same object and to another one.
    let mut samples = Vec::new();
    for i in 0..100 {
        let start = Instant::now();
        if i % 2 == 0 {
            slow.ping().await.unwrap();
        } else {
            counter.get().await.unwrap();
        }
        samples.push(start.elapsed());
    }
    let p99 = p99(samples);
    eprintln!("fast calls among 1,000 sleeping ones: p99 {p99:?}");
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    for n in naps {
        n.await.unwrap().unwrap();
    }
    rt.shutdown();
    observer.shutdown();
}

#[tokio::test]
async fn handlers_that_block_the_recommended_way_starve_no_one() {
    // 4 worker threads; 2 handlers block in `block_in_place` and 10 in `spawn_blocking` (12
    // blocked threads). A handler that blocks its worker thread outright can stall every
    // connection (ARCHITECTURE.md, "Handlers must not block"), so that is not what is tested.
    let server = Peer::start(&["serve-slow"]).await;
    let blocker = client().await;
    let slow: Remote<dyn Slow> = blocker.lookup_url(&server.url("slow")).await.unwrap();
    let other = client().await;
    let counter: Remote<dyn Counter> = other.lookup_url(&server.url("counter")).await.unwrap();
    let start = Instant::now();
    let mut blocked: Vec<_> = (0..2)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move { slow.block_in_place(3_000).await })
        })
        .collect();
    blocked.extend((0..10).map(|_| {
        let slow = slow.clone();
        tokio::spawn(async move { slow.block_aside(3_000).await })
    }));
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_millis(2_000) {
        let t = Instant::now();
        counter.get().await.unwrap();
        slow.ping().await.unwrap();
        samples.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new connection is served too.
    served_promptly(&server, Duration::from_secs(1)).await;
    assert!(
        start.elapsed() < Duration::from_millis(2_900),
        "measured while the handlers still block"
    );
    let worst = samples.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{} call pairs while 12 handlers blocked threads: worst {worst:?}",
        samples.len()
    );
    // Starved, a call would wait for a blocked thread: 3 s.
    assert!(samples.len() >= 10, "{} call pairs in 2 s", samples.len());
    assert!(worst < Duration::from_millis(500), "worst {worst:?}");
    for b in blocked {
        b.await.unwrap().unwrap();
    }
    blocker.shutdown();
    other.shutdown();
}
