//! Turning arguments and results into MessagePack and back, for the generated stub and dispatch.
//!
//! Encoding and decoding run synchronously inside a [`MarshalCtx`] scope (a thread-local): a
//! [`Remote`](crate::Remote) met while encoding is exported into that runtime and written as a
//! reference; one met while decoding becomes a handle bound to that runtime and connection.
//! Outside a scope, a `Remote` cannot be encoded or decoded and says so.

use std::cell::RefCell;
use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use crate::budget::{ArgLimit, Budget, Counted};
use crate::buffers::Appender;
use crate::connection::Connection;
use crate::id::CallId;
use crate::message::{self, CallFrame, Status};
use crate::runtime::RuntimeInner;
use crate::{BoxFuture, RemoteError};

/// The runtime (and, when on the wire, the connection) that references are marshalled for.
#[derive(Clone)]
pub(crate) struct MarshalCtx {
    pub(crate) rt: Arc<RuntimeInner>,
    /// The connection the bytes travel over; `None` only for encoding outside a call.
    pub(crate) conn: Option<Connection>,
}

thread_local! {
    static CURRENT: RefCell<Option<MarshalCtx>> = const { RefCell::new(None) };
    /// Set while types are traced ([`tracing`]): a `Remote` then decodes to a placeholder.
    static TRACING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// A limit that stopped the value being encoded or decoded on this thread ([`raise`]).
    static RAISED: RefCell<Option<RemoteError>> = const { RefCell::new(None) };
}

/// Passes `e` through, remembering it if it is a limit (`LimitExceeded`) met while encoding or
/// decoding a reference: serde carries only a message, and the codec's error is then this
/// typed one again rather than a `Marshalling` error.
pub(crate) fn raise(e: RemoteError) -> RemoteError {
    if matches!(e, RemoteError::LimitExceeded { .. }) {
        RAISED.with(|r| *r.borrow_mut() = Some(e.clone()));
    }
    e
}

/// The limit [`raise`]d by the last encode or decode on this thread, if any (and forgets it).
fn raised() -> Option<RemoteError> {
    RAISED.with(|r| r.borrow_mut().take())
}

/// Runs `f` with `ctx` current and in tracing mode, where a `Remote` being decoded records its
/// shape and becomes a placeholder handle (see [`crate::types`]).
pub(crate) fn tracing<R>(ctx: &MarshalCtx, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            TRACING.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(TRACING.with(|t| t.replace(true)));
    ctx.enter(f)
}

/// Whether types are being traced on this thread.
pub(crate) fn is_tracing() -> bool {
    TRACING.with(|t| t.get())
}

impl MarshalCtx {
    /// Runs `f` with `self` as the current context, restoring the previous one afterwards
    /// (contexts nest when a handler encodes while another runtime decodes on the same thread).
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<MarshalCtx>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = prev);
            }
        }
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(prev);
        f()
    }

    /// The current context, if a marshalling scope is active on this thread.
    pub(crate) fn current() -> Option<MarshalCtx> {
        CURRENT.with(|c| c.borrow().clone())
    }
}

/// Encodes a method's arguments, one by one so an error can name the argument: straight into
/// the call's frame when the call goes over a connection.
#[doc(hidden)]
pub struct ArgsEncoder {
    out: Args,
    ctx: MarshalCtx,
    deadline: tokio::time::Instant,
    /// The call's deadline as the caller set it, for its `Timeout` error.
    millis: u64,
}

/// Where an [`ArgsEncoder`] writes.
enum Args {
    /// The frame of a call over a connection.
    Call(CallFrame),
    /// The arguments alone, for a call that needs no connection.
    Bare(Vec<u8>),
}

