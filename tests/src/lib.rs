//! Interfaces and objects shared by the cross-process tests and their child processes
//! (`oxrmi-test-peer`). Both sides compile this crate, so interface names match.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use oxrmi::{AnyRemote, Remote, RemoteError, Runtime, remote};
use serde::{Deserialize, Serialize};

/// An application error: it must reach the caller intact, as this type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MathError {
    /// Division by zero.
    #[error("division by zero")]
    DivideByZero,
    /// The call itself failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// A value whose encoding always fails, to provoke a marshalling error on the server.
#[derive(Debug, Deserialize)]
pub struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

/// The workhorse interface of the tests.
#[remote(name = "oxrmi.test.Counter")]
pub trait Counter: Send + Sync {
    /// Adds `n`, returns the new value.
    async fn add(&self, n: i64) -> Result<i64, RemoteError>;
    /// The current value.
    async fn get(&self) -> Result<i64, RemoteError>;
    /// The value divided by `by`, or an application error.
    async fn divide(&self, by: i64) -> Result<i64, MathError>;
    /// Records a line; the caller does not wait.
    #[oneway]
    async fn log(&self, line: String) -> Result<(), RemoteError>;
    /// Every line recorded so far.
    async fn logged(&self) -> Result<Vec<String>, RemoteError>;
    /// Returns `tag` and the length of `data` after sleeping `micros`.
    async fn echo(
        &self,
        tag: u64,
        data: serde_bytes::ByteBuf,
        micros: u64,
    ) -> Result<(u64, usize), RemoteError>;
    /// Sleeps; counts itself as cancelled if it is stopped before the end.
    async fn sleep(&self, millis: u64) -> Result<(), RemoteError>;
    /// How many `sleep` calls were stopped before their end.
    async fn cancelled(&self) -> Result<u64, RemoteError>;
    /// Panics with `message`.
    async fn panic(&self, message: String) -> Result<(), RemoteError>;
    /// Returns a value that cannot be encoded.
    async fn unencodable(&self) -> Result<Unencodable, RemoteError>;
    /// Unexports this object from its runtime.
    async fn retire(&self) -> Result<(), RemoteError>;
    /// Whether the registry at this server would see the caller as local.
    async fn caller_is_local(&self) -> Result<bool, RemoteError>;
}

/// The counter served by test peers.
#[derive(Default)]
pub struct TestCounter {
    value: AtomicI64,
    lines: Mutex<Vec<String>>,
    cancelled: AtomicU64,
    /// The runtime and the handle to unexport in `retire`.
    exported: OnceLock<(Runtime, AnyRemote)>,
}

impl TestCounter {
    /// Remembers the runtime and handle so `retire` can unexport the object.
    pub fn set_exported(&self, rt: Runtime, handle: AnyRemote) {
        let _ = self.exported.set((rt, handle));
    }
}

struct CountIfStopped<'a> {
    counter: &'a AtomicU64,
    finished: bool,
}

impl Drop for CountIfStopped<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[remote]
impl Counter for TestCounter {
    async fn add(&self, n: i64) -> Result<i64, RemoteError> {
        Ok(self.value.fetch_add(n, Ordering::SeqCst) + n)
    }

    async fn get(&self) -> Result<i64, RemoteError> {
        Ok(self.value.load(Ordering::SeqCst))
    }

    async fn divide(&self, by: i64) -> Result<i64, MathError> {
        if by == 0 {
            return Err(MathError::DivideByZero);
        }
        Ok(self.value.load(Ordering::SeqCst) / by)
    }

    async fn log(&self, line: String) -> Result<(), RemoteError> {
        self.lines.lock().unwrap().push(line);
        Ok(())
    }

    async fn logged(&self) -> Result<Vec<String>, RemoteError> {
        Ok(self.lines.lock().unwrap().clone())
    }

