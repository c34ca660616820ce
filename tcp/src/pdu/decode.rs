//! Received header bytes to a typed [`PduHeader`]. The bytes are read in place through the wire
//! layouts of `vfnvme_spec::tcp` (no copy of the header, nothing allocated): this runs once per
//! received PDU. The checks are [`validate`](super::validate)'s; this file only reads fields.

use vfnvme_spec::tcp::{self as wire, dgst, flags};
use vfnvme_spec::{Command, Completion};
use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::types::{C2HData, H2CData, ICReq, ICResp, PduHeader, PduLayout, PduType, TermReq, R2T};
use super::validate::{
    check_c2h_flags, check_datal, check_header_digest, check_ic_fields, check_maxh2cdata, PduError,
};

/// Verifies the header digest (if any) and decodes the PDU-specific header.
///
/// `header` holds at least `layout.header_len()` bytes of the PDU whose common header produced
/// `layout` (shorter input panics: the caller buffers whole headers first).
pub fn decode_header(header: &[u8], layout: &PduLayout) -> Result<PduHeader, PduError> {
    check_header_digest(header, layout)?;
    let bytes = &header[..layout.hlen];
    Ok(match layout.pdu_type {
        PduType::ICReq => {
            let ic: &wire::ICReqHeader = view(bytes);
            check_ic_fields(ic.pfv.get(), ic.hpda)?;
            PduHeader::ICReq(ICReq {
                pfv: ic.pfv.get(),
                hpda: ic.hpda,
                header_digest: ic.dgst & dgst::HEADER != 0,
                data_digest: ic.dgst & dgst::DATA != 0,
                maxr2t: ic.maxr2t.get(),
            })
        }
        PduType::ICResp => {
            let ic: &wire::ICRespHeader = view(bytes);
            check_ic_fields(ic.pfv.get(), ic.cpda)?;
            check_maxh2cdata(ic.maxh2cdata.get())?;
            PduHeader::ICResp(ICResp {
                pfv: ic.pfv.get(),
                cpda: ic.cpda,
                header_digest: ic.dgst & dgst::HEADER != 0,
                data_digest: ic.dgst & dgst::DATA != 0,
                maxh2cdata: ic.maxh2cdata.get(),
            })
        }
        PduType::H2CTermReq | PduType::C2HTermReq => {
            let term: &wire::TermReqHeader = view(bytes);
            let term = TermReq {
                fes: term.fes.get(),
                fei: term.fei.get(),
            };
            if layout.pdu_type == PduType::H2CTermReq {
                PduHeader::H2CTermReq(term)
            } else {
                PduHeader::C2HTermReq(term)
            }
        }
        PduType::CapsuleCmd => {
            let capsule: &wire::CapsuleCmdHeader = view(bytes);
            PduHeader::CapsuleCmd(Command::from_bytes(&capsule.sqe))
        }
        PduType::CapsuleResp => {
            let capsule: &wire::CapsuleRespHeader = view(bytes);
            PduHeader::CapsuleResp(Completion::from_bytes(&capsule.cqe))
        }
        PduType::H2CData => {
            let data: &wire::H2CDataHeader = view(bytes);
            check_datal(data.datal.get(), layout)?;
            PduHeader::H2CData(H2CData {
                cccid: data.cccid.get(),
                ttag: data.ttag.get(),
                datao: data.datao.get(),
                datal: data.datal.get(),
                last: data.common.flags & flags::DATA_LAST != 0,
            })
        }
        PduType::C2HData => {
            let data: &wire::C2HDataHeader = view(bytes);
            check_datal(data.datal.get(), layout)?;
            let last = data.common.flags & flags::DATA_LAST != 0;
            let success = data.common.flags & flags::DATA_SUCCESS != 0;
            check_c2h_flags(last, success)?;
            PduHeader::C2HData(C2HData {
                cccid: data.cccid.get(),
                datao: data.datao.get(),
                datal: data.datal.get(),
                last,
                success,
            })
        }
        PduType::R2T => {
            let r2t: &wire::R2THeader = view(bytes);
            PduHeader::R2T(R2T {
                cccid: r2t.cccid.get(),
                ttag: r2t.ttag.get(),
                r2to: r2t.r2to.get(),
                r2tl: r2t.r2tl.get(),
            })
        }
    })
}

/// The header layout `T` over the first bytes of `bytes`, which the common header's validated
/// `hlen` guarantees are there.
fn view<T: FromBytes + KnownLayout + Immutable>(bytes: &[u8]) -> &T {
    let (header, _) = T::ref_from_prefix(bytes).expect("hlen covers the PDU-specific header");
    header
}
