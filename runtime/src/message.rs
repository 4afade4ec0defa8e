//! The messages carried in frames, and their encoding. Every type here is a wire type: changing
//! one is a protocol change (bump [`PROTOCOL_VERSION`](crate::frame::PROTOCOL_VERSION) and update
//! `docs/PROTOCOL.md`).
//!
//! Headers are MessagePack arrays (rmp-serde's positional struct encoding). `Call` and `Reply`
//! headers are followed, in the same frame, by a MessagePack payload that is decoded later by
//! the generated code, so the payload is never copied or decoded twice.
//!
//! The two headers every call carries (`Call` and `Reply`) are written and read by hand
//! (module `fast`): the same bytes rmp-serde writes, without serde's machinery
//! or an allocation for the method name. A header in a form the hand-written reader does not
//! expect (another valid MessagePack encoding of the same values) goes through serde, so what
//! is accepted does not change.

use std::borrow::Cow;
use std::io::Cursor;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::RemoteError;
use crate::frame::{FrameBuf, Kind};
use crate::id::{CallId, ObjId, RuntimeId};

/// Bits of [`CallHeader::flags`].
pub(crate) mod flags {
    /// The caller expects no reply.
    pub(crate) const ONEWAY: u8 = 1;
    /// The caller of a one-way call waits for an [`Ack`](super::Kind::Ack) on receipt.
    pub(crate) const ACK: u8 = 2;
}

/// The first frame each side sends after the preamble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The sender's runtime.
    pub(crate) runtime: RuntimeId,
    /// Endpoints where the sender can be reached, as URLs (may be empty).
    pub(crate) endpoints: Vec<String>,
    /// With a shared secret: the sender's challenge, 32 random bytes, which the peer answers
    /// in an Auth frame; `nil` without one.
    pub(crate) auth: Option<serde_bytes::ByteBuf>,
    /// How long a lease on the sender's objects lasts, in milliseconds: holders renew at a
    /// quarter of it.
    pub(crate) lease_ms: u64,
}

/// The header of a call. The method name is borrowed when sending (no allocation per call) and,
/// when received, borrowed from the frame where it can be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CallHeader<M = String> {
    pub(crate) call: CallId,
    pub(crate) object: ObjId,
    pub(crate) method: M,
    /// Time left before the caller gives up, in microseconds.
    pub(crate) timeout_us: u64,
    pub(crate) flags: u8,
}

impl<M> CallHeader<M> {
    /// The same header with its method name converted by `f`.
    fn map_method<N>(self, f: impl FnOnce(M) -> N) -> CallHeader<N> {
        CallHeader {
            call: self.call,
            object: self.object,
            method: f(self.method),
            timeout_us: self.timeout_us,
            flags: self.flags,
        }
    }
}

/// How a call ended, in [`ReplyHeader::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// The payload is the method's `T`.
    Ok = 0,
    /// The payload is the method's application error `E`.
    AppError = 1,
    /// The payload is a [`RemoteError`].
    Failed = 2,
}

