//! The transports the benchmark can measure, each with its raw twin: the bare transport under
//! blocking sockets, the floor our runtime is compared against.
//!
//! Adding a transport: a [`TransportKind`] variant, where the bench server's runtime listens on
//! it, and a module implementing [`RawListener`] and [`RawStream`] for it.

use std::io::{self, Read, Write};

use oxrmi::Endpoint;

mod shm;
mod tcp;
mod unix;

/// A transport, as `--transport` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportKind {
    /// TCP over loopback, Nagle's algorithm off on both sides.
    Tcp,
    /// Unix domain stream sockets in the temporary directory.
    Unix,
    /// Shared memory: two rings in a sealed memfd, handed over a Unix socket in the temporary
    /// directory.
    Shm,
}

/// A connected byte stream of the raw twin.
pub(crate) trait RawStream: Read + Write + Send {}

impl<T: Read + Write + Send> RawStream for T {}

/// Accepts raw connections on one endpoint.
pub(crate) trait RawListener {
    fn accept(&self) -> io::Result<Box<dyn RawStream>>;
    /// The endpoint actually bound (port 0 resolved).
    fn endpoint(&self) -> io::Result<Endpoint>;
}

impl TransportKind {
    /// The name `--transport` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Unix => "unix",
            TransportKind::Shm => "shm",
        }
    }

    /// Where the bench server's runtime listens: this host only, a free port or path.
    pub(crate) fn oxrmi_listen(self) -> Endpoint {
        match self {
            TransportKind::Tcp => Endpoint::tcp("127.0.0.1", 0),
            TransportKind::Unix => Endpoint::unix(unix::fresh_path("oxrmi").to_string_lossy()),
            TransportKind::Shm => Endpoint::shm(unix::fresh_path("oxrmi-shm").to_string_lossy()),
        }
    }

    /// Binds the raw echo server's listener on this host.
    pub(crate) fn raw_bind(self) -> io::Result<Box<dyn RawListener>> {
        match self {
            TransportKind::Tcp => Ok(Box::new(tcp::RawTcpListener::bind()?)),
            TransportKind::Unix => Ok(Box::new(unix::RawUnixListener::bind()?)),
            TransportKind::Shm => Ok(Box::new(shm::RawShmListener::bind()?)),
        }
    }

    /// Connects to a raw echo server.
    pub(crate) fn raw_connect(self, endpoint: &Endpoint) -> io::Result<Box<dyn RawStream>> {
        match self {
            TransportKind::Tcp => Ok(Box::new(tcp::connect(endpoint)?)),
            TransportKind::Unix => Ok(Box::new(unix::connect(endpoint)?)),
            TransportKind::Shm => Ok(Box::new(shm::connect(endpoint)?)),
        }
    }
}
