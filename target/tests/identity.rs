//! What hosts are told about the namespaces and controllers they see: identities that come
//! from the drive behind a namespace (never from the configuration alone), the optional
//! commands the drives support, and controller IDs from the configured range. The drives are
//! simulated controllers put behind `pci` addresses, so the test sees what they report and
//! what reached them.

use std::sync::Arc;
use std::time::Duration;

use vfnvme_driver::sim::{SimConfig, SimController, SimNamespace};
use vfnvme_driver::{Controller, ControllerOptions};
use vfnvme_host::Host;
use vfnvme_spec::fabrics::connect_status;
use vfnvme_spec::identify::{
    oncs, parse_namespace_id_descriptors, NamespaceId, NamespaceIds, IDENTIFY_DATA_SIZE,
};
use vfnvme_spec::status::generic;
use vfnvme_spec::{admin_opcode, cns, nvm_opcode, Command, DsmRange, DSM_ATTR_DEALLOCATE};
use vfnvme_target::backend::Drive;
use vfnvme_test_support::poll_until;

mod common;

use common::{failed_status, loopback_config, options, pattern, RunningTarget};

const NQN: &str = "nqn.2026-11.io.vfnvme:ssd0";
const PCI: &str = "0000:00:04.0";

/// A target exporting namespace 1 of the simulated drive `drive` at [`PCI`] as `NQN`, with
/// `[target]` lines `target`; and a handle on the drive to see what reached it.
fn serve_drive(drive: SimConfig, target: &str) -> (RunningTarget, Arc<SimController>) {
    let sim = SimController::new(drive).expect("simulated controller");
    let device = Arc::clone(&sim);
    let text = loopback_config(target)
        .subsystem(NQN, "allow_any_host = true")
        .namespace(1, &format!("pci = \"{PCI}\""))
        .text();
    let running = RunningTarget::with_drives(&text, move |pci| {
        assert_eq!(pci, PCI);
        Ok(Drive::Nvme(Controller::new(
            Arc::clone(&device) as _,
            ControllerOptions::default(),
        )?))
    });
    (running, sim)
}

fn drive_with(ids: NamespaceIds, serial: &str) -> SimConfig {
    SimConfig {
        serial: serial.into(),
        namespaces: vec![SimNamespace {
            ids,
            ..SimNamespace::default()
        }],
        ..SimConfig::default()
    }
}

fn host(target: &RunningTarget) -> Host {
    let mut host = Host::connect(target.address, NQN, options()).expect("admin connect");
    host.enable().expect("enable");
    host
}

/// What the host learns of namespace 1: the NGUID and EUI64 of Identify Namespace, and the
/// descriptor list (CNS 03h).
fn identity_of(host: &mut Host) -> ([u8; 16], [u8; 8], Vec<NamespaceId>) {
    let identify = host.identify_namespace(1).expect("Identify Namespace");
    let command = Command {
        cdw10: u32::from(cns::NAMESPACE_ID_DESCRIPTORS),
        ..Command::new(admin_opcode::IDENTIFY, 1)
    };
    let (_, data) = host
        .admin_queue()
        .execute(command, &[], IDENTIFY_DATA_SIZE, "Identify descriptors")
        .expect("Identify Namespace Identification Descriptor list");
    let descriptors = parse_namespace_id_descriptors(&data).expect("well-formed descriptors");
    (identify.nguid, identify.eui64, descriptors)
}

fn nguid_of(target: &RunningTarget) -> [u8; 16] {
    let (nguid, _, descriptors) = identity_of(&mut host(target));
    assert!(
        descriptors.contains(&NamespaceId::Nguid(nguid)),
        "the descriptor list {descriptors:?} says the NGUID of Identify Namespace {nguid:02x?}"
    );
    nguid
}

#[test]
fn a_drive_namespace_reports_the_drives_own_identifiers() {
    let ids = NamespaceIds {
        nguid: Some(*b"drive-own-nguid!"),
        eui64: Some([0x00, 0x25, 0x38, 0xb1, 0x21, 0x00, 0x00, 0x42]),
        uuid: Some([0x6b; 16]),
    };
    let (target, _sim) = serve_drive(drive_with(ids, "SN-OWN"), "");
    let (nguid, eui64, descriptors) = identity_of(&mut host(&target));
    assert_eq!(nguid, ids.nguid.unwrap());
    assert_eq!(eui64, ids.eui64.unwrap());
    assert_eq!(
        descriptors,
        vec![
            NamespaceId::Eui64(ids.eui64.unwrap()),
            NamespaceId::Nguid(ids.nguid.unwrap()),
            NamespaceId::Uuid(ids.uuid.unwrap()),
            NamespaceId::Csi(0),
        ]
    );
}

/// Two nodes with the same configuration, each with its own drive reporting no identifiers:
/// hosts must not take their namespaces for one (a multipath namespace over two SSDs); the same
/// drive keeps its identity across restarts.
#[test]
fn drives_without_identifiers_get_one_derived_from_the_drive() {
    let nguid = |serial: &str| {
        let (target, _sim) = serve_drive(drive_with(NamespaceIds::default(), serial), "");
        let nguid = nguid_of(&target);
        assert_ne!(nguid, [0; 16], "a namespace without an NGUID");
        nguid
    };
    let first = nguid("SN-NODE-A");
    let second = nguid("SN-NODE-B");
    assert_ne!(first, second, "two drives, one identity");
    assert_eq!(nguid("SN-NODE-A"), first, "the same drive, a new identity");
}

