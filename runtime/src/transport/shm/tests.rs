use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rendezvous::{self, Offer, Segment};
use super::ring::{Layout, ends};
use super::stream::{Role, ShmReader, ShmWriter, split};
use super::wake::{self, Outgoing};
use super::*;
use crate::transport::test_pattern as pattern;

const SMALL: u64 = 4096;

fn temp_path(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("oxrmi-unit-shm-{}-{name}.sock", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

/// Both ends of one segment in this process, joined by a socket pair: (client, server).
fn pair(capacity: u64, spin: Duration) -> ((ShmReader, ShmWriter), (ShmReader, ShmWriter)) {
    let layout = Layout::new(capacity, capacity).unwrap();
    let created = rendezvous::create(layout).unwrap();
    let server = Outgoing::new().unwrap();
    // What SCM_RIGHTS would give the other side: descriptors of the same open files.
    let passed = |ends: [BorrowedFd<'_>; 2]| ends.map(|fd| fd.try_clone_to_owned().unwrap());
    let to_server = passed(created.outgoing.read_ends());
    let to_client = passed(server.read_ends());
    let server_segment = Segment {
        map: created.map.clone(),
        layout,
        wakes: server.with_peer(to_server),
    };
    let client_segment = created.accepted(to_client);
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let client = split(client_segment, Role::Client, a.into(), spin).unwrap();
    let server = split(server_segment, Role::Server, b.into(), spin).unwrap();
    (client, server)
}

#[test]
fn the_ring_wraps_around_with_odd_sizes() {
    let layout = Layout::new(SMALL, SMALL).unwrap();
    let created = rendezvous::create(layout).unwrap();
    let (mut p, mut c) = ends(created.map.clone(), &layout, 0);
    let data = pattern(100_000);
    let mut got = Vec::new();
    let mut sent = 0;
    let mut chunk = 1;
    let mut buf = vec![0u8; 5000];
    while got.len() < data.len() {
        // Odd chunk sizes so writes and reads straddle the end of the ring in every way.
        chunk = (chunk * 31 + 17) % 4099 + 1;
        let end = (sent + chunk).min(data.len());
        sent += p.write(&data[sent..end]).unwrap();
        let want = (chunk * 13 % 3001) + 1;
        let n = c.read_slice(&mut buf[..want]).unwrap();
        got.extend_from_slice(&buf[..n]);
        if sent == data.len() {
            let n = c.read_slice(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, data);
    assert_eq!(p.free().unwrap(), SMALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_ring_streams_through_both_ways() {
    for spin in [Duration::ZERO, Duration::from_micros(30)] {
        let ((mut cr, mut cw), (mut sr, mut sw)) = pair(SMALL, spin);
        let data = pattern(1 << 20);
        let d2 = data.clone();
        let writer = tokio::spawn(async move {
            cw.write_all(&d2).await.unwrap();
            cw.shutdown().await.unwrap();
            cw
        });
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.unwrap();
        assert!(got == data, "the bytes differ");
        let _cw = writer.await.unwrap();
        // And back, the other way.
        let d3 = data.clone();
        let back = tokio::spawn(async move {
            sw.write_all(&d3).await.unwrap();
            sw
        });
        let mut got = vec![0u8; data.len()];
        cr.read_exact(&mut got).await.unwrap();
        assert!(got == data, "the bytes differ on the way back");
        drop(back.await.unwrap());
        // The server's writer dropped: end of stream.
        assert_eq!(cr.read(&mut [0u8; 8]).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn the_socket_closing_means_the_peer_is_gone() {
    let ((cr, cw), (mut sr, mut sw)) = pair(SMALL, Duration::ZERO);
    let mut cw = cw;
    cw.write_all(b"bye").await.unwrap();
    // Simulate death: the socket closes but the rings are left exactly as they were (a dead
    // process runs no Drop). Take the socket away from under the halves by leaking them and
    // closing their descriptors through a shutdown of the shared socket.
    let sock = cr.sock_for_tests();
    rustix::net::shutdown(sock, rustix::net::Shutdown::Both).unwrap();
    std::mem::forget(cr);
    std::mem::forget(cw);
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), sr.read_to_end(&mut got))
        .await
        .expect("the reader hung")
        .unwrap();
    assert_eq!(got, b"bye");
    // The writer fills the ring, then finds the peer gone instead of waiting for ever.
    let big = vec![0u8; 3 * SMALL as usize];
    let e = tokio::time::timeout(Duration::from_secs(5), sw.write_all(&big))
        .await
        .expect("the writer hung")
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn corrupt_indices_are_invalid_data_never_a_panic() {
    // (what, head, tail) written over a fresh ring.
    let cases = [
        ("head far beyond tail + capacity", SMALL * 3, 0),
        ("head at u64::MAX", u64::MAX, 0),
        ("tail beyond head", 10, 20),
        ("tail moved under the consumer", 10, 5),
        ("head just past capacity", SMALL + 1, 0),
    ];
    for (what, head, tail) in cases {
        let ((_cr, cw), (mut sr, _sw)) = pair(SMALL, Duration::ZERO);
        cw.ring_for_tests().corrupt(head, tail);
        let e = tokio::time::timeout(Duration::from_secs(5), sr.read(&mut [0u8; 64]))
            .await
            .expect("the reader hung")
            .expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}");
    }
    // Head moving backwards after data was seen.
    let ((_cr, mut cw), (mut sr, _sw)) = pair(SMALL, Duration::ZERO);
    cw.write_all(&[1; 100]).await.unwrap();
    let mut buf = [0u8; 50];
    sr.read_exact(&mut buf).await.unwrap();
    cw.ring_for_tests().corrupt(60, 50);
    let e = sr.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    // The writer's side: the consumer's tail beyond our head, seen once the writer needs more
    // room than it knows of (before, it does not look).
    let ((_cr, mut cw), (sr, _sw)) = pair(SMALL, Duration::ZERO);
    let (p, _) = ends(sr.map_for_tests(), &Layout::new(SMALL, SMALL).unwrap(), 0);
    p.corrupt(0, u64::MAX / 2);
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        cw.write_all(&[1; SMALL as usize + 1]),
    )
    .await
    .expect("the writer hung")
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    // And our own head changed behind our back, on any write.
    let ((_cr, mut cw), (sr, _sw)) = pair(SMALL, Duration::ZERO);
    let (p, _) = ends(sr.map_for_tests(), &Layout::new(SMALL, SMALL).unwrap(), 0);
    p.corrupt(7, 0);
    let e = cw.write(b"x").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn a_write_reads_the_consumers_tail_only_when_the_room_it_knows_of_is_too_small() {
    let layout = Layout::new(SMALL, SMALL).unwrap();
    let created = rendezvous::create(layout).unwrap();
    let (mut p, mut c) = ends(created.map.clone(), &layout, 0);
    let mut out = vec![0u8; SMALL as usize];
    assert_eq!(p.write(&[1; 3000]).unwrap(), 3000);
    assert_eq!(c.read_slice(&mut out).unwrap(), 3000);
    // The consumer freed everything; the producer has not looked, and counts on the 1096 bytes
    // of room it knows of: within them it writes without looking, beyond them it looks and
    // finds the space freed.
    assert_eq!(p.write(&[2; 1000]).unwrap(), 1000);
    assert_eq!(p.write(&[3; 2000]).unwrap(), 2000);
    assert_eq!(c.read_slice(&mut out).unwrap(), 3000);
    assert!(out[..1000].iter().all(|&b| b == 2) && out[1000..3000].iter().all(|&b| b == 3));
    // Garbage in the tail is not even seen while the known room suffices (a write reading the
    // tail every time would fail here), and is caught once the producer needs to look.
    p.corrupt(6000, u64::MAX / 2);
    let known = (SMALL - (6000 - 3000)) as usize;
    assert_eq!(p.write(&vec![4; known]).unwrap(), known);
    assert_eq!(p.write(&[5; 1]), Err(super::ring::Corrupt));
}

/// A memfd for an offer, built by hand so it can be wrong in one way at a time.
fn hand_made(len: u64, seals: rustix::fs::SealFlags, header: Option<Layout>) -> OwnedFd {
    use rustix::fs::MemfdFlags;
    let fd =
        rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    }
    if let Some(layout) = header {
        let map = super::segment::Mapping::map(fd.as_fd(), len as usize).unwrap();
        layout.write_header(&map);
    }
    fd
}

fn offer(layout: &Layout, memfd: OwnedFd) -> Offer {
    let read_end = || rustix::pipe::pipe().unwrap().0;
    Offer {
        bytes: rendezvous::offer_bytes(layout),
        memfd,
        wakes: [read_end(), read_end()],
    }
}

#[test]
fn the_receiver_refuses_unsealed_missized_or_misdeclared_segments() {
    use rustix::fs::SealFlags;
    let layout = Layout::new(SMALL, SMALL).unwrap();
    let len = layout.total_len().unwrap();
    let sealed = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    let good = rendezvous::verify(offer(&layout, hand_made(len, sealed, Some(layout))));
    assert!(good.is_ok(), "a good offer was refused");

    let cases: Vec<(&str, Offer)> = vec![
        (
            "no seals",
            offer(&layout, hand_made(len, SealFlags::empty(), Some(layout))),
        ),
        (
            "only SEAL_GROW",
            offer(&layout, hand_made(len, SealFlags::GROW, Some(layout))),
        ),
        (
            "too small",
            offer(&layout, hand_made(len - 4096, sealed, None)),
        ),
        (
            "too large",
            offer(&layout, hand_made(len + 4096, sealed, Some(layout))),
        ),
        ("no header", offer(&layout, hand_made(len, sealed, None))),
        ("header with other capacities", {
            let other = Layout::new(SMALL, SMALL * 2).unwrap();
            let fd = hand_made(other.total_len().unwrap(), sealed, Some(layout));
            offer(&other, fd)
        }),
        ("capacity not a power of two", {
            let mut o = offer(&layout, hand_made(len, sealed, Some(layout)));
            o.bytes[16..24].copy_from_slice(&5000u64.to_le_bytes());
            o
        }),
        ("capacity beyond the maximum", {
            let mut o = offer(&layout, hand_made(len, sealed, Some(layout)));
            o.bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
            o
        }),
        ("bad magic", {
            let mut o = offer(&layout, hand_made(len, sealed, Some(layout)));
            o.bytes[0] ^= 0xff;
            o
        }),
        ("an eventfd for a pipe", {
            let mut o = offer(&layout, hand_made(len, sealed, Some(layout)));
            o.wakes[1] = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
            o
        }),
        ("the write end of a pipe for its read end", {
            let mut o = offer(&layout, hand_made(len, sealed, Some(layout)));
            o.wakes[0] = rustix::pipe::pipe().unwrap().1;
            o
        }),
        ("a plain file for the segment", {
            let file = std::fs::File::open("/proc/self/status").unwrap();
            offer(&layout, file.into())
        }),
    ];
    for (what, o) in cases {
        let e = rendezvous::verify(o)
            .err()
            .unwrap_or_else(|| panic!("{what} passed"));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
    }
}

/// Sends `bytes` with `fds` the way a server answers, however wrong.
fn answer_with(sock: &std::os::unix::net::UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    let io = [std::io::IoSlice::new(bytes)];
    rustix::net::sendmsg(sock, &io, &mut control, SendFlags::empty()).unwrap();
}

#[test]
fn the_client_refuses_an_answer_without_the_read_ends_of_two_pipes() {
    let (r1, w1) = rustix::pipe::pipe().unwrap();
    let (r2, _w2) = rustix::pipe::pipe().unwrap();
    let eventfd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let accepted = [rendezvous::ACCEPTED];
    let cases: Vec<(&str, Vec<u8>, Vec<BorrowedFd<'_>>)> = vec![
        ("no descriptors", accepted.to_vec(), vec![]),
        ("one descriptor", accepted.to_vec(), vec![r1.as_fd()]),
        (
            "three descriptors",
            accepted.to_vec(),
            vec![r1.as_fd(), r2.as_fd(), r2.as_fd()],
        ),
        (
            "a write end",
            accepted.to_vec(),
            vec![r1.as_fd(), w1.as_fd()],
        ),
        (
            "an eventfd",
            accepted.to_vec(),
            vec![eventfd.as_fd(), r2.as_fd()],
        ),
        ("another byte", vec![0x15], vec![r1.as_fd(), r2.as_fd()]),
    ];
    for (what, bytes, fds) in cases {
        let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        answer_with(&server, &bytes, &fds);
        let e = rendezvous::recv_answer(client.as_fd()).expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
    }
    // A server that refuses closes the socket.
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(server);
    let e = rendezvous::recv_answer(client.as_fd()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    // And the answer a server gives passes.
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    answer_with(&server, &accepted, &[r1.as_fd(), r2.as_fd()]);
    assert!(rendezvous::recv_answer(client.as_fd()).is_ok());
}

fn dev_shm_entries() -> Vec<std::path::PathBuf> {
    match std::fs::read_dir("/dev/shm") {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_accept_exchange_bytes_and_leave_no_name_in_dev_shm() {
    let path = temp_path("e2e");
    let listener = ShmTransport::bind(&path, &UnixAccess::default()).unwrap();
    assert_eq!(listener.endpoint(), Endpoint::shm(path.clone()));
    let before = dev_shm_entries();
    let server = tokio::spawn(async move {
        let mut link = listener.accept().await.unwrap();
        assert!(link.peer.starts_with("shm pid "), "{}", link.peer);
        let mut buf = [0u8; 5];
        link.reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        link.writer.write_all(b"world").await.unwrap();
        // Echo until the client shuts down its side.
        let mut rest = Vec::new();
        link.reader.read_to_end(&mut rest).await.unwrap();
        link.writer.write_all(&rest).await.unwrap();
        (link, listener)
    });
    let mut link = connect(&path).await.unwrap();
    assert_eq!(link.peer, format!("shm pid {}", std::process::id()));
    assert!(link.peer_is_local_host);
    link.writer.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    link.reader.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"world");
    assert_eq!(
        dev_shm_entries(),
        before,
        "a connection left a name in /dev/shm"
    );
    let big = pattern(300_000);
    link.writer.write_all(&big).await.unwrap();
    link.writer.shutdown().await.unwrap();
    let mut back = vec![0u8; big.len()];
    link.reader.read_exact(&mut back).await.unwrap();
    assert!(back == big);
    let (server_link, listener) = server.await.unwrap();
    drop(server_link);
    // The server's link went: end of stream, and writes fail.
    assert_eq!(link.reader.read(&mut buf).await.unwrap(), 0);
    let e = link.writer.write_all(b"more").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    drop(listener);
    assert!(!std::path::Path::new(&path).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_client_corrupting_the_ring_is_dropped() {
    let path = temp_path("raw");
    let listener = Arc::new(ShmTransport::bind(&path, &UnixAccess::default()).unwrap());
    let l2 = listener.clone();
    let server = tokio::spawn(async move {
        let mut link = l2.accept().await.unwrap();
        let mut buf = [0u8; 3];
        link.reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        link.writer.write_all(b"ok").await.unwrap();
        let e = link.reader.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // The runtime drops a connection on a protocol error.
    });
    let client = tokio::task::spawn_blocking(move || {
        let mut c = testing::RawShmClient::connect(&path).unwrap();
        assert_eq!(c.write_bytes(b"abc").unwrap(), 3);
        // Corrupt only once the server has read the good bytes.
        let mut ok = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            got += c.read_bytes(&mut ok[got..]).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&ok, b"ok");
        assert!(!c.peer_closed());
        c.corrupt_indices(1 << 40, 0);
        assert!(c.wait_peer_closed(Duration::from_secs(5)));
    });
    server.await.unwrap();
    client.await.unwrap();
}

#[tokio::test]
async fn a_silent_or_refused_client_does_not_block_others() {
    let path = temp_path("silent");
    let listener = ShmTransport::bind(&path, &UnixAccess::default()).unwrap();
    // One client that says nothing, and one whose offer is garbage.
    let _silent = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut junk = tokio::net::UnixStream::connect(&path).await.unwrap();
    junk.write_all(&[0u8; 32]).await.unwrap();
    let mut answer = [0u8; 1];
    assert_eq!(
        junk.read(&mut answer).await.unwrap(),
        0,
        "junk was answered"
    );
    let path2 = path.clone();
    let client = tokio::spawn(async move { connect(&path2).await.unwrap() });
    let _link = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("accept blocked")
        .unwrap();
    let _client_link = client.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_talk_over_shm() {
    let path = temp_path("runtimes");
    let server = crate::Runtime::builder()
        .registry()
        .listen(Endpoint::shm(path.clone()))
        .start()
        .await
        .unwrap();
    server
        .bind("answer", server.registry_at(&Endpoint::shm(path.clone())))
        .await
        .unwrap();
    let client = crate::Runtime::builder().start().await.unwrap();
    let registry = client.registry_at(&Endpoint::shm(path.clone()));
    let names: Vec<String> = registry
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["answer"]);
    // A 1 MiB name: a frame half the size of a ring, through the rings both ways; the name
    // is just not bound.
    let long = "x".repeat(1 << 20);
    assert!(registry.lookup(long).await.is_err(), "found a 1 MiB name");
}

/// CPU time this thread has used, in clock ticks (user + system).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn an_idle_reader_sleeps_instead_of_spinning() {
    let ((_cr, _cw), (mut sr, _sw)) = pair(SMALL, Duration::from_micros(50));
    let before = thread_cpu_ticks();
    let r = tokio::time::timeout(Duration::from_millis(300), sr.read(&mut [0u8; 8])).await;
    assert!(r.is_err(), "read returned with nothing sent");
    let used = thread_cpu_ticks() - before;
    // A spinning reader would use about 30 ticks (10 ms each) here.
    assert!(
        used <= 5,
        "an idle reader used {used} ticks of CPU in 300 ms"
    );
}

/// A task reading 5-byte messages from `reader`; what it read, in order.
fn delivered(mut reader: ShmReader) -> tokio::sync::mpsc::UnboundedReceiver<[u8; 5]> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 5];
        while reader.read_exact(&mut buf).await.is_ok() {
            if tx.send(buf).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test]
async fn a_sleeping_reader_is_woken_without_reading_its_pipe() {
    let ((cr, _cw), (_sr, mut sw)) = pair(SMALL, Duration::ZERO);
    let map = cr.map_for_tests();
    let pipe = cr.data_pipe_for_tests().try_clone_to_owned().unwrap();
    let mut got = delivered(cr);
    for i in 0..3u8 {
        until_announced(&map, "the reader never went to sleep").await;
        sw.write_all(&[i; 5]).await.unwrap();
        let woke = tokio::time::timeout(Duration::from_secs(5), got.recv()).await;
        assert_eq!(woke.unwrap(), Some([i; 5]), "the reader was not woken");
    }
    // Each wake-up left its byte and nobody read it back: a read is a system call per wake-up
    // the edge-triggered reactor does not need.
    assert_eq!(wake::unread(pipe.as_fd()), 3);
}

#[tokio::test]
async fn the_rendezvous_socket_follows_the_unix_rules() {
    let path = temp_path("rules");
    let t = ShmTransport::bind(&path, &UnixAccess::default()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let e = ShmTransport::bind(&path, &UnixAccess::default())
        .err()
        .expect("bound twice");
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    drop(t);
    assert!(
        !std::path::Path::new(&path).exists(),
        "the file outlived its listener"
    );
    // A stale one is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let t = ShmTransport::bind(&path, &UnixAccess::default()).unwrap();
    drop(t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_spinning_for_a_reply_sees_it_arrive() {
    let ((cr, _cw), (_sr, mut sw)) = pair(SMALL, Duration::from_millis(200));
    let spin = cr.spin_until_readable();
    // Nothing comes: the spin gives up at its budget.
    let start = std::time::Instant::now();
    assert!(!spin.spin(), "the spin saw bytes nobody wrote");
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
    // Bytes written during the spin end it. (A fresh spin: the failed one lost its credit.)
    let spin = cr.spin_until_readable();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        sw.write_all(b"reply").await.unwrap();
        sw
    });
    let spun = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        let seen = spin.spin();
        (seen, start.elapsed(), spin)
    });
    let (seen, took, spin) = spun.await.unwrap();
    let mut sw = writer.await.unwrap();
    assert!(seen, "the spin missed the bytes (gave up after {took:?})");
    assert!(took < Duration::from_millis(150), "{took:?}");
    // Bytes already there need no spin; the end of the stream counts as something to read.
    assert!(spin.spin());
    drop(cr);
    sw.shutdown().await.unwrap();
}

#[test]
fn a_spin_over_a_closed_ring_ends_at_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ((cr, _cw), (_sr, mut sw)) = pair(SMALL, Duration::from_secs(5));
        sw.shutdown().await.unwrap();
        let start = std::time::Instant::now();
        assert!(cr.spin_until_readable().spin());
        assert!(start.elapsed() < Duration::from_secs(1));
    });
}

/// Whether the client's reader has announced that it sleeps (the flag its peer checks before
/// writing to its pipe).
fn client_reader_announced(map: &super::segment::Mapping) -> bool {
    use super::ring::{CONTROL_AT, DATA_WAITER};
    // The client reads ring 1.
    map.u32_at(CONTROL_AT[1] + DATA_WAITER)
        .load(std::sync::atomic::Ordering::SeqCst)
        != 0
}

/// Runs `spin` on a thread of its own inside a current-thread runtime, as a caller on such a
/// runtime would; whether it saw bytes.
fn spin_on_current_thread_runtime(spin: SpinHandle) -> tokio::task::JoinHandle<(bool, SpinHandle)> {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen = rt.block_on(async { spin.spin() });
        (seen, spin)
    })
}

async fn until_announced(map: &super::segment::Mapping, what: &str) {
    let announced = async {
        while !client_reader_announced(map) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), announced)
        .await
        .unwrap_or_else(|_| panic!("{what}"));
}

type SpinHandle = Box<dyn crate::transport::SpinUntilReadable>;

/// The server's end of a pair and what the client's reader delivered.
struct Peer<'a> {
    map: &'a super::segment::Mapping,
    writer: &'a mut ShmWriter,
    delivered: &'a mut tokio::sync::mpsc::UnboundedReceiver<[u8; 5]>,
}

