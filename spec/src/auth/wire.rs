//! The wire layouts, identifiers and codes of in-band authentication.

use std::fmt;
use std::mem::size_of;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::fabrics::{fctype, FabricsHeader, FABRICS_OPCODE};
use crate::{Command, Status, SQE_SIZE};

/// SECP of every authentication command: the security protocol assigned to NVMe (E9h).
pub const SECP_NVME: u8 = 0xe9;
/// SPSP0 and SPSP1 of DH-HMAC-CHAP transfers (Linux and SPDK send 01h, 01h; SPDK's target
/// refuses anything else with Invalid Field).
pub const SPSP_DHCHAP: u8 = 0x01;

/// AUTH-TYPE, byte 0 of every message.
pub mod auth_type {
    /// Negotiate and the Failure messages.
    pub const COMMON: u8 = 0x00;
    /// Challenge, Reply, Success1, Success2.
    pub const DHCHAP: u8 = 0x01;
}

/// AUTH-ID, byte 1 of every message.
pub mod auth_id {
    pub const NEGOTIATE: u8 = 0x00;
    pub const CHALLENGE: u8 = 0x01;
    pub const REPLY: u8 = 0x02;
    pub const SUCCESS1: u8 = 0x03;
    pub const SUCCESS2: u8 = 0x04;
    /// Host to controller.
    pub const FAILURE2: u8 = 0xf0;
    /// Controller to host.
    pub const FAILURE1: u8 = 0xf1;
}

/// AUTHID of the DH-HMAC-CHAP protocol descriptor of a Negotiate.
pub const PROTOCOL_DHCHAP: u8 = 0x01;

/// SC_C of a Negotiate: secure channel concatenation.
pub mod sc_c {
    pub const NONE: u8 = 0x00;
    pub const NEW_TLS_PSK: u8 = 0x01;
    pub const REPLACE_TLS_PSK: u8 = 0x02;
}

/// Bits of a successful Connect's DW0 (AUTHREQ in bits 31:16, Linux
/// `NVME_CONNECT_AUTHREQ_*`): the host must authenticate this queue (ATR), over a secure
/// channel it concatenates (ASCR).
pub mod connect_authreq {
    pub const ATR: u32 = 1 << 17;
    pub const ASCR: u32 = 1 << 18;
}

/// Reason code of the Failure messages: the only one defined, "authentication failure".
pub const REASON_AUTHENTICATION_FAILURE: u8 = 0x01;

/// Hash functions of DH-HMAC-CHAP (HashID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashId {
    Sha256 = 1,
    Sha384 = 2,
    Sha512 = 3,
}

impl HashId {
    pub const ALL: [HashId; 3] = [HashId::Sha256, HashId::Sha384, HashId::Sha512];

    pub fn from_id(id: u8) -> Option<HashId> {
        HashId::ALL.into_iter().find(|h| h.id() == id)
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    /// Output length in bytes: the HL of the messages.
    pub fn digest_len(self) -> usize {
        match self {
            HashId::Sha256 => 32,
            HashId::Sha384 => 48,
            HashId::Sha512 => 64,
        }
    }

    /// The name nvme-cli, Linux and SPDK use (`sha256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HashId::Sha256 => "sha256",
            HashId::Sha384 => "sha384",
            HashId::Sha512 => "sha512",
        }
    }
}

/// Diffie-Hellman groups of DH-HMAC-CHAP (DHGID): none, or an RFC 7919 group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DhGroupId {
    Null = 0,
    Ffdhe2048 = 1,
    Ffdhe3072 = 2,
    Ffdhe4096 = 3,
    Ffdhe6144 = 4,
    Ffdhe8192 = 5,
}

impl DhGroupId {
    pub const ALL: [DhGroupId; 6] = [
        DhGroupId::Null,
        DhGroupId::Ffdhe2048,
        DhGroupId::Ffdhe3072,
        DhGroupId::Ffdhe4096,
        DhGroupId::Ffdhe6144,
        DhGroupId::Ffdhe8192,
    ];

    pub fn from_id(id: u8) -> Option<DhGroupId> {
        DhGroupId::ALL.into_iter().find(|g| g.id() == id)
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    /// Size of the group's prime, so of a public value, in bytes (0 for the null group).
    pub fn value_len(self) -> usize {
        match self {
            DhGroupId::Null => 0,
            DhGroupId::Ffdhe2048 => 256,
            DhGroupId::Ffdhe3072 => 384,
            DhGroupId::Ffdhe4096 => 512,
            DhGroupId::Ffdhe6144 => 768,
            DhGroupId::Ffdhe8192 => 1024,
        }
    }

    /// The name nvme-cli, Linux and SPDK use (`null`, `ffdhe2048`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DhGroupId::Null => "null",
            DhGroupId::Ffdhe2048 => "ffdhe2048",
            DhGroupId::Ffdhe3072 => "ffdhe3072",
            DhGroupId::Ffdhe4096 => "ffdhe4096",
            DhGroupId::Ffdhe6144 => "ffdhe6144",
            DhGroupId::Ffdhe8192 => "ffdhe8192",
        }
    }
}

