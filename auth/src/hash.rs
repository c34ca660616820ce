//! The three hash functions of DH-HMAC-CHAP behind one type: HMAC computed in pieces, plain
//! hashes, and a fixed-size digest that is wiped when dropped.

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use vfnvme_spec::auth::HashId;

/// The longest digest (SHA-512).
pub const MAX_DIGEST_LEN: usize = 64;

/// A digest or key of at most 64 bytes, compared in constant time and wiped when dropped.
/// Its `Debug` shows the length only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Digest {
    bytes: [u8; MAX_DIGEST_LEN],
    len: usize,
}

impl Digest {
    /// A copy of `bytes` (at most 64).
    pub(crate) fn from_slice(bytes: &[u8]) -> Digest {
        let mut digest = Digest {
            bytes: [0; MAX_DIGEST_LEN],
            len: bytes.len(),
        };
        digest.bytes[..bytes.len()].copy_from_slice(bytes);
        digest
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `other` holds the same bytes; the time taken depends on the length only.
    pub fn matches(&self, other: &[u8]) -> bool {
        self.len == other.len() && bool::from(self.as_bytes().ct_eq(other))
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({} bytes)", self.len)
    }
}

/// An HMAC being computed with one of the hash functions.
pub(crate) enum Mac {
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl Mac {
    /// HMAC keyed with `key` (HMAC takes keys of any length).
    pub(crate) fn new(hash: HashId, key: &[u8]) -> Mac {
        // `new_from_slice` fails only for MACs with fixed key sizes, which HMAC is not.
        let invalid = "HMAC accepts keys of any length";
        match hash {
            HashId::Sha256 => Mac::Sha256(Hmac::new_from_slice(key).expect(invalid)),
            HashId::Sha384 => Mac::Sha384(Hmac::new_from_slice(key).expect(invalid)),
            HashId::Sha512 => Mac::Sha512(Hmac::new_from_slice(key).expect(invalid)),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) -> &mut Mac {
        match self {
            Mac::Sha256(m) => m.update(data),
            Mac::Sha384(m) => m.update(data),
            Mac::Sha512(m) => m.update(data),
        }
        self
    }

    pub(crate) fn finish(self) -> Digest {
        match self {
            Mac::Sha256(m) => Digest::from_slice(&m.finalize().into_bytes()),
            Mac::Sha384(m) => Digest::from_slice(&m.finalize().into_bytes()),
            Mac::Sha512(m) => Digest::from_slice(&m.finalize().into_bytes()),
        }
    }
}

/// HMAC(`hash`, `key`, `data`).
pub(crate) fn hmac(hash: HashId, key: &[u8], data: &[u8]) -> Digest {
    let mut mac = Mac::new(hash, key);
    mac.update(data);
    mac.finish()
}

/// `hash`(`data`).
pub(crate) fn digest(hash: HashId, data: &[u8]) -> Digest {
    match hash {
        HashId::Sha256 => Digest::from_slice(&Sha256::digest(data)),
        HashId::Sha384 => Digest::from_slice(&Sha384::digest(data)),
        HashId::Sha512 => Digest::from_slice(&Sha512::digest(data)),
    }
}
