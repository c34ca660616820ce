//! What a host sees of the target over NVMe/TCP: identify, data transfers (in-capsule, R2T,
//! maximum size), queue limits, keep-alive, discovery, access control, many queues at once,
//! queue reconnects and properties.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vfnvme_host::{Host, HostOptions};
use vfnvme_spec::fabrics::DISCOVERY_NQN;
use vfnvme_spec::regs::{self, Cap};
use vfnvme_spec::status::generic;
use vfnvme_spec::{nvm_opcode, Command, Status};
use vfnvme_tcp::pdu::{fes, H2CData};
use vfnvme_tcp::PduHeader;

fn write(lba: u64, blocks: u32) -> Command {
    Command::nvm_rw(nvm_opcode::WRITE, 1, lba, blocks)
}

fn read(lba: u64, blocks: u32) -> Command {
    Command::nvm_rw(nvm_opcode::READ, 1, lba, blocks)
}

#[test]
fn identify_controller_reports_the_subsystem_and_its_limits() {
    let target = RunningTarget::with_config(&config_text(
        "cores = 1\nin_capsule_data_size = 4096\nmax_queue_depth = 64",
        "serial = \"VF-SERIAL-1\"\nmodel = \"vfnvme test model\"",
    ));
    let mut host = target.host();
    let identify = host.identify_controller().expect("identify");
    assert_eq!(identify.subnqn, NQN);
    assert_eq!(identify.serial.to_string(), "VF-SERIAL-1");
    assert_eq!(identify.model.to_string(), "vfnvme test model");
    assert_eq!(identify.cntlid, host.cntlid());
    // RAM namespaces: 128 KiB per command, 2^5 pages of 4 KiB (CAP.MPSMIN = 0).
    assert_eq!(identify.mdts, 5);
    assert_eq!(
        identify.ioccsz,
        (64 + 4096) / 16,
        "capsule = SQE + in-capsule data"
    );
    assert_eq!(identify.iorcsz, 1);
    assert_eq!(identify.maxcmd, 64);
    assert_eq!(identify.nn, 1);
    assert_eq!(identify.sqes, 0x66);
    assert_eq!(identify.cqes, 0x44);

    let namespace = host.identify_namespace(1).expect("identify namespace");
    assert_eq!(namespace.nsze, NS_BLOCKS);
    assert_eq!(namespace.ncap, NS_BLOCKS);
    assert_eq!(namespace.block_size(), BLOCK as u32);
}

#[test]
fn property_get_of_cap_takes_eight_bytes_and_vs_four() {
    let target = RunningTarget::start("max_queue_depth = 64");
    let mut host = target.host();
    let cap = host.property_get(regs::CAP as u32, true).expect("CAP");
    let fields = Cap::from_bits(cap);
    assert_eq!(fields.mqes(), 63, "MQES is 0's based");
    assert!(fields.cqr(), "CQR: queues must be contiguous");
    assert_ne!(cap >> 32, 0, "the upper half (CSS, MPS) travels in DW1");
    assert!(fields.css().nvm(), "CSS: NVM command set");
    assert_eq!(fields.mpsmin(), 0, "MPSMIN 4 KiB");
    let low = host.property_get(regs::CAP as u32, false).expect("CAP low");
    assert_eq!(low, cap & 0xffff_ffff);
    let high = host
        .property_get(regs::CAP as u32 + 4, false)
        .expect("CAP high");
    assert_eq!(high, cap >> 32);
    let vs = host.property_get(regs::VS as u32, false).expect("VS");
    assert_eq!(vs, 0x0001_0300, "NVMe 1.3");
    let status = failed_status(host.property_get(regs::VS as u32, true));
    assert!(status.same_code(Status::invalid_field()));
}

