//! Where the benchmark's processes run: `--pin`, the CPU of each role, and `taskset`.
//!
//! A wake-up across two vCPUs costs tens of microseconds (the idle one halts and needs an
//! interrupt), so one program measures very differently depending on placement: every figure
//! carries its own (see `/work/shared/anchors.md`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What `--pin` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Pin {
    /// Client and server on one core.
    Same,
    /// Client and server on a core each.
    Split,
    /// Wherever the scheduler puts them (noisy).
    None,
    /// Same, split and none, one after another.
    All,
}

/// One placement of the two sides: the CPU each is pinned to, or `None` for unpinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// `same`, `split` or `none`: what figures are quoted with.
    pub(crate) name: &'static str,
    pub(crate) server_cpu: Option<usize>,
    pub(crate) client_cpu: Option<usize>,
}

impl Placement {
    fn unpinned() -> Self {
        Placement {
            name: "none",
            server_cpu: None,
            client_cpu: None,
        }
    }

    /// The placement in a few words: `same (server and client on CPU 1)`.
    pub(crate) fn describe(&self) -> String {
        match (self.server_cpu, self.client_cpu) {
            (Some(s), Some(c)) if s == c => format!("{} (server and client on CPU {s})", self.name),
            (Some(s), Some(c)) => format!("{} (server on CPU {s}, client on CPU {c})", self.name),
            _ => format!("{} (unpinned)", self.name),
        }
    }

    /// How long the raw shared-memory twin spins before it sleeps: as the runtime by default,
    /// unless both sides share one CPU, where spinning only delays the peer. (The runtime
    /// learns that by trying; the twin is told, so it is the best it can be in each placement.)
    pub(crate) fn raw_spin(&self) -> std::time::Duration {
        match (self.server_cpu, self.client_cpu) {
            (Some(s), Some(c)) if s == c => std::time::Duration::ZERO,
            _ => super::transport::shm::RUNTIME_SPIN,
        }
    }

    /// The placement as a table cell: `same 1/1` (server CPU / client CPU).
    pub(crate) fn cell(&self) -> String {
        match (self.server_cpu, self.client_cpu) {
            (Some(s), Some(c)) => format!("{} {s}/{c}", self.name),
            _ => self.name.to_string(),
        }
    }
}

/// What this machine allows: the `taskset` program, if any, and the CPUs this process may use.
#[derive(Clone, Debug)]
pub(crate) struct Pinning {
    taskset: Option<PathBuf>,
    allowed: Vec<usize>,
}

impl Pinning {
    /// Looks for `taskset` on `PATH` and reads this process's allowed CPUs.
    pub(crate) fn detect() -> Self {
        Pinning {
            taskset: find_in_path("taskset"),
            allowed: allowed_cpus(),
        }
    }

    /// Where `taskset` was found.
    pub(crate) fn taskset(&self) -> Option<&Path> {
        self.taskset.as_deref()
    }

    /// The placements `pin` asks for that this machine allows, and warnings for the rest.
    pub(crate) fn placements(&self, pin: Pin) -> (Vec<Placement>, Vec<String>) {
        plan(pin, self.taskset.is_some(), &self.allowed)
    }

    /// A command that runs `exe` pinned to `cpu` (or unpinned for `None`).
    pub(crate) fn command(&self, exe: &Path, cpu: Option<usize>) -> Command {
        match (cpu, &self.taskset) {
            (Some(cpu), Some(taskset)) => {
                let mut c = Command::new(taskset);
                c.arg("-c").arg(cpu.to_string()).arg(exe);
                c
            }
            _ => Command::new(exe),
        }
    }
}

/// The placements for `pin`, given whether `taskset` exists and which CPUs may be used.
fn plan(pin: Pin, taskset: bool, allowed: &[usize]) -> (Vec<Placement>, Vec<String>) {
    let mut warnings = Vec::new();
    if !taskset {
        if pin != Pin::None {
            warnings.push(
                "`taskset` (util-linux) is not on PATH: NOTHING IS PINNED. Only the unpinned \
                 placement (none) is measured; same and split are not. Install util-linux \
                 to pin."
                    .to_string(),
            );
        }
        return (vec![Placement::unpinned()], warnings);
    }
    // The anchors pin `same` to CPU 1, leaving CPU 0 to interrupts and housekeeping.
    let same_cpu = allowed.get(1).or(allowed.first()).copied().unwrap_or(0);
    let same = Placement {
        name: "same",
        server_cpu: Some(same_cpu),
        client_cpu: Some(same_cpu),
    };
    let split = match allowed {
        [server, client, ..] => Some(Placement {
            name: "split",
            server_cpu: Some(*server),
            client_cpu: Some(*client),
        }),
        _ => {
            if matches!(pin, Pin::Split | Pin::All) {
                warnings.push(format!(
                    "split needs two CPUs and this process may use {allowed:?}: split is NOT \
                     measured"
                ));
            }
            None
        }
    };
    let placements = match pin {
        Pin::Same => vec![same],
        Pin::Split => split.into_iter().collect(),
        Pin::None => vec![Placement::unpinned()],
        Pin::All => std::iter::once(same)
            .chain(split)
            .chain([Placement::unpinned()])
            .collect(),
    };
    (placements, warnings)
}

/// The CPUs this process may run on, from `/proc/self/status`; else 0..N.
fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(parse_cpu_list)
        })
        .unwrap_or_else(|| (0..crate::tokio_runtime::usable_cpus()).collect())
}

/// Parses a kernel CPU list such as `0-2,4`.
fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (usize, usize) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                if lo > hi {
                    return None;
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

/// The first executable file called `name` in a directory of `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-2,4,6-7"), Some(vec![0, 1, 2, 4, 6, 7]));
        assert_eq!(parse_cpu_list("3"), Some(vec![3]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("2-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    fn names(p: &[Placement]) -> Vec<String> {
        p.iter().map(Placement::cell).collect()
    }

    #[test]
    fn two_cpus_give_same_on_cpu_1_and_split_across_0_and_1() {
        let (p, w) = plan(Pin::All, true, &[0, 1]);
        assert_eq!(names(&p), ["same 1/1", "split 0/1", "none"]);
        assert!(w.is_empty());
        assert_eq!(names(&plan(Pin::Split, true, &[2, 3]).0), ["split 2/3"]);
    }

    #[test]
    fn one_cpu_skips_split_and_says_so() {
        let (p, w) = plan(Pin::All, true, &[0]);
        assert_eq!(names(&p), ["same 0/0", "none"]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("split is NOT measured"));
    }

    #[test]
    fn without_taskset_only_none_runs_with_a_loud_warning() {
        let (p, w) = plan(Pin::Same, false, &[0, 1]);
        assert_eq!(names(&p), ["none"]);
        assert!(w[0].contains("NOTHING IS PINNED"));
        assert!(plan(Pin::None, false, &[0, 1]).1.is_empty());
    }
}
