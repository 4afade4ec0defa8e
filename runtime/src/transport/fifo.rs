//! Named pipes (FIFOs): for peers that can share only a file-system path.
//!
//! A FIFO carries bytes one way and has no notion of connections, so a connection is a pair of
//! FIFOs, and a listener is one more FIFO that announces them:
//!
//! 1. The server makes the listening FIFO at `fifo:///dir/name` (mode 0600 by default) and keeps
//!    it open for reading and writing, so it never sees an end of file.
//! 2. A client draws a random connection id and makes two FIFOs beside it, `name.ID.up` (client
//!    to server) and `name.ID.down` (server to client), mode 0600, then writes the line `ID\n`
//!    (33 bytes: below `PIPE_BUF`, so requests from many clients never interleave) into the
//!    listening FIFO.
//! 3. The server checks that both are FIFOs owned by a user it serves (the owner of the files
//!    stands in for the peer credentials FIFOs lack), opens `down` for writing and `up` for
//!    reading, removes both files (the open descriptors keep the pipes alive) and writes one
//!    acknowledgement byte into `down`.
//! 4. The client reads the byte, opens `up` for writing, and the handshake of the protocol
//!    starts as on any other transport.
//!
//! Limits: this host only; 64 KiB of kernel buffer per direction, grown up to 1 MiB for a
//! connection that writes larger frames while the user's pipe budget allows (larger ones
//! stream through);
//! whoever can write the listening FIFO can send requests (keep its mode tight); a client that
//! dies between steps 2 and 3 leaves its two FIFO files behind until the server next starts on
//! that path. A peer that dies is seen as an end of file, as on a socket.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::unix::pipe;
use tokio::sync::Mutex;

use super::unix::{UnixAccess, own_uid};
use super::{Link, Listener};
use crate::BoxFuture;
use crate::endpoint::Endpoint;

/// Length of a connection id: 32 hex digits.
const ID_LEN: usize = 32;

/// The byte the server writes once it has opened both FIFOs of a connection.
const ACK: u8 = 0x06;

/// The byte the server writes, where it can, into the `down` FIFO of a connection it refuses.
const NAK: u8 = 0x15;

/// How long the accepting task may spend telling a refused client (an empty pipe takes the
/// byte at once; a client that filled its own pipe does not get to hold the listener).
const NAK_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// ENXIO: opening a FIFO for writing, without blocking, while nobody has it open for reading.
const ENXIO: i32 = 6;

/// A listening FIFO.
pub(crate) struct FifoTransport {
    path: PathBuf,
    /// The listening FIFO, read end (opened read-write: it never reaches an end of file).
    requests: Mutex<RequestReader>,
    /// The users whose processes are served: the runtime's own, and those allowed.
    uids: Vec<u32>,
}

/// Reads `ID\n` lines from the listening FIFO, one at a time.
struct RequestReader {
    rx: pipe::Receiver,
    buf: Vec<u8>,
}

impl RequestReader {
    /// The next well-formed connection id; malformed lines are logged and skipped.
    async fn next_id(&mut self) -> io::Result<String> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let line = &line[..line.len() - 1];
                if line.len() == ID_LEN && line.iter().all(u8::is_ascii_hexdigit) {
                    // Hex digits are ASCII: the conversion cannot fail.
                    return Ok(String::from_utf8_lossy(line).into_owned());
                }
                tracing::warn!(
                    len = line.len(),
                    "malformed request on a listening FIFO; ignored"
                );
                continue;
            }
            if self.buf.len() > 4 * (ID_LEN + 1) {
                // Garbage without newlines: drop it rather than grow.
                tracing::warn!("garbage on a listening FIFO; discarded");
                self.buf.clear();
            }
            let mut chunk = [0u8; 256];
            let n = self.rx.read(&mut chunk).await?;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The FIFOs of connection `id` beside the listening FIFO at `path`: (up, down).
fn connection_paths(path: &Path, id: &str) -> (PathBuf, PathBuf) {
    let base = path.as_os_str().to_string_lossy();
    (
        PathBuf::from(format!("{base}.{id}.up")),
        PathBuf::from(format!("{base}.{id}.down")),
    )
}

fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(mode),
        0,
    )?;
    // mknod applies the umask; set the mode asked for.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl FifoTransport {
    pub(crate) fn bind(path: &str, access: &UnixAccess) -> io::Result<Self> {
        let path = PathBuf::from(path);
        remove_if_stale(&path)?;
        remove_leftover_connections(&path);
        mkfifo(&path, access.mode)?;
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&path)?;
        let mut uids = vec![own_uid()?];
        uids.extend(&access.allowed_uids);
        Ok(FifoTransport {
            path,
            requests: Mutex::new(RequestReader {
                rx,
                buf: Vec::new(),
            }),
            uids,
        })
    }

    /// Opens connection `id`'s FIFOs, if they are what a client of ours makes.
    async fn open(&self, id: &str) -> io::Result<Link> {
        let (up, down) = connection_paths(&self.path, id);
        let result = self.open_checked(&up, &down).await;
        if result.is_err() {
            // Tell the client at once rather than let it wait for its connect timeout.
            if let Ok(mut tx) = pipe::OpenOptions::new().open_sender(&down) {
                let _ = tokio::time::timeout(NAK_WAIT, tx.write_all(&[NAK])).await;
            }
            let _ = std::fs::remove_file(&up);
        }
        // `down` has served its purpose; `up` goes once the client has opened it (see `Kept`).
        let _ = std::fs::remove_file(&down);
        result
    }

    async fn open_checked(&self, up: &Path, down: &Path) -> io::Result<Link> {
        let mut owner = None;
        for p in [up, down] {
            let meta = std::fs::symlink_metadata(p)?;
            if !meta.file_type().is_fifo() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} is not a FIFO", p.display()),
                ));
            }
            if !self.uids.contains(&meta.uid()) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} belongs to uid {}, not served", p.display(), meta.uid()),
                ));
            }
            owner = Some(meta.uid());
        }
        // The client holds `down` open for reading, so this open succeeds at once.
        let mut tx = pipe::OpenOptions::new().open_sender(down)?;
        let rx = pipe::OpenOptions::new().open_receiver(up)?;
        // Until the client opens `up` for writing, a read would see an end of file: hold a
        // writer of our own until its first bytes arrive.
        let keeper = pipe::OpenOptions::new().open_sender(up)?;
        tx.write_all(&[ACK]).await?;
        Ok(Link {
            scheme: "fifo",
            reader: Box::new(Kept {
                rx,
                keeper: Some(keeper),
                file: Some(RemoveOnDrop(vec![up.to_path_buf()])),
            }),
            writer: Box::new(super::fd::pipe_writer(tx.into_nonblocking_fd()?)?),
            peer: match owner {
                Some(uid) => format!("fifo uid {uid}"),
                None => "fifo".to_string(),
            },
            local_host: None,
            peer_is_local_host: true,
            peer_uid: owner,
            peer_subject: None,
            spin_until_readable: None,
        })
    }
}

/// Removes a listening FIFO nobody reads any more; refuses to touch a live one or a file that is
/// not a FIFO.
fn remove_if_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_fifo() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a FIFO", path.display()),
        ));
    }
    match pipe::OpenOptions::new().open_sender(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a live server reads {}", path.display()),
        )),
        Err(e) if e.raw_os_error() == Some(ENXIO) => {
            tracing::info!(path = %path.display(), "replacing a stale FIFO");
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

/// Removes connection FIFOs (`name.ID.up`, `name.ID.down`) left by clients that died half-way
/// through connecting to an earlier server on this path.
fn remove_leftover_connections(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let is_conn = rest
            .strip_suffix(".up")
            .or_else(|| rest.strip_suffix(".down"))
            .is_some_and(|id| id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_conn && entry.file_type().is_ok_and(|t| t.is_fifo()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Listener for FifoTransport {
    fn accept(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            loop {
                let id = self.requests.lock().await.next_id().await?;
                match self.open(&id).await {
                    Ok(link) => return Ok(link),
                    Err(e) => {
                        tracing::warn!(path = %self.path.display(), %id, error = %e, "refused a FIFO connection");
                    }
                }
            }
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::fifo(self.path.to_string_lossy())
    }
}

impl Drop for FifoTransport {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the connection's FIFO files if the client gives up before the server took them.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub(crate) async fn connect(path: &str) -> io::Result<Link> {
    let path = Path::new(path);
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_fifo() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a FIFO", path.display()),
        ));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (up, down) = connection_paths(path, &id);
    let _cleanup = RemoveOnDrop(vec![up.clone(), down.clone()]);
    mkfifo(&up, 0o600)?;
    mkfifo(&down, 0o600)?;
    let mut rx = pipe::OpenOptions::new().open_receiver(&down)?;
    // Until the server opens `down` for writing a read would see an end of file: hold a writer
    // of our own until its acknowledgement arrives.
    let keeper = pipe::OpenOptions::new().open_sender(&down)?;
    let mut requests =
        pipe::OpenOptions::new()
            .open_sender(path)
            .map_err(|e| match e.raw_os_error() {
                Some(ENXIO) => io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nobody listens on {}", path.display()),
                ),
                _ => e,
            })?;
    requests.write_all(format!("{id}\n").as_bytes()).await?;
    drop(requests);
    let mut ack = [0u8; 1];
    rx.read_exact(&mut ack).await?;
    drop(keeper);
    match ack[0] {
        ACK => {}
        NAK => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the FIFO server refused the connection (see its log)",
            ));
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the FIFO server answered with something other than its acknowledgement",
            ));
        }
    }
    let tx = pipe::OpenOptions::new().open_sender(&up)?;
    Ok(Link {
        scheme: "fifo",
        reader: Box::new(rx),
        writer: Box::new(super::fd::pipe_writer(tx.into_nonblocking_fd()?)?),
        peer: format!("fifo {}", path.display()),
        local_host: None,
        peer_is_local_host: true,
        peer_uid: None,
        peer_subject: None,
        spin_until_readable: None,
    })
}

