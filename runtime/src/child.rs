//! The `pipe` transport: a parent starts a child process with [`Runtime::spawn_child`] and the
//! two runtimes talk over the child's standard input and output, as `fork()` with two pipes
//! does. No port, no socket file, no registry: each side offers one **bootstrap object**
//! ([`RuntimeBuilder::bootstrap`]) that the other fetches ([`ChildProcess::bootstrap`],
//! [`Runtime::parent_bootstrap`]); everything else travels as references from there.
//!
//! In the child, the runtime takes the pipes over at start (`RuntimeBuilder::parent_pipe`):
//! it moves them to fresh descriptors, points file descriptor 1 at standard error and file
//! descriptor 0 at `/dev/null`, so a stray `println!` or a read of stdin cannot corrupt the
//! protocol; logs go to standard error.
//!
//! Lifetimes: the child exits when its parent goes (the pipe reaches its end: the parent exited,
//! crashed or dropped the [`ChildProcess`]), unless built with `exit_with_parent(false)`; the
//! parent sees the child's death as a lost connection (calls in flight fail at once) and reaps
//! it. Dropping the [`ChildProcess`] kills the child.

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::sync::{Arc, PoisonError};

use tokio::net::unix::pipe;
use tokio::sync::watch;

use crate::connection::{self, Connection};
use crate::endpoint::Endpoint;
use crate::id::{ObjId, RuntimeId};
use crate::registry::Registry;
use crate::remote::{AnyRemote, Interface, Remote};
use crate::runtime::{Runtime, RuntimeInner};
use crate::stub::StubHandle;
use crate::transport::Link;
use crate::{RemoteError, remote};

/// Set in a child's environment by [`Runtime::spawn_child`]: which protocol its pipes speak.
pub(crate) const PARENT_ENV: &str = "OXRMI_PARENT";
const PARENT_ENV_VALUE: &str = "pipe/1";

/// The well-known object through which a parent and its child find each other's objects.
#[remote(name = "oxrmi.Bootstrap")]
pub trait Bootstrap: Send + Sync {
    /// The object this runtime offers its parent or children.
    async fn get(&self) -> Result<AnyRemote, RemoteError>;
}

/// Serves the runtime's bootstrap object.
pub(crate) struct BootstrapService {
    object: watch::Sender<Option<AnyRemote>>,
}

impl Default for BootstrapService {
    fn default() -> Self {
        BootstrapService {
            object: watch::Sender::new(None),
        }
    }
}

impl BootstrapService {
    pub(crate) fn set(&self, object: Option<AnyRemote>) {
        self.object.send_replace(object);
    }
}

#[remote]
impl Bootstrap for BootstrapService {
    /// Waits, within the call's deadline, until the object is set: a child sets it once it is
    /// ready to serve, which may be after its runtime connected to the parent.
    async fn get(&self) -> Result<AnyRemote, RemoteError> {
        let mut rx = self.object.subscribe();
        let object = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RemoteError::Shutdown)?;
        object.clone().ok_or(RemoteError::Shutdown)
    }
}

/// A handle to the bootstrap service of the runtime at the other end of `conn`.
fn bootstrap_of(rt: &Arc<RuntimeInner>, peer: RuntimeId) -> Remote<dyn Bootstrap> {
    Remote::from_stub(StubHandle::well_known(
        rt.clone(),
        Some(peer),
        ObjId::BOOTSTRAP,
        <dyn Bootstrap as Interface>::NAME,
        vec![Endpoint::Pipe { runtime: peer }.to_string()],
    ))
}

/// A child process started with [`Runtime::spawn_child`], and the connection to its runtime.
/// Dropping it kills the child.
#[derive(Debug)]
pub struct ChildProcess {
    rt: Runtime,
    child: tokio::process::Child,
    peer: RuntimeId,
}

impl ChildProcess {
    /// The child's runtime id.
    pub fn runtime_id(&self) -> RuntimeId {
        self.peer
    }

    /// The endpoint that reaches the child (`pipe://RUNTIME`): only through this parent.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Pipe { runtime: self.peer }
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The object the child offers (its [`RuntimeBuilder::bootstrap`](crate::RuntimeBuilder::bootstrap)),
    /// checked against the interface `T`.
    pub async fn bootstrap<T: ?Sized + Interface>(&self) -> Result<Remote<T>, RemoteError> {
        bootstrap_of(&self.rt.inner, self.peer)
            .get()
            .await?
            .downcast()
    }

    /// The registry the child serves, if it was built with `.registry()`.
    pub fn registry(&self) -> Remote<dyn Registry> {
        self.rt.registry_at(&self.endpoint())
    }

    /// Waits for the child to exit (the parent reaps it).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.child.kill().await
    }
}

