//! TCP: between hosts, or on one host when nothing cheaper is available.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};

use super::{Link, Listener};
use crate::BoxFuture;
use crate::endpoint::Endpoint;

/// A bound TCP listener.
pub(crate) struct TcpTransport {
    listener: TcpListener,
    local: SocketAddr,
}

impl TcpTransport {
    pub(crate) async fn bind(host: &str, port: u16) -> io::Result<Self> {
        let listener = TcpListener::bind((host, port)).await?;
        let local = listener.local_addr()?;
        Ok(TcpTransport { listener, local })
    }
}

impl Listener for TcpTransport {
    fn accept(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            let (stream, _) = self.listener.accept().await?;
            link(stream)
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::tcp(self.local.ip().to_string(), self.local.port())
    }
}

pub(crate) async fn connect(host: &str, port: u16) -> io::Result<Link> {
    let stream = TcpStream::connect((host, port)).await?;
    link(stream)
}

fn link(stream: TcpStream) -> io::Result<Link> {
    // Calls are small and latency-bound; Nagle's algorithm would hold them back.
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let (r, w) = stream.into_split();
    Ok(Link {
        scheme: "tcp",
        reader: Box::new(r),
        writer: Box::new(w),
        peer: peer.to_string(),
        local_host: Some(local.ip().to_string()),
        peer_is_local_host: same_host(peer.ip(), local.ip()),
        peer_uid: None,
        peer_subject: None,
    })
}

/// A peer is on this host if it comes from loopback or from the very address it reached us at.
pub(crate) fn same_host(peer: IpAddr, local: IpAddr) -> bool {
    peer.is_loopback() || peer == local || peer.to_canonical() == local.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_own_address_are_local() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let b: IpAddr = "10.1.2.4".parse().unwrap();
        assert!(same_host(lo, a));
        assert!(same_host(a, a));
        assert!(!same_host(b, a));
        assert!(same_host("::1".parse().unwrap(), a));
    }
}
