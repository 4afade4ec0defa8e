//! Frames: the unit on the wire. A frame is a big-endian `u32` length, then that many bytes:
//! one byte of [`Kind`] and the kind's body. See `docs/PROTOCOL.md`.
//!
//! **Invariant:** this module never does IO. It builds frames into buffers and checks lengths;
//! `connection` moves them over a transport.

use crate::RemoteError;

/// Sent first by each side before any frame: `OXRMI\0` and the protocol version.
pub(crate) const MAGIC: [u8; 6] = *b"OXRMI\0";

/// The protocol version this runtime speaks. A peer speaking another gets an error frame.
pub(crate) const PROTOCOL_VERSION: u16 = 5;

/// Bytes in the preamble: magic and a big-endian `u16` version.
pub(crate) const PREAMBLE_LEN: usize = 8;

/// Bytes in a frame's length prefix.
pub(crate) const LENGTH_LEN: usize = 4;

/// The default largest frame a runtime accepts: large enough for a 16 MiB payload with room for
/// headers is not the goal; a fixed, documented ceiling that a hostile length cannot exceed is.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// The preamble this runtime sends.
pub(crate) fn preamble() -> [u8; PREAMBLE_LEN] {
    let mut p = [0u8; PREAMBLE_LEN];
    p[..6].copy_from_slice(&MAGIC);
    p[6..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    p
}

/// Checks a peer's preamble; the error says what was wrong.
pub(crate) fn check_preamble(p: &[u8; PREAMBLE_LEN]) -> Result<(), RemoteError> {
    if p[..6] != MAGIC {
        return Err(RemoteError::protocol(
            "the peer does not speak the oxrmi protocol (bad magic)",
        ));
    }
    let version = u16::from_be_bytes([p[6], p[7]]);
    if version != PROTOCOL_VERSION {
        return Err(RemoteError::protocol(format!(
            "the peer speaks protocol version {version}, this runtime speaks {PROTOCOL_VERSION}"
        )));
    }
    Ok(())
}

/// The kind of a frame: its first byte after the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Handshake: runtime id, advertised endpoints, credentials.
    Hello = 1,
    /// A call: header, then the arguments.
    Call = 2,
    /// The reply to a call: header, then the result.
    Reply = 3,
    /// The caller gave up on a call.
    Cancel = 4,
    /// A one-way call was received (sent only when the caller asked for it).
    Ack = 5,
    /// The sender is closing the connection because of this error.
    Error = 6,
    /// Handshake, with a shared secret: the sender's answer to the peer's challenge.
    Auth = 7,
}

impl Kind {
    pub(crate) fn from_byte(b: u8) -> Result<Kind, RemoteError> {
        Ok(match b {
            1 => Kind::Hello,
            2 => Kind::Call,
            3 => Kind::Reply,
            4 => Kind::Cancel,
            5 => Kind::Ack,
            6 => Kind::Error,
            7 => Kind::Auth,
            other => {
                return Err(RemoteError::protocol(format!(
                    "unknown frame kind {other:#04x}"
                )));
            }
        })
    }
}

/// Checks a length prefix against the limit before anything is allocated for the frame.
pub(crate) fn check_length(prefix: [u8; LENGTH_LEN], max: usize) -> Result<usize, RemoteError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Err(RemoteError::protocol("empty frame (no kind byte)"));
    }
    if len > max {
        return Err(RemoteError::protocol(format!(
            "frame of {len} bytes exceeds the limit of {max} bytes"
        )));
    }
    Ok(len)
}

/// A frame being built: reserves the length prefix, writes the kind, lets the caller append the
/// body, and fills in the length at the end.
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    pub(crate) fn new(kind: Kind, capacity: usize) -> Self {
        let mut buf = crate::buffers::take(LENGTH_LEN + 1 + capacity);
        buf.extend_from_slice(&[0; LENGTH_LEN]);
        buf.push(kind as u8);
        FrameBuf { buf }
    }

    /// The body so far, to append to.
    pub(crate) fn body(&mut self) -> crate::buffers::Appender<'_> {
        crate::buffers::Appender(&mut self.buf)
    }

    /// The frame so far, length prefix (not yet filled in) and kind included.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The frame so far, to rewrite bytes already appended.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The complete frame, or an error if it exceeds `max`.
    pub(crate) fn finish(mut self, max: usize) -> Result<Vec<u8>, RemoteError> {
        let len = self.buf.len() - LENGTH_LEN;
        if len > max {
            return Err(RemoteError::Marshalling {
                what: "the message".into(),
                detail: format!("frame of {len} bytes exceeds the limit of {max} bytes"),
            });
        }
        // The check above bounds len by `max`, which the builder keeps below u32::MAX.
        self.buf[..LENGTH_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_round_trips_and_rejects_other_versions() {
        let p = preamble();
        check_preamble(&p).unwrap();
        let mut other = p;
        other[7] = 9;
        let e = check_preamble(&other).unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
        let mut garbage = p;
        garbage[0] = b'G';
        assert!(check_preamble(&garbage).is_err());
    }

    #[test]
    fn lengths_are_checked_before_allocation() {
        assert_eq!(check_length(5u32.to_be_bytes(), 10).unwrap(), 5);
        assert!(check_length(0u32.to_be_bytes(), 10).is_err());
        assert!(check_length(11u32.to_be_bytes(), 10).is_err());
        assert!(check_length(u32::MAX.to_be_bytes(), DEFAULT_MAX_FRAME).is_err());
    }

    #[test]
    fn frame_buf_writes_the_length_of_kind_and_body() {
        let mut f = FrameBuf::new(Kind::Cancel, 3);
        f.body().extend_from_slice(&[1, 2, 3]);
        let bytes = f.finish(100).unwrap();
        assert_eq!(bytes, vec![0, 0, 0, 4, 4, 1, 2, 3]);
        let mut big = FrameBuf::new(Kind::Call, 0);
        big.body().extend_from_slice(&[0; 20]);
        assert!(big.finish(10).is_err());
    }

    #[test]
    fn unknown_kinds_are_protocol_errors() {
        for b in 1..=6 {
            assert_eq!(Kind::from_byte(b).unwrap() as u8, b);
        }
        assert!(Kind::from_byte(0).is_err());
        assert!(Kind::from_byte(0xff).is_err());
    }
}
