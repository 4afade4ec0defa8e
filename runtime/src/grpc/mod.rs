//! The gRPC bridge: every interface a runtime serves, as gRPC services any gRPC client can call
//! (built with the `grpc` feature; `Runtime::builder().listen("grpc://127.0.0.1:50051")`).
//!
//! - **What is served.** The interfaces of the runtime's exported objects and of the local
//!   objects bound in its registry (its lease and bootstrap machinery left out), each as the
//!   service [`crate::proto`] describes; `oxrmi proto` prints the same `.proto`. The set is
//!   looked at again every [`REFRESH`] and whenever a call names an unknown method, so objects
//!   exported at run time appear at run time. Server reflection (v1 and v1alpha) and the
//!   standard health service are served too; a service is `SERVING` while an object
//!   implementing its interface is exported or bound, `NOT_SERVING` after.
//! - **Which object.** Metadata `oxrmi-object: ID` names an object (an `ObjectRef` id, or the id
//!   `oxrmi ipcs` shows); `oxrmi-name: NAME` a name in the runtime's registry; with neither, the
//!   one object of the service's interface bound in the registry is called (the runtime's own
//!   registry and introspection services need no binding). No object, or several, is
//!   `FAILED_PRECONDITION` naming the candidates.
//! - **References.** A `Remote<dyn X>` in a reply reaches the client as an `ObjectRef`; the bridge
//!   keeps a handle (and so a lease) for it until its id goes unused for the handle idle time
//!   ([`DEFAULT_HANDLE_IDLE`], `RuntimeBuilder::grpc_handle_idle`).
//! - **Errors and deadlines.** `grpc-timeout` is the call's deadline; failures map to status codes
//!   in one place ([`code_for`]); an application error is `UNKNOWN` (or, for a `RemoteError`
//!   returned by the method, that error's code) with the error in the status details as a
//!   `google.protobuf.Any` of the method's `…AppError` message. A malformed request is
//!   `INVALID_ARGUMENT`.
//!
//! - **TLS.** `RuntimeBuilder::grpc_tls(cert_chain_pem, key_pem)` serves over TLS (rustls);
//!   `grpc_tls_client_ca(ca_pem)` requires client certificates chaining to that CA (mutual TLS).
//!   Without TLS the bridge has no authentication of its own: with a shared secret set, it may
//!   listen on a loopback address only unless mutual TLS is on.
//!
//! Inside, the bridge is an oxrmi client like any other: a runtime of its own in the same process,
//! connected to the served runtime over an in-memory link (transport `mem`), calling through
//! ordinary stubs. Leases, deadlines, cancellation and the registry's rules all hold as for any
//! peer; the registry sees the bridge as a peer of another host, so its writes through the bridge
//! need `registry_accepts_remote_writes(true)`.