impl Peer<'_> {
    /// Writes `bytes` while `spun` spins, after checking whether the client's reader still has
    /// its flag raised (`raised`); the spin must see the bytes and the reader deliver them.
    async fn write_during(
        self,
        spun: tokio::task::JoinHandle<(bool, SpinHandle)>,
        raised: bool,
        bytes: &[u8; 5],
    ) -> SpinHandle {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            client_reader_announced(self.map),
            raised,
            "whether the reader's flag stays raised while the caller spins"
        );
        self.writer.write_all(bytes).await.unwrap();
        let (seen, spin) = spun.await.unwrap();
        assert!(seen, "the spin missed the bytes");
        let got = tokio::time::timeout(Duration::from_secs(5), self.delivered.recv()).await;
        assert_eq!(got.unwrap().as_ref(), Some(bytes));
        spin
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_caller_takes_over_the_sleeping_readers_wake_up() {
    let ((cr, _cw), (_sr, mut sw)) = pair(SMALL, Duration::from_millis(300));
    let map = cr.map_for_tests();
    let spin = cr.spin_until_readable();
    let mut got = delivered(cr);
    // The reader spins once (nothing comes), then sleeps.
    until_announced(&map, "the reader never went to sleep").await;

    // A caller outside any tokio runtime leaves the reader's wake-up to the peer: its own would
    // cost as much.
    let (tx, spun) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send((spin.spin(), spin));
    });
    let spun = tokio::spawn(async move { spun.await.unwrap() });
    let peer = Peer {
        map: &map,
        writer: &mut sw,
        delivered: &mut got,
    };
    let spin = peer.write_during(spun, true, b"first").await;
    until_announced(&map, "the reader did not go back to sleep").await;

    // A caller on a multi-thread runtime takes it over: the reader then runs on the caller's
    // worker once the caller yields, and no other worker is woken for it.
    let spun = tokio::spawn(async move { (spin.spin(), spin) });
    let peer = Peer {
        map: &map,
        writer: &mut sw,
        delivered: &mut got,
    };
    let spin = peer.write_during(spun, false, b"multi").await;
    until_announced(&map, "the reader did not go back to sleep").await;

    // A caller on a current-thread runtime, whose reader could only run once it yields, takes
    // the wake-up over: the peer writes no wake-up, and the caller wakes the reader when it
    // sees the bytes.
    let spun = spin_on_current_thread_runtime(spin);
    let peer = Peer {
        map: &map,
        writer: &mut sw,
        delivered: &mut got,
    };
    let spin = peer.write_during(spun, false, b"again").await;

    // A spin that sees nothing still wakes the reader, which announces its sleep anew, so bytes
    // written after the spin reach it through its pipe.
    until_announced(&map, "the reader did not go back to sleep").await;
    let (seen, _spin) = spin_on_current_thread_runtime(spin).await.unwrap();
    assert!(!seen, "the spin saw bytes nobody wrote");
    until_announced(
        &map,
        "the reader did not go back to sleep after a failed spin",
    )
    .await;
    sw.write_all(b"later").await.unwrap();
    let later = tokio::time::timeout(Duration::from_secs(5), got.recv()).await;
    assert_eq!(later.unwrap().as_ref(), Some(b"later"));
}

