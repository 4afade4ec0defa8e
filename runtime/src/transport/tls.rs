//! TLS over TCP (rustls with the `ring` provider): `tls://host:port`. TLS only wraps the byte
//! stream: the preamble, the Hello frames and the shared-secret step run inside it unchanged.
//!
//! The client checks the server's certificate against the CAs it was told to trust
//! ([`TlsPem::trust`]) and for the host it dialled (a DNS name or an IP address); with a client
//! CA ([`TlsPem::client_ca`]) the server requires a client certificate chaining to it. Either
//! side's verified peer certificate subject travels up in [`Link::peer_subject`] and reaches
//! the handler as [`Caller::certificate_subject`](crate::Caller::certificate_subject).
//!
//! The server finishes each TLS handshake in a task of its own, bounded by the handshake
//! timeout, so a peer that never finishes one holds neither the accept loop nor a task for
//! long; a failed handshake is logged at `warn` and the listener goes on.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::{Link, Listener};
use crate::endpoint::Endpoint;
use crate::{BoxFuture, RemoteError};

/// The TLS handshake timeout when the runtime sets none (it sets its connect timeout).
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted links waiting for the runtime's accept loop. Handshakes finish concurrently; this
/// only bounds how many finished ones may wait to be taken.
const ACCEPTED_QUEUE: usize = 64;

/// The buffer between a connection's writer and the task that encrypts and writes its bytes.
/// Large enough for many small frames; a large frame passes through in pieces.
const WRITE_PIPE: usize = 256 * 1024;

/// The most plaintext one TLS record carries: the pump's read size.
const TLS_RECORD: usize = 16 * 1024;

/// After refusing a handshake, how long the server waits for the peer to read its alert and
/// close before it drops the socket: closing with the peer's bytes unread would send a reset
/// that can overtake the alert, and the peer would see "connection reset" instead of why.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// The most bytes read from a refused peer while lingering.
const REFUSAL_DRAIN: usize = 64 * 1024;

/// A PEM document given to the builder, or the file to read it from when the runtime starts.
#[derive(Clone)]
pub(crate) enum Pem {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Pem {
    fn load(&self, what: &str) -> Result<Vec<u8>, RemoteError> {
        match self {
            Pem::Bytes(b) => Ok(b.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| RemoteError::Setup {
                reason: format!("{what}: cannot read {}: {e}", path.display()),
            }),
        }
    }
}

/// The TLS settings of a [`RuntimeBuilder`](crate::RuntimeBuilder), as given: PEM, parsed when
/// the runtime starts.
#[derive(Clone, Default)]
pub(crate) struct TlsPem {
    /// Our certificate chain and private key: served on `tls://` listeners, and presented to
    /// servers that ask for a client certificate.
    pub(crate) identity: Option<(Pem, Pem)>,
    /// CAs a `tls://` server we dial must chain to.
    pub(crate) trust: Vec<Pem>,
    /// CAs a client certificate must chain to; with any, our `tls://` listeners require one.
    pub(crate) client_ca: Vec<Pem>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsPem")
            .field("identity", &self.identity.is_some())
            .field("trust", &self.trust.len())
            .field("client_ca", &self.client_ca.len())
            .finish()
    }
}

/// The PEM of [`TlsPem`], read.
pub(crate) struct LoadedPem {
    /// Certificate chain and key.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) trust: Vec<u8>,
    pub(crate) client_ca: Vec<u8>,
}

impl TlsPem {
    /// Whether anything is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.identity.is_none() && self.trust.is_empty() && self.client_ca.is_empty()
    }

    /// Reads the files named.
    pub(crate) fn load(&self) -> Result<LoadedPem, RemoteError> {
        let identity = match &self.identity {
            Some((chain, key)) => Some((
                chain.load("tls_identity (certificate chain)")?,
                key.load("tls_identity (private key)")?,
            )),
            None => None,
        };
        let mut trust = Vec::new();
        for p in &self.trust {
            trust.extend(p.load("tls_trust")?);
            trust.push(b'\n');
        }
        let mut client_ca = Vec::new();
        for p in &self.client_ca {
            client_ca.extend(p.load("tls_client_ca")?);
            client_ca.push(b'\n');
        }
        Ok(LoadedPem {
            identity,
            trust,
            client_ca,
        })
    }
}

/// Missing settings in the runtime: the io error `connect` fails with, turned into
/// [`RemoteError::Setup`] by [`missing_setting`].
#[derive(Debug, thiserror::Error)]
#[error(
    "no CA to check the server's certificate against: set RuntimeBuilder::tls_trust \
     (OXRMI_TLS_CA_FILE with tls_from_env, as the default runtime and the oxrmi tool do)"
)]
struct NoTrust;

