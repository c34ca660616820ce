//! Helpers of the PDU tests: configurations, sample commands, and encode/decode of whole PDUs
//! in one call.

use super::*;
use crate::digest;
use vfnvme_spec::{nvm_opcode, Command, Completion, Status};
use zerocopy::FromBytes;

pub const MAX_IN_CAPSULE: u32 = 8192;
pub const MAX_DATA_PDU: u32 = 128 * 1024;

pub fn decode_config(local_role: Role, header_digest: bool, data_digest: bool) -> DecodeConfig {
    DecodeConfig {
        local_role,
        header_digest,
        data_digest,
        pda: 0,
        max_in_capsule_data: MAX_IN_CAPSULE,
        max_data_pdu_len: MAX_DATA_PDU,
    }
}

pub fn encode(header: PduHeader, config: &EncodeConfig, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 1 << 18];
    let len = header.encode(config, &[data], &mut out).unwrap();
    out.truncate(len);
    out
}

/// Decodes one complete PDU from `bytes`; returns the header and its layout.
pub fn decode(bytes: &[u8], config: &DecodeConfig) -> Result<(PduHeader, PduLayout), PduError> {
    let (ch, _) = CommonHeader::ref_from_prefix(bytes).unwrap();
    let layout = validate_common_header(ch, config)?;
    let header = decode_header(bytes, &layout)?;
    Ok((header, layout))
}

pub fn error_of(bytes: &[u8], config: &DecodeConfig) -> (u16, u32) {
    let error = decode(bytes, config).expect_err("PDU should be rejected");
    (error.fatal_error_status(), error.field_offset())
}

/// Recomputes the header digest after a field was patched, so that the check under test
/// is the one that fires.
pub fn reseal(bytes: &mut [u8]) {
    if bytes[1] & flags::HDGSTF != 0 {
        let hlen = usize::from(bytes[2]);
        let hdgst = digest::crc32c(&bytes[..hlen]).to_le_bytes();
        bytes[hlen..hlen + 4].copy_from_slice(&hdgst);
    }
}

pub fn set_plen(bytes: &mut [u8], plen: u32) {
    bytes[4..8].copy_from_slice(&plen.to_le_bytes());
}

pub fn sample_command() -> Command {
    let mut command = Command::nvm_rw(nvm_opcode::WRITE, 1, 0x1234_5678_9abc, 8);
    command.set_cid(0x42);
    command.prp1 = 0xdead_beef_0000;
    command
}

pub fn sample_completion() -> Completion {
    Completion {
        result: 0x1122_3344,
        dw1: 7,
        sq_head: 12,
        sq_id: 3,
        cid: 0x42,
        status_phase: Status::generic(0x02).do_not_retry().raw() << 1,
    }
}

pub fn ctrl() -> DecodeConfig {
    decode_config(Role::Controller, false, false)
}

pub fn ctrl_digests() -> DecodeConfig {
    decode_config(Role::Controller, true, true)
}

pub fn host() -> DecodeConfig {
    decode_config(Role::Host, false, false)
}

pub fn capsule_cmd(config: &EncodeConfig, data: &[u8]) -> Vec<u8> {
    encode(PduHeader::CapsuleCmd(sample_command()), config, data)
}

pub fn digests_on() -> EncodeConfig {
    EncodeConfig {
        header_digest: true,
        data_digest: true,
        pda: 0,
    }
}

pub fn encode_ic_req_vec(ic_req: &ICReq) -> Vec<u8> {
    let mut out = vec![0u8; IC_PDU_LEN];
    assert_eq!(encode_ic_req(ic_req, &mut out), Ok(IC_PDU_LEN));
    out
}