    async fn echo(
        &self,
        tag: u64,
        data: serde_bytes::ByteBuf,
        micros: u64,
    ) -> Result<(u64, usize), RemoteError> {
        if micros > 0 {
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        Ok((tag, data.len()))
    }

    async fn sleep(&self, millis: u64) -> Result<(), RemoteError> {
        let mut guard = CountIfStopped {
            counter: &self.cancelled,
            finished: false,
        };
        tokio::time::sleep(Duration::from_millis(millis)).await;
        guard.finished = true;
        Ok(())
    }

    async fn cancelled(&self) -> Result<u64, RemoteError> {
        Ok(self.cancelled.load(Ordering::SeqCst))
    }

    async fn panic(&self, message: String) -> Result<(), RemoteError> {
        panic!("{message}");
    }

    async fn unencodable(&self) -> Result<Unencodable, RemoteError> {
        Ok(Unencodable)
    }

    async fn retire(&self) -> Result<(), RemoteError> {
        if let Some((rt, handle)) = self.exported.get() {
            rt.unexport(handle.clone());
        }
        Ok(())
    }

    async fn caller_is_local(&self) -> Result<bool, RemoteError> {
        Ok(oxrmi::Caller::current().is_some_and(|c| c.is_local_host()))
    }
}

/// Version 1 of an interface, as an old server has it.
#[remote(name = "oxrmi.test.Versioned")]
pub trait VersionOne: Send + Sync {
    /// Doubles `x`.
    async fn double(&self, x: i64) -> Result<i64, RemoteError>;
}

/// Version 2 of the same interface, as a newer client has it: `double` takes another type and
/// `triple` is new.
#[remote(name = "oxrmi.test.Versioned")]
pub trait VersionTwo: Send + Sync {
    /// Doubles `x` (now a string).
    async fn double(&self, x: String) -> Result<i64, RemoteError>;
    /// Triples `x`.
    async fn triple(&self, x: i64) -> Result<i64, RemoteError>;
}

/// The version-1 object.
pub struct Doubler;

#[remote]
impl VersionOne for Doubler {
    async fn double(&self, x: i64) -> Result<i64, RemoteError> {
        Ok(2 * x)
    }
}

/// An unrelated interface, for wrong-interface lookups.
#[remote(name = "oxrmi.test.Other")]
pub trait Other: Send + Sync {
    /// Answers.
    async fn ping(&self) -> Result<(), RemoteError>;
}

/// An object a client passes to a server: a callback.
#[remote(name = "oxrmi.test.Listener")]
pub trait Listener: Send + Sync {
    /// Records a line.
    async fn notify(&self, line: String) -> Result<(), RemoteError>;
    /// Every line recorded.
    async fn seen(&self) -> Result<Vec<String>, RemoteError>;
}

/// A listener that records what it is told.
#[derive(Default)]
pub struct Recorder {
    lines: Mutex<Vec<String>>,
}

#[remote]
impl Listener for Recorder {
    async fn notify(&self, line: String) -> Result<(), RemoteError> {
        self.lines.lock().unwrap().push(line);
        Ok(())
    }

    async fn seen(&self) -> Result<Vec<String>, RemoteError> {
        Ok(self.lines.lock().unwrap().clone())
    }
}

/// A server that takes references and calls back through them.
#[remote(name = "oxrmi.test.Hub")]
pub trait Hub: Send + Sync {
    /// Calls `listener.notify(line)` from the server's side, before returning.
    async fn call_back(
        &self,
        listener: Remote<dyn Listener>,
        line: String,
    ) -> Result<(), RemoteError>;
    /// Keeps the listeners (references nested in an `Option<Vec<..>>`); returns how many it holds.
    async fn keep(
        &self,
        listeners: Option<Vec<Remote<dyn Listener>>>,
    ) -> Result<usize, RemoteError>;
    /// Tells every kept listener `line`; returns how many it reached.
    async fn broadcast(&self, line: String) -> Result<usize, RemoteError>;
    /// The kept listeners (references in a result).
    async fn listeners(&self) -> Result<Vec<Remote<dyn Listener>>, RemoteError>;
    /// Returns the reference it was given.
    async fn echo_ref(
        &self,
        listener: Remote<dyn Listener>,
    ) -> Result<Remote<dyn Listener>, RemoteError>;
}

/// The hub served by test peers.
#[derive(Default)]
pub struct TestHub {
    kept: Mutex<Vec<Remote<dyn Listener>>>,
}

#[remote]
impl Hub for TestHub {
    async fn call_back(
        &self,
        listener: Remote<dyn Listener>,
        line: String,
    ) -> Result<(), RemoteError> {
        listener.notify(line).await
    }

