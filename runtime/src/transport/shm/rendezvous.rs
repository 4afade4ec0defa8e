//! The rendezvous: the client creates the segment and four eventfds and passes them with
//! SCM_RIGHTS over the Unix socket, with a 32-byte offer saying what it created; the server
//! checks all of it before mapping anything and answers one byte if it accepts.
//!
//! The offer: magic u64, version u32, zero u32, capacity of ring 0 u64, of ring 1 u64 (all
//! little-endian). The descriptors, in order: the memfd, then per ring its "data available" and
//! "space available" eventfds ([`event_index`]).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::event::{EventfdFlags, eventfd};
use rustix::fs::{FileType, MemfdFlags, OFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::ring::{Layout, MAGIC, VERSION};
use super::segment::Mapping;

/// Bytes of the offer.
pub(super) const OFFER_LEN: usize = 32;
/// Descriptors passed with the offer: the memfd and four eventfds.
const FDS: usize = 5;
/// The byte the server answers when it accepts the segment.
pub(super) const ACCEPTED: u8 = 1;

/// Which eventfd of the four: ring `ring`'s "data available" (`space == false`) or "space
/// available" one.
pub(super) const fn event_index(ring: usize, space: bool) -> usize {
    ring * 2 + space as usize
}

/// A segment and its eventfds, as the client made them or the server accepted them.
pub(super) struct Segment {
    /// The mapped segment.
    pub(super) map: Arc<Mapping>,
    /// The ring capacities, validated.
    pub(super) layout: Layout,
    /// Indexed by [`event_index`]; all non-blocking.
    pub(super) events: [OwnedFd; 4],
}

/// What the client created: the segment, plus the memfd to pass.
pub(super) struct Created {
    /// The memory file, sealed; dropped once passed (the mappings keep the memory).
    pub(super) memfd: OwnedFd,
    /// The mapping and eventfds.
    pub(super) segment: Segment,
}

fn new_eventfd() -> io::Result<OwnedFd> {
    Ok(eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?)
}

/// Creates an anonymous sealed memory file for `layout`, maps it and writes its header.
pub(super) fn create(layout: Layout) -> io::Result<Created> {
    let len = layout
        .total_len()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    let memfd =
        rustix::fs::memfd_create("oxrmi-shm", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&memfd, len)?;
    // Sealed before anyone maps it: its size is fixed for good, so no mapping can ever SIGBUS.
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    let map = Arc::new(Mapping::map(memfd.as_fd(), len as usize)?);
    layout.write_header(&map);
    let events = [
        new_eventfd()?,
        new_eventfd()?,
        new_eventfd()?,
        new_eventfd()?,
    ];
    Ok(Created {
        memfd,
        segment: Segment {
            map,
            layout,
            events,
        },
    })
}

/// The offer's bytes for `layout`.
pub(super) fn offer_bytes(layout: &Layout) -> [u8; OFFER_LEN] {
    let mut b = [0u8; OFFER_LEN];
    b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&layout.capacity[0].to_le_bytes());
    b[24..32].copy_from_slice(&layout.capacity[1].to_le_bytes());
    b
}

/// Sends `offer` with the memfd and eventfds; may fail with `WouldBlock` on a non-blocking
/// socket (nothing was sent then).
pub(super) fn send_offer(
    sock: BorrowedFd<'_>,
    offer: &[u8; OFFER_LEN],
    memfd: BorrowedFd<'_>,
    events: &[OwnedFd; 4],
) -> io::Result<()> {
    let fds = [
        memfd,
        events[0].as_fd(),
        events[1].as_fd(),
        events[2].as_fd(),
        events[3].as_fd(),
    ];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("no room for the descriptors"));
    }
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(offer)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?;
    if n != OFFER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the offer went out in part",
        ));
    }
    Ok(())
}

/// An offer as received, not yet checked.
pub(super) struct Offer {
    /// The 32 bytes.
    pub(super) bytes: [u8; OFFER_LEN],
    /// The memfd.
    pub(super) memfd: OwnedFd,
    /// The four eventfds.
    pub(super) events: [OwnedFd; 4],
}

fn refuse(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Receives the offer (`WouldBlock` if it has not arrived yet). Anything other than exactly 32
/// bytes and five descriptors is refused; descriptors received are closed on every error path.
pub(super) fn recv_offer(sock: BorrowedFd<'_>) -> io::Result<Offer> {
    let mut bytes = [0u8; OFFER_LEN];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut bytes)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if msg.bytes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed before its offer",
        ));
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(refuse("too many descriptors with the offer"));
    }
    if msg.bytes != OFFER_LEN {
        return Err(refuse(format!("an offer of {} bytes", msg.bytes)));
    }
    let Ok([memfd, e0, e1, e2, e3]) = <[OwnedFd; FDS]>::try_from(fds) else {
        return Err(refuse("the offer came without its five descriptors"));
    };
    Ok(Offer {
        bytes,
        memfd,
        events: [e0, e1, e2, e3],
    })
}

fn u64_at(b: &[u8; OFFER_LEN], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Checks everything about an offer before and after mapping it: the offer's magic and
/// version, the capacities (powers of two, total at most `MAX_SEGMENT`), the memfd's seals
/// (SHRINK and GROW, so it can never be cut under our mapping), its size (exactly what the offer
/// says), the eventfds (eventfds indeed, made non-blocking), and finally the header in the
/// memory itself. Any failure is `InvalidData` with the reason.
pub(super) fn verify(offer: Offer) -> io::Result<Segment> {
    let b = &offer.bytes;
    if u64_at(b, 0) != MAGIC {
        return Err(refuse("the offer has a bad magic number"));
    }
    let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if version != VERSION {
        return Err(refuse(format!(
            "the offer is for layout version {version}, we speak {VERSION}"
        )));
    }
    let (c0, c1) = (u64_at(b, 16), u64_at(b, 24));
    let layout = Layout::new(c0, c1)
        .ok_or_else(|| refuse(format!("unacceptable ring capacities {c0} and {c1}")))?;
    let len = layout
        .total_len()
        .ok_or_else(|| refuse("segment too large"))?;
    let seals = rustix::fs::fcntl_get_seals(&offer.memfd)
        .map_err(|e| refuse(format!("the segment is not a sealable memory file: {e}")))?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        return Err(refuse(
            "the segment is not sealed against shrinking and growing",
        ));
    }
    let stat = rustix::fs::fstat(&offer.memfd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(refuse("the segment is not a regular memory file"));
    }
    if u64::try_from(stat.st_size).ok() != Some(len) {
        return Err(refuse(format!(
            "the segment has {} bytes, the offer says {len}",
            stat.st_size
        )));
    }
    for ev in &offer.events {
        check_eventfd(ev.as_fd())?;
    }
    let map = Mapping::map(offer.memfd.as_fd(), len as usize)?;
    layout.check_header(&map).map_err(refuse)?;
    Ok(Segment {
        map: Arc::new(map),
        layout,
        events: offer.events,
    })
}

/// Refuses a descriptor that is not an eventfd (a pipe or socket there could block our writes),
/// and makes it non-blocking whatever the peer set.
fn check_eventfd(fd: BorrowedFd<'_>) -> io::Result<()> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    if link.as_os_str() != "anon_inode:[eventfd]" {
        return Err(refuse(format!(
            "a descriptor passed as an eventfd is {}",
            link.display()
        )));
    }
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}
