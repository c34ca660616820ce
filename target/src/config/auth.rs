//! DH-HMAC-CHAP in the configuration: `[[subsystem.host]]` entries that carry a host's secret
//! (and the controller's, for bidirectional authentication) in owner-only files, and a
//! subsystem's `require_authentication`. Its own file so that the keys stand apart from the
//! other subsystem settings; secrets are read here, once, and never printed (their `Debug`
//! shows lengths only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;
use vfnvme_auth::{read_dhchap_secret, DhchapSecret};
use vfnvme_spec::auth::{DhGroupId, HashId};

use super::keys::{HostKey, SubsystemAuth};
use super::raw::{RawHost, Source};
use super::types::{ConfigError, DhchapAlgorithms};

/// `[target] dhchap_digests` and `dhchap_dhgroups`: names as nvme-cli and SPDK write them
/// (`sha256`, `ffdhe2048`, `null`, ...), in any order; absent, all of them.
pub(super) fn dhchap_algorithms(
    source: &Source,
    digests: Option<Spanned<Vec<Spanned<String>>>>,
    dh_groups: Option<Spanned<Vec<Spanned<String>>>>,
) -> Result<DhchapAlgorithms, ConfigError> {
    let all = DhchapAlgorithms::default();
    Ok(DhchapAlgorithms {
        hashes: named(
            source,
            digests,
            "dhchap_digests",
            &HashId::ALL,
            HashId::name,
        )?
        .unwrap_or(all.hashes),
        dh_groups: named(
            source,
            dh_groups,
            "dhchap_dhgroups",
            &DhGroupId::ALL,
            DhGroupId::name,
        )?
        .unwrap_or(all.dh_groups),
    })
}