    async fn keep(
        &self,
        listeners: Option<Vec<Remote<dyn Listener>>>,
    ) -> Result<usize, RemoteError> {
        let mut kept = self.kept.lock().unwrap();
        kept.extend(listeners.unwrap_or_default());
        Ok(kept.len())
    }

    async fn broadcast(&self, line: String) -> Result<usize, RemoteError> {
        let kept = self.kept.lock().unwrap().clone();
        let mut reached = 0;
        for l in kept {
            if l.notify(line.clone()).await.is_ok() {
                reached += 1;
            }
        }
        Ok(reached)
    }

    async fn listeners(&self) -> Result<Vec<Remote<dyn Listener>>, RemoteError> {
        Ok(self.kept.lock().unwrap().clone())
    }

    async fn echo_ref(
        &self,
        listener: Remote<dyn Listener>,
    ) -> Result<Remote<dyn Listener>, RemoteError> {
        Ok(listener)
    }
}

/// An account, returned by reference from a [`Bank`].
#[remote(name = "oxrmi.test.Account")]
pub trait Account: Send + Sync {
    /// Adds `amount`; returns the balance.
    async fn deposit(&self, amount: i64) -> Result<i64, RemoteError>;
    /// The owner's name.
    async fn owner(&self) -> Result<String, RemoteError>;
}

/// A factory of accounts that reports their lifetimes as the server sees them.
#[remote(name = "oxrmi.test.Bank")]
pub trait Bank: Send + Sync {
    /// A new account, by reference; the bank keeps no handle to it.
    async fn open(&self, owner: String) -> Result<Remote<dyn Account>, RemoteError>;
    /// Accounts whose `Drop` has not run.
    async fn live(&self) -> Result<u64, RemoteError>;
    /// Owners of the accounts whose `Drop` ran, in order.
    async fn dropped(&self) -> Result<Vec<String>, RemoteError>;
    /// Keeps `account` (of any bank); returns its balance.
    async fn adopt(&self, account: Remote<dyn Account>) -> Result<i64, RemoteError>;
    /// The balance of the adopted account.
    async fn adopted_balance(&self) -> Result<i64, RemoteError>;
    /// Drops the adopted account.
    async fn forget(&self) -> Result<(), RemoteError>;
    /// Unexports every account still exported: their handles become stale.
    async fn close_all(&self) -> Result<(), RemoteError>;
}

/// What a [`TestBank`] and its accounts share.
#[derive(Default)]
struct Ledger {
    live: AtomicU64,
    dropped: Mutex<Vec<String>>,
    opened: Mutex<Vec<std::sync::Weak<TestAccount>>>,
}

/// An account whose drop the ledger records.
pub struct TestAccount {
    owner: String,
    balance: AtomicI64,
    ledger: std::sync::Arc<Ledger>,
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        self.ledger.live.fetch_sub(1, Ordering::SeqCst);
        self.ledger.dropped.lock().unwrap().push(self.owner.clone());
    }
}

#[remote]
impl Account for TestAccount {
    async fn deposit(&self, amount: i64) -> Result<i64, RemoteError> {
        Ok(self.balance.fetch_add(amount, Ordering::SeqCst) + amount)
    }

    async fn owner(&self) -> Result<String, RemoteError> {
        Ok(self.owner.clone())
    }
}

/// The bank served by test peers.
#[derive(Default)]
pub struct TestBank {
    ledger: std::sync::Arc<Ledger>,
    adopted: Mutex<Option<Remote<dyn Account>>>,
    runtime: OnceLock<Runtime>,
}

#[remote]
impl Bank for TestBank {
    async fn open(&self, owner: String) -> Result<Remote<dyn Account>, RemoteError> {
        let account = std::sync::Arc::new(TestAccount {
            owner,
            balance: AtomicI64::new(0),
            ledger: self.ledger.clone(),
        });
        self.ledger.live.fetch_add(1, Ordering::SeqCst);
        self.ledger
            .opened
            .lock()
            .unwrap()
            .push(std::sync::Arc::downgrade(&account));
        Ok(Remote::from_arc(account))
    }