impl Status {
    fn from_byte(b: u8) -> Result<Status, RemoteError> {
        match b {
            0 => Ok(Status::Ok),
            1 => Ok(Status::AppError),
            2 => Ok(Status::Failed),
            other => Err(RemoteError::protocol(format!(
                "unknown reply status {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ReplyHeader {
    call: CallId,
    status: u8,
}

/// A decoded frame. Payloads are given as offsets into the frame so they can be decoded later
/// without a copy.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    Hello(Hello),
    Call {
        /// The method name borrowed from the frame where it can be.
        header: CallHeader<Cow<'a, str>>,
        payload: usize,
    },
    Reply {
        call: CallId,
        status: Status,
        payload: usize,
    },
    Cancel(CallId),
    Ack(CallId),
    Error(RemoteError),
    /// The answer to our challenge (an HMAC, see `auth`).
    Auth(serde_bytes::ByteBuf),
}

impl Message<'_> {
    /// The message with nothing borrowed from its frame.
    pub(crate) fn into_owned(self) -> Message<'static> {
        match self {
            Message::Call { header, payload } => Message::Call {
                header: header.map_method(|m| Cow::Owned(m.into_owned())),
                payload,
            },
            Message::Hello(h) => Message::Hello(h),
            Message::Reply {
                call,
                status,
                payload,
            } => Message::Reply {
                call,
                status,
                payload,
            },
            Message::Cancel(c) => Message::Cancel(c),
            Message::Ack(c) => Message::Ack(c),
            Message::Error(e) => Message::Error(e),
            Message::Auth(a) => Message::Auth(a),
        }
    }
}

/// Decodes a frame body (the bytes after the length prefix: kind and body).
pub(crate) fn decode(frame: &[u8]) -> Result<Message<'_>, RemoteError> {
    let (&kind, body) = frame
        .split_first()
        .ok_or_else(|| RemoteError::protocol("empty frame"))?;
    let kind = Kind::from_byte(kind)?;
    // Offsets are relative to `frame`, so the payload is frame[payload..].
    let mut cur = Cursor::new(body);
    let msg = match kind {
        Kind::Hello => Message::Hello(read(&mut cur, "hello")?),
        Kind::Call => match fast::call(body) {
            Some((header, used)) => Message::Call {
                header,
                payload: 1 + used,
            },
            None => {
                let h: CallHeader = read(&mut cur, "call header")?;
                Message::Call {
                    header: h.map_method(Cow::Owned),
                    payload: 1 + cur.position() as usize,
                }
            }
        },
        Kind::Reply => {
            if let Some((call, status, used)) = fast::reply(body) {
                return Ok(Message::Reply {
                    call,
                    status: Status::from_byte(status)?,
                    payload: 1 + used,
                });
            }
            let h: ReplyHeader = read(&mut cur, "reply header")?;
            Message::Reply {
                call: h.call,
                status: Status::from_byte(h.status)?,
                payload: 1 + cur.position() as usize,
            }
        }
        Kind::Cancel => Message::Cancel(read(&mut cur, "cancel")?),
        Kind::Ack => Message::Ack(read(&mut cur, "ack")?),
        Kind::Error => Message::Error(read(&mut cur, "error")?),
        Kind::Auth => Message::Auth(read(&mut cur, "auth")?),
    };
    Ok(msg)
}

fn read<T: DeserializeOwned>(cur: &mut Cursor<&[u8]>, what: &str) -> Result<T, RemoteError> {
    let mut de = rmp_serde::Deserializer::new(cur);
    de.set_max_depth(crate::marshal::MAX_DEPTH);
    T::deserialize(&mut de).map_err(|e| RemoteError::protocol(format!("malformed {what}: {e}")))
}

fn write<T: Serialize>(frame: &mut FrameBuf, value: &T) {
    // Encoding our own header types into a Vec cannot fail: they hold only integers, strings
    // and byte strings, and writing to a Vec does no IO.
    let r = rmp_serde::encode::write(&mut frame.body(), value);
    debug_assert!(r.is_ok(), "header encoding failed: {r:?}");
}

/// An Auth frame carrying `mac`.
pub(crate) fn auth(mac: &[u8]) -> Vec<u8> {
    let mut f = FrameBuf::new(Kind::Auth, mac.len() + 2);
    write(&mut f, &serde_bytes::Bytes::new(mac));
    // A 32-byte MAC is far below any frame limit.
    f.finish(usize::MAX).unwrap_or_default()
}

/// Encodes a whole frame holding only a header (no payload).
pub(crate) fn hello(h: &Hello, max: usize) -> Result<Vec<u8>, RemoteError> {
    let mut f = FrameBuf::new(Kind::Hello, 64);
    write(&mut f, h);
    f.finish(max)
}

pub(crate) fn cancel(call: CallId) -> Vec<u8> {
    small(Kind::Cancel, &call)
}

pub(crate) fn ack(call: CallId) -> Vec<u8> {
    small(Kind::Ack, &call)
}

pub(crate) fn error(e: &RemoteError) -> Vec<u8> {
    small(Kind::Error, e)
}

fn small<T: Serialize>(kind: Kind, v: &T) -> Vec<u8> {
    let mut f = FrameBuf::new(kind, 16);
    write(&mut f, v);
    // These frames are a few dozen bytes (an error message at most a few hundred).
    f.finish(usize::MAX).unwrap_or_default()
}

/// Starts a call frame; the caller appends the arguments payload and finishes it.
pub(crate) fn call(header: &CallHeader<&str>, payload_len: usize) -> CallFrame {
    let mut frame = FrameBuf::new(Kind::Call, 40 + header.method.len() + payload_len);
    // Flags below 0x80 are one byte (a positive fixint), the header's last: `set_flags` can
    // rewrite it in place.
    let header = CallHeader {
        flags: header.flags & FLAGS_MASK,
        ..*header
    };
    fast::write_call(frame.body().0, &header);
    CallFrame {
        payload_at: frame.bytes().len(),
        frame,
        call: header.call,
    }
}

/// The flags a Call header can carry: all of [`flags`], each below 0x80.
const FLAGS_MASK: u8 = 0x7f;
const _: () = assert!((flags::ONEWAY | flags::ACK) & !FLAGS_MASK == 0);

/// A Call frame being built: its header is written first and its arguments are encoded straight
/// after it (never into a buffer of their own that is then copied), and its flags can still be
/// set until it is finished.
pub(crate) struct CallFrame {
    frame: FrameBuf,
    call: CallId,
    /// Where the payload starts; the header's one-byte flags are just before it.
    payload_at: usize,
}

impl CallFrame {
    /// The call id in the header.
    pub(crate) fn id(&self) -> CallId {
        self.call
    }

