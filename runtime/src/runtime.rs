//! [`Runtime`]: exports objects, listens on endpoints, keeps one connection per peer runtime,
//! and optionally serves a registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::RemoteError;
use crate::child::{self, Bootstrap, BootstrapService};
use crate::connection::{self, Connection};
use crate::endpoint::Endpoint;
use crate::frame::DEFAULT_MAX_FRAME;
use crate::id::{ObjId, RuntimeId};
use crate::introspect::{Introspect, IntrospectEndpoint, Report};
use crate::lease::{self, DEFAULT_LEASE, Holdings, LeaseEndpoint, LeaseService, LeaseTable};
use crate::object::ObjectTable;
use crate::registry::{
    Binding, MemoryStore, Registry, RegistryService, RegistryStore, StoreRuntime,
};
use crate::remote::{AnyRemote, Interface, Remote};
use crate::stub::StubHandle;
use crate::transport::{self, Listener, LocalOptions};

/// The largest send buffer, in frames: tokio's channels hold at most `usize::MAX >> 3` permits.
const MAX_SEND_BUFFER: usize = usize::MAX >> 4;

/// The longest time between two rounds of lease housekeeping: holders must renew in time for a
/// peer whose lease is much shorter than ours, and a round with nothing due costs nothing.
const HOUSEKEEPING_MAX_PERIOD: Duration = Duration::from_millis(100);

/// The shortest lease: housekeeping runs four times per lease, and more often than every 10 ms
/// would be busywork.
const MIN_LEASE: Duration = Duration::from_millis(40);

/// Settings of a runtime, with their defaults.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Deadline of a call when the caller sets none. Long enough for slow work, short enough that
    /// a lost peer is noticed in interactive use.
    pub(crate) call_timeout: Duration,
    /// Time to open a connection and finish the handshake.
    pub(crate) connect_timeout: Duration,
    /// Largest frame accepted or sent.
    pub(crate) max_frame: usize,
    /// Frames queued per connection before senders wait; 0 makes one-way calls wait for the
    /// peer's acknowledgement.
    pub(crate) send_buffer: usize,
    /// Whether the registry accepts bind/rebind/unbind from other hosts.
    pub(crate) registry_remote_writes: bool,
    /// How long a holder's lease lasts without renewal.
    pub(crate) lease: Duration,
    /// Who may connect to this runtime's local endpoints, and how shared memory waits.
    pub(crate) local: LocalOptions,
    /// Whether a runtime started with `parent_pipe` ends its process when the parent goes.
    pub(crate) exit_with_parent: bool,
    /// The only transport used to reach runtimes found through references, if pinned.
    pub(crate) pinned_transport: Option<&'static str>,
    /// The secret both ends of every connection must prove they know, if any.
    pub(crate) secret: Option<crate::auth::Secret>,
    /// How long the gRPC bridge keeps a reference it handed out after its last use.
    pub(crate) grpc_handle_idle: Duration,
    /// Checks run before each remote call served.
    pub(crate) authorizer: crate::authorize::Authorizer,
    /// Most calls (two-way and one-way) a peer may have running on one connection.
    pub(crate) max_calls_in_flight: usize,
    /// Most connections a runtime keeps open.
    pub(crate) max_connections: usize,
    /// How long a started frame may go without a byte moving, either way, before the
    /// connection is closed.
    pub(crate) stall_timeout: Duration,
    /// Bytes of frames queued per connection before senders wait, and of replies waiting to be
    /// sent before a further reply is refused.
    pub(crate) send_buffer_bytes: usize,
    /// TLS for the gRPC bridge: certificate chain and key (PEM), and the CA that client
    /// certificates must chain to (mutual TLS) if any.
    pub(crate) grpc_tls: Option<GrpcTls>,
    /// Bounds on what one message from a peer may decode into.
    pub(crate) decode: crate::budget::DecodeLimits,
    /// Most of this runtime's objects one peer may hold leases on.
    pub(crate) max_leases_per_peer: usize,
    /// Most live handles made from references one peer sent.
    pub(crate) max_handles_per_peer: usize,
    /// How often names bound by URL are checked for a restarted registry.
    pub(crate) rebind_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            call_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_frame: DEFAULT_MAX_FRAME,
            send_buffer: 1024,
            registry_remote_writes: false,
            lease: DEFAULT_LEASE,
            local: LocalOptions::default(),
            exit_with_parent: true,
            pinned_transport: None,
            secret: None,
            grpc_handle_idle: Duration::from_secs(300),
            authorizer: Default::default(),
            max_calls_in_flight: DEFAULT_MAX_CALLS_IN_FLIGHT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            send_buffer_bytes: DEFAULT_SEND_BUFFER_BYTES,
            grpc_tls: None,
            decode: Default::default(),
            max_leases_per_peer: DEFAULT_MAX_LEASES_PER_PEER,
            max_handles_per_peer: DEFAULT_MAX_HANDLES_PER_PEER,
            rebind_interval: crate::registry::DEFAULT_REBIND_INTERVAL,
        }
    }
}

/// The gRPC bridge's TLS settings (PEM).
#[derive(Clone)]
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) struct GrpcTls {
    pub(crate) cert_chain: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for GrpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("GrpcTls")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

/// The default of [`RuntimeBuilder::max_calls_in_flight`].
pub const DEFAULT_MAX_CALLS_IN_FLIGHT: usize = 4096;
/// The default of [`RuntimeBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The default of [`RuntimeBuilder::max_leases_per_peer`].
pub const DEFAULT_MAX_LEASES_PER_PEER: usize = 100_000;
/// The default of [`RuntimeBuilder::max_handles_per_peer`].
pub const DEFAULT_MAX_HANDLES_PER_PEER: usize = 100_000;
/// The default of [`RuntimeBuilder::stall_timeout`]: long enough for any live peer (a healthy
/// oxrmi reader never waits for a handler, so its bytes keep moving), short enough that a
/// slowloris peer does not hold its connection for minutes.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of [`RuntimeBuilder::send_buffer_bytes`]: four frames of the default largest
/// size, so large replies still stream, while a peer that does not read ties up tens of
/// megabytes per connection rather than `send_buffer` × `max_frame_size` (16 GiB).
pub const DEFAULT_SEND_BUFFER_BYTES: usize = 64 << 20;

/// A registry store given to the builder (a newtype, so the builder stays `Debug`).
struct RegistryStoreArg(Arc<dyn RegistryStore>);

impl std::fmt::Debug for RegistryStoreArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.status().store)
    }
}

