//! A connected socket as the two halves of a link, and a pipe's write end as a write half,
//! without the wake-ups tokio's own types cost a request-reply protocol.
//!
//! Tokio registers a `TcpStream` or `UnixStream` with the reactor for reading and writing at
//! once, edge-triggered. Each time the peer reads what we sent, room frees up in our send buffer
//! and the kernel reports the socket writable: the reactor's `epoll_wait` returns for an event
//! nobody waits for. With both processes on one CPU that is often a switch to this process and
//! back, per call. A pipe's write end, registered for writability, is woken the same way. Here
//! the read half ([`FdReader`]) is registered for readability only, and the write half
//! ([`FdWriter`]) writes with plain non-blocking system calls on the same descriptor and
//! registers a duplicate of it for writability only while a write waits for room (a full
//! buffer), closing it once the write went through: a connection still takes one descriptor.
//!
//! The `unsafe` code reads into a buffer's uninitialised bytes (zero-filling a large frame
//! first would cost as much as reading it) and registers descriptors with the reactor; its
//! tests run under AddressSanitizer in CI.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustix::net::{SendFlags, Shutdown};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Registers `fd` with the current tokio reactor for `interest` only. Must run inside a tokio
/// runtime.
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that stays open, always the same number,
    // until the `OwnedFd` (now inside the `AsyncFd`) is dropped: tokio's requirement exactly.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

/// Splits a connected, non-blocking stream socket into its two halves, which share its one
/// descriptor.
pub(crate) fn split(fd: OwnedFd) -> io::Result<(FdReader, FdWriter)> {
    let fd = Arc::new(fd);
    let writer = FdWriter {
        fd: fd.clone(),
        waiting: None,
        end: End::Socket { shut: false },
    };
    // SAFETY: the `Arc` keeps the descriptor open, always the same number, for as long as the
    // `AsyncFd` holds it: tokio's requirement exactly.
    let io = unsafe { AsyncFd::register_with_interest(SharedFd(fd), Interest::READABLE) }?;
    Ok((FdReader { io }, writer))
}

