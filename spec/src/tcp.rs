//! NVMe/TCP PDU headers (NVMe/TCP Transport Specification 1.0) as wire layouts.
//!
//! Every PDU starts with the 8-byte [`CommonHeader`]; the PDU-specific header follows, the two
//! together `hlen` bytes. These are the raw layouts only (little-endian fields, reserved bytes
//! kept): what a field means and which values are legal is decided by the transport crate
//! (`vfnvme-tcp`), which reads these with `ref_from_prefix` on received bytes and writes them
//! with `write_to_prefix` into send buffers. Their own file because they are a wire format of
//! their own, beside the NVMe and Fabrics structures.

use std::mem::size_of;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{CQE_SIZE, SQE_SIZE};

/// PDU-Type values (common header byte 0).
pub mod pdu_type {
    pub const IC_REQ: u8 = 0x00;
    pub const IC_RESP: u8 = 0x01;
    pub const H2C_TERM_REQ: u8 = 0x02;
    pub const C2H_TERM_REQ: u8 = 0x03;
    pub const CAPSULE_CMD: u8 = 0x04;
    pub const CAPSULE_RESP: u8 = 0x05;
    pub const H2C_DATA: u8 = 0x06;
    pub const C2H_DATA: u8 = 0x07;
    pub const R2T: u8 = 0x09;
}

/// Common header FLAGS bits.
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

/// ICReq/ICResp DGST bits: the digests requested or enabled.
pub mod dgst {
    pub const HEADER: u8 = 0x01;
    pub const DATA: u8 = 0x02;
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

/// The only PDU format version defined (PFV 1.0 is 0).
pub const PFV_1_0: u16 = 0;

/// The 8 bytes every PDU starts with.
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
pub struct CommonHeader {
    pub pdu_type: u8,
    pub flags: u8,
    /// Length of the common and PDU-specific header.
    pub hlen: u8,
    /// PDU data offset: where the data starts, 0 without data.
    pub pdo: u8,
    /// Length of the whole PDU: headers, digests, pad and data.
    pub plen: U32,
}

/// Initialize Connection Request (host → controller); `hlen` and `plen` are both 128.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct ICReqHeader {
    pub common: CommonHeader,
    pub pfv: U16,
    /// Host PDU data alignment, 0's based in dwords.
    pub hpda: u8,
    /// See [`dgst`].
    pub dgst: u8,
    /// Outstanding R2Ts per command, 0's based.
    pub maxr2t: U32,
    pub reserved: [u8; 112],
}

/// Initialize Connection Response (controller → host); `hlen` and `plen` are both 128.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct ICRespHeader {
    pub common: CommonHeader,
    pub pfv: U16,
    /// Controller PDU data alignment, 0's based in dwords.
    pub cpda: u8,
    /// See [`dgst`].
    pub dgst: u8,
    /// Largest data in one H2CData PDU.
    pub maxh2cdata: U32,
    pub reserved: [u8; 112],
}

/// H2CTermReq / C2HTermReq header; up to 128 bytes of the offending PDU header follow as data.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct TermReqHeader {
    pub common: CommonHeader,
    /// Fatal error status (see [`fes`]).
    pub fes: U16,
    /// Fatal error information: the offending field's offset for FES 0x01 and 0x06.
    pub fei: U32,
    pub reserved: [u8; 10],
}

/// CapsuleCmd header: one submission queue entry; in-capsule data may follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct CapsuleCmdHeader {
    pub common: CommonHeader,
    pub sqe: [u8; SQE_SIZE],
}

/// CapsuleResp header: one completion queue entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct CapsuleRespHeader {
    pub common: CommonHeader,
    pub cqe: [u8; CQE_SIZE],
}

/// H2CData header (host → controller): data answering an R2T.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct H2CDataHeader {
    pub common: CommonHeader,
    /// Command capsule CID.
    pub cccid: U16,
    /// Transfer tag from the R2T this data answers.
    pub ttag: U16,
    /// Offset of this data in the command's transfer.
    pub datao: U32,
    /// Bytes of data in this PDU.
    pub datal: U32,
    pub reserved: [u8; 4],
}

/// C2HData header (controller → host).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct C2HDataHeader {
    pub common: CommonHeader,
    /// Command capsule CID.
    pub cccid: U16,
    pub reserved0: [u8; 2],
    /// Offset of this data in the command's transfer.
    pub datao: U32,
    /// Bytes of data in this PDU.
    pub datal: U32,
    pub reserved1: [u8; 4],
}

/// Ready to Transfer header (controller → host).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct R2THeader {
    pub common: CommonHeader,
    /// Command capsule CID.
    pub cccid: U16,
    /// Transfer tag the H2CData answering this R2T carries.
    pub ttag: U16,
    /// Offset in the command's transfer the host sends from.
    pub r2to: U32,
    /// Bytes requested.
    pub r2tl: U32,
    pub reserved: [u8; 4],
}

const _: () = assert!(size_of::<CommonHeader>() == 8);
const _: () = assert!(size_of::<ICReqHeader>() == 128);
const _: () = assert!(size_of::<ICRespHeader>() == 128);
const _: () = assert!(size_of::<TermReqHeader>() == 24);
const _: () = assert!(size_of::<CapsuleCmdHeader>() == 72);
const _: () = assert!(size_of::<CapsuleRespHeader>() == 24);
const _: () = assert!(size_of::<H2CDataHeader>() == 24);
const _: () = assert!(size_of::<C2HDataHeader>() == 24);
const _: () = assert!(size_of::<R2THeader>() == 24);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// The field offsets of the specification's figures, which a TermReq reports as FEI.
    #[test]
    fn field_offsets_match_the_specification() {
        assert_eq!(offset_of!(CommonHeader, plen), 4);
        assert_eq!(offset_of!(ICReqHeader, pfv), 8);
        assert_eq!(offset_of!(ICReqHeader, hpda), 10);
        assert_eq!(offset_of!(ICReqHeader, maxr2t), 12);
        assert_eq!(offset_of!(ICRespHeader, maxh2cdata), 12);
        assert_eq!(offset_of!(TermReqHeader, fei), 10);
        assert_eq!(offset_of!(H2CDataHeader, datao), 12);
        assert_eq!(offset_of!(H2CDataHeader, datal), 16);
        assert_eq!(offset_of!(C2HDataHeader, datal), 16);
        assert_eq!(offset_of!(R2THeader, r2tl), 16);
    }

    #[test]
    fn common_header_reads_little_endian() {
        let bytes = [0x04, 0x01, 72, 0, 76, 1, 0, 0];
        let (header, rest) = CommonHeader::ref_from_prefix(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(header.pdu_type, pdu_type::CAPSULE_CMD);
        assert_eq!(header.plen.get(), 332);
        assert_eq!(header.as_bytes(), &bytes);
    }
}
