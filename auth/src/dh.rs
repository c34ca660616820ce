//! Finite field Diffie-Hellman over the RFC 7919 groups for DH-HMAC-CHAP: a key pair per
//! transaction, its public value and the shared secret, with constant-time modular
//! exponentiation (`crypto-bigint`'s `BoxedMontyForm`).
//!
//! Public values and the shared secret are big-endian, left-padded with zeros to the size of
//! the prime, as Linux's kpp (`crypto_kpp_maxsize`) and SPDK (`BN_bn2binpad`,
//! `EVP_PKEY_CTX_set_dh_pad`) send and hash them. A peer's value may come unpadded (shorter),
//! never longer, and must lie in [2, p - 2] (RFC 7919 section 5.1).

use std::sync::OnceLock;

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use zeroize::{Zeroize, Zeroizing};

use crate::ffdhe;
pub use vfnvme_spec::auth::DhGroupId;

/// Why a key exchange cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    #[error("the null DH group has no key exchange")]
    NullGroup,
    #[error("the peer's DH value is {found} bytes, longer than the {expected} of {group}")]
    ValueTooLong {
        found: usize,
        expected: usize,
        group: DhGroupId,
    },
    #[error("the peer's DH value is not between 2 and p - 2 of {group}")]
    ValueOutOfRange { group: DhGroupId },
    #[error("a private exponent of {group} has at most {max} bytes, not {found}")]
    ExponentTooLong {
        found: usize,
        max: usize,
        group: DhGroupId,
    },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// A group: its prime in Montgomery form parameters, and the length of private exponents.
struct Group {
    id: DhGroupId,
    prime: &'static [u8],
    params: BoxedMontyParams,
    /// Bits of a private exponent: at least twice the group's security strength (RFC 7919
    /// section 5.2 lists 225, 275, 325, 375 and 400 bits), rounded up to whole bytes.
    exponent_bits: u32,
}

impl Group {
    fn get(id: DhGroupId) -> Result<&'static Group, DhError> {
        static GROUPS: [OnceLock<Group>; 5] = [const { OnceLock::new() }; 5];
        let (index, prime, exponent_bits): (usize, &'static [u8], u32) = match id {
            DhGroupId::Null => return Err(DhError::NullGroup),
            DhGroupId::Ffdhe2048 => (0, &ffdhe::FFDHE2048, 256),
            DhGroupId::Ffdhe3072 => (1, &ffdhe::FFDHE3072, 320),
            DhGroupId::Ffdhe4096 => (2, &ffdhe::FFDHE4096, 384),
            DhGroupId::Ffdhe6144 => (3, &ffdhe::FFDHE6144, 448),
            DhGroupId::Ffdhe8192 => (4, &ffdhe::FFDHE8192, 512),
        };
        Ok(GROUPS[index].get_or_init(|| {
            let modulus =
                BoxedUint::from_be_slice(prime, bits(prime)).expect("the prime fits its own size");
            let modulus = Odd::new(modulus).expect("an FFDHE prime is odd");
            Group {
                id,
                prime,
                // The prime is public: a variable-time setup leaks nothing.
                params: BoxedMontyParams::new_vartime(modulus),
                exponent_bits,
            }
        }))
    }

    fn value(&self, bytes: &[u8]) -> BoxedUint {
        BoxedUint::from_be_slice(bytes, bits(self.prime)).expect("checked to fit the prime")
    }

    /// base^exponent mod p, padded to the prime's size.
    fn pow(&self, base: BoxedUint, exponent: &BoxedUint) -> Zeroizing<Vec<u8>> {
        let base = BoxedMontyForm::new(base, self.params.clone());
        let mut result = base
            .pow_bounded_exp(exponent, self.exponent_bits)
            .retrieve();
        let bytes = Zeroizing::new(result.to_be_bytes().into_vec());
        result.zeroize();
        bytes
    }
}

fn bits(prime: &[u8]) -> u32 {
    (prime.len() * 8) as u32
}

/// One side's ephemeral key pair for one transaction. The private exponent is wiped when
/// dropped.
pub struct DhKeyPair {
    group: &'static Group,
    private: BoxedUint,
    public: Vec<u8>,
}