/// Builds a [`Runtime`]: where it listens, whether it serves a registry, its limits.
///
/// ```
/// # async fn f() -> Result<(), oxrmi::RemoteError> {
/// let rt = oxrmi::Runtime::builder()
///     .listen("tcp://127.0.0.1:0")
///     .registry()
///     .call_timeout(std::time::Duration::from_secs(5))
///     .start()
///     .await?;
/// println!("listening on {}", rt.endpoints()[0]);
/// # Ok(()) }
/// ```
#[derive(Default, Debug)]
pub struct RuntimeBuilder {
    listen: Vec<String>,
    registry: bool,
    /// Where the registry keeps its bindings; `None`: in memory.
    registry_store: Option<RegistryStoreArg>,
    parent_pipe: bool,
    bootstrap: Option<AnyRemote>,
    pin: Option<String>,
    secret: Option<Vec<u8>>,
    secret_file: Option<std::path::PathBuf>,
    /// TLS certificates and keys as given (PEM or files), parsed by `start`.
    tls: transport::tls::TlsPem,
    /// `tls_from_env` found a certificate without a key or the other way round.
    tls_env_error: Option<String>,
    config: Config,
}

impl RuntimeBuilder {
    /// Listens on `endpoint` (`tcp://host:port`; port 0 picks a free port). Repeatable.
    pub fn listen(mut self, endpoint: impl std::fmt::Display) -> Self {
        self.listen.push(endpoint.to_string());
        self
    }

    /// Serves a registry at this runtime's endpoints (like Java's `LocateRegistry.createRegistry`).
    pub fn registry(mut self) -> Self {
        self.registry = true;
        self
    }

    /// Serves a registry that keeps its bindings in `store` instead of in memory (several
    /// registry nodes can then share one namespace: the `oxrmi` tool's etcd store).
    pub fn registry_store(mut self, store: Arc<dyn RegistryStore>) -> Self {
        self.registry = true;
        self.registry_store = Some(RegistryStoreArg(store));
        self
    }

    /// How long the gRPC bridge (a `grpc://` endpoint) keeps a reference it handed to a gRPC
    /// client after the client last used it (default 5 minutes); the bridge's lease on the object
    /// ends then.
    pub fn grpc_handle_idle(mut self, idle: Duration) -> Self {
        self.config.grpc_handle_idle = idle;
        self
    }

    /// Runs `check` before every remote call this runtime serves, with the caller, the
    /// interface and the method; `Err(reason)` refuses the call with
    /// [`AccessDenied`](RemoteError::AccessDenied) before its arguments are decoded (and logs it).
    /// Repeatable: every check must pass. Calls through a local handle are not checked.
    ///
    /// ```
    /// # async fn f() -> Result<(), oxrmi::RemoteError> {
    /// let rt = oxrmi::Runtime::builder()
    ///     .authorize(|call| match call.caller.uid() {
    ///         Some(0) => Err("not from root".into()),
    ///         _ => Ok(()),
    ///     })
    ///     .start()
    ///     .await?;
    /// # rt.shutdown();
    /// # Ok(())
    /// # }
    /// ```
    pub fn authorize(
        mut self,
        check: impl Fn(&crate::authorize::CallInfo<'_>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.config.authorizer.add(std::sync::Arc::new(check));
        self
    }

    /// As [`authorize`](Self::authorize), for calls to objects of interface `T` only. A check on
    /// the registry's interface ([`Registry`](crate::registry::Registry)) replaces its rule that
    /// `bind`, `rebind` and `unbind` come from this host: the check decides alone.
    pub fn authorize_interface<T: ?Sized + Interface>(
        mut self,
        check: impl Fn(&crate::authorize::CallInfo<'_>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.config
            .authorizer
            .add_for(T::NAME, std::sync::Arc::new(check));
        self
    }

    /// Serves the gRPC bridge over TLS (rustls) with this certificate chain and private key, both
    /// PEM. gRPC clients then connect with `https://` and must trust the chain's root.
    pub fn grpc_tls(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        let client_ca = self.config.grpc_tls.take().and_then(|t| t.client_ca);
        self.config.grpc_tls = Some(GrpcTls {
            cert_chain: cert_chain_pem.into(),
            key: key_pem.into(),
            client_ca,
        });
        self
    }

    /// With [`grpc_tls`](Self::grpc_tls): gRPC clients must present a certificate that chains to
    /// this CA (PEM): mutual TLS. Such a bridge may listen beside a shared secret on any address.
    pub fn grpc_tls_client_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        match &mut self.config.grpc_tls {
            Some(t) => t.client_ca = Some(ca_pem.into()),
            None => {
                self.config.grpc_tls = Some(GrpcTls {
                    cert_chain: Vec::new(),
                    key: Vec::new(),
                    client_ca: Some(ca_pem.into()),
                })
            }
        }
        self
    }

    /// Most calls one peer may have running on one connection, one-way calls included
    /// (default [`DEFAULT_MAX_CALLS_IN_FLIGHT`]); a call beyond it is refused at once with
    /// [`Overloaded`](RemoteError::Overloaded) (a one-way call is dropped, with a log line), so a
    /// peer cannot tie up unbounded tasks and memory. Must be at least 1.
    pub fn max_calls_in_flight(mut self, n: usize) -> Self {
        self.config.max_calls_in_flight = n.max(1);
        self
    }

    /// Most connections the runtime keeps open, incoming and outgoing (default
    /// [`DEFAULT_MAX_CONNECTIONS`]); a handshake beyond it is refused with
    /// [`Overloaded`](RemoteError::Overloaded). Must be at least 1.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n.max(1);
        self
    }

    /// The deadline of calls that set none (default 30 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// How long opening a connection may take, handshake included (default 10 s). It bounds
    /// incoming connections too: a peer that has not finished its handshake by then (one that
    /// sends nothing, or its preamble a byte at a time) is disconnected, with a log line.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The most of this runtime's objects one peer runtime may hold leases on at once (default
    /// [`DEFAULT_MAX_LEASES_PER_PEER`]): a reference sent to a peer at the limit fails that
    /// call (or its reply) with [`LimitExceeded`](RemoteError::LimitExceeded) and a log line, so
    /// a peer that keeps every object a factory hands it cannot grow this process without bound.
    /// Must be at least 1.
    pub fn max_leases_per_peer(mut self, n: usize) -> Self {
        self.config.max_leases_per_peer = n.max(1);
        self
    }

    /// The most live handles this runtime keeps from references one peer runtime sent it
    /// (default [`DEFAULT_MAX_HANDLES_PER_PEER`]), counted per peer that sent them whoever owns
    /// the objects: a peer sending more is refused with
    /// [`LimitExceeded`](RemoteError::LimitExceeded) while decoding. Must be at least 1.
    pub fn max_handles_per_peer(mut self, n: usize) -> Self {
        self.config.max_handles_per_peer = n.max(1);
        self
    }

