//! The transports the benchmark can measure, each with its raw twin: the bare transport under
//! blocking sockets, the floor our runtime is compared against.
//!
//! Adding a transport: a [`TransportKind`] variant, where the bench server's runtime listens on
//! it, and a module implementing [`RawListener`] and [`RawStream`] for it. The pipe transport
//! is the exception: nothing listens, the client starts both servers as its children (see
//! `client`), and its raw twin is a child echoing its stdin ([`pipe`]).

use std::io::{self, Read, Write};

use oxrmi::Endpoint;

mod fifo;
pub(crate) mod pipe;
pub(crate) mod shm;
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
    /// Named pipes: a listening FIFO and a pair per connection, in the temporary directory.
    Fifo,
    /// The stdin and stdout of a child process the client starts.
    Pipe,
    /// The gRPC bridge (HTTP/2 over loopback TCP), against a hand-written tonic service.
    Grpc,
}

/// What `--transport` takes: one transport, or all of them in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportChoice {
    /// TCP over loopback.
    Tcp,
    /// Unix domain stream sockets.
    Unix,
    /// Named pipes.
    Fifo,
    /// A child process's stdin and stdout.
    Pipe,
    /// Shared memory.
    Shm,
    /// The gRPC bridge, against plain tonic.
    Grpc,
    /// Every transport above, one after another, in one table.
    All,
}

impl TransportChoice {
    /// The transports to measure.
    pub(crate) fn kinds(self) -> Vec<TransportKind> {
        match self {
            TransportChoice::Tcp => vec![TransportKind::Tcp],
            TransportChoice::Unix => vec![TransportKind::Unix],
            TransportChoice::Fifo => vec![TransportKind::Fifo],
            TransportChoice::Pipe => vec![TransportKind::Pipe],
            TransportChoice::Shm => vec![TransportKind::Shm],
            TransportChoice::Grpc => vec![TransportKind::Grpc],
            TransportChoice::All => vec![
                TransportKind::Tcp,
                TransportKind::Unix,
                TransportKind::Fifo,
                TransportKind::Pipe,
                TransportKind::Shm,
                TransportKind::Grpc,
            ],
        }
    }
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
            TransportKind::Fifo => "fifo",
            TransportKind::Pipe => "pipe",
            TransportKind::Grpc => "grpc",
        }
    }

    /// Whether the lifetime figures are measured over it (they need oxrmi runtimes of their own
    /// reaching the server: not over a child's pipes, and not through the gRPC bridge).
    pub(crate) fn has_lifetimes(self) -> bool {
        !matches!(self, TransportKind::Pipe | TransportKind::Grpc)
    }

    /// Whether the client starts the servers as its own children (their pipes are the link).
    pub(crate) fn is_child_pipes(self) -> bool {
        self == TransportKind::Pipe
    }

    fn not_listened(self) -> io::Error {
        let why = match self {
            TransportKind::Grpc => "its baseline is a tonic service, not a byte echo",
            _ => "the client starts its servers",
        };
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no raw echo over {}: {why}", self.name()),
        )
    }

    /// Where the bench server's runtime listens: this host only, a free port or path. `None`
    /// for the pipe transport.
    pub(crate) fn oxrmi_listen(self) -> Option<Endpoint> {
        Some(match self {
            TransportKind::Tcp => Endpoint::tcp("127.0.0.1", 0),
            TransportKind::Unix => Endpoint::unix(unix::fresh_path("oxrmi").to_string_lossy()),
            TransportKind::Shm => Endpoint::shm(unix::fresh_path("oxrmi-shm").to_string_lossy()),
            TransportKind::Fifo => Endpoint::fifo(unix::fresh_path("oxrmi-fifo").to_string_lossy()),
            // The bench server also serves gRPC (see `server`).
            TransportKind::Grpc => Endpoint::tcp("127.0.0.1", 0),
            TransportKind::Pipe => return None,
        })
    }

    /// Binds the raw echo server's listener on this host.
    pub(crate) fn raw_bind(self) -> io::Result<Box<dyn RawListener>> {
        match self {
            TransportKind::Tcp => Ok(Box::new(tcp::RawTcpListener::bind()?)),
            TransportKind::Unix => Ok(Box::new(unix::RawUnixListener::bind()?)),
            TransportKind::Shm => Ok(Box::new(shm::RawShmListener::bind()?)),
            TransportKind::Fifo => Ok(Box::new(fifo::RawFifoListener::bind()?)),
            TransportKind::Pipe | TransportKind::Grpc => Err(self.not_listened()),
        }
    }

    /// Connects to a raw echo server.
    pub(crate) fn raw_connect(self, endpoint: &Endpoint) -> io::Result<Box<dyn RawStream>> {
        match self {
            TransportKind::Tcp => Ok(Box::new(tcp::connect(endpoint)?)),
            TransportKind::Unix => Ok(Box::new(unix::connect(endpoint)?)),
            TransportKind::Shm => Ok(Box::new(shm::connect(endpoint)?)),
            TransportKind::Fifo => Ok(Box::new(fifo::connect(endpoint)?)),
            TransportKind::Pipe | TransportKind::Grpc => Err(self.not_listened()),
        }
    }
}
