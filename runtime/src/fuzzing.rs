//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz; see `fuzz/README.md`). Not a
//! public API: names and input formats may change.
//!
//! Each entry point takes arbitrary bytes, pushes them through the production code that reads a
//! peer's bytes, and must never panic: **a peer's bytes never panic the runtime** is the
//! invariant under test. Nothing here re-implements a decoder; the harness only provides the
//! surroundings (a tokio runtime, an in-memory link, a runtime with an object to call).
//!
//! - `frames`: the preamble check, then `connection::read_frame` over the
//!   bytes as a stream handed over in small chunks, and `message::decode` of every frame.
//! - `message`: one frame body decoded, and a Call's arguments or a Reply's payload decoded the
//!   way the generated dispatch and stub do, references included, in a live runtime.
//! - `connection`: the whole receive path of a fresh runtime, handshake included, fed the bytes
//!   as its peer's; afterwards the runtime must still serve a well-behaved peer.
//! - `shm_ring`: the shared-memory rings driven by a script of reads, writes and a hostile
//!   peer's stores into the segment.
//! - `grpc_request` (feature `grpc`): a request body through the gRPC bridge's decoding and
//!   translation to a call, the call, and its reply translated back.
//!
//! Two byte patterns in the inputs of `message` and `connection` are special, so that seeds
//! (and the fuzzer) can name runtimes whose ids are only known at run time:
//! `OWN_ID_PLACEHOLDER` as a MessagePack `bin16` is replaced by the serving runtime's id, and
//! `PEER_ID` is the runtime id the canned handshake's Hello announces.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadBuf};

use crate::connection::{self, Connection};
use crate::frame::{self, PREAMBLE_LEN};
use crate::id::{CallId, ObjId, RuntimeId};
use crate::marshal::{self, MarshalCtx};
use crate::message::{self, CallHeader, Hello, Message, Status};
use crate::transport::{BoxRead, Link};
use crate::{AnyRemote, Endpoint, Remote, RemoteError, Runtime, remote};

/// The runtime id the canned handshake's Hello announces: references naming it come from the
/// peer that owns them.
pub const PEER_ID: [u8; 16] = [0xab; 16];

/// Sixteen bytes that, written as a MessagePack `bin16` (`c4 10` then these), stand for the id of
/// the runtime under test, which is random: a reference naming it is one of its own objects
/// coming home.
pub const OWN_ID_PLACEHOLDER: [u8; 16] = [0xee; 16];

/// The object id the test object gets in the runtime under test (the first dynamic id).
pub const TARGET_OBJECT: u64 = 16;

/// How long one input of [`connection`] may run before the harness stops waiting. A peer that
/// stops sending is detected by end of stream long before that; this only bounds a stuck input.
const BUDGET: Duration = Duration::from_millis(200);

/// Bytes buffered between the runtime and the fuzzed peer in each direction.
const LINK_BUFFER: usize = 64 * 1024;

/// A value with nesting, optional parts, maps, enums and references, as applications send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Nested {
    /// A string.
    pub name: String,
    /// A byte string (MessagePack `bin`).
    pub bytes: serde_bytes::ByteBuf,
    /// A map of lists.
    pub map: BTreeMap<String, Vec<i32>>,
    /// An enum with every shape of variant.
    pub choice: Choice,
    /// References to remote objects anywhere.
    pub refs: Vec<AnyRemote>,
    /// Recursion: a value can be nested arbitrarily deep.
    pub child: Option<Box<Nested>>,
}

/// Every shape of enum variant serde has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum Choice {
    /// A unit variant.
    #[default]
    Unit,
    /// A newtype variant.
    Number(f64),
    /// A tuple variant.
    Pair(u8, i64),
    /// A struct variant.
    Named {
        /// A flag.
        flag: bool,
        /// An optional text.
        text: Option<String>,
    },
}

/// The interface of the object the fuzzed peer calls.
#[remote(name = "oxrmi.fuzz.Target")]
pub trait FuzzTarget: Send + Sync {
    /// Plain arguments.
    async fn echo(&self, n: i64, text: String) -> Result<String, RemoteError>;
    /// A nested value, returned as received (its references are sent back).
    async fn nested(&self, value: Nested) -> Result<Nested, RemoteError>;
    /// References: typed, untyped, and in a collection.
    async fn refs(
        &self,
        one: Remote<dyn FuzzTarget>,
        any: AnyRemote,
        many: Vec<Option<AnyRemote>>,
    ) -> Result<u64, RemoteError>;
    /// A one-way call.
    #[oneway]
    async fn poke(&self, bytes: serde_bytes::ByteBuf) -> Result<(), RemoteError>;
}

/// The test object: answers at once, so no handler outlives its input.
struct Target;

#[remote]
impl FuzzTarget for Target {
    async fn echo(&self, n: i64, text: String) -> Result<String, RemoteError> {
        Ok(format!("{n} {text}"))
    }

