//! [`Endpoint`]s (where a runtime listens) and object URLs (`tcp://host:port/name`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RemoteError;
use crate::id::RuntimeId;

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
    /// TCP inside TLS (rustls): `tls://host:port`. The server proves its certificate for `host`
    /// (a DNS name or an IP address in its subject alternative names) against the CAs the
    /// dialling runtime trusts ([`RuntimeBuilder::tls_trust`](crate::RuntimeBuilder::tls_trust));
    /// with [`tls_client_ca`](crate::RuntimeBuilder::tls_client_ca) the client proves one too.
    Tls {
        /// Host name or IP address (IPv6 without brackets): what the server's certificate must
        /// name.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix domain stream socket at an absolute path on this host: `unix:///run/app.sock`.
    Unix {
        /// The socket file's absolute path.
        path: String,
    },
    /// Named pipes (FIFOs) on this host: `fifo:///run/app` listens on the FIFO `/run/app` and
    /// each connection gets a pair of FIFOs beside it (see `transport::fifo`).
    Fifo {
        /// The listening FIFO's absolute path.
        path: String,
    },
    /// Shared memory on this host, set up through a Unix socket at an absolute path:
    /// `shm:///run/app.shm`. The memory itself has no name (see `transport::shm`).
    Shm {
        /// The rendezvous socket's absolute path.
        path: String,
    },
    /// The pipes between a parent process and a child it spawned
    /// ([`Runtime::spawn_child`](crate::Runtime::spawn_child)): `pipe://RUNTIME`, where RUNTIME
    /// is the full id of the runtime at the other end. Only that parent or child can use it.
    Pipe {
        /// The runtime at the other end of the pipes.
        runtime: RuntimeId,
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

    /// A TLS endpoint.
    pub fn tls(host: impl Into<String>, port: u16) -> Self {
        Endpoint::Tls {
            host: host.into(),
            port,
        }
    }

    /// A Unix socket endpoint.
    pub fn unix(path: impl Into<String>) -> Self {
        Endpoint::Unix { path: path.into() }
    }

    /// A named-pipe endpoint.
    pub fn fifo(path: impl Into<String>) -> Self {
        Endpoint::Fifo { path: path.into() }
    }

    /// A shared-memory endpoint, set up through the Unix socket at `path`.
    pub fn shm(path: impl Into<String>) -> Self {
        Endpoint::Shm { path: path.into() }
    }

    /// The URL scheme: `tcp`, `tls`, `unix`, `fifo`, `shm` or `pipe`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Endpoint::Tcp { .. } => "tcp",
            Endpoint::Tls { .. } => "tls",
            Endpoint::Unix { .. } => "unix",
            Endpoint::Fifo { .. } => "fifo",
            Endpoint::Shm { .. } => "shm",
            Endpoint::Pipe { .. } => "pipe",
        }
    }

    /// Whether this endpoint can only be reached from this host (every transport but TCP and
    /// TLS).
    pub fn is_host_local(&self) -> bool {
        !matches!(self, Endpoint::Tcp { .. } | Endpoint::Tls { .. })
    }

    /// The file-system path of a path-based endpoint (`unix`, `fifo`, `shm`).
    pub fn path(&self) -> Option<&str> {
        match self {
            Endpoint::Unix { path } | Endpoint::Fifo { path } | Endpoint::Shm { path } => {
                Some(path)
            }
            Endpoint::Tcp { .. } | Endpoint::Tls { .. } | Endpoint::Pipe { .. } => None,
        }
    }

    /// How cheap a call over this endpoint is, lowest first: shared memory, then the pipes of a
    /// parent or child, Unix sockets, FIFOs, TCP, and TLS last (it costs encryption on top of
    /// TCP). A client picks the cheapest endpoint of a runtime on its own host; a runtime that
    /// listens on both `tcp://` and `tls://` is reached over plain TCP by peers that can, so listen
    /// on `tls://` alone where every connection must be encrypted.
    pub fn cost_rank(&self) -> u8 {
        scheme_rank(self.scheme())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Tls { host, port } if host.contains(':') => {
                write!(f, "tls://[{host}]:{port}")
            }
            Endpoint::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            Endpoint::Unix { path } | Endpoint::Fifo { path } | Endpoint::Shm { path } => {
                write!(f, "{}://{path}", self.scheme())
            }
            Endpoint::Pipe { runtime } => write!(f, "pipe://{}", runtime.full()),
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

/// The cost rank of a transport by its URL scheme (see [`Endpoint::cost_rank`]).
pub(crate) fn scheme_rank(scheme: &str) -> u8 {
    match scheme {
        // An in-process link (the gRPC bridge's) costs least of all.
        "shm" | "mem" => 0,
        "pipe" => 1,
        "unix" => 2,
        "fifo" => 3,
        "tls" => 5,
        _ => 4,
    }
}

/// A URL naming an object in a registry, `tcp://host:port/name`, as `java.rmi.Naming` takes them.
/// The name may be absent (`tcp://host:port`) where only the registry is meant. On the local
/// transports, whose paths have slashes of their own, the name follows a `#`:
/// `unix:///run/app.sock#name`, `shm:///run/app.shm#name`, `pipe://RUNTIME#name`.
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
                "the URL names no object (expected tcp://host:port/name or unix:///path#name)",
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
        let make: fn(String, u16) -> Endpoint = match scheme {
            "tcp" => Endpoint::tcp,
            "tls" => Endpoint::tls,
            "unix" => return parse_path(s, rest, Endpoint::unix),
            "fifo" => return parse_path(s, rest, Endpoint::fifo),
            "shm" => return parse_path(s, rest, Endpoint::shm),
            "pipe" => return parse_pipe(s, rest),
            other => {
                return Err(invalid(
                    s,
                    format!("unknown scheme `{other}` (known: tcp, tls, unix, fifo, shm, pipe)"),
                ));
            }
        };
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
            endpoint: make(host.to_string(), port),
            name,
        })
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, &self.endpoint) {
            (Some(n), Endpoint::Tcp { .. } | Endpoint::Tls { .. }) => {
                write!(f, "{}/{}", self.endpoint, n)
            }
            (Some(n), _) => write!(f, "{}#{}", self.endpoint, n),
            (None, _) => write!(f, "{}", self.endpoint),
        }
    }
}