    async fn live(&self) -> Result<u64, RemoteError> {
        Ok(self.ledger.live.load(Ordering::SeqCst))
    }

    async fn dropped(&self) -> Result<Vec<String>, RemoteError> {
        Ok(self.ledger.dropped.lock().unwrap().clone())
    }

    async fn adopt(&self, account: Remote<dyn Account>) -> Result<i64, RemoteError> {
        let balance = account.deposit(0).await?;
        *self.adopted.lock().unwrap() = Some(account);
        Ok(balance)
    }

    async fn adopted_balance(&self) -> Result<i64, RemoteError> {
        let account = self.adopted.lock().unwrap().clone();
        match account {
            Some(a) => a.deposit(0).await,
            None => Err(RemoteError::NotBound {
                name: "adopted".into(),
            }),
        }
    }

    async fn forget(&self) -> Result<(), RemoteError> {
        self.adopted.lock().unwrap().take();
        Ok(())
    }

    async fn close_all(&self) -> Result<(), RemoteError> {
        let Some(rt) = self.runtime.get() else {
            return Ok(());
        };
        let opened: Vec<_> = self.ledger.opened.lock().unwrap().clone();
        for account in opened.iter().filter_map(std::sync::Weak::upgrade) {
            rt.unexport(Remote::<dyn Account>::from_arc(account));
        }
        Ok(())
    }
}

/// Starts a runtime listening on `listen` with a registry holding `counter` (a [`TestCounter`]),
/// `versioned` (a [`Doubler`]), `hub` (a [`TestHub`]) and `bank` (a [`TestBank`]); `lease` sets
/// the lease it grants.
pub async fn start_server(listen: &str, lease: Option<Duration>) -> Result<Runtime, RemoteError> {
    let mut builder = Runtime::builder().listen(listen);
    if let Some(lease) = lease {
        builder = builder.lease(lease);
    }
    start_server_with(builder).await
}

/// [`start_server`] with a builder set up by the caller (a registry is added).
pub async fn start_server_with(builder: oxrmi::RuntimeBuilder) -> Result<Runtime, RemoteError> {
    let rt = builder.registry().start().await?;
    let bank = TestBank::default();
    let _ = bank.runtime.set(rt.clone());
    rt.bind("bank", Remote::<dyn Bank>::new(bank)).await?;
    let counter = std::sync::Arc::new(TestCounter::default());
    let handle: Remote<dyn Counter> = Remote::from_arc(counter.clone());
    counter.set_exported(rt.clone(), handle.clone().into_any());
    rt.bind("counter", handle).await?;
    rt.bind("versioned", Remote::<dyn VersionOne>::new(Doubler))
        .await?;
    rt.bind("hub", Remote::<dyn Hub>::new(TestHub::default()))
        .await?;
    Ok(rt)
}

/// A bank for the load test: like [`Bank`], but it keeps no record per account (no names, no
/// weak handles), so a long run does not grow the server by design and its memory can be
/// compared before and after.
#[remote(name = "oxrmi.test.LoadBank")]
pub trait LoadBank: Send + Sync {
    /// A new account owned by `owner`, by reference; the bank keeps no handle to it.
    async fn open(&self, owner: String) -> Result<Remote<dyn Account>, RemoteError>;
    /// Accounts whose `Drop` has not run.
    async fn live(&self) -> Result<u64, RemoteError>;
    /// How many accounts were opened and how many of them were dropped.
    async fn counts(&self) -> Result<(u64, u64), RemoteError>;
}

/// What a [`TestLoadBank`] and its accounts share.
#[derive(Default)]
struct LoadLedger {
    opened: AtomicU64,
    live: AtomicU64,
    dropped: AtomicU64,
}

/// An account of a [`TestLoadBank`]: counts its own drop.
struct LoadAccount {
    owner: String,
    balance: AtomicI64,
    ledger: std::sync::Arc<LoadLedger>,
}

