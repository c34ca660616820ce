//! The decoded PDU headers and what surrounds them: PDU types, where the parts of a PDU lie
//! ([`PduLayout`]), and the per-connection rules of decoding and encoding. Plain values, kept
//! apart from the code that checks, reads and writes them so that each of those imports only
//! downward from here.

use std::mem::size_of;

use vfnvme_spec::tcp::{self as wire, pdu_type};
use vfnvme_spec::{Command, Completion};

use crate::digest::DIGEST_LEN;

/// Length of the common header every PDU starts with.
pub const COMMON_HEADER_LEN: usize = size_of::<wire::CommonHeader>();
/// `hlen` and `plen` of ICReq and ICResp.
pub const IC_PDU_LEN: usize = size_of::<wire::ICReqHeader>();
/// A TermReq carries at most this many bytes of the offending PDU header.
pub const TERM_REQ_MAX_DATA_LEN: usize = 128;
/// `hlen` of CapsuleResp: the common header and one completion queue entry.
pub const CAPSULE_RESP_HEADER_LEN: usize = size_of::<wire::CapsuleRespHeader>();
/// Largest HPDA/CPDA value (0's based, in dwords): data aligned to at most 128 bytes.
pub const MAX_PDA: u8 = 31;
/// Smallest MAXH2CDATA a controller may advertise.
pub const MIN_MAXH2CDATA: u32 = 4096;
/// Upper bound of the bytes before a PDU's data: `pdo` is a u8.
pub const MAX_DATA_OFFSET: usize = u8::MAX as usize;
pub use wire::PFV_1_0;

/// The PDU types of NVMe/TCP 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    ICReq = pdu_type::IC_REQ,
    ICResp = pdu_type::IC_RESP,
    H2CTermReq = pdu_type::H2C_TERM_REQ,
    C2HTermReq = pdu_type::C2H_TERM_REQ,
    CapsuleCmd = pdu_type::CAPSULE_CMD,
    CapsuleResp = pdu_type::CAPSULE_RESP,
    H2CData = pdu_type::H2C_DATA,
    C2HData = pdu_type::C2H_DATA,
    R2T = pdu_type::R2T,
}

/// What a PDU type may carry after its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    /// Nothing: `pdo` is 0 and `plen` is the header (and its digest).
    None,
    /// Data that may be absent (CapsuleCmd in-capsule data).
    OptionalData,
    /// Data that must be present (H2CData, C2HData).
    RequiredData,
    /// Up to 128 bytes of the offending header right after the header, never digested.
    TermReqData,
}

impl PduType {
    pub const fn from_u8(raw: u8) -> Option<Self> {
        Some(match raw {
            pdu_type::IC_REQ => Self::ICReq,
            pdu_type::IC_RESP => Self::ICResp,
            pdu_type::H2C_TERM_REQ => Self::H2CTermReq,
            pdu_type::C2H_TERM_REQ => Self::C2HTermReq,
            pdu_type::CAPSULE_CMD => Self::CapsuleCmd,
            pdu_type::CAPSULE_RESP => Self::CapsuleResp,
            pdu_type::H2C_DATA => Self::H2CData,
            pdu_type::C2H_DATA => Self::C2HData,
            pdu_type::R2T => Self::R2T,
            _ => return None,
        })
    }

    /// The fixed `hlen` of this type.
    pub const fn header_len(self) -> usize {
        match self {
            Self::ICReq => size_of::<wire::ICReqHeader>(),
            Self::ICResp => size_of::<wire::ICRespHeader>(),
            Self::H2CTermReq | Self::C2HTermReq => size_of::<wire::TermReqHeader>(),
            Self::CapsuleCmd => size_of::<wire::CapsuleCmdHeader>(),
            Self::CapsuleResp => size_of::<wire::CapsuleRespHeader>(),
            Self::H2CData => size_of::<wire::H2CDataHeader>(),
            Self::C2HData => size_of::<wire::C2HDataHeader>(),
            Self::R2T => size_of::<wire::R2THeader>(),
        }
    }

    /// Who sends PDUs of this type.
    pub const fn sender(self) -> Role {
        match self {
            Self::ICReq | Self::H2CTermReq | Self::CapsuleCmd | Self::H2CData => Role::Host,
            Self::ICResp | Self::C2HTermReq | Self::CapsuleResp | Self::C2HData | Self::R2T => {
                Role::Controller
            }
        }
    }

    /// Whether digests may be present: connection setup and teardown PDUs never carry them,
    /// whatever was negotiated.
    pub const fn may_carry_digests(self) -> bool {
        !matches!(
            self,
            Self::ICReq | Self::ICResp | Self::H2CTermReq | Self::C2HTermReq
        )
    }

    pub(crate) const fn payload(self) -> Payload {
        match self {
            Self::ICReq | Self::ICResp | Self::CapsuleResp | Self::R2T => Payload::None,
            Self::CapsuleCmd => Payload::OptionalData,
            Self::H2CData | Self::C2HData => Payload::RequiredData,
            Self::H2CTermReq | Self::C2HTermReq => Payload::TermReqData,
        }
    }
}

