//! A raw shared-memory client for tests that play a hostile peer: it does the real rendezvous
//! and then lets the test write bytes, or garbage, straight into the shared memory. Reachable as
//! `oxrmi::__private::shm_testing`; not a stable API.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::rendezvous;
use super::ring::{Consumer, Layout, Producer, ends};
use super::stream::{ShmReader, ShmWriter};
use super::wake::Wakes;
use super::{DEFAULT_CAPACITY, HANDSHAKE_TIMEOUT, ShmOptions, connect_halves};

/// A client end of a shared-memory link, driven by hand from synchronous code.
pub struct RawShmClient {
    sock: UnixStream,
    /// Client → server ring, ours to write.
    out: Producer,
    /// Server → client ring, ours to read.
    back: Consumer,
    wakes: Wakes,
}

impl RawShmClient {
    /// Dials the `shm://` rendezvous socket at `path` and has the server accept a fresh segment
    /// with rings of the default capacity.
    pub fn connect(path: &str) -> io::Result<RawShmClient> {
        let layout = Layout::new(DEFAULT_CAPACITY, DEFAULT_CAPACITY)
            .ok_or_else(|| io::Error::other("bad default layout"))?;
        let sock = UnixStream::connect(path)?;
        let created = rendezvous::create(layout)?;
        rendezvous::send_offer(
            sock.as_fd(),
            &rendezvous::offer_bytes(&layout),
            created.memfd.as_fd(),
            &created.outgoing,
        )?;
        sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let theirs = rendezvous::recv_answer(sock.as_fd())?;
        sock.set_nonblocking(true)?;
        let segment = created.accepted(theirs);
        let (out, _) = ends(segment.map.clone(), &segment.layout, 0);
        let (_, back) = ends(segment.map, &segment.layout, 1);
        Ok(RawShmClient {
            sock,
            out,
            back,
            wakes: segment.wakes,
        })
    }

    /// Writes as much of `bytes` as fits in the client → server ring and wakes the server;
    /// returns how much went in.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.out.write(bytes)?;
        self.wakes.peer_data.wake();
        Ok(n)
    }

    /// Reads what the server has written so far, without waiting.
    pub fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.back.read_slice(buf)?;
        self.wakes.peer_space.wake();
        Ok(n)
    }

    /// Writes raw `head` and `tail` values into the client → server ring's control block, as a
    /// hostile peer would, and wakes the server.
    pub fn corrupt_indices(&self, head: u64, tail: u64) {
        self.out.corrupt(head, tail);
        self.wakes.peer_data.wake();
    }

    /// Does to the wake-ups all a hostile peer can with the descriptors it shares with the
    /// server: fills the pipes it wakes the server through, makes every descriptor the server
    /// holds too blocking (the read ends each side passed: descriptors passed with SCM_RIGHTS
    /// share their flags), and raises both of its waiter flags, so that the server's next
    /// publication and its next freeing of space each write it a wake-up. (Its own write ends
    /// stay non-blocking: making them blocking would only hang this client.)
    pub fn sabotage_wake_ups(&self) -> io::Result<()> {
        let ours = [&self.wakes.peer_data, &self.wakes.peer_space];
        for pipe in ours {
            while rustix::io::write(pipe.write_end_for_tests(), &[0xff; 4096]).is_ok() {}
        }
        let shared: [BorrowedFd<'_>; 4] = [
            self.wakes.data.as_fd(),
            self.wakes.space.as_fd(),
            self.wakes.peer_data.read_end(),
            self.wakes.peer_space.read_end(),
        ];
        for fd in shared {
            let flags = rustix::fs::fcntl_getfl(fd)?;
            rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::NONBLOCK)?;
        }
        self.back.announce_data_waiter();
        self.out.announce_space_waiter();
        Ok(())
    }

    /// Whether the server has let go of the link: closed the socket, dropped its reader, or
    /// closed its writer.
    pub fn peer_closed(&self) -> bool {
        if self.out.consumer_gone() || self.back.producer_closed() {
            return true;
        }
        let mut byte = [0u8; 1];
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        match rustix::net::recv(&self.sock, &mut byte, flags) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => e != rustix::io::Errno::AGAIN,
        }
    }

    /// Waits up to `timeout` for [`RawShmClient::peer_closed`]; whether it happened.
    pub fn wait_peer_closed(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.peer_closed() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.peer_closed()
    }
}

/// A well-behaved shared-memory link as one async byte stream, for tests that speak raw bytes of
/// the oxrmi protocol to a server (malformed frames and the like) the way they would over a
/// socket. The rings are kept honest; the bytes in them are the test's business.
pub struct ShmByteStream {
    reader: ShmReader,
    writer: ShmWriter,
}

/// Dials the `shm://` rendezvous socket at `path` like the runtime does, and gives the link as a
/// byte stream.
pub async fn connect_stream(path: &str) -> io::Result<ShmByteStream> {
    let (reader, writer, _) = connect_halves(path, &ShmOptions::default()).await?;
    Ok(ShmByteStream { reader, writer })
}

impl AsyncRead for ShmByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for ShmByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}