/// Keeps this thread on the CPU it runs on (so the CPU it notes in a segment is the one it
/// spins on); which one.
fn pin_to_this_cpu() -> u32 {
    let cpu = rustix::thread::sched_getcpu();
    let mut only = rustix::thread::CpuSet::new();
    only.set(cpu);
    rustix::thread::sched_setaffinity(None, &only).unwrap();
    u32::try_from(cpu).unwrap()
}

/// [`pin_to_this_cpu`], and a current-thread runtime to run links on this thread.
fn pinned_runtime() -> (u32, tokio::runtime::Runtime) {
    let cpu = pin_to_this_cpu();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (cpu, rt)
}

#[test]
fn the_link_tells_whether_the_peer_last_waited_on_another_cpu() {
    use super::ring::CPU_AT;
    use std::sync::atomic::Ordering;

    let (cpu, rt) = pinned_runtime();
    let ((cr, _cw), (_sr, _sw)) = rt.block_on(async { pair(SMALL, Duration::ZERO) });
    let map = cr.map_for_tests();
    let place = cr.spin_until_readable();
    let server_cpu = |v: u32| map.u32_at(CPU_AT[1]).store(v, Ordering::SeqCst);
    // The words hold a CPU's number plus one; 0 is "not known yet".
    server_cpu(cpu + 1);
    assert!(!place.peer_on_other_cpu(), "the peer shares our CPU");
    assert_eq!(map.u32_at(CPU_AT[0]).load(Ordering::SeqCst), cpu + 1);
    server_cpu(cpu + 2);
    assert!(place.peer_on_other_cpu(), "the peer waits on another CPU");
    // Where the peer waits is not known yet: it may run beside us, as with large writes.
    server_cpu(0);
    assert!(place.peer_on_other_cpu());
}

