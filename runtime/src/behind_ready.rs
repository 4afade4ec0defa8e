//! A task stepping behind the tasks that are ready to run.
//!
//! A task that wakes itself while it runs goes to the back of the run queue, on both of tokio's
//! schedulers, without a trip through the I/O driver (unlike `tokio::task::yield_now`, which on
//! a current-thread runtime waits for the driver's next poll). Two places need that order: a
//! flush job must run after the senders whose frames it batches (a task spawned from a worker
//! of a multi-thread runtime goes into the worker's next slot, ahead of them), and a reader that
//! just handed a caller its reply lets that caller run before it looks at its transport again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Ready once the tasks that were ready when it was first polled have had their turn.
pub(crate) fn behind_ready_tasks() -> BehindReadyTasks {
    BehindReadyTasks { stepped: false }
}

/// The future of [`behind_ready_tasks`].
pub(crate) struct BehindReadyTasks {
    stepped: bool,
}

impl Future for BehindReadyTasks {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stepped {
            return Poll::Ready(());
        }
        self.stepped = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The order in which a task that steps aside and two tasks spawned after it finish.
    fn order_on(rt: tokio::runtime::Runtime) -> Vec<&'static str> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        rt.block_on(rt.spawn(async move {
            let note = |what| {
                let log = seen.clone();
                move || log.lock().unwrap().push(what)
            };
            let (a, b, c) = (note("stepped aside"), note("first"), note("second"));
            let first = tokio::spawn(async move { b() });
            let second = tokio::spawn(async move { c() });
            behind_ready_tasks().await;
            a();
            first.await.unwrap();
            second.await.unwrap();
        }))
        .unwrap();
        log.lock().unwrap().clone()
    }

    #[test]
    fn a_task_that_steps_aside_runs_after_the_tasks_ready_before_it() {
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(order_on(current), ["first", "second", "stepped aside"]);
        // One worker: nothing is stolen, the order is the scheduler's own (the task spawned
        // last sits in the worker's next slot and runs first).
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(order_on(multi), ["second", "first", "stepped aside"]);
    }
}