/// The TLS configuration of a running runtime's transports.
#[derive(Clone)]
pub(crate) struct TlsOptions {
    /// How `tls://` listeners serve, if we have an identity.
    server: Option<Arc<ServerConfig>>,
    /// How we dial `tls://` endpoints, if we trust some CA.
    client: Option<Arc<ClientConfig>>,
    /// The longest a TLS handshake may take on our listeners (the connect timeout).
    handshake_timeout: Duration,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            server: None,
            client: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("serves", &self.server.is_some())
            .field("dials", &self.client.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

fn setup(reason: String) -> RemoteError {
    RemoteError::Setup { reason }
}

fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, RemoteError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(format!("{what}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(setup(format!("{what}: no certificate in the PEM")));
    }
    Ok(certs)
}

fn roots(what: &str, pem: &[u8]) -> Result<RootCertStore, RemoteError> {
    let mut store = RootCertStore::empty();
    for cert in certs(what, pem)? {
        store
            .add(cert)
            .map_err(|e| setup(format!("{what}: not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, RemoteError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        setup(format!(
            "tls_identity: no usable private key in the PEM: {e}"
        ))
    })
}

impl TlsOptions {
    /// Parses the PEM; every problem is a [`RemoteError::Setup`] naming the setting.
    pub(crate) fn new(pem: &LoadedPem, handshake_timeout: Duration) -> Result<Self, RemoteError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = match &pem.identity {
            Some((chain, k)) => Some((certs("tls_identity", chain)?, key(k)?)),
            None => None,
        };
        let server = match &identity {
            Some((chain, key)) => {
                let b = ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| setup(format!("TLS: {e}")))?;
                let b = if pem.client_ca.is_empty() {
                    b.with_no_client_auth()
                } else {
                    let roots = roots("tls_client_ca", &pem.client_ca)?;
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| setup(format!("tls_client_ca: {e}")))?;
                    b.with_client_cert_verifier(verifier)
                };
                let config = b
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| setup(format!("tls_identity: {e}")))?;
                Some(Arc::new(config))
            }
            None if !pem.client_ca.is_empty() => {
                return Err(setup(
                    "tls_client_ca needs tls_identity: a server must prove itself before it asks \
                     its clients to"
                        .into(),
                ));
            }
            None => None,
        };
        let client = if pem.trust.is_empty() {
            None
        } else {
            let roots = roots("tls_trust", &pem.trust)?;
            let b = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| setup(format!("TLS: {e}")))?
                .with_root_certificates(roots);
            let config = match identity {
                Some((chain, key)) => b
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| setup(format!("tls_identity: {e}")))?,
                None => b.with_no_client_auth(),
            };
            Some(Arc::new(config))
        };
        Ok(TlsOptions {
            server,
            client,
            handshake_timeout,
        })
    }
}

/// A bound `tls://` listener: TCP connections are accepted and their TLS handshakes finished
/// by a task of its own, which hands the links over.
pub(crate) struct TlsTransport {
    incoming: tokio::sync::Mutex<mpsc::Receiver<Link>>,
    local: SocketAddr,
    acceptor: tokio::task::AbortHandle,
}

impl TlsTransport {
    pub(crate) async fn bind(
        host: &str,
        port: u16,
        options: &TlsOptions,
        dead_peer: Duration,
    ) -> io::Result<Self> {
        let config = options.server.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "no certificate to serve TLS with: set RuntimeBuilder::tls_identity \
                 (OXRMI_TLS_CERT_FILE and OXRMI_TLS_KEY_FILE with tls_from_env)",
            )
        })?;
        let listener = TcpListener::bind((host, port)).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            options.handshake_timeout,
            dead_peer,
            tx,
        ));
        Ok(TlsTransport {
            incoming: tokio::sync::Mutex::new(rx),
            local,
            acceptor: task.abort_handle(),
        })
    }
}

impl Listener for TlsTransport {
    fn accept(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            self.incoming.lock().await.recv().await.ok_or_else(|| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the TLS accepting task ended")
            })
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::tls(self.local.ip().to_string(), self.local.port())
    }
}

impl Drop for TlsTransport {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    dead_peer: Duration,
    tx: mpsc::Sender<Link>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, accept_one(&acceptor, stream, dead_peer)).await {
                Ok(Ok(link)) => {
                    // The listener is gone when this fails: the link just closes.
                    let _ = tx.send(link).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "refused a peer at the TLS handshake");
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, ?timeout, "no TLS handshake in time; dropped");
                }
            }
        });
    }
}

/// Finishes the server side of one handshake. On failure the alert is sent and the peer's
/// bytes drained for a moment (see [`REFUSAL_LINGER`]), so the peer learns why.
async fn accept_one(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    dead_peer: Duration,
) -> io::Result<Link> {
    stream.set_nodelay(true)?;
    super::tcp::detect_dead_peer(&stream, dead_peer)?;
    match acceptor.accept(stream).into_fallible().await {
        Ok(tls) => link(TlsStream::Server(tls)),
        Err((e, mut tcp)) => {
            let _ = tcp.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                while drained < REFUSAL_DRAIN {
                    match tcp.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            })
            .await;
            Err(e)
        }
    }
}

