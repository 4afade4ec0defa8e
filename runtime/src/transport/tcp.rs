//! TCP: between hosts, or on one host when nothing cheaper is available.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{Link, Listener};
use crate::BoxFuture;
use crate::endpoint::Endpoint;

/// The default of `RuntimeBuilder::dead_peer_timeout`: longer than any hiccup of a working
/// network, short enough that calls over a cut link fail and reconnect within a minute instead
/// of after the kernel's own limit (about 15 minutes of retransmissions).
pub(crate) const DEFAULT_DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(20);

/// A bound TCP listener.
pub(crate) struct TcpTransport {
    listener: TcpListener,
    local: SocketAddr,
    dead_peer: Duration,
}

impl TcpTransport {
    pub(crate) async fn bind(host: &str, port: u16, dead_peer: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind((host, port)).await?;
        let local = listener.local_addr()?;
        Ok(TcpTransport {
            listener,
            local,
            dead_peer,
        })
    }
}

impl Listener for TcpTransport {
    fn accept(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            let (stream, _) = self.listener.accept().await?;
            link(stream, self.dead_peer)
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::tcp(self.local.ip().to_string(), self.local.port())
    }
}

pub(crate) async fn connect(host: &str, port: u16, dead_peer: Duration) -> io::Result<Link> {
    let stream = TcpStream::connect((host, port)).await?;
    link(stream, dead_peer)
}

fn link(stream: TcpStream, dead_peer: Duration) -> io::Result<Link> {
    // Calls are small and latency-bound; Nagle's algorithm would hold them back.
    stream.set_nodelay(true)?;
    detect_dead_peer(&stream, dead_peer)?;
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let (r, w) = super::fd::split(stream.into_std()?.into())?;
    Ok(Link {
        scheme: "tcp",
        reader: Box::new(r),
        writer: Box::new(w),
        peer: peer.to_string(),
        local_host: Some(local.ip().to_string()),
        peer_is_local_host: same_host(peer.ip(), local.ip()),
        peer_uid: None,
        peer_subject: None,
        spin_until_readable: None,
    })
}

/// Makes the kernel close the connection (the reader then fails, and with it every call in
/// flight, and the next call dials afresh) once data we sent stays unacknowledged for
/// `timeout` (`TCP_USER_TIMEOUT`), and probes an idle connection after `timeout` of silence
/// (keepalive), so that one is closed too when its peer is gone. Without this, a connection
/// whose packets are dropped (a partition, a host that vanished) looks alive for about 15
/// minutes, and after a partition heals the next call waits for the retransmission timer, which
/// backs off to two minutes.
pub(crate) fn detect_dead_peer(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    use rustix::net::sockopt;
    let millis = u32::try_from(timeout.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    sockopt::set_tcp_user_timeout(stream, millis)?;
    sockopt::set_socket_keepalive(stream, true)?;
    let idle = timeout.max(Duration::from_secs(1));
    sockopt::set_tcp_keepidle(stream, idle)?;
    sockopt::set_tcp_keepintvl(stream, (idle / 4).max(Duration::from_secs(1)))?;
    sockopt::set_tcp_keepcnt(stream, 4)?;
    Ok(())
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