impl ObjectUrl {
    /// The URL of `name` in the registry at `endpoint`.
    pub fn of(endpoint: &Endpoint, name: &str) -> ObjectUrl {
        ObjectUrl {
            endpoint: endpoint.clone(),
            name: Some(name.to_string()),
        }
    }
}

/// Splits `rest#name`, refusing an empty name.
fn split_name<'a>(s: &str, rest: &'a str) -> Result<(&'a str, Option<&'a str>), RemoteError> {
    let (head, name) = match rest.split_once('#') {
        Some((p, n)) => (p, Some(n)),
        None => (rest, None),
    };
    if name == Some("") {
        return Err(invalid(s, "the name after `#` is empty"));
    }
    Ok((head, name))
}

/// `scheme:///abs/path[#name]`: an empty authority, an absolute path, an optional name.
fn parse_path(s: &str, rest: &str, make: fn(String) -> Endpoint) -> Result<ObjectUrl, RemoteError> {
    let (path, name) = split_name(s, rest)?;
    if !path.starts_with('/') || path.len() < 2 {
        return Err(invalid(
            s,
            "expected scheme:///absolute/path (three slashes: no host, an absolute path)",
        ));
    }
    Ok(ObjectUrl {
        endpoint: make(path.to_string()),
        name: name.map(str::to_string),
    })
}

/// `pipe://RUNTIME[#name]`, RUNTIME being a runtime's full id.
fn parse_pipe(s: &str, rest: &str) -> Result<ObjectUrl, RemoteError> {
    let (id, name) = split_name(s, rest)?;
    let runtime: RuntimeId = id.parse().map_err(|_| {
        invalid(
            s,
            "expected pipe://RUNTIME, RUNTIME being the full id of a parent or child runtime",
        )
    })?;
    Ok(ObjectUrl {
        endpoint: Endpoint::Pipe { runtime },
        name: name.map(str::to_string),
    })
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
    fn parses_and_prints_tls_endpoints() {
        let e: Endpoint = "tls://example.org:1099".parse().unwrap();
        assert_eq!(e, Endpoint::tls("example.org", 1099));
        assert_eq!(e.to_string(), "tls://example.org:1099");
        let v6: Endpoint = "tls://[::1]:80".parse().unwrap();
        assert_eq!(v6, Endpoint::tls("::1", 80));
        assert_eq!(v6.to_string(), "tls://[::1]:80");
        let u: ObjectUrl = "tls://h:1/counter".parse().unwrap();
        assert_eq!(u.endpoint, Endpoint::tls("h", 1));
        assert_eq!(u.to_string(), "tls://h:1/counter");
        assert!(!e.is_host_local());
        assert_eq!(e.scheme(), "tls");
        // After TCP: encryption costs more, and a peer offering both is reached over TCP.
        assert!(Endpoint::tcp("h", 1).cost_rank() < e.cost_rank());
        for bad in ["tls://h/x", "tls://:1", "tls://h:99999"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
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
    fn parses_unix_endpoints_and_urls() {
        let e: Endpoint = "unix:///run/app.sock".parse().unwrap();
        assert_eq!(e, Endpoint::unix("/run/app.sock"));
        assert_eq!(e.to_string(), "unix:///run/app.sock");
        let u: ObjectUrl = "unix:///run/a/app.sock#counter".parse().unwrap();
        assert_eq!(u.endpoint, Endpoint::unix("/run/a/app.sock"));
        assert_eq!(u.name.as_deref(), Some("counter"));
        assert_eq!(u.to_string(), "unix:///run/a/app.sock#counter");
        assert_eq!(ObjectUrl::of(&e, "x").to_string(), "unix:///run/app.sock#x");
        for bad in ["unix://relative.sock", "unix:///", "unix:///a.sock#"] {
            assert!(bad.parse::<ObjectUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_fifo_shm_and_pipe_endpoints() {
        let f: ObjectUrl = "fifo:///tmp/app#counter".parse().unwrap();
        assert_eq!(f.endpoint, Endpoint::fifo("/tmp/app"));
        assert_eq!(f.to_string(), "fifo:///tmp/app#counter");
        let m: Endpoint = "shm:///tmp/app.shm".parse().unwrap();
        assert_eq!(m, Endpoint::shm("/tmp/app.shm"));
        assert_eq!(m.to_string(), "shm:///tmp/app.shm");
        let id = RuntimeId::random();
        let p: ObjectUrl = format!("pipe://{}#x", id.full()).parse().unwrap();
        assert_eq!(p.endpoint, Endpoint::Pipe { runtime: id });
        assert_eq!(p.to_string(), format!("pipe://{}#x", id.full()));
        for bad in ["fifo://rel", "shm:///", "pipe://nope", "pipe://"] {
            assert!(bad.parse::<ObjectUrl>().is_err(), "{bad}");
        }
        assert!(m.cost_rank() < Endpoint::unix("/x").cost_rank());
        assert!(Endpoint::unix("/x").cost_rank() < Endpoint::tcp("h", 1).cost_rank());
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