    async fn nested(&self, value: Nested) -> Result<Nested, RemoteError> {
        Ok(value)
    }

    async fn refs(
        &self,
        _one: Remote<dyn FuzzTarget>,
        _any: AnyRemote,
        many: Vec<Option<AnyRemote>>,
    ) -> Result<u64, RemoteError> {
        Ok(many.len() as u64)
    }

    async fn poke(&self, _bytes: serde_bytes::ByteBuf) -> Result<(), RemoteError> {
        Ok(())
    }
}

/// The stack of the thread every input runs on: tokio's default for worker threads, where a
/// runtime's reader tasks decode a peer's bytes in production. libFuzzer's main thread has a
/// larger one, which could hide a stack overflow.
const WORKER_STACK: usize = 2 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the fuzzing thread (made once, [`WORKER_STACK`] of stack) and waits for it; a
/// panic there is raised again here. Everything of an input, tokio tasks included, runs on that
/// one thread and is finished or parked when this returns, so runs are repeatable and
/// LeakSanitizer never sees memory in flight on another thread.
fn on_fuzz_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    static JOBS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("oxrmi-fuzz".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("the fuzzing thread");
        Mutex::new(tx)
    });
    let (done, result) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    jobs.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(job)
        .expect("the fuzzing thread is gone");
    match result.recv() {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the fuzzing thread is gone"),
    }
}

// State that outlives an input is in statics, not thread-locals: LeakSanitizer does not see
// what only another thread's thread-locals point to, and reports it as leaked.

/// The tokio runtime every input runs on (on the fuzzing thread), made once.
static TOKIO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The live runtime and connection [`message`] decodes in, made on first use.
static MESSAGE: Mutex<Option<Live>> = Mutex::new(None);

fn block_on<F: Future>(f: F) -> F::Output {
    TOKIO
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for fuzzing")
        })
        .block_on(f)
}

/// Lets spawned tasks (handlers, replies, releases) run to where they wait.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

// ------------------------------------------------------------------------------------------
// frames