/// In-capsule writes need no R2T; writes whose data is not in the capsule get exactly one R2T
/// for their whole length; the data of both reads back.
#[test]
fn small_writes_travel_in_the_capsule_and_large_ones_after_an_r2t() {
    for digests in [false, true] {
        let target = RunningTarget::start("");
        let host = target.host();
        let mut raw = RawClient::established(target.address, digests, digests);
        raw.connect_io_of(&host, 1, 16);

        let small = pattern(8192, 1);
        let command = with_in_capsule_sgl(write(0, 16), 1, small.len());
        raw.send_capsule(&command, &small);
        let response = raw.expect_response();
        assert_eq!(
            response.cid, 1,
            "a CapsuleResp, no R2T, for in-capsule data"
        );
        assert!(response.status().is_success(), "{}", response.status());

        let large = pattern(64 * 1024, 2);
        let command = with_transport_sgl(write(100, 128), 2, large.len());
        raw.send_capsule(&command, &[]);
        let r2t = raw.expect_r2t();
        assert_eq!((r2t.cccid, r2t.r2to, r2t.r2tl), (2, 0, large.len() as u32));
        let h2c = raw.h2c_bytes(
            H2CData {
                cccid: 2,
                ttag: r2t.ttag,
                datao: 0,
                datal: large.len() as u32,
                last: true,
            },
            &large,
        );
        raw.send(&h2c);
        let response = raw.expect_response();
        assert_eq!(response.cid, 2);
        assert!(response.status().is_success(), "{}", response.status());

        for (cid, lba, expected) in [(3u16, 0u64, &small), (4, 100, &large)] {
            let blocks = (expected.len() / BLOCK) as u32;
            raw.send_capsule(
                &with_transport_sgl(read(lba, blocks), cid, expected.len()),
                &[],
            );
            let data = match raw.receive() {
                Received::Pdu(PduHeader::C2HData(c2h), data) => {
                    assert_eq!((c2h.cccid, c2h.datao, c2h.last), (cid, 0, true));
                    assert!(!c2h.success, "SUCCESS only without SQ flow control");
                    data
                }
                other => panic!("expected C2HData, got {other:?}"),
            };
            assert!(&data == expected, "read back differs");
            let response = raw.expect_response();
            assert_eq!(response.cid, cid);
            assert!(response.status().is_success());
        }
    }
}

/// `c2h_success = true` (SPDK's default): a successful read is answered by its C2HData alone,
/// with the SUCCESS flag, although the host keeps SQ flow control on; a failed read still gets
/// its response capsule.
#[test]
fn c2h_success_replaces_the_response_of_a_successful_read() {
    let target = RunningTarget::start("c2h_success = true");
    let host = target.host();
    let mut raw = RawClient::established(target.address, false, false);
    raw.connect_io_of(&host, 1, 16);
    let written = pattern(8192, 3);
    raw.send_capsule(
        &with_in_capsule_sgl(write(8, 16), 1, written.len()),
        &written,
    );
    assert!(raw.expect_response().status().is_success());
    // Two reads in a row: the second's data comes right after the first's, no CapsuleResp
    // between them.
    for cid in [2u16, 3] {
        raw.send_capsule(&with_transport_sgl(read(8, 16), cid, written.len()), &[]);
    }
    for cid in [2u16, 3] {
        match raw.receive() {
            Received::Pdu(PduHeader::C2HData(c2h), data) => {
                assert_eq!((c2h.cccid, c2h.last, c2h.success), (cid, true, true));
                assert!(data == written, "read back differs");
            }
            other => panic!("expected C2HData of {cid}, got {other:?}"),
        }
    }
    let past_the_end = (16 << 20) / BLOCK as u64;
    raw.send_capsule(&with_transport_sgl(read(past_the_end, 1), 4, BLOCK), &[]);
    let response = raw.expect_response();
    assert_eq!(response.cid, 4);
    let status = response.status();
    assert_eq!((status.sct(), status.sc()), (0, generic::LBA_OUT_OF_RANGE));
}

/// The host splits an R2T's data over several H2CData PDUs; the target takes them in order.
#[test]
fn an_r2t_may_be_answered_with_several_h2c_data_pdus() {
    let target = RunningTarget::start("");
    let host = target.host();
    let mut raw = RawClient::established(target.address, false, true);
    raw.connect_io_of(&host, 1, 16);
    let data = pattern(32 * 1024, 3);
    raw.send_capsule(&with_transport_sgl(write(500, 64), 9, data.len()), &[]);
    let r2t = raw.expect_r2t();
    for (index, chunk) in data.chunks(4096).enumerate() {
        let h2c = raw.h2c_bytes(
            H2CData {
                cccid: 9,
                ttag: r2t.ttag,
                datao: (index * 4096) as u32,
                datal: chunk.len() as u32,
                last: (index + 1) * 4096 == data.len(),
            },
            chunk,
        );
        raw.send(&h2c);
    }
    assert!(raw.expect_response().status().is_success());
    let mut host = target.host();
    let mut queue = host.connect_io_queue(1, 4).unwrap();
    let (_, back) = queue
        .execute(read(500, 64), &[], data.len(), "Read")
        .unwrap();
    assert!(back == data);
}

