//! The server side of a call: find the object, decode the arguments, run the method as its own
//! task under the caller's deadline, catch a panic, and send the outcome back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::connection::Connection;
use crate::context::{self, Caller};
use crate::id::CallId;
use crate::marshal::{CallCtx, MarshalCtx, Outcome};
use crate::message::{self, CallHeader, Status, flags};
use crate::runtime::RuntimeInner;
use crate::unwind::CatchUnwind;
use crate::{BoxFuture, RemoteError};

/// A decoded call's handler, started by the reader once it has let go of the call's frame
/// ([`Handler::start`]): a large argument frame is back among the spare buffers before the
/// handler (run at once on a current-thread runtime) asks for one for its reply.
#[must_use = "a handler does nothing until it is started"]
pub(crate) struct Handler {
    /// A two-way call's id, under which a Cancel or a disconnect can stop it; `None` for a
    /// one-way call, which runs to its end.
    tracked: Option<CallId>,
    task: BoxFuture<'static, ()>,
}

impl Handler {
    /// Runs the handler: see [`Connection::start_tracked`].
    pub(crate) fn start(self, conn: &Connection) {
        match self.tracked {
            Some(call) => conn.start_tracked(call, self.task),
            None => conn.start(self.task),
        }
    }
}

/// Serves one incoming call. Decoding happens here, on the connection's reader; the method runs
/// on a task of its own so a slow call never blocks another (on a current-thread runtime, once
/// it does not finish at its first poll: `Connection::start_tracked`). A call refused before it
/// runs is answered here and gives no handler.
pub(crate) fn serve(
    rt: &Arc<RuntimeInner>,
    conn: &Connection,
    header: CallHeader<Cow<'_, str>>,
    args: &[u8],
) -> Option<Handler> {
    let oneway = header.flags & flags::ONEWAY != 0;
    let call = header.call;
    let span = tracing::debug_span!(
        "oxrmi.serve",
        interface = tracing::field::Empty,
        method = %header.method,
        peer = %conn.peer(),
        transport = conn.info().scheme,
        call = call.0,
        outcome = tracing::field::Empty,
        micros = tracing::field::Empty,
    );
    let Some(obj) = rt.objects.get(header.object) else {
        let e = RemoteError::NoSuchObject {
            object: header.object.to_string(),
        };
        finish_early(rt, conn, &span, oneway, call, e);
        return None;
    };
    let schema = obj.schema();
    span.record("interface", &*schema.name);
    let caller = Caller {
        runtime: conn.peer(),
        address: conn.info().peer_addr.clone(),
        local_host: conn.info().peer_is_local_host,
        uid: conn.info().peer_uid,
        certificate_subject: conn.info().peer_subject.clone(),
    };
    if let Err(e) = authorize(rt, &caller, &schema.name, &header.method) {
        finish_early(rt, conn, &span, oneway, call, e);
        return None;
    }
    let limit = rt.config.max_calls_in_flight;
    if conn.calls_running() >= limit {
        let e = RemoteError::Overloaded {
            what: "calls in flight on this connection".into(),
            limit: limit as u64,
        };
        if oneway {
            // Nobody waits for its answer: dropped, and counted in the log line.
            let dropped = conn.oneway_dropped();
            let _g = span.enter();
            span.record("outcome", "failed");
            tracing::warn!(error = %e, dropped, "a one-way call was dropped at the limit of calls in flight");
            return None;
        }
        finish_early(rt, conn, &span, oneway, call, e);
        return None;
    }
    let ctx = CallCtx {
        marshal: MarshalCtx {
            rt: rt.clone(),
            conn: Some(conn.clone()),
        },
        call,
        max_frame: conn.max_frame(),
    };
    let Some(dispatched) = obj.dispatch(&header.method, args, &ctx) else {
        // Gone since it was looked up.
        let e = RemoteError::NoSuchObject {
            object: header.object.to_string(),
        };
        finish_early(rt, conn, &span, oneway, call, e);
        return None;
    };
    let Some(fut) = dispatched else {
        let e = RemoteError::NoSuchMethod {
            interface: schema.name.to_string(),
            method: header.method.into_owned(),
        };
        finish_early(rt, conn, &span, oneway, call, e);
        return None;
    };
    let timeout = Duration::from_micros(header.timeout_us);
    let deadline = Instant::now() + timeout;
    let conn2 = conn.clone();
    let task_span = span.clone();
    let traced = !span.is_disabled();
    let task = async move {
        let start = traced.then(std::time::Instant::now);
        let guarded = CatchUnwind::new(context::serve_scope(caller, deadline, fut));
        let outcome = match crate::timer::timeout_at(deadline, guarded).await {
            Ok(Ok(o)) => o,
            Ok(Err(message)) => {
                tracing::warn!(%message, "a remote method panicked; the call fails, serving goes on");
                Outcome::Failed(RemoteError::Panic { message })
            }
            Err(_) => Outcome::Failed(RemoteError::Timeout {
                millis: timeout.as_millis() as u64,
            }),
        };
        if let Some(start) = start {
            span.record("outcome", outcome_name(&outcome));
            span.record("micros", start.elapsed().as_micros() as u64);
            tracing::debug!(parent: &span, "call served");
        }
        if !oneway {
            send_outcome(&conn2, call, outcome).await;
        } else if let Outcome::Failed(e) = outcome {
            tracing::warn!(error = %e, "a one-way call failed");
        }
    };
    if oneway {
        // Nobody waits for a one-way call, so nobody can cancel it: it runs to completion,
        // counted toward the connection's limit meanwhile.
        let counted = conn.oneway_started();
        let task = async move {
            task.await;
            drop(counted);
        };
        return Some(Handler {
            tracked: None,
            task: Box::pin(task.instrument(task_span)),
        });
    }
    let task: BoxFuture<'static, ()> = if traced {
        Box::pin(task.instrument(task_span))
    } else {
        // Nobody listens: no span to enter at each poll of the handler.
        Box::pin(task)
    };
    Some(Handler {
        tracked: Some(call),
        task,
    })
}