    /// The most bytes one message from a peer (a call's arguments together, a result, an error)
    /// may decode into (default [`DEFAULT_MAX_DECODED_SIZE`](crate::DEFAULT_MAX_DECODED_SIZE)):
    /// each element of a collection counts its type's size, each string or byte buffer its
    /// length, charged before the memory is taken. A larger value is refused with
    /// [`LimitExceeded`](RemoteError::LimitExceeded) and a log line, and the connection goes on.
    pub fn max_decoded_size(mut self, bytes: usize) -> Self {
        self.config.decode.max_decoded = bytes as u64;
        self
    }

    /// The most elements (or entries) one collection in a decoded value may hold (default
    /// [`DEFAULT_MAX_COLLECTION_LEN`](crate::DEFAULT_MAX_COLLECTION_LEN)); a longer one is
    /// refused from its length header with [`LimitExceeded`](RemoteError::LimitExceeded),
    /// before any element is decoded.
    pub fn max_collection_len(mut self, n: usize) -> Self {
        self.config.decode.max_len = n as u64;
        self
    }

    /// The largest frame accepted or sent, in bytes (default 16 MiB). A peer announcing a larger
    /// frame is disconnected before anything is allocated for it.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes.min(u32::MAX as usize);
        self
    }

    /// How many frames each connection queues before senders wait (default 1024): bounded
    /// buffering with backpressure. With 0, a one-way call returns only once the peer has
    /// received it. `usize::MAX` means no bound in frames; the bound in bytes
    /// ([`send_buffer_bytes`](Self::send_buffer_bytes)) still holds.
    pub fn send_buffer(mut self, frames: usize) -> Self {
        self.config.send_buffer = frames.min(MAX_SEND_BUFFER);
        self
    }

    /// How many bytes of frames each connection queues before senders wait (default
    /// [`DEFAULT_SEND_BUFFER_BYTES`]), besides the `send_buffer` count of frames; a frame
    /// larger than this still goes when the queue is empty. It bounds the replies held for a
    /// peer that does not read them, too: a reply that would take the bytes queued and waiting
    /// beyond it is replaced by [`Overloaded`](RemoteError::Overloaded), so a connection holds
    /// about twice this much of unsent data at worst, whatever the calls in flight.
    pub fn send_buffer_bytes(mut self, bytes: usize) -> Self {
        self.config.send_buffer_bytes = bytes.max(1);
        self
    }

    /// How long a started frame may go without a byte moving (default
    /// [`DEFAULT_STALL_TIMEOUT`]): a peer that announced a frame and stopped sending it, or
    /// that stopped reading while frames wait for it, is disconnected with a log line. Silence
    /// between frames is not a stall (an idle connection is kept), and a slow link is not
    /// either: every byte that moves starts the time again.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.stall_timeout = timeout;
        self
    }

    /// Lets the registry accept `bind`, `rebind` and `unbind` from other hosts (default: only
    /// from this host, as Java's registry does).
    pub fn registry_accepts_remote_writes(mut self, allow: bool) -> Self {
        self.config.registry_remote_writes = allow;
        self
    }

    /// How long a lease on this runtime's objects lasts without renewal (default 60 s). A holder
    /// renews four times per lease; a holder that crashed or was cut off loses its references
    /// when the lease expires, and the objects nobody else holds are dropped then.
    pub fn lease(mut self, duration: Duration) -> Self {
        self.config.lease = duration.max(MIN_LEASE);
        self
    }

    /// How often this runtime checks the registries it bound names in by URL
    /// ([`Runtime::bind_url`], [`crate::bind`]) for a restart, and binds its names again in a
    /// restarted one (default [`DEFAULT_REBIND_INTERVAL`](crate::registry::DEFAULT_REBIND_INTERVAL)).
    /// A check sends nothing while the connection to the registry stays up; a registry that
    /// restarted has our names back within about this interval after it answers again.
    pub fn rebind_interval(mut self, interval: Duration) -> Self {
        self.config.rebind_interval = interval;
        self
    }

    /// How long a TCP peer may leave what we sent unacknowledged before the connection is
    /// presumed dead and closed (default 20 s): calls on it fail with `ConnectionLost` and the
    /// next call dials afresh. An idle connection is probed after this much silence and closed
    /// the same way when nobody answers. Without it, a connection whose packets are dropped
    /// (a partition, a vanished host) would look alive for many minutes, and after a partition
    /// heals, calls would wait on TCP's backed-off retransmissions. Set it above the longest
    /// network outage calls should ride out.
    pub fn dead_peer_timeout(mut self, timeout: Duration) -> Self {
        self.config.local.tcp_dead_peer = timeout;
        self
    }

    /// The mode of the socket files of Unix endpoints (default `0o600`: only this user). A wider
    /// mode lets other users reach the file; the credentials check still admits only this user
    /// and those given to [`allow_unix_uid`](Self::allow_unix_uid).
    pub fn unix_socket_mode(mut self, mode: u32) -> Self {
        self.config.local.access.mode = mode & 0o777;
        self
    }

    /// Serves processes of user `uid` on Unix endpoints too (repeatable; by default only
    /// processes of this runtime's own user are served). Widen the socket file's mode with
    /// [`unix_socket_mode`](Self::unix_socket_mode) so they can reach it.
    pub fn allow_unix_uid(mut self, uid: u32) -> Self {
        self.config.local.access.allowed_uids.push(uid);
        self
    }

    /// In a process started by [`Runtime::spawn_child`]: talk to the parent over stdin and
    /// stdout (see [`Runtime::parent_bootstrap`]). `start` fails if the process was not started
    /// that way. From then on fd 1 is standard error and fd 0 is `/dev/null`.
    pub fn parent_pipe(mut self) -> Self {
        self.parent_pipe = true;
        self
    }

    /// Whether a runtime built with [`parent_pipe`](Self::parent_pipe) ends the process (exit
    /// status 0) when the parent goes (default true).
    pub fn exit_with_parent(mut self, exit: bool) -> Self {
        self.config.exit_with_parent = exit;
        self
    }

    /// The object this runtime offers its parent or its children over their pipes
    /// ([`ChildProcess::bootstrap`](crate::ChildProcess::bootstrap),
    /// [`Runtime::parent_bootstrap`]). It can be replaced later with [`Runtime::set_bootstrap`].
    pub fn bootstrap(mut self, object: impl Into<AnyRemote>) -> Self {
        self.bootstrap = Some(object.into());
        self
    }

    /// Reaches other runtimes only over `scheme` (`tcp`, `unix`, `fifo` or `shm`) when they are
    /// found through references, instead of the cheapest endpoint each offers. URLs given
    /// explicitly (`lookup_url`, `registry_at`) are dialled as written. `start` fails on an
    /// unknown scheme.
    pub fn pin_transport(mut self, scheme: &str) -> Self {
        self.pin = Some(scheme.to_string());
        self
    }

    /// How long a shared-memory link polls its ring before it sleeps on an event (default
    /// 30 µs on a machine with more than one CPU online, none on a single CPU). Spinning answers
    /// a peer on another CPU in well under a microsecond where a wake-up costs tens; a link
    /// stops spinning by itself while it does not pay (a peer on the same CPU, an idle link).
    /// `Duration::ZERO` never spins.
    pub fn shm_spin(mut self, spin: Duration) -> Self {
        self.config.local.shm_spin = spin;
        self
    }

    /// Requires every peer to prove it knows `secret` (at least 16 bytes), and proves it to
    /// them, in the handshake: a challenge-response with HMAC-SHA256 over fresh random
    /// challenges; the secret never travels. A peer with a wrong secret, or none, is refused
    /// with `AccessDenied` before any call is decoded. Both sides must be configured alike;
    /// `start` fails on a shorter secret.
    pub fn shared_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// [`shared_secret`](Self::shared_secret) read from a file (its contents, a trailing
    /// newline removed). `start` fails if the file cannot be read.
    pub fn shared_secret_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.secret_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// [`shared_secret_file`](Self::shared_secret_file) from the environment variable
    /// [`SECRET_FILE_ENV`](crate::SECRET_FILE_ENV) (`OXRMI_SHARED_SECRET_FILE`), if it is set.
    /// The process-wide default runtime and the `oxrmi` tool do this.
    pub fn shared_secret_from_env(self) -> Self {
        match std::env::var_os(crate::SECRET_FILE_ENV) {
            Some(path) => self.shared_secret_file(path),
            None => self,
        }
    }

    /// This runtime's TLS identity: its certificate chain (leaf first) and that certificate's
    /// private key, both PEM. It serves `tls://` listeners (a `tls://` listen without it fails
    /// at `start`), and is the client certificate this runtime presents when a `tls://` server
    /// it dials asks for one (mutual TLS): give it a certificate valid for both uses (no
    /// extended key usage, or both `serverAuth` and `clientAuth`) if it does both. A server's
    /// certificate must name the host its clients dial (a DNS name or an IP address among its
    /// subject alternative names). The gRPC bridge serves it too unless
    /// [`grpc_tls`](Self::grpc_tls) gives it another. `start` fails on bad PEM or a key that
    /// does not fit.
    pub fn tls_identity(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        use transport::tls::Pem;
        self.tls.identity = Some((
            Pem::Bytes(cert_chain_pem.into()),
            Pem::Bytes(key_pem.into()),
        ));
        self
    }

    /// Trusts these CA certificates (PEM, one or more; repeatable) for the `tls://` servers this
    /// runtime dials: a server must present a certificate chaining to one of them, valid for the
    /// host of the endpoint dialled. Nothing is trusted by default (no system roots): dialling a
    /// `tls://` endpoint without this fails with [`Setup`](RemoteError::Setup) naming it.
    pub fn tls_trust(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.tls
            .trust
            .push(transport::tls::Pem::Bytes(ca_pem.into()));
        self
    }

    /// Requires a client certificate chaining to one of these CA certificates (PEM, one or
    /// more; repeatable) on this runtime's `tls://` listeners: mutual TLS. A client without one,
    /// or with another, is refused in the TLS handshake (it gets
    /// [`AccessDenied`](RemoteError::AccessDenied)); a handler sees the subject of the client's
    /// certificate as [`Caller::certificate_subject`](crate::Caller::certificate_subject). Needs
    /// [`tls_identity`](Self::tls_identity). The gRPC bridge requires it too unless
    /// [`grpc_tls`](Self::grpc_tls) is set (then [`grpc_tls_client_ca`](Self::grpc_tls_client_ca)
    /// decides).
    pub fn tls_client_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.tls
            .client_ca
            .push(transport::tls::Pem::Bytes(ca_pem.into()));
        self
    }

    /// The TLS settings from PEM files named by environment variables, those that are set:
    /// [`OXRMI_TLS_CA_FILE`](crate::TLS_CA_FILE_ENV) ([`tls_trust`](Self::tls_trust)),
    /// [`OXRMI_TLS_CERT_FILE`](crate::TLS_CERT_FILE_ENV) and
    /// [`OXRMI_TLS_KEY_FILE`](crate::TLS_KEY_FILE_ENV) together
    /// ([`tls_identity`](Self::tls_identity)), and
    /// [`OXRMI_TLS_CLIENT_CA_FILE`](crate::TLS_CLIENT_CA_FILE_ENV)
    /// ([`tls_client_ca`](Self::tls_client_ca)). The files are read by `start`, which fails if
    /// one cannot be read or parsed, or if only one of the certificate and the key is named. The
    /// process-wide default runtime and the `oxrmi` tool do this.
    pub fn tls_from_env(mut self) -> Self {
        use transport::tls::Pem;
        let var = |name: &str| std::env::var_os(name).map(std::path::PathBuf::from);
        if let Some(ca) = var(crate::TLS_CA_FILE_ENV) {
            self.tls.trust.push(Pem::File(ca));
        }
        if let Some(ca) = var(crate::TLS_CLIENT_CA_FILE_ENV) {
            self.tls.client_ca.push(Pem::File(ca));
        }
        match (var(crate::TLS_CERT_FILE_ENV), var(crate::TLS_KEY_FILE_ENV)) {
            (Some(cert), Some(key)) => self.tls.identity = Some((Pem::File(cert), Pem::File(key))),
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                self.tls_env_error = Some(format!(
                    "{} and {} name a TLS certificate and its key: set both or neither",
                    crate::TLS_CERT_FILE_ENV,
                    crate::TLS_KEY_FILE_ENV
                ));
            }
        }
        self
    }

    /// Binds the endpoints and starts serving, on the tokio runtime this is called from.
    pub async fn start(self) -> Result<Runtime, RemoteError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| RemoteError::Setup {
            reason:
                "Runtime::start needs a tokio runtime (outside async code, use oxrmi::blocking)"
                    .into(),
        })?;
        self.start_on(handle).await
    }

    pub(crate) async fn start_on(
        mut self,
        handle: tokio::runtime::Handle,
    ) -> Result<Runtime, RemoteError> {
        if let Some(path) = &self.secret_file {
            let mut bytes = std::fs::read(path).map_err(|e| RemoteError::Setup {
                reason: format!("cannot read the shared secret from {}: {e}", path.display()),
            })?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            self.secret = Some(bytes);
        }
        if let Some(secret) = self.secret.take() {
            if secret.len() < crate::auth::MIN_SECRET_LEN {
                return Err(RemoteError::Setup {
                    reason: format!(
                        "a shared secret needs at least {} bytes",
                        crate::auth::MIN_SECRET_LEN
                    ),
                });
            }
            self.config.secret = Some(crate::auth::Secret::new(secret));
        }
        if let Some(reason) = self.tls_env_error.take() {
            return Err(RemoteError::Setup { reason });
        }
        if !self.tls.is_empty() {
            let pem = self.tls.load()?;
            self.config.local.tls =
                transport::tls::TlsOptions::new(&pem, self.config.connect_timeout)?;
            // The gRPC bridge serves the runtime's identity unless given its own.
            if self.config.grpc_tls.is_none()
                && let Some((cert_chain, key)) = pem.identity
            {
                self.config.grpc_tls = Some(GrpcTls {
                    cert_chain,
                    key,
                    client_ca: (!pem.client_ca.is_empty()).then_some(pem.client_ca),
                });
            }
        }
        if let Some(pin) = &self.pin {
            const PINNABLE: [&str; 5] = ["tcp", "tls", "unix", "fifo", "shm"];
            let scheme =
                PINNABLE
                    .into_iter()
                    .find(|s| s == pin)
                    .ok_or_else(|| RemoteError::Setup {
                        reason: format!(
                            "cannot pin transport `{pin}` (known: tcp, tls, unix, fifo, shm)"
                        ),
                    })?;
            self.config.pinned_transport = Some(scheme);
        }
        let (grpc, listen): (Vec<String>, Vec<String>) = std::mem::take(&mut self.listen)
            .into_iter()
            .partition(|t| t.starts_with("grpc://"));
        if grpc.len() > 1 {
            return Err(RemoteError::Setup {
                reason: "a runtime serves gRPC on one endpoint at most".into(),
            });
        }
        if !grpc.is_empty() && !cfg!(feature = "grpc") {
            return Err(RemoteError::Setup {
                reason: "grpc:// endpoints need oxrmi built with the `grpc` feature".into(),
            });
        }
        let mut listeners: Vec<Box<dyn Listener>> = Vec::new();
        for text in &listen {
            let ep: Endpoint = text.parse()?;
            let l = transport::bind(&ep, &self.config.local)
                .await
                .map_err(|e| RemoteError::Setup {
                    reason: format!("cannot listen on {ep}: {e}"),
                })?;
            listeners.push(l);
        }
        let endpoints: Vec<Endpoint> = listeners.iter().map(|l| l.endpoint()).collect();
        let (stop, _) = watch::channel(false);
        // A check installed on the registry's interface decides on writes instead of the host.
        let remote_writes = self.config.registry_remote_writes
            || self
                .config
                .authorizer
                .governs(<dyn Registry as Interface>::NAME);
        let lease = self.config.lease;
        let inner = Arc::new(RuntimeInner {
            id: RuntimeId::random(),
            leases: LeaseTable::new(lease, self.config.max_leases_per_peer),
            holdings: Holdings::default(),
            config: self.config,
            handle,
            endpoints,
            objects: ObjectTable::default(),
            conns: ConnTable::default(),
            registry: self.registry.then(|| {
                let store = match self.registry_store {
                    Some(RegistryStoreArg(store)) => store,
                    None => Arc::new(MemoryStore::default()),
                };
                Arc::new(RegistryService::new(store, remote_writes))
            }),
            owned_names: Default::default(),
            bootstrap: Arc::new(BootstrapService::default()),
            parent: Mutex::new(None),
            stop,
            grpc_address: std::sync::OnceLock::new(),
        });
        inner.bootstrap.set(self.bootstrap);
        let bootstrap: Remote<dyn Bootstrap> = Remote::from_arc(inner.bootstrap.clone());
        inner
            .objects
            .export_as(ObjId::BOOTSTRAP, bootstrap.into_any().exported());
        if let Some(reg) = &inner.registry {
            reg.attach(StoreRuntime::new(&inner));
            let handle: Remote<dyn Registry> = Remote::from_arc(reg.clone());
            let any = handle.into_any();
            inner.objects.export_as(ObjId::REGISTRY, any.exported());
        }
        let leases: Remote<dyn LeaseService> = Remote::new(LeaseEndpoint {
            rt: Arc::downgrade(&inner),
        });
        inner
            .objects
            .export_as(ObjId::LEASES, leases.into_any().exported());
        let introspect: Remote<dyn Introspect> = Remote::new(IntrospectEndpoint {
            rt: Arc::downgrade(&inner),
        });
        inner
            .objects
            .export_as(ObjId::INTROSPECT, introspect.into_any().exported());
        // Often enough for a quarter of our lease and of any peer's (most leases are far longer).
        let period = (lease / 4).min(HOUSEKEEPING_MAX_PERIOD);
        inner
            .handle
            .spawn(lease::housekeeping(Arc::downgrade(&inner), period));
        for l in listeners {
            inner.handle.spawn(accept_loop(inner.clone(), l));
        }
        #[cfg(feature = "grpc")]
        for g in &grpc {
            let mutual_tls = inner
                .config
                .grpc_tls
                .as_ref()
                .is_some_and(|t| t.client_ca.is_some());
            if inner.config.secret.is_some() && !mutual_tls && !grpc_is_loopback(g) {
                return Err(RemoteError::Setup {
                    reason: format!(
                        "{g}: gRPC clients cannot prove the shared secret, so with one set the \
                         bridge listens on a loopback address only, unless it requires client \
                         certificates (grpc_tls_client_ca; see SECURITY.md)"
                    ),
                });
            }
            let addr = crate::grpc::start(&inner, g.trim_start_matches("grpc://")).await?;
            let _ = inner.grpc_address.set(addr);
        }
        if self.parent_pipe {
            let parent = child::connect_parent(&inner, inner.config.exit_with_parent).await?;
            *inner.parent.lock().unwrap_or_else(PoisonError::into_inner) = Some(parent);
        }
        tracing::info!(runtime = %inner.id, endpoints = ?inner.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(), "runtime started");
        Ok(Runtime { inner })
    }
}

