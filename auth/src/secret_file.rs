//! Reading a secret from a file the configuration names: only when no one but its owner may
//! read or write it (as OpenSSH does with private keys), never echoing its content.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::representation::KeyFormatError;
use crate::secret::DhchapSecret;
use crate::tls_psk::TlsPsk;

/// Longest secret file read: a DHHC-1 line is about 100 bytes.
const MAX_SECRET_FILE: u64 = 4096;

/// Why a secret file was not read. The messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read secret file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secret file {} is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {}` so that only its owner can read it",
        .path.display(), .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("secret file {} is not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error("secret file {} is larger than {MAX_SECRET_FILE} bytes; it should hold one key", .path.display())]
    TooLarge { path: PathBuf },
    #[error("secret file {} is not UTF-8 text", .path.display())]
    NotText { path: PathBuf },
    #[error("secret file {}: {source}", .path.display())]
    Format {
        path: PathBuf,
        source: KeyFormatError,
    },
}

/// The DH-HMAC-CHAP secret (`DHHC-1:..`) in the file at `path`, see [`read_secret_file`].
pub fn read_dhchap_secret(path: &Path) -> Result<DhchapSecret, SecretFileError> {
    let text = read_secret_file(path)?;
    DhchapSecret::parse(&text).map_err(|source| SecretFileError::Format {
        path: path.to_owned(),
        source,
    })
}

/// The TLS PSK (`NVMeTLSkey-1:..`) in the file at `path`, see [`read_secret_file`].
pub fn read_tls_psk(path: &Path) -> Result<TlsPsk, SecretFileError> {
    let text = read_secret_file(path)?;
    TlsPsk::parse(&text).map_err(|source| SecretFileError::Format {
        path: path.to_owned(),
        source,
    })
}

/// The content of the secret file at `path`, white space around it removed. Refused when
/// its mode lets group or others read, write or execute it (checked on the opened file, so
/// the file checked is the file read).
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, SecretFileError> {
    let io = |source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(SecretFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    if metadata.len() > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    // Room for all of it up front, so that no partial copy is left behind by a reallocation.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_SECRET_FILE as usize + 1));
    let read = (&mut file)
        .take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if read as u64 > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretFileError::NotText {
        path: path.to_owned(),
    })?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}
