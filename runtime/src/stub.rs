//! The client side of a call: [`StubHandle`] is what a generated stub holds. It finds (or
//! opens) the connection to the object's owner, sends the call under its deadline and decodes
//! the reply.

use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;

use crate::RemoteError;
use crate::connection::{Connection, Received};
use crate::context;
use crate::marshal::{self, ArgsEncoder, MarshalCtx};
use crate::message::{Status, flags};
use crate::remote::{HandleIdentity, ObjRef};
use crate::runtime::RuntimeInner;

/// The link from a generated client stub to the remote object it stands for.
#[doc(hidden)]
#[derive(Clone)]
pub struct StubHandle {
    inner: Arc<StubInner>,
}

struct StubInner {
    rt: Arc<RuntimeInner>,
    target: ObjRef,
    /// The connection last used; replaced when it closes.
    conn: Mutex<Option<Connection>>,
}

impl StubHandle {
    /// A handle for `target`. `via` is the connection the reference arrived on: if it leads to
    /// the owner, calls use it (a callback needs no listening port on the owner's side).
    pub(crate) fn new(rt: Arc<RuntimeInner>, target: ObjRef, via: Option<Connection>) -> Self {
        let conn = via.filter(|c| Some(c.peer()) == target.runtime);
        StubHandle {
            inner: Arc::new(StubInner {
                rt,
                target,
                conn: Mutex::new(conn),
            }),
        }
    }

    pub(crate) fn target(&self) -> &ObjRef {
        &self.inner.target
    }

    pub(crate) fn identity(&self) -> HandleIdentity {
        let t = &self.inner.target;
        let via = match t.runtime {
            Some(_) => None,
            None => t.endpoints.first().cloned(),
        };
        HandleIdentity::Remote(t.runtime, t.object, via)
    }

    fn cached(&self) -> Option<Connection> {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|c| !c.is_closed())
    }

    async fn connection(&self) -> Result<Connection, RemoteError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let t = &self.inner.target;
        let c = self
            .inner
            .rt
            .connect(t.runtime, &t.endpoints, || t.to_string())
            .await?;
        *self
            .inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok(c)
    }

    fn marshal_ctx(&self) -> MarshalCtx {
        MarshalCtx {
            rt: self.inner.rt.clone(),
            conn: self.cached(),
        }
    }

    /// Starts encoding the `n` arguments of a call.
    pub fn args(&self, n: usize) -> ArgsEncoder {
        ArgsEncoder::new(self.marshal_ctx(), n)
    }

    async fn invoke(
        &self,
        method: &'static str,
        args: ArgsEncoder,
        call_flags: u8,
    ) -> Result<(Received, Connection, u64), RemoteError> {
        let start = Instant::now();
        let deadline = context::deadline(start, self.inner.rt.config.call_timeout);
        // Rounded up: a 300 ms deadline set just before this call started reads as 300.
        let millis = deadline
            .saturating_duration_since(start)
            .as_micros()
            .div_ceil(1000) as u64;
        let work = async {
            let conn = self.connection().await?;
            let r = conn
                .call(
                    self.inner.target.object,
                    method,
                    &args.buf,
                    deadline,
                    call_flags,
                )
                .await?;
            Ok((r, conn, millis))
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(RemoteError::Timeout { millis }),
        }
    }

    /// Calls `method` and waits for its result.
    pub async fn call<T, E>(&self, method: &'static str, args: ArgsEncoder) -> Result<T, E>
    where
        T: DeserializeOwned + Send,
        E: DeserializeOwned + From<RemoteError> + Send,
    {
        let span = tracing::debug_span!(
            "oxrmi.call",
            interface = %self.inner.target.interface,
            method,
            object = %self.inner.target.object,
            outcome = tracing::field::Empty,
            micros = tracing::field::Empty,
        );
        let start = std::time::Instant::now();
        let r = self.call_inner(method, args).instrument(span.clone()).await;
        span.record("outcome", if r.is_ok() { "ok" } else { "error" });
        span.record("micros", start.elapsed().as_micros() as u64);
        r
    }

    async fn call_inner<T, E>(&self, method: &'static str, args: ArgsEncoder) -> Result<T, E>
    where
        T: DeserializeOwned + Send,
        E: DeserializeOwned + From<RemoteError> + Send,
    {
        let (received, conn, millis) = self.invoke(method, args, 0).await.map_err(E::from)?;
        let Received::Reply {
            status,
            frame,
            payload,
        } = received
        else {
            return Err(E::from(RemoteError::protocol("expected a reply")));
        };
        let ctx = MarshalCtx {
            rt: self.inner.rt.clone(),
            conn: Some(conn),
        };
        let bytes = &frame[payload..];
        match status {
            Status::Ok => {
                marshal::decode_value(&ctx, bytes, || format!("the result of `{method}`"))
                    .map_err(E::from)
            }
            Status::AppError => {
                Err(
                    marshal::decode_value(&ctx, bytes, || format!("the error of `{method}`"))
                        .map_err(E::from)?,
                )
            }
            Status::Failed => {
                let e: RemoteError =
                    marshal::decode_value(&ctx, bytes, || format!("the error of `{method}`"))
                        .map_err(E::from)?;
                // The server enforces the same deadline and may report it first, measured
                // from a slightly later start: the caller sees its own deadline either way.
                let e = match e {
                    RemoteError::Timeout { .. } => RemoteError::Timeout { millis },
                    e => e,
                };
                Err(E::from(e))
            }
        }
    }

    /// Sends a one-way call: returns once it is handed to the transport (or, on a link with a
    /// send buffer of zero, once the peer has received it).
    pub async fn call_oneway<E>(&self, method: &'static str, args: ArgsEncoder) -> Result<(), E>
    where
        E: From<RemoteError> + Send,
    {
        let mut f = flags::ONEWAY;
        if self.inner.rt.config.send_buffer == 0 {
            f |= flags::ACK;
        }
        self.invoke(method, args, f).await.map_err(E::from)?;
        Ok(())
    }
}
