//! NVMe/TCP TLS 1.3 with a pre-shared key in the configuration: a `[[listener]]`'s
//! `secure_channel` and a `[[subsystem.host]]`'s `tls_psk_file`. Each PSK is read here, once,
//! and turned into the PSK identities (versions 0 and 1, for the subsystem and for the
//! discovery subsystem) and their TLS PSKs, so that the handshake only looks them up.

use std::path::{Path, PathBuf};

use toml::Spanned;
use vfnvme_auth::{read_tls_psk, IdentityVersion, PskHash, TlsPsk};
use vfnvme_spec::fabrics::DISCOVERY_NQN;

use super::raw::Source;
use super::types::ConfigError;

/// What a listener's connections run over: the plain TCP stream or TLS 1.3 with a PSK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecureChannel {
    #[default]
    None,
    Tls,
}

impl SecureChannel {
    /// The name written in `secure_channel = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            SecureChannel::None => "none",
            SecureChannel::Tls => "tls",
        }
    }
}

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

/// One PSK identity a host may present and the TLS PSK it stands for.
#[derive(Clone)]
pub struct PskIdentity {
    pub identity: String,
    pub host_nqn: String,
    /// The subsystem the identity names (this subsystem or the discovery subsystem).
    pub subsystem_nqn: String,
    pub psk: vfnvme_auth::Digest,
}

/// A host's configured TLS PSK for a subsystem, as identities ready for the handshake.
#[derive(Clone)]
pub struct HostPsk {
    pub host_nqn: String,
    /// The file it was read from, for `save_config` to name (never its content).
    pub file: PathBuf,
    /// Versions 0 and 1 for the subsystem and for the discovery subsystem.
    pub identities: Vec<PskIdentity>,
}

impl PartialEq for HostPsk {
    fn eq(&self, other: &Self) -> bool {
        self.host_nqn == other.host_nqn
            && self.identities.len() == other.identities.len()
            && self
                .identities
                .iter()
                .zip(&other.identities)
                .all(|(a, b)| a.identity == b.identity && a.psk.matches(b.psk.as_bytes()))
    }
}

impl Eq for HostPsk {}

impl std::fmt::Debug for HostPsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPsk")
            .field("host_nqn", &self.host_nqn)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The identities of `psk` between `host_nqn` and `subsystem_nqn` (and the discovery
/// subsystem).
pub fn identities(psk: &TlsPsk, host_nqn: &str, subsystem_nqn: &str) -> Vec<PskIdentity> {
    let mut identities = Vec::with_capacity(4);
    for subsystem in [subsystem_nqn, DISCOVERY_NQN] {
        for version in [IdentityVersion::V0, IdentityVersion::V1] {
            let credentials = psk.credentials(host_nqn, subsystem, version);
            identities.push(PskIdentity {
                identity: credentials.identity.clone(),
                host_nqn: host_nqn.to_owned(),
                subsystem_nqn: subsystem.to_owned(),
                psk: credentials.psk.clone(),
            });
        }
    }
    identities
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
    if psk.cipher_hash() != PskHash::Sha256 {
        return source.invalid(
            span,
            format!(
                "{}: the PSK of host {host_nqn} is for TLS_AES_256_GCM_SHA384 (a 48-byte or \
                 SHA-384 key), which vfnvme does not offer (OpenSSL gives external PSKs \
                 TLS_AES_128_GCM_SHA256 only); make a SHA-256 key with \
                 `nvme gen-tls-key --hmac 1`",
                path.display()
            ),
        );
    }
    Ok(HostPsk {
        host_nqn: host_nqn.to_owned(),
        identities: identities(&psk, host_nqn, subsystem_nqn),
        file: path,
    })
}
