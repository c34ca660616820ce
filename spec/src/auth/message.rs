//! The DH-HMAC-CHAP messages decoded (checked once, borrowing the transferred bytes) and
//! encoded.
//!
//! Length rules: a message the controller receives (Negotiate, Reply, Success2, Failure2) must
//! be exactly as long as its fields say, as SPDK's target requires (TL is the message); one the
//! host receives (Challenge, Success1, Failure1) may be followed by unused bytes, as the Linux
//! host reads them into a 4 KiB buffer with AL 4096 and ignores the rest.

use std::mem::size_of;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromZeros, IntoBytes};

use super::wire::{
    auth_id, auth_type, fixed_part, header, ChallengeLayout, DhGroupId, FailureLayout,
    FailureReason, HashId, MessageError, MessageHeader, NegotiateLayout, ProtocolDescriptorLayout,
    ReplyLayout, Success1Layout, Success2Layout, MAX_IDS, PROTOCOL_DHCHAP,
    REASON_AUTHENTICATION_FAILURE,
};

const NEGOTIATE_LEN: usize = size_of::<NegotiateLayout>();
const DESCRIPTOR_LEN: usize = size_of::<ProtocolDescriptorLayout>();
const DHCHAP_HEADER_LEN: usize = 16;
const FAILURE_LEN: usize = size_of::<FailureLayout>();

/// One authentication protocol descriptor of a Negotiate: the hash functions and DH groups
/// the host offers, as identifiers (unknown ones are kept; the controller skips them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhchapProtocol {
    /// AUTHID: [`PROTOCOL_DHCHAP`] for DH-HMAC-CHAP.
    pub auth_id: u8,
    pub hash_ids: Vec<u8>,
    pub dh_group_ids: Vec<u8>,
}

impl DhchapProtocol {
    /// A DH-HMAC-CHAP descriptor offering `hashes` and `groups`, in the order given.
    pub fn offering(hashes: &[HashId], groups: &[DhGroupId]) -> Self {
        Self {
            auth_id: PROTOCOL_DHCHAP,
            hash_ids: hashes.iter().map(|h| h.id()).collect(),
            dh_group_ids: groups.iter().map(|g| g.id()).collect(),
        }
    }

    /// The hash functions offered that this crate knows.
    pub fn hashes(&self) -> impl Iterator<Item = HashId> + '_ {
        self.hash_ids.iter().filter_map(|&id| HashId::from_id(id))
    }

    /// The DH groups offered that this crate knows.
    pub fn dh_groups(&self) -> impl Iterator<Item = DhGroupId> + '_ {
        self.dh_group_ids
            .iter()
            .filter_map(|&id| DhGroupId::from_id(id))
    }
}

/// AUTH_Negotiate (host to controller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiate {
    pub t_id: u16,
    /// Secure channel concatenation, see [`super::sc_c`].
    pub sc_c: u8,
    pub protocols: Vec<DhchapProtocol>,
}

impl Negotiate {
    /// The first DH-HMAC-CHAP descriptor, if the host offers that protocol.
    pub fn dhchap(&self) -> Option<&DhchapProtocol> {
        self.protocols.iter().find(|p| p.auth_id == PROTOCOL_DHCHAP)
    }

    fn decode(bytes: &[u8]) -> Result<Negotiate, MessageError> {
        let fixed: NegotiateLayout = fixed_part(bytes, "the Negotiate is shorter than 8 bytes")?;
        let napd = usize::from(fixed.napd);
        if bytes.len() != NEGOTIATE_LEN + napd * DESCRIPTOR_LEN {
            return Err(MessageError::incorrect_payload(
                "the Negotiate's length is not 8 + 64 bytes per protocol descriptor (NAPD)",
            ));
        }
        let mut protocols = Vec::with_capacity(napd);
        for chunk in bytes[NEGOTIATE_LEN..].chunks_exact(DESCRIPTOR_LEN) {
            let d: ProtocolDescriptorLayout = fixed_part(chunk, "short protocol descriptor")?;
            let (halen, dhlen) = (usize::from(d.halen), usize::from(d.dhlen));
            if halen > MAX_IDS || dhlen > MAX_IDS {
                return Err(MessageError::incorrect_payload(
                    "a protocol descriptor lists more than 30 hash functions or DH groups",
                ));
            }
            protocols.push(DhchapProtocol {
                auth_id: d.auth_id,
                hash_ids: d.hash_ids[..halen].to_vec(),
                dh_group_ids: d.dh_group_ids[..dhlen].to_vec(),
            });
        }
        Ok(Negotiate {
            t_id: fixed.header.t_id.get(),
            sc_c: fixed.sc_c,
            protocols,
        })
    }

