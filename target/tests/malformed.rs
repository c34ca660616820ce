//! Malformed input, one case per test: the exact C2HTermReq (FES, FEI) the target sends before
//! closing, or the status a command completes with; and every time, another connection to the
//! same target keeps working afterwards.

mod common;

use common::*;
use vfnvme_spec::fabrics::{FabricsCommand, PropertySet, PropertySize};
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::status::generic;
use vfnvme_spec::{admin_opcode, nvm_opcode, Command, Status};
use vfnvme_tcp::pdu::{self, fes, field_offset, H2CData, TermReq};
use vfnvme_tcp::PduHeader;

fn write(lba: u64, blocks: u32) -> Command {
    Command::nvm_rw(nvm_opcode::WRITE, 1, lba, blocks)
}

fn read(lba: u64, blocks: u32) -> Command {
    Command::nvm_rw(nvm_opcode::READ, 1, lba, blocks)
}

fn set_plen(bytes: &mut [u8], plen: u32) {
    bytes[4..8].copy_from_slice(&plen.to_le_bytes());
}

/// Asserts the termination and that the target still serves others.
fn assert_terminated(target: &RunningTarget, raw: &mut RawClient, fes: u16, fei: u32) {
    let (term, offending) = raw.expect_termination();
    assert_eq!(term, TermReq { fes, fei }, "FES/FEI of the C2HTermReq");
    assert!(offending.len() <= pdu::TERM_REQ_MAX_DATA_LEN);
    target.assert_serves();
}

/// An I/O queue of a fresh controller on a raw connection.
fn raw_io_queue(target: &RunningTarget, digests: bool) -> (vfnvme_host::Host, RawClient) {
    let host = target.host();
    let mut raw = RawClient::established(target.address, digests, digests);
    raw.connect_io_of(&host, 1, 16);
    (host, raw)
}

#[test]
fn truncated_pdu_then_close() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    raw.send(&capsule[..30]);
    raw.shutdown_write();
    // Nothing to report a half PDU with: the target just closes.
    raw.expect_closed();
    target.assert_serves();
}

#[test]
fn truncated_ic_req_then_close() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::open(target.address);
    raw.send(&RawClient::ic_req_bytes(false, false)[..100]);
    raw.shutdown_write();
    raw.expect_closed();
    target.assert_serves();
}

#[test]
fn pdu_longer_than_the_in_capsule_limit() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let mut capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    capsule[3] = 72; // PDO: data right after the header
    set_plen(&mut capsule, 72 + 1_000_000);
    raw.send(&capsule);
    assert_terminated(&target, &mut raw, fes::DATA_LIMIT_EXCEEDED, 0);
}

#[test]
fn h2c_data_longer_than_maxh2cdata() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::open(target.address);
    let ic_resp = raw.ic(false, false);
    let h2c = raw.h2c_bytes(
        H2CData {
            cccid: 0,
            ttag: 0,
            datao: 0,
            datal: 8,
            last: true,
        },
        &[0; 8],
    );
    let mut header = h2c[..24].to_vec();
    let datal = ic_resp.maxh2cdata + 4;
    set_plen(&mut header, 24 + datal);
    header[16..20].copy_from_slice(&datal.to_le_bytes());
    raw.send(&header);
    assert_terminated(&target, &mut raw, fes::DATA_LIMIT_EXCEEDED, 0);
}

#[test]
fn unknown_pdu_type() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let mut capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    capsule[0] = 0x08;
    raw.send(&capsule);
    assert_terminated(
        &target,
        &mut raw,
        fes::INVALID_HEADER_FIELD,
        field_offset::PDU_TYPE,
    );
}

#[test]
fn pdu_type_the_host_never_sends() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let mut capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    capsule[0] = 0x05; // CapsuleResp
    capsule[2] = 24;
    set_plen(&mut capsule, 24);
    raw.send(&capsule[..24]);
    assert_terminated(
        &target,
        &mut raw,
        fes::INVALID_HEADER_FIELD,
        field_offset::PDU_TYPE,
    );
}

#[test]
fn wrong_header_length() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let mut capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    capsule[2] = 64;
    raw.send(&capsule);
    assert_terminated(
        &target,
        &mut raw,
        fes::INVALID_HEADER_FIELD,
        field_offset::HLEN,
    );
}