/// A FIFO's read end plus a writer of our own, held until the peer's first bytes show that the
/// peer has opened its write end: before that, a read would report an end of file. The FIFO's
/// file goes at the same moment (or with the reader, if the peer never writes).
struct Kept {
    rx: pipe::Receiver,
    keeper: Option<pipe::Sender>,
    file: Option<RemoveOnDrop>,
}

impl AsyncRead for Kept {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.rx).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.keeper = None;
            self.file = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> String {
        let dir = std::env::temp_dir();
        dir.join(format!("oxrmi-unit-{}-{name}.fifo", std::process::id()))
            .to_string_lossy()
            .into_owned()
    }

    #[tokio::test]
    async fn bytes_travel_both_ways_and_the_files_go() {
        let path = temp_path("echo");
        let server = FifoTransport::bind(&path, &UnixAccess::default()).unwrap();
        let (client, accepted) = tokio::join!(connect(&path), server.accept());
        let mut client = client.unwrap();
        let mut accepted = accepted.unwrap();
        client.writer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        accepted.reader.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        let big = vec![7u8; 300_000];
        let big2 = big.clone();
        let w = tokio::spawn(async move {
            accepted.writer.write_all(&big2).await.unwrap();
            accepted
        });
        let mut back = vec![0u8; big.len()];
        client.reader.read_exact(&mut back).await.unwrap();
        assert_eq!(back, big);
        let accepted = w.await.unwrap();
        // Only the listening FIFO is left on disk.
        let dir = Path::new(&path).parent().unwrap();
        let name = Path::new(&path).file_name().unwrap().to_string_lossy();
        let extra: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{name}."))
            })
            .collect();
        assert!(extra.is_empty(), "connection FIFOs left behind: {extra:?}");
        // The client going away is an end of file for the server.
        drop(client);
        let mut rest = Vec::new();
        let mut reader = accepted.reader;
        reader.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_live_fifo_is_never_replaced_and_a_stale_one_is() {
        let path = temp_path("live");
        let t = FifoTransport::bind(&path, &UnixAccess::default()).unwrap();
        let e = FifoTransport::bind(&path, &UnixAccess::default())
            .err()
            .expect("bound twice");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(t);
        assert!(!Path::new(&path).exists());
        mkfifo(Path::new(&path), 0o600).unwrap();
        let t = FifoTransport::bind(&path, &UnixAccess::default()).unwrap();
        drop(t);
        let e = connect(&path).await.err().expect("connected to nobody");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn garbage_requests_are_skipped() {
        let path = temp_path("garbage");
        let server = FifoTransport::bind(&path, &UnixAccess::default()).unwrap();
        let mut w = pipe::OpenOptions::new().open_sender(&path).unwrap();
        w.write_all(b"not an id\n").await.unwrap();
        w.write_all(&[b'z'; 2000]).await.unwrap();
        w.write_all(b"\n0123456789abcdef0123456789abcdef\n")
            .await
            .unwrap();
        drop(w);
        let (client, accepted) = tokio::join!(connect(&path), server.accept());
        assert!(client.is_ok() && accepted.is_ok());
    }
}