/// Reason code explanations of the Failure messages (Linux
/// `NVME_AUTH_DHCHAP_FAILURE_*`, SPDK `enum spdk_nvmf_auth_failure_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The response did not match (wrong key).
    Failed = 0x01,
    /// No authentication protocol the controller can use.
    ProtocolUnusable = 0x02,
    /// Secure channel concatenation mismatch.
    SccMismatch = 0x03,
    HashUnusable = 0x04,
    DhGroupUnusable = 0x05,
    IncorrectPayload = 0x06,
    /// A message out of sequence.
    IncorrectProtocolMessage = 0x07,
}

impl FailureReason {
    pub fn from_code(code: u8) -> Option<FailureReason> {
        use FailureReason::*;
        [
            Failed,
            ProtocolUnusable,
            SccMismatch,
            HashUnusable,
            DhGroupUnusable,
            IncorrectPayload,
            IncorrectProtocolMessage,
        ]
        .into_iter()
        .find(|r| *r as u8 == code)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn describe(self) -> &'static str {
        match self {
            FailureReason::Failed => "authentication failed",
            FailureReason::ProtocolUnusable => "authentication protocol not usable",
            FailureReason::SccMismatch => "secure channel concatenation mismatch",
            FailureReason::HashUnusable => "hash function not usable",
            FailureReason::DhGroupUnusable => "DH group not usable",
            FailureReason::IncorrectPayload => "incorrect payload",
            FailureReason::IncorrectProtocolMessage => "incorrect protocol message",
        }
    }
}

/// Authentication Send (FCTYPE 05h) or Receive (06h) submission queue entry (Linux
/// `struct nvmf_auth_send_command` / `nvmf_auth_receive_command`): TL or AL at byte 44.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct AuthSqe {
    pub header: FabricsHeader,
    pub reserved0: u8,
    pub spsp0: u8,
    pub spsp1: u8,
    pub secp: u8,
    /// Transfer Length (Send) or Allocation Length (Receive), in bytes.
    pub length: U32,
    pub reserved1: [u8; 16],
}
const _: () = assert!(size_of::<AuthSqe>() == SQE_SIZE);

/// Which of the two commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthDirection {
    /// Authentication Send: the host transfers a message of `length` bytes.
    Send,
    /// Authentication Receive: the host reads a message of at most `length` bytes.
    Receive,
}

/// A decoded Authentication Send or Receive command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthCommand {
    pub direction: AuthDirection,
    /// TL or AL.
    pub length: u32,
}

impl AuthCommand {
    /// Decodes an Authentication Send or Receive entry. A SECP other than E9h or an SPSP other
    /// than 01h is Invalid Field (as SPDK's target answers); other command types are not
    /// authentication commands (`None`).
    pub fn parse(command: &Command) -> Option<Result<AuthCommand, Status>> {
        let sqe: AuthSqe = zerocopy::transmute!(*command);
        if sqe.header.opcode != FABRICS_OPCODE {
            return None;
        }
        let direction = match sqe.header.fctype {
            fctype::AUTHENTICATION_SEND => AuthDirection::Send,
            fctype::AUTHENTICATION_RECEIVE => AuthDirection::Receive,
            _ => return None,
        };
        if sqe.secp != SECP_NVME || sqe.spsp0 != SPSP_DHCHAP || sqe.spsp1 != SPSP_DHCHAP {
            return Some(Err(Status::invalid_field().do_not_retry()));
        }
        Some(Ok(AuthCommand {
            direction,
            length: sqe.length.get(),
        }))
    }

    /// The entry with command identifier `cid`; the data pointer is the transport's.
    pub fn to_command(&self, cid: u16) -> Command {
        let fctype = match self.direction {
            AuthDirection::Send => fctype::AUTHENTICATION_SEND,
            AuthDirection::Receive => fctype::AUTHENTICATION_RECEIVE,
        };
        zerocopy::transmute!(AuthSqe {
            header: FabricsHeader {
                opcode: FABRICS_OPCODE,
                cid: U16::new(cid),
                fctype,
                ..FabricsHeader::default()
            },
            spsp0: SPSP_DHCHAP,
            spsp1: SPSP_DHCHAP,
            secp: SECP_NVME,
            length: U32::new(self.length),
            ..AuthSqe::default()
        })
    }
}

