//! The TLS PSKs of a subsystem's hosts as the checked configuration holds them (PSK
//! identities with their TLS PSKs) and a listener's [`SecureChannel`]; a leaf so that `types`
//! and the checks in `tls` both build on it.

use std::path::PathBuf;

use vfnvme_auth::{IdentityVersion, PskHash, TlsPsk};
use vfnvme_spec::fabrics::DISCOVERY_NQN;

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

impl HostPsk {
    /// Host `host_nqn`'s PSK `psk` (read from `file`) for subsystem `subsystem_nqn`, or why
    /// vfnvme cannot use it: only SHA-256 PSKs, as the TLS library offers external PSKs
    /// TLS_AES_128_GCM_SHA256 alone.
    pub fn new(
        psk: &TlsPsk,
        file: PathBuf,
        host_nqn: &str,
        subsystem_nqn: &str,
    ) -> Result<HostPsk, String> {
        if psk.cipher_hash() != PskHash::Sha256 {
            return Err(format!(
                "{}: the PSK of host {host_nqn} is for TLS_AES_256_GCM_SHA384 (a 48-byte or \
                 SHA-384 key), which vfnvme does not offer (OpenSSL gives external PSKs \
                 TLS_AES_128_GCM_SHA256 only); make a SHA-256 key with \
                 `nvme gen-tls-key --hmac 1`",
                file.display()
            ));
        }
        Ok(HostPsk {
            host_nqn: host_nqn.to_owned(),
            identities: identities(psk, host_nqn, subsystem_nqn),
            file,
        })
    }
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
