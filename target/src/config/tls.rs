//! NVMe/TCP TLS 1.3 with a pre-shared key in the configuration: a `[[listener]]`'s
//! `secure_channel` and a `[[subsystem.host]]`'s `tls_psk_file`. Each PSK is read here, once,
//! and turned into the PSK identities (versions 0 and 1, for the subsystem and for the
//! discovery subsystem) and their TLS PSKs, so that the handshake only looks them up.

use std::path::{Path, PathBuf};

use toml::Spanned;
use vfnvme_auth::read_tls_psk;

use super::raw::Source;
use super::tls_keys::{HostPsk, SecureChannel};
use super::types::ConfigError;

/// `[[listener]] secure_channel`: "tls" or "none" (the default).
pub(super) fn secure_channel(
    source: &Source,
    raw: Option<Spanned<String>>,
) -> Result<SecureChannel, ConfigError> {
    let Some(raw) = raw else {
        return Ok(SecureChannel::None);
    };
    match raw.get_ref().as_str() {
        "tls" => Ok(SecureChannel::Tls),
        "none" => Ok(SecureChannel::None),
        other => source.invalid(
            raw.span(),
            format!(
                "secure_channel = \"{other}\" is neither \"tls\" (TLS 1.3 with a PSK) nor \"none\""
            ),
        ),
    }
}

/// `tls_psk_file` of host `host_nqn` in subsystem `subsystem_nqn`: the PSK interchange format
/// in an owner-only file. Only SHA-256 PSKs: the TLS library offers TLS_AES_128_GCM_SHA256
/// alone to external PSKs.
pub(super) fn host_psk(
    source: &Source,
    host_nqn: &str,
    subsystem_nqn: &str,
    file: Spanned<String>,
) -> Result<HostPsk, ConfigError> {
    let span = file.span();
    let path = PathBuf::from(file.into_inner());
    let path = match Path::new(source.file).parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    let psk = match read_tls_psk(&path) {
        Ok(psk) => psk,
        Err(error) => return source.invalid(span, error.to_string()),
    };
    match HostPsk::new(&psk, path, host_nqn, subsystem_nqn) {
        Ok(host_psk) => Ok(host_psk),
        Err(reason) => source.invalid(span, reason),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use vfnvme_auth::{PskHash, TlsPsk};

    use super::super::tls_keys::SecureChannel;
    use crate::config::Config;

    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:h1";

    fn config_with_psk(path: &str, secure_channel: &str) -> String {
        format!(
            "[[listener]]\naddress = \"127.0.0.1:4420\"\nsecure_channel = \"{secure_channel}\"\n\n\
             [[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:ssd0\"\n\
             [[subsystem.host]]\nnqn = \"{HOST}\"\n\
             tls_psk_file = \"{path}\"\n\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n"
        )
    }

    fn psk_file(name: &str, key: &[u8], transform: Option<PskHash>) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("vfnvme-{name}-{}.psk", std::process::id()));
        let psk = TlsPsk::new(key, transform).unwrap();
        std::fs::write(&path, &*psk.representation()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn a_tls_listener_and_a_host_psk_are_read_into_identities_v0_and_v1() {
        let path = psk_file("tls-ok", &[7; 32], Some(PskHash::Sha256));
        let config = Config::parse(
            &config_with_psk(&path.display().to_string(), "tls"),
            "v.toml",
        );
        std::fs::remove_file(&path).unwrap();
        let config = config.unwrap();
        assert_eq!(config.listeners[0].secure_channel, SecureChannel::Tls);
        let psk = &config.subsystems[0].tls_psks[0];
        assert_eq!(psk.host_nqn, HOST);
        let names: Vec<&str> = psk.identities.iter().map(|i| i.identity.as_str()).collect();
        assert_eq!(
            names[..1],
            [format!("NVMe0R01 {HOST} nqn.2026-11.io.vfnvme:ssd0").as_str()]
        );
        assert!(names[1].starts_with(&format!("NVMe1R01 {HOST} nqn.2026-11.io.vfnvme:ssd0 ")));
        assert_eq!(
            names[2],
            format!("NVMe0R01 {HOST} nqn.2014-08.org.nvmexpress.discovery")
        );
    }

    #[test]
    fn a_48_byte_psk_is_refused_with_the_reason() {
        for (name, key, transform) in [
            ("tls-48", &[7u8; 48][..], None),
            ("tls-384", &[7u8; 48][..], Some(PskHash::Sha384)),
        ] {
            let path = psk_file(name, key, transform);
            let shown = path.display().to_string();
            let error = Config::parse(&config_with_psk(&shown, "tls"), "v.toml");
            std::fs::remove_file(&path).unwrap();
            assert_eq!(
                error.unwrap_err().to_string(),
                format!(
                    "v.toml:9: {shown}: the PSK of host {HOST} is for TLS_AES_256_GCM_SHA384 (a \
                     48-byte or SHA-384 key), which vfnvme does not offer (OpenSSL gives \
                     external PSKs TLS_AES_128_GCM_SHA256 only); make a SHA-256 key with \
                     `nvme gen-tls-key --hmac 1`"
                )
            );
        }
    }

    #[test]
    fn an_unknown_secure_channel_is_refused() {
        let error = Config::parse(&config_with_psk("/x", "ssl"), "v.toml");
        assert_eq!(
            error.unwrap_err().to_string(),
            "v.toml:3: secure_channel = \"ssl\" is neither \"tls\" (TLS 1.3 with a PSK) nor \"none\""
        );
    }
}