#[test]
fn bad_header_digest() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, true, false);
    let mut capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    capsule[20] ^= 0x40; // inside the SQE, covered by the header digest
    raw.send(&capsule);
    assert_terminated(&target, &mut raw, fes::HEADER_DIGEST_ERROR, 0);
}

#[test]
fn header_digest_flag_missing_when_negotiated() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, true, true);
    raw.encode.header_digest = false;
    let capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    raw.send(&capsule);
    assert_terminated(
        &target,
        &mut raw,
        fes::INVALID_HEADER_FIELD,
        field_offset::FLAGS,
    );
}

/// A data digest error is no reason to drop the connection: the command completes with
/// Transient Transport Error (retryable) and the next one works.
#[test]
fn bad_data_digest_of_in_capsule_data() {
    let target = RunningTarget::start("");
    let (_host, mut raw) = raw_io_queue(&target, true);
    let data = pattern(4096, 7);
    let command = with_in_capsule_sgl(write(0, 8), 3, data.len());
    let mut capsule = raw.capsule_bytes(&command, &data);
    let last = capsule.len() - 1;
    capsule[last] ^= 0xff;
    raw.send(&capsule);
    let response = raw.expect_response();
    assert_eq!(response.cid, 3);
    let status = response.status();
    assert_eq!(
        (status.sct(), status.sc()),
        (0, generic::TRANSIENT_TRANSPORT_ERROR)
    );
    assert!(!status.dnr(), "the host may retry");
    // The same connection goes on.
    raw.send_capsule(&with_in_capsule_sgl(write(0, 8), 4, data.len()), &data);
    assert!(raw.expect_response().status().is_success());
    target.assert_serves();
}

#[test]
fn bad_data_digest_of_h2c_data() {
    let target = RunningTarget::start("");
    let (_host, mut raw) = raw_io_queue(&target, true);
    let data = pattern(16384, 8);
    raw.send_capsule(&with_transport_sgl(write(64, 32), 6, data.len()), &[]);
    let r2t = raw.expect_r2t();
    let mut h2c = raw.h2c_bytes(
        H2CData {
            cccid: 6,
            ttag: r2t.ttag,
            datao: 0,
            datal: data.len() as u32,
            last: true,
        },
        &data,
    );
    let at = h2c.len() - 10;
    h2c[at] ^= 1; // the data, not the digest
    raw.send(&h2c);
    let response = raw.expect_response();
    assert_eq!(response.cid, 6);
    assert_eq!(response.status().sc(), generic::TRANSIENT_TRANSPORT_ERROR);
    raw.send_capsule(&with_transport_sgl(read(64, 1), 7, 512), &[]);
    match raw.receive() {
        Received::Pdu(PduHeader::C2HData(_), _) => {}
        other => panic!("expected C2HData, got {other:?}"),
    }
    assert!(raw.expect_response().status().is_success());
    target.assert_serves();
}

/// An R2T of 8 KiB outstanding, then `h2c` as the answer.
fn answer_r2t_with(mutate: impl FnOnce(&mut H2CData, pdu::R2T)) -> (RunningTarget, RawClient) {
    let target = RunningTarget::start("");
    let (_host, mut raw) = raw_io_queue(&target, false);
    raw.send_capsule(&with_transport_sgl(write(0, 16), 2, 8192), &[]);
    let r2t = raw.expect_r2t();
    let mut header = H2CData {
        cccid: 2,
        ttag: r2t.ttag,
        datao: 0,
        datal: 8192,
        last: true,
    };
    mutate(&mut header, r2t);
    let data = vec![0xa5; header.datal as usize];
    let h2c = raw.h2c_bytes(header, &data);
    raw.send_lenient(&h2c);
    (target, raw)
}

#[test]
fn h2c_data_at_the_wrong_offset() {
    let (target, mut raw) = answer_r2t_with(|h2c, _| {
        h2c.datao = 512;
        h2c.datal = 4096;
    });
    assert_terminated(&target, &mut raw, fes::DATA_OUT_OF_RANGE, 0);
}

#[test]
fn h2c_data_beyond_the_transfer() {
    let (target, mut raw) = answer_r2t_with(|h2c, _| h2c.datal = 8192 + 512);
    assert_terminated(&target, &mut raw, fes::DATA_OUT_OF_RANGE, 0);
}

