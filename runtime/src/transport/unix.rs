//! Unix domain stream sockets: between processes on one host, without TCP's cost.
//!
//! The socket file is created with mode 0600 by default (only this user may connect through the
//! file system), a stale file left by a dead server is replaced but never a live one, and every
//! accepted peer's credentials (SO_PEERCRED) are checked: only processes of the same user, or of
//! the users allowed (`RuntimeBuilder::allow_unix_uid`), are served. The file is removed when the
//! listener goes.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::{Link, Listener};
use crate::BoxFuture;
use crate::endpoint::Endpoint;

/// Mode of the socket file by default: owner only.
pub(crate) const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// Who may connect to a Unix socket endpoint.
#[derive(Clone, Debug)]
pub(crate) struct UnixAccess {
    /// The socket file's mode.
    pub(crate) mode: u32,
    /// Users served besides the runtime's own.
    pub(crate) allowed_uids: Vec<u32>,
}

impl Default for UnixAccess {
    fn default() -> Self {
        UnixAccess {
            mode: DEFAULT_SOCKET_MODE,
            allowed_uids: Vec::new(),
        }
    }
}

/// A bound Unix socket listener.
pub(crate) struct UnixTransport {
    listener: UnixListener,
    path: PathBuf,
    /// The users whose processes are served: the runtime's own, and those allowed.
    uids: Vec<u32>,
}

/// The user this process runs as: the owner of `/proc/self`.
pub(super) fn own_uid() -> io::Result<u32> {
    Ok(std::fs::metadata("/proc/self")?.uid())
}

/// Binds a Unix socket at `path` under `access`'s rules: a stale file replaced (never a live
/// one), the file's mode set; with the users to serve (ours, then the allowed ones). The shared
/// memory transport's rendezvous socket is bound the same way.
pub(super) fn bind_socket(
    path: &Path,
    access: &UnixAccess,
) -> io::Result<(UnixListener, Vec<u32>)> {
    remove_if_stale(path)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))?;
    let mut uids = vec![own_uid()?];
    uids.extend(&access.allowed_uids);
    Ok((listener, uids))
}

impl UnixTransport {
    pub(crate) fn bind(path: &str, access: &UnixAccess) -> io::Result<Self> {
        let path = PathBuf::from(path);
        let (listener, uids) = bind_socket(&path, access)?;
        Ok(UnixTransport {
            listener,
            path,
            uids,
        })
    }
}

/// Removes a socket file nobody listens on any more; refuses to touch a live one or a file that
/// is not a socket.
pub(super) fn remove_if_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a live server listens on {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

impl Listener for UnixTransport {
    fn accept(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            loop {
                let (stream, _) = self.listener.accept().await?;
                let cred = stream.peer_cred()?;
                if !self.uids.contains(&cred.uid()) {
                    tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), path = %self.path.display(), "refused a peer of another user");
                    continue;
                }
                return link(stream, cred.pid(), Some(cred.uid()));
            }
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::unix(self.path.to_string_lossy())
    }
}

impl Drop for UnixTransport {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(crate) async fn connect(path: &str) -> io::Result<Link> {
    let stream = UnixStream::connect(path).await?;
    let cred = stream.peer_cred().ok();
    link(stream, cred.and_then(|c| c.pid()), cred.map(|c| c.uid()))
}

fn link(stream: UnixStream, pid: Option<i32>, uid: Option<u32>) -> io::Result<Link> {
    let (r, w) = super::fd::split(stream.into_std()?.into())?;
    Ok(Link {
        scheme: "unix",
        reader: Box::new(r),
        writer: Box::new(w),
        peer: match pid {
            Some(pid) => format!("unix pid {pid}"),
            None => "unix".to_string(),
        },
        local_host: None,
        peer_is_local_host: true,
        peer_uid: uid,
        peer_subject: None,
        spin_until_readable: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> String {
        let dir = std::env::temp_dir();
        dir.join(format!("oxrmi-unit-{}-{name}.sock", std::process::id()))
            .to_string_lossy()
            .into_owned()
    }

    #[tokio::test]
    async fn the_socket_file_is_private_and_a_live_one_is_never_replaced() {
        let path = temp_path("live");
        let t = UnixTransport::bind(&path, &UnixAccess::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DEFAULT_SOCKET_MODE);
        let e = UnixTransport::bind(&path, &UnixAccess::default())
            .err()
            .expect("bound twice");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(t);
        assert!(!Path::new(&path).exists(), "the file outlived its listener");
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced_and_other_files_are_not() {
        let path = temp_path("stale");
        // A socket file whose listener is gone (std's listener leaves the file behind).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(Path::new(&path).exists());
        let t = UnixTransport::bind(&path, &UnixAccess::default()).unwrap();
        drop(t);
        let plain = temp_path("plain");
        std::fs::write(&plain, b"not a socket").unwrap();
        let e = UnixTransport::bind(&plain, &UnixAccess::default())
            .err()
            .expect("bound over a plain file");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&plain).unwrap();
    }
}