#[test]
fn transfers_at_the_maximum_size_work_and_beyond_it_are_invalid_field() {
    let target = RunningTarget::start("");
    let options = HostOptions {
        max_data_len: 256 * 1024,
        header_digest: true,
        data_digest: true,
        ..options()
    };
    let mut host = target.host_with(options);
    let max = 4096usize << host.identify_controller().unwrap().mdts;
    assert_eq!(max, 128 * 1024);
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    let blocks = (max / BLOCK) as u32;
    let data = pattern(max, 4);
    queue
        .execute(write(2048, blocks), &data, 0, "Write")
        .unwrap();
    let (_, back) = queue.execute(read(2048, blocks), &[], max, "Read").unwrap();
    assert!(back == data);

    // One block more than MDTS allows: Invalid Field in Command (NVMe base specification,
    // MDTS), not retryable, and no R2T for the write's data.
    let too_big = pattern(max + BLOCK, 5);
    for (command, write_data, read_len) in [
        (write(0, blocks + 1), &too_big[..], 0),
        (read(0, blocks + 1), &[][..], max + BLOCK),
    ] {
        let status = failed_status(queue.execute(command, write_data, read_len, "oversized"));
        assert!(status.same_code(Status::invalid_field()), "{status}");
        assert!(status.dnr());
    }
    let mut raw = RawClient::established(target.address, false, false);
    raw.connect_io_of(&host, 2, 8);
    raw.send_capsule(&with_transport_sgl(write(0, blocks * 2), 1, max * 2), &[]);
    let response = raw.expect_response();
    assert!(response.status().same_code(Status::invalid_field()));
    // The queue is still fine.
    let (_, back) = queue.execute(read(2048, blocks), &[], max, "Read").unwrap();
    assert!(back == data);
}

/// A queue of N entries lets a host have N commands outstanding (Linux keeps N - 1; nvmet and
/// SPDK tolerate more); command N + 1 cannot be answered from any slot. Linux nvmet and SPDK
/// drop such a connection; we do too, after a C2HTermReq with PDU Sequence Error.
#[test]
fn a_host_exceeding_its_queue_size_is_terminated() {
    let target = RunningTarget::start("");
    let host = target.host();
    let mut raw = RawClient::established(target.address, false, false);
    let entries = 4u16;
    raw.connect_io_of(&host, 1, entries);
    // Writes waiting for their data after an R2T stay outstanding as long as the host wants.
    for cid in 0..entries {
        raw.send_capsule(
            &with_transport_sgl(write(u64::from(cid) * 8, 8), cid, 4096),
            &[],
        );
        assert_eq!(raw.expect_r2t().cccid, cid);
    }
    raw.send_capsule(&with_transport_sgl(read(0, 1), 100, 512), &[]);
    let (term, offending) = raw.expect_termination();
    assert_eq!((term.fes, term.fei), (fes::PDU_SEQUENCE_ERROR, 0));
    assert!(offending.len() <= 128);
    target.assert_serves();
}

/// A queue at its limit takes a new command as soon as a response has freed a slot.
#[test]
fn a_host_with_a_full_queue_keeps_going_as_slots_free_up() {
    let target = RunningTarget::start("");
    let host = target.host();
    let mut raw = RawClient::established(target.address, false, false);
    raw.connect_io_of(&host, 1, 2);
    raw.send_capsule(&with_transport_sgl(write(0, 8), 1, 4096), &[]);
    raw.expect_r2t();
    // One entry left: a command that completes at once keeps the count at 2, repeatedly.
    for cid in 10..20 {
        raw.send_capsule(&with_transport_sgl(read(0, 1), cid, 512), &[]);
        match raw.receive() {
            Received::Pdu(PduHeader::C2HData(_), _) => {}
            other => panic!("expected C2HData, got {other:?}"),
        }
        assert_eq!(raw.expect_response().cid, cid);
    }
}