/// Dials `tls://host:port`: TCP, then the TLS handshake, checking the server's certificate for
/// `host`. The TCP connection detects a dead peer as `tcp://` ones do.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    options: &TlsOptions,
    dead_peer: Duration,
) -> io::Result<Link> {
    let config = options
        .client
        .clone()
        .ok_or_else(|| io::Error::other(NoTrust))?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{host}` cannot name a TLS server: {e}"),
        )
    })?;
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    super::tcp::detect_dead_peer(&tcp, dead_peer)?;
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    link(TlsStream::Client(tls))
}

/// The link over an established TLS stream. Reads go to the stream directly; writes pass
/// through a pipe to a task that writes them into the stream and flushes: rustls keeps what the
/// socket cannot take at once and sends it only on a later write or flush, and the connection's
/// writer, made for sockets, never flushes.
fn link(stream: TlsStream<TcpStream>) -> io::Result<Link> {
    let (tcp, state) = stream.get_ref();
    let peer = tcp.peer_addr()?;
    let local = tcp.local_addr()?;
    let peer_subject = state
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| match subject_of(cert) {
            Some(s) => Some(Arc::<str>::from(s)),
            None => {
                // Verified but unreadable to us: the peer counts as unidentified.
                tracing::warn!(%peer, "cannot read the subject of the peer's certificate");
                None
            }
        });
    let (reader, mut tls_writer) = tokio::io::split(stream);
    let (writer, pipe) = tokio::io::duplex(WRITE_PIPE);
    tokio::spawn(async move {
        // Takes what is there in pieces of up to a maximum TLS record, and flushes whenever the
        // pipe is empty. Ends when the connection's writer shuts down (then TLS closes with
        // close_notify), is dropped, or the stream fails; the connection's writer then fails too.
        let mut pipe = tokio::io::BufReader::with_capacity(TLS_RECORD, pipe);
        if tokio::io::copy_buf(&mut pipe, &mut tls_writer)
            .await
            .is_ok()
        {
            let _ = tls_writer.shutdown().await;
        }
    });
    Ok(Link {
        scheme: "tls",
        reader: Box::new(reader),
        writer: Box::new(writer),
        peer: peer.to_string(),
        local_host: Some(local.ip().to_string()),
        peer_is_local_host: super::tcp::same_host(peer.ip(), local.ip()),
        peer_uid: None,
        peer_subject,
        spin_until_readable: None,
    })
}

/// Why a certificate was refused in the TLS handshake, when that is what `e` says: we refused
/// the peer's (untrusted, wrong name, absent), or the peer refused ours (its alert).
pub(crate) fn refused_certificate(e: &io::Error) -> Option<String> {
    use rustls::AlertDescription as A;
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Some(format!("refused the peer's certificate: {tls}"))
        }
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired),
        ) => Some(format!(
            "the peer refused our certificate, or its absence ({a:?}; see tls_identity)"
        )),
        _ => None,
    }
}

/// The missing setting `e` names, if `connect` failed for want of one.
pub(crate) fn missing_setting(e: &io::Error) -> Option<String> {
    e.get_ref()?
        .downcast_ref::<NoTrust>()
        .map(ToString::to_string)
}

/// The subject of a DER certificate, RFC 4514 style: relative distinguished names most
/// specific first (the reverse of their order in the certificate), joined by `,`; the
/// attributes of one joined by `+`; short names (`CN`, `O`, …) where known, else the dotted
/// OID; string values escaped, other values as `#` and their hex.
pub(crate) fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let mut parts = Vec::new();
        for atv in rdn.iter() {
            let oid = atv.attr_type();
            let name = match x509_parser::objects::oid2abbrev(oid, registry) {
                Ok(n) => n.to_string(),
                Err(_) => oid.to_id_string(),
            };
            let value = match atv.as_str() {
                Ok(s) => escape(s),
                Err(_) => {
                    let hex: String = atv.as_slice().iter().map(|b| format!("{b:02x}")).collect();
                    format!("#{hex}")
                }
            };
            parts.push(format!("{name}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// Escapes an attribute value as RFC 4514 section 2.4 asks.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_values_as_rfc_4514_asks() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("a#b"), "a#b");
    }

    #[test]
    fn bad_pem_is_a_setup_error_naming_the_setting() {
        let pem = LoadedPem {
            identity: None,
            trust: b"not a certificate".to_vec(),
            client_ca: Vec::new(),
        };
        match TlsOptions::new(&pem, DEFAULT_HANDSHAKE_TIMEOUT) {
            Err(RemoteError::Setup { reason }) => assert!(reason.contains("tls_trust"), "{reason}"),
            other => panic!("expected a setup error, got {:?}", other.err()),
        }
        let pem = LoadedPem {
            identity: None,
            trust: Vec::new(),
            client_ca: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        };
        assert!(matches!(
            TlsOptions::new(&pem, DEFAULT_HANDSHAKE_TIMEOUT),
            Err(RemoteError::Setup { .. })
        ));
    }

    #[test]
    fn certificate_errors_are_recognised() {
        let refused = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert!(refused_certificate(&refused).is_some());
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::DecodeError),
        );
        assert!(refused_certificate(&other).is_none());
        assert!(refused_certificate(&io::ErrorKind::ConnectionReset.into()).is_none());
        assert!(missing_setting(&io::Error::other(NoTrust)).is_some());
    }
}
