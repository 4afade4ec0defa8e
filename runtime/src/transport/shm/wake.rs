//! How one side of a shared-memory link wakes the other: one anonymous pipe per ring and
//! purpose ("data published", "space freed"), each created by the side that writes it.
//!
//! A wake-up is one byte written to the pipe; the sleeper's reactor watches the read end
//! edge-triggered, and every write to a watched pipe wakes its watchers whether or not the pipe
//! was empty, so the sleeper need not read the byte back to be woken by the next one. It drains
//! the pipe only once every [`DRAIN_EVERY`] announced sleeps: an honest peer writes at most one
//! byte per sleep announced (it clears the flag it acts on), so the pipe can never fill.
//!
//! Who creates a pipe is what makes a wake-up safe from a hostile peer. Descriptors passed with
//! SCM_RIGHTS share their open file description, flags included: a peer holding the very
//! description we write to (as it did when the client made eventfds for both sides) could clear
//! `O_NONBLOCK` on it and fill it, and our next wake-up would block a runtime thread for good.
//! Here the writer's end never leaves its process: the peer receives only a read end, so our
//! write end stays non-blocking whatever the peer does, and a full pipe (a peer that never
//! reads) means only that a wake-up is already pending. The writer also keeps its own copy of
//! the read end, so a peer that is gone never turns a wake-up into `EPIPE` and `SIGPIPE`. The
//! one read a side makes, draining the pipe it sleeps on, is on a description the peer shares;
//! it asks the kernel not to wait (`RWF_NOWAIT`, honoured by pipes since Linux 6.4), so the
//! peer cannot make that block either; an older kernel refuses the flag and the drain falls back
//! to a plain read of the non-blocking descriptor.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll, ready};

use rustix::fs::OFlags;
use rustix::io::{Errno, ReadWriteFlags};
use tokio::io::unix::AsyncFd;

use super::rendezvous::refuse;
use super::segment::watch;

/// Announced sleeps between two drains of the pipe a side sleeps on. An honest peer writes at
/// most one byte per sleep, and a pipe holds at least a page (4096 bytes) even when its user
/// ran out of pipe budget, so it never fills.
pub(super) const DRAIN_EVERY: u32 = 1024;

/// A pipe this side wakes the peer through: our write end, and the read end we pass (and keep
/// open, so a write never meets a pipe without readers).
pub(super) struct WakePipe {
    write: OwnedFd,
    read: OwnedFd,
}

impl WakePipe {
    /// A fresh pipe, both ends non-blocking and close-on-exec.
    pub(super) fn new() -> io::Result<WakePipe> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        Ok(WakePipe { write, read })
    }

    /// The read end, to pass to the peer.
    pub(super) fn read_end(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// The write end, for a test playing a hostile peer.
    pub(super) fn write_end_for_tests(&self) -> BorrowedFd<'_> {
        self.write.as_fd()
    }

    /// Wakes the peer. Never blocks: the write end is ours alone and non-blocking. A full pipe
    /// (`EAGAIN`) holds bytes the peer has not read, so it is woken already.
    pub(super) fn wake(&self) {
        loop {
            match rustix::io::write(&self.write, &[1]) {
                Err(Errno::INTR) => continue,
                _ => return,
            }
        }
    }
}

/// This side's ends of a link's four wake-up pipes.
pub(super) struct Wakes {
    /// Read end our reader sleeps on; the peer writes it when it publishes data for us.
    pub(super) data: OwnedFd,
    /// Read end our writer sleeps on; the peer writes it when it frees space in our ring.
    pub(super) space: OwnedFd,
    /// Wakes the peer's reader when we publish data.
    pub(super) peer_data: WakePipe,
    /// Wakes the peer's writer when we free space in its ring.
    pub(super) peer_space: WakePipe,
}

/// The two pipes a side creates, before the peer's read ends arrive.
pub(super) struct Outgoing {
    /// Wakes the peer's reader.
    pub(super) data: WakePipe,
    /// Wakes the peer's writer.
    pub(super) space: WakePipe,
}