#[test]
fn keep_alive_expiry_closes_admin_and_io_queues_and_a_reconnect_works() {
    let target = RunningTarget::start("");
    let mut host = target.host_with(HostOptions {
        keep_alive_timeout_ms: 1000,
        ..options()
    });
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    // Keep-alives (or any admin command) keep the controller alive past its timeout.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        host.keep_alive().expect("keep-alive");
        std::thread::sleep(Duration::from_millis(250));
    }
    queue
        .execute(read(0, 1), &[], 512, "Read")
        .expect("still alive");

    host.keep_alive().unwrap();
    let silent_since = Instant::now();
    let admin_closed = wait_for_eof(host.admin_queue().socket(), Duration::from_secs(10));
    let admin_after = silent_since.elapsed();
    admin_closed.expect("the admin queue is closed after KATO");
    wait_for_eof(queue.socket(), Duration::from_secs(5)).expect("the I/O queue follows");
    assert!(
        admin_after >= Duration::from_millis(900),
        "closed after {admin_after:?}, before KATO (1 s)"
    );
    assert!(admin_after < Duration::from_secs(5), "{admin_after:?}");

    let mut host = target.host_with(HostOptions {
        keep_alive_timeout_ms: 1000,
        ..options()
    });
    let mut queue = host.connect_io_queue(1, 8).expect("a new association");
    queue.execute(read(0, 1), &[], 512, "Read").unwrap();
}

fn discovery_entries(log: &[u8]) -> Vec<&[u8]> {
    let records = u64::from_le_bytes(log[8..16].try_into().unwrap()) as usize;
    log[1024..].chunks(1024).take(records).collect()
}

fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).unwrap().trim_end()
}

#[test]
fn discovery_lists_the_subsystem_on_the_listener() {
    let target = RunningTarget::start("");
    let mut discovery = Host::connect(target.address, DISCOVERY_NQN, options()).unwrap();
    discovery.enable().unwrap();
    let identify = discovery.identify_controller().unwrap();
    assert_eq!(identify.subnqn, DISCOVERY_NQN);
    assert_eq!(identify.cntrltype, 2, "a discovery controller");
    let header = discovery.log_page(0x70, 1024).unwrap();
    let records = u64::from_le_bytes(header[8..16].try_into().unwrap()) as usize;
    assert_eq!(records, 2, "the discovery subsystem itself and {NQN}");
    assert_eq!(u16::from_le_bytes([header[16], header[17]]), 0, "RECFMT 0");
    let log = discovery.log_page(0x70, 1024 * (1 + records)).unwrap();
    let entries = discovery_entries(&log);
    let entry = entries
        .iter()
        .find(|entry| text(&entry[256..512]) == NQN)
        .expect("the subsystem is listed");
    assert_eq!(entry[0], 3, "TRTYPE TCP");
    assert_eq!(entry[1], 1, "ADRFAM IPv4");
    assert_eq!(entry[2], 2, "SUBTYPE NVMe subsystem");
    assert_eq!(text(&entry[32..64]), target.address.port().to_string());
    assert_eq!(text(&entry[512..768]), "127.0.0.1");
    assert_eq!(entry[768], 0, "TSAS: no TLS");
    let own = entries
        .iter()
        .find(|entry| text(&entry[256..512]) == DISCOVERY_NQN)
        .expect("the discovery subsystem lists itself");
    assert_eq!(own[2], 3, "current discovery subsystem");
    // A discovery controller has no I/O queues.
    let status = failed_status(discovery.connect_io_queue(1, 8).map(|_| ()));
    assert_eq!((status.sct(), status.sc()), (1, 0x82));
}

#[test]
fn the_host_allow_list_admits_only_listed_hosts() {
    let allowed = "nqn.2014-08.org.nvmexpress:uuid:allowed-host";
    let target = RunningTarget::with_config(&config_text(
        "cores = 2",
        &format!("allow_any_host = false\nhosts = [\"{allowed}\"]"),
    ));
    let stranger = HostOptions {
        host_nqn: "nqn.2014-08.org.nvmexpress:uuid:someone-else".into(),
        ..options()
    };
    let status = failed_status(Host::connect(target.address, NQN, stranger.clone()).map(|_| ()));
    assert_eq!(
        (status.sct(), status.sc()),
        (1, 0x84),
        "Connect Invalid Host: {status}"
    );
    let mut host = target.host_with(HostOptions {
        host_nqn: allowed.into(),
        ..options()
    });
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    queue.execute(read(0, 1), &[], 512, "Read").unwrap();
    // Discovery shows a host only what it may connect to.
    let mut discovery = Host::connect(target.address, DISCOVERY_NQN, stranger).unwrap();
    discovery.enable().unwrap();
    let log = discovery.log_page(0x70, 3 * 1024).unwrap();
    assert!(discovery_entries(&log)
        .iter()
        .all(|entry| text(&entry[256..512]) != NQN));
}

