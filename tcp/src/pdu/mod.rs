//! NVMe/TCP PDU headers (NVMe/TCP Transport Specification 1.0): typed decode with validation,
//! and encoders that write into caller-provided buffers.
//!
//! A PDU on the wire is: common header (8 bytes) and PDU-specific header, together `hlen`
//! bytes; a header digest if `HDGSTF`; pad bytes up to `pdo`; `data`; a data digest if `DDGSTF`.
//! `plen` counts all of it. Both directions are handled by the same code: which PDU types are
//! accepted depends only on [`DecodeConfig::local_role`]. The byte layouts are
//! `vfnvme_spec::tcp`'s; this module gives them meaning.
//!
//! - [`types`]: the decoded PDU headers, their layout in the stream, the connection's configs.
//! - [`validate`]: every check whose failure is fatal (a TermReq's FES/FEI), and data digests.
//! - [`decode`]: received header bytes to [`PduHeader`].
//! - [`encode`]: [`PduHeader`] to bytes in the caller's buffer.

pub mod decode;
pub mod encode;
pub mod types;
pub mod validate;

#[cfg(test)]
mod test_support;

pub use decode::decode_header;
pub use encode::{
    data_digest, encode_c2h_data_header, encode_capsule_cmd, encode_capsule_resp,
    encode_h2c_data_header, encode_ic_req, encode_ic_resp, encode_r2t, encode_term_req,
    EncodeError,
};
pub use types::{
    C2HData, DecodeConfig, EncodeConfig, H2CData, ICReq, ICResp, PduHeader, PduLayout, PduType,
    Role, TermReq, CAPSULE_RESP_HEADER_LEN, COMMON_HEADER_LEN, IC_PDU_LEN, MAX_DATA_OFFSET,
    MAX_PDA, MIN_MAXH2CDATA, PFV_1_0, R2T, TERM_REQ_MAX_DATA_LEN,
};
pub use validate::{
    check_data_digest, fes, field_offset, validate_common_header, DataDigestMismatch, PduError,
};
pub use vfnvme_spec::tcp::{flags, CommonHeader};