    /// The payload so far, to append the arguments to.
    pub(crate) fn body(&mut self) -> crate::buffers::Appender<'_> {
        self.frame.body()
    }

    /// The arguments appended so far (what follows the header).
    pub(crate) fn payload(&self) -> &[u8] {
        &self.frame.bytes()[self.payload_at..]
    }

    /// Sets the header's flags (any of [`flags`]).
    pub(crate) fn set_flags(&mut self, flags: u8) {
        debug_assert_eq!(flags & !FLAGS_MASK, 0, "flags {flags:#x}");
        self.frame.bytes_mut()[self.payload_at - 1] = flags & FLAGS_MASK;
    }

    /// The complete frame, or an error if it exceeds `max`.
    pub(crate) fn finish(self, max: usize) -> Result<Vec<u8>, RemoteError> {
        self.frame.finish(max)
    }
}

/// Starts a reply frame; the caller appends the result payload and finishes it.
pub(crate) fn reply(call: CallId, status: Status, payload_len: usize) -> FrameBuf {
    let mut f = FrameBuf::new(Kind::Reply, 12 + payload_len);
    fast::write_reply(f.body().0, call, status as u8);
    f
}

/// The `Call` and `Reply` headers by hand: the bytes rmp-serde writes for [`CallHeader`] and
/// [`ReplyHeader`] (a fixed-length array; each integer in its shortest form; the method name as
/// a MessagePack string), and a reader of them that allocates nothing. The reader answers
/// `None` for anything else, valid or not, and [`decode`] then asks serde.
mod fast {
    use std::borrow::Cow;

    use crate::id::{CallId, ObjId};

    use super::CallHeader;

    /// Writing to a `Vec` does no IO, so these encoders cannot fail.
    pub(super) fn write_call(out: &mut Vec<u8>, h: &CallHeader<&str>) {
        let _ = rmp::encode::write_array_len(out, 5);
        let _ = rmp::encode::write_uint(out, h.call.0);
        let _ = rmp::encode::write_uint(out, h.object.0);
        let _ = rmp::encode::write_str(out, h.method);
        let _ = rmp::encode::write_uint(out, h.timeout_us);
        let _ = rmp::encode::write_uint(out, u64::from(h.flags));
    }

    pub(super) fn write_reply(out: &mut Vec<u8>, call: CallId, status: u8) {
        let _ = rmp::encode::write_array_len(out, 2);
        let _ = rmp::encode::write_uint(out, call.0);
        let _ = rmp::encode::write_uint(out, u64::from(status));
    }

    /// A call header at the start of `b`, and the bytes it took.
    pub(super) fn call(b: &[u8]) -> Option<(CallHeader<Cow<'_, str>>, usize)> {
        let mut r = Reader { b, pos: 0 };
        if r.array()? != 5 {
            return None;
        }
        let call = CallId(r.uint()?);
        let object = ObjId(r.uint()?);
        let method = Cow::Borrowed(r.str()?);
        let timeout_us = r.uint()?;
        let flags = u8::try_from(r.uint()?).ok()?;
        let h = CallHeader {
            call,
            object,
            method,
            timeout_us,
            flags,
        };
        Some((h, r.pos))
    }

    /// A reply header at the start of `b` (call, status byte), and the bytes it took.
    pub(super) fn reply(b: &[u8]) -> Option<(CallId, u8, usize)> {
        let mut r = Reader { b, pos: 0 };
        if r.array()? != 2 {
            return None;
        }
        let call = CallId(r.uint()?);
        let status = u8::try_from(r.uint()?).ok()?;
        Some((call, status, r.pos))
    }

