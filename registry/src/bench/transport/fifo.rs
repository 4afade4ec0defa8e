//! The raw twin over named pipes: a listening FIFO that announces a pair of FIFOs per
//! connection, as the runtime's FIFO transport does, with blocking reads and writes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oxrmi::Endpoint;

use super::unix::fresh_path;
use super::{RawListener, RawStream};

/// Length of a connection request: 32 hex digits and a newline (below `PIPE_BUF`: atomic).
const REQUEST_LEN: usize = 33;

fn mkfifo(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )?;
    Ok(())
}

fn connection_paths(listen: &Path, id: &str) -> (PathBuf, PathBuf) {
    let base = listen.to_string_lossy();
    (
        PathBuf::from(format!("{base}.{id}.up")),
        PathBuf::from(format!("{base}.{id}.down")),
    )
}

/// A listening FIFO; removed when it goes.
pub(super) struct RawFifoListener {
    path: PathBuf,
    /// Opened read-write: it never reaches an end of file.
    requests: File,
}

impl RawFifoListener {
    pub(super) fn bind() -> io::Result<Self> {
        let path = fresh_path("raw-fifo");
        mkfifo(&path)?;
        let requests = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(RawFifoListener { path, requests })
    }
}

impl Drop for RawFifoListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One connection: a FIFO to read from, one to write to.
pub(super) struct FifoPair {
    rx: File,
    tx: File,
}

impl Read for FifoPair {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rx.read(buf)
    }
}

impl Write for FifoPair {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tx.flush()
    }
}

impl RawListener for RawFifoListener {
    fn accept(&self) -> io::Result<Box<dyn RawStream>> {
        let mut request = [0u8; REQUEST_LEN];
        (&self.requests).read_exact(&mut request)?;
        let id = String::from_utf8_lossy(&request[..REQUEST_LEN - 1]).into_owned();
        let (up, down) = connection_paths(&self.path, &id);
        // The client holds `down` open (read-write), so this open returns at once; opening `up`
        // waits for the client to open its write end.
        let tx = OpenOptions::new().write(true).open(&down)?;
        let rx = File::open(&up)?;
        Ok(Box::new(FifoPair { rx, tx }))
    }

    fn endpoint(&self) -> io::Result<Endpoint> {
        Ok(Endpoint::fifo(self.path.to_string_lossy()))
    }
}

/// Connects to a raw FIFO listener.
pub(super) fn connect(endpoint: &Endpoint) -> io::Result<FifoPair> {
    let Endpoint::Fifo { path } = endpoint else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{endpoint} is not a FIFO endpoint"),
        ));
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (up, down) = connection_paths(Path::new(path), &id);
    mkfifo(&up)?;
    mkfifo(&down)?;
    let rx = OpenOptions::new().read(true).write(true).open(&down)?;
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(format!("{id}\n").as_bytes())?;
    let tx = OpenOptions::new().write(true).open(&up)?;
    let _ = std::fs::remove_file(&up);
    let _ = std::fs::remove_file(&down);
    Ok(FifoPair { rx, tx })
}