impl Outgoing {
    /// Creates both pipes.
    pub(super) fn new() -> io::Result<Outgoing> {
        Ok(Outgoing {
            data: WakePipe::new()?,
            space: WakePipe::new()?,
        })
    }

    /// The read ends to pass, in the order of the protocol: data, then space.
    pub(super) fn read_ends(&self) -> [BorrowedFd<'_>; 2] {
        [self.data.read_end(), self.space.read_end()]
    }

    /// All four ends, with the peer's read ends (data, space) as received and checked.
    pub(super) fn with_peer(self, [data, space]: [OwnedFd; 2]) -> Wakes {
        Wakes {
            data,
            space,
            peer_data: self.data,
            peer_space: self.space,
        }
    }
}

/// Checks a descriptor the peer passed as the read end of a wake-up pipe: an anonymous pipe
/// (not a FIFO, whose file others can open, nor anything else), opened for reading only; and
/// makes it non-blocking.
pub(super) fn check_read_end(fd: BorrowedFd<'_>) -> io::Result<()> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    if !link.to_string_lossy().starts_with("pipe:[") {
        return Err(refuse(format!(
            "a descriptor passed as a wake-up pipe is {}",
            link.display()
        )));
    }
    let flags = rustix::fs::fcntl_getfl(fd)?;
    if flags & OFlags::RWMODE != OFlags::RDONLY {
        return Err(refuse(
            "a wake-up pipe was passed by its write end, not its read end",
        ));
    }
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// What ended a sleep on a wake-up pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Woken {
    /// The peer wrote a wake-up.
    Up,
    /// Every write end is closed: the peer's half that would wake us is gone.
    PeerGone,
}

/// The read end a half sleeps on, watched by the reactor.
pub(super) struct Waiting {
    fd: AsyncFd<OwnedFd>,
    /// Sleeps announced since the pipe was last drained.
    announced: u32,
}

impl Waiting {
    /// Watches `fd` (a checked read end); must run inside a tokio runtime.
    pub(super) fn new(fd: OwnedFd) -> io::Result<Waiting> {
        Ok(Waiting {
            fd: watch(fd)?,
            announced: 0,
        })
    }

    /// Counts a sleep about to be announced to the peer; once every [`DRAIN_EVERY`] of them,
    /// drains the pipe first.
    pub(super) fn announcing(&mut self) {
        self.announced += 1;
        if self.announced >= DRAIN_EVERY {
            self.announced = 0;
            drain(self.fd.get_ref().as_fd());
        }
    }

    /// `Ready` once a wake-up came since the last time this returned `Ready`, or once the
    /// peer's write end is closed: the peer's half that wakes us is gone (dropped, or the
    /// process died), and the pipe reads as closed for good from then on.
    pub(super) fn poll(&self, cx: &mut Context<'_>) -> Poll<io::Result<Woken>> {
        let mut guard = ready!(self.fd.poll_read_ready(cx))?;
        if guard.ready().is_read_closed() {
            // The reactor never clears this: reporting it as a wake-up would be reported again
            // at every poll, a busy loop.
            return Poll::Ready(Ok(Woken::PeerGone));
        }
        // Seen: not readable again until the next write brings the next event.
        guard.clear_ready();
        Poll::Ready(Ok(Woken::Up))
    }

    /// The read end, for tests that count the bytes in it.
    #[cfg(test)]
    pub(super) fn fd_for_tests(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// Reads what the pipe holds (an honest peer's bytes fit in one read), without waiting even if
/// the peer cleared `O_NONBLOCK` on the description we share; at most a few reads, so a peer
/// that keeps writing cannot hold us here.
fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 4096];
    for _ in 0..4 {
        let r = match rustix::io::preadv2(
            fd,
            &mut [IoSliceMut::new(&mut buf)],
            u64::MAX,
            ReadWriteFlags::NOWAIT,
        ) {
            // Before Linux 6.4 pipes refuse the flag: the descriptor is non-blocking.
            Err(Errno::OPNOTSUPP) => rustix::io::read(fd, &mut buf),
            r => r,
        };
        match r {
            Ok(n) if n == buf.len() => continue,
            Err(Errno::INTR) => continue,
            _ => return,
        }
    }
}