impl ArgsEncoder {
    /// An encoder of `n` arguments for a call that needs no connection.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn new(
        ctx: MarshalCtx,
        n: usize,
        deadline: tokio::time::Instant,
        millis: u64,
    ) -> Self {
        let mut buf = Vec::with_capacity(16);
        // A Vec never fails to grow here short of allocation failure, which aborts anyway.
        let _ = rmp::encode::write_array_len(&mut buf, n as u32);
        ArgsEncoder {
            out: Args::Bare(buf),
            ctx,
            deadline,
            millis,
        }
    }

    /// An encoder of `n` arguments into `frame`, a call's frame over `ctx`'s connection.
    pub(crate) fn call(
        ctx: MarshalCtx,
        mut frame: CallFrame,
        n: usize,
        deadline: tokio::time::Instant,
        millis: u64,
    ) -> Self {
        // Writing to a Vec does no IO.
        let _ = rmp::encode::write_array_len(&mut frame.body(), n as u32);
        ArgsEncoder {
            out: Args::Call(frame),
            ctx,
            deadline,
            millis,
        }
    }

    /// The call's frame with its arguments, the connection it goes over, the deadline and its
    /// length.
    pub(crate) fn finish(
        self,
    ) -> Result<(CallFrame, Connection, tokio::time::Instant, u64), RemoteError> {
        match (self.out, self.ctx.conn) {
            (Args::Call(frame), Some(conn)) => Ok((frame, conn, self.deadline, self.millis)),
            _ => Err(RemoteError::lost("no connection for the call")),
        }
    }

    /// The encoded arguments alone, for a call that needs no connection.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self.out {
            Args::Bare(buf) => buf,
            Args::Call(frame) => frame.payload().to_vec(),
        }
    }

    /// Appends one argument.
    pub fn push<A: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &A,
    ) -> Result<(), RemoteError> {
        let out = match &mut self.out {
            Args::Call(frame) => frame.body(),
            Args::Bare(buf) => Appender(buf),
        };
        raised();
        self.ctx
            .enter(|| value.serialize(&mut rmp_serde::Serializer::new(out)))
            .map_err(|e| {
                raised().unwrap_or_else(|| RemoteError::Marshalling {
                    what: format!("argument `{name}`"),
                    detail: e.to_string(),
                })
            })
    }
}

/// Decodes a method's arguments, one by one so an error can name the argument, all of them
/// within one decode [`Budget`].
#[doc(hidden)]
pub struct ArgsDecoder<'a> {
    de: rmp_serde::Deserializer<rmp_serde::decode::ReadRefReader<'a, [u8]>>,
    method: &'static str,
    ctx: &'a MarshalCtx,
    budget: Budget,
}

impl ArgsDecoder<'_> {
    /// Decodes the next argument.
    pub fn next<A: DeserializeOwned>(&mut self, name: &'static str) -> Result<A, RemoteError> {
        self.next_limited(name, ArgLimit::default())
    }

    /// Decodes the next argument within the limits its interface declares on it.
    pub fn next_limited<A: DeserializeOwned>(
        &mut self,
        name: &'static str,
        limit: ArgLimit,
    ) -> Result<A, RemoteError> {
        let de = &mut self.de;
        let budget = &self.budget;
        budget.start_arg(limit.size);
        raised();
        self.ctx
            .enter(|| {
                A::deserialize(Counted {
                    inner: de,
                    budget,
                    top: limit.len,
                })
            })
            .map_err(|e| {
                decode_error(budget, e, || {
                    format!("argument `{name}` of `{}`", self.method)
                })
            })
    }
}

/// The error of a failed decode of `what`: a limit raised from inside serde ([`raise`]) or
/// met by the `budget` (`LimitExceeded`, with a log line), else the codec's `Marshalling` error.
fn decode_error(
    budget: &Budget,
    e: rmp_serde::decode::Error,
    what: impl FnOnce() -> String,
) -> RemoteError {
    if let Some(e) = raised() {
        return e;
    }
    let what = what();
    match budget.exceeded() {
        Some(why) => {
            tracing::warn!(%why, "refused {what}: it {why}");
            why.error(&what)
        }
        None => RemoteError::Marshalling {
            what,
            detail: e.to_string(),
        },
    }
}