#[test]
fn a_probe_is_skipped_while_the_peer_shares_our_cpu() {
    use super::ring::CPU_AT;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    let (cpu, rt) = pinned_runtime();
    let budget = Duration::from_millis(300);
    let ((cr, _cw), (_sr, _sw)) = rt.block_on(async { pair(SMALL, budget) });
    let map = cr.map_for_tests();
    let spin = cr.spin_until_readable();
    let server_cpu = |v: u32| map.u32_at(CPU_AT[1]).store(v, Ordering::SeqCst);
    // Time of the next probe: the spinner spends its first credit on a failed spin (wait 1),
    // then spins on every 64th wait only.
    let waits = std::cell::Cell::new(1u32);
    assert!(!spin.spin());
    let next_probe = || {
        while !(waits.get() + 1).is_multiple_of(64) {
            assert!(!spin.spin());
            waits.set(waits.get() + 1);
        }
        let start = Instant::now();
        assert!(!spin.spin());
        waits.set(waits.get() + 1);
        start.elapsed()
    };

    // The peer last waited on our CPU: the probe would only delay it.
    server_cpu(cpu + 1);
    let shared = next_probe();
    assert!(
        shared < budget / 3,
        "probed for {shared:?} with the peer on our CPU"
    );
    assert_eq!(
        map.u32_at(CPU_AT[0]).load(Ordering::SeqCst),
        cpu + 1,
        "the probe did not note our CPU for the peer"
    );
    // The peer waits elsewhere: the probe spins its budget.
    server_cpu(cpu + 2);
    let apart = next_probe();
    assert!(apart >= budget * 9 / 10, "probed for {apart:?} only");
}

