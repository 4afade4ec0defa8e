//! How the bridge's failures become gRPC statuses: one `RemoteError` kind, one code, here only.

use prost::Message as _;
use tonic::{Code, Status};

use crate::RemoteError;

/// The gRPC status code a [`RemoteError`] becomes at the bridge.
///
/// | `RemoteError` | gRPC code |
/// |---|---|
/// | `NotBound`, `NoSuchObject` | `NOT_FOUND` |
/// | `AlreadyBound` | `ALREADY_EXISTS` |
/// | `NoSuchMethod` | `UNIMPLEMENTED` |
/// | `WrongInterface` | `FAILED_PRECONDITION` |
/// | `Timeout` | `DEADLINE_EXCEEDED` |
/// | `ConnectionRefused`, `ConnectionLost`, `Unreachable`, `Shutdown` | `UNAVAILABLE` |
/// | `AccessDenied` | `PERMISSION_DENIED` |
/// | `Overloaded`, `LimitExceeded` | `RESOURCE_EXHAUSTED` |
/// | `InvalidEndpoint` | `INVALID_ARGUMENT` |
/// | `Marshalling`, `Panic`, `Protocol`, `Setup` | `INTERNAL` |
pub fn code_for(e: &RemoteError) -> Code {
    match e {
        RemoteError::NotBound { .. } | RemoteError::NoSuchObject { .. } => Code::NotFound,
        RemoteError::AlreadyBound { .. } => Code::AlreadyExists,
        RemoteError::NoSuchMethod { .. } => Code::Unimplemented,
        RemoteError::WrongInterface { .. } => Code::FailedPrecondition,
        RemoteError::Timeout { .. } => Code::DeadlineExceeded,
        RemoteError::ConnectionRefused { .. }
        | RemoteError::ConnectionLost { .. }
        | RemoteError::Unreachable { .. }
        | RemoteError::Shutdown => Code::Unavailable,
        RemoteError::AccessDenied { .. } => Code::PermissionDenied,
        RemoteError::Overloaded { .. } | RemoteError::LimitExceeded { .. } => {
            Code::ResourceExhausted
        }
        RemoteError::InvalidEndpoint { .. } => Code::InvalidArgument,
        RemoteError::Marshalling { .. }
        | RemoteError::Panic { .. }
        | RemoteError::Protocol { .. }
        | RemoteError::Setup { .. } => Code::Internal,
    }
}

/// The status of a call that failed in the remoting layer.
pub(crate) fn from_remote(e: &RemoteError) -> Status {
    Status::new(code_for(e), e.to_string())
}

/// `google.rpc.Status`, the standard payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// A status whose details (`google.rpc.Status` in `grpc-status-details-bin`) hold one message:
/// `type_name` (a full protobuf name) encoded as `value`.
pub(crate) fn with_detail(code: Code, message: String, type_name: &str, value: Vec<u8>) -> Status {
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value,
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code() {
        let cases = [
            (RemoteError::NotBound { name: "x".into() }, Code::NotFound),
            (RemoteError::Timeout { millis: 5 }, Code::DeadlineExceeded),
            (RemoteError::lost("gone"), Code::Unavailable),
            (
                RemoteError::AccessDenied {
                    reason: "no".into(),
                },
                Code::PermissionDenied,
            ),
            (
                RemoteError::NoSuchMethod {
                    interface: "i".into(),
                    method: "m".into(),
                },
                Code::Unimplemented,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(code_for(&e), code, "{e}");
        }
    }

    #[test]
    fn details_are_a_google_rpc_status() {
        let s = with_detail(Code::Unknown, "boom".into(), "a.b.C", vec![1, 2]);
        let d = RpcStatus::decode(s.details()).unwrap();
        assert_eq!(d.message, "boom");
        assert_eq!(d.details[0].type_url, "type.googleapis.com/a.b.C");
        assert_eq!(d.details[0].value, vec![1, 2]);
    }
}
