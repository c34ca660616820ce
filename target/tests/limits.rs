//! `[limits]`: each limit bites where it should, and only there. Connections beyond the
//! target's or an address's count are closed at once; a host past its controllers gets
//! Connect Controller Busy; silent sockets are closed after their timeouts; R2Ts beyond the
//! connection's count wait for earlier data. Each test also shows the limit lets go: a place
//! given back is taken again.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use vfnvme_host::Host;
use vfnvme_spec::fabrics::connect_status;
use vfnvme_spec::{nvm_opcode, Command, Status};
use vfnvme_tcp::pdu::H2CData;
use vfnvme_tcp::PduHeader;
use vfnvme_test_support::poll_until;

fn with_limits(limits: &str) -> RunningTarget {
    RunningTarget::with_config(&config_text(&format!("cores = 1\n[limits]\n{limits}"), ""))
}

/// Whether the target keeps `socket` (it answers an ICReq) rather than closing it at once.
fn kept(socket: TcpStream) -> Option<RawClient> {
    let mut client = RawClient::from_stream(socket);
    client.send_lenient(&RawClient::ic_req_bytes(false, false));
    match client.receive() {
        Received::Pdu(PduHeader::ICResp(_), _) => Some(client),
        Received::Closed => None,
        other => panic!("expected ICResp or a close, got {other:?}"),
    }
}

#[test]
fn an_address_past_its_connection_limit_is_closed_and_other_addresses_are_not() {
    let target = with_limits("connections_per_address = 3");
    let held: Vec<RawClient> = (0..3)
        .map(|_| kept(connect_from([127, 0, 0, 1], target.address)).expect("within the limit"))
        .collect();
    assert!(
        kept(connect_from([127, 0, 0, 1], target.address)).is_none(),
        "a fourth connection from 127.0.0.1 is closed"
    );
    let other = kept(connect_from([127, 0, 0, 2], target.address));
    assert!(other.is_some(), "127.0.0.2 has connections of its own");
    drop(held);
    // The closed connections give their places back once their poll group saw them go.
    poll_until(
        PATIENCE,
        Duration::from_millis(10),
        || kept(connect_from([127, 0, 0, 1], target.address)),
        || "127.0.0.1 could not connect again after closing its connections".into(),
    );
}

#[test]
fn the_target_wide_connection_limit_refuses_every_address() {
    let target = with_limits("connections = 2");
    let first = kept(connect_from([127, 0, 0, 1], target.address)).expect("first");
    let _second = kept(connect_from([127, 0, 0, 2], target.address)).expect("second");
    assert!(kept(connect_from([127, 0, 0, 3], target.address)).is_none());
    drop(first);
    poll_until(
        PATIENCE,
        Duration::from_millis(10),
        || kept(connect_from([127, 0, 0, 3], target.address)),
        || "no connection was let in after one closed".into(),
    );
}

#[test]
fn a_host_past_its_controllers_gets_connect_controller_busy_until_one_goes() {
    let target = with_limits("controllers_per_host = 2");
    let first = target.host();
    let _second = target.host();
    let status = failed_status(Host::connect(target.address, NQN, options()).map(drop));
    assert!(
        status.same_code(Status::command_specific(connect_status::CONTROLLER_BUSY)),
        "{status}"
    );
    assert!(
        !status.dnr(),
        "the host may retry once a controller of its is gone"
    );
    // Discovery controllers count too: they are what a reconnect storm leaves behind.
    let discovery = Host::connect(
        target.address,
        vfnvme_spec::fabrics::DISCOVERY_NQN,
        options(),
    );
    assert!(discovery.is_err(), "a third controller of any subsystem");
    let mut other = target.host_with(vfnvme_host::HostOptions {
        host_nqn: "nqn.2014-08.org.nvmexpress:uuid:another-host".into(),
        ..options()
    });
    other
        .identify_controller()
        .expect("another host is not limited");
    drop(first);
    let mut again = poll_until(
        PATIENCE,
        Duration::from_millis(10),
        || Host::connect(target.address, NQN, options()).ok(),
        || "no controller after one was dropped".into(),
    );
    again.enable().expect("enable");
}

