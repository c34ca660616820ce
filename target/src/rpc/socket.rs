//! The management socket's file: a Unix stream socket at `[target] rpc_socket`, readable and
//! writable by its owner only (mode 0600). A socket file left by a process that died is
//! replaced; one a live target answers on is left alone and the start refused. The file is
//! removed when the socket goes, if it is still the one bound.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why the management socket could not be created; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "management socket {path}: another vfnvme serve answers there; stop it, or give this \
         one another [target] rpc_socket"
    )]
    InUse { path: PathBuf },
    #[error("management socket {path}: the file exists and is not a socket; remove it, or give another [target] rpc_socket")]
    NotASocket { path: PathBuf },
    #[error(
        "management socket {path}: its directory does not exist; create it (the systemd unit's \
         RuntimeDirectory=vfnvme does), or give another [target] rpc_socket"
    )]
    NoDirectory { path: PathBuf },
    #[error("management socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The bound socket; its file goes with it.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the file bound, so that a file another process put there since is
    /// not removed.
    identity: (u64, u64),
}

impl ControlSocket {
    /// Binds `path` (non-blocking), replacing a stale socket file.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        let io = |source| SocketError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if !metadata.file_type().is_socket() => {
                return Err(SocketError::NotASocket {
                    path: path.to_owned(),
                })
            }
            Ok(_) => match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(SocketError::InUse {
                        path: path.to_owned(),
                    })
                }
                Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                    log::info!(
                        "management socket {}: replacing the stale socket of a process that ended",
                        path.display()
                    );
                    std::fs::remove_file(path).map_err(io)?;
                }
                Err(error) => return Err(io(error)),
            },
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        let listener = UnixListener::bind(path).map_err(|error| match error.kind() {
            ErrorKind::NotFound => SocketError::NoDirectory {
                path: path.to_owned(),
            },
            _ => io(error),
        })?;
        // Before any other user could connect: a socket is created with the umask's mode, and
        // connecting takes write permission, which the usual umask (022) gives no one else.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let metadata = std::fs::symlink_metadata(path).map_err(io)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| (metadata.dev(), metadata.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vfnvme-socket-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("vfnvme.sock")
    }

    #[test]
    fn the_socket_is_private_and_removed_with_it() {
        let path = scratch("mode");
        let socket = ControlSocket::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(socket);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_is_refused_and_a_stale_one_replaced() {
        let path = scratch("live");
        let live = ControlSocket::bind(&path).unwrap();
        let refused = ControlSocket::bind(&path).err().unwrap();
        assert!(matches!(refused, SocketError::InUse { .. }), "{refused}");
        assert!(refused
            .to_string()
            .contains("another vfnvme serve answers there"));
        drop(live);
        // A process that died leaves its file, which nothing listens on any more.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let replaced = ControlSocket::bind(&path).unwrap();
        assert!(UnixStream::connect(replaced.path()).is_ok());
    }

    #[test]
    fn other_files_and_missing_directories_are_named() {
        let path = scratch("file");
        std::fs::write(&path, "not a socket").unwrap();
        let error = ControlSocket::bind(&path).err().unwrap();
        assert!(matches!(error, SocketError::NotASocket { .. }), "{error}");
        let missing = path.parent().unwrap().join("absent/vfnvme.sock");
        let error = ControlSocket::bind(&missing).err().unwrap();
        assert!(
            error.to_string().contains("RuntimeDirectory=vfnvme"),
            "{error}"
        );
    }
}
