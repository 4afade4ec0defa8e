//! The client of the load test (`tests/suite/load.rs`):
//! `oxrmi-test-peer load ENDPOINT TASKS SECONDS SEED`.
//!
//! TASKS tasks share one runtime (so one connection to the server) and loop for SECONDS, each
//! iteration one of:
//! - two concurrent `echo` calls with tags unique to this process, task and call: every reply
//!   must carry its own call's tag and payload length, and no tag may come back twice;
//! - an account opened at the server's `loadbank` (a reference received), a deposit and its
//!   owner checked through it, then dropped (its lease released);
//! - a listener of our own passed to the server's `hub` (a reference sent): `call_back` must
//!   reach it, `echo_ref` must return our own object; then dropped.
//!
//! Then the runtime shuts down (releasing whatever it still holds) and a [`LoadReport`] is
//! printed as one JSON line.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxrmi::{Endpoint, ObjectUrl, Remote, RemoteError, Runtime};
use oxrmi_tests::{Counter, Hub, Listener, LoadBank, LoadReport, Recorder};
use tokio::time::Instant;

/// The deadline of every call: a reply that has not come by then is lost (counted as a timeout).
/// Generous, since the machine may be saturated by the test itself.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the tasks may take to end their last iteration after the run; a call is bounded by
/// [`CALL_TIMEOUT`], an iteration makes at most three in a row.
const GRACE: Duration = Duration::from_secs(70);

/// The counts every task adds to.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    wrong: AtomicU64,
    duplicated: AtomicU64,
    bad_values: AtomicU64,
    accounts_opened: AtomicU64,
    accounts_dropped: AtomicU64,
    listeners_passed: AtomicU64,
    listeners_dropped: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Counts {
    /// Counts a remote call and its error, if any.
    fn call<T>(&self, result: Result<T, RemoteError>) -> Option<T> {
        self.calls.fetch_add(1, Relaxed);
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.fetch_add(1, Relaxed);
                if matches!(e, RemoteError::Timeout { .. }) {
                    self.timeouts.fetch_add(1, Relaxed);
                }
                let message = e.to_string();
                let mut samples = self.samples.lock().unwrap();
                if samples.len() < 8 && !samples.contains(&message) {
                    samples.push(message);
                }
                None
            }
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// The server's objects, shared by every task.
struct Objects {
    counter: Remote<dyn Counter>,
    bank: Remote<dyn LoadBank>,
    hub: Remote<dyn Hub>,
}

/// A xorshift64 step: cheap, seeded pseudo-random choices, so a run can be repeated.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs the load and returns what happened.
pub(crate) async fn run(
    endpoint: Endpoint,
    tasks: u64,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<LoadReport> {
    let rt = Runtime::builder()
        .call_timeout(CALL_TIMEOUT)
        .start()
        .await?;
    let url = |name: &str| ObjectUrl::of(&endpoint, name).to_string();
    let objects = Arc::new(Objects {
        counter: rt.lookup_url(&url("counter")).await?,
        bank: rt.lookup_url(&url("loadbank")).await?,
        hub: rt.lookup_url(&url("hub")).await?,
    });
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let end = started + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|task| tokio::spawn(client(objects.clone(), counts.clone(), task, seed, end)))
        .collect();
    let mut stuck_tasks = 0;
    let grace_end = end + GRACE;
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(grace_end, handle).await {
            Ok(Ok(())) => {}
            // A panicking task is a failed check (its message went to stderr).
            Ok(Err(_)) => stuck_tasks += 1,
            Err(_) => {
                abort.abort();
                stuck_tasks += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(objects);
    // Releases what is still held (the three objects, and any release still batched).
    rt.shutdown();
    let c = &counts;
    Ok(LoadReport {
        tasks,
        seconds,
        calls: c.calls.load(Relaxed),
        errors: c.errors.load(Relaxed),
        timeouts: c.timeouts.load(Relaxed),
        wrong: c.wrong.load(Relaxed),
        duplicated: c.duplicated.load(Relaxed),
        bad_values: c.bad_values.load(Relaxed),
        accounts_opened: c.accounts_opened.load(Relaxed),
        accounts_dropped: c.accounts_dropped.load(Relaxed),
        listeners_passed: c.listeners_passed.load(Relaxed),
        listeners_dropped: c.listeners_dropped.load(Relaxed),
        stuck_tasks,
        error_samples: c.samples.lock().unwrap().clone(),
    })
}

/// One client: loops until `end`.
async fn client(objects: Arc<Objects>, counts: Arc<Counts>, task: u64, seed: u64, end: Instant) {
    let mut rng = (seed ^ (task + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    // Tags: 16 bits of seed (one per client process), 20 of task, 28 of sequence.
    let tag_base = ((seed & 0xFFFF) << 48) | ((task & 0xF_FFFF) << 28);
    let mut sequence = 0u64;
    let mut answered = HashSet::new();
    let mut iteration = 0u64;
    while Instant::now() < end {
        let r = next(&mut rng);
        match r % 8 {
            0..=3 => {
                let tags = [tag_base | sequence, tag_base | (sequence + 1)];
                sequence = (sequence + 2) & 0x0FFF_FFFF;
                let lens = [(r >> 8) as usize % 200, (r >> 16) as usize % 200];
                let payload = |i: usize| serde_bytes::ByteBuf::from(vec![tags[i] as u8; lens[i]]);
                let (a, b) = tokio::join!(
                    objects.counter.echo(tags[0], payload(0), 0),
                    objects.counter.echo(tags[1], payload(1), 0),
                );
                for (i, result) in [a, b].into_iter().enumerate() {
                    let Some((tag, len)) = counts.call(result) else {
                        continue;
                    };
                    if !answered.insert(tag) {
                        Counts::bump(&counts.duplicated);
                    } else if tag != tags[i] || len != lens[i] {
                        Counts::bump(&counts.wrong);
                    }
                }
                // The set only needs this task's recent tags (older ones cannot come back
                // once their calls returned); bound it for long runs.
                if answered.len() > 4096 {
                    answered.clear();
                }
            }
            4 | 5 => {
                let owner = format!("{seed}-{task}-{iteration}");
                let Some(account) = counts.call(objects.bank.open(owner.clone()).await) else {
                    continue;
                };
                Counts::bump(&counts.accounts_opened);
                let amount = (r >> 8) as i64 % 1000 + 1;
                if counts
                    .call(account.deposit(amount).await)
                    .is_some_and(|balance| balance != amount)
                {
                    Counts::bump(&counts.bad_values);
                }
                if counts
                    .call(account.owner().await)
                    .is_some_and(|o| o != owner)
                {
                    Counts::bump(&counts.bad_values);
                }
                drop(account);
                Counts::bump(&counts.accounts_dropped);
            }
            _ => {
                let listener = Remote::<dyn Listener>::new(Recorder::default());
                Counts::bump(&counts.listeners_passed);
                let line = format!("{seed}-{task}-{iteration}");
                if counts
                    .call(objects.hub.call_back(listener.clone(), line.clone()).await)
                    .is_some()
                {
                    // A local call: what the server's callback recorded.
                    match listener.seen().await {
                        Ok(lines) if lines == [line] => {}
                        _ => Counts::bump(&counts.bad_values),
                    }
                }
                if counts
                    .call(objects.hub.echo_ref(listener.clone()).await)
                    .is_some_and(|back| back != listener)
                {
                    Counts::bump(&counts.bad_values);
                }
                drop(listener);
                Counts::bump(&counts.listeners_dropped);
            }
        }
        iteration += 1;
    }
}
