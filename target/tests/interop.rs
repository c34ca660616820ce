//! What other initiators send that ours did not: an empty host NQN (SPDK's tools when no
//! `hostnqn:` is given), subsystems reachable on some listeners only (and a discovery-only
//! listener), and the log line an operator reads when a Connect is refused.

mod common;

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use common::{
    options, pattern, with_transport_sgl, RawClient, Received, RunningTarget, NQN, NS_BLOCKS,
};
use vfnvme_host::{Host, HostError, HostOptions};
use vfnvme_spec::fabrics::{
    connect_offset, connect_status, is_connect_status, CNTLID_DYNAMIC, DISCOVERY_NQN,
};
use vfnvme_spec::{nvm_opcode, Command, Completion, Status};
use vfnvme_tcp::PduHeader;
use vfnvme_test_support::ConfigText;

/// What SPDK's initiator puts in Connect data when the user gives no `hostnqn:`.
fn empty_host_nqn() -> HostOptions {
    HostOptions {
        host_nqn: String::new(),
        ..options()
    }
}

/// Writes a pattern through a new I/O queue of `host`, reads it back and compares.
fn write_read_compare(host: &mut Host, seed: u64) {
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    let data = pattern(16 * 512, seed);
    let lba = NS_BLOCKS - 16;
    queue
        .execute(
            Command::nvm_rw(nvm_opcode::WRITE, 1, lba, 16),
            &data,
            0,
            "Write",
        )
        .expect("write");
    let (_, back) = queue
        .execute(
            Command::nvm_rw(nvm_opcode::READ, 1, lba, 16),
            &[],
            data.len(),
            "Read",
        )
        .expect("read");
    assert!(back == data, "data read back differs from data written");
}

/// Sends an admin queue Connect to `subsystem` and returns the response, refused or not.
fn raw_admin_connect(raw: &mut RawClient, subsystem: &str) -> Completion {
    let bytes = raw.connect_bytes(subsystem, 0, CNTLID_DYNAMIC, 32);
    raw.send(&bytes);
    raw.expect_response()
}

fn connect_status_of(result: Result<Host, HostError>) -> Status {
    match result {
        Err(HostError::Command { status, .. }) => status,
        Err(other) => panic!("expected a refused Connect, got {other}"),
        Ok(_) => panic!("expected a refused Connect, it was accepted"),
    }
}

#[test]
fn an_empty_host_nqn_connects_to_a_subsystem_open_to_any_host() {
    let target = RunningTarget::start("");
    let mut host = target.host_with(empty_host_nqn());
    write_read_compare(&mut host, 0x51d4);
}

#[test]
fn an_empty_host_nqn_is_refused_by_an_allow_list_as_any_stranger() {
    let target = RunningTarget::with_config(&common::config_text(
        "",
        "allow_any_host = false\nhosts = [\"nqn.2014-08.org.nvmexpress:uuid:listed\"]",
    ));
    let status = connect_status_of(Host::connect(target.address, NQN, empty_host_nqn()));
    assert!(
        is_connect_status(status, connect_status::INVALID_HOST) && status.dnr(),
        "{status}"
    );
    let mut raw = RawClient::established(target.address, false, false);
    raw.host_nqn = String::new();
    let refused = raw_admin_connect(&mut raw, NQN);
    assert!(is_connect_status(
        refused.status(),
        connect_status::INVALID_HOST
    ));
    assert_eq!(
        refused.result,
        1 << 16 | u32::from(connect_offset::HOSTNQN),
        "IATTR 1 (data), IPO: the host NQN, as for a host not on the list"
    );
}

const OTHER: &str = "nqn.2026-11.io.vfnvme:other";

/// Two I/O listeners (`NQN` on the first, `OTHER` on the second) and a discovery-only one.
fn bound_config() -> String {
    ConfigText::new("cores = 2")
        .listener("127.0.0.1:0")
        .listener("127.0.0.2:0")
        .listener("127.0.0.3:0")
        .subsystem(NQN, "allow_any_host = true\nlisteners = [\"127.0.0.1:0\"]")
        .namespace(1, "ram_mib = 16")
        .subsystem(
            OTHER,
            "allow_any_host = true\nlisteners = [\"127.0.0.2:0\"]",
        )
        .namespace(1, "ram_mib = 1")
        .text()
        .replace(
            "address = \"127.0.0.3:0\"\n",
            "address = \"127.0.0.3:0\"\ndiscovery_only = true\n",
        )
}

fn assert_not_on_this_listener(address: SocketAddr, subsystem: &str) {
    let mut raw = RawClient::established(address, false, false);
    let refused = raw_admin_connect(&mut raw, subsystem);
    assert!(
        is_connect_status(refused.status(), connect_status::INVALID_PARAMETERS)
            && refused.status().dnr(),
        "{subsystem} through {address}: {}",
        refused.status()
    );
    assert_eq!(
        refused.result,
        1 << 16 | u32::from(connect_offset::SUBNQN),
        "IATTR 1, IPO: the subsystem NQN, as nvmet for a subsystem not on the port"
    );
}

#[test]
fn a_subsystem_is_reachable_only_on_its_listeners() {
    let target = RunningTarget::with_config(&bound_config());
    let [first, second, discovery_only] = target.addresses[..] else {
        panic!("three listeners");
    };
    let mut host = Host::connect(first, NQN, options()).expect("NQN on its listener");
    host.enable().unwrap();
    write_read_compare(&mut host, 0x1157);
    let mut other = Host::connect(second, OTHER, options()).expect("OTHER on its listener");
    other.enable().unwrap();

    assert_not_on_this_listener(second, NQN);
    assert_not_on_this_listener(discovery_only, NQN);
    assert_not_on_this_listener(first, OTHER);
    // The discovery subsystem is on every listener.
    for address in [first, second, discovery_only] {
        Host::connect(address, DISCOVERY_NQN, options()).expect("discovery is everywhere");
    }
}

fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).unwrap().trim_end()
}

#[test]
fn discovery_lists_each_subsystem_once_per_listener_it_is_on() {
    let target = RunningTarget::with_config(&bound_config());
    let discovery_only = target.addresses[2];
    let mut discovery = Host::connect(discovery_only, DISCOVERY_NQN, options()).unwrap();
    discovery.enable().unwrap();
    let header = discovery.log_page(0x70, 1024).unwrap();
    let records = u64::from_le_bytes(header[8..16].try_into().unwrap()) as usize;
    let log = discovery.log_page(0x70, 1024 * (1 + records)).unwrap();
    // (subtype, subsystem NQN, address, port ID)
    let entries: Vec<(u8, String, String, u16)> = log[1024..]
        .chunks(1024)
        .map(|entry| {
            (
                entry[2],
                text(&entry[256..512]).to_owned(),
                format!("{}:{}", text(&entry[512..768]), text(&entry[32..64])),
                u16::from_le_bytes([entry[4], entry[5]]),
            )
        })
        .collect();
    let address = |index: usize| target.addresses[index].to_string();
    assert_eq!(
        entries,
        vec![
            (3, DISCOVERY_NQN.to_owned(), address(2), 3),
            (2, NQN.to_owned(), address(0), 1),
            (2, OTHER.to_owned(), address(1), 2),
        ],
        "the current discovery subsystem where the host asked, then each subsystem on its \
         own listener with that listener's port ID"
    );
}

/// Every log record of this test binary, as `level target: message`.
fn captured_log() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<&'static Mutex<Vec<String>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let records: &'static Mutex<Vec<String>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        log::set_boxed_logger(Box::new(Capture(records))).expect("the only logger");
        log::set_max_level(log::LevelFilter::Info);
        records
    })
}

struct Capture(&'static Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    fn flush(&self) {}
}

#[test]
fn a_refused_connect_is_logged_with_who_what_and_why() {
    let log = captured_log();
    let stranger = "nqn.2014-08.org.nvmexpress:uuid:logged-stranger";
    let target = RunningTarget::with_config(&common::config_text(
        "",
        "allow_any_host = false\nhosts = [\"nqn.2014-08.org.nvmexpress:uuid:listed\"]",
    ));
    let mut raw = RawClient::established(target.address, false, false);
    raw.host_nqn = stranger.to_owned();
    let peer = raw.socket.local_addr().unwrap().to_string();
    let refused = raw_admin_connect(&mut raw, NQN);
    assert!(is_connect_status(
        refused.status(),
        connect_status::INVALID_HOST
    ));
    let lines = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let line = lines
        .iter()
        .find(|line| line.contains(stranger))
        .unwrap_or_else(|| panic!("no log line names the host; the log: {lines:#?}"));
    assert!(line.starts_with("INFO "), "{line}");
    for part in [peer.as_str(), NQN, "host NQN", "allow list"] {
        assert!(line.contains(part), "{line:?} does not say {part:?}");
    }
}

/// SPDK's `abort` example sizes its admin queue for the aborts it sends: queue depth / abort
/// interval + 8 entries, 72 for `-q 64`. SPDK's target takes admin queues up to 128 entries
/// (`max_aq_depth`) and so do we, advertised as ASQSZ.
#[test]
fn an_admin_queue_as_deep_as_spdk_abort_asks_is_accepted() {
    let target = RunningTarget::start("");
    let mut raw = RawClient::established(target.address, false, false);
    let bytes = raw.connect_bytes(NQN, 0, CNTLID_DYNAMIC, 72);
    raw.send(&bytes);
    let accepted = raw.expect_response();
    assert!(accepted.status().is_success(), "{}", accepted.status());

    let mut raw = RawClient::established(target.address, false, false);
    let bytes = raw.connect_bytes(NQN, 0, CNTLID_DYNAMIC, 129);
    raw.send(&bytes);
    let refused = raw.expect_response();
    assert!(is_connect_status(
        refused.status(),
        connect_status::INVALID_PARAMETERS
    ));
    assert_eq!(refused.result, u32::from(connect_offset::SQSIZE));
}

/// More commands in one burst than a connection handles per round (SPDK's `abort` drains its
/// queue this way): the ones left in the receive buffer, which no epoll event announces any
/// more, are still read and answered.
#[test]
fn a_burst_longer_than_one_receive_round_is_answered_in_full() {
    const COMMANDS: u16 = 120;
    let target = RunningTarget::start("");
    let host = target.host();
    let mut raw = RawClient::established(target.address, false, false);
    raw.connect_io_of(&host, 1, 128);
    let mut burst = Vec::new();
    for cid in 0..COMMANDS {
        let read = Command::nvm_rw(nvm_opcode::READ, 1, u64::from(cid), 1);
        burst.extend(raw.capsule_bytes(&with_transport_sgl(read, cid, 512), &[]));
    }
    raw.send(&burst);
    let mut answered = vec![false; usize::from(COMMANDS)];
    while answered.iter().any(|done| !done) {
        match raw.receive() {
            Received::Pdu(PduHeader::CapsuleResp(response), _) => {
                assert!(response.status().is_success(), "{}", response.status());
                answered[usize::from(response.cid)] = true;
            }
            Received::Pdu(PduHeader::C2HData(_), _) => {}
            other => panic!(
                "{} of {COMMANDS} answered, then {other:?}",
                answered.iter().filter(|done| **done).count()
            ),
        }
    }
}