impl Drop for LoadAccount {
    fn drop(&mut self) {
        self.ledger.live.fetch_sub(1, Ordering::SeqCst);
        self.ledger.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[remote]
impl Account for LoadAccount {
    async fn deposit(&self, amount: i64) -> Result<i64, RemoteError> {
        Ok(self.balance.fetch_add(amount, Ordering::SeqCst) + amount)
    }

    async fn owner(&self) -> Result<String, RemoteError> {
        Ok(self.owner.clone())
    }
}

/// The load bank served by `oxrmi-test-peer serve-load`.
#[derive(Default)]
pub struct TestLoadBank {
    ledger: std::sync::Arc<LoadLedger>,
}

#[remote]
impl LoadBank for TestLoadBank {
    async fn open(&self, owner: String) -> Result<Remote<dyn Account>, RemoteError> {
        self.ledger.opened.fetch_add(1, Ordering::SeqCst);
        self.ledger.live.fetch_add(1, Ordering::SeqCst);
        Ok(Remote::<dyn Account>::new(LoadAccount {
            owner,
            balance: AtomicI64::new(0),
            ledger: self.ledger.clone(),
        }))
    }

    async fn live(&self) -> Result<u64, RemoteError> {
        Ok(self.ledger.live.load(Ordering::SeqCst))
    }

    async fn counts(&self) -> Result<(u64, u64), RemoteError> {
        Ok((
            self.ledger.opened.load(Ordering::SeqCst),
            self.ledger.dropped.load(Ordering::SeqCst),
        ))
    }
}

/// What one `oxrmi-test-peer load` process did, printed as one JSON line at its end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// Concurrent tasks it ran.
    pub tasks: u64,
    /// Seconds the tasks kept starting new work.
    pub seconds: f64,
    /// Remote calls made (echo, open, deposit, owner, call_back, echo_ref).
    pub calls: u64,
    /// Calls that ended with an error (a timeout among them: a lost reply).
    pub errors: u64,
    /// Of those, timeouts: calls whose reply never came within the call deadline.
    pub timeouts: u64,
    /// Echo replies carrying another call's tag, or a wrong length.
    pub wrong: u64,
    /// Echo replies whose tag had already been answered.
    pub duplicated: u64,
    /// Replies of the reference round-trips that were wrong (another account's owner or balance,
    /// a callback not delivered, a returned reference not our own object).
    pub bad_values: u64,
    /// Accounts opened (references received by the client).
    pub accounts_opened: u64,
    /// Accounts dropped by the client.
    pub accounts_dropped: u64,
    /// Listeners of the client made and passed to the server (references sent, twice each:
    /// `call_back` and `echo_ref`).
    pub listeners_passed: u64,
    /// Listeners dropped by the client after the round-trip.
    pub listeners_dropped: u64,
    /// Tasks that had not finished within the grace period after the run (aborted).
    pub stuck_tasks: u64,
    /// A few distinct error messages, for the report.
    pub error_samples: Vec<String>,
}

/// Arguments with declared limits, for the decoding-limit tests.
#[remote(name = "oxrmi.test.Store")]
pub trait Store: Send + Sync {
    /// Stores `values` under `key`; returns how many values the store holds under it.
    async fn put(
        &self,
        #[limit(len = 16)] key: String,
        #[limit(len = 100, size = 4096)] values: Vec<String>,
    ) -> Result<usize, RemoteError>;
    /// How many `values` there are: no declared limit, only the runtime's.
    async fn count(&self, values: Vec<String>) -> Result<usize, RemoteError>;
    /// `n` empty strings: a reply that decodes into far more than its size on the wire.
    async fn blanks(&self, n: u64) -> Result<Vec<String>, RemoteError>;
}

/// A [`Store`] in memory.
#[derive(Default)]
pub struct TestStore {
    values: Mutex<std::collections::HashMap<String, Vec<String>>>,
}

#[remote]
impl Store for TestStore {
    async fn put(&self, key: String, values: Vec<String>) -> Result<usize, RemoteError> {
        let mut map = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.entry(key).or_default();
        held.extend(values);
        Ok(held.len())
    }