mod catalog;
mod codec;
mod handles;
mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use serde::de::DeserializeSeed;
use tonic::body::Body;
use tonic::codec::{DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::Service;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tonic_health::ServingStatus;

pub use handles::DEFAULT_HANDLE_IDLE;
pub use status::code_for;

use crate::connection;
use crate::id::{ObjId, RuntimeId};
use crate::introspect::Introspect;
use crate::marshal::MAX_DEPTH;
use crate::message::Status as ReplyStatus;
use crate::proto::Layout;
use crate::registry::Registry;
use crate::runtime::RuntimeInner;
use crate::stub::StubHandle;
use crate::transport::Link;
use crate::types::Shape;
use crate::{AnyRemote, BoxFuture, Interface, Remote, RemoteError, Runtime};
use catalog::{Catalog, Route};
use codec::{Arg, Codec, Read};
use handles::Handles;

/// How often the bridge looks for interfaces that appeared or went, and updates health.
pub const REFRESH: Duration = Duration::from_millis(500);

/// How much sooner than `grpc-timeout` the bridge ends a call (at most a tenth of it).
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

/// The in-memory link's buffer, each way.
const LINK_BUFFER: usize = 256 * 1024;

/// The bridge behind one `grpc://` endpoint.
struct Bridge {
    /// The runtime served.
    served: Arc<RuntimeInner>,
    served_id: RuntimeId,
    /// The bridge's own runtime, the client of `served`.
    client: Runtime,
    catalog: RwLock<Arc<Catalog>>,
    handles: Handles,
    health: tonic_health::server::HealthReporter,
    health_service: catalog::HttpService,
    /// Names resolved through the registry, with the registry generation they were read at.
    names: Mutex<HashMap<String, (u64, AnyRemote)>>,
}

/// Starts the bridge for `rt` on `addr` (`host:port`); returns the address bound.
pub(crate) async fn start(rt: &Arc<RuntimeInner>, addr: &str) -> Result<SocketAddr, RemoteError> {
    let setup = |reason: String| RemoteError::Setup { reason };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| setup(format!("cannot listen on grpc://{addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| setup(format!("grpc://{addr}: {e}")))?;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &rt.config.grpc_tls {
        if tls.cert_chain.is_empty() || tls.key.is_empty() {
            return Err(setup(
                "grpc_tls_client_ca needs grpc_tls (the server's own certificate and key)".into(),
            ));
        }
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.cert_chain, &tls.key),
        );
        if let Some(ca) = &tls.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        server = server
            .tls_config(config)
            .map_err(|e| setup(format!("grpc://{addr}: TLS: {e}")))?;
    }
    let bridge = build(rt).await?;
    let mut stop = rt.stop_signal();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = Router {
        bridge: bridge.clone(),
    };
    let server = server.serve_with_incoming_shutdown(router, incoming, async move {
        let _ = stop.changed().await;
    });
    rt.handle.spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "the gRPC bridge stopped");
        }
    });
    rt.handle.spawn(refresh(bridge));
    tracing::info!(address = %local, tls = rt.config.grpc_tls.is_some(), "gRPC bridge serving");
    Ok(local)
}

/// The bridge of `rt`, connected and with its catalog, serving nothing yet.
async fn build(rt: &Arc<RuntimeInner>) -> Result<Arc<Bridge>, RemoteError> {
    let client = crate::runtime::client_for_bridge(rt).await?;
    connect_in_memory(rt, &client.inner).await?;
    let (health, health_server) = tonic_health::server::health_reporter();
    let bridge = Arc::new(Bridge {
        served: rt.clone(),
        served_id: rt.id,
        handles: Handles::new(rt.id, rt.config.grpc_handle_idle),
        client,
        catalog: RwLock::new(Arc::new(catalog::build(rt))),
        health,
        health_service: catalog::boxed(health_server),
        names: Mutex::new(HashMap::new()),
    });
    bridge.update_health(None).await;
    Ok(bridge)
}

/// A bridge for the fuzz target: [`build`] without a listener, and one call through it.
pub(crate) mod fuzzing {
    use super::*;

    /// A bridge serving `rt`, listening nowhere.
    pub(crate) struct Detached(Arc<Bridge>);

    impl Detached {
        pub(crate) async fn new(rt: &Arc<RuntimeInner>) -> Result<Self, RemoteError> {
            Ok(Detached(build(rt).await?))
        }

        /// The paths of the methods served, sorted.
        pub(crate) fn paths(&self) -> Vec<String> {
            let mut p: Vec<String> = self.0.catalog().routes.keys().cloned().collect();
            p.sort();
            p
        }

        /// The request message of `path`.
        pub(crate) fn request(&self, path: &str) -> Option<prost_reflect::MessageDescriptor> {
            Some(self.0.catalog().routes.get(path)?.request.clone())
        }

        /// One unary call of `path` with the protobuf `body`, as a client's request arrives
        /// after HTTP/2 framing.
        pub(crate) async fn call(&self, path: &str, body: Bytes) -> Result<Bytes, Status> {
            let route = self
                .0
                .catalog()
                .routes
                .get(path)
                .cloned()
                .ok_or_else(|| Status::unimplemented(path.to_string()))?;
            self.0.call(&route, tonic::Request::new(body)).await
        }
    }
}

/// Connects the bridge's runtime to the served one over an in-process link.
async fn connect_in_memory(
    served: &Arc<RuntimeInner>,
    client: &Arc<RuntimeInner>,
) -> Result<(), RemoteError> {
    let (a, b) = tokio::io::duplex(LINK_BUFFER);
    let link = |io: tokio::io::DuplexStream, peer: &str| {
        let (reader, writer) = tokio::io::split(io);
        Link {
            reader: Box::new(reader),
            writer: Box::new(writer),
            scheme: "mem",
            peer: peer.to_string(),
            local_host: None,
            // The bridge speaks for gRPC clients anywhere: not "this host" to the registry.
            peer_is_local_host: false,
            peer_uid: None,
            peer_subject: None,
            spin_until_readable: None,
        }
    };
    let (s, c) = tokio::join!(
        connection::establish(served, link(a, "gRPC bridge")),
        connection::establish(client, link(b, "served runtime")),
    );
    served.conns.insert(s?, None);
    client.conns.insert(c?, None);
    Ok(())
}

