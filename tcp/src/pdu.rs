//! NVMe/TCP PDU headers (NVMe/TCP Transport Specification 1.0): typed decode with validation,
//! and encoders that write into caller-provided buffers.
//!
//! A PDU on the wire is: common header (8 bytes) and PDU-specific header, together `hlen`
//! bytes; a header digest if `HDGSTF`; pad bytes up to `pdo`; `data`; a data digest if `DDGSTF`.
//! `plen` counts all of it. Both directions are handled by the same code: which PDU types are
//! accepted depends only on [`DecodeConfig::local_role`].

use thiserror::Error;
use vfnvme_spec::{Command, Completion, Status, CQE_SIZE, SQE_SIZE};

use crate::digest::{self, Crc32c, DIGEST_LEN};

/// Length of the common header every PDU starts with.
pub const COMMON_HEADER_LEN: usize = 8;
/// `hlen` and `plen` of ICReq and ICResp.
pub const IC_PDU_LEN: usize = 128;
/// `hlen` of H2CTermReq and C2HTermReq.
pub const TERM_REQ_HEADER_LEN: usize = 24;
/// A TermReq carries at most this many bytes of the offending PDU header.
pub const TERM_REQ_MAX_DATA_LEN: usize = 128;
/// `hlen` of CapsuleCmd: the common header and one submission queue entry.
pub const CAPSULE_CMD_HEADER_LEN: usize = COMMON_HEADER_LEN + SQE_SIZE;
/// `hlen` of CapsuleResp: the common header and one completion queue entry.
pub const CAPSULE_RESP_HEADER_LEN: usize = COMMON_HEADER_LEN + CQE_SIZE;
/// `hlen` of H2CData and C2HData.
pub const DATA_HEADER_LEN: usize = 24;
/// `hlen` of R2T.
pub const R2T_HEADER_LEN: usize = 24;
/// Largest HPDA/CPDA value (0's based, in dwords): data aligned to at most 128 bytes.
pub const MAX_PDA: u8 = 31;
/// Smallest MAXH2CDATA a controller may advertise.
pub const MIN_MAXH2CDATA: u32 = 4096;
/// The only PDU format version defined (PFV 1.0 is 0).
pub const PFV_1_0: u16 = 0;
/// Upper bound of the bytes before a PDU's data: `pdo` is a u8.
pub const MAX_DATA_OFFSET: usize = u8::MAX as usize;

/// Generic command status "Transient Transport Error" (NVMe base spec 2.0, 22h): the status a
/// command completes with when its data digest did not match.
pub const TRANSIENT_TRANSPORT_ERROR: u8 = 0x22;

/// Common header flag bits.
pub mod flags {
    /// A header digest follows the header.
    pub const HDGSTF: u8 = 0x01;
    /// A data digest follows the data.
    pub const DDGSTF: u8 = 0x02;
    /// H2CData/C2HData: the last data PDU of the command.
    pub const DATA_LAST: u8 = 0x04;
    /// C2HData: the command succeeded and no CapsuleResp will follow. Only with `DATA_LAST`.
    pub const DATA_SUCCESS: u8 = 0x08;
}

/// Byte offsets of header fields, as reported in a TermReq's FEI.
pub mod field_offset {
    pub const PDU_TYPE: u32 = 0;
    pub const FLAGS: u32 = 1;
    pub const HLEN: u32 = 2;
    pub const PDO: u32 = 3;
    pub const PLEN: u32 = 4;
    /// ICReq/ICResp PFV.
    pub const IC_PFV: u32 = 8;
    /// ICReq HPDA / ICResp CPDA.
    pub const IC_PDA: u32 = 10;
    /// ICResp MAXH2CDATA.
    pub const IC_MAXH2CDATA: u32 = 12;
    /// H2CData/C2HData DATAO.
    pub const DATA_DATAO: u32 = 12;
    /// H2CData/C2HData DATAL.
    pub const DATA_DATAL: u32 = 16;
}

/// TermReq Fatal Error Status values.
pub mod fes {
    pub const INVALID_HEADER_FIELD: u16 = 0x01;
    pub const PDU_SEQUENCE_ERROR: u16 = 0x02;
    pub const HEADER_DIGEST_ERROR: u16 = 0x03;
    pub const DATA_OUT_OF_RANGE: u16 = 0x04;
    pub const DATA_LIMIT_EXCEEDED: u16 = 0x05;
    pub const UNSUPPORTED_PARAMETER: u16 = 0x06;
}

/// ICReq/ICResp DGST bits.
const DGST_HEADER: u8 = 0x01;
const DGST_DATA: u8 = 0x02;

/// The PDU types of NVMe/TCP 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    ICReq = 0x00,
    ICResp = 0x01,
    H2CTermReq = 0x02,
    C2HTermReq = 0x03,
    CapsuleCmd = 0x04,
    CapsuleResp = 0x05,
    H2CData = 0x06,
    C2HData = 0x07,
    R2T = 0x09,
}