/// The shared state of a runtime.
pub(crate) struct RuntimeInner {
    pub(crate) id: RuntimeId,
    pub(crate) config: Config,
    /// The tokio runtime every task of this runtime is spawned on.
    pub(crate) handle: tokio::runtime::Handle,
    /// The bound endpoints (port 0 resolved).
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) objects: ObjectTable,
    /// Who holds our objects.
    pub(crate) leases: LeaseTable,
    /// What we hold of others'.
    pub(crate) holdings: Holdings,
    pub(crate) conns: ConnTable,
    pub(crate) registry: Option<Arc<RegistryService>>,
    /// Names we bound in registries by URL, bound again when such a registry restarts.
    pub(crate) owned_names: crate::registry::OwnedNames,
    /// The object offered to a parent or children over their pipes.
    bootstrap: Arc<BootstrapService>,
    /// The parent's runtime, in a child started with `spawn_child`.
    pub(crate) parent: Mutex<Option<RuntimeId>>,
    stop: watch::Sender<bool>,
    /// Where the gRPC bridge listens, if it does.
    grpc_address: std::sync::OnceLock<std::net::SocketAddr>,
}

impl RuntimeInner {
    /// Changes to `true` when the runtime shuts down.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.stop.borrow()
    }

    /// The endpoints to advertise to a peer that reached us at `local_host`: an unspecified listen
    /// address (`0.0.0.0`) is replaced by the address the peer used.
    pub(crate) fn advertised_for(&self, local_host: Option<&str>) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|ep| match (ep, local_host) {
                (Endpoint::Tcp { host, port }, Some(h)) if is_unspecified(host) => {
                    Endpoint::tcp(h, *port).to_string()
                }
                (Endpoint::Tls { host, port }, Some(h)) if is_unspecified(host) => {
                    Endpoint::tls(h, *port).to_string()
                }
                _ => ep.to_string(),
            })
            .collect()
    }

    /// The endpoints to put in a reference sent over `conn`.
    pub(crate) fn advertised(&self, conn: Option<&Connection>) -> Vec<String> {
        self.advertised_for(conn.and_then(|c| c.info().local_host.as_deref()))
    }

    /// Whether `conn` is as cheap a path to its peer as `endpoints` (the peer's) offer, and of
    /// the pinned transport if one is: a stub may keep using it without asking [`connect`].
    ///
    /// [`connect`]: Self::connect
    pub(crate) fn is_cheapest(&self, conn: &Connection, endpoints: &[String]) -> bool {
        if let Some(pin) = self.config.pinned_transport {
            return conn.info().scheme == pin;
        }
        endpoints
            .iter()
            .filter_map(|e| e.parse::<Endpoint>().ok())
            .all(|e| e.cost_rank() >= conn.cost_rank())
    }

    /// A connection to the runtime `runtime` (if known) at one of `endpoints`, reusing a live one.
    ///
    /// The cheapest path wins: endpoints are tried cheapest first (shared memory, Unix socket,
    /// FIFO, TCP: [`Endpoint::cost_rank`]), falling back to the next when one fails. A local
    /// endpoint of another host cannot be mistaken for the owner's: the handshake names the
    /// runtime that answered, and a different one is passed over. A live connection to the
    /// runtime is reused, except that once per runtime a cheaper endpoint than the connection's
    /// transport is tried (a lookup over `tcp://` of an object whose owner is on this host moves
    /// its calls to shared memory). With [`RuntimeBuilder::pin_transport`] only endpoints of
    /// that transport are used.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        runtime: Option<RuntimeId>,
        endpoints: &[String],
        describe: impl Fn() -> String,
    ) -> Result<Connection, RemoteError> {
        let mut last = None;
        let mut candidates: Vec<Endpoint> = Vec::with_capacity(endpoints.len());
        for text in endpoints {
            match text.parse::<Endpoint>() {
                Ok(ep) => candidates.push(ep),
                Err(e) => last = Some(e),
            }
        }
        // Endpoints given explicitly (no runtime known yet) are dialled as given, in order.
        if runtime.is_some() {
            if let Some(pin) = self.config.pinned_transport {
                candidates.retain(|ep| ep.scheme() == pin);
            }
            candidates.sort_by_key(Endpoint::cost_rank);
        }
        let existing = match runtime {
            Some(id) if id == self.id => {
                return Err(RemoteError::NoSuchObject { object: describe() });
            }
            Some(id) => self.conns.by_runtime(id),
            None => None,
        };
        if let (Some(c), Some(id)) = (&existing, runtime) {
            let pinned_elsewhere = self
                .config
                .pinned_transport
                .is_some_and(|pin| c.info().scheme != pin);
            let cheaper = candidates
                .first()
                .is_some_and(|ep| ep.cost_rank() < c.cost_rank());
            let try_cheaper = cheaper && self.conns.first_upgrade(id);
            if !pinned_elsewhere && !try_cheaper {
                return Ok(c.clone());
            }
            candidates.retain(|ep| ep.cost_rank() < c.cost_rank() || pinned_elsewhere);
        }
        for ep in &candidates {
            match self.dial(ep).await {
                Ok(c) => {
                    if let Some(id) = runtime
                        && c.peer() != id
                    {
                        // Another runtime answers there: the owner restarted or moved, or the
                        // path names something on another host.
                        tracing::debug!(%ep, answered = %c.peer(), expected = %id, "passed over an endpoint");
                        last = Some(RemoteError::NoSuchObject {
                            object: format!(
                                "{} (its runtime is gone; {} answers at {ep})",
                                describe(),
                                c.peer()
                            ),
                        });
                        continue;
                    }
                    if let Some(old) = &existing {
                        tracing::info!(peer = %c.peer(), from = old.info().scheme, to = %ep, "moved to a cheaper transport");
                    }
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(%ep, error = %e, "endpoint failed; trying the next");
                    last = Some(e);
                }
            }
        }
        match existing {
            Some(c) if self.config.pinned_transport.is_none() => Ok(c),
            _ => Err(last.unwrap_or_else(|| match self.config.pinned_transport {
                Some(pin) => RemoteError::Unreachable {
                    object: format!(
                        "{} (transport pinned to {pin}; its owner offers {})",
                        describe(),
                        if endpoints.is_empty() {
                            "no endpoint".to_string()
                        } else {
                            endpoints.join(", ")
                        }
                    ),
                },
                None => RemoteError::Unreachable { object: describe() },
            })),
        }
    }

    /// A connection to whatever runtime listens at `ep`, reusing a live one.
    pub(crate) async fn dial(self: &Arc<Self>, ep: &Endpoint) -> Result<Connection, RemoteError> {
        if *self.stop.borrow() {
            return Err(RemoteError::Shutdown);
        }
        if let Some(c) = self.conns.by_endpoint(ep) {
            return Ok(c);
        }
        // One dial per endpoint at a time: concurrent first calls share one connection.
        let gate = self.conns.gate(ep);
        let _g = gate.lock().await;
        if let Some(c) = self.conns.by_endpoint(ep) {
            return Ok(c);
        }
        let rt = self.clone();
        let ep2 = ep.clone();
        let conn = self
            .handshake_in_time(&ep.to_string(), "", async move {
                let link = transport::connect(&ep2, &rt.config.local)
                    .await
                    .map_err(|e| transport::dial_error(&ep2, e))?;
                connection::establish(&rt, link).await
            })
            .await?;
        tracing::debug!(%ep, transport = ep.scheme(), peer = %conn.peer(), "connected");
        self.conns.insert(conn.clone(), Some(ep.clone()));
        Ok(conn)
    }
}