/// Bytes waiting in a pipe.
#[cfg(test)]
pub(super) fn unread(fd: BorrowedFd<'_>) -> usize {
    rustix::io::ioctl_fionread(fd).unwrap() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Duration;

    /// The read end as the peer holds it after SCM_RIGHTS: another descriptor of the same open
    /// file description.
    fn as_passed(fd: BorrowedFd<'_>) -> OwnedFd {
        fd.try_clone_to_owned().unwrap()
    }

    #[test]
    fn a_peer_cannot_make_a_wake_up_block() {
        let pipe = WakePipe::new().unwrap();
        let theirs = as_passed(pipe.read_end());
        // All a peer can do to the description it holds: make it blocking, and never read.
        let flags = rustix::fs::fcntl_getfl(&theirs).unwrap();
        rustix::fs::fcntl_setfl(&theirs, flags - OFlags::NONBLOCK).unwrap();
        let size = rustix::pipe::fcntl_getpipe_size(&theirs).unwrap();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Twice what the pipe holds: the second half finds it full.
            for _ in 0..2 * size {
                pipe.wake();
            }
            done.send(pipe).unwrap();
        });
        let pipe = wait
            .recv_timeout(Duration::from_secs(20))
            .expect("a wake-up blocked");
        assert_eq!(unread(theirs.as_fd()), size);
        drop(pipe);
    }

    #[test]
    fn a_wake_up_of_a_peer_that_is_gone_is_no_error() {
        let pipe = WakePipe::new().unwrap();
        drop(as_passed(pipe.read_end()));
        // Our own copy of the read end keeps the pipe open: no EPIPE (nor SIGPIPE, were it not
        // ignored).
        pipe.wake();
        assert_eq!(unread(pipe.read_end()), 1);
    }

    #[test]
    fn only_the_read_end_of_an_anonymous_pipe_passes_as_one() {
        let pipe = WakePipe::new().unwrap();
        assert!(check_read_end(as_passed(pipe.read_end()).as_fd()).is_ok());
        let eventfd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        let dir = std::env::temp_dir().join(format!("oxrmi-wake-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &dir,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let fifo: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            // Opening a FIFO for reading would otherwise wait for a writer.
            .custom_flags(OFlags::NONBLOCK.bits() as i32)
            .open(&dir)
            .unwrap()
            .into();
        std::fs::remove_file(&dir).unwrap();
        let file: OwnedFd = std::fs::File::open("/proc/self/status").unwrap().into();
        for (what, fd) in [
            ("the write end", pipe.write.as_fd()),
            ("an eventfd", eventfd.as_fd()),
            ("a FIFO", fifo.as_fd()),
            ("a file", file.as_fd()),
        ] {
            let e = check_read_end(fd).expect_err(what);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        }
    }

    #[tokio::test]
    async fn a_sleeper_learns_that_the_peer_is_gone_from_its_pipe() {
        let pipe = WakePipe::new().unwrap();
        let waiting = Waiting::new(as_passed(pipe.read_end())).unwrap();
        let next = || {
            let waiting = &waiting;
            tokio::time::timeout(
                Duration::from_secs(5),
                std::future::poll_fn(move |cx| waiting.poll(cx)),
            )
        };
        pipe.wake();
        assert_eq!(next().await.unwrap().unwrap(), Woken::Up);
        // The peer's half (or process) goes: its write end closes with it.
        drop(pipe);
        for _ in 0..3 {
            assert_eq!(next().await.unwrap().unwrap(), Woken::PeerGone);
        }
    }

    #[tokio::test]
    async fn a_sleeper_drains_its_pipe_once_every_so_many_sleeps() {
        let pipe = WakePipe::new().unwrap();
        let mut waiting = Waiting::new(as_passed(pipe.read_end())).unwrap();
        for _ in 0..DRAIN_EVERY - 1 {
            waiting.announcing();
            pipe.wake();
        }
        assert_eq!(unread(pipe.read_end()), DRAIN_EVERY as usize - 1);
        waiting.announcing();
        assert_eq!(unread(pipe.read_end()), 0);
    }
}
