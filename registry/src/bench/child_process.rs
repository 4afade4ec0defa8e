//! Starting the benchmark's roles as child processes, reading what they print, stopping them.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use oxrmi::Endpoint;

use super::measurement::Measurement;
use crate::serve_registry::LISTENING_PREFIX;

/// How long a server role may take to exit once its stdin is closed before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A server role in a child process. Dropping it closes the child's stdin, which asks it to
/// stop, and reaps it (killing it if it does not stop in time).
pub(crate) struct ServerProcess {
    role: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ServerProcess {
    /// Starts `command` and reads the endpoint from its first line, `listening on <endpoint>`.
    pub(crate) fn start(
        role: &'static str,
        mut command: Command,
    ) -> anyhow::Result<(Self, Endpoint)> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start the {role} ({command:?})"))?;
        let stdout = child.stdout.take();
        let mut server = ServerProcess {
            role,
            stdin: child.stdin.take(),
            child,
        };
        let mut line = String::new();
        if let Some(stdout) = stdout {
            BufReader::new(stdout)
                .read_line(&mut line)
                .with_context(|| format!("cannot read the {role}'s endpoint"))?;
        }
        let Some(endpoint) = line.trim_end().strip_prefix(LISTENING_PREFIX) else {
            if line.is_empty() {
                let status = server.child.wait()?;
                bail!("the {role} exited ({status}) before printing its endpoint");
            }
            bail!("the {role} printed {line:?} instead of its endpoint");
        };
        let endpoint = endpoint
            .parse()
            .with_context(|| format!("the {role} printed a bad endpoint"))?;
        Ok((server, endpoint))
    }
}

impl ServerProcess {
    /// Asks a role that stops on signals rather than on its stdin closing (`oxrmi registry`) to
    /// stop, with SIGTERM; dropping it then reaps it.
    pub(crate) fn terminate(self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        eprintln!(
            "oxrmi bench: the {} (pid {}) did not stop within {STOP_GRACE:?}; killing it",
            self.role,
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the client role to its end and collects the measurements it prints, one JSON object a
/// line. Its stderr goes to ours.
pub(crate) fn run_client(mut command: Command) -> anyhow::Result<Vec<Measurement>> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start the bench client ({command:?})"))?;
    let mut measurements = Vec::new();
    let mut bad_line = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("cannot read the bench client's output")?;
            match serde_json::from_str::<Measurement>(&line) {
                Ok(m) => measurements.push(m),
                // Keep reading so the client is not stopped by a full pipe; report it after.
                Err(e) => bad_line = Some(format!("{line:?}: {e}")),
            }
        }
    }
    let status = child.wait().context("cannot wait for the bench client")?;
    if !status.success() {
        bail!("the bench client failed ({status}); its error is above");
    }
    if let Some(bad) = bad_line {
        bail!("the bench client printed a line that is not a measurement: {bad}");
    }
    Ok(measurements)
}