impl Runtime {
    /// Starts `command` as a child process whose runtime talks to this one over the child's
    /// standard input and output. The child must build its runtime with
    /// [`RuntimeBuilder::parent_pipe`](crate::RuntimeBuilder::parent_pipe); its standard error
    /// is left as the command set it (inherited by default).
    ///
    /// Fails if the child does not start or does not finish the handshake within the connect
    /// timeout (it is killed then).
    pub async fn spawn_child(
        &self,
        command: std::process::Command,
    ) -> Result<ChildProcess, RemoteError> {
        let rt = &self.inner;
        let mut cmd = tokio::process::Command::from(command);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .env(PARENT_ENV, PARENT_ENV_VALUE)
            .kill_on_drop(true);
        let spawn_failed = |e: io::Error| RemoteError::Setup {
            reason: format!("cannot start the child process: {e}"),
        };
        // The child's pipes and reaper belong to the runtime's own tokio runtime.
        let mut child = {
            let _in_runtime = rt.handle.enter();
            cmd.spawn().map_err(spawn_failed)?
        };
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(spawn_failed(io::Error::other("its pipes were not created")));
        };
        let writer = stdin
            .into_owned_fd()
            .and_then(crate::transport::fd::pipe_writer)
            .map_err(spawn_failed)?;
        let link = Link {
            scheme: "pipe",
            reader: Box::new(stdout),
            writer: Box::new(writer),
            peer: format!("pipe child pid {pid}"),
            local_host: None,
            peer_is_local_host: true,
            peer_uid: None,
            peer_subject: None,
            spin_until_readable: None,
        };
        let conn = handshake(rt, link).await?;
        let peer = conn.peer();
        tracing::info!(pid, child = %peer, "child process started; connected over its pipes");
        rt.conns
            .insert(conn, Some(Endpoint::Pipe { runtime: peer }));
        Ok(ChildProcess {
            rt: self.clone(),
            child,
            peer,
        })
    }

    /// The object this process's parent offers (its
    /// [`RuntimeBuilder::bootstrap`](crate::RuntimeBuilder::bootstrap)), checked against `T`.
    /// Only in a runtime built with
    /// [`parent_pipe`](crate::RuntimeBuilder::parent_pipe).
    pub async fn parent_bootstrap<T: ?Sized + Interface>(&self) -> Result<Remote<T>, RemoteError> {
        let parent = self.parent().ok_or_else(|| RemoteError::Setup {
            reason: "this runtime has no parent: build it with .parent_pipe()".into(),
        })?;
        bootstrap_of(&self.inner, parent).get().await?.downcast()
    }

    /// The parent's runtime id, in a runtime built with
    /// [`parent_pipe`](crate::RuntimeBuilder::parent_pipe).
    pub fn parent(&self) -> Option<RuntimeId> {
        *self
            .inner
            .parent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handshake over a fresh pipe link, bounded by the connect timeout.
async fn handshake(rt: &Arc<RuntimeInner>, link: Link) -> Result<Connection, RemoteError> {
    let rt2 = rt.clone();
    rt.handshake_in_time(
        "pipe",
        " over the pipes (does the other side build its runtime with .parent_pipe()?)",
        async move { connection::establish(&rt2, link).await },
    )
    .await
}

/// Takes this process's stdin and stdout over as the pipes to the parent, leaving fd 0 on
/// `/dev/null` and fd 1 on standard error.
fn take_stdio() -> io::Result<(OwnedFd, OwnedFd)> {
    let from_parent = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let to_parent = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3)?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(rustix::stdio::stderr())?;
    Ok((from_parent, to_parent))
}

/// In a child started by [`Runtime::spawn_child`]: connects to the parent over stdin and stdout,
/// and, with `exit_with_parent`, ends the process when the parent goes.
pub(crate) async fn connect_parent(
    rt: &Arc<RuntimeInner>,
    exit_with_parent: bool,
) -> Result<RuntimeId, RemoteError> {
    let setup = |reason: String| RemoteError::Setup { reason };
    match std::env::var(PARENT_ENV) {
        Ok(v) if v == PARENT_ENV_VALUE => {}
        Ok(v) => {
            return Err(setup(format!(
                "{PARENT_ENV}={v}: the parent speaks another pipe protocol than {PARENT_ENV_VALUE}"
            )));
        }
        Err(_) => {
            return Err(setup(format!(
                "parent_pipe(): this process was not started by Runtime::spawn_child ({PARENT_ENV} is not set)"
            )));
        }
    }
    let (from_parent, to_parent) =
        take_stdio().map_err(|e| setup(format!("cannot take over stdin/stdout: {e}")))?;
    let (reader, writer) = {
        let _in_runtime = rt.handle.enter();
        let r = pipe::Receiver::from_owned_fd(from_parent)
            .map_err(|e| setup(format!("stdin is not a pipe from the parent: {e}")))?;
        let w = pipe::Sender::from_owned_fd(to_parent)
            .and_then(pipe::Sender::into_nonblocking_fd)
            .and_then(crate::transport::fd::pipe_writer)
            .map_err(|e| setup(format!("stdout is not a pipe to the parent: {e}")))?;
        (r, w)
    };
    let link = Link {
        scheme: "pipe",
        reader: Box::new(reader),
        writer: Box::new(writer),
        peer: format!(
            "pipe parent pid {}",
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
        ),
        local_host: None,
        peer_is_local_host: true,
        peer_uid: None,
        peer_subject: None,
        spin_until_readable: None,
    };
    let conn = handshake(rt, link).await?;
    let parent = conn.peer();
    rt.conns
        .insert(conn.clone(), Some(Endpoint::Pipe { runtime: parent }));
    if exit_with_parent {
        let weak = Arc::downgrade(rt);
        rt.handle.spawn(async move {
            conn.closed().await;
            // A runtime shut down on purpose lets its process decide what comes next.
            if weak.upgrade().is_some_and(|rt| !rt.is_shut_down()) {
                tracing::info!(%parent, "the parent is gone; exiting");
                std::process::exit(0);
            }
        });
    }
    Ok(parent)
}