/// A RAM namespace's content is new at each start, and so is its identity.
#[test]
fn a_ram_namespace_has_a_new_identity_at_each_start() {
    let nguid = || {
        let target = RunningTarget::start("");
        let mut host = target.host();
        let (nguid, _, descriptors) = identity_of(&mut host);
        assert!(descriptors.contains(&NamespaceId::Nguid(nguid)));
        assert_ne!(nguid, [0; 16]);
        nguid
    };
    assert_ne!(nguid(), nguid());
}

fn write_zeroes(lba: u64, blocks: u32) -> Command {
    Command::nvm_rw(nvm_opcode::WRITE_ZEROES, 1, lba, blocks)
}

fn deallocate(lba: u64, blocks: u32) -> (Command, Vec<u8>) {
    let range = DsmRange {
        attributes: 0,
        blocks,
        slba: lba,
    };
    let command = Command {
        cdw11: DSM_ATTR_DEALLOCATE,
        ..Command::new(nvm_opcode::DATASET_MANAGEMENT, 1)
    };
    (command, range.to_bytes().to_vec())
}

/// A drive without Write Zeroes and Dataset Management: hosts are not told of them, and the
/// commands are refused before they reach the drive.
#[test]
fn commands_the_drive_lacks_are_neither_advertised_nor_sent_to_it() {
    let drive = SimConfig {
        oncs: 0,
        volatile_write_cache: false,
        ..SimConfig::default()
    };
    let (target, sim) = serve_drive(drive, "");
    let mut host = host(&target);
    let identify = host.identify_controller().expect("Identify Controller");
    assert_eq!(
        identify.oncs.get() & (oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT),
        0
    );
    assert_eq!(identify.vwc & 1, 0, "no volatile write cache on the drive");
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    let before = sim.stats().commands;
    let refused = failed_status(queue.execute(write_zeroes(0, 8), &[], 0, "Write Zeroes"));
    assert_eq!(refused.sc(), generic::INVALID_OPCODE);
    assert!(refused.same_code(vfnvme_spec::Status::invalid_opcode()));
    let (command, ranges) = deallocate(0, 8);
    let refused = failed_status(queue.execute(command, &ranges, 0, "Deallocate"));
    assert!(refused.same_code(vfnvme_spec::Status::invalid_opcode()));
    assert_eq!(
        sim.stats().commands,
        before,
        "a refused command reached the drive"
    );
}

#[test]
fn commands_the_drive_has_are_advertised_and_work() {
    let (target, sim) = serve_drive(SimConfig::default(), "");
    let mut host = host(&target);
    let identify = host.identify_controller().expect("Identify Controller");
    assert_eq!(
        identify.oncs.get(),
        oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT
    );
    assert_eq!(identify.vwc & 1, 1, "the drive's volatile write cache");
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    let data = pattern(32 * 512, 7);
    queue
        .execute(
            Command::nvm_rw(nvm_opcode::WRITE, 1, 0, 32),
            &data,
            0,
            "Write",
        )
        .expect("Write");
    let before = sim.stats().commands;
    queue
        .execute(write_zeroes(8, 8), &[], 0, "Write Zeroes")
        .expect("Write Zeroes");
    assert_eq!(
        sim.stats().commands,
        before + 1,
        "Write Zeroes reached the drive"
    );
    let (_, back) = queue
        .execute(
            Command::nvm_rw(nvm_opcode::READ, 1, 0, 32),
            &[],
            data.len(),
            "Read",
        )
        .expect("Read");
    assert!(
        back[..8 * 512] == data[..8 * 512],
        "before the zeroed range"
    );
    assert!(
        back[8 * 512..16 * 512].iter().all(|&b| b == 0),
        "not zeroed"
    );
    assert!(
        back[16 * 512..] == data[16 * 512..],
        "after the zeroed range"
    );
}

/// Controller IDs come from `[target] cntlid_min..=cntlid_max`; when they are all taken, a
/// new controller is refused with Connect Controller Busy (and no retry), as nvmet does.
#[test]
fn controller_ids_come_from_the_configured_range() {
    let target = RunningTarget::with_config(&common::config_text(
        "cntlid_min = 100\ncntlid_max = 101",
        "",
    ));
    let first = target.host();
    let second = target.host();
    assert_eq!((first.cntlid(), second.cntlid()), (100, 101));
    let refused = failed_status(Host::connect(target.address, common::NQN, options()).map(|_| ()));
    assert_eq!(
        (refused.sct(), refused.sc(), refused.dnr()),
        (1, connect_status::CONTROLLER_BUSY, true)
    );
    // The ID is free once the target has seen the admin queue's connection close.
    drop(first);
    let again = poll_until(
        common::PATIENCE,
        Duration::from_millis(5),
        || Host::connect(target.address, common::NQN, options()).ok(),
        || "the freed controller ID was never given again".into(),
    );
    assert_eq!(again.cntlid(), 100, "a freed ID is given again");
}