    async fn count(&self, values: Vec<String>) -> Result<usize, RemoteError> {
        Ok(values.len())
    }

    async fn blanks(&self, n: u64) -> Result<Vec<String>, RemoteError> {
        Ok(vec![String::new(); n.min(10_000_000) as usize])
    }
}

/// Tells a caller who it is, as the server sees it (the TLS tests).
#[remote(name = "oxrmi.test.WhoAmI")]
pub trait WhoAmI: Send + Sync {
    /// The caller's [`oxrmi::Identity`]: `cert:SUBJECT`, `uid:N` or `unverified`.
    async fn who(&self) -> Result<String, RemoteError>;
}

/// The [`WhoAmI`] served by test peers.
pub struct Mirror;

#[remote]
impl WhoAmI for Mirror {
    async fn who(&self) -> Result<String, RemoteError> {
        let caller = oxrmi::Caller::current().ok_or_else(|| RemoteError::AccessDenied {
            reason: "called directly, not remotely".into(),
        })?;
        Ok(match caller.identity() {
            oxrmi::Identity::Certificate { subject } => format!("cert:{subject}"),
            oxrmi::Identity::Uid(uid) => format!("uid:{uid}"),
            _ => "unverified".to_string(),
        })
    }
}

/// Handlers that take their time, block their thread, or answer with much data: for the
/// slow-peer tests (`suite/slow_peers.rs`), served by `oxrmi-test-peer serve-slow`.
#[remote(name = "oxrmi.test.Slow")]
pub trait Slow: Send + Sync {
    /// Returns at once.
    async fn ping(&self) -> Result<(), RemoteError>;
    /// Sleeps `millis` without holding a thread (as a handler should wait).
    async fn nap(&self, millis: u64) -> Result<(), RemoteError>;
    /// Blocks its thread for `millis` inside `tokio::task::block_in_place` (one way to block:
    /// the worker's queue moves to another thread first; multi-threaded runtimes only).
    async fn block_in_place(&self, millis: u64) -> Result<(), RemoteError>;
    /// Blocks a thread for `millis` inside `tokio::task::spawn_blocking` (the way to block).
    async fn block_aside(&self, millis: u64) -> Result<(), RemoteError>;
    /// `len` bytes: a large reply for a small call.
    async fn bytes(&self, len: u64) -> Result<serde_bytes::ByteBuf, RemoteError>;
    /// One-way: counts itself started, sleeps `millis`, counts itself finished.
    #[oneway]
    async fn tick(&self, millis: u64) -> Result<(), RemoteError>;
    /// How many `tick`s started, how many finished, and the most that ran at once.
    async fn ticks(&self) -> Result<(u64, u64, u64), RemoteError>;
}

/// The [`Slow`] object served by `serve-slow`.
#[derive(Default)]
pub struct TestSlow {
    started: AtomicU64,
    finished: AtomicU64,
    most: AtomicU64,
}

#[remote]
impl Slow for TestSlow {
    async fn ping(&self) -> Result<(), RemoteError> {
        Ok(())
    }

    async fn nap(&self, millis: u64) -> Result<(), RemoteError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(())
    }

    async fn block_in_place(&self, millis: u64) -> Result<(), RemoteError> {
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(millis)));
        Ok(())
    }

    async fn block_aside(&self, millis: u64) -> Result<(), RemoteError> {
        tokio::task::spawn_blocking(move || std::thread::sleep(Duration::from_millis(millis)))
            .await
            .map_err(|e| RemoteError::Panic {
                message: e.to_string(),
            })
    }

    async fn bytes(&self, len: u64) -> Result<serde_bytes::ByteBuf, RemoteError> {
        Ok(serde_bytes::ByteBuf::from(vec![7u8; len as usize]))
    }

    async fn tick(&self, millis: u64) -> Result<(), RemoteError> {
        let started = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let running = started - self.finished.load(Ordering::SeqCst);
        self.most.fetch_max(running, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn ticks(&self) -> Result<(u64, u64, u64), RemoteError> {
        Ok((
            self.started.load(Ordering::SeqCst),
            self.finished.load(Ordering::SeqCst),
            self.most.load(Ordering::SeqCst),
        ))
    }
}