    struct Reader<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let end = self.pos.checked_add(n)?;
            let s = self.b.get(self.pos..end)?;
            self.pos = end;
            Some(s)
        }

        fn byte(&mut self) -> Option<u8> {
            Some(self.take(1)?[0])
        }

        /// A big-endian unsigned integer of `N` bytes.
        fn be<const N: usize>(&mut self) -> Option<u64> {
            let s = self.take(N)?;
            Some(s.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
        }

        fn array(&mut self) -> Option<u64> {
            match self.byte()? {
                m @ 0x90..=0x9f => Some(u64::from(m & 0x0f)),
                0xdc => self.be::<2>(),
                0xdd => self.be::<4>(),
                _ => None,
            }
        }

        fn uint(&mut self) -> Option<u64> {
            match self.byte()? {
                m @ 0x00..=0x7f => Some(u64::from(m)),
                0xcc => self.be::<1>(),
                0xcd => self.be::<2>(),
                0xce => self.be::<4>(),
                0xcf => self.be::<8>(),
                _ => None,
            }
        }

        fn str(&mut self) -> Option<&'a str> {
            let len = match self.byte()? {
                m @ 0xa0..=0xbf => u64::from(m & 0x1f),
                0xd9 => self.be::<1>()?,
                0xda => self.be::<2>()?,
                0xdb => self.be::<4>()?,
                _ => return None,
            };
            std::str::from_utf8(self.take(usize::try_from(len).ok()?)?).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::LENGTH_LEN;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[LENGTH_LEN..]
    }

    #[test]
    fn call_frames_carry_header_and_payload() {
        let h = CallHeader {
            call: CallId(7),
            object: ObjId(16),
            method: "add",
            timeout_us: 1_000_000,
            flags: 0,
        };
        let mut f = call(&h, 2);
        f.body().extend_from_slice(&[0x91, 0x05]); // [5]
        let frame = f.finish(1 << 20).unwrap();
        match decode(body(&frame)).unwrap() {
            Message::Call { header, payload } => {
                assert_eq!(header.method, h.method);
                assert_eq!((header.call, header.object), (h.call, h.object));
                assert_eq!((header.timeout_us, header.flags), (h.timeout_us, h.flags));
                assert_eq!(&body(&frame)[payload..], &[0x91, 0x05]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_set_after_the_arguments_give_the_frame_written_with_them() {
        let h = CallHeader {
            call: CallId(300),
            object: ObjId(70_000),
            method: "log",
            timeout_us: 5_000_000_000,
            flags: 0,
        };
        for f in [0, flags::ONEWAY, flags::ONEWAY | flags::ACK] {
            let mut late = call(&h, 0);
            late.body().extend_from_slice(&[0x91, 0xa1, b'x']);
            assert_eq!(late.payload(), &[0x91, 0xa1, b'x']);
            late.set_flags(f);
            let mut early = call(&CallHeader { flags: f, ..h }, 0);
            early.body().extend_from_slice(&[0x91, 0xa1, b'x']);
            let late = late.finish(1 << 20).unwrap();
            assert_eq!(late, early.finish(1 << 20).unwrap());
            match decode(body(&late)).unwrap() {
                Message::Call { header, payload } => {
                    assert_eq!((header.call, header.flags), (h.call, f));
                    assert_eq!(&body(&late)[payload..], &[0x91, 0xa1, b'x']);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn reply_frames_carry_status_and_payload() {
        let mut f = reply(CallId(9), Status::AppError, 1);
        f.body().extend_from_slice(&[0xc0]);
        let frame = f.finish(1 << 20).unwrap();
        let (call, status, payload) = expect_reply(body(&frame));
        assert_eq!((call, status), (CallId(9), Status::AppError));
        assert_eq!(&body(&frame)[payload..], &[0xc0]);
    }

    /// The call, status and payload offset of a frame body that must decode as a reply.
    fn expect_reply(frame: &[u8]) -> (CallId, Status, usize) {
        match decode(frame).unwrap() {
            Message::Reply {
                call,
                status,
                payload,
            } => (call, status, payload),
            other => panic!("{other:?}"),
        }
    }

    /// Integers at every width boundary of MessagePack's unsigned forms.
    const EDGES: [u64; 12] = [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        u64::MAX - 1,
        u64::MAX,
    ];

    #[test]
    fn hand_written_headers_are_the_bytes_serde_writes_and_read_back() {
        let names: Vec<String> = [0usize, 1, 31, 32, 255, 256, 70_000]
            .iter()
            .map(|&n| "é".repeat(n / 2) + &"m".repeat(n % 2))
            .collect();
        for (i, &a) in EDGES.iter().enumerate() {
            let b = EDGES[(i + 5) % EDGES.len()];
            let flags = (a % 256) as u8;
            for name in &names {
                let h = CallHeader {
                    call: CallId(a),
                    object: ObjId(b),
                    method: name.as_str(),
                    timeout_us: b ^ a,
                    flags,
                };
                let mut ours = Vec::new();
                fast::write_call(&mut ours, &h);
                let theirs = rmp_serde::to_vec(&h).unwrap();
                assert_eq!(ours, theirs, "call header {a} {b} {}", name.len());
                ours.push(0xc0);
                let (back, used) = fast::call(&ours).expect("read back");
                assert_eq!(used, theirs.len());
                assert_eq!(
                    (back.call, back.object, &*back.method),
                    (h.call, h.object, h.method)
                );
                assert_eq!((back.timeout_us, back.flags), (h.timeout_us, h.flags));
            }
            let mut ours = Vec::new();
            fast::write_reply(&mut ours, CallId(a), flags);
            let theirs = rmp_serde::to_vec(&ReplyHeader {
                call: CallId(a),
                status: flags,
            })
            .unwrap();
            assert_eq!(ours, theirs, "reply header {a}");
            assert_eq!(fast::reply(&ours), Some((CallId(a), flags, ours.len())));
        }
    }

    #[test]
    fn other_encodings_of_a_header_go_through_serde_and_bad_ones_fail() {
        // call 5 as uint64, object 16 as uint16, "add" as str8, timeout 1 as uint8, flags 0.
        let mut wide = vec![
            Kind::Call as u8,
            0x95,
            0xcf,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            5,
            0xcd,
            0,
            16,
        ];
        wide.extend_from_slice(&[0xd9, 3, b'a', b'd', b'd', 0xcc, 1, 0x00, 0xc0]);
        match decode(&wide).unwrap() {
            Message::Call { header, payload } => {
                assert_eq!((header.call, header.object), (CallId(5), ObjId(16)));
                assert_eq!((&*header.method, header.timeout_us), ("add", 1));
                assert_eq!(&wide[payload..], &[0xc0]);
            }
            other => panic!("{other:?}"),
        }
        // Non-negative signed integers are valid MessagePack for an unsigned field: serde's
        // path takes them.
        let signed = [Kind::Reply as u8, 0x92, 0xd0, 9, 0x01, 0xc0];
        assert!(fast::reply(&signed[1..]).is_none());
        assert_eq!(expect_reply(&signed), (CallId(9), Status::AppError, 5));
        let good = {
            let mut f = call(
                &CallHeader {
                    call: CallId(1),
                    object: ObjId(2),
                    method: "get",
                    timeout_us: 3,
                    flags: 0,
                },
                0,
            );
            f.body().extend_from_slice(&[0x90]);
            f.finish(1 << 20).unwrap()[LENGTH_LEN..].to_vec()
        };
        // Every truncation fails cleanly, on both paths.
        for cut in 1..good.len() - 1 {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        // A method name that is not UTF-8, a status that is no status, a flags byte too large.
        let mut bad_utf8 = good.clone();
        let at = bad_utf8.iter().position(|&b| b == b'g').unwrap();
        bad_utf8[at] = 0xff;
        assert!(decode(&bad_utf8).is_err());
        assert!(decode(&[Kind::Reply as u8, 0x92, 0x01, 0x07]).is_err());
        let mut big_flags = good.clone();
        let last = big_flags.len() - 2;
        big_flags[last] = 0xcd;
        big_flags.insert(last + 1, 0x01);
        big_flags.insert(last + 2, 0x00);
        assert!(decode(&big_flags).is_err());
    }

    #[test]
    fn small_frames_round_trip() {
        let id = RuntimeId::random();
        let h = Hello {
            runtime: id,
            endpoints: vec!["tcp://127.0.0.1:1".into()],
            auth: None,
            lease_ms: 60_000,
        };
        let f = hello(&h, 1 << 20).unwrap();
        assert!(matches!(decode(body(&f)).unwrap(), Message::Hello(x) if x == h));
        assert!(matches!(
            decode(body(&cancel(CallId(3)))).unwrap(),
            Message::Cancel(CallId(3))
        ));
        assert!(matches!(
            decode(body(&ack(CallId(4)))).unwrap(),
            Message::Ack(CallId(4))
        ));
        let e = RemoteError::protocol("x");
        assert!(matches!(decode(body(&error(&e))).unwrap(), Message::Error(x) if x == e));
    }

    /// The worked example of docs/PROTOCOL.md, byte for byte: if this changes, so must the
    /// document (and probably the protocol version).
    #[test]
    fn protocol_document_worked_example() {
        let h = CallHeader {
            call: CallId(1),
            object: ObjId(16),
            method: "add",
            timeout_us: 30_000_000,
            flags: 0,
        };
        let mut f = call(&h, 2);
        f.body().extend_from_slice(&[0x91, 0x05]);
        assert_eq!(
            f.finish(1 << 20).unwrap(),
            [
                0x00, 0x00, 0x00, 0x10, 0x02, 0x95, 0x01, 0x10, 0xa3, b'a', b'd', b'd', 0xce, 0x01,
                0xc9, 0xc3, 0x80, 0x00, 0x91, 0x05
            ]
        );
        let mut r = reply(CallId(1), Status::Ok, 1);
        r.body().extend_from_slice(&[0x05]);
        assert_eq!(
            r.finish(1 << 20).unwrap(),
            [0x00, 0x00, 0x00, 0x05, 0x03, 0x92, 0x01, 0x00, 0x05]
        );
        assert_eq!(cancel(CallId(1)), [0x00, 0x00, 0x00, 0x02, 0x04, 0x01]);
        let hello_frame = hello(
            &Hello {
                runtime: RuntimeId::from_bytes([0xab; 16]),
                endpoints: vec!["tcp://127.0.0.1:1099".into()],
                auth: None,
                lease_ms: 60_000,
            },
            1 << 20,
        )
        .unwrap();
        let mut expected = vec![0x00, 0x00, 0x00, 0x2e, 0x01, 0x94, 0xc4, 0x10];
        expected.extend_from_slice(&[0xab; 16]);
        expected.extend_from_slice(&[0x91, 0xb4]);
        expected.extend_from_slice(b"tcp://127.0.0.1:1099");
        expected.extend_from_slice(&[0xc0, 0xcd, 0xea, 0x60]);
        assert_eq!(hello_frame, expected);
        let e = error(&RemoteError::protocol("x"));
        assert_eq!(
            e,
            [
                0x00, 0x00, 0x00, 0x0e, 0x06, 0x81, 0xa8, b'P', b'r', b'o', b't', b'o', b'c', b'o',
                b'l', 0x91, 0xa1, b'x'
            ]
        );
    }

    #[test]
    fn unit_error_variants_are_bare_strings() {
        assert_eq!(
            rmp_serde::to_vec(&RemoteError::Shutdown).unwrap(),
            b"\xa8Shutdown"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            &[],
            &[0],
            &[2],
            &[2, 0xc1],
            &[2, 0x95, 1, 2, 3],
            &[3, 0x92, 1, 9],
            &[1, 0xff, 0xff],
            &[6, 0x81, 0xa1, b'x', 0x01],
        ];
        for c in cases {
            assert!(decode(c).is_err(), "{c:?} decoded");
        }
    }

    /// A peer nesting values deeper than `MAX_DEPTH` gets an error, not a stack overflow (the
    /// fuzzing harness measured an overflow near 500 levels of a recursive type in a debug
    /// build, under the decoder's default limit of 1,024).
    #[test]
    fn deep_nesting_is_refused_before_the_stack_runs_out() {
        #[derive(Deserialize)]
        struct Nest(#[allow(dead_code)] Vec<Nest>);
        let nested = |depth: usize| {
            let mut v = vec![0x91; depth];
            v.push(0x90);
            v
        };
        let fine = nested(crate::marshal::MAX_DEPTH / 2);
        assert!(read::<Nest>(&mut Cursor::new(&fine[..]), "nest").is_ok());
        let deep = nested(10_000);
        let e = read::<Nest>(&mut Cursor::new(&deep[..]), "nest")
            .err()
            .expect("decoded 10,000 levels");
        assert!(matches!(e, RemoteError::Protocol { .. }), "{e:?}");
    }
}