/// Four hosts with two I/O queues each, on two poll groups, in parallel; every queue writes
/// and verifies its own blocks with pipelined commands.
#[test]
fn many_hosts_and_queues_on_several_poll_groups_at_once() {
    let target = RunningTarget::start("");
    let address = target.address;
    let threads: Vec<_> = (0..4u64)
        .map(|host_index| {
            std::thread::spawn(move || {
                let options = HostOptions {
                    host_nqn: format!("nqn.2014-08.org.nvmexpress:uuid:host-{host_index}"),
                    data_digest: host_index % 2 == 1,
                    ..options()
                };
                let mut host = Host::connect(address, NQN, options).expect("connect");
                host.enable().unwrap();
                let mut queues: Vec<_> = (1..=2)
                    .map(|qid| host.connect_io_queue(qid, 16).expect("I/O queue"))
                    .collect();
                for round in 0..20u64 {
                    for (q, queue) in queues.iter_mut().enumerate() {
                        let region = (host_index * 2 + q as u64) * 2048;
                        for slot in 0..4u64 {
                            let lba = region + slot * 64;
                            let len = (slot as usize + 1) * 4096;
                            let data = pattern(len, round * 1000 + lba);
                            let blocks = (len / BLOCK) as u32;
                            queue.submit(write(lba, blocks), &data, 0, slot).unwrap();
                        }
                        let mut done = 0;
                        while done < 4 {
                            done += queue
                                .poll(true, |c, _| assert!(c.status.is_success(), "{c:?}"))
                                .unwrap();
                        }
                        for slot in 0..4u64 {
                            let lba = region + slot * 64;
                            let len = (slot as usize + 1) * 4096;
                            let blocks = (len / BLOCK) as u32;
                            queue.submit(read(lba, blocks), &[], len, slot).unwrap();
                        }
                        let mut done = 0;
                        while done < 4 {
                            done += queue
                                .poll(true, |c, data| {
                                    assert!(c.status.is_success());
                                    let lba = region + c.tag * 64;
                                    let expected = pattern(data.len(), round * 1000 + lba);
                                    assert!(data == expected, "queue data differs");
                                })
                                .unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a host thread failed");
    }
}

/// Closing an I/O queue and connecting the same QID at once never meets "duplicate QID":
/// after a Disconnect the QID is free when its response arrives; after a plain close the new
/// Connect waits for the old connection to be seen closed.
#[test]
fn an_io_queue_reconnects_at_once_with_the_same_qid() {
    let target = RunningTarget::start("");
    let mut host = target.host();
    for round in 0..30u64 {
        let mut queue = host
            .connect_io_queue(1, 8)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let data = pattern(4096, round);
        queue
            .execute(write(round * 8, 8), &data, 0, "Write")
            .unwrap();
        if round % 2 == 0 {
            queue.disconnect().expect("Disconnect");
        } else {
            drop(queue);
        }
    }
    // The QID is still refused while its queue is connected.
    let _queue = host.connect_io_queue(1, 8).unwrap();
    let started = Instant::now();
    let status = failed_status(host.connect_io_queue(1, 8).map(|_| ()));
    assert_eq!((status.sct(), status.sc()), (1, 0x82), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// After Disconnect the target closes the connection itself.
#[test]
fn disconnect_of_an_io_queue_closes_its_connection() {
    let target = RunningTarget::start("");
    let host = target.host();
    let mut raw = RawClient::established(target.address, false, false);
    raw.connect_io_of(&host, 1, 8);
    let disconnect = vfnvme_spec::fabrics::FabricsCommand::Disconnect.to_command(5);
    raw.send_capsule(&disconnect, &[]);
    let response = raw.expect_response();
    assert_eq!(response.cid, 5);
    assert!(response.status().is_success());
    raw.expect_closed();
}

#[test]
fn host_errors_are_reported_not_panics() {
    // Connecting to a subsystem that does not exist fails with Invalid Parameters (SUBNQN).
    let target = RunningTarget::start("");
    let status = failed_status(
        Host::connect(target.address, "nqn.2026-11.io.vfnvme:nothing", options()).map(|_| ()),
    );
    assert_eq!((status.sct(), status.sc()), (1, 0x82));
}
