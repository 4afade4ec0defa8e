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
//! wakes it (a deadline that has passed already does: the thread fires it at once).
//! [`timeout_at`] polls its future before it registers anything, so a call that completes at
//! once costs nothing here; one that waits costs a registration and a cancellation, each a
//! lock and a few stores in a slab (no allocation, no ordered map).
//!
//! **Invariant:** a registered timer's slot is released when it fires or when its future is
//! dropped, whichever comes first; the table never holds more than the timers alive, and a
//! slot's generation tells a released (fired) timer from the slot's next user.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The longest the timer thread sleeps at a time.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The deadline passed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// The process's timers: the table and the thread's next wake-up.
struct Timers {
    state: Mutex<State>,
    wake: Condvar,
}

/// The table: a slab of slots, reused through a free list, so registering and cancelling a
/// timer allocate nothing and cost a lock and a few stores. The thread scans the slots when it
/// wakes (at the earliest deadline, or every [`IDLE_TICK`]): they are as many as the timers
/// alive at the busiest moment, a few per call in flight.
struct State {
    slots: Vec<Slot>,
    /// Indexes of unused slots.
    free: Vec<u32>,
    /// The generation the next registration gets: a slot reused by another timer is told
    /// apart from the one a `Sleep` registered.
    next_generation: u64,
    /// When the thread wakes next on its own.
    armed: Instant,
}

/// One timer, while registered. A slot that fired or was cancelled is unused and on the free
/// list; its `Sleep` learns it fired from the generation no longer being its own.
struct Slot {
    at: Instant,
    generation: u64,
    waker: Option<Waker>,
    used: bool,
}

/// Where a `Sleep` is registered.
#[derive(Clone, Copy)]
struct Key {
    index: u32,
    generation: u64,
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
                slots: Vec::new(),
                free: Vec::new(),
                next_generation: 0,
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

impl State {
    /// Whether the timer registered under `key` is still waiting (not fired, not cancelled).
    fn waiting(&mut self, key: Key) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|s| s.used && s.generation == key.generation)
    }

    /// Unuses a slot; gives back its waker, to be dropped or woken outside the lock.
    fn release(&mut self, index: u32) -> Option<Waker> {
        let slot = &mut self.slots[index as usize];
        slot.used = false;
        self.free.push(index);
        slot.waker.take()
    }
}

impl Timers {
    fn run(&self) {
        let mut due = Vec::new();
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut next = now + IDLE_TICK;
            for i in 0..st.slots.len() {
                let slot = &st.slots[i];
                if !slot.used {
                    continue;
                }
                if slot.at <= now {
                    due.extend(st.release(i as u32));
                } else {
                    next = next.min(slot.at);
                }
            }
            if !due.is_empty() {
                drop(st);
                for waker in due.drain(..) {
                    waker.wake();
                }
                st = lock(&self.state);
                continue;
            }
            st.armed = next;
            st = self
                .wake
                .wait_timeout(st, next.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn register(&self, at: Instant, waker: Waker) -> Key {
        let mut st = lock(&self.state);
        let generation = st.next_generation;
        st.next_generation += 1;
        let slot = Slot {
            at,
            generation,
            waker: Some(waker),
            used: true,
        };
        let index = match st.free.pop() {
            Some(i) => {
                st.slots[i as usize] = slot;
                i
            }
            None => {
                st.slots.push(slot);
                // A process with four billion timers alive has other trouble first.
                (st.slots.len() - 1) as u32
            }
        };
        if at < st.armed {
            st.armed = at;
            drop(st);
            self.wake.notify_one();
        }
        Key { index, generation }
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
    registered: Option<Key>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(key) = this.registered else {
            // Not looking at the clock first: a deadline that has passed is earlier than the
            // thread's next wake-up, so registering it wakes the thread, which fires it.
            this.registered = Some(timers().register(this.at, cx.waker().clone()));
            return Poll::Pending;
        };
        let mut st = lock(&timers().state);
        let Some(slot) = st.waiting(key) else {
            // Fired: its slot was released (and may serve another timer by now).
            return Poll::Ready(());
        };
        let old = match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => None,
            _ => slot.waker.replace(cx.waker().clone()),
        };
        drop(st);
        drop(old);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let Some(key) = self.registered.take() else {
            return;
        };
        let mut st = lock(&timers().state);
        if st.waiting(key).is_some() {
            let waker = st.release(key.index);
            drop(st);
            drop(waker);
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
    async fn a_deadline_already_past_fires_at_once_and_a_reused_slot_is_not_mistaken() {
        let start = Instant::now();
        sleep_until(start - Duration::from_millis(5)).await;
        assert!(start.elapsed() < IDLE_TICK / 2, "{:?}", start.elapsed());
        // A fired timer's slot serves the next one; the new timer must not look fired.
        let far = start + Duration::from_secs(3600);
        let mut later = Box::pin(sleep_until(far));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(later.as_mut().poll(&mut cx).is_pending());
        assert!(later.as_mut().poll(&mut cx).is_pending());
        let held = |at| {
            lock(&timers().state)
                .slots
                .iter()
                .filter(|s| s.used && s.at == at)
                .count()
        };
        assert_eq!(held(far), 1);
        drop(later);
        assert_eq!(held(far), 0);
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
            .slots
            .iter()
            .filter(|s| s.used && s.at >= start + Duration::from_secs(60))
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