/// The sizes a thread watching the client's ring saw published while the client wrote one
/// `len`-byte buffer at a time (the ring emptied in between), over up to `tries` writes:
/// stops early once a write was seen in more than one part.
fn parts_seen_while_writing(peer_cpu_word: impl Fn() -> u32, len: usize, tries: usize) -> Vec<u64> {
    use super::ring::{CONTROL_AT, CPU_AT, HEAD};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ((cr, mut cw), (mut sr, _sw)) = rt.block_on(async { pair(4 << 20, Duration::ZERO) });
    let map = cr.map_for_tests();
    let data = pattern(len);
    let mut seen = Vec::new();
    let mut got = vec![0u8; len];
    for _ in 0..tries {
        let start = map.u64_at(CONTROL_AT[0] + HEAD).load(Ordering::SeqCst);
        let watching = Arc::new(AtomicBool::new(false));
        let first = Arc::new(AtomicU64::new(0));
        let watcher = {
            let (map, watching, first) = (map.clone(), watching.clone(), first.clone());
            std::thread::spawn(move || {
                // Free to run beside the writer, even if the writer is pinned.
                let mut any = rustix::thread::CpuSet::new();
                (0..64).for_each(|c| any.set(c));
                let _ = rustix::thread::sched_setaffinity(None, &any);
                watching.store(true, Ordering::SeqCst);
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while std::time::Instant::now() < deadline {
                    let head = map.u64_at(CONTROL_AT[0] + HEAD).load(Ordering::SeqCst);
                    if head != start {
                        first.store(head - start, Ordering::SeqCst);
                        return;
                    }
                    std::hint::spin_loop();
                }
            })
        };
        while !watching.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        map.u32_at(CPU_AT[1])
            .store(peer_cpu_word(), Ordering::SeqCst);
        rt.block_on(async {
            cw.write_all(&data).await.unwrap();
            sr.read_exact(&mut got).await.unwrap();
        });
        watcher.join().unwrap();
        assert!(got == data, "the bytes differ");
        seen.push(first.load(Ordering::SeqCst));
        if seen.last() < Some(&(len as u64)) {
            break;
        }
    }
    seen
}