impl RuntimeInner {
    /// Runs `opening` (a link opened and its handshake) on the runtime's own tokio runtime, so
    /// its sockets belong to that runtime whoever calls, within the connect timeout; `hint`
    /// follows the timeout's reason.
    pub(crate) async fn handshake_in_time(
        &self,
        endpoint: &str,
        hint: &str,
        opening: impl std::future::Future<Output = Result<Connection, RemoteError>> + Send + 'static,
    ) -> Result<Connection, RemoteError> {
        let task = self.handle.spawn(opening);
        match tokio::time::timeout(self.config.connect_timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(RemoteError::lost(join)),
            Err(_) => Err(RemoteError::ConnectionRefused {
                endpoint: endpoint.to_string(),
                reason: format!(
                    "no handshake within {:?}{hint}",
                    self.config.connect_timeout
                ),
            }),
        }
    }
}

fn is_unspecified(host: &str) -> bool {
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

async fn accept_loop(rt: Arc<RuntimeInner>, listener: Box<dyn Listener>) {
    let mut stop = rt.stop.subscribe();
    // Handshakes in progress on this listener, bounded like connections: peers that connect
    // and never finish their handshake (slowloris) hold at most this many sockets and tasks
    // until the connect timeout drops them.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(
        rt.config
            .max_connections
            .min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    loop {
        let link = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let link = match link {
            Ok(l) => l,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(peer = %link.peer, limit = rt.config.max_connections, "too many handshakes in progress; dropped");
            continue;
        };
        let rt2 = rt.clone();
        rt.handle.spawn(async move {
            let _permit = permit;
            let peer = link.peer.clone();
            match tokio::time::timeout(
                rt2.config.connect_timeout,
                connection::establish(&rt2, link),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    tracing::debug!(%peer, runtime = %conn.peer(), "accepted");
                    rt2.conns.insert(conn, None);
                }
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "handshake failed"),
                Err(_) => tracing::warn!(
                    %peer,
                    timeout = ?rt2.config.connect_timeout,
                    "no handshake in time (RuntimeBuilder::connect_timeout); dropped"
                ),
            }
        });
    }
}

