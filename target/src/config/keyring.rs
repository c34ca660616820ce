//! `[[keyring]]`: the key names of SPDK's file keyring, as `keyring_file_add_key` gives them
//! at runtime, so that `save_config` and a restart keep the names a deployment's scripts use.
//! Each entry is checked as the method checks it (an absolute path, an owner-only file holding
//! a DH-HMAC-CHAP secret or a TLS PSK, a name not taken), its error naming the line.

use std::path::PathBuf;

use super::raw::{RawKeyringKey, Source};
use super::types::ConfigError;
use crate::keyring::{Keyring, KeyringError};

/// The keyring the `raw` entries make, in their order.
pub(super) fn check(source: &Source, raw: Vec<RawKeyringKey>) -> Result<Keyring, ConfigError> {
    let mut keyring = Keyring::default();
    for entry in raw {
        let span = entry.name.span();
        let name = entry.name.into_inner();
        let path = PathBuf::from(entry.path.into_inner());
        let reason = match keyring.add(name.clone(), path) {
            Ok(()) => continue,
            // The method's advice (remove it first) is not the file's.
            Err(KeyringError::Exists(_)) => {
                format!("[[keyring]] {name} is listed twice; key names must be unique")
            }
            Err(error) => format!("[[keyring]] {name}: {error}"),
        };
        return source.invalid(span, reason);
    }
    Ok(keyring)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::Config;

    const BASE: &str = "[[listener]]\naddress = \"127.0.0.1:4420\"\n\n[[subsystem]]\n\
                        nqn = \"nqn.2026-11.io.vfnvme:ssd0\"\nallow_any_host = true\n\n\
                        [[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n";

    fn with_keys(keys: &[(&str, &str)]) -> String {
        let mut text = BASE.to_owned();
        for (name, path) in keys {
            text.push_str(&format!(
                "\n[[keyring]]\nname = \"{name}\"\npath = \"{path}\"\n"
            ));
        }
        text
    }

    fn key_file(name: &str, mode: u32) -> String {
        let path = std::env::temp_dir().join(format!("vfnvme-kr-{name}-{}", std::process::id()));
        let key = vfnvme_auth::DhchapSecret::new(&[2; 32], None).unwrap();
        std::fs::write(&path, &*key.representation()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn keyring_entries_are_the_keyring_in_their_order() {
        let (a, b) = (key_file("a", 0o600), key_file("b", 0o600));
        let config = Config::parse(&with_keys(&[("key1", &b), ("key0", &a)]), "v.toml");
        let names: Vec<(String, String)> = config
            .unwrap()
            .keyring
            .keys()
            .iter()
            .map(|key| (key.name.clone(), key.path.display().to_string()))
            .collect();
        assert_eq!(
            names,
            [
                ("key1".to_owned(), b.clone()),
                ("key0".to_owned(), a.clone())
            ]
        );
        assert!(Config::parse(BASE, "v.toml")
            .unwrap()
            .keyring
            .keys()
            .is_empty());
        std::fs::remove_file(a).unwrap();
        std::fs::remove_file(b).unwrap();
    }

    #[test]
    fn a_bad_keyring_entry_is_one_line_naming_the_key_and_what_to_do() {
        let good = key_file("good", 0o600);
        let open = key_file("open", 0o644);
        let cases = [
            (
                with_keys(&[("k", &good), ("k", &good)]),
                "v.toml:17: [[keyring]] k is listed twice; key names must be unique".to_owned(),
            ),
            (
                with_keys(&[("rel", "keys/host1.key")]),
                "v.toml:13: [[keyring]] rel: keys/host1.key is not an absolute path".to_owned(),
            ),
            (
                with_keys(&[("open", &open)]),
                format!("v.toml:13: [[keyring]] open: secret file {open} is accessible by group"),
            ),
            (
                with_keys(&[("gone", "/nonexistent/key")]),
                "v.toml:13: [[keyring]] gone: ".to_owned(),
            ),
        ];
        for (text, expected) in cases {
            let message = Config::parse(&text, "v.toml").unwrap_err().to_string();
            assert!(message.starts_with(&expected), "{message}");
        }
        let unknown =
            BASE.to_owned() + "\n[[keyring]]\nname = \"k\"\npath = \"/x\"\nkind = \"psk\"\n";
        let message = Config::parse(&unknown, "v.toml").unwrap_err().to_string();
        assert!(message.contains("kind"), "{message}");
        std::fs::remove_file(good).unwrap();
        std::fs::remove_file(open).unwrap();
    }
}
