//! The remote interface the benchmark calls, and the object that serves it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use oxrmi::{Remote, RemoteError, remote};
use serde_bytes::ByteBuf;

use super::resident;

/// The name the bench object is bound under in the bench server's registry.
pub(crate) const BENCH_NAME: &str = "bench";

/// Calls that do as little as possible, so what is measured is the runtime.
#[remote(name = "oxrmi.bench.Bench")]
pub(crate) trait Bench: Send + Sync {
    /// Does nothing: a call's fixed cost.
    async fn null(&self) -> Result<(), RemoteError>;
    /// Returns `data`. `ByteBuf` travels as MessagePack binary, not as an array of integers.
    async fn echo(&self, data: ByteBuf) -> Result<ByteBuf, RemoteError>;
    /// A new token, returned by reference: the caller holds a lease on it until it drops it.
    async fn make(&self) -> Result<Remote<dyn Token>, RemoteError>;
    /// `count` new tokens in one reply.
    async fn make_many(&self, count: u32) -> Result<Vec<Remote<dyn Token>>, RemoteError>;
    /// How many tokens made by `make` and `make_many` are alive in the server: those some
    /// client holds, and those whose release has not arrived yet.
    async fn live_tokens(&self) -> Result<u64, RemoteError>;
    /// Grows the server's pool of tokens (kept alive by the server itself, not counted by
    /// `live_tokens`) to at least `size`; returns its size.
    async fn fill_pool(&self, size: u32) -> Result<u64, RemoteError>;
    /// References to the pool's tokens `from..from + count` (fewer past its end): every caller
    /// gets references to the same objects.
    async fn pool(&self, from: u32, count: u32) -> Result<Vec<Remote<dyn Token>>, RemoteError>;
    /// The server process's resident memory in bytes, or why it cannot be read.
    async fn resident_bytes(&self) -> Result<Result<u64, String>, RemoteError>;
}

/// The object handed out by reference: as small as an object can be, so the memory figures
/// show what the runtime spends on it.
#[remote(name = "oxrmi.bench.Token")]
pub(crate) trait Token: Send + Sync {
    /// Does nothing.
    async fn ping(&self) -> Result<(), RemoteError>;
}

/// Tokens made by `make` and `make_many` and not dropped yet, in this process.
static LIVE_TOKENS: AtomicU64 = AtomicU64::new(0);

/// A token: one byte (whether [`LIVE_TOKENS`] counts it), in the `Arc` its handles share.
pub(crate) struct BenchToken {
    counted: bool,
}

impl BenchToken {
    /// A token counted in [`LIVE_TOKENS`] until it drops.
    fn counted() -> Self {
        LIVE_TOKENS.fetch_add(1, Ordering::Relaxed);
        BenchToken { counted: true }
    }
}

impl Drop for BenchToken {
    fn drop(&mut self) {
        if self.counted {
            LIVE_TOKENS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[remote]
impl Token for BenchToken {
    async fn ping(&self) -> Result<(), RemoteError> {
        Ok(())
    }
}

/// The bench object: stateless but for the token pool.
#[derive(Default)]
pub(crate) struct BenchService {
    /// Tokens the server keeps handles to, so several clients can hold the same objects.
    pool: Mutex<Vec<Remote<dyn Token>>>,
}

impl BenchService {
    fn locked_pool(&self) -> std::sync::MutexGuard<'_, Vec<Remote<dyn Token>>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[remote]
impl Bench for BenchService {
    async fn null(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    async fn echo(&self, data: ByteBuf) -> Result<ByteBuf, RemoteError> {
        Ok(data)
    }

    async fn make(&self) -> Result<Remote<dyn Token>, RemoteError> {
        Ok(Remote::new(BenchToken::counted()))
    }

    async fn make_many(&self, count: u32) -> Result<Vec<Remote<dyn Token>>, RemoteError> {
        Ok((0..count)
            .map(|_| Remote::new(BenchToken::counted()))
            .collect())
    }

    async fn live_tokens(&self) -> Result<u64, RemoteError> {
        Ok(LIVE_TOKENS.load(Ordering::Relaxed))
    }

    async fn fill_pool(&self, size: u32) -> Result<u64, RemoteError> {
        let mut pool = self.locked_pool();
        let size = size as usize;
        if let Some(more) = size.checked_sub(pool.len()) {
            pool.reserve_exact(more);
            pool.resize_with(size, || Remote::new(BenchToken { counted: false }));
        }
        Ok(pool.len() as u64)
    }

    async fn pool(&self, from: u32, count: u32) -> Result<Vec<Remote<dyn Token>>, RemoteError> {
        let pool = self.locked_pool();
        let from = (from as usize).min(pool.len());
        let to = from.saturating_add(count as usize).min(pool.len());
        Ok(pool[from..to].to_vec())
    }

    async fn resident_bytes(&self) -> Result<Result<u64, String>, RemoteError> {
        Ok(resident::bytes().map_err(|e| e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_counted_while_alive_and_the_pool_is_shared_not_counted() {
        let bench = BenchService::default();
        let before = bench.live_tokens().await.unwrap();
        let made = bench.make_many(3).await.unwrap();
        let one = bench.make().await.unwrap();
        assert_eq!(bench.live_tokens().await.unwrap(), before + 4);
        drop((made, one));
        assert_eq!(bench.live_tokens().await.unwrap(), before);

        assert_eq!(bench.fill_pool(4).await.unwrap(), 4);
        assert_eq!(bench.fill_pool(2).await.unwrap(), 4, "a pool never shrinks");
        let first = bench.pool(0, 3).await.unwrap();
        let again = bench.pool(2, 10).await.unwrap();
        assert_eq!(again.len(), 2, "fewer past the pool's end");
        assert_eq!(first[2], again[0], "the same objects for every caller");
        assert!(bench.pool(9, 1).await.unwrap().is_empty());
        assert_eq!(bench.live_tokens().await.unwrap(), before);
        assert!(bench.resident_bytes().await.unwrap().unwrap() > 0);
    }
}