/// The two ends of an NVMe/TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Host,
    Controller,
}

/// Where the parts of one PDU lie, relative to its first byte. Derived from a validated common
/// header; this is what a reader needs to place the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PduLayout {
    pub pdu_type: PduType,
    /// `hlen`: common and PDU-specific header.
    pub hlen: usize,
    /// A header digest follows the header.
    pub header_digest: bool,
    /// Where the data starts; for a PDU without data, the end of the header (and its digest).
    /// Between the header digest and this offset are pad bytes, which carry nothing.
    pub data_offset: usize,
    /// Bytes of data (in-capsule data, H2C/C2H data, or a TermReq's offending header).
    pub data_len: usize,
    /// A data digest follows the data.
    pub data_digest: bool,
    /// `plen`: the whole PDU.
    pub plen: usize,
}

impl PduLayout {
    /// The header and its digest: what the header digest check needs.
    pub const fn header_len(&self) -> usize {
        self.hlen + digest_len(self.header_digest)
    }
}

pub(crate) const fn digest_len(present: bool) -> usize {
    if present {
        DIGEST_LEN
    } else {
        0
    }
}

/// How incoming PDUs are validated: the local role and what the connection negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeConfig {
    /// Only PDUs the peer role sends are accepted.
    pub local_role: Role,
    /// Header digests negotiated (ICReq/ICResp DGST bit 0).
    pub header_digest: bool,
    /// Data digests negotiated (ICReq/ICResp DGST bit 1).
    pub data_digest: bool,
    /// Data alignment the peer must honour, 0's based in dwords: the CPDA we advertised as a
    /// controller, the HPDA we requested as a host. 0 means no constraint beyond `pdo` checks.
    pub pda: u8,
    /// Largest in-capsule data accepted in a CapsuleCmd.
    pub max_in_capsule_data: u32,
    /// Largest data accepted in one H2CData (our MAXH2CDATA) or C2HData PDU.
    pub max_data_pdu_len: u32,
}

impl DecodeConfig {
    /// Before ICReq/ICResp: no digests, no alignment, no data.
    pub const fn initial(local_role: Role) -> Self {
        Self {
            local_role,
            header_digest: false,
            data_digest: false,
            pda: 0,
            max_in_capsule_data: 0,
            max_data_pdu_len: 0,
        }
    }
}

/// How outgoing PDUs are framed: what the connection negotiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeConfig {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Data alignment the peer asked for, 0's based in dwords: the HPDA from ICReq when we
    /// are the controller, the CPDA from ICResp when we are the host.
    pub pda: u8,
}

/// Initialize Connection Request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ICReq {
    pub pfv: u16,
    /// Host PDU data alignment, 0's based in dwords.
    pub hpda: u8,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Outstanding R2Ts per command, 0's based.
    pub maxr2t: u32,
}

/// Initialize Connection Response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ICResp {
    pub pfv: u16,
    /// Controller PDU data alignment, 0's based in dwords.
    pub cpda: u8,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data in one H2CData PDU.
    pub maxh2cdata: u32,
}

/// H2CTermReq / C2HTermReq header; the offending PDU header travels as its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TermReq {
    /// Fatal error status (see [`fes`](vfnvme_spec::tcp::fes)).
    pub fes: u16,
    /// Fatal error information: the offending field's offset for FES 0x01 and 0x06.
    pub fei: u32,
}

/// H2CData header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H2CData {
    /// Command capsule CID.
    pub cccid: u16,
    /// Transfer tag from the R2T this data answers.
    pub ttag: u16,
    /// Offset of this data in the command's transfer.
    pub datao: u32,
    pub datal: u32,
    pub last: bool,
}

/// C2HData header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct C2HData {
    pub cccid: u16,
    pub datao: u32,
    pub datal: u32,
    pub last: bool,
    /// The command succeeded; no CapsuleResp follows. Requires `last`.
    pub success: bool,
}

/// Ready to Transfer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct R2T {
    pub cccid: u16,
    pub ttag: u16,
    /// Offset in the command's transfer the host sends from.
    pub r2to: u32,
    /// Bytes requested.
    pub r2tl: u32,
}

/// A decoded PDU header of any type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PduHeader {
    ICReq(ICReq),
    ICResp(ICResp),
    H2CTermReq(TermReq),
    C2HTermReq(TermReq),
    CapsuleCmd(Command),
    CapsuleResp(Completion),
    H2CData(H2CData),
    C2HData(C2HData),
    R2T(R2T),
}

impl PduHeader {
    pub const fn pdu_type(&self) -> PduType {
        match self {
            Self::ICReq(_) => PduType::ICReq,
            Self::ICResp(_) => PduType::ICResp,
            Self::H2CTermReq(_) => PduType::H2CTermReq,
            Self::C2HTermReq(_) => PduType::C2HTermReq,
            Self::CapsuleCmd(_) => PduType::CapsuleCmd,
            Self::CapsuleResp(_) => PduType::CapsuleResp,
            Self::H2CData(_) => PduType::H2CData,
            Self::C2HData(_) => PduType::C2HData,
            Self::R2T(_) => PduType::R2T,
        }
    }
}