#[test]
fn h2c_data_with_an_unknown_transfer_tag() {
    let (target, mut raw) = answer_r2t_with(|h2c, _| h2c.ttag = 0xfff0);
    assert_terminated(&target, &mut raw, fes::INVALID_HEADER_FIELD, 10);
}

#[test]
fn h2c_data_with_a_tag_that_has_no_r2t() {
    let (target, mut raw) = answer_r2t_with(|h2c, r2t| h2c.ttag = r2t.ttag ^ 1);
    assert_terminated(&target, &mut raw, fes::PDU_SEQUENCE_ERROR, 0);
}

#[test]
fn h2c_data_with_the_wrong_command_id() {
    let (target, mut raw) = answer_r2t_with(|h2c, _| h2c.cccid = 3);
    assert_terminated(&target, &mut raw, fes::INVALID_HEADER_FIELD, 8);
}

#[test]
fn h2c_data_without_any_command() {
    let target = RunningTarget::start("");
    let (_host, mut raw) = raw_io_queue(&target, false);
    let h2c = raw.h2c_bytes(
        H2CData {
            cccid: 0,
            ttag: 0,
            datao: 0,
            datal: 512,
            last: true,
        },
        &[0; 512],
    );
    raw.send_lenient(&h2c);
    assert_terminated(&target, &mut raw, fes::PDU_SEQUENCE_ERROR, 0);
}

/// Before Connect a queue has no controller. As SPDK (and the Fabrics rule that Connect comes
/// first), other commands complete with Command Sequence Error and the connection stays, so
/// the host can still connect. (Linux nvmet answers Invalid Opcode, also without closing.)
#[test]
fn commands_before_connect() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let mut identify = Command::new(admin_opcode::IDENTIFY, 0);
    identify.cdw10 = 1;
    let identify = with_transport_sgl(identify, 11, 4096);
    raw.send_capsule(&identify, &[]);
    let response = raw.expect_response();
    assert_eq!(response.cid, 11);
    let status = response.status();
    assert!(status.same_code(Status::command_sequence_error()));
    assert!(status.dnr());
    raw.send_capsule(&with_transport_sgl(read(0, 1), 12, 512), &[]);
    assert!(raw
        .expect_response()
        .status()
        .same_code(Status::command_sequence_error()));
    raw.connect_admin();
    target.assert_serves();
}

#[test]
fn ic_req_with_an_unsupported_format_version() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::open(target.address);
    let mut ic_req = RawClient::ic_req_bytes(false, false);
    ic_req[8] = 1;
    raw.send(&ic_req);
    assert_terminated(
        &target,
        &mut raw,
        fes::UNSUPPORTED_PARAMETER,
        field_offset::IC_PFV,
    );
}

#[test]
fn ic_req_with_data_alignment_beyond_31() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::open(target.address);
    let mut ic_req = RawClient::ic_req_bytes(false, false);
    ic_req[10] = 32;
    raw.send(&ic_req);
    assert_terminated(
        &target,
        &mut raw,
        fes::INVALID_HEADER_FIELD,
        field_offset::IC_PDA,
    );
}

#[test]
fn capsule_before_ic_req() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::open(target.address);
    let capsule = raw.capsule_bytes(&Command::new(admin_opcode::KEEP_ALIVE, 0), &[]);
    raw.send(&capsule);
    assert_terminated(&target, &mut raw, fes::PDU_SEQUENCE_ERROR, 0);
}

#[test]
fn second_ic_req() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    raw.send(&RawClient::ic_req_bytes(false, false));
    assert_terminated(&target, &mut raw, fes::PDU_SEQUENCE_ERROR, 0);
}

/// A host's H2CTermReq ends the connection; the target answers nothing.
#[test]
fn host_termination_request() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let mut out = [0u8; 256];
    let len = pdu::encode_term_req(
        pdu::Role::Host,
        &TermReq { fes: 1, fei: 0 },
        &[0u8; 24],
        &mut out,
    )
    .unwrap();
    raw.send(&out[..len]);
    raw.expect_closed();
    target.assert_serves();
}

