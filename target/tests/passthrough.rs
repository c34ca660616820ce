//! The passthrough path end to end without a drive: namespaces on simulated NVMe controllers
//! (`sim_mib`), so every command goes through a poll group's own hardware queue pair, PRPs and
//! DMA buffers, driven over NVMe/TCP by our initiator.

use vfnvme_host::{Host, HostOptions};
use vfnvme_spec::{nvm_opcode, Command, DsmRange, DSM_ATTR_DEALLOCATE};

mod common;

use common::{loopback_config, options, RunningTarget};

const NQN: &str = "nqn.2026-11.io.vfnvme:sim0";

fn start(latency_us: u64) -> RunningTarget {
    RunningTarget::with_config(
        &loopback_config("cores = 2")
            .subsystem(NQN, "allow_any_host = true")
            .namespace(1, &format!("sim_mib = 8\nsim_latency_us = {latency_us}"))
            .namespace(2, "sim_mib = 4\nblock_size = 4096")
            .text(),
    )
}

#[test]
fn reads_and_writes_go_through_simulated_controllers_and_back() {
    let target = start(20);
    let address = target.address;
    let mut host = Host::connect(address, NQN, options()).expect("admin connect");
    host.enable().expect("enable");
    assert_eq!(host.identify_namespace(1).unwrap().block_size(), 512);
    assert_eq!(host.identify_namespace(2).unwrap().block_size(), 4096);
    let mut queues: Vec<_> = (1..=2)
        .map(|qid| host.connect_io_queue(qid, 16).unwrap())
        .collect();
    for (i, queue) in queues.iter_mut().enumerate() {
        for (nsid, block_size, lba, blocks) in [
            (1u32, 512usize, 7u64, 3u32),
            (1, 512, 100, 256),
            (2, 4096, 3, 1),
            (2, 4096, 500, 32),
        ] {
            let data: Vec<u8> = (0..blocks as usize * block_size)
                .map(|b| (b * 13 + i + lba as usize) as u8)
                .collect();
            queue
                .execute(
                    Command::nvm_rw(nvm_opcode::WRITE, nsid, lba, blocks),
                    &data,
                    0,
                    "Write",
                )
                .unwrap();
            let (_, back) = queue
                .execute(
                    Command::nvm_rw(nvm_opcode::READ, nsid, lba, blocks),
                    &[],
                    data.len(),
                    "Read",
                )
                .unwrap();
            assert!(
                back == data,
                "namespace {nsid}: {blocks} blocks at {lba} differ"
            );
        }
    }
    // Pipelined: a full queue of reads in flight at once on the drive with latency.
    let queue = &mut queues[0];
    for tag in 0..15u64 {
        queue
            .submit(
                Command::nvm_rw(nvm_opcode::READ, 1, tag * 8, 8),
                &[],
                4096,
                tag,
            )
            .unwrap();
    }
    let mut done = 0;
    while done < 15 {
        done += queue
            .poll(true, |completion, data| {
                assert!(completion.status.is_success(), "{}", completion.status);
                assert_eq!(data.len(), 4096);
            })
            .unwrap();
    }
    drop(queues);
    drop(host);
    assert!(
        target.stop().connections_served >= 3,
        "three connections were served"
    );
}

/// Flush, Write Zeroes and Dataset Management (deallocate) over the fabric to a simulated
/// drive: the data afterwards says they happened.
#[test]
fn flush_write_zeroes_and_deallocate_reach_the_medium() {
    let target = start(0);
    let address = target.address;
    let mut host = Host::connect(address, NQN, HostOptions::default()).expect("admin connect");
    host.enable().expect("enable");
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    let read = |queue: &mut vfnvme_host::HostQueue, lba: u64, blocks: u32| {
        let command = Command::nvm_rw(nvm_opcode::READ, 1, lba, blocks);
        queue
            .execute(command, &[], blocks as usize * 512, "Read")
            .unwrap()
            .1
    };
    let data = vec![0xa5u8; 64 * 512];
    queue
        .execute(
            Command::nvm_rw(nvm_opcode::WRITE, 1, 0, 64),
            &data,
            0,
            "Write",
        )
        .unwrap();
    queue
        .execute(Command::new(nvm_opcode::FLUSH, 1), &[], 0, "Flush")
        .unwrap();
    queue
        .execute(
            Command::nvm_rw(nvm_opcode::WRITE_ZEROES, 1, 8, 8),
            &[],
            0,
            "Write Zeroes",
        )
        .unwrap();
    let back = read(&mut queue, 0, 24);
    assert!(back[..8 * 512].iter().all(|&b| b == 0xa5));
    assert!(
        back[8 * 512..16 * 512].iter().all(|&b| b == 0),
        "Write Zeroes left data"
    );
    assert!(
        back[16 * 512..].iter().all(|&b| b == 0xa5),
        "Write Zeroes went too far"
    );

    let ranges: Vec<u8> = [DsmRange {
        attributes: 0,
        blocks: 16,
        slba: 32,
    }]
    .iter()
    .flat_map(DsmRange::to_bytes)
    .collect();
    let deallocate = Command {
        cdw10: 0,
        cdw11: DSM_ATTR_DEALLOCATE,
        ..Command::new(nvm_opcode::DATASET_MANAGEMENT, 1)
    };
    queue
        .execute(deallocate, &ranges, 0, "Dataset Management")
        .unwrap();
    let back = read(&mut queue, 24, 40);
    assert!(back[..8 * 512].iter().all(|&b| b == 0xa5));
    assert!(
        back[8 * 512..24 * 512].iter().all(|&b| b == 0),
        "deallocated blocks read as zeroes"
    );
    assert!(back[24 * 512..].iter().all(|&b| b == 0xa5));
    drop(queue);
    drop(host);
    target.stop();
}