/// Live connections, by peer runtime and by the endpoint they were dialled at.
#[derive(Default)]
pub(crate) struct ConnTable {
    inner: Mutex<ConnMaps>,
}

#[derive(Default)]
struct ConnMaps {
    by_runtime: HashMap<RuntimeId, Connection>,
    by_endpoint: HashMap<Endpoint, Connection>,
    gates: HashMap<Endpoint, Arc<tokio::sync::Mutex<()>>>,
    /// Runtimes a move to a cheaper transport was tried for (once each).
    upgrades_tried: std::collections::HashSet<RuntimeId>,
}

impl ConnTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnMaps> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn by_runtime(&self, id: RuntimeId) -> Option<Connection> {
        self.lock()
            .by_runtime
            .get(&id)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    pub(crate) fn by_endpoint(&self, ep: &Endpoint) -> Option<Connection> {
        self.lock()
            .by_endpoint
            .get(ep)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    fn gate(&self, ep: &Endpoint) -> Arc<tokio::sync::Mutex<()>> {
        self.lock().gates.entry(ep.clone()).or_default().clone()
    }

    pub(crate) fn insert(&self, conn: Connection, dialled: Option<Endpoint>) {
        if conn.is_closed() {
            return;
        }
        let mut m = self.lock();
        // New calls to a runtime take its cheapest live connection; between two of the same
        // transport (both ends dialled at once) the first stays: either works.
        m.by_runtime
            .entry(conn.peer())
            .and_modify(|c| {
                if c.is_closed() || conn.cost_rank() < c.cost_rank() {
                    *c = conn.clone();
                }
            })
            .or_insert_with(|| conn.clone());
        if let Some(ep) = dialled {
            m.by_endpoint.insert(ep, conn);
        }
    }

    /// True the first time it is asked for runtime `id` while connected to it: one try at a
    /// cheaper transport per runtime.
    fn first_upgrade(&self, id: RuntimeId) -> bool {
        self.lock().upgrades_tried.insert(id)
    }

    /// A live connection to the runtime `id`, if one is open.
    pub(crate) fn connection(&self, id: RuntimeId) -> Option<Connection> {
        self.by_runtime(id)
    }

    /// The lease a connected runtime grants on its objects.
    pub(crate) fn peer_lease(&self, id: RuntimeId) -> Option<Duration> {
        self.by_runtime(id).map(|c| c.info().peer_lease)
    }

    pub(crate) fn remove(&self, conn: &Connection) {
        let mut m = self.lock();
        m.by_runtime.retain(|_, c| !c.same(conn));
        m.by_endpoint.retain(|_, c| !c.same(conn));
        if !m.by_runtime.contains_key(&conn.peer()) {
            m.upgrades_tried.remove(&conn.peer());
        }
    }

    /// How many distinct connections are open.
    pub(crate) fn count(&self) -> usize {
        self.all().iter().filter(|c| !c.is_closed()).count()
    }

    pub(crate) fn all(&self) -> Vec<Connection> {
        let m = self.lock();
        let mut v: Vec<Connection> = m.by_runtime.values().cloned().collect();
        for c in m.by_endpoint.values() {
            if !v.iter().any(|x| x.same(c)) {
                v.push(c.clone());
            }
        }
        v
    }
}

/// An oxrmi runtime: it exports objects, listens on endpoints, connects to other runtimes and
/// optionally serves a registry. Cheap to clone; every clone is the same runtime.
///
/// ```
/// # async fn f() -> Result<(), oxrmi::RemoteError> {
/// use oxrmi::{remote, Remote, RemoteError, Runtime};
///
/// #[remote]
/// pub trait Greeter: Send + Sync {
///     async fn greet(&self, name: String) -> Result<String, RemoteError>;
/// }
///
/// struct English;
///
/// #[remote]
/// impl Greeter for English {
///     async fn greet(&self, name: String) -> Result<String, RemoteError> {
///         Ok(format!("hello, {name}"))
///     }
/// }
///
/// let rt = Runtime::builder().listen("tcp://127.0.0.1:0").registry().start().await?;
/// rt.bind("greeter", Remote::<dyn Greeter>::new(English)).await?;
///
/// // Another runtime (here in the same process) looks it up over TCP.
/// let client = Runtime::builder().start().await?;
/// let url = format!("{}/greeter", rt.endpoints()[0]);
/// let greeter: Remote<dyn Greeter> = client.lookup_url(&url).await?;
/// assert!(!greeter.is_local());
/// assert_eq!(greeter.greet("ada".into()).await?, "hello, ada");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(f()).unwrap();
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("id", &self.inner.id)
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts building a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// This runtime's id.
    pub fn id(&self) -> RuntimeId {
        self.inner.id
    }

