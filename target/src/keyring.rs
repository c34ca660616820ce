//! SPDK's file keyring: names that stand for key files, given by the management socket
//! (`keyring_file_add_key`) and used by name (`nvmf_subsystem_add_host --dhchap-key NAME`,
//! `--psk NAME`).
//! It holds names and paths, never secrets: a file is read when a key is added (to check it)
//! and again when a host is given it, so a host holds the file's secret of that moment. The
//! configuration's `[[keyring]]` entries fill it at start, and `save_config` writes it there.

use std::path::{Path, PathBuf};

use vfnvme_auth::{
    read_dhchap_secret, read_secret_file, read_tls_psk, DhchapSecret, SecretFileError, TlsPsk,
};

/// The keys, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<KeyringKey>,
}

/// A key's name and file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringKey {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("key {0} exists already; keyring_file_remove_key it first")]
    Exists(String),
    #[error(
        "no key {0} in the keyring; add it with keyring_file_add_key (keyring_get_keys lists them)"
    )]
    Unknown(String),
    #[error("{} is not an absolute path", .0.display())]
    Relative(PathBuf),
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error(
        "{} holds neither a DH-HMAC-CHAP secret (DHHC-1:.., from nvme gen-dhchap-key) nor a \
         TLS PSK (NVMeTLSkey-1:.., from nvme gen-tls-key)",
        .0.display()
    )]
    NotAKey(PathBuf),
    #[error("key {name} is not a {kind}: {source}")]
    WrongKind {
        name: String,
        kind: &'static str,
        source: SecretFileError,
    },
}

impl Keyring {
    /// Key `name` is the secret in file `path` (absolute; owner-only, a DH-HMAC-CHAP secret
    /// or a TLS PSK), checked now as SPDK's keyring checks it.
    pub fn add(&mut self, name: String, path: PathBuf) -> Result<(), KeyringError> {
        if self.keys.iter().any(|key| key.name == name) {
            return Err(KeyringError::Exists(name));
        }
        if !path.is_absolute() {
            return Err(KeyringError::Relative(path));
        }
        let text = read_secret_file(&path)?;
        if DhchapSecret::parse(&text).is_err() && TlsPsk::parse(&text).is_err() {
            return Err(KeyringError::NotAKey(path));
        }
        self.keys.push(KeyringKey { name, path });
        Ok(())
    }

    /// Name `name` no longer stands for a key.
    pub fn remove(&mut self, name: &str) -> Result<(), KeyringError> {
        self.path_of(name)?;
        self.keys.retain(|key| key.name != name);
        Ok(())
    }

    pub fn keys(&self) -> &[KeyringKey] {
        &self.keys
    }

    /// The DH-HMAC-CHAP secret of key `name`, read from its file now, with the file.
    pub fn dhchap_secret(&self, name: &str) -> Result<(PathBuf, DhchapSecret), KeyringError> {
        self.read(name, "DH-HMAC-CHAP secret", read_dhchap_secret)
    }

    /// The TLS PSK of key `name`, read from its file now, with the file.
    pub fn tls_psk(&self, name: &str) -> Result<(PathBuf, TlsPsk), KeyringError> {
        self.read(name, "TLS PSK", read_tls_psk)
    }

    /// Key `name`'s file, read by `read` as a `kind`.
    fn read<T>(
        &self,
        name: &str,
        kind: &'static str,
        read: fn(&Path) -> Result<T, SecretFileError>,
    ) -> Result<(PathBuf, T), KeyringError> {
        let path = self.path_of(name)?;
        read(path)
            .map(|key| (path.to_owned(), key))
            .map_err(|source| KeyringError::WrongKind {
                name: name.to_owned(),
                kind,
                source,
            })
    }

    fn path_of(&self, name: &str) -> Result<&Path, KeyringError> {
        self.keys
            .iter()
            .find(|key| key.name == name)
            .map(|key| key.path.as_path())
            .ok_or_else(|| KeyringError::Unknown(name.to_owned()))
    }
}
