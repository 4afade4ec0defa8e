//! Waiting for Ctrl-C (SIGINT) or SIGTERM, the two ways a server is asked to stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Both signal handlers, installed when this is made: a signal that arrives before anyone
/// waits is kept, not lost to the default action (which would kill the process mid-reply).
pub(crate) struct ShutdownSignal {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignal {
    /// Installs the handlers; needs a tokio runtime.
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(ShutdownSignal {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal and names it.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