    /// The endpoints this runtime listens on, port 0 resolved.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner.endpoints.clone()
    }

    /// Replaces the object this runtime offers its parent or children over their pipes.
    pub fn set_bootstrap(&self, object: impl Into<AnyRemote>) {
        self.inner.bootstrap.set(Some(object.into()));
    }

    /// How many objects this runtime exports (the registry included).
    pub fn exported_objects(&self) -> usize {
        self.inner.objects.len()
    }

    /// A snapshot of this runtime's objects, who holds them, what it holds of others, and its
    /// connections (what `oxrmi ipcs` prints).
    pub fn report(&self) -> Report {
        crate::introspect::report(&self.inner)
    }

    /// The `.proto` files of the interfaces this runtime serves (see [`crate::proto`]), with the
    /// interfaces that cannot be described and why.
    pub fn proto_files(&self) -> (Vec<crate::proto::ProtoFile>, Vec<crate::proto::ProtoError>) {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for (schema, _) in crate::types::served(&self.inner) {
            let r = crate::types::of_served(&self.inner, &schema.name)
                .map_err(|e| e.to_string())
                .and_then(|t| crate::proto::render(&t).map_err(|e| e.reason));
            match r {
                Ok(f) => files.push(f),
                Err(reason) => errors.push(crate::proto::ProtoError {
                    interface: schema.name.to_string(),
                    reason,
                }),
            }
        }
        (files, errors)
    }

    /// The address the gRPC bridge listens on (port 0 resolved), if the runtime was built with
    /// a `grpc://` endpoint.
    pub fn grpc_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.grpc_address.get().copied()
    }

    /// How many connections to other runtimes are open.
    pub fn connections(&self) -> usize {
        self.inner.conns.all().len()
    }

    /// Stops serving a local object to other runtimes: their handles to it fail with
    /// "no such object" from now on (local handles keep working). Returns whether it was exported.
    pub fn unexport(&self, object: impl Into<AnyRemote>) -> bool {
        match object.into().local_identity() {
            Some(identity) => self.inner.objects.unexport(identity),
            None => false,
        }
    }

    fn own_registry(&self) -> Result<&Arc<RegistryService>, RemoteError> {
        self.inner
            .registry
            .as_ref()
            .ok_or_else(|| RemoteError::Setup {
                reason: "this runtime serves no registry (build it with .registry())".into(),
            })
    }

    /// Binds `name` in this runtime's registry; fails if the name is taken.
    pub async fn bind(&self, name: &str, object: impl Into<AnyRemote>) -> Result<(), RemoteError> {
        self.own_registry()?
            .bind(name.to_string(), object.into())
            .await
    }

    /// Binds `name` in this runtime's registry, replacing any earlier binding.
    pub async fn rebind(
        &self,
        name: &str,
        object: impl Into<AnyRemote>,
    ) -> Result<(), RemoteError> {
        self.own_registry()?
            .rebind(name.to_string(), object.into())
            .await
    }

    /// Removes `name` from this runtime's registry; fails if it is not bound.
    pub async fn unbind(&self, name: &str) -> Result<(), RemoteError> {
        self.own_registry()?.unbind(name.to_string()).await
    }

    /// Looks `name` up in this runtime's registry.
    pub async fn lookup<T: ?Sized + Interface>(
        &self,
        name: &str,
    ) -> Result<Remote<T>, RemoteError> {
        self.own_registry()?
            .lookup(name.to_string())
            .await?
            .downcast()
    }

    /// Every binding in this runtime's registry.
    pub async fn list(&self) -> Result<Vec<Binding>, RemoteError> {
        self.own_registry()?.list().await
    }

    /// A handle to the registry served at `endpoint`, reached through this runtime.
    pub fn registry_at(&self, endpoint: &Endpoint) -> Remote<dyn Registry> {
        Remote::from_stub(StubHandle::well_known(
            self.inner.clone(),
            None,
            ObjId::REGISTRY,
            <dyn Registry as Interface>::NAME,
            vec![endpoint.to_string()],
        ))
    }

    /// A handle to the introspection service of the runtime at `endpoint` (every runtime
    /// serves one), reached through this runtime.
    pub fn introspect_at(&self, endpoint: &Endpoint) -> Remote<dyn Introspect> {
        Remote::from_stub(StubHandle::well_known(
            self.inner.clone(),
            None,
            ObjId::INTROSPECT,
            <dyn Introspect as Interface>::NAME,
            vec![endpoint.to_string()],
        ))
    }

    /// Looks up `tcp://host:port/name` through this runtime, checking the interface.
    pub async fn lookup_url<T: ?Sized + Interface>(
        &self,
        url: &str,
    ) -> Result<Remote<T>, RemoteError> {
        let (endpoints, url) = crate::registry::failover_url(url)?;
        let name = url.require_name()?.to_string();
        self.registry_at_any(&endpoints)
            .lookup(name)
            .await?
            .downcast()
    }

    /// Releases every lease this runtime holds on other runtimes' objects (their owners may
    /// drop them at once rather than when the lease would expire), stops accepting
    /// connections and closes every open one; calls in flight fail with "connection lost".
    /// Call it before a process ends to leave nothing waiting on its leases.
    pub fn shutdown(&self) {
        Holdings::release_all(&self.inner);
        self.inner.stop.send_replace(true);
        for c in self.inner.conns.all() {
            c.close(&self.inner, &RemoteError::Shutdown);
        }
    }
}

/// The runtime the gRPC bridge of `served` calls through: no endpoints, the same settings (the
/// shared secret among them, for the handshake over the in-memory link).
#[cfg(feature = "grpc")]
pub(crate) async fn client_for_bridge(served: &Arc<RuntimeInner>) -> Result<Runtime, RemoteError> {
    let mut config = served.config.clone();
    config.pinned_transport = None;
    let builder = RuntimeBuilder {
        config,
        ..Runtime::builder()
    };
    Box::pin(builder.start_on(served.handle.clone())).await
}

/// Whether a `grpc://host:port` endpoint is on a loopback address (or `localhost`).
#[cfg(feature = "grpc")]
fn grpc_is_loopback(endpoint: &str) -> bool {
    let hostport = endpoint.trim_start_matches("grpc://");
    let host = match hostport.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => hostport,
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