/// Keeps the catalog and health current and lets idle handles go, until the runtime stops.
async fn refresh(bridge: Arc<Bridge>) {
    let mut stop = bridge.served.stop_signal();
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = crate::timer::sleep_until(std::time::Instant::now() + REFRESH) => {}
            _ = stop.changed() => break,
        }
        bridge.refresh_catalog().await;
        if last_sweep.elapsed() >= bridge.handles.sweep_period() {
            bridge.handles.expire();
            last_sweep = tokio::time::Instant::now();
        }
    }
    bridge.client.shutdown();
}

impl Bridge {
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds the catalog if the set of interfaces changed.
    async fn refresh_catalog(&self) {
        let now = catalog::served_names(&self.served);
        let old = self.catalog();
        if now == old.interfaces {
            return;
        }
        let new = Arc::new(catalog::build(&self.served));
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = new;
        self.update_health(Some(&old)).await;
        tracing::info!(interfaces = ?now, "gRPC bridge: services changed");
    }

    /// Marks every served service SERVING, and those of `old` no longer served NOT_SERVING.
    async fn update_health(&self, old: Option<&Catalog>) {
        let cat = self.catalog();
        for (_, service) in &cat.services {
            self.health
                .set_service_status(service, ServingStatus::Serving)
                .await;
        }
        if let Some(old) = old {
            for (_, service) in &old.services {
                if !cat.services.iter().any(|(_, s)| s == service) {
                    self.health
                        .set_service_status(service, ServingStatus::NotServing)
                        .await;
                }
            }
        }
    }

    fn registry(&self) -> Remote<dyn Registry> {
        Remote::from_stub(StubHandle::well_known(
            self.client.inner.clone(),
            Some(self.served_id),
            ObjId::REGISTRY,
            <dyn Registry as Interface>::NAME,
            Vec::new(),
        ))
    }

    fn registry_generation(&self) -> Option<u64> {
        self.served.registry.as_ref().map(|r| r.generation())
    }

