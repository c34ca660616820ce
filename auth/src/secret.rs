//! DH-HMAC-CHAP secrets in the representation `nvme gen-dhchap-key` prints
//! (`DHHC-1:0N:<base64 key || CRC-32>:`), and the transformed key of NVMe Base Specification
//! section 8.13.5.7, as Linux's `nvme_auth_transform_key` and SPDK's
//! `nvme_auth_transform_key` compute it.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::hash::{Digest, HashId, Mac};
use crate::representation::{self, Format, KeyFormatError};

const DHHC: Format = Format {
    prefix: "DHHC-1",
    tool: "nvme gen-dhchap-key",
    allowed: "00 (none), 01 (SHA-256), 02 (SHA-384) or 03 (SHA-512)",
    key_lens: &[32, 48, 64],
    lengths: "a DH-HMAC-CHAP secret is 32, 48 or 64 bytes followed by its 4-byte CRC-32",
};

/// The string appended to the NQN when transforming a secret.
const TRANSFORM_SEED: &[u8] = b"NVMe-over-Fabrics";

/// A DH-HMAC-CHAP secret: the key, and the hash function that transforms it into the key the
/// responses are computed with (none: the key is used as it is). Wiped when dropped; neither
/// `Debug` nor anything else prints the key unless asked by [`DhchapSecret::representation`].
pub struct DhchapSecret {
    key: Zeroizing<Vec<u8>>,
    transform: Option<HashId>,
}

impl DhchapSecret {
    /// A secret of `key` (32, 48 or 64 bytes) transformed with `transform`.
    pub fn new(key: &[u8], transform: Option<HashId>) -> Result<DhchapSecret, KeyFormatError> {
        if !DHHC.key_lens.contains(&key.len()) {
            return Err(KeyFormatError::Length {
                found: key.len(),
                expected: DHHC.lengths,
            });
        }
        Ok(DhchapSecret {
            key: Zeroizing::new(key.to_vec()),
            transform,
        })
    }

    /// Parses the `DHHC-1:0N:...:` representation.
    pub fn parse(text: &str) -> Result<DhchapSecret, KeyFormatError> {
        let (indicator, key) = representation::decode(&DHHC, text)?;
        let transform = match indicator {
            0 => None,
            id => Some(HashId::from_id(id).ok_or(KeyFormatError::Indicator {
                found: format!("{id:02}"),
                allowed: DHHC.allowed,
                prefix: DHHC.prefix,
            })?),
        };
        Ok(DhchapSecret { key, transform })
    }

    /// The `DHHC-1:0N:...:` representation: this is the secret, handle it as such.
    pub fn representation(&self) -> Zeroizing<String> {
        representation::encode(&DHHC, self.transform.map_or(0, HashId::id), &self.key)
    }

    pub fn key_len(&self) -> usize {
        self.key.len()
    }

    pub fn transform(&self) -> Option<HashId> {
        self.transform
    }

    /// The transformed key for `nqn` (the host NQN for a host secret, the subsystem NQN for
    /// a controller secret): HMAC(transform, key, NQN || "NVMe-over-Fabrics"), or the key
    /// itself when the secret names no transformation.
    pub fn transformed(&self, nqn: &str) -> Digest {
        match self.transform {
            None => Digest::from_slice(&self.key),
            Some(hash) => {
                let mut mac = Mac::new(hash, &self.key);
                mac.update(nqn.as_bytes()).update(TRANSFORM_SEED);
                mac.finish()
            }
        }
    }
}

impl FromStr for DhchapSecret {
    type Err = KeyFormatError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DhchapSecret::parse(text)
    }
}

impl fmt::Debug for DhchapSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhchapSecret")
            .field("key_len", &self.key.len())
            .field("transform", &self.transform)
            .finish_non_exhaustive()
    }
}
