//! The raw twin over TCP: loopback, `TCP_NODELAY` on both sides, as the runtime sets it.

use std::io;
use std::net::{TcpListener, TcpStream};

use oxrmi::Endpoint;

use super::{RawListener, RawStream};

/// A TCP listener on loopback, port chosen by the system.
pub(super) struct RawTcpListener(TcpListener);

impl RawTcpListener {
    pub(super) fn bind() -> io::Result<Self> {
        Ok(RawTcpListener(TcpListener::bind(("127.0.0.1", 0))?))
    }
}

impl RawListener for RawTcpListener {
    fn accept(&self) -> io::Result<Box<dyn RawStream>> {
        let (stream, _) = self.0.accept()?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }

    fn endpoint(&self) -> io::Result<Endpoint> {
        let local = self.0.local_addr()?;
        Ok(Endpoint::tcp(local.ip().to_string(), local.port()))
    }
}

/// Connects to a TCP endpoint.
pub(super) fn connect(endpoint: &Endpoint) -> io::Result<TcpStream> {
    let Endpoint::Tcp { host, port } = endpoint else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{endpoint} is not a TCP endpoint"),
        ));
    };
    let stream = TcpStream::connect((host.as_str(), *port))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