    /// The message; lists longer than 30 identifiers are cut at 30.
    pub fn to_bytes(&self) -> Vec<u8> {
        let napd = self.protocols.len().min(usize::from(u8::MAX));
        let mut out = NegotiateLayout {
            header: header(auth_type::COMMON, auth_id::NEGOTIATE, self.t_id),
            sc_c: self.sc_c,
            napd: napd as u8,
        }
        .as_bytes()
        .to_vec();
        for protocol in &self.protocols[..napd] {
            let mut d = ProtocolDescriptorLayout::new_zeroed();
            let halen = protocol.hash_ids.len().min(MAX_IDS);
            let dhlen = protocol.dh_group_ids.len().min(MAX_IDS);
            d.auth_id = protocol.auth_id;
            d.halen = halen as u8;
            d.dhlen = dhlen as u8;
            d.hash_ids[..halen].copy_from_slice(&protocol.hash_ids[..halen]);
            d.dh_group_ids[..dhlen].copy_from_slice(&protocol.dh_group_ids[..dhlen]);
            out.extend_from_slice(d.as_bytes());
        }
        out
    }
}

/// DH-HMAC-CHAP_Challenge (controller to host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub t_id: u16,
    pub hash: HashId,
    pub dh_group: DhGroupId,
    /// S1.
    pub seqnum: u32,
    /// C1, `hash.digest_len()` bytes.
    pub challenge: &'a [u8],
    /// The controller's DH public value (empty for the null group).
    pub dh_value: &'a [u8],
}

