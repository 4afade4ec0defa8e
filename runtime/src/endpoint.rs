//! [`Endpoint`]s (where a runtime listens) and object URLs (`tcp://host:port/name`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RemoteError;

/// Where a runtime can be reached. Prints as a URL (`tcp://127.0.0.1:1099`) and parses back.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
#[non_exhaustive]
pub enum Endpoint {
    /// TCP: a host name or IP address and a port (port 0 in `listen` picks a free one).
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

impl Endpoint {
    /// A TCP endpoint.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    /// The URL scheme: `tcp`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Endpoint::Tcp { .. } => "tcp",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

impl TryFrom<String> for Endpoint {
    type Error = RemoteError;
    fn try_from(s: String) -> Result<Self, RemoteError> {
        s.parse()
    }
}

impl FromStr for Endpoint {
    type Err = RemoteError;

    /// Parses `tcp://host:port` (a trailing `/` is accepted; a path is not: use [`ObjectUrl`]).
    fn from_str(s: &str) -> Result<Self, RemoteError> {
        let url: ObjectUrl = s.parse()?;
        match url.name {
            None => Ok(url.endpoint),
            Some(_) => Err(invalid(
                s,
                "an endpoint has no path; did you mean an object URL?",
            )),
        }
    }
}

/// A URL naming an object in a registry, `tcp://host:port/name`, as `java.rmi.Naming` takes them.
/// The name may be absent (`tcp://host:port`) where only the registry is meant.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ObjectUrl {
    /// The registry's endpoint.
    pub endpoint: Endpoint,
    /// The name in the registry, if any.
    pub name: Option<String>,
}

impl ObjectUrl {
    /// The name, or an error saying the URL lacks one.
    pub fn require_name(&self) -> Result<&str, RemoteError> {
        self.name.as_deref().ok_or_else(|| {
            invalid(
                &self.endpoint.to_string(),
                "the URL names no object (expected tcp://host:port/name)",
            )
        })
    }
}

impl FromStr for ObjectUrl {
    type Err = RemoteError;

    fn from_str(s: &str) -> Result<Self, RemoteError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| invalid(s, "expected scheme://..., for example tcp://host:1099"))?;
        match scheme {
            "tcp" => {}
            other => return Err(invalid(s, format!("unknown scheme `{other}` (known: tcp)"))),
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority).ok_or_else(|| {
            invalid(
                s,
                "expected host:port (IPv6 addresses in brackets: [::1]:1099)",
            )
        })?;
        if host.is_empty() {
            return Err(invalid(s, "the host is empty"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(s, format!("`{port}` is not a port number")))?;
        let name = if path.is_empty() {
            None
        } else {
            Some(path.to_string())
        };
        Ok(ObjectUrl {
            endpoint: Endpoint::tcp(host, port),
            name,
        })
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.endpoint, n),
            None => write!(f, "{}", self.endpoint),
        }
    }
}

fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        Some((host, port))
    } else {
        let (host, port) = authority.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        Some((host, port))
    }
}

fn invalid(s: &str, reason: impl Into<String>) -> RemoteError {
    RemoteError::InvalidEndpoint {
        endpoint: s.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_tcp_endpoints() {
        let e: Endpoint = "tcp://127.0.0.1:1099".parse().unwrap();
        assert_eq!(e, Endpoint::tcp("127.0.0.1", 1099));
        assert_eq!(e.to_string(), "tcp://127.0.0.1:1099");
        let v6: Endpoint = "tcp://[::1]:80".parse().unwrap();
        assert_eq!(v6, Endpoint::tcp("::1", 80));
        assert_eq!(v6.to_string(), "tcp://[::1]:80");
        assert_eq!(
            "tcp://h:1/".parse::<Endpoint>().unwrap(),
            Endpoint::tcp("h", 1)
        );
    }

    #[test]
    fn parses_object_urls() {
        let u: ObjectUrl = "tcp://server:1099/counter".parse().unwrap();
        assert_eq!(u.endpoint, Endpoint::tcp("server", 1099));
        assert_eq!(u.name.as_deref(), Some("counter"));
        assert_eq!(u.to_string(), "tcp://server:1099/counter");
        let nested: ObjectUrl = "tcp://s:1/a/b".parse().unwrap();
        assert_eq!(nested.name.as_deref(), Some("a/b"));
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for bad in [
            "counter",
            "udp://h:1/x",
            "tcp://h/x",
            "tcp://:1/x",
            "tcp://h:99999",
            "tcp://::1:80",
            "tcp://h:1/x",
        ] {
            let r = bad.parse::<Endpoint>();
            assert!(
                matches!(r, Err(RemoteError::InvalidEndpoint { .. })),
                "{bad} gave {r:?}"
            );
        }
    }
}