/// The runtime's authorization checks for one call (none installed: nothing runs).
fn authorize(
    rt: &RuntimeInner,
    caller: &Caller,
    interface: &str,
    method: &str,
) -> Result<(), RemoteError> {
    let checks = &rt.config.authorizer;
    if checks.is_empty() {
        return Ok(());
    }
    checks.check(&crate::authorize::CallInfo {
        caller,
        interface,
        method,
    })
}

fn finish_early(
    _rt: &RuntimeInner,
    conn: &Connection,
    span: &tracing::Span,
    oneway: bool,
    call: CallId,
    e: RemoteError,
) {
    let _g = span.enter();
    tracing::debug!(error = %e, "call refused");
    span.record("outcome", "failed");
    if oneway {
        tracing::warn!(error = %e, "a one-way call failed");
        return;
    }
    // Small, and sent without a task of its own where the send buffer has room, so refusals of
    // a peer that reads nothing cannot pile up tasks (`Connection::send_soon`).
    if let Ok(frame) = failure_frame(call, &e, conn.max_frame()) {
        conn.send_soon(frame);
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Reply {
            app_error: false, ..
        } => "ok",
        Outcome::Reply {
            app_error: true, ..
        } => "app_error",
        Outcome::Failed(_) => "failed",
    }
}