    /// The object a call goes to.
    async fn select(&self, route: &Route, md: &MetadataMap) -> Result<AnyRemote, Status> {
        let interface: &str = &route.served.schema.name;
        let text = |key: &str| -> Result<Option<String>, Status> {
            match md.get(key) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_string()))
                    .map_err(|_| Status::invalid_argument(format!("`{key}` is not text"))),
            }
        };
        let h = if let Some(id) = text("oxrmi-object")? {
            self.handles.get(&self.client.inner, &self.served, &id)?
        } else if let Some(name) = text("oxrmi-name")? {
            self.lookup(&name).await?
        } else {
            self.default_object(interface).await?
        };
        if h.interface() != interface {
            return Err(Status::failed_precondition(format!(
                "the object named implements `{}`, not `{interface}`",
                h.interface()
            )));
        }
        Ok(h)
    }

    /// `name` in the served runtime's registry, cached until the registry changes.
    async fn lookup(&self, name: &str) -> Result<AnyRemote, Status> {
        let Some(generation) = self.registry_generation() else {
            return Err(Status::failed_precondition(
                "this runtime serves no registry: name objects with `oxrmi-object`",
            ));
        };
        if let Some((g, h)) = self
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            && *g == generation
        {
            return Ok(h.clone());
        }
        let h = self
            .registry()
            .lookup(name.to_string())
            .await
            .map_err(|e| status::from_remote(&e))?;
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), (generation, h.clone()));
        Ok(h)
    }

    /// The one object of `interface` bound in the registry, or the runtime's own service.
    async fn default_object(&self, interface: &str) -> Result<AnyRemote, Status> {
        let well_known = [
            (<dyn Registry as Interface>::NAME, ObjId::REGISTRY),
            (<dyn Introspect as Interface>::NAME, ObjId::INTROSPECT),
        ];
        if let Some((name, id)) = well_known.into_iter().find(|(n, _)| *n == interface) {
            if id == ObjId::REGISTRY && self.served.registry.is_none() {
                return Err(Status::failed_precondition(
                    "this runtime serves no registry",
                ));
            }
            let h = StubHandle::well_known(
                self.client.inner.clone(),
                Some(self.served_id),
                id,
                name,
                Vec::new(),
            );
            return Ok(AnyRemote::from_stub(h));
        }
        let key = format!("\0{interface}");
        let Some(generation) = self.registry_generation() else {
            return Err(Status::failed_precondition(format!(
                "this runtime serves no registry, so no object of `{interface}` is the default: \
                 name one with `oxrmi-object`"
            )));
        };
        if let Some((g, h)) = self
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && *g == generation
        {
            return Ok(h.clone());
        }
        let bindings = self
            .registry()
            .list()
            .await
            .map_err(|e| status::from_remote(&e))?;
        let candidates: Vec<String> = bindings
            .into_iter()
            .filter(|b| b.interface == interface)
            .map(|b| b.name)
            .collect();
        let name = match candidates.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(Status::failed_precondition(format!(
                    "no object of `{interface}` is bound in the registry; name one with \
                     `oxrmi-object`"
                )));
            }
            many => {
                return Err(Status::failed_precondition(format!(
                    "several objects of `{interface}` are bound ({}); pick one with metadata \
                     `oxrmi-name`",
                    many.join(", ")
                )));
            }
        };
        let h = self.lookup(&name).await?;
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (generation, h.clone()));
        Ok(h)
    }

    /// Runs the call on the served runtime's object in this task (see `Route::in_process`), as
    /// its runtime would for a peer: deadline, caller, panic capture.
    async fn call_in_process(
        &self,
        object: ObjId,
        route: &Route,
        codec: &Codec<'_>,
        msg: &DynamicMessage,
        client: GrpcClient,
    ) -> Result<crate::stub::RawReply, Status> {
        let method = &route.served.types.methods[route.method];
        let start = tokio::time::Instant::now();
        let deadline = crate::context::deadline(start, self.served.config.call_timeout);
        let millis = deadline
            .saturating_duration_since(start)
            .as_micros()
            .div_ceil(1000) as u64;
        let ctx = crate::marshal::MarshalCtx {
            rt: self.served.clone(),
            conn: None,
        };
        let mut args = crate::marshal::ArgsEncoder::new(ctx, method.args.len(), deadline, millis);
        push_args(&mut args, route, codec, msg)?;
        let caller = crate::Caller {
            runtime: self.client.inner.id,
            address: client
                .address
                .map_or_else(|| "gRPC bridge".into(), |a| a.to_string().into()),
            local_host: client.address.is_some_and(|a| a.ip().is_loopback()),
            uid: None,
            certificate_subject: client.subject.map(std::sync::Arc::from),
        };
        crate::dispatch::in_process(
            &self.served,
            object,
            &method.name,
            &args.into_bytes(),
            caller,
            deadline,
            millis,
        )
        .await
        .map_err(|e| status::from_remote(&e))
    }

    /// Serves one unary call.
    async fn call(&self, route: &Route, req: tonic::Request<Bytes>) -> Result<Bytes, Status> {
        let client = GrpcClient::of(&req);
        let h = self.select(route, req.metadata()).await?;
        let Some(stub) = h.stub() else {
            return Err(Status::internal("the bridge holds a local handle"));
        };
        let served = &route.served;
        let method = &served.types.methods[route.method];
        let msg = DynamicMessage::decode(route.request.clone(), req.into_inner()).map_err(|e| {
            Status::invalid_argument(format!("malformed {}: {e}", route.request.full_name()))
        })?;
        let codec = Codec {
            layout: Layout::new(&served.types),
            pool: &served.pool,
            package: &served.file.package,
            handles: &self.handles,
            bridge: &self.client.inner,
            served: &self.served,
        };
        let target = stub.target();
        let reply = if route.in_process && target.runtime == Some(self.served_id) {
            self.call_in_process(target.object, route, &codec, &msg, client)
                .await?
        } else {
            let mut args = stub
                .args(&method.name, method.args.len())
                .await
                .map_err(|e| status::from_remote(&e))?;
            push_args(&mut args, route, &codec, &msg)?;
            stub.call_raw(args, route.oneway)
                .await
                .map_err(|e| status::from_remote(&e))?
        };
        let decode = |shape: &Shape| -> Result<Option<prost_reflect::Value>, Status> {
            reply
                .ctx
                .enter(|| {
                    let mut de = rmp_serde::Deserializer::from_read_ref(reply.payload());
                    de.set_max_depth(MAX_DEPTH);
                    Read::field(&codec, shape).deserialize(&mut de)
                })
                .map_err(|e| Status::internal(format!("cannot translate the reply: {e}")))
        };
        match reply.status {
            ReplyStatus::Ok => {
                let mut out = DynamicMessage::new(route.reply.clone());
                if !route.oneway
                    && codec.layout.resolve(&method.ok) != &Shape::Unit
                    && let Some(v) = decode(&method.ok)?
                {
                    out.try_set_field_by_number(1, v)
                        .map_err(|e| Status::internal(e.to_string()))?;
                }
                Ok(out.encode_to_vec().into())
            }
            ReplyStatus::AppError => {
                let mut detail = DynamicMessage::new(route.app_error.clone());
                if let Some(v) = decode(&method.err)? {
                    detail
                        .try_set_field_by_number(1, v)
                        .map_err(|e| Status::internal(e.to_string()))?;
                }
                // A `RemoteError` the method returned keeps its kind's code.
                let remote = matches!(&method.err, Shape::Named(n) if n == "RemoteError")
                    .then(|| {
                        crate::marshal::decode_value::<RemoteError>(
                            &reply.ctx,
                            reply.payload(),
                            || "the error".into(),
                        )
                        .ok()
                    })
                    .flatten();
                let (code, message) = match remote {
                    Some(e) => (code_for(&e), e.to_string()),
                    None => (
                        Code::Unknown,
                        format!(
                            "`{}` returned an application error (in the details: {})",
                            method.name,
                            route.app_error.full_name()
                        ),
                    ),
                };
                Err(status::with_detail(
                    code,
                    message,
                    route.app_error.full_name(),
                    detail.encode_to_vec(),
                ))
            }
            ReplyStatus::Failed => {
                let e: RemoteError =
                    crate::marshal::decode_value(&reply.ctx, reply.payload(), || {
                        "the error".into()
                    })
                    .map_err(|e| status::from_remote(&e))?;
                let e = match e {
                    RemoteError::Timeout { .. } => RemoteError::Timeout {
                        millis: reply.millis,
                    },
                    e => e,
                };
                Err(status::from_remote(&e))
            }
        }
    }
}

