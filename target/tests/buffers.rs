//! More commands than DMA buffers: a poll group whose buffers per drive are far fewer than the
//! commands its connections have outstanding. Every command waits for a buffer, in turn, and
//! none fails: in-capsule writes (whose data arrives with the capsule), writes after R2T and
//! reads, on a RAM and on a simulated drive.

use std::collections::HashMap;

use vfnvme_host::{Host, HostOptions};
use vfnvme_spec::{nvm_opcode, Command};

mod common;

use common::{loopback_config, options, pattern, RunningTarget, BLOCK};

const NQN: &str = "nqn.2026-11.io.vfnvme:scarce";
/// One poll group; its queues to each drive have 16 entries, so each pool holds 16 buffers
/// (`MIN_POOL_BUFFERS`) shared by every connection of the group.
const DEPTH: u16 = 16;
const QUEUES: u64 = 8;
/// Writes per queue: sizes cycle through in-capsule (up to 8 KiB) and R2T (above).
const WRITES: u64 = 96;
const SIZES: [usize; 4] = [4096, 8192, 16384, 512];
/// Each write has its own LBA range of this many blocks.
const STRIDE: u64 = 32;

fn command(opcode: u8, nsid: u32, lba: u64, len: usize) -> Command {
    Command::nvm_rw(opcode, nsid, lba, (len / BLOCK) as u32)
}

/// On its own I/O queue: `WRITES` writes at full depth, then reads of them all the same way,
/// compared with what was written. Returns what failed.
fn run_queue(host: &mut Host, index: u64) -> Vec<String> {
    let mut queue = host.connect_io_queue(1, DEPTH).expect("I/O queue");
    let mut failures = Vec::new();
    let region = index * WRITES * STRIDE;
    let nsid = 1 + (index % 2) as u32;
    let seed = |i: u64| index << 32 | i;
    for phase in [nvm_opcode::WRITE, nvm_opcode::READ] {
        let mut next = 0u64;
        let mut outstanding = 0usize;
        let mut done = 0u64;
        let mut lengths = HashMap::new();
        while done < WRITES {
            while next < WRITES && outstanding < usize::from(DEPTH) {
                let len = SIZES[(next % SIZES.len() as u64) as usize];
                let lba = region + next * STRIDE;
                let cmd = command(phase, nsid, lba, len);
                if phase == nvm_opcode::WRITE {
                    queue.submit(cmd, &pattern(len, seed(next)), 0, next)
                } else {
                    queue.submit(cmd, &[], len, next)
                }
                .expect("submit");
                lengths.insert(next, len);
                next += 1;
                outstanding += 1;
            }
            let completed = queue
                .poll(true, |completion, data| {
                    if !completion.status.is_success() {
                        failures.push(format!(
                            "queue {index} command {}: {}",
                            completion.tag, completion.status
                        ));
                    } else if phase == nvm_opcode::READ {
                        let expected = pattern(lengths[&completion.tag], seed(completion.tag));
                        if data != expected {
                            failures.push(format!(
                                "queue {index} command {}: data read back differs",
                                completion.tag
                            ));
                        }
                    }
                })
                .expect("poll");
            outstanding -= completed;
            done += completed as u64;
        }
    }
    failures
}

#[test]
fn commands_beyond_the_buffers_wait_for_one_and_all_succeed() {
    let target = RunningTarget::with_config(
        &loopback_config(&format!(
            "cores = 1\nmax_queue_depth = {DEPTH}\nin_capsule_data_size = 8192"
        ))
        .subsystem(NQN, "allow_any_host = true")
        .namespace(1, "ram_mib = 16")
        .namespace(2, "sim_mib = 16\nsim_latency_us = 200")
        .text(),
    );
    let address = target.address;
    let threads: Vec<_> = (0..QUEUES)
        .map(|index| {
            std::thread::spawn(move || {
                let options = HostOptions {
                    host_nqn: format!("nqn.2014-08.org.nvmexpress:uuid:scarce-{index}"),
                    ..options()
                };
                let mut host = Host::connect(address, NQN, options).expect("connect");
                host.enable().expect("enable");
                run_queue(&mut host, index)
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("a host thread panicked"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} commands failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
