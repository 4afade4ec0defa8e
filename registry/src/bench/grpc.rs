//! `--transport grpc`: the gRPC bridge against a hand-written tonic service with the same
//! messages, the bridge's baseline in place of a raw transport.
//!
//! The bench server serves the bench object through its bridge (`grpc://`); the "raw" server is
//! plain tonic: prost messages and a unary service written by hand, at the same paths
//! (`/oxrmi.bench.bench.Bench/Null`, `/…/Echo`), so one client loop measures both: the same
//! tonic channel, codec and messages, only the address differs.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, ensure};
use bytes::Bytes;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use super::oxrmi_calls::{in_flight, time_calls};
use super::plan::{Count, Window};
use super::raw_calls::pattern;
use super::stats::Samples;

/// The path of the null call, the same on the bridge (its rule: package `oxrmi.bench.bench`,
/// service `Bench`) and on the plain service.
pub(crate) const NULL_PATH: &str = "/oxrmi.bench.bench.Bench/Null";
/// The path of the echo.
pub(crate) const ECHO_PATH: &str = "/oxrmi.bench.bench.Bench/Echo";

/// An empty message: `NullRequest`, `NullReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Empty {}

/// `EchoRequest { bytes data = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) data: Bytes,
}

/// `EchoReply { bytes result = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoReply {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) result: Bytes,
}

/// The hand-written service: routes the two paths, decodes and encodes with prost.
#[derive(Clone)]
struct Plain;

struct NullHandler;

impl tonic::server::UnaryService<Empty> for NullHandler {
    type Response = Empty;
    type Future = BoxFuture<tonic::Response<Empty>, tonic::Status>;

    fn call(&mut self, _req: tonic::Request<Empty>) -> Self::Future {
        Box::pin(async { Ok(tonic::Response::new(Empty {})) })
    }
}

struct EchoHandler;

impl tonic::server::UnaryService<EchoRequest> for EchoHandler {
    type Response = EchoReply;
    type Future = BoxFuture<tonic::Response<EchoReply>, tonic::Status>;

    fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
        let result = req.into_inner().data;
        Box::pin(async move { Ok(tonic::Response::new(EchoReply { result })) })
    }
}

impl Service<http::Request<Body>> for Plain {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            Ok(match req.uri().path() {
                NULL_PATH => {
                    let mut g = tonic::server::Grpc::new(ProstCodec::<Empty, Empty>::default());
                    g.unary(NullHandler, req).await
                }
                ECHO_PATH => {
                    let mut g =
                        tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
                    g.unary(EchoHandler, req).await
                }
                _ => tonic::Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// Serves the plain service on 127.0.0.1 until `stop` resolves; returns once bound, with the
/// address and the serving future.
pub(crate) async fn serve_plain(
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = anyhow::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the plain tonic server")?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let serving = async move {
        tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(Plain, incoming, stop)
            .await
            .context("the plain tonic server failed")
    };
    Ok((addr, serving))
}

/// A channel to a gRPC server at `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to the gRPC server at {addr}"))
}

async fn unary<Req, Rep>(channel: &Channel, path: &'static str, req: Req) -> anyhow::Result<Rep>
where
    Req: prost::Message + Send + Sync + 'static,
    Rep: prost::Message + Default + Send + Sync + 'static,
{
    let mut g = tonic::client::Grpc::new(channel.clone());
    g.ready().await.context("the channel is not ready")?;
    let rep = g
        .unary(
            tonic::Request::new(req),
            http::uri::PathAndQuery::from_static(path),
            ProstCodec::<Req, Rep>::default(),
        )
        .await
        .with_context(|| format!("{path} failed"))?;
    Ok(rep.into_inner())
}

/// Sequential null calls.
pub(crate) async fn null(channel: Channel, count: Count) -> anyhow::Result<Samples> {
    Ok(time_calls!(
        count,
        unary::<Empty, Empty>(&channel, NULL_PATH, Empty {}).await?
    ))
}

/// Sequential echoes of `size` bytes.
pub(crate) async fn echo(channel: Channel, size: usize, count: Count) -> anyhow::Result<Samples> {
    let data = Bytes::from(pattern(size));
    let back: EchoReply = unary(&channel, ECHO_PATH, EchoRequest { data: data.clone() }).await?;
    ensure!(back.result == data, "the server echoed other bytes");
    Ok(time_calls!(count, {
        let back: EchoReply =
            unary(&channel, ECHO_PATH, EchoRequest { data: data.clone() }).await?;
        ensure!(
            back.result.len() == size,
            "the server echoed {} bytes",
            back.result.len()
        );
    }))
}

/// Null calls from `callers` tasks on one channel (one HTTP/2 connection).
pub(crate) async fn null_in_flight(
    channel: Channel,
    callers: usize,
    window: Window,
) -> anyhow::Result<(f64, u64)> {
    in_flight(callers, window, move || {
        let channel = channel.clone();
        async move {
            unary::<Empty, Empty>(&channel, NULL_PATH, Empty {}).await?;
            Ok(())
        }
    })
    .await
}