#[test]
fn a_socket_silent_before_its_icreq_is_closed_after_the_icreq_timeout() {
    let target = with_limits("icreq_timeout_ms = 300");
    let opened = Instant::now();
    let silent = TcpStream::connect(target.address).unwrap();
    wait_for_eof(&silent, PATIENCE).expect("the silent socket is closed");
    assert!(
        opened.elapsed() >= Duration::from_millis(300),
        "closed after {:?}, before the timeout",
        opened.elapsed()
    );
    target.assert_serves();
}

#[test]
fn a_queue_without_connect_is_closed_after_the_connect_timeout_and_a_bound_one_stays() {
    let target = with_limits("icreq_timeout_ms = 200\nconnect_timeout_ms = 300");
    let host = target.host();
    let mut bound = RawClient::established(target.address, false, false);
    bound.connect_io_of(&host, 1, 8);
    let unbound = RawClient::established(target.address, false, false);
    let established = Instant::now();
    wait_for_eof(&unbound.socket, PATIENCE).expect("the queue that sent no Connect is closed");
    assert!(established.elapsed() >= Duration::from_millis(300));
    // Both timeouts have passed for the bound queue too: it serves on.
    std::thread::sleep(Duration::from_millis(300));
    let data = pattern(BLOCK, 3);
    bound.send_capsule(
        &with_in_capsule_sgl(Command::nvm_rw(nvm_opcode::WRITE, 1, 0, 1), 1, BLOCK),
        &data,
    );
    assert!(bound.expect_response().status().is_success());
}

fn r2t_write(lba: u64, cid: u16, len: usize) -> Command {
    let blocks = (len / BLOCK) as u32;
    with_transport_sgl(Command::nvm_rw(nvm_opcode::WRITE, 1, lba, blocks), cid, len)
}

#[test]
fn writes_past_the_r2t_limit_get_theirs_as_earlier_data_arrives() {
    let target = with_limits("r2t_per_connection = 2");
    let host = target.host();
    let mut raw = RawClient::established(target.address, false, false);
    raw.connect_io_of(&host, 1, 16);
    let len = 16 * 1024;
    for cid in 1..=4u16 {
        raw.send_capsule(&r2t_write(u64::from(cid) * 64, cid, len), &[]);
    }
    let first = raw.expect_r2t();
    let second = raw.expect_r2t();
    assert_eq!((first.cccid, second.cccid), (1, 2));
    let data: Vec<Vec<u8>> = (1..=4).map(|seed| pattern(len, seed)).collect();
    let h2c = |raw: &mut RawClient, cid: u16, ttag: u16| {
        let header = H2CData {
            cccid: cid,
            ttag,
            datao: 0,
            datal: len as u32,
            last: true,
        };
        let bytes = raw.h2c_bytes(header, &data[usize::from(cid) - 1]);
        raw.send(&bytes);
    };
    h2c(&mut raw, 1, first.ttag);
    // Without the limit, all four R2Ts would have come before any response.
    let third = raw.expect_r2t();
    assert_eq!(
        third.cccid, 3,
        "the third write's R2T once the first's data is in"
    );
    assert_eq!(raw.expect_response().cid, 1);
    h2c(&mut raw, 2, second.ttag);
    let fourth = raw.expect_r2t();
    assert_eq!(fourth.cccid, 4);
    assert_eq!(raw.expect_response().cid, 2);
    h2c(&mut raw, 3, third.ttag);
    assert_eq!(raw.expect_response().cid, 3);
    h2c(&mut raw, 4, fourth.ttag);
    assert_eq!(raw.expect_response().cid, 4);

    for cid in 1..=4u16 {
        let blocks = (len / BLOCK) as u32;
        let read = Command::nvm_rw(nvm_opcode::READ, 1, u64::from(cid) * 64, blocks);
        raw.send_capsule(&with_transport_sgl(read, 10 + cid, len), &[]);
        match raw.receive() {
            Received::Pdu(PduHeader::C2HData(_), back) => {
                assert!(back == data[usize::from(cid) - 1], "write {cid} reads back")
            }
            other => panic!("expected C2HData, got {other:?}"),
        }
        assert!(raw.expect_response().status().is_success());
    }
}