impl DhKeyPair {
    /// A fresh key pair in `group` from the system's random number generator.
    pub fn generate(group: DhGroupId) -> Result<DhKeyPair, DhError> {
        let g = Group::get(group)?;
        let mut exponent = Zeroizing::new(vec![0u8; g.exponent_bits as usize / 8]);
        getrandom::fill(&mut exponent).map_err(|e| DhError::Random(e.to_string()))?;
        // The top bit set: every exponent has the full length (and is never 0 or 1).
        exponent[0] |= 0x80;
        DhKeyPair::from_exponent(group, &exponent)
    }

    /// The key pair of a given private exponent (big-endian, at most the group's exponent
    /// length): for known-answer tests.
    pub fn from_exponent(group: DhGroupId, exponent: &[u8]) -> Result<DhKeyPair, DhError> {
        let g = Group::get(group)?;
        let max = g.exponent_bits as usize / 8;
        if exponent.len() > max {
            return Err(DhError::ExponentTooLong {
                found: exponent.len(),
                max,
                group,
            });
        }
        let private =
            BoxedUint::from_be_slice(exponent, bits(g.prime)).expect("shorter than the prime");
        let public = g.pow(BoxedUint::from(2u8).widen(bits(g.prime)), &private);
        Ok(DhKeyPair {
            group: g,
            private,
            public: public.to_vec(),
        })
    }

    pub fn group(&self) -> DhGroupId {
        self.group.id
    }

    /// g^x mod p: the DH value to send.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// (peer's g^y)^x mod p: the session key both sides hash into the augmented challenge.
    pub fn shared_secret(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, DhError> {
        let g = self.group;
        if peer.len() > g.prime.len() {
            return Err(DhError::ValueTooLong {
                found: peer.len(),
                expected: g.prime.len(),
                group: g.id,
            });
        }
        let value = g.value(peer);
        let two = BoxedUint::from(2u8).widen(bits(g.prime));
        let p_minus_two = g.value(g.prime).wrapping_sub(&two);
        if value < two || value > p_minus_two {
            return Err(DhError::ValueOutOfRange { group: g.id });
        }
        Ok(g.pow(value, &self.private))
    }
}

impl Drop for DhKeyPair {
    fn drop(&mut self) {
        self.private.zeroize();
    }
}

impl std::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhKeyPair")
            .field("group", &self.group.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_pairs_agree_on_the_shared_secret() {
        for group in [DhGroupId::Ffdhe2048, DhGroupId::Ffdhe3072] {
            let host = DhKeyPair::generate(group).unwrap();
            let ctrl = DhKeyPair::generate(group).unwrap();
            assert_eq!(host.public_value().len(), group.value_len());
            assert_ne!(host.public_value(), ctrl.public_value());
            let a = host.shared_secret(ctrl.public_value()).unwrap();
            let b = ctrl.shared_secret(host.public_value()).unwrap();
            assert_eq!(a.len(), group.value_len());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn peer_values_outside_2_to_p_minus_2_are_refused() {
        let pair = DhKeyPair::generate(DhGroupId::Ffdhe2048).unwrap();
        let out_of_range = Err(DhError::ValueOutOfRange {
            group: DhGroupId::Ffdhe2048,
        });
        assert_eq!(pair.shared_secret(&[]), out_of_range);
        assert_eq!(pair.shared_secret(&[1]), out_of_range);
        let mut p_minus_one = ffdhe::FFDHE2048;
        p_minus_one[255] -= 1;
        assert_eq!(pair.shared_secret(&p_minus_one), out_of_range);
        assert_eq!(pair.shared_secret(&ffdhe::FFDHE2048), out_of_range);
        // 2 and p - 2 are in range; an unpadded value is taken as the same number.
        assert!(pair.shared_secret(&[2]).is_ok());
        assert_eq!(
            pair.shared_secret(&[0, 0, 2]).unwrap(),
            pair.shared_secret(&[2]).unwrap()
        );
        p_minus_one[255] -= 1;
        assert!(pair.shared_secret(&p_minus_one).is_ok());
        assert_eq!(
            pair.shared_secret(&[1; 257]),
            Err(DhError::ValueTooLong {
                found: 257,
                expected: 256,
                group: DhGroupId::Ffdhe2048
            })
        );
    }

    #[test]
    fn the_null_group_and_long_exponents_have_no_key_pair() {
        assert_eq!(
            DhKeyPair::generate(DhGroupId::Null).unwrap_err(),
            DhError::NullGroup
        );
        assert!(matches!(
            DhKeyPair::from_exponent(DhGroupId::Ffdhe2048, &[1; 33]),
            Err(DhError::ExponentTooLong {
                found: 33,
                max: 32,
                ..
            })
        ));
    }
}
