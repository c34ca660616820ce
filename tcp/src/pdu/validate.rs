//! The checks of received PDUs. A failed check is fatal to the connection and reported in a
//! TermReq: [`PduError`] carries its Fatal Error Status and, for FES 0x01 and 0x06, the offset
//! of the offending field (FEI). What can be decided from the common header alone is checked
//! before the rest of the header arrives ([`validate_common_header`]); the checks of fields
//! further in are here too, called by the decoder. Data digest mismatches are the one error that
//! is not fatal ([`DataDigestMismatch`]).

use thiserror::Error;
use vfnvme_spec::status::generic;
use vfnvme_spec::tcp::{flags, CommonHeader};
use vfnvme_spec::Status;

use super::types::{
    digest_len, DecodeConfig, Payload, PduLayout, PduType, TermReq, MAX_PDA, MIN_MAXH2CDATA,
    PFV_1_0, TERM_REQ_MAX_DATA_LEN,
};
use crate::digest::{self, Crc32c, DIGEST_LEN};

pub use vfnvme_spec::tcp::fes;

/// Byte offsets of header fields, as reported in a TermReq's FEI: taken from the wire layouts,
/// never written by hand.
pub mod field_offset {
    use std::mem::offset_of;
    use vfnvme_spec::tcp::{CommonHeader, H2CDataHeader, ICReqHeader, ICRespHeader};

    pub const PDU_TYPE: u32 = offset_of!(CommonHeader, pdu_type) as u32;
    pub const FLAGS: u32 = offset_of!(CommonHeader, flags) as u32;
    pub const HLEN: u32 = offset_of!(CommonHeader, hlen) as u32;
    pub const PDO: u32 = offset_of!(CommonHeader, pdo) as u32;
    pub const PLEN: u32 = offset_of!(CommonHeader, plen) as u32;
    /// ICReq/ICResp PFV.
    pub const IC_PFV: u32 = offset_of!(ICReqHeader, pfv) as u32;
    /// ICReq HPDA / ICResp CPDA.
    pub const IC_PDA: u32 = offset_of!(ICReqHeader, hpda) as u32;
    /// ICResp MAXH2CDATA.
    pub const IC_MAXH2CDATA: u32 = offset_of!(ICRespHeader, maxh2cdata) as u32;
    /// H2CData/C2HData DATAL (the same offset in both).
    pub const DATA_DATAL: u32 = offset_of!(H2CDataHeader, datal) as u32;

    const _: () = assert!(IC_PDA as usize == offset_of!(ICRespHeader, cpda));
    const _: () =
        assert!(DATA_DATAL as usize == offset_of!(vfnvme_spec::tcp::C2HDataHeader, datal));
}
use field_offset as off;

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
        Status::generic(generic::TRANSIENT_TRANSPORT_ERROR)
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

/// Validates a common header against the connection's configuration and works out where the
/// rest of the PDU lies. Everything checkable from these 8 bytes is checked here, so a reader
/// never waits for (or buffers) the bytes of a PDU that is already known to be malformed.
pub fn validate_common_header(
    ch: &CommonHeader,
    config: &DecodeConfig,
) -> Result<PduLayout, PduError> {
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
    let plen = ch.plen.get() as usize;
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

pub(crate) fn invalid(offset: u32, reason: &'static str) -> PduError {
    PduError::InvalidHeaderField { offset, reason }
}

/// The header digest of a PDU whose common header produced `layout`: `header` holds at least
/// `layout.header_len()` bytes (shorter input panics: the caller buffers whole headers first).
pub(crate) fn check_header_digest(header: &[u8], layout: &PduLayout) -> Result<(), PduError> {
    if !layout.header_digest {
        return Ok(());
    }
    let (bytes, received) = header[..layout.header_len()].split_at(layout.hlen);
    let computed = digest::crc32c(bytes);
    let received = digest::from_wire(received.try_into().expect("a digest is 4 bytes"));
    if computed != received {
        return Err(PduError::HeaderDigest { computed, received });
    }
    Ok(())
}

/// ICReq/ICResp: the PDU format version and the data alignment asked for.
pub(crate) fn check_ic_fields(pfv: u16, pda: u8) -> Result<(), PduError> {
    if pfv != PFV_1_0 {
        return Err(PduError::UnsupportedParameter {
            offset: off::IC_PFV,
            reason: "PDU format version other than 1.0",
        });
    }
    if pda > MAX_PDA {
        return Err(invalid(off::IC_PDA, "PDU data alignment above 31"));
    }
    Ok(())
}

/// ICResp: the controller's MAXH2CDATA.
pub(crate) fn check_maxh2cdata(maxh2cdata: u32) -> Result<(), PduError> {
    if maxh2cdata < MIN_MAXH2CDATA || maxh2cdata & 3 != 0 {
        return Err(invalid(
            off::IC_MAXH2CDATA,
            "MAXH2CDATA below 4096 or not a dword multiple",
        ));
    }
    Ok(())
}

/// H2CData/C2HData: DATAL must say what PLEN and PDO already do.
pub(crate) fn check_datal(datal: u32, layout: &PduLayout) -> Result<(), PduError> {
    if datal as usize != layout.data_len {
        return Err(invalid(
            off::DATA_DATAL,
            "DATAL disagrees with PLEN and PDO",
        ));
    }
    Ok(())
}

/// C2HData: SUCCESS only on the last data PDU.
pub(crate) fn check_c2h_flags(last: bool, success: bool) -> Result<(), PduError> {
    if success && !last {
        return Err(invalid(off::FLAGS, "SUCCESS without LAST_PDU"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use super::invalid;
    use crate::digest::Crc32c;

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