impl<'a> Challenge<'a> {
    fn decode(bytes: &'a [u8]) -> Result<Challenge<'a>, MessageError> {
        let fixed: ChallengeLayout = fixed_part(bytes, "the Challenge is shorter than 16 bytes")?;
        let hash = HashId::from_id(fixed.hash_id).ok_or(MessageError::new(
            FailureReason::HashUnusable,
            "the Challenge names an unknown hash function",
        ))?;
        if usize::from(fixed.hl) != hash.digest_len() {
            return Err(MessageError::new(
                FailureReason::HashUnusable,
                "the Challenge's HL is not the length of its hash function",
            ));
        }
        let dh_group = DhGroupId::from_id(fixed.dh_group_id).ok_or(MessageError::new(
            FailureReason::DhGroupUnusable,
            "the Challenge names an unknown DH group",
        ))?;
        let dhvlen = usize::from(fixed.dhvlen.get());
        match (dh_group, dhvlen) {
            (DhGroupId::Null, 1..) => {
                return Err(MessageError::incorrect_payload(
                    "the Challenge carries a DH value for the null DH group",
                ))
            }
            (DhGroupId::Null, 0) => {}
            (_, 0) => {
                return Err(MessageError::new(
                    FailureReason::DhGroupUnusable,
                    "the Challenge names a DH group but carries no DH value",
                ))
            }
            _ => {}
        }
        let values = &bytes[DHCHAP_HEADER_LEN..];
        if values.len() < hash.digest_len() + dhvlen {
            return Err(MessageError::incorrect_payload(
                "the Challenge is shorter than 16 + HL + DHVLEN bytes",
            ));
        }
        let (challenge, rest) = values.split_at(hash.digest_len());
        Ok(Challenge {
            t_id: fixed.header.t_id.get(),
            hash,
            dh_group,
            seqnum: fixed.seqnum.get(),
            challenge,
            dh_value: &rest[..dhvlen],
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = ChallengeLayout {
            header: header(auth_type::DHCHAP, auth_id::CHALLENGE, self.t_id),
            hl: self.challenge.len() as u8,
            reserved: 0,
            hash_id: self.hash.id(),
            dh_group_id: self.dh_group.id(),
            dhvlen: U16::new(self.dh_value.len() as u16),
            seqnum: U32::new(self.seqnum),
        }
        .as_bytes()
        .to_vec();
        out.extend_from_slice(self.challenge);
        out.extend_from_slice(self.dh_value);
        out
    }
}

/// DH-HMAC-CHAP_Reply (host to controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    pub t_id: u16,
    /// S2: 0 unless the host sends a challenge.
    pub seqnum: u32,
    /// R1, HL bytes.
    pub response: &'a [u8],
    /// C2 (HL bytes) when the host asks the controller to authenticate itself (CVALID).
    pub challenge: Option<&'a [u8]>,
    /// The host's DH public value (empty for the null group).
    pub dh_value: &'a [u8],
}

impl<'a> Reply<'a> {
    fn decode(bytes: &'a [u8]) -> Result<Reply<'a>, MessageError> {
        let fixed: ReplyLayout = fixed_part(bytes, "the Reply is shorter than 16 bytes")?;
        let hl = usize::from(fixed.hl);
        if !HashId::ALL.iter().any(|h| h.digest_len() == hl) {
            return Err(MessageError::incorrect_payload(
                "the Reply's HL is not the length of a hash function",
            ));
        }
        let dhvlen = usize::from(fixed.dhvlen.get());
        // SPDK's target refuses these; every FFDHE value is a multiple of 4 bytes.
        if dhvlen % 4 != 0 {
            return Err(MessageError::incorrect_payload(
                "the Reply's DHVLEN is not a multiple of 4",
            ));
        }
        if bytes.len() != DHCHAP_HEADER_LEN + 2 * hl + dhvlen {
            return Err(MessageError::incorrect_payload(
                "the Reply's length is not 16 + 2 * HL + DHVLEN bytes",
            ));
        }
        let seqnum = fixed.seqnum.get();
        let has_challenge = match fixed.cvalid {
            0 => false,
            1 if seqnum == 0 => {
                return Err(MessageError::incorrect_payload(
                    "the Reply has a challenge (CVALID) with sequence number 0",
                ))
            }
            1 => true,
            _ => {
                return Err(MessageError::incorrect_payload(
                    "the Reply's CVALID is neither 0 nor 1",
                ))
            }
        };
        let values = &bytes[DHCHAP_HEADER_LEN..];
        let (response, rest) = values.split_at(hl);
        let (challenge, dh_value) = rest.split_at(hl);
        Ok(Reply {
            t_id: fixed.header.t_id.get(),
            seqnum,
            response,
            challenge: has_challenge.then_some(challenge),
            dh_value,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let hl = self.response.len();
        let mut out = ReplyLayout {
            header: header(auth_type::DHCHAP, auth_id::REPLY, self.t_id),
            hl: hl as u8,
            cvalid: u8::from(self.challenge.is_some()),
            dhvlen: U16::new(self.dh_value.len() as u16),
            seqnum: U32::new(self.seqnum),
            ..ReplyLayout::new_zeroed()
        }
        .as_bytes()
        .to_vec();
        out.extend_from_slice(self.response);
        match self.challenge {
            Some(challenge) => out.extend_from_slice(challenge),
            None => out.resize(out.len() + hl, 0),
        }
        out.extend_from_slice(self.dh_value);
        out
    }
}

/// DH-HMAC-CHAP_Success1 (controller to host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Success1<'a> {
    pub t_id: u16,
    /// HL: the negotiated hash's length, set even without a response.
    pub hl: u8,
    /// R2 when the host sent a challenge (RVALID).
    pub response: Option<&'a [u8]>,
}

impl<'a> Success1<'a> {
    fn decode(bytes: &'a [u8]) -> Result<Success1<'a>, MessageError> {
        let fixed: Success1Layout = fixed_part(bytes, "the Success1 is shorter than 16 bytes")?;
        let hl = usize::from(fixed.hl);
        let response = match fixed.rvalid {
            0 => None,
            1 => Some(bytes.get(DHCHAP_HEADER_LEN..DHCHAP_HEADER_LEN + hl).ok_or(
                MessageError::incorrect_payload("the Success1 is shorter than 16 + HL bytes"),
            )?),
            _ => {
                return Err(MessageError::incorrect_payload(
                    "the Success1's RVALID is neither 0 nor 1",
                ))
            }
        };
        Ok(Success1 {
            t_id: fixed.header.t_id.get(),
            hl: fixed.hl,
            response,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Success1Layout {
            header: header(auth_type::DHCHAP, auth_id::SUCCESS1, self.t_id),
            hl: self.hl,
            rvalid: u8::from(self.response.is_some()),
            ..Success1Layout::new_zeroed()
        }
        .as_bytes()
        .to_vec();
        if let Some(response) = self.response {
            out.extend_from_slice(response);
        }
        out
    }
}

/// DH-HMAC-CHAP_Success2 (host to controller): the host accepted the controller's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Success2 {
    pub t_id: u16,
}

impl Success2 {
    fn decode(bytes: &[u8]) -> Result<Success2, MessageError> {
        if bytes.len() != size_of::<Success2Layout>() {
            return Err(MessageError::incorrect_payload(
                "the Success2 is not 16 bytes",
            ));
        }
        let fixed: Success2Layout = fixed_part(bytes, "the Success2 is not 16 bytes")?;
        Ok(Success2 {
            t_id: fixed.header.t_id.get(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        Success2Layout {
            header: header(auth_type::DHCHAP, auth_id::SUCCESS2, self.t_id),
            reserved: [0; 10],
        }
        .as_bytes()
        .to_vec()
    }
}

/// AUTH_Failure1 (controller to host) or AUTH_Failure2 (host to controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub t_id: u16,
    /// Reason code: [`REASON_AUTHENTICATION_FAILURE`].
    pub reason_code: u8,
    /// Reason code explanation: a [`FailureReason`] code (kept as sent).
    pub explanation: u8,
}

impl Failure {
    /// The failure of transaction `t_id` for `reason`.
    pub fn new(t_id: u16, reason: FailureReason) -> Self {
        Self {
            t_id,
            reason_code: REASON_AUTHENTICATION_FAILURE,
            explanation: reason.code(),
        }
    }

    /// The explanation, if it is one the spec defines.
    pub fn reason(&self) -> Option<FailureReason> {
        FailureReason::from_code(self.explanation)
    }

    fn decode(bytes: &[u8], exact: bool) -> Result<Failure, MessageError> {
        if exact && bytes.len() != FAILURE_LEN {
            return Err(MessageError::incorrect_payload(
                "the Failure2 is not 8 bytes",
            ));
        }
        let fixed: FailureLayout = fixed_part(bytes, "the Failure is shorter than 8 bytes")?;
        Ok(Failure {
            t_id: fixed.header.t_id.get(),
            reason_code: fixed.reason_code,
            explanation: fixed.explanation,
        })
    }

    fn to_bytes(self, id: u8) -> Vec<u8> {
        FailureLayout {
            header: header(auth_type::COMMON, id, self.t_id),
            reason_code: self.reason_code,
            explanation: self.explanation,
        }
        .as_bytes()
        .to_vec()
    }
}

/// Any authentication message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Negotiate(Negotiate),
    Challenge(Challenge<'a>),
    Reply(Reply<'a>),
    Success1(Success1<'a>),
    Success2(Success2),
    Failure1(Failure),
    Failure2(Failure),
}

impl<'a> Message<'a> {
    /// Decodes the message that is `bytes` (the TL bytes of an Authentication Send, or what an
    /// Authentication Receive returned). An AUTH-TYPE / AUTH-ID pair that names no message is
    /// an incorrect protocol message.
    pub fn decode(bytes: &'a [u8]) -> Result<Message<'a>, MessageError> {
        let h: MessageHeader = fixed_part(bytes, "the message is shorter than its header")?;
        Ok(match (h.auth_type, h.auth_id) {
            (auth_type::COMMON, auth_id::NEGOTIATE) => {
                Message::Negotiate(Negotiate::decode(bytes)?)
            }
            (auth_type::COMMON, auth_id::FAILURE1) => {
                Message::Failure1(Failure::decode(bytes, false)?)
            }
            (auth_type::COMMON, auth_id::FAILURE2) => {
                Message::Failure2(Failure::decode(bytes, true)?)
            }
            (auth_type::DHCHAP, auth_id::CHALLENGE) => {
                Message::Challenge(Challenge::decode(bytes)?)
            }
            (auth_type::DHCHAP, auth_id::REPLY) => Message::Reply(Reply::decode(bytes)?),
            (auth_type::DHCHAP, auth_id::SUCCESS1) => Message::Success1(Success1::decode(bytes)?),
            (auth_type::DHCHAP, auth_id::SUCCESS2) => Message::Success2(Success2::decode(bytes)?),
            _ => {
                return Err(MessageError::new(
                    FailureReason::IncorrectProtocolMessage,
                    "the AUTH-TYPE and AUTH-ID name no authentication message",
                ))
            }
        })
    }

    /// The transaction identifier the message carries.
    pub fn t_id(&self) -> u16 {
        match self {
            Message::Negotiate(m) => m.t_id,
            Message::Challenge(m) => m.t_id,
            Message::Reply(m) => m.t_id,
            Message::Success1(m) => m.t_id,
            Message::Success2(m) => m.t_id,
            Message::Failure1(m) | Message::Failure2(m) => m.t_id,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Negotiate(m) => m.to_bytes(),
            Message::Challenge(m) => m.to_bytes(),
            Message::Reply(m) => m.to_bytes(),
            Message::Success1(m) => m.to_bytes(),
            Message::Success2(m) => m.to_bytes(),
            Message::Failure1(m) => m.to_bytes(auth_id::FAILURE1),
            Message::Failure2(m) => m.to_bytes(auth_id::FAILURE2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{sc_c, AuthCommand, AuthDirection, SECP_NVME};
    use crate::fabrics::fctype;
    use crate::status::generic;
    use crate::Command;

    /// The Negotiate the Linux host sends (`nvme_auth_set_dhchap_negotiate_data`): one
    /// descriptor, SHA-256/384/512 and every group, laid out by byte offset here.
    fn linux_negotiate(t_id: u16) -> Vec<u8> {
        let mut b = vec![0u8; 72];
        b[0] = 0x00; // AUTH-TYPE common
        b[1] = 0x00; // Negotiate
        b[4..6].copy_from_slice(&t_id.to_le_bytes());
        b[6] = 0; // SC_C
        b[7] = 1; // NAPD
        b[8] = 1; // AUTHID DH-HMAC-CHAP
        b[10] = 3; // HALEN
        b[11] = 6; // DHLEN
        b[12..15].copy_from_slice(&[1, 2, 3]);
        b[42..48].copy_from_slice(&[0, 1, 2, 3, 4, 5]); // idlist[30..]
        b
    }

    #[test]
    fn negotiate_decodes_the_linux_hosts_layout_and_encodes_it_back() {
        let bytes = linux_negotiate(0x1234);
        let Message::Negotiate(n) = Message::decode(&bytes).unwrap() else {
            panic!("not a Negotiate")
        };
        assert_eq!(n.t_id, 0x1234);
        assert_eq!(n.sc_c, sc_c::NONE);
        let p = n.dhchap().unwrap();
        assert_eq!(p.hashes().collect::<Vec<_>>(), HashId::ALL);
        assert_eq!(p.dh_groups().collect::<Vec<_>>(), DhGroupId::ALL);
        assert_eq!(n.to_bytes(), bytes);
        let built = Negotiate {
            t_id: 0x1234,
            sc_c: sc_c::NONE,
            protocols: vec![DhchapProtocol::offering(&HashId::ALL, &DhGroupId::ALL)],
        };
        assert_eq!(built.to_bytes(), bytes);
    }

    #[test]
    fn negotiate_lengths_that_disagree_with_napd_are_incorrect_payload() {
        let mut bytes = linux_negotiate(1);
        bytes.push(0);
        let err = Message::decode(&bytes).unwrap_err();
        assert_eq!(err.reason, FailureReason::IncorrectPayload);
        assert_eq!(err.reason.code(), 0x06);
        let mut bytes = linux_negotiate(1);
        bytes[7] = 2;
        assert_eq!(
            Message::decode(&bytes).unwrap_err().reason,
            FailureReason::IncorrectPayload
        );
        let mut bytes = linux_negotiate(1);
        bytes[10] = 31;
        let err = Message::decode(&bytes).unwrap_err();
        assert_eq!(err.reason, FailureReason::IncorrectPayload);
        assert_eq!(
            err.to_string(),
            "a protocol descriptor lists more than 30 hash functions or DH groups \
             (answer: AUTH_Failure, incorrect payload)"
        );
        assert_eq!(
            Message::decode(&bytes[..5]).unwrap_err().reason,
            FailureReason::IncorrectPayload
        );
    }

    #[test]
    fn unknown_message_is_an_incorrect_protocol_message() {
        let mut bytes = linux_negotiate(1);
        bytes[1] = auth_id::CHALLENGE; // a DH-HMAC-CHAP id under the common type
        let err = Message::decode(&bytes).unwrap_err();
        assert_eq!(err.reason, FailureReason::IncorrectProtocolMessage);
        assert_eq!(err.reason.code(), 0x07);
        bytes[0] = 2;
        assert_eq!(
            Message::decode(&bytes).unwrap_err().reason,
            FailureReason::IncorrectProtocolMessage
        );
    }

    #[test]
    fn challenge_round_trips_with_fields_at_their_offsets() {
        let c1 = [0xaa; 48];
        let dhv = [0x55; 384];
        let challenge = Challenge {
            t_id: 7,
            hash: HashId::Sha384,
            dh_group: DhGroupId::Ffdhe3072,
            seqnum: 0x0102_0304,
            challenge: &c1,
            dh_value: &dhv,
        };
        let bytes = challenge.to_bytes();
        assert_eq!(bytes.len(), 16 + 48 + 384);
        assert_eq!(&bytes[..8], &[1, 1, 0, 0, 7, 0, 48, 0]);
        assert_eq!(bytes[8], 2); // HashID SHA-384
        assert_eq!(bytes[9], 2); // DHGID ffdhe3072
        assert_eq!(&bytes[10..12], &384u16.to_le_bytes());
        assert_eq!(&bytes[12..16], &[4, 3, 2, 1]);
        assert_eq!(
            Message::decode(&bytes).unwrap(),
            Message::Challenge(challenge)
        );
        // Unused bytes after the message (the host's 4 KiB buffer) are ignored.
        let mut padded = bytes.clone();
        padded.resize(4096, 0);
        assert_eq!(
            Message::decode(&padded).unwrap(),
            Message::Challenge(challenge)
        );
        assert_eq!(
            Message::decode(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .reason,
            FailureReason::IncorrectPayload
        );
    }

    #[test]
    fn challenge_checks_hash_and_group_against_the_values() {
        let c1 = [1u8; 32];
        let base = Challenge {
            t_id: 1,
            hash: HashId::Sha256,
            dh_group: DhGroupId::Null,
            seqnum: 1,
            challenge: &c1,
            dh_value: &[],
        };
        let mut bytes = base.to_bytes();
        bytes[8] = 9;
        assert_eq!(
            Message::decode(&bytes).unwrap_err().reason,
            FailureReason::HashUnusable
        );
        let mut bytes = base.to_bytes();
        bytes[6] = 48; // HL of another hash
        assert_eq!(
            Message::decode(&bytes).unwrap_err().reason,
            FailureReason::HashUnusable
        );
        let mut bytes = base.to_bytes();
        bytes[9] = 6;
        assert_eq!(
            Message::decode(&bytes).unwrap_err().reason,
            FailureReason::DhGroupUnusable
        );
        let mut bytes = base.to_bytes();
        bytes[9] = DhGroupId::Ffdhe2048.id(); // a group but DHVLEN 0
        assert_eq!(
            Message::decode(&bytes).unwrap_err().reason,
            FailureReason::DhGroupUnusable
        );
        let dhv = [3u8; 4];
        let with_value = Challenge {
            dh_value: &dhv,
            ..base
        };
        assert_eq!(
            Message::decode(&with_value.to_bytes()).unwrap_err().reason,
            FailureReason::IncorrectPayload
        );
    }

    #[test]
    fn reply_round_trips_and_refuses_what_spdk_refuses() {
        let r1 = [0x11; 32];
        let c2 = [0x22; 32];
        let dhv = [0x33; 256];
        let reply = Reply {
            t_id: 9,
            seqnum: 77,
            response: &r1,
            challenge: Some(&c2),
            dh_value: &dhv,
        };
        let bytes = reply.to_bytes();
        assert_eq!(bytes.len(), 16 + 64 + 256);
        assert_eq!(
            &bytes[..16],
            &[1, 2, 0, 0, 9, 0, 32, 0, 1, 0, 0, 1, 77, 0, 0, 0]
        );
        assert_eq!(&bytes[16..48], &r1);
        assert_eq!(&bytes[48..80], &c2);
        assert_eq!(Message::decode(&bytes).unwrap(), Message::Reply(reply));

        let one_way = Reply {
            seqnum: 0,
            challenge: None,
            dh_value: &[],
            ..reply
        };
        let bytes = one_way.to_bytes();
        assert_eq!(bytes.len(), 16 + 64);
        assert!(bytes[48..80].iter().all(|&b| b == 0));
        assert_eq!(Message::decode(&bytes).unwrap(), Message::Reply(one_way));

        let refused = |mutate: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = reply.to_bytes();
            mutate(&mut bytes);
            Message::decode(&bytes).unwrap_err().reason
        };
        let payload = FailureReason::IncorrectPayload;
        assert_eq!(refused(&|b| b.push(0)), payload);
        assert_eq!(refused(&|b| b[6] = 33), payload);
        assert_eq!(refused(&|b| b[8] = 2), payload);
        assert_eq!(refused(&|b| b[12..16].fill(0)), payload); // CVALID with S2 = 0
        assert_eq!(
            refused(&|b| {
                b[10] = 2; // DHVLEN 254: not a multiple of 4
                b.truncate(16 + 64 + 254);
            }),
            payload
        );
    }

    #[test]
    fn success_and_failure_messages_round_trip() {
        let r2 = [0x44; 64];
        let s1 = Success1 {
            t_id: 3,
            hl: 64,
            response: Some(&r2),
        };
        let bytes = s1.to_bytes();
        assert_eq!(
            &bytes[..16],
            &[1, 3, 0, 0, 3, 0, 64, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Message::decode(&bytes).unwrap(), Message::Success1(s1));
        let no_response = Success1 {
            response: None,
            ..s1
        };
        assert_eq!(no_response.to_bytes().len(), 16);
        assert_eq!(
            Message::decode(&bytes[..40]).unwrap_err().reason,
            FailureReason::IncorrectPayload
        );

        let s2 = Message::Success2(Success2 { t_id: 3 });
        let bytes = s2.to_bytes();
        assert_eq!(bytes, [1, 4, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Message::decode(&bytes).unwrap(), s2);
        assert_eq!(
            Message::decode(&bytes[..15]).unwrap_err().reason,
            FailureReason::IncorrectPayload
        );

        let f1 = Message::Failure1(Failure::new(5, FailureReason::Failed));
        let bytes = f1.to_bytes();
        assert_eq!(bytes, [0, 0xf1, 0, 0, 5, 0, 1, 1]);
        assert_eq!(Message::decode(&bytes).unwrap(), f1);
        let f2 = Message::Failure2(Failure::new(5, FailureReason::DhGroupUnusable));
        let mut bytes = f2.to_bytes();
        assert_eq!(bytes, [0, 0xf0, 0, 0, 5, 0, 1, 5]);
        assert_eq!(Message::decode(&bytes).unwrap(), f2);
        bytes.push(0);
        assert_eq!(
            Message::decode(&bytes).unwrap_err().reason,
            FailureReason::IncorrectPayload
        );
    }

    #[test]
    fn auth_commands_carry_secp_spsp_and_length_at_their_offsets() {
        let send = AuthCommand {
            direction: AuthDirection::Send,
            length: 72,
        };
        let mut command = send.to_command(0x42);
        let bytes = command.to_bytes();
        assert_eq!(bytes[0], 0x7f);
        assert_eq!(bytes[4], fctype::AUTHENTICATION_SEND);
        assert_eq!(&bytes[40..44], &[0, 1, 1, SECP_NVME]);
        assert_eq!(&bytes[44..48], &72u32.to_le_bytes());
        assert_eq!(AuthCommand::parse(&command), Some(Ok(send)));
        let receive = AuthCommand {
            direction: AuthDirection::Receive,
            length: 4096,
        };
        assert_eq!(
            AuthCommand::parse(&receive.to_command(1)),
            Some(Ok(receive))
        );
        command.cdw10 ^= 0xff << 24; // SECP
        let status = AuthCommand::parse(&command).unwrap().unwrap_err();
        assert_eq!((status.sct(), status.sc()), (0, generic::INVALID_FIELD));
        assert!(AuthCommand::parse(&Command::new(0x02, 1)).is_none());
    }
}