/// Encodes the request's fields as the method's arguments.
fn push_args(
    args: &mut crate::marshal::ArgsEncoder,
    route: &Route,
    codec: &Codec<'_>,
    msg: &DynamicMessage,
) -> Result<(), Status> {
    let method = &route.served.types.methods[route.method];
    for (i, a) in method.args.iter().enumerate() {
        let fd = route
            .request
            .get_field(i as u32 + 1)
            .ok_or_else(|| Status::internal("a request field is missing"))?;
        args.push(&a.name, &Arg::field(codec, &a.shape, msg, &fd))
            .map_err(|e| match e {
                RemoteError::Marshalling { what, detail } => {
                    Status::invalid_argument(format!("{what}: {detail}"))
                }
                e => status::from_remote(&e),
            })?;
    }
    Ok(())
}

/// `grpc-timeout`: digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn grpc_timeout(md: &MetadataMap) -> Result<Option<Duration>, Status> {
    let Some(v) = md.get("grpc-timeout") else {
        return Ok(None);
    };
    let bad = || Status::invalid_argument("malformed grpc-timeout");
    let t = v.to_str().map_err(|_| bad())?;
    if t.len() < 2 || t.len() > 9 {
        return Err(bad());
    }
    let (digits, unit) = t.split_at(t.len() - 1);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    Ok(Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    }))
}

/// The bridge's HTTP/2 service: routes each request by its path.
#[derive(Clone)]
struct Router {
    bridge: Arc<Bridge>,
}

impl Service<http::Request<Body>> for Router {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let bridge = self.bridge.clone();
        Box::pin(async move { Ok(route(bridge, req).await) })
    }
}

