//! The server side of a call: find the object, decode the arguments, run the method as its own
//! task under the caller's deadline, catch a panic, and send the outcome back.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::RemoteError;
use crate::connection::Connection;
use crate::context::{self, Caller};
use crate::marshal::{CallCtx, MarshalCtx, Outcome};
use crate::message::{self, CallHeader, Status, flags};
use crate::runtime::RuntimeInner;
use crate::unwind::CatchUnwind;

/// Serves one incoming call. Decoding happens here, on the connection's reader; the method runs
/// on a task of its own so a slow call never blocks another.
pub(crate) fn serve(rt: &Arc<RuntimeInner>, conn: &Connection, header: CallHeader, args: &[u8]) {
    let oneway = header.flags & flags::ONEWAY != 0;
    let call = header.call;
    let span = tracing::debug_span!(
        "oxrmi.serve",
        interface = tracing::field::Empty,
        method = %header.method,
        peer = %conn.peer(),
        call = call.0,
        outcome = tracing::field::Empty,
        micros = tracing::field::Empty,
    );
    let Some(obj) = rt.objects.get(header.object) else {
        let e = RemoteError::NoSuchObject {
            object: header.object.to_string(),
        };
        finish_early(conn, &span, oneway, call, e);
        return;
    };
    let schema = obj.schema();
    span.record("interface", &*schema.name);
    let ctx = CallCtx {
        marshal: MarshalCtx {
            rt: rt.clone(),
            conn: Some(conn.clone()),
        },
    };
    let Some(fut) = obj.dispatch(&header.method, args, &ctx) else {
        let e = RemoteError::NoSuchMethod {
            interface: schema.name.to_string(),
            method: header.method,
        };
        finish_early(conn, &span, oneway, call, e);
        return;
    };
    let timeout = Duration::from_micros(header.timeout_us);
    let deadline = Instant::now() + timeout;
    let caller = Caller {
        runtime: conn.peer(),
        address: conn.info().peer_addr.clone(),
        local_host: conn.info().peer_is_local_host,
    };
    let conn2 = conn.clone();
    let task = async move {
        let start = std::time::Instant::now();
        let guarded = CatchUnwind::new(context::serve_scope(caller, deadline, fut));
        let outcome = match tokio::time::timeout_at(deadline, guarded).await {
            Ok(Ok(o)) => o,
            Ok(Err(message)) => {
                tracing::warn!(%message, "a remote method panicked; the call fails, serving goes on");
                Outcome::Failed(RemoteError::Panic { message })
            }
            Err(_) => Outcome::Failed(RemoteError::Timeout {
                millis: timeout.as_millis() as u64,
            }),
        };
        let span = tracing::Span::current();
        span.record("outcome", outcome_name(&outcome));
        span.record("micros", start.elapsed().as_micros() as u64);
        tracing::debug!("call served");
        if !oneway {
            send_outcome(&conn2, call, outcome).await;
            conn2.untrack(call);
        } else if let Outcome::Failed(e) = outcome {
            tracing::warn!(error = %e, "a one-way call failed");
        }
    }
    .instrument(span);
    if oneway {
        // Nobody waits for a one-way call, so nobody can cancel it: it runs to completion.
        rt.handle.spawn(task);
    } else {
        let h = rt.handle.spawn(task);
        conn.track(call, h.abort_handle());
        // The handler may have finished before it was tracked; then untrack never comes.
        if h.is_finished() {
            conn.untrack(call);
        }
    }
}

fn finish_early(
    conn: &Connection,
    span: &tracing::Span,
    oneway: bool,
    call: crate::id::CallId,
    e: RemoteError,
) {
    let _g = span.enter();
    tracing::debug!(error = %e, "call refused");
    span.record("outcome", "failed");
    if oneway {
        tracing::warn!(error = %e, "a one-way call failed");
        return;
    }
    let conn = conn.clone();
    tokio::spawn(async move { send_outcome(&conn, call, Outcome::Failed(e)).await });
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ok(_) => "ok",
        Outcome::AppError(_) => "app_error",
        Outcome::Failed(_) => "failed",
    }
}

/// Sends the reply to `call`. A result too large for a frame is replaced by an error the caller
/// can read.
async fn send_outcome(conn: &Connection, call: crate::id::CallId, outcome: Outcome) {
    let max = conn.max_frame();
    let frame = match encode_reply(call, outcome, max) {
        Ok(f) => f,
        Err(e) => match encode_reply(call, Outcome::Failed(e), max) {
            Ok(f) => f,
            Err(_) => return,
        },
    };
    if let Err(e) = conn.send(frame).await {
        tracing::debug!(error = %e, "the reply could not be sent");
    }
}

fn encode_reply(
    call: crate::id::CallId,
    outcome: Outcome,
    max: usize,
) -> Result<Vec<u8>, RemoteError> {
    let (status, payload) = match outcome {
        Outcome::Ok(b) => (Status::Ok, b),
        Outcome::AppError(b) => (Status::AppError, b),
        Outcome::Failed(e) => (
            Status::Failed,
            rmp_serde::to_vec(&e).map_err(|e| RemoteError::Marshalling {
                what: "the error".into(),
                detail: e.to_string(),
            })?,
        ),
    };
    let mut f = message::reply(call, status, payload.len());
    f.body().extend_from_slice(&payload);
    f.finish(max)
}
