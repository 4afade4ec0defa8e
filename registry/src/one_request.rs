//! One request to a remote runtime, as the command-line tool makes them (`list`, `ipcs`): a
//! single-threaded executor and a client runtime with short timeouts, shut down afterwards.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use oxrmi::{RemoteError, Runtime};

/// How long reaching the runtime may take: a live host answers at once; a firewall that drops
/// packets should not keep an interactive command waiting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the request itself may take once connected.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `request` with a fresh client runtime; `what` names it in the error.
pub(crate) fn run<T, F, Fut>(what: &str, request: F) -> anyhow::Result<T>
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = Result<T, RemoteError>>,
{
    // One request: a single thread does.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    tokio
        .block_on(async {
            let rt = Runtime::builder()
                .shared_secret_from_env()
                .tls_from_env()
                .connect_timeout(CONNECT_TIMEOUT)
                .call_timeout(CALL_TIMEOUT)
                .start()
                .await?;
            let answer = request(rt.clone()).await;
            rt.shutdown();
            answer
        })
        .with_context(|| what.to_string())
}
