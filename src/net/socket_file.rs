//! The filesystem side of a Unix listener: which path may be cleared before
//! binding, and which file is ours to remove when the engine stops.
//!
//! Only a socket is ever removed. Before binding, a socket at the path is
//! removed only when nothing answers on it (a stale file left by a process that
//! died); the probe never blocks, so a live server with a full accept queue is
//! reported as in use instead of hanging the start. On stop, the file is removed
//! only if it is still the very socket this engine bound (same device and
//! inode): a file put there since, by anyone, is left alone.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// The socket file an engine bound: its path and identity at bind time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Records the socket just bound at `path`.
    pub(crate) fn bound_at(path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Removes the file if it is still the socket this engine bound; anything
    /// else at the path (another server's socket, a file, a link) stays.
    pub(crate) fn remove_if_ours(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if self.is(&meta) => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::debug!("removing socket {}: {e}", shown(&self.path));
                }
            }
            Ok(_) => log::warn!(
                "{} is no longer the socket this engine bound; left in place",
                shown(&self.path)
            ),
            Err(_) => {}
        }
    }

    fn is(&self, meta: &Metadata) -> bool {
        meta.file_type().is_socket() && meta.dev() == self.dev && meta.ino() == self.ino
    }
}

/// Makes `path` free to bind: nothing there, or a stale socket (removed).
///
/// # Errors
///
/// `AddrInUse` when a server answers on the socket (even one too busy to
/// accept), `AlreadyExists` when the path is not a socket (a regular file, a
/// FIFO, a directory or a symbolic link, whatever it points to), or the error
/// of the probe or the removal.
pub(crate) fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not removing it",
                shown(path)
            ),
        ));
    }
    if answers(path)? {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a running server", shown(path)),
        ));
    }
    // Remove only the file probed: if it was swapped meanwhile, leave it.
    let again = std::fs::symlink_metadata(path)?;
    if again.dev() != meta.dev() || again.ino() != meta.ino() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} changed while probing it", shown(path)),
        ));
    }
    std::fs::remove_file(path)
}

/// Whether a listener answers on the socket at `path`, asked without blocking:
/// a connect that is refused means stale; one accepted, pending or turned away
/// for a full backlog means a live server.
fn answers(path: &Path) -> io::Result<bool> {
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(false),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.raw_os_error() == Some(libc::EAGAIN) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// A path as it may be printed: control characters escaped, long ones cut.
pub(crate) fn shown(path: &Path) -> String {
    super::printable::printable(&path.to_string_lossy())
}
