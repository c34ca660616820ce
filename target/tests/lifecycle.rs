//! Lifecycle under stress: shutdown while hosts keep the drives busy, and connect/disconnect
//! storms. Afterwards every thread, descriptor and DMA mapping the target held must be gone.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{loopback_config, open_fds, options, RunningTarget};
use vfnvme_host::{Host, HostOptions};
use vfnvme_spec::{nvm_opcode, Command};
use vfnvme_test_support::poll_until;

const NQN: &str = "nqn.2026-11.io.vfnvme:stress";

/// The tests count process-wide resources, so they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start(latency_us: u64) -> RunningTarget {
    RunningTarget::with_config(
        &loopback_config("cores = 2\nshutdown_deadline_ms = 5000")
            .subsystem(NQN, "allow_any_host = true")
            .namespace(1, &format!("sim_mib = 4\nsim_latency_us = {latency_us}"))
            .namespace(2, "ram_mib = 4")
            .text(),
    )
}

/// Threads the target starts (poll groups, simulated drives); the test harness's own threads
/// come and go with other tests, so only these are counted.
fn target_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| {
                        name.starts_with("poll-group") || name.starts_with("nvme-sim")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// Waits (bounded) until the process is back to `fds` descriptors and `threads` target threads.
fn assert_back_to(fds: usize, threads: usize) {
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || (open_fds() <= fds && target_threads() <= threads).then_some(()),
        || {
            let (now_fds, now_threads) = (open_fds(), target_threads());
            format!(
                "resources leaked: {now_fds} fds (was {fds}), {now_threads} target threads (was \
                 {threads})"
            )
        },
    );
}