async fn route(bridge: Arc<Bridge>, req: http::Request<Body>) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    if path.starts_with("/grpc.reflection.") || path.starts_with("/grpc.health.") {
        // Services bound a moment ago are listed and reported at once.
        bridge.refresh_catalog().await;
    }
    if path.starts_with("/grpc.reflection.v1.ServerReflection/") {
        let cat = bridge.catalog();
        return (cat.reflection_v1)(req).await;
    }
    if path.starts_with("/grpc.reflection.v1alpha.ServerReflection/") {
        let cat = bridge.catalog();
        return (cat.reflection_v1alpha)(req).await;
    }
    if path.starts_with("/grpc.health.v1.Health/") {
        return (bridge.health_service)(req).await;
    }
    let mut found = bridge.catalog().routes.get(&path).cloned();
    if found.is_none() {
        // Perhaps an object exported a moment ago.
        bridge.refresh_catalog().await;
        found = bridge.catalog().routes.get(&path).cloned();
    }
    let Some(route) = found else {
        tracing::debug!(%path, "gRPC: no such method");
        return Status::unimplemented(format!("no method `{path}` is served here")).into_http();
    };
    let mut grpc = tonic::server::Grpc::new(BytesCodec);
    grpc.unary(Unary { bridge, route }, req).await
}

/// Who sent a gRPC request: its address, and the subject of its verified client certificate
/// under mutual TLS. A call the bridge runs in process shows them to the object as its
/// [`Caller`](crate::Caller); one made through a stub (its values hold references) shows the
/// bridge's runtime, as any oxrmi peer's call does.
struct GrpcClient {
    address: Option<std::net::SocketAddr>,
    subject: Option<String>,
}

impl GrpcClient {
    fn of<T>(req: &tonic::Request<T>) -> GrpcClient {
        let subject = req.peer_certs().and_then(|certs| {
            certs
                .first()
                .and_then(|c| crate::transport::tls::subject_of(c))
        });
        GrpcClient {
            address: req.remote_addr(),
            subject,
        }
    }
}

/// One unary call, as tonic's server machinery takes it.
struct Unary {
    bridge: Arc<Bridge>,
    route: Arc<Route>,
}

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let bridge = self.bridge.clone();
        let route = self.route.clone();
        Box::pin(async move {
            let timeout = grpc_timeout(req.metadata())?;
            let work = bridge.call(&route, req);
            let r = match timeout {
                // tonic's server enforces `grpc-timeout` too, from a moment earlier, and reports
                // it as CANCELLED: ending the call a little before keeps the answer
                // DEADLINE_EXCEEDED.
                Some(t) => {
                    crate::with_timeout(t.saturating_sub(DEADLINE_MARGIN.min(t / 10)), work).await
                }
                None => work.await,
            };
            if let Err(s) = &r {
                tracing::debug!(code = ?s.code(), message = s.message(), "gRPC call failed");
            }
            r.map(tonic::Response::new)
        })
    }
}

/// Passes message bodies through as bytes: decoding is the bridge's, by descriptor.
#[derive(Clone, Copy)]
struct BytesCodec;

impl tonic::codec::Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use bytes::Buf;
        // An empty buffer is an empty message, which is valid.
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn with_a_shared_secret_the_bridge_listens_on_loopback_only() {
        let secret = b"0123456789abcdef0123".to_vec();
        let e = Runtime::builder()
            .shared_secret(secret.clone())
            .listen("grpc://0.0.0.0:0")
            .start()
            .await
            .expect_err("an open gRPC port would bypass the secret");
        assert!(e.to_string().contains("loopback"), "{e}");
        let rt = Runtime::builder()
            .shared_secret(secret)
            .listen("grpc://127.0.0.1:0")
            .start()
            .await
            .expect("loopback is allowed");
        assert!(rt.grpc_address().is_some());
        rt.shutdown();
    }

    #[test]
    fn grpc_timeout_units() {
        let mut md = MetadataMap::new();
        assert_eq!(grpc_timeout(&md).unwrap(), None);
        for (text, d) in [
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("1H", Duration::from_secs(3600)),
            ("100u", Duration::from_micros(100)),
        ] {
            md.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&md).unwrap(), Some(d), "{text}");
        }
        for text in ["5", "S", "5X", "1234567890S"] {
            md.insert("grpc-timeout", text.parse().unwrap());
            assert!(grpc_timeout(&md).is_err(), "{text}");
        }
    }
}