/// Sends the reply to `call`. A failure is encoded here; a result was encoded into its frame
/// by the generated code already.
///
/// A result that would wait behind more than the send buffer's bytes of unsent replies is
/// dropped and the caller gets `Overloaded` instead: a peer that does not read its replies
/// makes each of its calls in flight hold a small frame, not a large one.
async fn send_outcome(conn: &Connection, call: CallId, outcome: Outcome) {
    let frame = match outcome {
        Outcome::Reply { frame, .. } => frame,
        Outcome::Failed(e) => match failure_frame(call, &e, conn.max_frame()) {
            Ok(f) => f,
            Err(_) => return,
        },
    };
    // The last handler running writes at once; with others running, or more calls read and
    // about to be served, replies are batched.
    let eager = conn.serving() <= 1 && !conn.more_incoming();
    let frame = match conn.send_reply(frame, eager).await {
        Ok(Ok(())) => return,
        Ok(Err(refused)) => {
            let limit = conn.send_buffer_bytes();
            tracing::debug!(
                call = call.0,
                bytes = refused.len(),
                limit,
                "the peer has too many unread replies; this one is refused"
            );
            let e = RemoteError::Overloaded {
                what: "bytes of replies the peer has not read yet".into(),
                limit: limit as u64,
            };
            match failure_frame(call, &e, conn.max_frame()) {
                Ok(f) => f,
                Err(_) => return,
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "the reply could not be sent");
            return;
        }
    };
    if let Err(e) = conn.send(frame, eager).await {
        tracing::debug!(error = %e, "the reply could not be sent");
    }
}

fn failure_frame(call: CallId, e: &RemoteError, max: usize) -> Result<Vec<u8>, RemoteError> {
    let mut f = message::reply(call, Status::Failed, 0);
    rmp_serde::encode::write(&mut f.body(), e).map_err(|e| RemoteError::Marshalling {
        what: "the error".into(),
        detail: e.to_string(),
    })?;
    f.finish(max)
}

/// Calls `method` of the local object `object` in this task, without a connection: the gRPC
/// bridge's path for methods whose values hold no references (which alone need a connection to
/// be marshalled). Same rules as [`serve`]: the caller's identity and deadline in scope, a panic
/// or a missed deadline fails the call. `args` is the encoded argument array.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) async fn in_process(
    rt: &Arc<RuntimeInner>,
    object: crate::id::ObjId,
    method: &str,
    args: &[u8],
    caller: Caller,
    deadline: Instant,
    millis: u64,
) -> Result<crate::stub::RawReply, RemoteError> {
    let no_object = || RemoteError::NoSuchObject {
        object: object.to_string(),
    };
    let obj = rt.objects.get(object).ok_or_else(no_object)?;
    authorize(rt, &caller, &obj.schema().name, method)?;
    let ctx = CallCtx {
        marshal: MarshalCtx {
            rt: rt.clone(),
            conn: None,
        },
        call: CallId(0),
        max_frame: rt.config.max_frame,
    };
    let fut = obj
        .dispatch(method, args, &ctx)
        .ok_or_else(no_object)?
        .ok_or_else(|| RemoteError::NoSuchMethod {
            interface: obj.schema().name.to_string(),
            method: method.to_string(),
        })?;
    let guarded = CatchUnwind::new(context::serve_scope(caller, deadline, fut));
    let frame = match crate::timer::timeout_at(deadline, guarded).await {
        Ok(Ok(Outcome::Reply { frame, .. })) => frame,
        Ok(Ok(Outcome::Failed(e))) => return Err(e),
        Ok(Err(message)) => {
            tracing::warn!(%message, "a remote method panicked; the call fails, serving goes on");
            return Err(RemoteError::Panic { message });
        }
        Err(_) => return Err(RemoteError::Timeout { millis }),
    };
    let body = frame.get(crate::frame::LENGTH_LEN..).unwrap_or_default();
    let message::Message::Reply {
        status, payload, ..
    } = message::decode(body)?
    else {
        return Err(RemoteError::protocol("a handler produced no reply"));
    };
    Ok(crate::stub::RawReply {
        status,
        payload: payload + crate::frame::LENGTH_LEN,
        frame,
        ctx: ctx.marshal,
        millis,
    })
}