#[test]
fn a_large_write_is_published_in_parts_only_while_the_peer_runs_elsewhere() {
    let len = 1 << 20;
    // The peer waits on another CPU (no CPU has this number): its reader can copy out the
    // first part while the rest goes in. Each try, the watcher may have been off its CPU for
    // the whole write; one try in many seeing a part is enough.
    let apart = parts_seen_while_writing(|| u32::MAX, len, 200);
    assert!(
        apart.iter().any(|&n| n < len as u64),
        "every write was published whole: {apart:?}"
    );
    // The peer waits on our CPU: it could not read before we stop, so one publication (the
    // watcher still runs on any CPU, so a write in parts would show).
    let ours = pin_to_this_cpu() + 1;
    let shared = parts_seen_while_writing(|| ours, len, 5);
    assert!(
        shared.iter().all(|&n| n == len as u64),
        "a write was published in parts with the peer on our CPU: {shared:?}"
    );
}

#[test]
fn a_spin_for_the_answer_to_a_large_write_is_patient_while_the_peer_runs_elsewhere() {
    use super::ring::CPU_AT;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    let (cpu, rt) = pinned_runtime();
    let written = 2 << 20;
    // What the writer's 2 MiB earn: a nanosecond per 8 bytes.
    let patience = Duration::from_nanos(written as u64 / 8);
    // How long a caller spins for an answer, the peer last waiting on `peer_cpu`, after 2 MiB
    // written, and after the peer's answer to them if `answered`.
    let spin_for = |peer_cpu: u32, answered: bool| {
        let ((mut cr, mut cw), (_sr, mut sw)) =
            rt.block_on(async { pair(written as u64, Duration::from_micros(1)) });
        cr.map_for_tests()
            .u32_at(CPU_AT[1])
            .store(peer_cpu, Ordering::SeqCst);
        rt.block_on(async {
            cw.write_all(&vec![1; written]).await.unwrap();
            if answered {
                sw.write_all(b"x").await.unwrap();
                cr.read_exact(&mut [0u8; 1]).await.unwrap();
            }
        });
        let spin = cr.spin_until_readable();
        let start = Instant::now();
        assert!(!rt.block_on(async { spin.spin() }), "nothing was written");
        start.elapsed()
    };
    let elsewhere = spin_for(cpu + 2, false);
    assert!(
        elsewhere >= patience,
        "spun {elsewhere:?} for the answer to 2 MiB"
    );
    // Answered: the bytes owe us nothing more.
    let answered = spin_for(cpu + 2, true);
    assert!(answered < patience, "spun {answered:?} after the answer");
    // The peer on our CPU could not answer while we spin.
    let beside = spin_for(cpu + 1, false);
    assert!(
        beside < patience,
        "spun {beside:?} with the peer on our CPU"
    );
}