/// A transport that hands its bytes over at most `chunk` at a time (all at once if 0), so frames
/// straddle reads in every way.
pub(crate) struct Trickle {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl Trickle {
    /// `data`, at most `chunk` bytes a read (all at once if 0), then the end of the stream.
    pub(crate) fn new(data: Vec<u8>, chunk: usize) -> Trickle {
        Trickle {
            data,
            pos: 0,
            chunk,
        }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut n = (this.data.len() - this.pos).min(buf.remaining());
        if this.chunk != 0 {
            n = n.min(this.chunk);
        }
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// The frame layer over `data` as a byte stream.
///
/// Input: one byte of knobs (low 6 bits: the transport's chunk size, 0 for all at once; high 2
/// bits: the frame size limit, 256 B to 1 MiB), then the stream: the 8-byte preamble, then
/// frames (length prefix, kind, body).
pub fn frames(data: &[u8]) {
    let data = data.to_vec();
    on_fuzz_thread(move || frames_here(&data));
}

fn frames_here(data: &[u8]) {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knobs & 0x3f);
    let max = 256usize << (4 * (knobs >> 6));
    let rest = match stream.first_chunk::<PREAMBLE_LEN>() {
        Some(p) => {
            let _ = frame::check_preamble(p);
            &stream[PREAMBLE_LEN..]
        }
        None => stream,
    };
    let reader: BoxRead = Box::new(Trickle::new(rest.to_vec(), chunk));
    block_on(async move {
        let mut r = BufReader::with_capacity(64, reader);
        while let Ok(f) = connection::read_frame(&mut r, max).await {
            assert!(
                !f.is_empty() && f.len() <= max,
                "frame of {} bytes",
                f.len()
            );
            let _ = message::decode(&f);
        }
    });
}

// ------------------------------------------------------------------------------------------
// message

/// A runtime serving [`FuzzTarget`] with a connection to a peer that drains what it is sent.
#[derive(Clone)]
struct Live {
    rt: Runtime,
    conn: Connection,
}

/// A fresh runtime with a registry, the test object exported as [`TARGET_OBJECT`] and bound as
/// `fuzz`, the test object as its bootstrap (so `Bootstrap::get` answers at once), the shortest
/// lease (so holds on references end quickly), and its transport pinned to FIFOs: references in
/// fuzzed input name arbitrary endpoints, and a fuzzer must not dial the machine's sockets (it
/// would only find a FIFO someone made at the named path).
async fn fresh_runtime() -> Runtime {
    let target = Remote::<dyn FuzzTarget>::new(Target);
    let rt = Runtime::builder()
        .registry()
        .lease(Duration::from_millis(40))
        .pin_transport("fifo")
        .bootstrap(target.clone())
        .start()
        .await
        .expect("a runtime to fuzz");
    let id = rt
        .inner
        .objects
        .export(target.clone().into_any().exported());
    debug_assert_eq!(id, ObjId(TARGET_OBJECT));
    rt.bind("fuzz", target)
        .await
        .expect("binding the test object");
    rt
}

/// One end of an in-memory link as the runtime's [`Link`]; its scheme is `fifo`, the pinned one,
/// so calls back to the peer go over it.
fn link(end: tokio::io::DuplexStream) -> Link {
    let (r, w) = tokio::io::split(end);
    Link {
        reader: Box::new(r),
        writer: Box::new(w),
        scheme: "fifo",
        peer: "fuzz".into(),
        local_host: None,
        peer_is_local_host: true,
        peer_uid: None,
        peer_subject: None,
        spin_until_readable: None,
    }
}

/// The preamble and a Hello from [`PEER_ID`]: what a well-behaved peer sends first.
pub fn handshake(runtime: [u8; 16]) -> Vec<u8> {
    let mut out = frame::preamble().to_vec();
    let hello = Hello {
        runtime: RuntimeId::from_bytes(runtime),
        endpoints: vec!["tcp://127.0.0.1:1099".into()],
        auth: None,
        lease_ms: 60_000,
    };
    out.extend_from_slice(&message::hello(&hello, frame::DEFAULT_MAX_FRAME).unwrap_or_default());
    out
}

/// A Call frame (length prefix included) of `method` on `object` with already encoded `args`.
pub fn call_frame(call: u64, object: u64, method: &str, flags: u8, args: &[u8]) -> Vec<u8> {
    let header = CallHeader {
        call: CallId(call),
        object: ObjId(object),
        method,
        timeout_us: 30_000_000,
        flags,
    };
    let mut f = message::call(&header, args.len());
    f.body().extend_from_slice(args);
    f.finish(frame::DEFAULT_MAX_FRAME).unwrap_or_default()
}

/// Reads everything `r` yields until it ends, so the runtime's writes never wait on the peer.
async fn drain(mut r: impl AsyncRead + Unpin) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Replaces every `bin16` of [`OWN_ID_PLACEHOLDER`] in `bytes` by `id`.
fn with_own_id(bytes: &mut [u8], id: RuntimeId) {
    let mut pattern = [0u8; 18];
    pattern[..2].copy_from_slice(&[0xc4, 0x10]);
    pattern[2..].copy_from_slice(&OWN_ID_PLACEHOLDER);
    let mut i = 0;
    while i + pattern.len() <= bytes.len() {
        if bytes[i..i + pattern.len()] == pattern {
            bytes[i + 2..i + pattern.len()].copy_from_slice(id.as_bytes());
            i += pattern.len();
        } else {
            i += 1;
        }
    }
}

impl Live {
    /// The runtime, with a connection to a peer that said its preamble and Hello and then
    /// stays silent, and discards what it is sent. (Not an in-memory pipe: a pipe's buffer,
    /// once drained, is pointed to only from one past its end, which LeakSanitizer takes for a
    /// leak of this long-lived link.)
    async fn start() -> Live {
        let rt = fresh_runtime().await;
        let link = Link {
            reader: Box::new(std::io::Cursor::new(handshake(PEER_ID)).chain(Silent)),
            writer: Box::new(tokio::io::sink()),
            scheme: "fifo",
            peer: "fuzz".into(),
            local_host: None,
            peer_is_local_host: true,
            peer_uid: None,
            peer_subject: None,
            spin_until_readable: None,
        };
        let conn = connection::establish(&rt.inner, link)
            .await
            .expect("the harness's handshake");
        rt.inner.conns.insert(conn.clone(), None);
        Live { rt, conn }
    }
}

/// A stream that never yields a byte and never ends.
struct Silent;

impl AsyncRead for Silent {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

/// One frame body (kind byte, then the body; no length prefix) decoded as the runtime decodes a
/// peer's frame, then: a Call's arguments decoded and the method run by the real
/// `dispatch::serve` (so for [`TARGET_OBJECT`], the generated dispatch of [`FuzzTarget`]; the
/// well-known objects 1 to 4 are there too), a Reply's payload decoded as the stub decodes
/// results and errors (every result type of [`FuzzTarget`], references included), all within
/// the marshalling context of a live runtime and a connection to [`PEER_ID`].
pub fn message(data: &[u8]) {
    let data = data.to_vec();
    on_fuzz_thread(move || message_here(&data));
}

fn message_here(data: &[u8]) {
    let live = {
        let mut live = MESSAGE.lock().unwrap_or_else(PoisonError::into_inner);
        if live.as_ref().is_none_or(|l| l.conn.is_closed()) {
            *live = Some(block_on(Live::start()));
        }
        live.clone()
    };
    let Some(live) = live else { return };
    let mut frame = data.to_vec();
    with_own_id(&mut frame, live.rt.id());
    block_on(async {
        decode_message(&live, &frame);
        settle().await;
    });
}

fn decode_message(live: &Live, frame: &[u8]) {
    let ctx = MarshalCtx {
        rt: live.rt.inner.clone(),
        conn: Some(live.conn.clone()),
    };
    match message::decode(frame) {
        Ok(Message::Call { header, payload }) => {
            if let Some(handler) =
                crate::dispatch::serve(&live.rt.inner, &live.conn, header, &frame[payload..])
            {
                handler.start(&live.conn);
            }
        }
        Ok(Message::Reply {
            status, payload, ..
        }) => reply_payload(&ctx, status, &frame[payload..]),
        Ok(Message::Hello(h)) => {
            for ep in &h.endpoints {
                let _ = ep.parse::<Endpoint>();
            }
        }
        Ok(Message::Error(e)) => {
            let _ = e.to_string();
        }
        Ok(Message::Cancel(_) | Message::Ack(_) | Message::Auth(_)) | Err(_) => {}
    }
}

/// A recursive value with a large inline part, the worst case for a decoder that pre-allocates
/// from length headers.
#[derive(Debug, serde::Deserialize)]
pub struct Wide {
    /// Inline bytes, as an array of 32 numbers.
    pub inline: [u64; 32],
    /// More of the same.
    pub children: Vec<Wide>,
}

/// Decodes `data` as several types through the decode budget (`crate::budget`) with the given
/// limits, as the runtime decodes every argument and result; returns how many of them decoded.
/// For the property test that decoding arbitrary bytes stays within its bounds.
pub fn bounded_decode(data: &[u8], max_decoded: u64, max_len: u64) -> usize {
    use crate::budget::{Budget, Counted, DecodeLimits};
    fn one<T: serde::de::DeserializeOwned>(data: &[u8], limits: DecodeLimits) -> bool {
        let budget = Budget::new(limits);
        let mut de = rmp_serde::Deserializer::from_read_ref(data);
        de.set_max_depth(marshal::MAX_DEPTH);
        T::deserialize(Counted {
            inner: &mut de,
            budget: &budget,
            top: None,
        })
        .is_ok()
    }
    let limits = DecodeLimits {
        max_decoded,
        max_len,
    };
    [
        one::<Vec<String>>(data, limits),
        one::<Nested>(data, limits),
        one::<std::collections::HashMap<String, Vec<u64>>>(data, limits),
        one::<Vec<Vec<Vec<u8>>>>(data, limits),
        one::<Wide>(data, limits),
        one::<Vec<Option<Box<Choice>>>>(data, limits),
        one::<RemoteError>(data, limits),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

/// Decodes a reply payload as the stub does for each method of [`FuzzTarget`].
fn reply_payload(ctx: &MarshalCtx, status: Status, bytes: &[u8]) {
    let what = || "a fuzzed reply".to_string();
    match status {
        Status::Ok => {
            let _ = marshal::decode_value::<String>(ctx, bytes, what);
            let _ = marshal::decode_value::<Nested>(ctx, bytes, what);
            let _ = marshal::decode_value::<u64>(ctx, bytes, what);
            let _ = marshal::decode_value::<()>(ctx, bytes, what);
            let _ = marshal::decode_value::<Remote<dyn FuzzTarget>>(ctx, bytes, what);
            let _ = marshal::decode_value::<Vec<Option<AnyRemote>>>(ctx, bytes, what);
        }
        Status::AppError | Status::Failed => {
            if let Ok(e) = marshal::decode_value::<RemoteError>(ctx, bytes, what) {
                let _ = e.to_string();
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// connection

/// The whole receive path of a fresh runtime fed `data` as its peer's bytes over an in-memory
/// link: `connection::establish` (preamble, Hello) and then the read loop, which decodes frames,
/// serves calls on the test object and the well-known objects, completes replies, and rejects
/// what breaks the protocol. The peer's stream ends after `data`; anything the runtime writes
/// is read and dropped. Afterwards the same runtime must still answer a well-behaved peer's call.
///
/// Input: one byte of knobs (bit 0: prepend a valid preamble and Hello from [`PEER_ID`], so the
/// fuzzer can skip the handshake), then the peer's bytes.
pub fn connection(data: &[u8]) {
    let data = data.to_vec();
    on_fuzz_thread(move || connection_here(&data));
}

fn connection_here(data: &[u8]) {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = Vec::with_capacity(64 + rest.len());
    if knobs & 1 != 0 {
        bytes.extend_from_slice(&handshake(PEER_ID));
    }
    bytes.extend_from_slice(rest);
    block_on(async {
        let rt = fresh_runtime().await;
        with_own_id(&mut bytes, rt.id());
        let (ours, theirs) = tokio::io::duplex(LINK_BUFFER);
        let (pr, mut pw) = tokio::io::split(theirs);
        let peer = tokio::spawn(async move {
            let _ = pw.write_all(&bytes).await;
            let _ = pw.shutdown().await;
        });
        let drained = tokio::spawn(drain(pr));
        let inner = rt.inner.clone();
        // As the accept loop does it.
        let mut served = tokio::spawn(async move {
            let conn = connection::establish(&inner, link(ours)).await?;
            inner.conns.insert(conn.clone(), None);
            conn.closed().await;
            Ok::<_, RemoteError>(())
        });
        match tokio::time::timeout(BUDGET, &mut served).await {
            Err(_) => served.abort(),
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(_) => {}
        }
        assert_serves(&rt).await;
        rt.shutdown();
        peer.abort();
        drained.abort();
        settle().await;
    });
}

/// A well-behaved peer connects to `rt` and calls `echo` on the test object: the runtime must
/// answer, whatever the peer before did.
async fn assert_serves(rt: &Runtime) {
    const GOOD_PEER: [u8; 16] = [0x42; 16];
    let (ours, theirs) = tokio::io::duplex(LINK_BUFFER);
    let (pr, mut pw) = tokio::io::split(theirs);
    let mut out = handshake(GOOD_PEER);
    // [7, "x"]
    out.extend_from_slice(&call_frame(
        1,
        TARGET_OBJECT,
        "echo",
        0,
        &[0x92, 0x07, 0xa1, b'x'],
    ));
    let check = async {
        pw.write_all(&out).await.expect("writing to the runtime");
        let conn = connection::establish(&rt.inner, link(ours))
            .await
            .expect("the handshake with a well-behaved peer");
        rt.inner.conns.insert(conn.clone(), None);
        let mut r = BufReader::new(Box::new(pr) as BoxRead);
        let mut p = [0u8; PREAMBLE_LEN];
        r.read_exact(&mut p).await.expect("the runtime's preamble");
        frame::check_preamble(&p).expect("a valid preamble");
        let hello = read_one(&mut r).await;
        assert!(matches!(message::decode(&hello), Ok(Message::Hello(_))));
        let reply = read_one(&mut r).await;
        match message::decode(&reply) {
            Ok(Message::Reply {
                call,
                status: Status::Ok,
                payload,
            }) => {
                assert_eq!(call, CallId(1));
                let s: String = rmp_serde::from_slice(&reply[payload..]).expect("a string");
                assert_eq!(s, "7 x");
            }
            other => panic!("expected an Ok reply, got {other:?}"),
        }
        conn.close(&rt.inner, &RemoteError::Shutdown);
    };
    tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .expect("the runtime no longer answers a well-behaved peer");
}

async fn read_one(r: &mut BufReader<BoxRead>) -> Vec<u8> {
    match connection::read_frame(r, frame::DEFAULT_MAX_FRAME).await {
        Ok(f) => f,
        Err(_) => panic!("the runtime sent no frame"),
    }
}

// ------------------------------------------------------------------------------------------
// shm_ring

/// The shared-memory rings: a segment whose layout, header, control words and data come from
/// `data`, read and written by the real `Consumer` (`transport::shm`) and producer while a
/// hostile peer stores arbitrary values into the segment. Every corrupt position must give the
/// ring's `Corrupt` error (`InvalidData`), never a panic or an access out of the mapping; while
/// the peer has not touched a ring, what is read from it must be exactly what was written.
/// The input format is described at `transport::shm::fuzz::ring`.
pub fn shm_ring(data: &[u8]) {
    let data = data.to_vec();
    on_fuzz_thread(move || shm_ring_here(&data));
}

fn shm_ring_here(data: &[u8]) {
    crate::transport::shm::fuzz_ring(data);
}

// ------------------------------------------------------------------------------------------
// grpc_request

/// A runtime exporting the fuzz target and a bridge serving it, made on first use.
#[cfg(feature = "grpc")]
static GRPC: Mutex<Option<(Runtime, crate::grpc::fuzzing::Detached, Vec<String>)>> =
    Mutex::new(None);

/// The gRPC bridge's protobuf-to-call path: a request body decoded by the method's descriptor,
/// translated into the method's MessagePack arguments by the traced shapes (references named by
/// `ObjectRef` ids included), the call made, its reply translated back. Must give a status,
/// never a panic.
///
/// Input: one byte choosing the method (its index among the served paths, sorted, modulo their
/// number), then the protobuf body.
#[cfg(feature = "grpc")]
pub fn grpc_request(data: &[u8]) {
    let data = data.to_vec();
    on_fuzz_thread(move || grpc_request_here(&data));
}

#[cfg(feature = "grpc")]
fn grpc_request_here(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let mut live = GRPC.lock().unwrap_or_else(PoisonError::into_inner);
    let (_, bridge, paths) = live.get_or_insert_with(|| {
        block_on(async {
            let rt = Runtime::builder()
                .registry()
                .start()
                .await
                .expect("a runtime for the bridge");
            rt.bind("target", Remote::<dyn FuzzTarget>::new(Target))
                .await
                .expect("bind the target");
            let bridge = crate::grpc::fuzzing::Detached::new(&rt.inner)
                .await
                .expect("a bridge");
            let paths = bridge.paths();
            (rt, bridge, paths)
        })
    });
    let path = paths[pick as usize % paths.len()].clone();
    let body = bytes::Bytes::copy_from_slice(body);
    block_on(async {
        let _ = bridge.call(&path, body).await;
        settle().await;
    });
}

/// Seeds of [`grpc_request`]: a well-formed request of each kind (plain arguments, nested values,
/// references by id, a one-way call, the registry and introspection), as (file name, input).
#[cfg(feature = "grpc")]
pub fn grpc_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
    fn msg(d: &MessageDescriptor, fields: Vec<(&str, Value)>) -> DynamicMessage {
        let mut m = DynamicMessage::new(d.clone());
        for (name, v) in fields {
            m.try_set_field_by_name(name, v).expect("a seed field");
        }
        m
    }
    fn child(parent: &MessageDescriptor, field: &str) -> MessageDescriptor {
        match parent
            .get_field_by_name(field)
            .expect("a seed field")
            .kind()
        {
            prost_reflect::Kind::Message(d) => d,
            _ => panic!("{field} is not a message"),
        }
    }
    on_fuzz_thread(|| {
        grpc_request_here(&[0]);
        let live = GRPC.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, bridge, paths) = live.as_ref().expect("the bridge");
        let input = |path: &str, m: DynamicMessage| {
            let i = paths.iter().position(|p| p == path).expect("a served path");
            let mut v = vec![i as u8];
            v.extend(prost::Message::encode_to_vec(&m));
            v
        };
        let req = |path: &str| bridge.request(path).expect("a served path");
        let t = "/oxrmi.fuzz.target.Target/";
        let echo = req(&format!("{t}Echo"));
        let nested = req(&format!("{t}Nested"));
        let n = child(&nested, "value");
        let choice = child(&n, "choice");
        let pair = child(&choice, "pair");
        let refs = req(&format!("{t}Refs"));
        let object = child(&refs, "one");
        let target = |id: &str| {
            Value::Message(msg(
                &object,
                vec![
                    ("id", Value::String(id.into())),
                    ("interface", Value::String("oxrmi.fuzz.Target".into())),
                ],
            ))
        };
        let optional = child(&refs, "many");
        let poke = req(&format!("{t}Poke"));
        let lookup = req("/oxrmi.registry.Registry/Lookup");
        let describe = req("/oxrmi.introspect.Introspect/Describe");
        let value = msg(
            &n,
            vec![
                ("name", Value::String("outer".into())),
                ("bytes", Value::Bytes(vec![0, 1, 2].into())),
                (
                    "choice",
                    Value::Message(msg(
                        &choice,
                        vec![(
                            "pair",
                            Value::Message(msg(
                                &pair,
                                vec![("item0", Value::U32(7)), ("item1", Value::I64(-7))],
                            )),
                        )],
                    )),
                ),
                (
                    "child",
                    Value::Message(msg(&n, vec![("name", Value::String("inner".into()))])),
                ),
            ],
        );
        vec![
            (
                "echo",
                input(
                    &format!("{t}Echo"),
                    msg(
                        &echo,
                        vec![("n", Value::I64(5)), ("text", Value::String("hi".into()))],
                    ),
                ),
            ),
            (
                "nested",
                input(
                    &format!("{t}Nested"),
                    msg(&nested, vec![("value", Value::Message(value))]),
                ),
            ),
            (
                "refs",
                input(
                    &format!("{t}Refs"),
                    msg(
                        &refs,
                        vec![
                            ("one", target(&TARGET_OBJECT.to_string())),
                            ("any", target(&TARGET_OBJECT.to_string())),
                            (
                                "many",
                                Value::List(vec![
                                    Value::Message(msg(&optional, vec![("value", target("16"))])),
                                    Value::Message(msg(&optional, vec![])),
                                ]),
                            ),
                        ],
                    ),
                ),
            ),
            (
                "poke",
                input(
                    &format!("{t}Poke"),
                    msg(&poke, vec![("bytes", Value::Bytes(b"xyz".to_vec().into()))]),
                ),
            ),
            (
                "lookup",
                input(
                    "/oxrmi.registry.Registry/Lookup",
                    msg(&lookup, vec![("name", Value::String("target".into()))]),
                ),
            ),
            (
                "describe",
                input(
                    "/oxrmi.introspect.Introspect/Describe",
                    msg(
                        &describe,
                        vec![("interface", Value::String("oxrmi.fuzz.Target".into()))],
                    ),
                ),
            ),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ObjRef;

    fn body(frame: &[u8]) -> Vec<u8> {
        frame[frame::LENGTH_LEN..].to_vec()
    }

    fn obj_ref(runtime: [u8; 16], object: u64, lease: u64, transit: u64) -> ObjRef {
        ObjRef {
            runtime: Some(RuntimeId::from_bytes(runtime)),
            object: ObjId(object),
            interface: "oxrmi.fuzz.Target".into(),
            endpoints: vec!["tcp://127.0.0.1:1099".into()],
            lease,
            transit,
        }
    }

    fn enc<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        rmp_serde::to_vec(v).unwrap()
    }

    fn reply(call: u64, status: Status, payload: &[u8]) -> Vec<u8> {
        let mut f = message::reply(CallId(call), status, payload.len());
        f.body().extend_from_slice(payload);
        f.finish(frame::DEFAULT_MAX_FRAME).unwrap()
    }

    /// `Nested` as it travels, with references written as the wire form they are.
    #[derive(Serialize)]
    struct NestedWire {
        name: String,
        bytes: serde_bytes::ByteBuf,
        map: BTreeMap<String, Vec<i32>>,
        choice: Choice,
        refs: Vec<ObjRef>,
        child: Option<Box<NestedWire>>,
    }

    /// The seed corpus: (target, file name, bytes), from real protocol bytes.
    fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let hello = handshake(PEER_ID);
        let add = call_frame(1, TARGET_OBJECT, "add", 0, &[0x91, 0x05]);
        let echo = call_frame(1, TARGET_OBJECT, "echo", 0, &[0x92, 0x07, 0xa1, b'x']);
        let ok5 = reply(1, Status::Ok, &[0x05]);
        let cancel = message::cancel(CallId(1));
        let error = message::error(&RemoteError::protocol("x"));
        let nested = NestedWire {
            name: "outer".into(),
            bytes: serde_bytes::ByteBuf::from(vec![1, 2, 3]),
            map: BTreeMap::from([("k".into(), vec![1, -2, 3])]),
            choice: Choice::Named {
                flag: true,
                text: Some("t".into()),
            },
            refs: vec![obj_ref(PEER_ID, 20, 1, 0)],
            child: Some(Box::new(NestedWire {
                name: "inner".into(),
                bytes: serde_bytes::ByteBuf::new(),
                map: BTreeMap::new(),
                choice: Choice::Pair(1, -1),
                refs: vec![obj_ref(OWN_ID_PLACEHOLDER, TARGET_OBJECT, 0, 0)],
                child: None,
            })),
        };
        let mut nested_args = vec![0x91];
        nested_args.extend(enc(&nested));
        let nested = call_frame(2, TARGET_OBJECT, "nested", 0, &nested_args);
        // refs(one: from the peer, its owner; any: our own object back; many: nil and one of a
        // third runtime's, forwarded by the peer with a transit token).
        let mut refs_args = vec![0x93];
        refs_args.extend(enc(&obj_ref(PEER_ID, 17, 1, 0)));
        refs_args.extend(enc(&obj_ref(OWN_ID_PLACEHOLDER, TARGET_OBJECT, 0, 0)));
        refs_args.extend(enc(&vec![None, Some(obj_ref([0x33; 16], 18, 0, 5))]));
        let refs = call_frame(3, TARGET_OBJECT, "refs", 0, &refs_args);
        let poke = call_frame(
            4,
            TARGET_OBJECT,
            "poke",
            message::flags::ONEWAY | message::flags::ACK,
            &[0x91, 0xc4, 0x02, 0xde, 0xad],
        );
        let lookup = call_frame(
            5,
            ObjId::REGISTRY.0,
            "lookup",
            0,
            &[0x91, 0xa4, b'f', b'u', b'z', b'z'],
        );
        let acquire = call_frame(6, ObjId::LEASES.0, "acquire", 0, &[0x91, 0x10]);
        let report = call_frame(7, ObjId::INTROSPECT.0, "report", 0, &[0x90]);
        let bootstrap = call_frame(8, ObjId::BOOTSTRAP.0, "get", 0, &[0x90]);
        let reply_ref = reply(1, Status::Ok, &enc(&obj_ref(PEER_ID, 19, 1, 0)));
        let failed = reply(
            1,
            Status::Failed,
            &enc(&RemoteError::NotBound {
                name: "counter".into(),
            }),
        );
        let cat = |parts: &[&[u8]]| parts.concat();
        let mut bad_version = frame::preamble().to_vec();
        bad_version[7] = 9;
        let shm = |ops: &[&[u8]]| ops.concat();
        vec![
            (
                "frames",
                "worked-example",
                cat(&[&[0], &hello, &add, &ok5, &cancel, &error]),
            ),
            (
                "frames",
                "trickled-3-bytes",
                cat(&[&[3], &hello, &add, &ok5]),
            ),
            (
                "frames",
                "small-limit",
                cat(&[&[0x40], &hello, &nested, &refs]),
            ),
            (
                "frames",
                "oversized",
                cat(&[&[0], &hello, &[0xff; 4], &[2]]),
            ),
            ("frames", "bad-version", cat(&[&[0], &bad_version, &add])),
            ("message", "hello", body(&hello[PREAMBLE_LEN..])),
            ("message", "call-add", body(&add)),
            ("message", "call-echo", body(&echo)),
            ("message", "call-nested", body(&nested)),
            ("message", "call-refs", body(&refs)),
            ("message", "call-poke-oneway-ack", body(&poke)),
            ("message", "call-registry-lookup", body(&lookup)),
            ("message", "call-lease-acquire", body(&acquire)),
            ("message", "call-introspect-report", body(&report)),
            ("message", "call-bootstrap-get", body(&bootstrap)),
            ("message", "reply-ok", body(&ok5)),
            ("message", "reply-ref", body(&reply_ref)),
            ("message", "reply-failed", body(&failed)),
            ("message", "cancel", body(&cancel)),
            ("message", "error", body(&error)),
            (
                "connection",
                "calls",
                cat(&[&[1], &echo, &refs, &nested, &cancel]),
            ),
            (
                "connection",
                "handshake-and-call",
                cat(&[&[0], &hello, &echo, &poke, &lookup]),
            ),
            (
                "connection",
                "well-known",
                cat(&[&[1], &acquire, &report, &bootstrap, &reply_ref]),
            ),
            ("connection", "error-frame", cat(&[&[1], &echo, &error])),
            (
                "connection",
                "bad-version",
                cat(&[&[0], &bad_version, &hello[PREAMBLE_LEN..]]),
            ),
            // Ring 0 write 100, read 100; ring 1 the same.
            (
                "shm_ring",
                "write-read",
                shm(&[&[0], &[2, 100, 0], &[0, 100, 0], &[3, 100, 0], &[1, 100, 0]]),
            ),
            // 4 KiB rings: fill nearly, drain, then wrap around the end.
            (
                "shm_ring",
                "wrap-around",
                shm(&[
                    &[0],
                    &[2, 0xa0, 0x0f],
                    &[0, 0xa0, 0x0f],
                    &[2, 0x00, 0x01],
                    &[0, 0x00, 0x01],
                ]),
            ),
            // Data in the ring, then the peer moves head past the capacity.
            (
                "shm_ring",
                "corrupt-head",
                shm(&[&[0], &[2, 10, 0], &[4], &5000u64.to_le_bytes(), &[0, 64, 0]]),
            ),
            // Waiter flags and end-of-stream flags.
            (
                "shm_ring",
                "waiters",
                shm(&[
                    &[5],
                    &[12, 0],
                    &[2, 1, 0],
                    &[12, 1],
                    &[12, 6],
                    &[12, 4],
                    &[0, 1, 0],
                ]),
            ),
            // The peer rewrites the header.
            (
                "shm_ring",
                "header",
                shm(&[&[0], &[14, 2], &8192u64.to_le_bytes()]),
            ),
        ]
    }

    /// The committed seeds are these bytes (`OXRMI_WRITE_SEEDS=1` rewrites them), and each runs
    /// through its target without a panic.
    /// Checks that the committed seed `fuzz/corpus/<target>/<name>` is `bytes`, or (with
    /// `OXRMI_WRITE_SEEDS=1`) writes it.
    fn check_seed(target: &str, name: &str, bytes: &[u8]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target)
            .join(name);
        if std::env::var_os("OXRMI_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            return;
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (OXRMI_WRITE_SEEDS=1 writes it)", path.display()));
        assert_eq!(
            committed,
            bytes,
            "{} is stale (OXRMI_WRITE_SEEDS=1)",
            path.display()
        );
    }

    #[test]
    fn seed_corpus_is_current_and_runs_clean() {
        for (target, name, bytes) in seeds() {
            check_seed(target, name, &bytes);
            match target {
                "frames" => frames(&bytes),
                "message" => message(&bytes),
                "connection" => connection(&bytes),
                _ => shm_ring(&bytes),
            }
        }
    }

    /// The committed seeds of `grpc_request` are these (`OXRMI_WRITE_SEEDS=1` rewrites them);
    /// each runs clean, and so do truncations and bit flips of them.
    #[cfg(feature = "grpc")]
    #[test]
    fn grpc_seeds_are_current_and_run_clean() {
        for (name, bytes) in grpc_seeds() {
            check_seed("grpc_request", name, &bytes);
            grpc_request(&bytes);
            for cut in 1..bytes.len() {
                grpc_request(&bytes[..cut]);
            }
            for i in 1..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= 0x5a;
                grpc_request(&flipped);
            }
        }
        for data in [&[][..], &[0], &[1, 0xff], &[3; 40]] {
            grpc_request(data);
        }
    }

    #[test]
    fn empty_and_tiny_inputs_run_clean() {
        for data in [&[][..], &[0], &[1], &[0xff; 9]] {
            frames(data);
            message(data);
            connection(data);
            shm_ring(data);
        }
    }
}
