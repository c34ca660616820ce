//! No host starves another on the same poll group: one that never reads its data (its
//! socket's buffers full), one that floods a queue with commands, one whose keep-alive
//! expires with commands in flight. A well-behaved host beside them keeps every command
//! succeeding, its data intact, and its p99 latency within a generous factor of the quiet
//! case (2 cores shared with the misbehaving hosts' threads; the bound catches a stall, not a
//! slowdown). The figures measured are in BENCHMARKS.md ("Hostile hosts").
//!
//! Each host of a test connects from its own loopback address: the target's per-host limits
//! (`limits.buffer_bytes_per_host`) count by address.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vfnvme_host::HostOptions;
use vfnvme_spec::{nvm_opcode, Command};
use vfnvme_tcp::PduHeader;

/// Reads the well-behaved host measures in each phase.
const SAMPLES: usize = 2_000;
/// How much higher its p99 may be beside a misbehaving host than quiet.
const P99_FACTOR: u32 = 50;
/// The well-behaved host's block: written once, read back and compared at every read.
const LBA: u64 = 4096;

fn with_one_group() -> RunningTarget {
    RunningTarget::with_config(&config_text("cores = 1", ""))
}

fn read(lba: u64, len: usize, cid: u16) -> Command {
    let blocks = (len / BLOCK) as u32;
    with_transport_sgl(Command::nvm_rw(nvm_opcode::READ, 1, lba, blocks), cid, len)
}

/// I/O queue `qid` of the controller `host` created, from loopback address `source`.
fn queue_from(
    source: [u8; 4],
    target: &RunningTarget,
    host: &vfnvme_host::Host,
    qid: u16,
) -> RawClient {
    let mut client = RawClient::from_stream(connect_from(source, target.address));
    client.ic(false, false);
    client.connect_io_of(host, qid, 128);
    client
}

/// The well-behaved host: QD1 4 KiB reads of its block, each compared; the latencies sorted.
fn timed_reads(queue: &mut RawClient, expected: &[u8]) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        queue.send_capsule(&read(LBA, expected.len(), 1), &[]);
        match queue.receive() {
            Received::Pdu(PduHeader::C2HData(_), data) => {
                assert!(data == expected, "data read back differs")
            }
            other => panic!("expected the read's data, got {other:?}"),
        }
        let response = queue.expect_response();
        assert!(response.status().is_success(), "{}", response.status());
        latencies.push(start.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() * 99 / 100]
}

/// The well-behaved host from 127.0.0.4, its block written; its quiet p99 measured.
fn well_behaved(
    target: &RunningTarget,
    host: &vfnvme_host::Host,
) -> (RawClient, Vec<u8>, Duration) {
    let mut queue = queue_from([127, 0, 0, 4], target, host, 1);
    let data = pattern(4096, 11);
    let write = Command::nvm_rw(nvm_opcode::WRITE, 1, LBA, 8);
    queue.send_capsule(&with_in_capsule_sgl(write, 2, data.len()), &data);
    assert!(queue.expect_response().status().is_success());
    timed_reads(&mut queue, &data); // warm-up
    let quiet = p99(&timed_reads(&mut queue, &data));
    (queue, data, quiet)
}

fn assert_within_bound(what: &str, quiet: Duration, beside: Duration) {
    println!("{what}: p99 {beside:?} beside it, {quiet:?} quiet");
    assert!(
        beside <= quiet * P99_FACTOR,
        "{what}: p99 {beside:?}, quiet {quiet:?}"
    );
}

/// A host that sends reads on four queues and never reads a byte back: its data fills its
/// sockets, then its buffers. It holds at most `buffer_bytes_per_host` of the poll group's
/// pool (half of it by default), so the other host's reads still find buffers. Without that
/// limit the slow host's reads, queued first, would take every buffer and the other host
/// would wait until the slow one read (it failed so: every read timed out).
#[test]
fn a_host_that_never_reads_does_not_stall_another() {
    let target = with_one_group();
    let admin = target.host();
    let (mut queue, data, quiet) = well_behaved(&target, &admin);

    let len = 128 * 1024;
    let slow: Vec<RawClient> = (2..=5)
        .map(|qid| {
            let mut client = queue_from([127, 0, 0, 2], &target, &admin, qid);
            for cid in 0..127u16 {
                client.send_capsule(&read(u64::from(cid) * 256, len, cid), &[]);
            }
            client
        })
        .collect();
    let beside = p99(&timed_reads(&mut queue, &data));
    assert_within_bound("a host that never reads", quiet, beside);
    drop(slow);
    target.assert_serves();
}

/// A host that keeps 64 reads in flight on one queue, as fast as the target answers.
#[test]
fn a_host_flooding_one_queue_does_not_stall_another() {
    let target = with_one_group();
    let admin = target.host();
    let (mut queue, data, quiet) = well_behaved(&target, &admin);

    let stop = Arc::new(AtomicBool::new(false));
    let mut flood = queue_from([127, 0, 0, 3], &target, &admin, 2);
    let flooding = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut completed = 0u64;
            for cid in 0..64u16 {
                flood.send_capsule(&read(u64::from(cid) * 8, 4096, cid), &[]);
            }
            while !stop.load(Ordering::Relaxed) {
                let cid = match flood.receive() {
                    Received::Pdu(PduHeader::C2HData(data), _) => data.cccid,
                    other => panic!("flood: expected data, got {other:?}"),
                };
                assert!(flood.expect_response().status().is_success());
                completed += 1;
                flood.send_capsule(&read(u64::from(cid) * 8, 4096, cid), &[]);
            }
            completed
        })
    };
    let beside = p99(&timed_reads(&mut queue, &data));
    stop.store(true, Ordering::Relaxed);
    let completed = flooding.join().expect("the flood saw no error");
    assert!(completed > 0);
    assert_within_bound("a host flooding one queue", quiet, beside);
}

/// A controller whose host stops sending keep-alives while its I/O queue is busy is torn down
/// after KATO (its admin and I/O queues closed); the other host's controller, on the same
/// poll group, serves on without an error.
#[test]
fn a_keep_alive_expiring_under_load_ends_that_controller_only() {
    let target = with_one_group();
    let mut admin = target.host();
    let (mut queue, data, quiet) = well_behaved(&target, &admin);

    let mut expiring = target.host_with(HostOptions {
        keep_alive_timeout_ms: 1000,
        host_nqn: "nqn.2014-08.org.nvmexpress:uuid:expiring-host".into(),
        ..options()
    });
    let mut busy = expiring.connect_io_queue(1, 32).expect("I/O queue");
    let loaded = std::thread::spawn(move || {
        // Reads until the target closes the queue: its controller is gone.
        let mut served = 0u64;
        while busy
            .execute(
                Command::nvm_rw(nvm_opcode::READ, 1, 0, 8),
                &[],
                4096,
                "Read",
            )
            .is_ok()
        {
            served += 1;
        }
        served
    });
    let mut during = Vec::new();
    while !loaded.is_finished() {
        during.extend(timed_reads(&mut queue, &data));
    }
    let served = loaded.join().unwrap();
    assert!(
        served > 0,
        "the expiring host did I/O before its controller went"
    );
    wait_for_eof(expiring.admin_queue().socket(), PATIENCE)
        .expect("the expired controller's admin queue is closed");
    during.sort_unstable();
    assert_within_bound("a keep-alive expiring under load", quiet, p99(&during));
    admin.keep_alive().expect("the other controller lives on");
}