/// How a dispatched call ended.
#[doc(hidden)]
pub enum Outcome {
    /// The complete reply frame: the method returned `Ok` (or its own error, `app_error`),
    /// encoded straight into the frame.
    Reply {
        /// The frame, length prefix included.
        frame: Vec<u8>,
        /// Whether the payload is the method's application error.
        app_error: bool,
    },
    /// The call failed in the remoting layer.
    Failed(RemoteError),
}

/// What generated dispatch code gets for one incoming call.
#[doc(hidden)]
#[derive(Clone)]
pub struct CallCtx {
    pub(crate) marshal: MarshalCtx,
    /// The call being served: its reply carries this id.
    pub(crate) call: CallId,
    /// The largest frame the reply may be.
    pub(crate) max_frame: usize,
}

impl CallCtx {
    /// Starts decoding the arguments of `method`, checking their number.
    pub fn args<'a>(
        &'a self,
        args: &'a [u8],
        method: &'static str,
        n: usize,
    ) -> Result<ArgsDecoder<'a>, RemoteError> {
        let mut rd = args;
        let got = rmp::decode::read_array_len(&mut rd).map_err(|e| RemoteError::Marshalling {
            what: format!("the arguments of `{method}`"),
            detail: format!("expected an array of {n} arguments: {e}"),
        })?;
        if got as usize != n {
            return Err(RemoteError::Marshalling {
                what: format!("the arguments of `{method}`"),
                detail: format!(
                    "expected {n} arguments, got {got} (do both sides run the same version?)"
                ),
            });
        }
        let mut de = rmp_serde::Deserializer::from_read_ref(rd);
        de.set_max_depth(MAX_DEPTH);
        Ok(ArgsDecoder {
            de,
            method,
            ctx: &self.marshal,
            budget: Budget::new(self.marshal.rt.config.decode),
        })
    }

    /// Encodes what a method returned, straight into its reply frame.
    pub fn encode_result<T: Serialize, E: Serialize>(&self, r: Result<T, E>) -> Outcome {
        let encoded = match &r {
            Ok(v) => self.reply_frame(Status::Ok, v),
            Err(app) => self.reply_frame(Status::AppError, app),
        };
        match encoded {
            Ok(frame) => Outcome::Reply {
                frame,
                app_error: r.is_err(),
            },
            Err(e) => Outcome::Failed(e),
        }
    }

    fn reply_frame<V: Serialize>(&self, status: Status, v: &V) -> Result<Vec<u8>, RemoteError> {
        let mut f = message::reply(self.call, status, 0);
        let body = f.body();
        raised();
        self.marshal
            .enter(|| v.serialize(&mut rmp_serde::Serializer::new(body)))
            .map_err(|e| {
                raised().unwrap_or_else(|| RemoteError::Marshalling {
                    what: "the result".into(),
                    detail: e.to_string(),
                })
            })?;
        f.finish(self.max_frame)
    }
}

/// A finished future holding a failure, for dispatch code that fails before calling the method.
#[doc(hidden)]
pub fn failed(e: RemoteError) -> BoxFuture<'static, Outcome> {
    Box::pin(std::future::ready(Outcome::Failed(e)))
}

/// How deeply a decoded value may nest (arrays and maps within each other). A peer's bytes decode
/// on a task's stack, and each level of a recursive type takes some of it: rmp-serde's default
/// of 1,024 levels overflows a 2 MiB stack in a debug build. Real data nests a handful of levels.
pub(crate) const MAX_DEPTH: usize = 128;

/// Decodes a reply payload within `ctx`, and within its runtime's decode limits.
pub(crate) fn decode_value<V: DeserializeOwned>(
    ctx: &MarshalCtx,
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<V, RemoteError> {
    let budget = Budget::new(ctx.rt.config.decode);
    raised();
    ctx.enter(|| {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        de.set_max_depth(MAX_DEPTH);
        V::deserialize(Counted {
            inner: &mut de,
            budget: &budget,
            top: None,
        })
    })
    .map_err(|e| decode_error(&budget, e, what))
}
