//! The tokio runtime of a process, sized to the CPUs it may run on.
//!
//! Pinned to one CPU (`taskset -c N`), extra worker threads can only take turns on it and every
//! hand-off between them is a context switch, so one thread runs everything there.

use std::num::NonZeroUsize;

/// The CPUs this process may run on: its affinity mask (as `taskset` set it) and cgroup quota.
pub(crate) fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// A current-thread runtime on one usable CPU, a multi-thread runtime with one worker per
/// usable CPU otherwise.
pub(crate) fn build() -> std::io::Result<tokio::runtime::Runtime> {
    match usable_cpus() {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}
