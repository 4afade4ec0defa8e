//! The raw twin over Unix domain stream sockets, in the system's temporary directory.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use oxrmi::Endpoint;

use super::{RawListener, RawStream};

/// A fresh socket path for this process.
pub(super) fn fresh_path(role: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "oxrmi-bench-{role}-{}-{n}.sock",
        std::process::id()
    ))
}

/// A Unix socket listener; its file is removed when it goes.
pub(super) struct RawUnixListener {
    listener: UnixListener,
    path: PathBuf,
}

impl RawUnixListener {
    pub(super) fn bind() -> io::Result<Self> {
        let path = fresh_path("raw");
        Ok(RawUnixListener {
            listener: UnixListener::bind(&path)?,
            path,
        })
    }
}

impl Drop for RawUnixListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RawListener for RawUnixListener {
    fn accept(&self) -> io::Result<Box<dyn RawStream>> {
        let (stream, _) = self.listener.accept()?;
        Ok(Box::new(stream))
    }

    fn endpoint(&self) -> io::Result<Endpoint> {
        Ok(Endpoint::unix(self.path.to_string_lossy()))
    }
}

/// Connects to a Unix socket endpoint.
pub(super) fn connect(endpoint: &Endpoint) -> io::Result<UnixStream> {
    let Endpoint::Unix { path } = endpoint else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{endpoint} is not a Unix socket endpoint"),
        ));
    };
    UnixStream::connect(path)
}
