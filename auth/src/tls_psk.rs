//! NVMe/TCP TLS pre-shared keys: the PSK interchange format `nvme gen-tls-key` prints
//! (`NVMeTLSkey-1:0N:<base64 PSK || CRC-32>:`), the retained PSK, the PSK identity and the
//! TLS PSK derived from it (NVMe/TCP TP 8011, TP 8018 section 3.6.1.3), as libnvme
//! (`derive_retained_key`, `gen_tls_identity`, `derive_psk_digest`, `derive_tls_key`) and Linux
//! (`nvme_auth_generate_digest`, `nvme_auth_derive_tls_psk`) compute them.
//!
//! Both derivations are HKDF-Extract with an all-zero salt followed by TLS 1.3's
//! HKDF-Expand-Label (RFC 8446 section 7.1: the label gets the `tls13 ` prefix):
//!
//! ```text
//! retained PSK = HKDF-Expand-Label(HKDF-Extract(0, configured PSK), "HostNQN", NQNh, L)
//! TLS PSK      = HKDF-Expand-Label(HKDF-Extract(0, retained PSK), "nvme-tls-psk", context, L)
//!   identity 0: "NVMe0R0<c> NQNh NQNc"            context: the identity
//!   identity 1: "NVMe1R0<c> NQNh NQNc <digest>"   context: "0<c> <digest>"
//!   digest = base64(HMAC(c, retained PSK, NQNh || " " || NQNc || " " || "NVMe-over-Fabrics"))
//! ```
//!
//! `<c>` is the hash of the cipher suite: the PSK's own transformation hash, or by length
//! (32 bytes: SHA-256, 48 bytes: SHA-384) for a PSK used as it is (libnvme's `default_hmac`).
//! libnvme's pre-2.x "compat" derivation (label without its length bytes) is not provided.

use std::fmt;

use base64::Engine;
use hkdf::Hkdf;
use sha2::{Sha256, Sha384};
use zeroize::Zeroizing;

use crate::hash::{self, Digest, HashId};
use crate::representation::{self, Format, KeyFormatError};

const TLS_KEY: Format = Format {
    prefix: "NVMeTLSkey-1",
    tool: "nvme gen-tls-key",
    allowed: "00 (none), 01 (SHA-256) or 02 (SHA-384)",
    key_lens: &[32, 48],
    lengths: "a TLS PSK is 32 or 48 bytes followed by its 4-byte CRC-32",
};

/// The hash functions of NVMe/TCP TLS: those of TLS_AES_128_GCM_SHA256 and
/// TLS_AES_256_GCM_SHA384.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PskHash {
    Sha256 = 1,
    Sha384 = 2,
}

impl PskHash {
    fn from_indicator(indicator: u8) -> Option<Option<PskHash>> {
        match indicator {
            0 => Some(None),
            1 => Some(Some(PskHash::Sha256)),
            2 => Some(Some(PskHash::Sha384)),
            _ => None,
        }
    }

    pub fn len(self) -> usize {
        self.hash().digest_len()
    }

    pub fn is_empty(self) -> bool {
        false
    }

    fn hash(self) -> HashId {
        match self {
            PskHash::Sha256 => HashId::Sha256,
            PskHash::Sha384 => HashId::Sha384,
        }
    }
}

/// Which PSK identity: version 0 (`NVMe0R..`, what Linux 6.7+ and SPDK's `--psk-identity`
/// examples use) or version 1 with the PSK digest (`NVMe1R..`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityVersion {
    V0,
    V1,
}

/// A configured PSK and the hash that turns it into the retained PSK (none: it is the
/// retained PSK). Wiped when dropped; `Debug` shows no key.
pub struct TlsPsk {
    key: Zeroizing<Vec<u8>>,
    transform: Option<PskHash>,
}

/// A PSK identity and the TLS PSK that goes with it.
pub struct TlsCredentials {
    pub identity: String,
    pub psk: Digest,
}

impl TlsPsk {
    /// `key` (32 or 48 bytes; exactly the hash's length when `transform` names one).
    pub fn new(key: &[u8], transform: Option<PskHash>) -> Result<TlsPsk, KeyFormatError> {
        let fits = match transform {
            None => TLS_KEY.key_lens.contains(&key.len()),
            Some(hash) => key.len() == hash.len(),
        };
        if !fits {
            return Err(KeyFormatError::Length {
                found: key.len(),
                expected: "a TLS PSK is 32 bytes for SHA-256 (01), 48 for SHA-384 (02), \
                           either for none (00)",
            });
        }
        Ok(TlsPsk {
            key: Zeroizing::new(key.to_vec()),
            transform,
        })
    }

