//! Transports: how bytes move between two runtimes. One module per transport; the rest of the
//! runtime sees only [`Link`] (a connected byte stream, split in two halves) and [`Listener`].
//!
//! A reference read from the wire names its owner's endpoints at run time, so the transport is
//! picked at run time too: trait objects here, no generic parameters in users' types.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::endpoint::Endpoint;
use crate::{BoxFuture, RemoteError};

pub(crate) mod fd;
pub(crate) mod fifo;
pub(crate) mod shm;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod unix;

/// The read half of a connection.
pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A connected byte stream to a peer, before the handshake.
pub(crate) struct Link {
    pub(crate) reader: BoxRead,
    pub(crate) writer: BoxWrite,
    /// The transport's URL scheme (`tcp`, `tls`, `unix`, `fifo`, `shm`, `pipe`).
    pub(crate) scheme: &'static str,
    /// The peer's address, for logs and [`Caller`](crate::Caller).
    pub(crate) peer: String,
    /// The host part of the address the peer reached us at, when the transport has one: it
    /// replaces an unspecified listen address (`0.0.0.0`) in the endpoints we advertise to it.
    pub(crate) local_host: Option<String>,
    /// Whether the peer runs on this host.
    pub(crate) peer_is_local_host: bool,
    /// The peer's user, where the transport tells it (the kernel's credentials of a Unix or
    /// shared-memory peer, the owner of a FIFO peer's pipes).
    pub(crate) peer_uid: Option<u32>,
    /// The subject of the certificate the peer proved in a TLS handshake, verified against the
    /// CAs we trust for it (`tls` only).
    pub(crate) peer_subject: Option<std::sync::Arc<str>>,
    /// Where the transport can see the peer's bytes arrive without a system call (shared
    /// memory): a spin for them, which a caller runs after sending a call and before it sleeps.
    pub(crate) spin_until_readable: Option<Box<dyn SpinUntilReadable>>,
}

/// Polls for the peer's bytes for a while instead of sleeping until they come. A caller that
/// just sent the only call in flight on its connection has nothing else to do; if the peer
/// runs on another CPU and answers within the spin, the reply is seen without a wake-up of this
/// thread, which on a virtual machine costs tens of microseconds. A handler task that just sent
/// the last reply is in the same position with respect to the peer's next call. Where answers
/// take longer (a slow handler, one CPU for both), the spin soon stops paying and stops.
///
/// The same knowledge of where the peer runs tells the connection when to write frames at once
/// rather than batch them ([`SpinUntilReadable::peer_on_other_cpu`]).
pub(crate) trait SpinUntilReadable: Send + Sync {
    /// Spins until bytes from the peer wait to be read, or for as long as spinning pays;
    /// whether they do.
    fn spin(&self) -> bool;

    /// Whether the peer last waited on another CPU than the one this thread runs on: it can
    /// then read a frame while we write the next, and frames are better written one by one
    /// than batched.
    fn peer_on_other_cpu(&self) -> bool;
}

/// `n` bytes that differ from their neighbours and repeat only every 251: a test that moves
/// them through a transport sees a byte lost, doubled or misplaced.
#[cfg(test)]
pub(crate) fn test_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Accepts incoming links on one endpoint.
pub(crate) trait Listener: Send + Sync {
    /// The next incoming link.
    fn accept(&self) -> BoxFuture<'_, io::Result<Link>>;
    /// The endpoint actually bound (port 0 resolved).
    fn endpoint(&self) -> Endpoint;
}

/// What the transports are told by the runtime's settings (mostly the local transports; TLS's
/// certificates too).
#[derive(Clone, Debug)]
pub(crate) struct LocalOptions {
    /// Who may connect to Unix, FIFO and shared-memory endpoints.
    pub(crate) access: unix::UnixAccess,
    /// How long a shared-memory link spins before it sleeps.
    pub(crate) shm_spin: std::time::Duration,
    /// How long a TCP peer may leave our data unacknowledged before the connection is dropped
    /// (`tcp://` and `tls://`).
    pub(crate) tcp_dead_peer: std::time::Duration,
    /// Certificates and keys of `tls://` endpoints, parsed when the runtime starts.
    pub(crate) tls: tls::TlsOptions,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            access: unix::UnixAccess::default(),
            shm_spin: shm::default_spin(),
            tcp_dead_peer: tcp::DEFAULT_DEAD_PEER_TIMEOUT,
            tls: tls::TlsOptions::default(),
        }
    }
}