/// The first 6 bytes of every message.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct MessageHeader {
    pub auth_type: u8,
    pub auth_id: u8,
    pub reserved: [u8; 2],
    /// Transaction identifier, chosen by the host in its Negotiate.
    pub t_id: U16,
}
const _: () = assert!(size_of::<MessageHeader>() == 6);

/// AUTH_Negotiate before its protocol descriptors (Linux
/// `struct nvmf_auth_dhchap_negotiate_data`).
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct NegotiateLayout {
    pub header: MessageHeader,
    pub sc_c: u8,
    /// Number of protocol descriptors that follow.
    pub napd: u8,
}
const _: () = assert!(size_of::<NegotiateLayout>() == 8);

/// Most identifiers in each list of a protocol descriptor.
pub const MAX_IDS: usize = 30;

/// A DH-HMAC-CHAP protocol descriptor: hash IDs at byte 4, DH group IDs at byte 34 (SPDK
/// `struct spdk_nvmf_auth_descriptor`; Linux's `idlist[60]` with the groups at `idlist[30]`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ProtocolDescriptorLayout {
    pub auth_id: u8,
    pub reserved: u8,
    pub halen: u8,
    pub dhlen: u8,
    pub hash_ids: [u8; MAX_IDS],
    pub dh_group_ids: [u8; MAX_IDS],
}
const _: () = assert!(size_of::<ProtocolDescriptorLayout>() == 64);

/// DH-HMAC-CHAP_Challenge before the challenge value C1 (HL bytes) and the controller's DH
/// public value (DHVLEN bytes).
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct ChallengeLayout {
    pub header: MessageHeader,
    pub hl: u8,
    pub reserved: u8,
    pub hash_id: u8,
    pub dh_group_id: u8,
    pub dhvlen: U16,
    /// S1.
    pub seqnum: U32,
}
const _: () = assert!(size_of::<ChallengeLayout>() == 16);

/// DH-HMAC-CHAP_Reply before the response R1 (HL bytes), the challenge C2 (HL bytes, zero
/// when CVALID is 0) and the host's DH public value (DHVLEN bytes).
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct ReplyLayout {
    pub header: MessageHeader,
    pub hl: u8,
    pub reserved0: u8,
    /// 1: C2 is valid, the host asks the controller to authenticate itself.
    pub cvalid: u8,
    pub reserved1: u8,
    pub dhvlen: U16,
    /// S2 (0 when CVALID is 0).
    pub seqnum: U32,
}
const _: () = assert!(size_of::<ReplyLayout>() == 16);

/// DH-HMAC-CHAP_Success1 before the response R2 (HL bytes, present when RVALID is 1).
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct Success1Layout {
    pub header: MessageHeader,
    /// Set even when RVALID is 0: the Linux host checks it (SPDK's target sets it always).
    pub hl: u8,
    pub reserved0: u8,
    pub rvalid: u8,
    pub reserved1: [u8; 7],
}
const _: () = assert!(size_of::<Success1Layout>() == 16);

/// DH-HMAC-CHAP_Success2.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct Success2Layout {
    pub header: MessageHeader,
    pub reserved: [u8; 10],
}
const _: () = assert!(size_of::<Success2Layout>() == 16);

/// AUTH_Failure1 / AUTH_Failure2.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct FailureLayout {
    pub header: MessageHeader,
    /// Always [`REASON_AUTHENTICATION_FAILURE`].
    pub reason_code: u8,
    /// A [`FailureReason`].
    pub explanation: u8,
}
const _: () = assert!(size_of::<FailureLayout>() == 8);

/// A message that cannot be accepted, with the reason code explanation the spec has the
/// receiver answer with (in an AUTH_Failure1 from the controller, Failure2 from the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} (answer: AUTH_Failure, {})", .reason.describe())]
pub struct MessageError {
    pub reason: FailureReason,
    pub what: &'static str,
}

impl MessageError {
    pub fn incorrect_payload(what: &'static str) -> Self {
        Self {
            reason: FailureReason::IncorrectPayload,
            what,
        }
    }

    pub fn new(reason: FailureReason, what: &'static str) -> Self {
        Self { reason, what }
    }
}

impl fmt::Display for HashId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for DhGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the fixed part `T` of a message that is `bytes`.
pub(super) fn fixed_part<T: FromBytes + KnownLayout + Immutable>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, MessageError> {
    T::read_from_prefix(bytes)
        .map(|(fixed, _)| fixed)
        .map_err(|_| MessageError::incorrect_payload(what))
}

/// A message header of `auth_type` / `auth_id` for transaction `t_id`.
pub(super) fn header(auth_type: u8, auth_id: u8, t_id: u16) -> MessageHeader {
    MessageHeader {
        auth_type,
        auth_id,
        t_id: U16::new(t_id),
        ..MessageHeader::new_zeroed()
    }
}