/// What a PDU type may carry after its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Payload {
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
            0x00 => Self::ICReq,
            0x01 => Self::ICResp,
            0x02 => Self::H2CTermReq,
            0x03 => Self::C2HTermReq,
            0x04 => Self::CapsuleCmd,
            0x05 => Self::CapsuleResp,
            0x06 => Self::H2CData,
            0x07 => Self::C2HData,
            0x09 => Self::R2T,
            _ => return None,
        })
    }

    /// The fixed `hlen` of this type.
    pub const fn header_len(self) -> usize {
        match self {
            Self::ICReq | Self::ICResp => IC_PDU_LEN,
            Self::H2CTermReq | Self::C2HTermReq => TERM_REQ_HEADER_LEN,
            Self::CapsuleCmd => CAPSULE_CMD_HEADER_LEN,
            Self::CapsuleResp => CAPSULE_RESP_HEADER_LEN,
            Self::H2CData | Self::C2HData => DATA_HEADER_LEN,
            Self::R2T => R2T_HEADER_LEN,
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

    const fn payload(self) -> Payload {
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

/// The 8-byte common header, as raw fields (nothing validated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommonHeader {
    pub pdu_type: u8,
    pub flags: u8,
    pub hlen: u8,
    pub pdo: u8,
    pub plen: u32,
}

impl CommonHeader {
    pub fn parse(bytes: &[u8; COMMON_HEADER_LEN]) -> Self {
        Self {
            pdu_type: bytes[0],
            flags: bytes[1],
            hlen: bytes[2],
            pdo: bytes[3],
            plen: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; COMMON_HEADER_LEN] {
        let plen = self.plen.to_le_bytes();
        [
            self.pdu_type,
            self.flags,
            self.hlen,
            self.pdo,
            plen[0],
            plen[1],
            plen[2],
            plen[3],
        ]
    }
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

    /// Pad bytes between the header digest and the data.
    pub const fn pad_len(&self) -> usize {
        self.data_offset - self.header_len()
    }
}

const fn digest_len(present: bool) -> usize {
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

/// A fatal protocol error in a received PDU: the connection sends a TermReq with
/// [`fatal_error_status`](Self::fatal_error_status) and [`field_offset`](Self::field_offset),
/// then closes.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum PduError {
    #[error("invalid PDU header field at byte {offset}: {reason}")]
    InvalidHeaderField { offset: u32, reason: &'static str },
    #[error("PDU sequence error: {0}")]
    SequenceError(&'static str),
    #[error("header digest mismatch: computed {computed:#010x}, received {received:#010x}")]
    HeaderDigest { computed: u32, received: u32 },
    #[error("data transfer out of range: {0}")]
    DataOutOfRange(&'static str),
    #[error("data transfer limit exceeded: {len} bytes, at most {max}")]
    DataLimitExceeded { len: u64, max: u64 },
    #[error("unsupported parameter at byte {offset}: {reason}")]
    UnsupportedParameter { offset: u32, reason: &'static str },
}

impl PduError {
    /// The TermReq FES for this error.
    pub const fn fatal_error_status(&self) -> u16 {
        match self {
            Self::InvalidHeaderField { .. } => fes::INVALID_HEADER_FIELD,
            Self::SequenceError(_) => fes::PDU_SEQUENCE_ERROR,
            Self::HeaderDigest { .. } => fes::HEADER_DIGEST_ERROR,
            Self::DataOutOfRange(_) => fes::DATA_OUT_OF_RANGE,
            Self::DataLimitExceeded { .. } => fes::DATA_LIMIT_EXCEEDED,
            Self::UnsupportedParameter { .. } => fes::UNSUPPORTED_PARAMETER,
        }
    }

    /// The TermReq FEI: the offset of the offending field for FES 0x01 and 0x06, else 0
    /// (reserved).
    pub const fn field_offset(&self) -> u32 {
        match self {
            Self::InvalidHeaderField { offset, .. } | Self::UnsupportedParameter { offset, .. } => {
                *offset
            }
            _ => 0,
        }
    }

    /// The TermReq that reports this error.
    pub const fn term_req(&self) -> TermReq {
        TermReq {
            fes: self.fatal_error_status(),
            fei: self.field_offset(),
        }
    }
}

/// A data digest mismatch. Not fatal to the connection: the command the data belongs to
/// completes with [`completion_status`](Self::completion_status) (Transient Transport Error) so
/// that the host may retry it.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("data digest mismatch: computed {computed:#010x}, received {received:#010x}")]
pub struct DataDigestMismatch {
    pub computed: u32,
    pub received: u32,
}

impl DataDigestMismatch {
    pub const fn completion_status(&self) -> Status {
        Status::generic(TRANSIENT_TRANSPORT_ERROR)
    }
}

/// Compares a received data digest with the one computed over the data.
pub fn check_data_digest(
    computed: Crc32c,
    received: [u8; DIGEST_LEN],
) -> Result<(), DataDigestMismatch> {
    let received = digest::from_wire(received);
    if computed.value() == received {
        Ok(())
    } else {
        Err(DataDigestMismatch {
            computed: computed.value(),
            received,
        })
    }
}

/// A PDU could not be encoded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("output buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("{pdu_type:?} cannot carry {data_len} bytes of data")]
    InvalidDataLength { pdu_type: PduType, data_len: usize },
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
    /// Fatal error status (see [`fes`]).
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

fn invalid(offset: u32, reason: &'static str) -> PduError {
    PduError::InvalidHeaderField { offset, reason }
}

/// Validates a common header against the connection's configuration and works out where the
/// rest of the PDU lies. Everything checkable from these 8 bytes is checked here, so a reader
/// never waits for (or buffers) the bytes of a PDU that is already known to be malformed.
pub fn validate_common_header(
    ch: &CommonHeader,
    config: &DecodeConfig,
) -> Result<PduLayout, PduError> {
    use field_offset as off;

    let pdu_type =
        PduType::from_u8(ch.pdu_type).ok_or(invalid(off::PDU_TYPE, "unknown PDU type"))?;
    if pdu_type.sender() == config.local_role {
        return Err(invalid(
            off::PDU_TYPE,
            "PDU type not sent in this direction",
        ));
    }
    let hlen = pdu_type.header_len();
    if usize::from(ch.hlen) != hlen {
        return Err(invalid(off::HLEN, "wrong header length for the PDU type"));
    }
    let has_hdgst = ch.flags & flags::HDGSTF != 0;
    let has_ddgst = ch.flags & flags::DDGSTF != 0;
    let plen = ch.plen as usize;
    let pdo = usize::from(ch.pdo);

    if !pdu_type.may_carry_digests() {
        if has_hdgst || has_ddgst {
            return Err(invalid(
                off::FLAGS,
                "digest flag on a PDU that never has digests",
            ));
        }
    } else if has_hdgst != config.header_digest {
        return Err(invalid(
            off::FLAGS,
            "HDGSTF disagrees with negotiated header digest",
        ));
    }
    let header_len = hlen + digest_len(has_hdgst);

    let layout = |data_offset, data_len, data_digest| PduLayout {
        pdu_type,
        hlen,
        header_digest: has_hdgst,
        data_offset,
        data_len,
        data_digest,
        plen,
    };

    match pdu_type.payload() {
        Payload::None => {
            if pdo != 0 {
                return Err(invalid(off::PDO, "PDO set on a PDU without data"));
            }
            if has_ddgst {
                return Err(invalid(off::FLAGS, "DDGSTF on a PDU without data"));
            }
            if plen != header_len {
                return Err(invalid(off::PLEN, "PLEN disagrees with the header length"));
            }
            Ok(layout(header_len, 0, false))
        }
        Payload::TermReqData => {
            // PDO is reserved for TermReq: SPDK sends 0, the data sits right after the header.
            if pdo != 0 && pdo != hlen {
                return Err(invalid(off::PDO, "TermReq PDO is neither 0 nor HLEN"));
            }
            if plen < hlen || plen > hlen + TERM_REQ_MAX_DATA_LEN {
                return Err(invalid(off::PLEN, "TermReq PLEN out of range"));
            }
            Ok(layout(hlen, plen - hlen, false))
        }
        Payload::OptionalData | Payload::RequiredData => {
            if plen < header_len {
                return Err(invalid(off::PLEN, "PLEN shorter than the header"));
            }
            if plen == header_len {
                if pdu_type.payload() == Payload::RequiredData {
                    return Err(invalid(off::PLEN, "data PDU without data"));
                }
                if pdo != 0 {
                    return Err(invalid(off::PDO, "PDO set on a PDU without data"));
                }
                if has_ddgst {
                    return Err(invalid(off::FLAGS, "DDGSTF on a PDU without data"));
                }
                return Ok(layout(header_len, 0, false));
            }
            if pdo < header_len {
                return Err(invalid(off::PDO, "PDO inside the header"));
            }
            if pdo >= plen {
                return Err(invalid(off::PDO, "PDO beyond the end of the PDU"));
            }
            // As SPDK: PDA 0 puts no constraint on PDO beyond the checks above.
            let alignment = (usize::from(config.pda) + 1) * 4;
            if config.pda != 0 && pdo % alignment != 0 {
                return Err(invalid(
                    off::PDO,
                    "PDO violates the negotiated data alignment",
                ));
            }
            if has_ddgst != config.data_digest {
                return Err(invalid(
                    off::FLAGS,
                    "DDGSTF disagrees with negotiated data digest",
                ));
            }
            let data_len = plen - pdo;
            let data_len = match data_len.checked_sub(digest_len(has_ddgst)) {
                Some(len) if len > 0 => len,
                _ => return Err(invalid(off::PLEN, "PLEN leaves no room for data")),
            };
            let max = if pdu_type == PduType::CapsuleCmd {
                config.max_in_capsule_data
            } else {
                config.max_data_pdu_len
            };
            if data_len > max as usize {
                return Err(PduError::DataLimitExceeded {
                    len: data_len as u64,
                    max: u64::from(max),
                });
            }
            Ok(layout(pdo, data_len, has_ddgst))
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Verifies the header digest (if any) and decodes the PDU-specific header.
///
/// `header` holds at least `layout.header_len()` bytes of the PDU whose common header produced
/// `layout` (shorter input panics: the caller buffers whole headers first).
pub fn decode_header(header: &[u8], layout: &PduLayout) -> Result<PduHeader, PduError> {
    use field_offset as off;

    let hlen = layout.hlen;
    let bytes = &header[..hlen];
    if layout.header_digest {
        let computed = digest::crc32c(bytes);
        let received = digest::from_wire([
            header[hlen],
            header[hlen + 1],
            header[hlen + 2],
            header[hlen + 3],
        ]);
        if computed != received {
            return Err(PduError::HeaderDigest { computed, received });
        }
    }
    let pdu_flags = bytes[1];
    let data_len = layout.data_len as u32;
    Ok(match layout.pdu_type {
        PduType::ICReq | PduType::ICResp => {
            let pfv = u16_at(bytes, 8);
            if pfv != PFV_1_0 {
                return Err(PduError::UnsupportedParameter {
                    offset: off::IC_PFV,
                    reason: "PDU format version other than 1.0",
                });
            }
            let pda = bytes[10];
            if pda > MAX_PDA {
                return Err(invalid(off::IC_PDA, "PDU data alignment above 31"));
            }
            let dgst = bytes[11];
            let header_digest = dgst & DGST_HEADER != 0;
            let data_digest = dgst & DGST_DATA != 0;
            let dword = u32_at(bytes, 12);
            if layout.pdu_type == PduType::ICReq {
                PduHeader::ICReq(ICReq {
                    pfv,
                    hpda: pda,
                    header_digest,
                    data_digest,
                    maxr2t: dword,
                })
            } else {
                if dword < MIN_MAXH2CDATA || dword & 3 != 0 {
                    return Err(invalid(
                        off::IC_MAXH2CDATA,
                        "MAXH2CDATA below 4096 or not a dword multiple",
                    ));
                }
                PduHeader::ICResp(ICResp {
                    pfv,
                    cpda: pda,
                    header_digest,
                    data_digest,
                    maxh2cdata: dword,
                })
            }
        }
        PduType::H2CTermReq | PduType::C2HTermReq => {
            let term = TermReq {
                fes: u16_at(bytes, 8),
                fei: u32_at(bytes, 10),
            };
            if layout.pdu_type == PduType::H2CTermReq {
                PduHeader::H2CTermReq(term)
            } else {
                PduHeader::C2HTermReq(term)
            }
        }
        PduType::CapsuleCmd => {
            let mut sqe = [0u8; SQE_SIZE];
            sqe.copy_from_slice(&bytes[COMMON_HEADER_LEN..CAPSULE_CMD_HEADER_LEN]);
            PduHeader::CapsuleCmd(Command::from_bytes(&sqe))
        }
        PduType::CapsuleResp => {
            let mut cqe = [0u8; CQE_SIZE];
            cqe.copy_from_slice(&bytes[COMMON_HEADER_LEN..CAPSULE_RESP_HEADER_LEN]);
            PduHeader::CapsuleResp(Completion::from_bytes(&cqe))
        }
        PduType::H2CData | PduType::C2HData => {
            let datal = u32_at(bytes, 16);
            if datal != data_len {
                return Err(invalid(
                    off::DATA_DATAL,
                    "DATAL disagrees with PLEN and PDO",
                ));
            }
            let cccid = u16_at(bytes, 8);
            let datao = u32_at(bytes, 12);
            let last = pdu_flags & flags::DATA_LAST != 0;
            if layout.pdu_type == PduType::H2CData {
                PduHeader::H2CData(H2CData {
                    cccid,
                    ttag: u16_at(bytes, 10),
                    datao,
                    datal,
                    last,
                })
            } else {
                let success = pdu_flags & flags::DATA_SUCCESS != 0;
                if success && !last {
                    return Err(invalid(off::FLAGS, "SUCCESS without LAST_PDU"));
                }
                PduHeader::C2HData(C2HData {
                    cccid,
                    datao,
                    datal,
                    last,
                    success,
                })
            }
        }
        PduType::R2T => PduHeader::R2T(R2T {
            cccid: u16_at(bytes, 8),
            ttag: u16_at(bytes, 10),
            r2to: u32_at(bytes, 12),
            r2tl: u32_at(bytes, 16),
        }),
    })
}

fn ensure_len(out: &[u8], needed: usize) -> Result<(), EncodeError> {
    if out.len() < needed {
        Err(EncodeError::BufferTooSmall {
            needed,
            available: out.len(),
        })
    } else {
        Ok(())
    }
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

    /// The layout of this PDU when it carries `data_len` bytes of data.
    pub fn layout(&self, config: &EncodeConfig, data_len: usize) -> Result<PduLayout, EncodeError> {
        let pdu_type = self.pdu_type();
        let bad_len = EncodeError::InvalidDataLength { pdu_type, data_len };
        let datal_matches = |datal: u32| datal as usize == data_len && data_len > 0;
        let data_allowed = match self {
            Self::ICReq(_) | Self::ICResp(_) | Self::CapsuleResp(_) | Self::R2T(_) => data_len == 0,
            Self::H2CTermReq(_) | Self::C2HTermReq(_) => data_len <= TERM_REQ_MAX_DATA_LEN,
            Self::CapsuleCmd(_) => true,
            Self::H2CData(h) => datal_matches(h.datal),
            Self::C2HData(c) => datal_matches(c.datal),
        };
        if !data_allowed {
            return Err(bad_len);
        }
        let hlen = pdu_type.header_len();
        let digests = pdu_type.may_carry_digests();
        let header_digest = digests && config.header_digest;
        let header_len = hlen + digest_len(header_digest);
        let (data_offset, data_digest) = match pdu_type.payload() {
            Payload::TermReqData => (hlen, false),
            _ if data_len == 0 => (header_len, false),
            _ => {
                let alignment = (usize::from(config.pda.min(MAX_PDA)) + 1) * 4;
                (
                    header_len.next_multiple_of(alignment),
                    digests && config.data_digest,
                )
            }
        };
        let plen = data_offset
            .checked_add(data_len)
            .and_then(|len| len.checked_add(digest_len(data_digest)))
            .filter(|&len| u32::try_from(len).is_ok())
            .ok_or(bad_len)?;
        Ok(PduLayout {
            pdu_type,
            hlen,
            header_digest,
            data_offset,
            data_len,
            data_digest,
            plen,
        })
    }

    /// Writes everything before the data: common header, PDU-specific header, header digest and
    /// pad, for a PDU carrying `data_len` bytes of data. Returns the layout; the bytes written
    /// are `out[..layout.data_offset]`. The data (straight from its buffers, e.g. with a
    /// vectored write) and then the data digest (see [`Crc32c`]) are the caller's to send.
    pub fn encode_header(
        &self,
        config: &EncodeConfig,
        data_len: usize,
        out: &mut [u8],
    ) -> Result<PduLayout, EncodeError> {
        let layout = self.layout(config, data_len)?;
        ensure_len(out, layout.data_offset)?;
        let out = &mut out[..layout.data_offset];
        out.fill(0);

        let mut pdu_flags = 0;
        if layout.header_digest {
            pdu_flags |= flags::HDGSTF;
        }
        if layout.data_digest {
            pdu_flags |= flags::DDGSTF;
        }
        let has_data = layout.data_len > 0 && layout.pdu_type.payload() != Payload::TermReqData;
        let ch = |pdu_flags| CommonHeader {
            pdu_type: layout.pdu_type as u8,
            flags: pdu_flags,
            hlen: layout.hlen as u8,
            pdo: if has_data {
                layout.data_offset as u8
            } else {
                0
            },
            plen: layout.plen as u32,
        };
        let body = &mut out[..layout.hlen];
        let put_u16 = |body: &mut [u8], at: usize, v: u16| {
            body[at..at + 2].copy_from_slice(&v.to_le_bytes());
        };
        let put_u32 = |body: &mut [u8], at: usize, v: u32| {
            body[at..at + 4].copy_from_slice(&v.to_le_bytes());
        };
        let dgst = |header_digest: bool, data_digest: bool| {
            (if header_digest { DGST_HEADER } else { 0 })
                | (if data_digest { DGST_DATA } else { 0 })
        };
        match self {
            Self::ICReq(ic) => {
                put_u16(body, 8, ic.pfv);
                body[10] = ic.hpda;
                body[11] = dgst(ic.header_digest, ic.data_digest);
                put_u32(body, 12, ic.maxr2t);
            }
            Self::ICResp(ic) => {
                put_u16(body, 8, ic.pfv);
                body[10] = ic.cpda;
                body[11] = dgst(ic.header_digest, ic.data_digest);
                put_u32(body, 12, ic.maxh2cdata);
            }
            Self::H2CTermReq(term) | Self::C2HTermReq(term) => {
                put_u16(body, 8, term.fes);
                put_u32(body, 10, term.fei);
            }
            Self::CapsuleCmd(command) => {
                body[COMMON_HEADER_LEN..CAPSULE_CMD_HEADER_LEN]
                    .copy_from_slice(&command.to_bytes());
            }
            Self::CapsuleResp(completion) => {
                body[COMMON_HEADER_LEN..CAPSULE_RESP_HEADER_LEN]
                    .copy_from_slice(&completion.to_bytes());
            }
            Self::H2CData(h2c) => {
                if h2c.last {
                    pdu_flags |= flags::DATA_LAST;
                }
                put_u16(body, 8, h2c.cccid);
                put_u16(body, 10, h2c.ttag);
                put_u32(body, 12, h2c.datao);
                put_u32(body, 16, h2c.datal);
            }
            Self::C2HData(c2h) => {
                if c2h.last {
                    pdu_flags |= flags::DATA_LAST;
                }
                if c2h.success {
                    pdu_flags |= flags::DATA_SUCCESS;
                }
                put_u16(body, 8, c2h.cccid);
                put_u32(body, 12, c2h.datao);
                put_u32(body, 16, c2h.datal);
            }
            Self::R2T(r2t) => {
                put_u16(body, 8, r2t.cccid);
                put_u16(body, 10, r2t.ttag);
                put_u32(body, 12, r2t.r2to);
                put_u32(body, 16, r2t.r2tl);
            }
        }
        body[..COMMON_HEADER_LEN].copy_from_slice(&ch(pdu_flags).to_bytes());
        if layout.header_digest {
            let hdgst = digest::crc32c(&out[..layout.hlen]).to_le_bytes();
            out[layout.hlen..layout.hlen + DIGEST_LEN].copy_from_slice(&hdgst);
        }
        Ok(layout)
    }

    /// Writes the whole PDU: header (see [`encode_header`](Self::encode_header)), the
    /// concatenation of `data`, and the data digest if negotiated. For small PDUs (in-capsule
    /// data, TermReq, tests); large data should be sent from its own buffers instead.
    /// Returns the number of bytes written (`plen`).
    pub fn encode(
        &self,
        config: &EncodeConfig,
        data: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let data_len = data.iter().map(|slice| slice.len()).sum();
        let layout = self.layout(config, data_len)?;
        ensure_len(out, layout.plen)?;
        self.encode_header(config, data_len, out)?;
        let mut at = layout.data_offset;
        let mut crc = Crc32c::new();
        for slice in data {
            out[at..at + slice.len()].copy_from_slice(slice);
            crc.update(slice);
            at += slice.len();
        }
        if layout.data_digest {
            out[at..at + DIGEST_LEN].copy_from_slice(&crc.to_wire());
        }
        Ok(layout.plen)
    }
}

/// ICResp (controller → host).
pub fn encode_ic_resp(ic_resp: &ICResp, out: &mut [u8]) -> Result<usize, EncodeError> {
    PduHeader::ICResp(*ic_resp).encode(&EncodeConfig::default(), &[], out)
}

/// ICReq (host → controller).
pub fn encode_ic_req(ic_req: &ICReq, out: &mut [u8]) -> Result<usize, EncodeError> {
    PduHeader::ICReq(*ic_req).encode(&EncodeConfig::default(), &[], out)
}

/// A TermReq reporting `error`, carrying (up to 128 bytes of) the offending PDU header, sent by
/// `sender` (the controller sends C2HTermReq, the host H2CTermReq).
pub fn encode_term_req(
    sender: Role,
    term: &TermReq,
    offending_header: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let header = match sender {
        Role::Controller => PduHeader::C2HTermReq(*term),
        Role::Host => PduHeader::H2CTermReq(*term),
    };
    let data = &offending_header[..offending_header.len().min(TERM_REQ_MAX_DATA_LEN)];
    header.encode(&EncodeConfig::default(), &[data], out)
}

/// CapsuleResp carrying `completion` (controller → host).
pub fn encode_capsule_resp(
    config: &EncodeConfig,
    completion: &Completion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    PduHeader::CapsuleResp(*completion).encode(config, &[], out)
}

/// R2T (controller → host).
pub fn encode_r2t(config: &EncodeConfig, r2t: &R2T, out: &mut [u8]) -> Result<usize, EncodeError> {
    PduHeader::R2T(*r2t).encode(config, &[], out)
}

/// The part of a C2HData PDU before its data (controller → host). Send the data from the DMA
/// buffer next, then, if `layout.data_digest`, [`data_digest`] of that data.
pub fn encode_c2h_data_header(
    config: &EncodeConfig,
    c2h: &C2HData,
    out: &mut [u8],
) -> Result<PduLayout, EncodeError> {
    PduHeader::C2HData(*c2h).encode_header(config, c2h.datal as usize, out)
}

/// The part of an H2CData PDU before its data (host → controller); as
/// [`encode_c2h_data_header`].
pub fn encode_h2c_data_header(
    config: &EncodeConfig,
    h2c: &H2CData,
    out: &mut [u8],
) -> Result<PduLayout, EncodeError> {
    PduHeader::H2CData(*h2c).encode_header(config, h2c.datal as usize, out)
}

/// A whole CapsuleCmd with optional in-capsule data (host → controller).
pub fn encode_capsule_cmd(
    config: &EncodeConfig,
    command: &Command,
    in_capsule_data: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    PduHeader::CapsuleCmd(*command).encode(config, &[in_capsule_data], out)
}

/// The data digest trailer of data spread over `slices`.
pub fn data_digest(slices: &[&[u8]]) -> [u8; DIGEST_LEN] {
    digest::crc32c_of(slices).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfnvme_spec::nvm_opcode;

    const MAX_IN_CAPSULE: u32 = 8192;
    const MAX_DATA_PDU: u32 = 128 * 1024;

    fn decode_config(local_role: Role, header_digest: bool, data_digest: bool) -> DecodeConfig {
        DecodeConfig {
            local_role,
            header_digest,
            data_digest,
            pda: 0,
            max_in_capsule_data: MAX_IN_CAPSULE,
            max_data_pdu_len: MAX_DATA_PDU,
        }
    }

    fn encode(header: PduHeader, config: &EncodeConfig, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 1 << 18];
        let len = header.encode(config, &[data], &mut out).unwrap();
        out.truncate(len);
        out
    }

    /// Decodes one complete PDU from `bytes`; returns the header, its layout and its data.
    fn decode(bytes: &[u8], config: &DecodeConfig) -> Result<(PduHeader, PduLayout), PduError> {
        let ch = CommonHeader::parse(bytes[..COMMON_HEADER_LEN].try_into().unwrap());
        let layout = validate_common_header(&ch, config)?;
        let header = decode_header(bytes, &layout)?;
        Ok((header, layout))
    }

    fn error_of(bytes: &[u8], config: &DecodeConfig) -> (u16, u32) {
        let error = decode(bytes, config).expect_err("PDU should be rejected");
        (error.fatal_error_status(), error.field_offset())
    }

    /// Recomputes the header digest after a field was patched, so that the check under test
    /// is the one that fires.
    fn reseal(bytes: &mut [u8]) {
        if bytes[1] & flags::HDGSTF != 0 {
            let hlen = usize::from(bytes[2]);
            let hdgst = digest::crc32c(&bytes[..hlen]).to_le_bytes();
            bytes[hlen..hlen + 4].copy_from_slice(&hdgst);
        }
    }

    fn set_plen(bytes: &mut [u8], plen: u32) {
        bytes[4..8].copy_from_slice(&plen.to_le_bytes());
    }

    fn sample_command() -> Command {
        let mut command = Command::nvm_rw(nvm_opcode::WRITE, 1, 0x1234_5678_9abc, 8);
        command.set_cid(0x42);
        command.prp1 = 0xdead_beef_0000;
        command
    }

    fn sample_completion() -> Completion {
        Completion {
            result: 0x1122_3344,
            dw1: 7,
            sq_head: 12,
            sq_id: 3,
            cid: 0x42,
            status_phase: Status::generic(0x02).do_not_retry().raw() << 1,
        }
    }

    fn all_headers() -> Vec<(PduHeader, Vec<u8>)> {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 13) as u8).collect();
        vec![
            (
                PduHeader::ICReq(ICReq {
                    pfv: 0,
                    hpda: 3,
                    header_digest: true,
                    data_digest: false,
                    maxr2t: 15,
                }),
                vec![],
            ),
            (
                PduHeader::ICResp(ICResp {
                    pfv: 0,
                    cpda: 31,
                    header_digest: false,
                    data_digest: true,
                    maxh2cdata: 131_072,
                }),
                vec![],
            ),
            (
                PduHeader::H2CTermReq(TermReq { fes: 2, fei: 0 }),
                vec![0xab; 24],
            ),
            (
                PduHeader::C2HTermReq(TermReq { fes: 1, fei: 16 }),
                vec![0xcd; 128],
            ),
            (PduHeader::C2HTermReq(TermReq { fes: 3, fei: 0 }), vec![]),
            (PduHeader::CapsuleCmd(sample_command()), vec![]),
            (PduHeader::CapsuleCmd(sample_command()), data.clone()),
            (PduHeader::CapsuleResp(sample_completion()), vec![]),
            (
                PduHeader::H2CData(H2CData {
                    cccid: 9,
                    ttag: 0x77,
                    datao: 8192,
                    datal: 4096,
                    last: true,
                }),
                data.clone(),
            ),
            (
                PduHeader::C2HData(C2HData {
                    cccid: 9,
                    datao: 0,
                    datal: 4096,
                    last: true,
                    success: true,
                }),
                data.clone(),
            ),
            (
                PduHeader::C2HData(C2HData {
                    cccid: 10,
                    datao: 4096,
                    datal: 100,
                    last: false,
                    success: false,
                }),
                data[..100].to_vec(),
            ),
            (
                PduHeader::R2T(R2T {
                    cccid: 5,
                    ttag: 1,
                    r2to: 4096,
                    r2tl: 65536,
                }),
                vec![],
            ),
        ]
    }

    #[test]
    fn every_pdu_type_round_trips() {
        for header_digest in [false, true] {
            for data_digest in [false, true] {
                for pda in [0, 1, 7] {
                    let encode_config = EncodeConfig {
                        header_digest,
                        data_digest,
                        pda,
                    };
                    for (header, data) in all_headers() {
                        let receiver = match header.pdu_type().sender() {
                            Role::Host => Role::Controller,
                            Role::Controller => Role::Host,
                        };
                        let mut config = decode_config(receiver, header_digest, data_digest);
                        config.pda = pda;
                        let bytes = encode(header, &encode_config, &data);
                        let (decoded, layout) = decode(&bytes, &config)
                            .unwrap_or_else(|e| panic!("{header:?} with {encode_config:?}: {e}"));
                        assert_eq!(decoded, header);
                        assert_eq!(layout.plen, bytes.len());
                        assert_eq!(layout.data_len, data.len());
                        let data_at = &bytes[layout.data_offset..][..layout.data_len];
                        assert_eq!(data_at, &data[..]);
                        if layout.data_digest {
                            let trailer = &bytes[layout.data_offset + layout.data_len..];
                            assert_eq!(trailer, super::data_digest(&[&data]));
                        }
                        if layout.data_len > 0 && header.pdu_type().may_carry_digests() {
                            assert_eq!(layout.data_offset % ((usize::from(pda) + 1) * 4), 0);
                        }
                    }
                }
            }
        }
    }

    /// The bytes of a CapsuleResp with header digest, written out by hand: the common header,
    /// the CQE, and the CRC32C of those 24 bytes little-endian, as Linux's `nvme_tcp_hdgst`
    /// writes it (see the `digest` module).
    #[test]
    fn capsule_resp_wire_bytes() {
        let config = EncodeConfig {
            header_digest: true,
            data_digest: true,
            pda: 0,
        };
        let mut out = [0u8; 64];
        let len = encode_capsule_resp(&config, &sample_completion(), &mut out).unwrap();
        assert_eq!(len, 28);
        assert_eq!(out[..8], [0x05, 0x01, 24, 0, 28, 0, 0, 0]);
        assert_eq!(out[8..24], sample_completion().to_bytes());
        let crc = digest::crc32c(&out[..24]);
        assert_eq!(out[24..28], crc.to_le_bytes());
    }

    /// C2HData carrying "123456789" ends with the CRC32C check value 0xE3069283, least
    /// significant byte first.
    #[test]
    fn data_digest_test_vector() {
        let config = EncodeConfig {
            header_digest: false,
            data_digest: true,
            pda: 0,
        };
        let c2h = PduHeader::C2HData(C2HData {
            cccid: 1,
            datao: 0,
            datal: 9,
            last: true,
            success: false,
        });
        let bytes = encode(c2h, &config, b"123456789");
        assert_eq!(bytes.len(), 24 + 9 + 4);
        assert_eq!(bytes[..8], [0x07, 0x06, 24, 24, 37, 0, 0, 0]);
        assert_eq!(bytes[33..], [0x83, 0x92, 0x06, 0xe3]);
        assert_eq!(data_digest(&[b"1234", b"56789"]), [0x83, 0x92, 0x06, 0xe3]);
    }

    #[test]
    fn split_header_encoding_matches_whole_encoding() {
        let config = EncodeConfig {
            header_digest: true,
            data_digest: true,
            pda: 3,
        };
        let data = [7u8; 600];
        let c2h = C2HData {
            cccid: 3,
            datao: 0,
            datal: 600,
            last: true,
            success: true,
        };
        let whole = encode(PduHeader::C2HData(c2h), &config, &data);
        let mut header = [0u8; 64];
        let layout = encode_c2h_data_header(&config, &c2h, &mut header).unwrap();
        assert_eq!(layout.data_offset, 32, "24 + 4 digest, aligned to 16");
        let mut assembled = header[..layout.data_offset].to_vec();
        assembled.extend_from_slice(&data);
        assembled.extend_from_slice(&data_digest(&[&data[..100], &data[100..]]));
        assert_eq!(assembled, whole);
    }

    #[test]
    fn encoders_refuse_short_buffers_and_bad_lengths() {
        let config = EncodeConfig::default();
        let mut small = [0u8; 20];
        assert_eq!(
            encode_capsule_resp(&config, &sample_completion(), &mut small),
            Err(EncodeError::BufferTooSmall {
                needed: 24,
                available: 20
            })
        );
        let mut out = [0u8; 256];
        let h2c = H2CData {
            datal: 10,
            ..H2CData::default()
        };
        assert_eq!(
            PduHeader::H2CData(h2c).encode(&config, &[&[0u8; 9]], &mut out),
            Err(EncodeError::InvalidDataLength {
                pdu_type: PduType::H2CData,
                data_len: 9
            })
        );
        assert!(PduHeader::R2T(R2T::default())
            .encode(&config, &[&[1u8]], &mut out)
            .is_err());
        let term = TermReq { fes: 1, fei: 2 };
        let len = encode_term_req(Role::Controller, &term, &[9u8; 200], &mut out).unwrap();
        assert_eq!(len, 24 + 128, "offending header truncated to 128 bytes");
    }

    fn ctrl() -> DecodeConfig {
        decode_config(Role::Controller, false, false)
    }

    fn ctrl_digests() -> DecodeConfig {
        decode_config(Role::Controller, true, true)
    }

    fn host() -> DecodeConfig {
        decode_config(Role::Host, false, false)
    }

    fn capsule_cmd(config: &EncodeConfig, data: &[u8]) -> Vec<u8> {
        encode(PduHeader::CapsuleCmd(sample_command()), config, data)
    }

    fn digests_on() -> EncodeConfig {
        EncodeConfig {
            header_digest: true,
            data_digest: true,
            pda: 0,
        }
    }

    #[test]
    fn unknown_pdu_type() {
        let mut bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        bytes[0] = 0x08;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 0));
        bytes[0] = 0xff;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 0));
    }

    #[test]
    fn pdu_type_from_the_wrong_direction() {
        let bytes = encode(
            PduHeader::CapsuleResp(sample_completion()),
            &EncodeConfig::default(),
            &[],
        );
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 0));
        let bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        assert_eq!(error_of(&bytes, &host()), (0x01, 0));
    }

    #[test]
    fn wrong_hlen_for_type() {
        let mut bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        bytes[2] = 24;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 2));
        let mut bytes = encode_ic_req_vec(&ICReq::default());
        bytes[2] = 127;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 2));
    }

    fn encode_ic_req_vec(ic_req: &ICReq) -> Vec<u8> {
        let mut out = vec![0u8; IC_PDU_LEN];
        assert_eq!(encode_ic_req(ic_req, &mut out), Ok(IC_PDU_LEN));
        out
    }

    #[test]
    fn plen_shorter_than_header() {
        let mut bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        set_plen(&mut bytes, 71);
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 4));
    }

    #[test]
    fn plen_shorter_than_header_and_digest() {
        let mut bytes = capsule_cmd(&digests_on(), &[]);
        assert_eq!(bytes.len(), 76);
        set_plen(&mut bytes, 72);
        assert_eq!(error_of(&bytes, &ctrl_digests()), (0x01, 4));
    }

    #[test]
    fn plen_of_fixed_size_pdus() {
        let mut bytes = encode_ic_req_vec(&ICReq::default());
        set_plen(&mut bytes, 132);
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 4));
        let mut bytes = encode(
            PduHeader::R2T(R2T::default()),
            &EncodeConfig::default(),
            &[],
        );
        set_plen(&mut bytes, 28);
        assert_eq!(error_of(&bytes, &host()), (0x01, 4));
    }

    #[test]
    fn term_req_plen_bounds() {
        let term = PduHeader::H2CTermReq(TermReq { fes: 1, fei: 0 });
        let mut bytes = encode(term, &EncodeConfig::default(), &[0u8; 128]);
        assert!(decode(&bytes, &ctrl()).is_ok());
        set_plen(&mut bytes, 153);
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 4));
        set_plen(&mut bytes, 23);
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 4));
        set_plen(&mut bytes, 24);
        bytes[3] = 7;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 3));
    }

    #[test]
    fn in_capsule_data_over_the_limit() {
        let mut config = ctrl();
        let bytes = capsule_cmd(&EncodeConfig::default(), &[1u8; 4096]);
        config.max_in_capsule_data = 4096;
        assert!(decode(&bytes, &config).is_ok());
        config.max_in_capsule_data = 4092;
        assert_eq!(error_of(&bytes, &config), (0x05, 0));
    }

    #[test]
    fn h2c_data_over_the_limit() {
        let mut bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        // An H2CData claiming 4 GiB: rejected from its common header alone.
        bytes[..8].copy_from_slice(&[0x06, 0x04, 24, 24, 0xff, 0xff, 0xff, 0xff]);
        let error = decode(&bytes[..24], &ctrl()).unwrap_err();
        assert_eq!(
            error,
            PduError::DataLimitExceeded {
                len: u64::from(u32::MAX) - 24,
                max: u64::from(MAX_DATA_PDU)
            }
        );
        assert_eq!(
            (error.fatal_error_status(), error.field_offset()),
            (0x05, 0)
        );
    }

    #[test]
    fn pdo_without_data() {
        let mut bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        bytes[3] = 72;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 3));
        let mut bytes = encode(
            PduHeader::CapsuleResp(sample_completion()),
            &EncodeConfig::default(),
            &[],
        );
        bytes[3] = 24;
        assert_eq!(error_of(&bytes, &host()), (0x01, 3));
    }

    #[test]
    fn pdo_inside_header_or_digest() {
        let mut bytes = capsule_cmd(&digests_on(), &[5u8; 512]);
        assert_eq!(bytes[3], 76);
        bytes[3] = 72;
        assert_eq!(error_of(&bytes, &ctrl_digests()), (0x01, 3));
        bytes[3] = 8;
        assert_eq!(error_of(&bytes, &ctrl_digests()), (0x01, 3));
    }

    #[test]
    fn pdo_beyond_plen() {
        let mut bytes = capsule_cmd(&EncodeConfig::default(), &[5u8; 16]);
        set_plen(&mut bytes, 80);
        bytes[3] = 84;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 3));
        bytes[3] = 80;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 3), "PDO == PLEN: no data");
    }

    #[test]
    fn pdo_misaligned() {
        let mut config = ctrl();
        config.pda = 3;
        let mut bytes = capsule_cmd(
            &EncodeConfig {
                pda: 3,
                ..EncodeConfig::default()
            },
            &[1u8; 64],
        );
        assert_eq!(bytes[3], 80);
        assert!(decode(&bytes, &config).is_ok());
        bytes[3] = 76;
        set_plen(&mut bytes, 76 + 64);
        assert_eq!(error_of(&bytes, &config), (0x01, 3));
    }

    #[test]
    fn data_digest_flag_without_data() {
        let mut bytes = encode(
            PduHeader::CapsuleResp(sample_completion()),
            &EncodeConfig::default(),
            &[],
        );
        bytes[1] |= flags::DDGSTF;
        assert_eq!(
            error_of(&bytes, &decode_config(Role::Host, false, true)),
            (0x01, 1)
        );
        let mut bytes = encode(
            PduHeader::R2T(R2T::default()),
            &EncodeConfig::default(),
            &[],
        );
        bytes[1] |= flags::DDGSTF;
        assert_eq!(error_of(&bytes, &host()), (0x01, 1));
        let mut bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        bytes[1] |= flags::DDGSTF;
        assert_eq!(
            error_of(&bytes, &decode_config(Role::Controller, false, true)),
            (0x01, 1)
        );
    }

    #[test]
    fn digest_flags_disagree_with_negotiation() {
        let bytes = capsule_cmd(&EncodeConfig::default(), &[]);
        assert_eq!(
            error_of(&bytes, &ctrl_digests()),
            (0x01, 1),
            "HDGSTF missing"
        );
        let bytes = capsule_cmd(&digests_on(), &[]);
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 1), "HDGSTF unexpected");
        let no_data_digest = EncodeConfig {
            header_digest: true,
            data_digest: false,
            pda: 0,
        };
        let bytes = capsule_cmd(&no_data_digest, &[1u8; 8]);
        assert_eq!(
            error_of(&bytes, &ctrl_digests()),
            (0x01, 1),
            "DDGSTF missing"
        );
        let bytes = capsule_cmd(&digests_on(), &[1u8; 8]);
        let header_digest_only = decode_config(Role::Controller, true, false);
        assert_eq!(
            error_of(&bytes, &header_digest_only),
            (0x01, 1),
            "DDGSTF unexpected"
        );
    }

    #[test]
    fn digest_flags_on_connection_pdus() {
        let mut bytes = encode_ic_req_vec(&ICReq::default());
        bytes[1] = flags::HDGSTF;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 1));
        let term = PduHeader::H2CTermReq(TermReq::default());
        let mut bytes = encode(term, &EncodeConfig::default(), &[]);
        bytes[1] = flags::DDGSTF;
        assert_eq!(error_of(&bytes, &ctrl_digests()), (0x01, 1));
    }

    #[test]
    fn data_pdu_without_data() {
        let h2c = PduHeader::H2CData(H2CData {
            datal: 4,
            ..H2CData::default()
        });
        let mut bytes = encode(h2c, &EncodeConfig::default(), &[1, 2, 3, 4]);
        set_plen(&mut bytes, 24);
        bytes[3] = 0;
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 4));
    }

    #[test]
    fn plen_without_room_for_data_digest() {
        let mut bytes = capsule_cmd(&digests_on(), &[1u8; 8]);
        set_plen(&mut bytes, 76 + 3);
        assert_eq!(error_of(&bytes, &ctrl_digests()), (0x01, 4));
        set_plen(&mut bytes, 76 + 4);
        assert_eq!(
            error_of(&bytes, &ctrl_digests()),
            (0x01, 4),
            "digest but no data"
        );
    }

    #[test]
    fn datal_disagrees_with_plen() {
        for digests in [false, true] {
            let config = EncodeConfig {
                header_digest: digests,
                data_digest: digests,
                pda: 0,
            };
            let h2c = PduHeader::H2CData(H2CData {
                datal: 16,
                last: true,
                ..H2CData::default()
            });
            let mut bytes = encode(h2c, &config, &[3u8; 16]);
            bytes[16] = 17;
            reseal(&mut bytes);
            let decode_config = decode_config(Role::Controller, digests, digests);
            assert_eq!(error_of(&bytes, &decode_config), (0x01, 16));
        }
    }

    #[test]
    fn c2h_success_without_last() {
        let c2h = PduHeader::C2HData(C2HData {
            datal: 8,
            last: true,
            success: true,
            ..C2HData::default()
        });
        let mut bytes = encode(c2h, &EncodeConfig::default(), &[0u8; 8]);
        bytes[1] &= !flags::DATA_LAST;
        assert_eq!(error_of(&bytes, &host()), (0x01, 1));
    }

    #[test]
    fn bad_header_digest() {
        let mut bytes = capsule_cmd(&digests_on(), &[]);
        bytes[72] ^= 0x01;
        let error = decode(&bytes, &ctrl_digests()).unwrap_err();
        assert!(matches!(error, PduError::HeaderDigest { .. }));
        assert_eq!(
            (error.fatal_error_status(), error.field_offset()),
            (0x03, 0)
        );
        let mut bytes = capsule_cmd(&digests_on(), &[]);
        bytes[40] ^= 0x80;
        assert_eq!(
            error_of(&bytes, &ctrl_digests()),
            (0x03, 0),
            "corrupted SQE"
        );
    }

    #[test]
    fn ic_req_fields() {
        let bytes = encode_ic_req_vec(&ICReq {
            pfv: 1,
            ..ICReq::default()
        });
        assert_eq!(error_of(&bytes, &ctrl()), (0x06, 8));
        let bytes = encode_ic_req_vec(&ICReq {
            hpda: 32,
            ..ICReq::default()
        });
        assert_eq!(error_of(&bytes, &ctrl()), (0x01, 10));
    }

    #[test]
    fn ic_resp_fields() {
        let mut out = [0u8; IC_PDU_LEN];
        for maxh2cdata in [0, 4092, 4098] {
            let ic_resp = ICResp {
                maxh2cdata,
                ..ICResp::default()
            };
            encode_ic_resp(&ic_resp, &mut out).unwrap();
            assert_eq!(
                error_of(&out, &host()),
                (0x01, 12),
                "MAXH2CDATA {maxh2cdata}"
            );
        }
        let ic_resp = ICResp {
            cpda: 40,
            maxh2cdata: 4096,
            ..ICResp::default()
        };
        encode_ic_resp(&ic_resp, &mut out).unwrap();
        assert_eq!(error_of(&out, &host()), (0x01, 10));
    }

    #[test]
    fn data_digest_error_is_a_transient_transport_error() {
        let mismatch = check_data_digest(Crc32c::new(), [1, 0, 0, 0]).unwrap_err();
        assert_eq!(mismatch.received, 1);
        let status = mismatch.completion_status();
        assert_eq!((status.sct(), status.sc()), (0, 0x22));
        assert!(!status.dnr(), "the host may retry");
    }

    #[test]
    fn term_req_from_error() {
        let error = invalid(field_offset::DATA_DATAL, "test");
        assert_eq!(error.term_req(), TermReq { fes: 1, fei: 16 });
        let mut out = [0u8; 200];
        let offending = [0x06u8; 24];
        let len =
            encode_term_req(Role::Controller, &error.term_req(), &offending, &mut out).unwrap();
        assert_eq!(len, 48);
        assert_eq!(out[..12], [0x03, 0, 24, 0, 48, 0, 0, 0, 1, 0, 16, 0]);
        let (header, layout) = decode(&out[..len], &host()).unwrap();
        assert_eq!(header, PduHeader::C2HTermReq(error.term_req()));
        assert_eq!(&out[layout.data_offset..len], &offending);
    }
}