impl LocalOptions {
    fn shm(&self) -> shm::ShmOptions {
        shm::ShmOptions {
            spin: self.shm_spin,
            ..shm::ShmOptions::default()
        }
    }
}

/// Starts listening on `ep`.
pub(crate) async fn bind(ep: &Endpoint, local: &LocalOptions) -> io::Result<Box<dyn Listener>> {
    let unix_access = &local.access;
    match ep {
        Endpoint::Tcp { host, port } => Ok(Box::new(
            tcp::TcpTransport::bind(host, *port, local.tcp_dead_peer).await?,
        )),
        Endpoint::Tls { host, port } => Ok(Box::new(
            tls::TlsTransport::bind(host, *port, &local.tls, local.tcp_dead_peer).await?,
        )),
        Endpoint::Unix { path } => Ok(Box::new(unix::UnixTransport::bind(path, unix_access)?)),
        Endpoint::Fifo { path } => Ok(Box::new(fifo::FifoTransport::bind(path, unix_access)?)),
        Endpoint::Shm { path } => Ok(Box::new(shm::ShmTransport::bind_with(
            path,
            unix_access,
            local.shm(),
        )?)),
        Endpoint::Pipe { .. } => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "nobody listens on a pipe endpoint: a parent starts its child with Runtime::spawn_child",
        )),
    }
}

/// Connects to `ep`.
pub(crate) async fn connect(ep: &Endpoint, local: &LocalOptions) -> io::Result<Link> {
    match ep {
        Endpoint::Tcp { host, port } => tcp::connect(host, *port, local.tcp_dead_peer).await,
        Endpoint::Tls { host, port } => {
            tls::connect(host, *port, &local.tls, local.tcp_dead_peer).await
        }
        Endpoint::Unix { path } => unix::connect(path).await,
        Endpoint::Fifo { path } => fifo::connect(path).await,
        Endpoint::Shm { path } => shm::connect_with(path, &local.shm()).await,
        Endpoint::Pipe { runtime } => Err(io::Error::new(
            io::ErrorKind::NotConnected,
            format!("no pipe to runtime {runtime}: only its parent or child can reach it this way"),
        )),
    }
}

/// The error of dialling `ep` when the transport failed: [`Setup`](RemoteError::Setup) when this
/// runtime lacks what the transport needs (no CA to check a `tls://` server against),
/// [`AccessDenied`](RemoteError::AccessDenied) when a certificate was refused in the TLS
/// handshake (theirs by us, or ours by them), else
/// [`ConnectionRefused`](RemoteError::ConnectionRefused).
pub(crate) fn dial_error(ep: &Endpoint, e: io::Error) -> RemoteError {
    if let Some(reason) = tls::missing_setting(&e) {
        return RemoteError::Setup {
            reason: format!("cannot dial {ep}: {reason}"),
        };
    }
    if let Some(reason) = tls::refused_certificate(&e) {
        return RemoteError::AccessDenied {
            reason: format!("TLS handshake with {ep}: {reason}"),
        };
    }
    RemoteError::ConnectionRefused {
        endpoint: ep.to_string(),
        reason: e.to_string(),
    }
}

/// A connected byte stream on any transport, below the protocol: what a hostile peer in the
/// tests speaks. Not a public API.
#[doc(hidden)]
pub struct RawLink {
    reader: BoxRead,
    writer: BoxWrite,
}

impl RawLink {
    /// Connects to `ep` at the transport level only (no handshake is sent).
    pub async fn connect(ep: &Endpoint) -> io::Result<RawLink> {
        let link = connect(ep, &LocalOptions::default()).await?;
        Ok(RawLink {
            reader: link.reader,
            writer: link.writer,
        })
    }
}

impl AsyncRead for RawLink {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for RawLink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}