    /// Parses the PSK interchange format `NVMeTLSkey-1:0N:...:`.
    pub fn parse(text: &str) -> Result<TlsPsk, KeyFormatError> {
        let (indicator, key) = representation::decode(&TLS_KEY, text)?;
        let transform = PskHash::from_indicator(indicator).ok_or(KeyFormatError::Indicator {
            found: format!("{indicator:02}"),
            allowed: TLS_KEY.allowed,
            prefix: TLS_KEY.prefix,
        })?;
        TlsPsk::new(&key, transform)
    }

    /// The interchange format: this is the key, handle it as such.
    pub fn representation(&self) -> Zeroizing<String> {
        representation::encode(&TLS_KEY, self.transform.map_or(0, |h| h as u8), &self.key)
    }

    /// The hash of the cipher suite this PSK is for.
    pub fn cipher_hash(&self) -> PskHash {
        self.transform.unwrap_or(if self.key.len() == 32 {
            PskHash::Sha256
        } else {
            PskHash::Sha384
        })
    }

    /// The retained PSK for the host `host_nqn`.
    pub fn retained(&self, host_nqn: &str) -> Digest {
        match self.transform {
            None => Digest::from_slice(&self.key),
            Some(hash) => expand_label(hash, &self.key, b"HostNQN", host_nqn.as_bytes()),
        }
    }

    /// The PSK identity and TLS PSK between `host_nqn` and `subsystem_nqn`.
    pub fn credentials(
        &self,
        host_nqn: &str,
        subsystem_nqn: &str,
        version: IdentityVersion,
    ) -> TlsCredentials {
        let cipher = self.cipher_hash();
        let c = cipher as u8;
        let retained = self.retained(host_nqn);
        let (identity, context) = match version {
            IdentityVersion::V0 => {
                let identity = format!("NVMe0R{c:02} {host_nqn} {subsystem_nqn}");
                (identity.clone(), identity)
            }
            IdentityVersion::V1 => {
                let digest = psk_digest(cipher, &retained, host_nqn, subsystem_nqn);
                (
                    format!("NVMe1R{c:02} {host_nqn} {subsystem_nqn} {digest}"),
                    format!("{c:02} {digest}"),
                )
            }
        };
        let psk = expand_label(
            cipher,
            retained.as_bytes(),
            b"nvme-tls-psk",
            context.as_bytes(),
        );
        TlsCredentials { identity, psk }
    }
}

/// base64(HMAC(cipher, retained, NQNh " " NQNc " NVMe-over-Fabrics")).
fn psk_digest(cipher: PskHash, retained: &Digest, host_nqn: &str, subsystem_nqn: &str) -> String {
    let data = format!("{host_nqn} {subsystem_nqn} NVMe-over-Fabrics");
    let mac = hash::hmac(cipher.hash(), retained.as_bytes(), data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.as_bytes())
}

/// HKDF-Expand-Label(HKDF-Extract(0, ikm), label, context, len(ikm)).
fn expand_label(hash: PskHash, ikm: &[u8], label: &[u8], context: &[u8]) -> Digest {
    const PREFIX: &[u8] = b"tls13 ";
    let len = ikm.len();
    let mut info = Vec::with_capacity(4 + PREFIX.len() + label.len() + context.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push((PREFIX.len() + label.len()) as u8);
    info.extend_from_slice(PREFIX);
    info.extend_from_slice(label);
    // NQNs are at most 223 bytes and digests 64: a context always fits its length byte.
    info.push(context.len().min(255) as u8);
    info.extend_from_slice(&context[..context.len().min(255)]);
    let mut okm = Zeroizing::new([0u8; hash::MAX_DIGEST_LEN]);
    // Expand fails only for outputs over 255 hash lengths; ours is one.
    let too_long = "one hash length of output";
    match hash {
        PskHash::Sha256 => Hkdf::<Sha256>::new(None, ikm)
            .expand(&info, &mut okm[..len])
            .expect(too_long),
        PskHash::Sha384 => Hkdf::<Sha384>::new(None, ikm)
            .expand(&info, &mut okm[..len])
            .expect(too_long),
    }
    Digest::from_slice(&okm[..len])
}

impl fmt::Debug for TlsPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPsk")
            .field("key_len", &self.key.len())
            .field("transform", &self.transform)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TlsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCredentials")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}