/// The items of `all` that list `raw` names, strongest (last in `all`) first.
fn named<T: Copy + PartialEq>(
    source: &Source,
    raw: Option<Spanned<Vec<Spanned<String>>>>,
    key: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<Option<Vec<T>>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let span = raw.span();
    let names = raw.into_inner();
    if names.is_empty() {
        let choices: Vec<&str> = all.iter().map(|&item| name(item)).collect();
        return source.invalid(
            span,
            format!("{key} is empty; list some of {}", choices.join(", ")),
        );
    }
    let mut chosen = Vec::new();
    for entry in names {
        let Some(&item) = all.iter().find(|&&item| name(item) == entry.get_ref()) else {
            let choices: Vec<&str> = all.iter().map(|&item| name(item)).collect();
            return source.invalid(
                entry.span(),
                format!(
                    "{key}: \"{}\" is none of {}",
                    entry.get_ref(),
                    choices.join(", ")
                ),
            );
        };
        if chosen.contains(&item) {
            return source.invalid(
                entry.span(),
                format!("{key} lists \"{}\" twice", entry.get_ref()),
            );
        }
        chosen.push(item);
    }
    Ok(Some(
        all.iter()
            .rev()
            .copied()
            .filter(|item| chosen.contains(item))
            .collect(),
    ))
}

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
        .map(|file| read_secret(source, file))
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
    let (secret_file, secret) = read_secret(source, file)?;
    let (ctrl_secret_file, ctrl_secret) = ctrl_secret.unzip();
    Ok(Some(HostKey {
        host_nqn: host_nqn.to_owned(),
        secret: Arc::new(secret),
        ctrl_secret: ctrl_secret.map(Arc::new),
        secret_file,
        ctrl_secret_file,
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

/// The secret in the file `file` names, with that file's path: relative paths are from the
/// configuration file's directory. Errors name the line; `read_dhchap_secret`'s messages never
/// show the content.
fn read_secret(
    source: &Source,
    file: Spanned<String>,
) -> Result<(PathBuf, DhchapSecret), ConfigError> {
    let span = file.span();
    let path = PathBuf::from(file.into_inner());
    let path = match Path::new(source.file).parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    match read_dhchap_secret(&path) {
        Ok(secret) => Ok((path, secret)),
        Err(error) => source.invalid(span, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::Config;

    fn config_with_key(path: &str) -> String {
        format!(
            "[[listener]]\naddress = \"127.0.0.1:4420\"\n\n[[subsystem]]\n\
             nqn = \"nqn.2026-11.io.vfnvme:ssd0\"\nrequire_authentication = true\n\
             [[subsystem.host]]\nnqn = \"nqn.2014-08.org.nvmexpress:uuid:h1\"\n\
             dhchap_secret_file = \"{path}\"\n\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n"
        )
    }

    fn key_file(name: &str, mode: u32) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("vfnvme-{name}-{}.key", std::process::id()));
        let key = vfnvme_auth::DhchapSecret::new(&[1; 32], None).unwrap();
        std::fs::write(&path, &*key.representation()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_host_key_file_is_read_and_every_host_then_needs_one() {
        let path = key_file("ok", 0o600);
        let config = Config::parse(&config_with_key(&path.display().to_string()), "v.toml");
        std::fs::remove_file(&path).unwrap();
        let auth = &config.unwrap().subsystems[0].auth;
        assert!(auth.required);
        assert!(auth.key_of("nqn.2014-08.org.nvmexpress:uuid:h1").is_some());

        let keyless = config_with_key("/x").replace(
            "require_authentication = true\n",
            "require_authentication = true\nhosts = [\"nqn.2014-08.org.nvmexpress:uuid:h2\"]\n",
        );
        let path = key_file("ok2", 0o600);
        let error = Config::parse(
            &keyless.replace("/x", &path.display().to_string()),
            "v.toml",
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            error.unwrap_err().to_string(),
            "v.toml:6: subsystem nqn.2026-11.io.vfnvme:ssd0 has require_authentication = true \
             but host nqn.2014-08.org.nvmexpress:uuid:h2 has no key; give it a \
             [[subsystem.host]] with a dhchap_secret_file"
        );
    }

    #[test]
    fn a_world_readable_or_missing_secret_file_is_one_line_naming_file_and_line() {
        let path = key_file("open", 0o644);
        let shown = path.display().to_string();
        let error = Config::parse(&config_with_key(&shown), "v.toml").unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let message = error.to_string();
        assert_eq!(
            message,
            format!(
                "v.toml:9: secret file {shown} is accessible by group or others (mode 0644); \
                 run `chmod 600 {shown}` so that only its owner can read it"
            )
        );
        assert!(!message.contains("DHHC"), "{message}");
        let missing = Config::parse(&config_with_key("/nonexistent/host1"), "v.toml").unwrap_err();
        let message = missing.to_string();
        assert!(
            message.starts_with("v.toml:9: cannot read secret file /nonexistent/host1: ")
                && !message.contains('\n'),
            "{message}"
        );
    }

    const LISTENER_AND_SUBSYSTEM: &str = "[[listener]]\naddress = \"127.0.0.1:4420\"\n\n\
        [[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:ssd0\"\nallow_any_host = true\n\
        [[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n";

    fn with_target(lines: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(
            &format!("[target]\n{lines}\n{LISTENER_AND_SUBSYSTEM}"),
            "v.toml",
        )
    }

    #[test]
    fn dhchap_algorithms_default_to_all_and_are_kept_strongest_first() {
        use vfnvme_spec::auth::{DhGroupId, HashId};
        let config = with_target("").unwrap();
        assert_eq!(config.target.dhchap.hashes.len(), 3);
        assert_eq!(config.target.dhchap.dh_groups.len(), 6);
        let config = with_target(
            "dhchap_digests = [\"sha256\", \"sha512\"]\n\
             dhchap_dhgroups = [\"null\", \"ffdhe3072\", \"ffdhe2048\"]",
        )
        .unwrap();
        assert_eq!(
            config.target.dhchap.hashes,
            [HashId::Sha512, HashId::Sha256]
        );
        assert_eq!(
            config.target.dhchap.dh_groups,
            [DhGroupId::Ffdhe3072, DhGroupId::Ffdhe2048, DhGroupId::Null]
        );
        // What save_config writes reads back the same.
        let again = Config::parse(&config.to_toml(), "saved.toml").unwrap();
        assert_eq!(again.target.dhchap, config.target.dhchap);
    }

    #[test]
    fn unknown_empty_or_repeated_dhchap_algorithms_are_refused_by_name() {
        for (lines, expected) in [
            (
                "dhchap_digests = [\"sha1\"]",
                "v.toml:2: dhchap_digests: \"sha1\" is none of sha256, sha384, sha512",
            ),
            (
                "dhchap_dhgroups = []",
                "dhchap_dhgroups is empty; list some of null, ffdhe2048",
            ),
            (
                "dhchap_dhgroups = [\"null\", \"null\"]",
                "dhchap_dhgroups lists \"null\" twice",
            ),
        ] {
            let error = with_target(lines).unwrap_err().to_string();
            assert!(error.contains(expected), "{lines}: {error}");
        }
    }
}
