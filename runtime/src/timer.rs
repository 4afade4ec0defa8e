//! Deadlines kept outside tokio's timer wheel: one thread per process sleeps until the
//! earliest of them and wakes the futures whose time has come.
//!
//! Why not `tokio::time`: while any tokio timer is armed, every park of the runtime becomes
//! `epoll_wait` with a timeout, and the kernel arms (and on wake-up cancels) a high-resolution
//! timer for each one. Under a hypervisor that is a timer reprogramming per wait: measured on
//! the project's 2-vCPU machines, one far-off armed timer on each side of a bare tokio
//! ping-pong made its round trip 2.8 µs (20%) slower. Every call has a deadline and every
//! runtime a housekeeping period, so with tokio's timers a runtime would always pay it; with
//! these, a runtime waiting for a reply waits in `epoll_wait` without a timeout.
//!
//! The thread does not wake for each new deadline: it sleeps at most [`IDLE_TICK`] at a time,
//! so a deadline later than its next wake-up (a call's default deadline is 30 s) is only put
//! in the table, and the thread finds it on a later round. Only a deadline earlier than that
//! wakes it. A deadline that has passed when first polled completes without touching the
//! table, and [`timeout_at`] polls its future before it registers anything, so a call that
//! completes at once costs nothing here.
//!
//! **Invariant:** a registered timer is removed from the table when it fires or when its
//! future is dropped, whichever comes first; the table never holds more than the timers alive.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The longest the timer thread sleeps at a time.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The deadline passed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// What a registered timer shares with the timer thread.
#[derive(Default)]
struct Shared {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }
}

/// The process's timers: the table and the thread's next wake-up.
struct Timers {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    /// By deadline, then registration order.
    table: BTreeMap<(Instant, u64), Arc<Shared>>,
    next_id: u64,
    /// When the thread wakes next on its own.
    armed: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's timers, their thread started on first use.
fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers: &'static Timers = Box::leak(Box::new(Timers {
            state: Mutex::new(State {
                table: BTreeMap::new(),
                next_id: 0,
                armed: Instant::now(),
            }),
            wake: Condvar::new(),
        }));
        let started = std::thread::Builder::new()
            .name("oxrmi-timer".into())
            .spawn(move || timers.run());
        if let Err(e) = started {
            // Without the thread no deadline would ever fire: nothing can go on safely.
            panic!("oxrmi cannot start its timer thread: {e}");
        }
        timers
    })
}

impl Timers {
    fn run(&self) {
        let mut due = Vec::new();
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            while let Some(entry) = st.table.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(st);
                for shared in due.drain(..) {
                    shared.fire();
                }
                st = lock(&self.state);
                continue;
            }
            let next = st
                .table
                .first_key_value()
                .map_or(now + IDLE_TICK, |(k, _)| k.0)
                .min(now + IDLE_TICK);
            st.armed = next;
            st = self
                .wake
                .wait_timeout(st, next.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn register(&self, at: Instant, shared: Arc<Shared>) -> (Instant, u64) {
        let mut st = lock(&self.state);
        let key = (at, st.next_id);
        st.next_id += 1;
        st.table.insert(key, shared);
        if at < st.armed {
            st.armed = at;
            drop(st);
            self.wake.notify_one();
        }
        key
    }

    fn cancel(&self, key: (Instant, u64)) {
        lock(&self.state).table.remove(&key);
    }
}

/// A future that completes at `at` (at once if `at` has passed).
pub(crate) fn sleep_until(at: Instant) -> Sleep {
    Sleep {
        at,
        registered: None,
    }
}

/// Completes at its deadline; see [`sleep_until`].
pub(crate) struct Sleep {
    at: Instant,
    registered: Option<((Instant, u64), Arc<Shared>)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = match &mut this.registered {
            Some((_, shared)) => &*shared,
            None => {
                if Instant::now() >= this.at {
                    return Poll::Ready(());
                }
                let shared = Arc::new(Shared::default());
                let key = timers().register(this.at, shared.clone());
                &this.registered.insert((key, shared)).1
            }
        };
        if shared.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        {
            let mut w = lock(&shared.waker);
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        // Fired between the first look and the waker being stored: the thread may have found
        // no waker to wake.
        if shared.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((key, shared)) = self.registered.take()
            && !shared.fired.load(Ordering::Acquire)
        {
            timers().cancel(key);
        }
    }
}

/// Runs `fut` until `at`: its output, or [`Elapsed`] if `at` came first. The future is polled
/// before the deadline is looked at, so one that is ready at once never registers a timer.
pub(crate) fn timeout_at<F: Future>(at: impl Into<Instant>, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        sleep: sleep_until(at.into()),
    }
}

pin_project_lite::pin_project! {
    /// A future and its deadline; see [`timeout_at`]. A type of its own, not an `async fn`: an
    /// `async fn` would keep the future it is given both as its argument and as its pinned
    /// local, twice the size in every future that awaits it.
    pub(crate) struct Timeout<F> {
        #[pin]
        fut: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_ends_at_its_deadline_not_before() {
        let start = Instant::now();
        sleep_until(start + Duration::from_millis(30)).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn a_timeout_lets_a_quick_future_finish_and_stops_a_slow_one() {
        let at = Instant::now() + Duration::from_millis(50);
        assert_eq!(timeout_at(at, async { 7 }).await, Ok(7));
        let start = Instant::now();
        let slow = timeout_at(
            start + Duration::from_millis(40),
            std::future::pending::<()>(),
        );
        assert_eq!(slow.await, Err(Elapsed));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(40) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_timers_leave_the_table_and_many_fire_in_order() {
        let start = Instant::now();
        // Registered, then dropped before they fire: the table must not keep them.
        for i in 0..1000u64 {
            let mut s = Box::pin(sleep_until(start + Duration::from_secs(60 + i)));
            let waker = Waker::noop();
            assert!(
                s.as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_pending()
            );
        }
        let left = lock(&timers().state)
            .table
            .keys()
            .filter(|k| k.0 >= start + Duration::from_secs(60))
            .count();
        assert_eq!(left, 0, "dropped timers stayed in the table");
        // Deadlines shorter than the thread's idle tick wake it early.
        let mut tasks = Vec::new();
        for ms in [90u64, 10, 50, 30, 70] {
            tasks.push(tokio::spawn(async move {
                sleep_until(start + Duration::from_millis(ms)).await;
                (ms, start.elapsed())
            }));
        }
        for t in tasks {
            let (ms, took) = t.await.unwrap();
            assert!(
                took >= Duration::from_millis(ms),
                "{ms} ms fired after {took:?}"
            );
            assert!(
                took < Duration::from_millis(ms) + IDLE_TICK / 2,
                "{ms} ms fired after {took:?}"
            );
        }
    }
}
