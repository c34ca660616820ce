//! The TOML configuration of `vfnvme serve`; `deploy/vfnvme.toml` is the commented example.
//!
//! Loading happens in two steps, one module each: [`raw`] lets serde read the text into
//! structures that keep the byte span of every value a later check may complain about, then
//! [`check`] turns them into the [`Config`] of `types`, the only part the rest of the target
//! uses. Every error names the file and the line, so that a user can go straight to it.

mod auth;
mod check;
mod keyring;
mod keys;
mod limits;
mod raw;
mod save;
mod target_check;
mod tls;
mod tls_keys;
mod types;

use std::path::Path;

pub use keys::{HostKey, SubsystemAuth};
use raw::Source;
#[cfg(test)]
pub(crate) use tls_keys::identities as psk_identities;
pub use tls_keys::{HostPsk, PskIdentity, SecureChannel};
pub use types::{
    BackingConfig, Config, ConfigError, DhchapAlgorithms, Limits, ListenerConfig, NamespaceConfig,
    SubsystemConfig, TargetConfig, DEFAULT_RPC_SOCKET, MAX_MODEL_BYTES, MAX_SERIAL_BYTES,
};

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// Validates configuration `text`; errors name `file` as where the text came from.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let source = Source { text, file };
        let raw = source.read()?;
        check::config(&source, raw)
    }
}

impl NamespaceConfig {
    /// A namespace of subsystem `subsystem_nqn` given as the TOML keys of a
    /// `[[subsystem.namespace]]` table (`nvmf_subsystem_add_ns` writes its params so), checked
    /// by the rules of the file, with its messages.
    pub fn parse(text: &str, subsystem_nqn: &str) -> Result<NamespaceConfig, ConfigError> {
        let source = Source {
            text,
            file: "params.namespace",
        };
        let raw = source.read_namespace()?;
        check::Checker { source: &source }.namespace(
            raw,
            subsystem_nqn,
            &mut std::collections::HashMap::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_file_names_the_path() {
        let error = Config::load(Path::new("/nonexistent/vfnvme.toml")).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("/nonexistent/vfnvme.toml: cannot read the configuration"));
    }
}