/// A descriptor both halves of a socket hold.
struct SharedFd(Arc<OwnedFd>);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The read half: the socket, registered for readability only.
pub(crate) struct FdReader {
    io: AsyncFd<SharedFd>,
}

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let wanted = buf.remaining();
        if wanted == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            // SAFETY: the slice is only written to, by `read`, which reports how many of its
            // bytes it initialised; nothing in it is read or de-initialised here.
            let unfilled = unsafe { buf.unfilled_mut() };
            match guard.try_io(|io| Ok(rustix::io::read(&*io.get_ref().0, &mut *unfilled)?.0.len()))
            {
                Ok(Ok(n)) => {
                    // A short read emptied the socket: the next read waits for the reactor
                    // instead of learning that from a read that finds nothing.
                    if 0 < n && n < wanted {
                        guard.clear_ready();
                    }
                    // SAFETY: `read` initialised the first `n` bytes of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Nothing to read after all: readiness is cleared; wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// The write end of a pipe (a FIFO's, a child's stdin or a parent's stdout) as a write half
/// that the peer's reads do not wake. Makes the descriptor non-blocking.
pub(crate) fn pipe_writer(fd: OwnedFd) -> io::Result<FdWriter> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(FdWriter {
        fd: Arc::new(fd),
        waiting: None,
        end: End::Pipe {
            size: 0,
            refused: false,
        },
    })
}

/// The most a pipe's buffer grows to (the kernel's default limit for unprivileged processes,
/// `/proc/sys/fs/pipe-max-size`).
const PIPE_GROWN: usize = 1 << 20;

/// The write half: the socket's or pipe's descriptor, written with plain system calls; a
/// duplicate of it is registered for writability only while a write waits for room.
pub(crate) struct FdWriter {
    fd: Arc<OwnedFd>,
    /// The duplicate registered with the reactor while a write waits for room.
    waiting: Option<AsyncFd<OwnedFd>>,
    end: End,
}

/// What an [`FdWriter`] writes to.
enum End {
    /// A stream socket, whose read half holds the same socket open: shutting down (or dropping)
    /// the writer shuts the socket down for writing, so the peer reads the end of the stream.
    Socket { shut: bool },
    /// A pipe's write end: the peer reads the end of the stream when it closes. `size`: its
    /// buffer's size once looked up (0 before); `refused`: the kernel refused to grow it.
    Pipe { size: usize, refused: bool },
}

impl FdWriter {
    /// Writes what fits of `src` (never raising SIGPIPE on a socket whose peer is gone: `EPIPE`
    /// instead).
    fn write(&self, fd: impl AsFd, src: &[u8]) -> io::Result<usize> {
        loop {
            let r = match self.end {
                End::Socket { .. } => rustix::net::send(&fd, src, SendFlags::NOSIGNAL),
                End::Pipe { .. } => rustix::io::write(&fd, src),
            };
            match r {
                Err(rustix::io::Errno::INTR) => continue,
                r => return Ok(r?),
            }
        }
    }

    /// A pipe found full by a write of `len` bytes: grows it to fit them too (up to
    /// [`PIPE_GROWN`]); whether it grew. A pipe's buffer holds 64 KiB by default, and each
    /// time it fills, the writer sleeps until the reader, woken, drains it: a 1 MiB frame took
    /// 16 such rounds, which with the peer on another CPU (waking an idle CPU costs tens of
    /// microseconds on a virtual machine) held a pipe to about 0.4 GB/s. Only a link that
    /// carries large frames grows its pipes: the kernel counts their buffers against the user's
    /// budget (`/proc/sys/fs/pipe-user-pages-soft`) and refuses growth beyond it, which leaves
    /// the pipe as it was (and is not asked again).
    fn grow_pipe(&mut self, len: usize) -> bool {
        let End::Pipe { size, refused } = &mut self.end else {
            return false;
        };
        if *refused || *size >= PIPE_GROWN {
            return false;
        }
        if *size == 0 {
            *size = rustix::pipe::fcntl_getpipe_size(&*self.fd).unwrap_or(PIPE_GROWN);
        }
        // The pipe is full: to have taken this write too it would need its size again plus
        // `len` (a frame just over 64 KiB leaves only its tail for this write).
        let want = (*size)
            .saturating_add(len)
            .next_power_of_two()
            .min(PIPE_GROWN);
        if want <= *size {
            return false;
        }
        match rustix::pipe::fcntl_setpipe_size(&*self.fd, want) {
            Ok(now) => {
                let grew = now > *size;
                *size = now;
                grew
            }
            Err(_) => {
                *refused = true;
                false
            }
        }
    }
}

impl AsyncWrite for FdWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if let Some(waiting) = &this.waiting {
                let mut guard = ready!(waiting.poll_write_ready(cx))?;
                let Ok(r) = guard.try_io(|fd| this.write(fd, src)) else {
                    // Still no room: readiness is cleared; wait again.
                    continue;
                };
                drop(guard);
                // Room again: stop watching for it (and for the wake-ups it brings).
                this.waiting = None;
                return Poll::Ready(r);
            }
            match this.write(&*this.fd, src) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && this.grow_pipe(src.len()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Registered after the failed write: if room freed up in between, the
                    // registration reports the socket writable at once.
                    let dup = rustix::io::dup(&*this.fd)?;
                    this.waiting = Some(register(dup, Interest::WRITABLE)?);
                }
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here: written bytes are the kernel's.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let End::Socket { shut: shut @ false } = &mut this.end {
            *shut = true;
            match rustix::net::shutdown(&*this.fd, Shutdown::Write) {
                // The peer is gone already: there is nothing left to tell it.
                Ok(()) | Err(rustix::io::Errno::NOTCONN) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for FdWriter {
    /// As tokio's write halves do: the peer reads the end of the stream once the write half
    /// is gone, although the read half still holds the socket open.
    fn drop(&mut self) {
        if let End::Socket { shut: false } = self.end {
            let _ = rustix::net::shutdown(&*self.fd, Shutdown::Write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_pattern as pattern;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> ((FdReader, FdWriter), (FdReader, FdWriter)) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (split(a.into()).unwrap(), split(b.into()).unwrap())
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_into_uninitialised_buffers() {
        let ((mut ar, mut aw), (mut br, mut bw)) = pair();
        aw.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        br.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        bw.write_all(b"pong!").await.unwrap();
        // Into a Vec's spare capacity: the reads fill uninitialised memory.
        let mut back = Vec::with_capacity(64);
        while back.len() < 5 {
            ar.read_buf(&mut back).await.unwrap();
        }
        assert_eq!(back, b"pong!");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_larger_than_the_socket_buffer_waits_for_room_and_arrives_whole() {
        let ((_ar, mut aw), (mut br, _bw)) = pair();
        let data = pattern(8 << 20);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            aw.write_all(&sent).await.unwrap();
            aw
        });
        // Let the writer fill the socket and wait for room before reading.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut got = Vec::with_capacity(data.len());
        while got.len() < data.len() {
            let n = br.read_buf(&mut got).await.unwrap();
            assert!(n > 0, "end of stream after {} bytes", got.len());
        }
        assert!(got == data, "the bytes differ");
        let aw = writer.await.unwrap();
        // Done waiting: no registration left to wake the reactor when the peer reads.
        assert!(aw.waiting.is_none());
    }

    #[tokio::test]
    async fn shutting_down_or_dropping_the_writer_ends_the_peers_stream() {
        let ((_ar, mut aw), (mut br, bw)) = pair();
        aw.write_all(b"last").await.unwrap();
        aw.shutdown().await.unwrap();
        let mut got = Vec::new();
        br.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last");
        // The other way, by dropping the writer while its reader lives on.
        let ((mut cr, _cw), (_dr, dw)) = pair();
        drop(dw);
        let _keep = bw;
        assert_eq!(cr.read(&mut [0u8; 8]).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipe_writer_waits_for_room_and_its_drop_ends_the_stream() {
        // Blocking, as a child's stdin comes: the writer makes it non-blocking.
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut w = pipe_writer(w).unwrap();
        let mut r = tokio::net::unix::pipe::Receiver::from_owned_fd(r).unwrap();
        // Larger than the pipe grows to: the writer still has to wait for room.
        let data = pattern(4 * PIPE_GROWN);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            assert!(w.waiting.is_none());
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert!(got == data, "the bytes differ");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_pipe_grows_for_a_write_larger_than_it_and_only_then() {
        // Whether this process may grow a pipe at all (the user's pipe budget may be spent).
        let (_pr, pw) = rustix::pipe::pipe().unwrap();
        let allowed = rustix::pipe::fcntl_setpipe_size(&pw, PIPE_GROWN).is_ok();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let before = rustix::pipe::fcntl_getpipe_size(&w).unwrap();
        let mut w = pipe_writer(w).unwrap();
        let mut r = tokio::net::unix::pipe::Receiver::from_owned_fd(r).unwrap();
        // Small writes that fit leave it as it is.
        w.write_all(&pattern(100)).await.unwrap();
        assert_eq!(rustix::pipe::fcntl_getpipe_size(&*w.fd).unwrap(), before);
        // A frame just over the buffer (as a 64 KiB payload with its header): the write that
        // finds it full grows it so that the whole would have fitted.
        let data = pattern(before + 100);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w
        });
        let mut got = vec![0u8; 100];
        r.read_exact(&mut got).await.unwrap();
        let mut got = vec![0u8; data.len()];
        r.read_exact(&mut got).await.unwrap();
        assert!(got == data, "the bytes differ");
        let w = writer.await.unwrap();
        let after = rustix::pipe::fcntl_getpipe_size(&*w.fd).unwrap();
        if allowed {
            assert!(after >= 2 * before, "{before} -> {after} bytes");
        } else {
            eprintln!("this user may not grow pipes now: only checked that nothing broke");
            assert_eq!(after, before);
        }
    }

    #[tokio::test]
    async fn writing_to_a_closed_peer_is_an_error_not_a_signal() {
        let ((_ar, mut aw), (br, bw)) = pair();
        drop((br, bw));
        let mut r = Ok(());
        // The first write may still be taken by the kernel; a later one fails.
        for _ in 0..4 {
            r = aw.write_all(b"anyone?").await;
            if r.is_err() {
                break;
            }
        }
        let e = r.unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e:?}"
        );
    }
}
