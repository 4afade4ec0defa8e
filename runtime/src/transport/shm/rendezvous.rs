//! The rendezvous: the client creates the segment and its two wake-up pipes and passes the
//! memfd and the pipes' read ends with SCM_RIGHTS over the Unix socket, with a 32-byte offer
//! saying what it created; the server checks all of it before mapping anything and, if it
//! accepts, answers one byte with the read ends of its own two wake-up pipes (see [`wake`] for
//! why each side makes the pipes it writes).
//!
//! The offer: magic u64, version u32, zero u32, capacity of ring 0 u64, of ring 1 u64 (all
//! little-endian). The descriptors, in order: the memfd, then the read ends of the sender's
//! "data published" and "space freed" pipes. The answer: the byte [`ACCEPTED`] with the same
//! two read ends of the server's pipes.
//!
//! [`wake`]: super::wake

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{FileType, MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::ring::{Layout, MAGIC, VERSION};
use super::segment::Mapping;
use super::wake::{self, Outgoing, Wakes};

/// Bytes of the offer.
pub(super) const OFFER_LEN: usize = 32;
/// Descriptors passed with the offer: the memfd and two read ends.
const OFFER_FDS: usize = 3;
/// Descriptors passed with the answer: two read ends.
const ANSWER_FDS: usize = 2;
/// The byte the server answers when it accepts the segment.
pub(super) const ACCEPTED: u8 = 1;

/// A segment and its wake-up pipes, as the client made them or the server accepted them.
pub(super) struct Segment {
    /// The mapped segment.
    pub(super) map: Arc<Mapping>,
    /// The ring capacities, validated.
    pub(super) layout: Layout,
    /// This side's ends of the four wake-up pipes.
    pub(super) wakes: Wakes,
}

/// What the client created, before the server's answer.
pub(super) struct Created {
    /// The memory file, sealed; dropped once accepted (the mappings keep the memory).
    pub(super) memfd: OwnedFd,
    /// The mapped segment.
    pub(super) map: Arc<Mapping>,
    /// The ring capacities.
    pub(super) layout: Layout,
    /// The client's two wake-up pipes.
    pub(super) outgoing: Outgoing,
}

impl Created {
    /// The segment once the server accepted it with its read ends (data, space), checked.
    pub(super) fn accepted(self, theirs: [OwnedFd; ANSWER_FDS]) -> Segment {
        Segment {
            map: self.map,
            layout: self.layout,
            wakes: self.outgoing.with_peer(theirs),
        }
    }
}

/// Creates an anonymous sealed memory file for `layout`, maps it and writes its header, and the
/// client's wake-up pipes.
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
    Ok(Created {
        memfd,
        map,
        layout,
        outgoing: Outgoing::new()?,
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

/// Sends `offer` with the memfd and the client's read ends; may fail with `WouldBlock` on a
/// non-blocking socket (nothing was sent then).
pub(super) fn send_offer(
    sock: BorrowedFd<'_>,
    offer: &[u8; OFFER_LEN],
    memfd: BorrowedFd<'_>,
    outgoing: &Outgoing,
) -> io::Result<()> {
    let [data, space] = outgoing.read_ends();
    send_with_fds(sock, offer, &[memfd, data, space])
}

/// Sends the answer that accepts an offer, with the server's read ends.
pub(super) fn send_answer(sock: BorrowedFd<'_>, wakes: &Wakes) -> io::Result<()> {
    let fds = [wakes.peer_data.read_end(), wakes.peer_space.read_end()];
    send_with_fds(sock, &[ACCEPTED], &fds)
}

/// Sends `bytes` with `fds` in one message, whole or not at all.
fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(OFFER_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("no room for the descriptors"));
    }
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?;
    if n != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the rendezvous message went out in part",
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
    /// The read ends of the client's pipes: data, space.
    pub(super) wakes: [OwnedFd; 2],
}

/// A refusal of what the peer passed: `InvalidData`, with the reason.
pub(super) fn refuse(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Receives one message of at most `buf.len()` bytes and `N` descriptors: its length and the
/// descriptors, exactly `N` of them. More descriptors than `N` are refused; descriptors received
/// are closed on every error path. `what` names the message in errors.
fn recv_with_fds<const N: usize>(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    what: &str,
) -> io::Result<(usize, [OwnedFd; N])> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(OFFER_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space[..rustix::cmsg_space!(ScmRights(N))]);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
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
            format!("the peer closed before its {what}"),
        ));
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(refuse(format!("too many descriptors with the {what}")));
    }
    let fds = <[OwnedFd; N]>::try_from(fds)
        .map_err(|_| refuse(format!("the {what} came without its {N} descriptors")))?;
    Ok((msg.bytes, fds))
}

/// Receives the offer (`WouldBlock` if it has not arrived yet on a non-blocking socket).
/// Anything other than exactly 32 bytes and three descriptors is refused.
pub(super) fn recv_offer(sock: BorrowedFd<'_>) -> io::Result<Offer> {
    let mut bytes = [0u8; OFFER_LEN];
    let (n, [memfd, data, space]) = recv_with_fds::<OFFER_FDS>(sock, &mut bytes, "offer")?;
    if n != OFFER_LEN {
        return Err(refuse(format!("an offer of {n} bytes")));
    }
    Ok(Offer {
        bytes,
        memfd,
        wakes: [data, space],
    })
}

/// Receives the server's answer (`WouldBlock` as [`recv_offer`]): the byte [`ACCEPTED`] with
/// the read ends of its pipes (data, space), checked. A server that refuses closes the socket:
/// `ConnectionRefused`.
pub(super) fn recv_answer(sock: BorrowedFd<'_>) -> io::Result<[OwnedFd; ANSWER_FDS]> {
    let mut byte = [0u8; 1];
    let (_, fds) = match recv_with_fds::<ANSWER_FDS>(sock, &mut byte, "answer") {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the server refused the shared-memory segment (see its log)",
            ));
        }
        r => r?,
    };
    if byte[0] != ACCEPTED {
        return Err(refuse(format!("the server answered {:#04x}", byte[0])));
    }
    for fd in &fds {
        wake::check_read_end(fd.as_fd())?;
    }
    Ok(fds)
}

fn u64_at(b: &[u8; OFFER_LEN], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Checks everything about an offer before and after mapping it: the offer's magic and
/// version, the capacities (powers of two, total at most `MAX_SEGMENT`), the memfd's seals
/// (SHRINK and GROW, so it can never be cut under our mapping), its size (exactly what the offer
/// says), the wake-up pipes (read ends of anonymous pipes, made non-blocking), and finally the
/// header in the memory itself. Any failure is `InvalidData` with the reason. The accepted
/// segment comes with this side's own wake-up pipes, whose read ends the answer passes.
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
    for fd in &offer.wakes {
        wake::check_read_end(fd.as_fd())?;
    }
    let map = Mapping::map(offer.memfd.as_fd(), len as usize)?;
    layout.check_header(&map).map_err(refuse)?;
    Ok(Segment {
        map: Arc::new(map),
        layout,
        wakes: Outgoing::new()?.with_peer(offer.wakes),
    })
}
