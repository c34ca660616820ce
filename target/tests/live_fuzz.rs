//! Random PDU streams against a live target: a valid ICReq, then a mix of valid, mutated and
//! random PDUs cut into random chunks, from several threads. The target must never crash (a
//! normal host still works afterwards), every C2HTermReq it sends must carry a defined FES
//! (01h..06h), it must only ever send well-formed PDUs, and once every fuzz connection is
//! closed its open file descriptors and threads must be back to where they started; an idle
//! target must then not spin.
//!
//! Deterministic input: a fixed-seed xorshift generator per connection, so a failure names the
//! connection whose stream reproduces it. (One test in this binary: the fd and thread counts
//! are the process's.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use vfnvme_spec::fabrics::{FabricsCommand, PropertyGet, PropertySet, PropertySize};
use vfnvme_spec::sgl::SglDescriptor;
use vfnvme_spec::{admin_opcode, nvm_opcode, Command};
use vfnvme_tcp::pdu::H2CData;
use vfnvme_tcp::PduHeader;

const THREADS: u64 = 4;
const CONNECTIONS_PER_THREAD: u64 = 75;

/// A command a host could send, with plausible and implausible fields.
fn random_command(rng: &mut Rng, cntlid: u16) -> (Command, Vec<u8>) {
    let cid = rng.below(40) as u16;
    let blocks = 1 + rng.below_mostly(8, 600, 32) as u32;
    let lba = if rng.chance(8) {
        NS_BLOCKS - rng.below(4) as u64
    } else {
        rng.below(1000) as u64
    };
    let nsid = if rng.chance(8) {
        rng.below(4) as u32
    } else {
        1
    };
    let len = blocks as usize * BLOCK;
    match rng.below(9) {
        0 => (
            with_transport_sgl(
                Command::nvm_rw(nvm_opcode::READ, nsid, lba, blocks),
                cid,
                len,
            ),
            Vec::new(),
        ),
        1 => (
            with_transport_sgl(
                Command::nvm_rw(nvm_opcode::WRITE, nsid, lba, blocks),
                cid,
                len,
            ),
            Vec::new(),
        ),
        2 => {
            let blocks = blocks.min(16);
            let data = rng.bytes(blocks as usize * BLOCK);
            let command = Command::nvm_rw(nvm_opcode::WRITE, nsid, lba, blocks);
            (with_in_capsule_sgl(command, cid, data.len()), data)
        }
        3 => {
            let mut identify = Command::new(admin_opcode::IDENTIFY, rng.below(3) as u32);
            identify.cdw10 = rng.below(4) as u32;
            (with_transport_sgl(identify, cid, 4096), Vec::new())
        }
        4 => (
            with_transport_sgl(Command::new(admin_opcode::KEEP_ALIVE, 0), cid, 0),
            Vec::new(),
        ),
        5 => {
            let command = match rng.below(4) {
                0 => FabricsCommand::PropertyGet(PropertyGet {
                    size: PropertySize::Eight,
                    offset: 0,
                }),
                1 => FabricsCommand::PropertySet(PropertySet {
                    size: PropertySize::Four,
                    offset: 0x14,
                    value: if rng.chance(2) { 0x0046_0001 } else { 0 },
                }),
                2 => FabricsCommand::Disconnect,
                _ => FabricsCommand::PropertyGet(PropertyGet {
                    size: PropertySize::Four,
                    offset: rng.below(0x40) as u32,
                }),
            };
            (command.to_command(cid), Vec::new())
        }
        6 => (
            with_transport_sgl(Command::new(admin_opcode::ASYNC_EVENT_REQUEST, 0), cid, 0),
            Vec::new(),
        ),
        7 => {
            let mut command = Command::new(rng.next() as u8, rng.next() as u32);
            command.cdw10 = rng.next() as u32;
            command.cdw12 = rng.next() as u32;
            command.prp2 = rng.next();
            command.set_cid(cid);
            (command, Vec::new())
        }
        _ => {
            // Connect (admin, or an I/O queue of the fuzz host's controller).
            let qid = if rng.chance(2) {
                0
            } else {
                1 + rng.below(8) as u16
            };
            let cntlid = if qid == 0 { 0xffff } else { cntlid };
            let data = vfnvme_spec::fabrics::ConnectData {
                host_id: HostIdentity::default().id,
                cntlid,
                subsystem_nqn: NQN.into(),
                host_nqn: HostIdentity::default().nqn,
            }
            .to_bytes();
            let mut command = FabricsCommand::Connect(vfnvme_spec::fabrics::ConnectCommand {
                recfmt: 0,
                qid,
                sqsize: 1 + rng.below(31) as u16,
                cattr: if rng.chance(3) { 4 } else { 0 },
                kato_ms: 0,
            })
            .to_command(cid);
            SglDescriptor::in_capsule(data.len() as u32).store_in(&mut command);
            (command, data.to_vec())
        }
    }
}

struct HostIdentity {
    nqn: String,
    id: [u8; 16],
}

impl Default for HostIdentity {
    fn default() -> Self {
        let options = vfnvme_host::HostOptions::default();
        Self {
            nqn: options.host_nqn,
            id: options.host_id,
        }
    }
}