/// One host hammering both namespaces until the target goes away; returns how many commands
/// completed.
fn hammer(address: SocketAddr, running: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> u64 {
    let Ok(mut host) = Host::connect(address, NQN, options()) else {
        return 0;
    };
    if host.enable().is_err() {
        return 0;
    }
    let Ok(mut queue) = host.connect_io_queue(1, 17) else {
        return 0;
    };
    let block = vec![0x5au8; 4096];
    let mut completed = 0u64;
    let mut tag = 0u64;
    while running.load(Ordering::Relaxed) {
        while queue.outstanding() < 16 {
            let nsid = 1 + (tag % 2) as u32;
            let lba = (tag * 8) % 4096;
            let command = if tag.is_multiple_of(3) {
                Command::nvm_rw(nvm_opcode::WRITE, nsid, lba, 8)
            } else {
                Command::nvm_rw(nvm_opcode::READ, nsid, lba, 8)
            };
            let write: &[u8] = if tag.is_multiple_of(3) { &block } else { &[] };
            let read_len = if tag.is_multiple_of(3) { 0 } else { 4096 };
            if queue.submit(command, write, read_len, tag).is_err() {
                return completed;
            }
            tag += 1;
        }
        match queue.poll(true, |_, _| {
            completed += 1;
            progress.fetch_add(1, Ordering::Relaxed);
        }) {
            Ok(_) => {}
            Err(_) => return completed,
        }
    }
    completed
}

#[test]
fn shutdown_under_full_load_drains_and_releases_everything() {
    let _exclusive = exclusive();
    let (fds, threads) = (open_fds(), target_threads());
    let mapped = vfnvme_driver::dma::mapped_bytes();
    for cycle in 0..200 {
        let target = start(50);
        let load = Arc::new(AtomicBool::new(true));
        let progress = Arc::new(AtomicU64::new(0));
        let hosts: Vec<_> = (0..2)
            .map(|_| {
                let load = Arc::clone(&load);
                let progress = Arc::clone(&progress);
                let address = target.address;
                std::thread::spawn(move || hammer(address, load, progress))
            })
            .collect();
        // Shut down once both hosts keep the drives busy.
        poll_until(
            Duration::from_secs(10),
            Duration::ZERO,
            || (progress.load(Ordering::Relaxed) >= 64).then_some(()),
            || format!("cycle {cycle}: the hosts made no progress"),
        );
        let report = target.stop();
        load.store(false, Ordering::Relaxed);
        for host in hosts {
            host.join().expect("hosts see errors, not panics");
        }
        assert_eq!(
            report.abandoned_commands, 0,
            "cycle {cycle}: the drives drained in time"
        );
        assert_eq!(
            vfnvme_driver::dma::mapped_bytes(),
            mapped,
            "cycle {cycle}: DMA memory left mapped"
        );
    }
    assert_back_to(fds, threads);
}

#[test]
fn connect_disconnect_storm_of_several_hosts() {
    let _exclusive = exclusive();
    let (fds_before, threads_before) = (open_fds(), target_threads());
    let target = start(0);
    let fds_running = open_fds();
    let hosts: Vec<_> = (0..4)
        .map(|host_index| {
            let address = target.address;
            std::thread::spawn(move || {
                let options = HostOptions {
                    host_nqn: format!("nqn.2014-08.org.nvmexpress:uuid:storm-{host_index}"),
                    ..options()
                };
                for cycle in 0..250u64 {
                    let mut host = Host::connect(address, NQN, options.clone()).expect("connect");
                    host.enable().expect("enable");
                    let mut queue = host
                        .connect_io_queue(1, 4)
                        .expect("I/O queue, never a duplicate QID");
                    let data = vec![(cycle as u8) ^ host_index as u8; 512];
                    let lba = host_index * 1000 + cycle;
                    queue
                        .execute(
                            Command::nvm_rw(nvm_opcode::WRITE, 2, lba, 1),
                            &data,
                            0,
                            "Write",
                        )
                        .unwrap();
                    let (_, back) = queue
                        .execute(
                            Command::nvm_rw(nvm_opcode::READ, 2, lba, 1),
                            &[],
                            512,
                            "Read",
                        )
                        .unwrap();
                    assert_eq!(back, data);
                }
            })
        })
        .collect();
    for host in hosts {
        host.join().expect("every cycle succeeds");
    }
    // Every closed connection's socket is gone while the target runs on.
    assert_back_to(fds_running, usize::MAX);
    let report = target.stop();
    assert_back_to(fds_before, threads_before);
    assert_eq!(report.connections_served, 4 * 250 * 2);
}

/// Runs a target through one connection and a read, then stops it.
fn one_short_life() {
    let target = start(0);
    let mut host = Host::connect(target.address, NQN, options()).unwrap();
    host.enable().unwrap();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    queue
        .execute(
            Command::nvm_rw(nvm_opcode::READ, 1, 0, 8),
            &[],
            4096,
            "Read",
        )
        .unwrap();
    drop(queue);
    drop(host);
    target.stop();
}

#[test]
fn a_stopped_target_unmaps_its_memory() {
    let _exclusive = exclusive();
    let before = vfnvme_driver::dma::mapped_bytes();
    for life in 0..5 {
        one_short_life();
        assert_eq!(
            vfnvme_driver::dma::mapped_bytes(),
            before,
            "life {life}: DMA memory left mapped"
        );
    }
}

/// Starts a target whose simulated drive takes `latency_us` per command, with a shutdown
/// deadline of `deadline_ms`.
fn slow_target(latency_us: u64, deadline_ms: u64) -> RunningTarget {
    RunningTarget::with_config(
        &loopback_config(&format!("cores = 1\nshutdown_deadline_ms = {deadline_ms}"))
            .subsystem(NQN, "allow_any_host = true")
            .namespace(1, &format!("sim_mib = 4\nsim_latency_us = {latency_us}"))
            .text(),
    )
}

/// Submits `count` reads and returns without waiting for them.
fn reads_in_flight(address: SocketAddr, count: u64) -> (Host, vfnvme_host::HostQueue) {
    let mut host = Host::connect(address, NQN, options()).unwrap();
    host.enable().unwrap();
    let mut queue = host.connect_io_queue(1, 16).unwrap();
    for tag in 0..count {
        let read = Command::nvm_rw(nvm_opcode::READ, 1, tag * 8, 8);
        queue.submit(read, &[], 4096, tag).unwrap();
    }
    (host, queue)
}

#[test]
fn connections_that_vanish_with_commands_on_the_drive_leave_nothing_behind() {
    let _exclusive = exclusive();
    let mapped = vfnvme_driver::dma::mapped_bytes();
    let target = slow_target(50_000, 10_000);
    for _ in 0..5 {
        // The host goes away while its reads are on the drive; their completions come later,
        // for a connection that is gone.
        drop(reads_in_flight(target.address, 8));
    }
    let report = target.stop();
    assert_eq!(
        report.abandoned_commands, 0,
        "the drive completed them during shutdown"
    );
    assert_eq!(
        vfnvme_driver::dma::mapped_bytes(),
        mapped,
        "a buffer of a vanished connection never came home"
    );
}

#[test]
fn the_shutdown_deadline_abandons_what_the_drive_does_not_complete_and_says_so() {
    let _exclusive = exclusive();
    let mapped = vfnvme_driver::dma::mapped_bytes();
    // Each command takes 3 s, the deadline is 200 ms.
    let target = slow_target(3_000_000, 200);
    let (host, queue) = reads_in_flight(target.address, 4);
    let started = Instant::now();
    let report = target.stop();
    assert!(report.abandoned_commands > 0, "{report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop((queue, host));
    // The abandoned commands were aborted by deleting their SQ on the drive, and their buffers
    // came back with those completions before the pool went.
    assert_eq!(
        vfnvme_driver::dma::mapped_bytes(),
        mapped,
        "DMA memory left mapped"
    );
}
