//! What a call knows about its surroundings: who is calling ([`Caller`]) and by when the
//! caller needs an answer ([`with_timeout`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::id::RuntimeId;

/// The runtime on the other end of an incoming call, as the handler sees it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub(crate) runtime: RuntimeId,
    pub(crate) address: Arc<str>,
    pub(crate) local_host: bool,
    pub(crate) uid: Option<u32>,
    /// The subject of the certificate the peer proved in the TLS handshake, if it did: shared
    /// with the connection, so a call clones a pointer, not the text.
    pub(crate) certificate_subject: Option<Arc<str>>,
}

/// Who the caller of a remote method is, as far as the transport vouches for it
/// ([`Caller::identity`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Identity {
    /// The peer proved a certificate in the TLS handshake (`tls://`), verified against the CAs
    /// this runtime trusts for it: the subject of its end-entity certificate, RFC 4514 style
    /// (`CN=alice,O=example`).
    Certificate {
        /// The certificate's subject.
        subject: String,
    },
    /// The peer's user id as the kernel tells it (Unix sockets, shared memory) or as the owner
    /// of a FIFO peer's pipes.
    Uid(u32),
    /// The transport vouches for nobody: plain TCP, TLS without a client certificate, the gRPC
    /// bridge. A shared secret proves only that the peer knows it, not who it is.
    Unverified,
}

impl Caller {
    /// The caller of the remote method running on this task, or `None` when the method was
    /// called directly (in-process, through a local handle).
    pub fn current() -> Option<Caller> {
        SCOPE.try_with(|s| s.caller.clone()).ok().flatten()
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

    /// The subject of the certificate the caller's runtime proved in the TLS handshake, RFC 4514
    /// style (`CN=alice,O=example`: most specific attribute first, short names, special
    /// characters escaped), where it proved one: on a `tls://` connection whose server requires
    /// client certificates ([`tls_client_ca`](crate::RuntimeBuilder::tls_client_ca)), or, on
    /// the client's side of any `tls://` connection, the server's (for its callbacks). `None`
    /// everywhere else.
    pub fn certificate_subject(&self) -> Option<&str> {
        self.certificate_subject.as_deref()
    }

    /// Who the caller is, as far as the transport vouches for it: its certificate's subject, its
    /// user id, or nobody. No transport vouches for both.
    pub fn identity(&self) -> Identity {
        match (&self.certificate_subject, self.uid) {
            (Some(subject), _) => Identity::Certificate {
                subject: subject.to_string(),
            },
            (None, Some(uid)) => Identity::Uid(uid),
            (None, None) => Identity::Unverified,
        }
    }
}

/// What a task knows about the calls around it: the caller it serves, if it serves one, and
/// the deadline of the calls it makes. One task-local, not two: every handler runs in a scope,
/// and each poll of a scoped future swaps its value in and out.
struct Scope {
    caller: Option<Caller>,
    deadline: Instant,
}

tokio::task_local! {
    static SCOPE: Scope;
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
    let caller = match SCOPE.try_with(|s| (s.caller.clone(), s.deadline)) {
        Ok((caller, outer)) => {
            deadline = deadline.min(outer);
            caller
        }
        Err(_) => None,
    };
    SCOPE.scope(Scope { caller, deadline }, fut).await
}

/// The deadline for a call starting at `start`: the innermost [`with_timeout`] scope (or an
/// incoming call's own deadline, which propagates to the calls its handler makes), else
/// `default` from `start`.
pub(crate) fn deadline(start: Instant, default: Duration) -> Instant {
    SCOPE.try_with(|s| s.deadline).unwrap_or(start + default)
}

/// Runs a handler future as `caller`, with `deadline` propagated to the calls it makes.
pub(crate) async fn serve_scope<F: Future>(caller: Caller, deadline: Instant, fut: F) -> F::Output {
    let scope = Scope {
        caller: Some(caller),
        deadline,
    };
    SCOPE.scope(scope, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            runtime: RuntimeId::random(),
            address: "peer".into(),
            local_host: true,
            uid: Some(7),
            certificate_subject: None,
        }
    }

    #[tokio::test]
    async fn a_handlers_scope_keeps_its_caller_inside_a_narrower_timeout_and_none_leaks_out() {
        let default = Duration::from_secs(30);
        let start = Instant::now();
        assert!(Caller::current().is_none());
        assert_eq!(deadline(start, default), start + default);

        let served = caller();
        let until = start + Duration::from_secs(5);
        serve_scope(served.clone(), until, async {
            let seen = Caller::current().expect("the caller is in scope");
            assert_eq!(seen.runtime(), served.runtime());
            assert_eq!(deadline(start, default), until);
            // A shorter timeout narrows the deadline and keeps the caller.
            with_timeout(Duration::from_millis(100), async {
                assert_eq!(
                    Caller::current().map(|c| c.runtime()),
                    Some(served.runtime())
                );
                assert!(deadline(start, default) < until);
            })
            .await;
            // A longer one cannot extend the handler's deadline.
            with_timeout(Duration::from_secs(60), async {
                assert_eq!(deadline(start, default), until);
            })
            .await;
        })
        .await;

        // Outside any handler a timeout scope has no caller.
        with_timeout(Duration::from_millis(100), async {
            assert!(Caller::current().is_none());
            assert!(deadline(start, default) < start + default);
        })
        .await;
        assert!(Caller::current().is_none());
    }
}