/// One PDU of the stream: valid, mutated or noise.
fn random_pdu(rng: &mut Rng, raw: &mut RawClient, cntlid: u16) -> Vec<u8> {
    let mut pdu = match rng.below(10) {
        0..=5 => {
            let (command, data) = random_command(rng, cntlid);
            raw.capsule_bytes(&command, &data)
        }
        6 | 7 => {
            let datal = 1 + rng.below_mostly(4, 20_000, 4096);
            let header = H2CData {
                cccid: rng.below(40) as u16,
                ttag: rng.below_mostly(4, 0x10000, 40) as u16,
                datao: if rng.chance(2) {
                    0
                } else {
                    rng.below(8192) as u32
                },
                datal: datal as u32,
                last: rng.chance(2),
            };
            let data = rng.bytes(datal);
            raw.h2c_bytes(header, &data)
        }
        8 => {
            let len = rng.below(200);
            rng.bytes(len)
        }
        _ => RawClient::ic_req_bytes(rng.chance(2), rng.chance(2)),
    };
    if !pdu.is_empty() && rng.chance(3) {
        // Mutate: flip bytes, often in the header.
        for _ in 0..1 + rng.below(3) {
            let at = if rng.chance(2) {
                rng.below(pdu.len().min(24))
            } else {
                rng.below(pdu.len())
            };
            pdu[at] ^= 1 << rng.below(8);
        }
    }
    if !pdu.is_empty() && rng.chance(10) {
        let keep = rng.below(pdu.len());
        pdu.truncate(keep);
    }
    pdu
}

/// One fuzz connection; returns the FES of the C2HTermReq it got, if any.
fn fuzz_connection(target: &RunningTarget, seed: u64, cntlid: u16) -> Option<u16> {
    let mut rng = Rng::new(seed);
    let mut raw = RawClient::open(target.address);
    raw.ic(rng.chance(2), rng.chance(2));
    let mut stream = Vec::new();
    if rng.chance(2) {
        // Get past Connect most of the time, to reach the I/O and admin paths.
        let qid = if rng.chance(2) {
            0
        } else {
            1 + rng.below(8) as u16
        };
        let cntlid = if qid == 0 { 0xffff } else { cntlid };
        stream.extend(raw.connect_bytes(NQN, qid, cntlid, 32));
    }
    for _ in 0..1 + rng.below(20) {
        stream.extend(random_pdu(&mut rng, &mut raw, cntlid));
    }
    let mut at = 0;
    while at < stream.len() {
        let chunk = (1 + rng.below(300)).min(stream.len() - at);
        raw.send_lenient(&stream[at..at + chunk]);
        at += chunk;
    }
    raw.shutdown_write();
    // Everything the target sends, until it closes: only well-formed PDUs (receive panics
    // otherwise), at most one C2HTermReq and nothing after it.
    let mut term = None;
    loop {
        match raw.receive() {
            Received::Closed => return term,
            Received::Pdu(PduHeader::C2HTermReq(request), _) => {
                assert!(term.is_none(), "seed {seed}: a second C2HTermReq");
                term = Some(request.fes);
            }
            Received::Pdu(other, _) => {
                assert!(term.is_none(), "seed {seed}: {other:?} after a C2HTermReq");
            }
        }
    }
}

/// CPU time (user + system, clock ticks) of the target's poll group threads.
fn poll_group_cpu_ticks() -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with("poll-group") {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime and stime are the
        // 14th and 15th fields, the 12th and 13th after ") ".
        let Some(rest) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    ticks
}

#[test]
fn random_pdu_streams_never_break_the_target() {
    let target = RunningTarget::start("");
    // The fuzz host's controller: I/O queue Connects in the streams attach to it.
    let mut host = target.host();
    let cntlid = host.cntlid();
    host.identify_controller().unwrap();
    let baseline = fds_and_threads();

    let base = fuzz_seed_base();
    let target = &target;
    let terms: Vec<Vec<u16>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    (0..CONNECTIONS_PER_THREAD)
                        .filter_map(|n| {
                            fuzz_connection(target, base + thread * 1_000_000 + n + 1, cntlid)
                        })
                        .collect()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a fuzz thread panicked"))
            .collect()
    });
    let terms: Vec<u16> = terms.into_iter().flatten().collect();
    for fes in &terms {
        assert!((0x01..=0x06).contains(fes), "undefined FES {fes:#x}");
    }
    assert!(
        terms.len() >= 30,
        "only {} of {} streams were terminated: the fuzzing is too tame",
        terms.len(),
        THREADS * CONNECTIONS_PER_THREAD
    );

    // The fuzz host's admin queue survived its I/O queues' abuse.
    host.identify_controller()
        .expect("the fuzz host's controller");
    target.assert_serves();
    wait_for_baseline(baseline);

    // Idle with nothing open but one admin queue: the poll groups sleep.
    let before = poll_group_cpu_ticks();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = poll_group_cpu_ticks() - before;
    let elapsed = started.elapsed();
    assert!(
        used <= 20,
        "idle poll groups used {used} ticks of CPU in {elapsed:?}"
    );
}
