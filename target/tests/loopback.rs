//! The target on loopback with RAM namespaces, driven by our own initiator.

use std::time::Duration;

use vfnvme_host::{Host, HostOptions};
use vfnvme_spec::{nvm_opcode, Command, Status};

mod common;

use common::{failed_status, RunningTarget, NQN};

fn options() -> HostOptions {
    HostOptions {
        timeout: Duration::from_secs(5),
        ..HostOptions::default()
    }
}

fn read_write_verify(options: HostOptions) {
    let target = RunningTarget::start("");
    let mut host = Host::connect(target.address, NQN, options).expect("admin connect");
    host.enable().expect("enable");
    let identify = host.identify_controller().expect("identify");
    assert_eq!(identify.subnqn, NQN);
    let namespace = host.identify_namespace(1).expect("identify namespace");
    assert_eq!(namespace.block_size(), 512);
    assert_eq!(namespace.nsze, 16 * 1024 * 1024 / 512);
    let mut queue = host.connect_io_queue(1, 32).expect("I/O queue");
    for (lba, blocks) in [(0u64, 1u32), (8, 8), (100, 16), (1000, 64), (5000, 256)] {
        let data: Vec<u8> = (0..blocks as usize * 512)
            .map(|i| (i as u64 * 7 + lba) as u8)
            .collect();
        let write = Command::nvm_rw(nvm_opcode::WRITE, 1, lba, blocks);
        let (_, _) = queue.execute(write, &data, 0, "Write").expect("write");
        let read = Command::nvm_rw(nvm_opcode::READ, 1, lba, blocks);
        let (_, back) = queue.execute(read, &[], data.len(), "Read").expect("read");
        assert!(
            back == data,
            "{blocks} blocks at {lba} read back differently"
        );
    }
}

#[test]
fn connect_identify_and_verify_data_with_in_capsule_and_r2t_writes() {
    read_write_verify(options());
}

#[test]
fn digests_on_both_directions() {
    read_write_verify(HostOptions {
        header_digest: true,
        data_digest: true,
        ..options()
    });
}

#[test]
fn reads_with_success_flag_when_sq_flow_control_is_disabled() {
    read_write_verify(HostOptions {
        disable_sq_flow_control: true,
        ..options()
    });
}

#[test]
fn io_to_missing_namespace_or_past_the_end_gets_the_spec_status() {
    let target = RunningTarget::start("");
    let mut host = Host::connect(target.address, NQN, options()).unwrap();
    host.enable().unwrap();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    let read = Command::nvm_rw(nvm_opcode::READ, 7, 0, 1);
    let status = failed_status(queue.execute(read, &[], 512, "Read"));
    assert!(status.same_code(Status::invalid_namespace()), "{status}");
    let last = 16 * 1024 * 1024 / 512 - 1;
    let read = Command::nvm_rw(nvm_opcode::READ, 1, last, 2);
    let status = failed_status(queue.execute(read, &[], 1024, "Read"));
    assert!(status.same_code(Status::lba_out_of_range()), "{status}");
}