#[test]
fn io_to_a_namespace_that_does_not_exist() {
    let target = RunningTarget::start("");
    let (_host, mut raw) = raw_io_queue(&target, false);
    for nsid in [0, 2, 0xffff_ffff] {
        let command = Command::nvm_rw(nvm_opcode::READ, nsid, 0, 1);
        raw.send_capsule(&with_transport_sgl(command, 1, 512), &[]);
        let status = raw.expect_response().status();
        assert!(
            status.same_code(Status::invalid_namespace()),
            "NSID {nsid:#x}: {status}"
        );
        assert!(status.dnr());
    }
    // A write to a missing namespace with in-capsule data: the data is consumed, the
    // connection stays in step.
    let command = Command::nvm_rw(nvm_opcode::WRITE, 9, 0, 1);
    raw.send_capsule(&with_in_capsule_sgl(command, 2, 512), &[1; 512]);
    let status = raw.expect_response().status();
    assert!(status.same_code(Status::invalid_namespace()));
    raw.send_capsule(&with_transport_sgl(read(0, 1), 3, 512), &[]);
    assert!(matches!(
        raw.receive(),
        Received::Pdu(PduHeader::C2HData(_), _)
    ));
    assert!(raw.expect_response().status().is_success());
    target.assert_serves();
}

#[test]
fn io_past_the_last_block() {
    let target = RunningTarget::start("");
    let mut host = target.host();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    for (lba, blocks) in [(NS_BLOCKS - 1, 2), (NS_BLOCKS, 1), (u64::MAX - 1, 1)] {
        let status =
            failed_status(queue.execute(read(lba, blocks), &[], blocks as usize * 512, "Read"));
        assert!(
            status.same_code(Status::lba_out_of_range()),
            "{lba}+{blocks}: {status}"
        );
        let data = vec![0; blocks as usize * 512];
        let status = failed_status(queue.execute(write(lba, blocks), &data, 0, "Write"));
        assert!(status.same_code(Status::lba_out_of_range()));
    }
    queue
        .execute(read(NS_BLOCKS - 1, 1), &[], 512, "Read")
        .expect("the last block is fine");
    target.assert_serves();
}

#[test]
fn sgl_that_disagrees_with_the_command() {
    let target = RunningTarget::start("");
    let (_host, mut raw) = raw_io_queue(&target, false);
    // Length of 8 blocks, SGL of 4 KiB + 512.
    raw.send_capsule(&with_transport_sgl(read(0, 8), 1, 4096 + 512), &[]);
    let status = raw.expect_response().status();
    assert_eq!(
        (status.sct(), status.sc()),
        (0, 0x0f),
        "SGL Data Block Length Invalid"
    );
    // Keyed SGL kind other than the transport's.
    let mut command = with_transport_sgl(read(0, 1), 2, 512);
    command.prp2 = (0x40 << 56) | 512;
    raw.send_capsule(&command, &[]);
    let status = raw.expect_response().status();
    assert!(status.same_code(Status::generic(generic::INVALID_SGL_DESCRIPTOR)));
    target.assert_serves();
}

/// Admin data never overruns the host's buffer: an Identify whose transfer is shorter than the
/// 4 KiB structure gets that many bytes (the start of it), as SPDK copies at most the
/// request's length; a zero-length transfer gets no data at all.
#[test]
fn admin_data_is_cut_to_the_transfer_length() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    raw.connect_admin();
    let enable = FabricsCommand::PropertySet(PropertySet {
        size: PropertySize::Four,
        offset: regs::CC as u32,
        value: u64::from(Cc::nvm_enabled().into_bits()),
    });
    raw.send_capsule(&enable.to_command(9), &[]);
    assert!(raw.expect_response().status().is_success());
    let mut identify = Command::new(admin_opcode::IDENTIFY, 0);
    identify.cdw10 = 1;
    raw.send_capsule(&with_transport_sgl(identify, 1, 4096), &[]);
    let full = match raw.receive() {
        Received::Pdu(PduHeader::C2HData(_), data) => data,
        other => panic!("expected C2HData, got {other:?}"),
    };
    assert_eq!(full.len(), 4096);
    assert!(raw.expect_response().status().is_success());
    raw.send_capsule(&with_transport_sgl(identify, 2, 256), &[]);
    match raw.receive() {
        Received::Pdu(PduHeader::C2HData(header), data) => {
            assert_eq!((header.datal, data.len()), (256, 256));
            assert!(data == full[..256], "the first 256 bytes of the structure");
        }
        other => panic!("expected C2HData, got {other:?}"),
    }
    assert!(raw.expect_response().status().is_success());
    raw.send_capsule(&with_transport_sgl(identify, 3, 0), &[]);
    assert!(raw.expect_response().status().is_success());
    target.assert_serves();
}
