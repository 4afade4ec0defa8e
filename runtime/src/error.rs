//! [`RemoteError`]: what went wrong with a remote call, classified by what the caller should do.

use serde::{Deserialize, Serialize};

/// An error of the remoting layer (not of the application).
///
/// Every variant says what the caller can do about it: a name problem ([`NotBound`](Self::NotBound),
/// [`AlreadyBound`](Self::AlreadyBound)), a stale or wrong handle ([`NoSuchObject`](Self::NoSuchObject),
/// [`NoSuchMethod`](Self::NoSuchMethod), [`WrongInterface`](Self::WrongInterface)), a failure
/// worth retrying ([`Timeout`](Self::Timeout), [`ConnectionRefused`](Self::ConnectionRefused),
/// [`ConnectionLost`](Self::ConnectionLost), [`Overloaded`](Self::Overloaded)), or a bug to fix ([`Marshalling`](Self::Marshalling),
/// [`Panic`](Self::Panic), [`Protocol`](Self::Protocol)), or a value too large for the receiver
/// ([`LimitExceeded`](Self::LimitExceeded)).
///
/// It is serializable: a server sends it to the caller as it is. Application errors are not
/// wrapped in it; they arrive as the method's own error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteError {
    /// `lookup` or `unbind` of a name the registry does not hold.
    #[error("the name `{name}` is not bound")]
    NotBound {
        /// The name asked for.
        name: String,
    },
    /// `bind` of a name the registry already holds (use `rebind` to replace it).
    #[error("the name `{name}` is already bound")]
    AlreadyBound {
        /// The name asked for.
        name: String,
    },
    /// The object is gone: unexported, dropped, or its runtime restarted.
    #[error("no such object: {object}")]
    NoSuchObject {
        /// The object as the caller named it (id, or `#id@runtime`).
        object: String,
    },
    /// The object does not know the method: the two sides run different versions of the interface.
    #[error(
        "no such method `{method}` on interface `{interface}` (do both sides run the same version?)"
    )]
    NoSuchMethod {
        /// The interface of the object called.
        interface: String,
        /// The method asked for.
        method: String,
    },
    /// A lookup found an object of another interface than the caller expected.
    #[error("wrong interface: expected `{expected}`, found `{found}`")]
    WrongInterface {
        /// What the caller asked for.
        expected: String,
        /// What the object implements.
        found: String,
    },
    /// The call exceeded its deadline; the server was told to stop the handler.
    #[error("the call exceeded its deadline of {millis} ms")]
    Timeout {
        /// The deadline the call had, in milliseconds.
        millis: u64,
    },
    /// No runtime answered at the endpoint.
    #[error("connection refused by {endpoint}: {reason}")]
    ConnectionRefused {
        /// The endpoint dialled.
        endpoint: String,
        /// What the operating system or the peer said.
        reason: String,
    },
    /// The connection broke while the call was in flight; the call may or may not have run.
    #[error("connection lost: {reason}")]
    ConnectionLost {
        /// What happened.
        reason: String,
    },
    /// The peer refused the operation for this caller.
    #[error("access denied: {reason}")]
    AccessDenied {
        /// Why.
        reason: String,
    },
    /// A value could not be encoded or decoded.
    #[error("marshalling failed for {what}: {detail}")]
    Marshalling {
        /// Which value: `argument `n` of `add``, `result of `get``.
        what: String,
        /// What the codec said.
        detail: String,
    },
    /// The remote method panicked; the server goes on serving.
    #[error("the remote method panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
    /// The peer broke the wire protocol (garbage, oversized frame, wrong version).
    #[error("protocol error: {detail}")]
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// A URL or endpoint could not be understood.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The text given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object's owner cannot be reached from here: it advertises no endpoint and no
    /// connection to it exists.
    #[error("the owner of {object} advertises no endpoint and is not connected to this runtime")]
    Unreachable {
        /// The object.
        object: String,
    },
    /// The local runtime is shut down.
    #[error("the runtime is shut down")]
    Shutdown,
    /// The runtime could not start or is not set up for the operation (an endpoint that cannot
    /// be bound, no tokio runtime, no registry served).
    #[error("runtime setup: {reason}")]
    Setup {
        /// What is missing or failed.
        reason: String,
    },
    /// The peer refused the call or connection because one of its limits is reached (calls in
    /// flight on a connection, connections to the runtime). Try again later.
    #[error("overloaded: {what} is at its limit of {limit}")]
    Overloaded {
        /// Which limit.
        what: String,
        /// Its value.
        limit: u64,
    },
    /// A value exceeded a decoding limit of the receiver: the size a message may decode into,
    /// the length of a collection, or a limit the interface declares on an argument
    /// (`#[limit(len = N)]`). Not transient: the same value is refused again.
    #[error("{what} exceeds its limit of {limit}")]
    LimitExceeded {
        /// Which value and which limit: `the length of argument `items` of `put``.
        what: String,
        /// The limit.
        limit: u64,
    },
}

impl RemoteError {
    /// True for failures where trying again later may succeed (timeouts and connection problems).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Timeout { .. }
                | RemoteError::ConnectionRefused { .. }
                | RemoteError::ConnectionLost { .. }
                | RemoteError::Overloaded { .. }
        )
    }

    pub(crate) fn lost(reason: impl std::fmt::Display) -> Self {
        RemoteError::ConnectionLost {
            reason: reason.to_string(),
        }
    }

    pub(crate) fn protocol(detail: impl std::fmt::Display) -> Self {
        RemoteError::Protocol {
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_messagepack() {
        let all = vec![
            RemoteError::NotBound { name: "a".into() },
            RemoteError::AlreadyBound { name: "b".into() },
            RemoteError::NoSuchObject {
                object: "#17".into(),
            },
            RemoteError::NoSuchMethod {
                interface: "I".into(),
                method: "m".into(),
            },
            RemoteError::WrongInterface {
                expected: "A".into(),
                found: "B".into(),
            },
            RemoteError::Timeout { millis: 5 },
            RemoteError::ConnectionRefused {
                endpoint: "tcp://x:1".into(),
                reason: "no".into(),
            },
            RemoteError::ConnectionLost {
                reason: "eof".into(),
            },
            RemoteError::AccessDenied { reason: "r".into() },
            RemoteError::Marshalling {
                what: "argument `n`".into(),
                detail: "d".into(),
            },
            RemoteError::Panic {
                message: "p".into(),
            },
            RemoteError::Protocol { detail: "x".into() },
            RemoteError::InvalidEndpoint {
                endpoint: "e".into(),
                reason: "r".into(),
            },
            RemoteError::Unreachable { object: "o".into() },
            RemoteError::Shutdown,
            RemoteError::Setup { reason: "r".into() },
            RemoteError::Overloaded {
                what: "w".into(),
                limit: 1,
            },
            RemoteError::LimitExceeded {
                what: "w".into(),
                limit: 2,
            },
        ];
        for e in all {
            let bytes = rmp_serde::to_vec(&e).unwrap();
            let back: RemoteError = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn messages_are_lower_case_sentences() {
        let e = RemoteError::NotBound { name: "x".into() };
        assert_eq!(e.to_string(), "the name `x` is not bound");
    }
}
