//! The DH-HMAC-CHAP responses (NVMe Base Specification section 8.13.5.4/8.13.5.5), byte for
//! byte as Linux (`nvme_auth_dhchap_setup_host_response`, `..._ctrl_response`, nvmet's
//! `nvmet_auth_host_hash` / `nvmet_auth_ctrl_hash`) and SPDK (`spdk_nvme_dhchap_calculate`)
//! compute them:
//!
//! ```text
//! R1 = HMAC(Kh, Ca1 || LE32(S1) || LE16(T) || SC_C || "HostHost"   || NQNh || 00h || NQNc)
//! R2 = HMAC(Kc, Ca2 || LE32(S2) || LE16(T) || SC_C || "Controller" || NQNc || 00h || NQNh)
//! Ca = C, or HMAC(H(g^xy mod p), C) with a DH group (the augmented challenge)
//! ```
//!
//! Kh is the host secret transformed with NQNh, Kc the controller secret transformed with
//! NQNc ([`crate::DhchapSecret::transformed`]).

use crate::hash::{self, Digest, HashId, Mac};

/// What both responses of one transaction are computed over, besides key and challenge.
#[derive(Clone, Copy, Debug)]
pub struct Transaction<'a> {
    /// The negotiated hash function.
    pub hash: HashId,
    /// T: the transaction identifier of the Negotiate.
    pub t_id: u16,
    /// SC_C of the Negotiate (0: no secure channel concatenation).
    pub sc_c: u8,
    pub host_nqn: &'a str,
    pub subsystem_nqn: &'a str,
    /// g^xy mod p as big-endian bytes the size of the prime; `None` for the null DH group.
    pub session_key: Option<&'a [u8]>,
}

impl Transaction<'_> {
    /// R1: the host's response to the controller's challenge C1 with sequence number S1.
    pub fn host_response(&self, host_key: &Digest, challenge: &[u8], seqnum: u32) -> Digest {
        self.response(
            host_key,
            challenge,
            seqnum,
            b"HostHost",
            self.host_nqn,
            self.subsystem_nqn,
        )
    }

    /// R2: the controller's response to the host's challenge C2 with sequence number S2.
    pub fn controller_response(&self, ctrl_key: &Digest, challenge: &[u8], seqnum: u32) -> Digest {
        self.response(
            ctrl_key,
            challenge,
            seqnum,
            b"Controller",
            self.subsystem_nqn,
            self.host_nqn,
        )
    }

    fn response(
        &self,
        key: &Digest,
        challenge: &[u8],
        seqnum: u32,
        role: &[u8],
        first_nqn: &str,
        second_nqn: &str,
    ) -> Digest {
        let augmented = self
            .session_key
            .map(|session_key| augmented_challenge(self.hash, challenge, session_key));
        let challenge = augmented.as_ref().map_or(challenge, Digest::as_bytes);
        let mut mac = Mac::new(self.hash, key.as_bytes());
        mac.update(challenge)
            .update(&seqnum.to_le_bytes())
            .update(&self.t_id.to_le_bytes())
            .update(&[self.sc_c])
            .update(role)
            .update(first_nqn.as_bytes())
            .update(&[0])
            .update(second_nqn.as_bytes());
        mac.finish()
    }
}

/// The augmented challenge: HMAC(H(session key), challenge), as Linux's
/// `nvme_auth_augmented_challenge` and SPDK's `nvme_auth_augment_challenge`.
pub fn augmented_challenge(hash: HashId, challenge: &[u8], session_key: &[u8]) -> Digest {
    let hashed_key = hash::digest(hash, session_key);
    hash::hmac(hash, hashed_key.as_bytes(), challenge)
}
