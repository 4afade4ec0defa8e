//! What a call knows about its surroundings: who is calling ([`Caller`]) and by when the
//! caller needs an answer ([`with_timeout`]).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::id::RuntimeId;

/// The runtime on the other end of an incoming call, as the handler sees it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub(crate) runtime: RuntimeId,
    pub(crate) address: String,
    pub(crate) local_host: bool,
    pub(crate) uid: Option<u32>,
}

impl Caller {
    /// The caller of the remote method running on this task, or `None` when the method was
    /// called directly (in-process, through a local handle).
    pub fn current() -> Option<Caller> {
        CALLER.try_with(Caller::clone).ok()
    }

    /// The calling runtime.
    pub fn runtime(&self) -> RuntimeId {
        self.runtime
    }

    /// The peer's transport address (`127.0.0.1:53122` for TCP).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the caller runs on this host (loopback, or the address this host was reached at).
    pub fn is_local_host(&self) -> bool {
        self.local_host
    }

    /// The caller's user id, where the transport vouches for it: the kernel's credentials of a
    /// peer over a Unix socket or shared memory, the owner of a FIFO peer's pipes. `None` over
    /// TCP and for the gRPC bridge.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }
}

tokio::task_local! {
    static CALLER: Caller;
    static DEADLINE: Instant;
}

/// Runs `fut` with `timeout` as the deadline of every remote call it makes (instead of the
/// runtime's default). Deadlines nest: an inner scope cannot extend an outer one.
///
/// A call on a local object runs directly and is not bounded by this; wrap it in
/// `tokio::time::timeout` if it must be.
///
/// ```
/// # async fn f() {
/// use std::time::Duration;
/// let answer = oxrmi::with_timeout(Duration::from_millis(200), async { 42 }).await;
/// assert_eq!(answer, 42);
/// # }
/// ```
pub async fn with_timeout<F: Future>(timeout: Duration, fut: F) -> F::Output {
    let mut deadline = Instant::now() + timeout;
    if let Ok(outer) = DEADLINE.try_with(|d| *d) {
        deadline = deadline.min(outer);
    }
    DEADLINE.scope(deadline, fut).await
}

/// The deadline for a call starting at `start`: the innermost [`with_timeout`] scope (or an
/// incoming call's own deadline, which propagates to the calls its handler makes), else
/// `default` from `start`.
pub(crate) fn deadline(start: Instant, default: Duration) -> Instant {
    DEADLINE.try_with(|d| *d).unwrap_or(start + default)
}

/// Runs a handler future as `caller`, with `deadline` propagated to the calls it makes.
pub(crate) async fn serve_scope<F: Future>(caller: Caller, deadline: Instant, fut: F) -> F::Output {
    CALLER.scope(caller, DEADLINE.scope(deadline, fut)).await
}
