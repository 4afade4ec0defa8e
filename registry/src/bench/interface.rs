//! The remote interface the benchmark calls, and the object that serves it.

use oxrmi::{RemoteError, remote};
use serde_bytes::ByteBuf;

/// The name the bench object is bound under in the bench server's registry.
pub(crate) const BENCH_NAME: &str = "bench";

/// Calls that do as little as possible, so what is measured is the runtime.
#[remote(name = "oxrmi.bench.Bench")]
pub(crate) trait Bench: Send + Sync {
    /// Does nothing: a call's fixed cost.
    async fn null(&self) -> Result<(), RemoteError>;
    /// Returns `data`. `ByteBuf` travels as MessagePack binary, not as an array of integers.
    async fn echo(&self, data: ByteBuf) -> Result<ByteBuf, RemoteError>;
}

/// The bench object: stateless.
pub(crate) struct BenchService;

#[remote]
impl Bench for BenchService {
    async fn null(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    async fn echo(&self, data: ByteBuf) -> Result<ByteBuf, RemoteError> {
        Ok(data)
    }
}
