//! The `bench-raw-server` role: echoes every byte back on the bare transport, a thread per
//! connection, until the parent closes stdin. Prints `listening on <endpoint>` first. Over
//! `grpc` it serves the hand-written tonic service instead (see `grpc`).

use std::io;

use anyhow::Context;

use super::parent_watch;
use super::transport::RawStream;
use crate::cli::BenchRawServerArgs;
use crate::serve_registry::announce;

/// Read buffer of an echo: the largest message measured arrives in one read when it can.
const ECHO_BUFFER: usize = 64 * 1024;

/// Serves until stdin closes.
pub(crate) fn run(args: BenchRawServerArgs) -> anyhow::Result<()> {
    if args.transport == super::transport::TransportKind::Grpc {
        return serve_plain_tonic();
    }
    if args.transport.is_child_pipes() {
        // Started by the client: echo our stdin to our stdout until it ends.
        return super::transport::pipe::echo_stdio().context("echo over the pipes");
    }
    if let Some(us) = args.raw_spin_us {
        super::transport::shm::set_spin(std::time::Duration::from_micros(us));
    }
    let listener = args
        .transport
        .raw_bind()
        .context("cannot bind the raw echo server")?;
    announce(&[listener.endpoint()?])?;
    // Threads blocked in accept and read have no way to be told; the process just ends.
    parent_watch::on_stdin_closed(|| std::process::exit(0))?;
    loop {
        let stream = listener.accept()?;
        std::thread::Builder::new()
            .name("echo".into())
            .spawn(move || echo(stream))?;
    }
}

/// Writes back whatever arrives, as it arrives, until the peer closes or the link fails.
fn echo(mut stream: Box<dyn RawStream>) {
    let mut buf = vec![0u8; ECHO_BUFFER];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Over `grpc`: the hand-written tonic service, until stdin closes.
fn serve_plain_tonic() -> anyhow::Result<()> {
    let tokio = crate::tokio_runtime::build().context("cannot start the tokio runtime")?;
    tokio.block_on(async {
        let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
        parent_watch::on_stdin_closed(move || {
            let _ = closed_tx.send(());
        })?;
        let (addr, serving) = super::grpc::serve_plain(async move {
            let _ = closed.await;
        })
        .await?;
        announce(&[oxrmi::Endpoint::tcp(addr.ip().to_string(), addr.port())])?;
        serving.await
    })
}
