//! DH-HMAC-CHAP in the configuration: `[[subsystem.host]]` entries that carry a host's secret
//! (and the controller's, for bidirectional authentication) in owner-only files, and a
//! subsystem's `require_authentication`. Its own file so that the keys stand apart from the
//! other subsystem settings; secrets are read here, once, and never printed (their `Debug`
//! shows lengths only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;
use vfnvme_auth::{read_dhchap_secret, DhchapSecret};

use super::keys::{HostKey, SubsystemAuth};
use super::raw::{RawHost, Source};
use super::types::ConfigError;

/// The keys of `[[subsystem.host]]` entry `raw` of host `host_nqn` (already checked), if it
/// names any. A controller secret needs a host secret: the controller only proves itself to
/// a host that authenticates.
pub(super) fn host_key(
    source: &Source,
    host_nqn: &str,
    raw: RawHost,
) -> Result<Option<HostKey>, ConfigError> {
    let ctrl_secret = raw
        .dhchap_ctrl_secret_file
        .map(|file| read_secret(source, file).map(Arc::new))
        .transpose()?;
    let Some(file) = raw.dhchap_secret_file else {
        if ctrl_secret.is_some() {
            return source.invalid(
                raw.nqn.span(),
                format!(
                    "host {host_nqn} has a dhchap_ctrl_secret_file but no dhchap_secret_file; \
                     the controller authenticates itself only to a host that authenticates"
                ),
            );
        }
        return Ok(None);
    };
    Ok(Some(HostKey {
        host_nqn: host_nqn.to_owned(),
        secret: Arc::new(read_secret(source, file)?),
        ctrl_secret,
    }))
}

/// `require_authentication` of subsystem `nqn` with its `hosts` and their `keys`: when set,
/// every host it admits must have a key.
pub(super) fn subsystem_auth(
    source: &Source,
    nqn: &str,
    require: Option<Spanned<bool>>,
    allow_any_host: bool,
    hosts: &[String],
    keys: Vec<HostKey>,
) -> Result<SubsystemAuth, ConfigError> {
    let Some(require) = require.filter(|r| *r.get_ref()) else {
        return Ok(SubsystemAuth {
            required: false,
            keys,
        });
    };
    if allow_any_host {
        return source.invalid(
            require.span(),
            format!(
                "subsystem {nqn} has require_authentication = true and allow_any_host = true, \
                 but only hosts with a key can authenticate; list them as [[subsystem.host]] \
                 with a dhchap_secret_file instead of allow_any_host"
            ),
        );
    }
    if let Some(host) = hosts
        .iter()
        .find(|host| !keys.iter().any(|k| k.host_nqn == **host))
    {
        return source.invalid(
            require.span(),
            format!(
                "subsystem {nqn} has require_authentication = true but host {host} has no key; \
                 give it a [[subsystem.host]] with a dhchap_secret_file"
            ),
        );
    }
    Ok(SubsystemAuth {
        required: true,
        keys,
    })
}

/// The secret in the file `file` names: relative paths are from the configuration file's
/// directory. Errors name the line; `read_dhchap_secret`'s messages never show the content.
fn read_secret(source: &Source, file: Spanned<String>) -> Result<DhchapSecret, ConfigError> {
    let span = file.span();
    let path = PathBuf::from(file.into_inner());
    let path = match Path::new(source.file).parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    read_dhchap_secret(&path).or_else(|error| source.invalid(span, error.to_string()))
}
