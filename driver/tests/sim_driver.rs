//! The whole driver against the simulated controller: bring-up, identify, every I/O command,
//! PRP lists, wrap-around, full queues, timeouts, resets, fatal status and teardown. Data is
//! compared byte for byte, statuses against the spec's values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfnvme_driver::controller::{TimeoutReport, LOST_IN_RESET};
use vfnvme_driver::dma::{BufferPool, DmaBuffer, DmaSpace, MemoryKind};
use vfnvme_driver::queue::{Completed, Rejected, SubmitError};
use vfnvme_driver::sim::{Fault, SimConfig, SimController, SimIommu, SimNamespace};
use vfnvme_driver::{
    AdminData, Controller, ControllerOptions, Error, IoQueuePair, Namespace, NvmeDevice,
};
use vfnvme_spec::log_page::{log_id, SmartLog};
use vfnvme_spec::regs::{self, ShutdownStatus};
use vfnvme_spec::status::{generic, media, sct};
use vfnvme_spec::{admin_opcode, feature, nvm_opcode, Command, DsmRange, Status};
use vfnvme_test_support::poll_until;

struct Rig {
    // Field order is drop order: queue pair, pool, controller, then the device.
    qpair: IoQueuePair,
    pool: BufferPool,
    ns: Namespace,
    controller: Controller,
    sim: Arc<SimController>,
}

fn rig_with(config: SimConfig, entries: u16) -> Rig {
    let sim = SimController::new(config).expect("simulator starts");
    let controller = Controller::new(sim.clone(), ControllerOptions::default()).expect("bring-up");
    let ns = controller.namespace(1).expect("namespace 1");
    let mut qpair = controller.create_io_qpair(entries).expect("I/O queue pair");
    let pool = BufferPool::new(sim.dma(), 2 << 20, 8).expect("buffer pool");
    qpair.register_pool(&pool);
    Rig {
        qpair,
        pool,
        ns,
        controller,
        sim,
    }
}

fn rig() -> Rig {
    rig_with(SimConfig::default(), 64)
}

/// Waits for one completion (the simulator runs on its own thread).
fn wait_one(qpair: &mut IoQueuePair) -> Completed {
    poll_until(
        Duration::from_secs(10),
        Duration::ZERO,
        || {
            let mut done = None;
            qpair.poll(1, |c| done = Some(c));
            done
        },
        || "no completion within 10 s".to_owned(),
    )
}

/// Submits a command with a buffer from the pool, waits for it, and returns its status and the
/// buffer.
fn run(
    rig: &mut Rig,
    submit: impl FnOnce(&mut IoQueuePair, &Namespace, DmaBuffer) -> Result<u16, Rejected>,
) -> (Status, DmaBuffer) {
    let buffer = rig.pool.take().unwrap();
    submit(&mut rig.qpair, &rig.ns, buffer).unwrap();
    let done = wait_one(&mut rig.qpair);
    (done.status, done.buffer.expect("the buffer comes back"))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn write_read_back(rig: &mut Rig, lba: u64, blocks: u32, seed: u8) {
    let len = blocks as usize * rig.ns.block_size as usize;
    let data = pattern(len, seed);
    let (status, out) = run(rig, |q, ns, mut b| {
        b.as_mut_slice()[..len].copy_from_slice(&data);
        q.write(ns, lba, blocks, b, 1)
    });
    assert_eq!(status, Status::SUCCESS);
    rig.pool.give_back(out);
    let (status, back) = run(rig, |q, ns, b| q.read(ns, lba, blocks, b, 2));
    assert_eq!(status, Status::SUCCESS);
    assert!(
        back.as_slice()[..len] == data[..],
        "data read back differs ({blocks} blocks at LBA {lba})"
    );
    rig.pool.give_back(back);
    let mut medium = vec![0u8; len];
    assert!(rig
        .sim
        .read_medium(1, lba * u64::from(rig.ns.block_size), &mut medium));
    assert!(
        medium == data,
        "the medium does not hold what was written at LBA {lba}"
    );
}

#[test]
fn bring_up_identifies_controller_and_namespaces() {
    let config = SimConfig {
        namespaces: vec![
            SimNamespace {
                nsid: 1,
                blocks: 2048,
                block_size: 512,
                ..SimNamespace::default()
            },
            SimNamespace {
                nsid: 3,
                blocks: 1024,
                block_size: 4096,
                ..SimNamespace::default()
            },
        ],
        ..SimConfig::default()
    };
    let sim = SimController::new(config).unwrap();
    let controller = Controller::new(sim.clone(), ControllerOptions::default()).unwrap();
    assert_eq!(controller.identify().serial, "VFNVME-SIM-0001");
    assert_eq!(controller.identify().model, "vfnvme simulated controller");
    assert_eq!(controller.identify().firmware, "1.0");
    assert_eq!(
        controller.max_transfer(),
        128 * 1024,
        "MDTS 5 = 32 pages of 4 KiB"
    );
    assert_eq!(controller.io_queues_granted(), 16);
    assert_eq!(controller.capabilities().max_queue_entries(), 1024);
    let namespaces = controller.namespaces().unwrap();
    let shapes: Vec<_> = namespaces
        .iter()
        .map(|n| (n.nsid, n.block_size, n.blocks))
        .collect();
    assert_eq!(shapes, [(1, 512, 2048), (3, 4096, 1024)]);
    match controller.namespace(2) {
        Err(Error::NoSuchNamespace {
            nsid: 2, active, ..
        }) => assert_eq!(active, [1, 3]),
        other => panic!("expected NoSuchNamespace, got {other:?}"),
    }
    assert!(sim.registers().csts().rdy());
}

#[test]
fn reads_and_writes_across_page_boundaries_and_prp_lists() {
    let mut rig = rig();
    // 1 block, 1 page, 2 pages (PRP2 is a page), 3 pages and the most one command can carry
    // (PRP2 points to a list), and odd sizes straddling page boundaries.
    for (i, blocks) in [1u32, 7, 8, 9, 16, 17, 24, 100, 255, 256]
        .into_iter()
        .enumerate()
    {
        write_read_back(&mut rig, 3 + i as u64 * 300, blocks, i as u8);
    }
    let last = rig.ns.blocks - 256;
    write_read_back(&mut rig, last, 256, 99);
}

#[test]
fn unlimited_mdts_transfers_two_mebibytes_through_one_prp_list() {
    let config = SimConfig {
        mdts: 0,
        namespaces: vec![SimNamespace {
            nsid: 1,
            blocks: 8192,
            block_size: 4096,
            ..SimNamespace::default()
        }],
        ..SimConfig::default()
    };
    let mut rig = rig_with(config, 8);
    assert_eq!(rig.controller.max_transfer(), 2 << 20);
    write_read_back(&mut rig, 0, 512, 5);
    write_read_back(&mut rig, 4000, 511, 6);
}

#[test]
fn transfers_beyond_max_transfer_are_refused_before_submission() {
    let mut rig = rig();
    let buffer = rig.pool.take().unwrap();
    let blocks = (rig.controller.max_transfer() / 512) as u32 + 1;
    let refused = rig.qpair.read(&rig.ns, 0, blocks, buffer, 0).unwrap_err();
    assert_eq!(
        refused.error,
        SubmitError::TooLarge {
            len: blocks as usize * 512,
            max: 128 * 1024
        }
    );
    assert_eq!(rig.qpair.outstanding(), 0);
    rig.pool.give_back(refused.buffer.expect("handed back"));
}

#[test]
fn flush_write_zeroes_and_deallocate() {
    let mut rig = rig();
    write_read_back(&mut rig, 100, 64, 1);
    rig.qpair.flush(&rig.ns, 7).unwrap();
    assert_eq!(wait_one(&mut rig.qpair).status, Status::SUCCESS);

    rig.qpair.write_zeroes(&rig.ns, 100, 16, 8).unwrap();
    assert_eq!(wait_one(&mut rig.qpair).status, Status::SUCCESS);
    let mut medium = vec![0xffu8; 64 * 512];
    rig.sim.read_medium(1, 100 * 512, &mut medium);
    assert!(
        medium[..16 * 512].iter().all(|&b| b == 0),
        "write zeroes left data"
    );
    assert!(
        medium[16 * 512..].iter().any(|&b| b != 0),
        "write zeroes went too far"
    );

    let dsm = [
        DsmRange {
            attributes: 0,
            blocks: 16,
            slba: 116,
        },
        DsmRange {
            attributes: 0,
            blocks: 16,
            slba: 148,
        },
    ];
    let (status, ranges) = run(&mut rig, |q, ns, b| q.deallocate(ns, &dsm, b, 9));
    assert_eq!(status, Status::SUCCESS);
    rig.sim.read_medium(1, 100 * 512, &mut medium);
    assert!(medium[16 * 512..32 * 512].iter().all(|&b| b == 0));
    assert!(
        medium[32 * 512..48 * 512].iter().any(|&b| b != 0),
        "a block outside the ranges changed"
    );
    assert!(medium[48 * 512..].iter().all(|&b| b == 0));
    rig.pool.give_back(ranges);
}

#[test]
fn out_of_range_lba_and_unknown_namespace_get_the_spec_statuses() {
    let mut rig = rig();
    let last = rig.ns.blocks - 1;
    let (status, buffer) = run(&mut rig, |q, ns, b| q.read(ns, last, 2, b, 1));
    assert!(status.same_code(Status::lba_out_of_range()), "{status}");
    assert_eq!(status.raw() & 0xff, 0x80);
    rig.pool.give_back(buffer);

    let ghost = Namespace {
        nsid: 9,
        ..rig.ns.clone()
    };
    let (status, buffer) = run(&mut rig, |q, _, b| q.read(&ghost, 0, 1, b, 2));
    assert_eq!(status.sct(), sct::GENERIC);
    assert_eq!(status.sc(), 0x0b, "Invalid Namespace or Format");
    rig.pool.give_back(buffer);

    rig.qpair.submit(Command::new(0x7e, 1), None, 3).unwrap();
    assert!(wait_one(&mut rig.qpair)
        .status
        .same_code(Status::invalid_opcode()));
}

#[test]
fn injected_media_error_is_reported_with_its_status() {
    let mut rig = rig();
    let unrecovered = Status::new(sct::MEDIA, media::UNRECOVERED_READ_ERROR);
    rig.sim.inject(Fault::FailCommand {
        admin: false,
        opcode: nvm_opcode::READ,
        status: unrecovered,
        count: 1,
    });
    let (status, buffer) = run(&mut rig, |q, ns, b| q.read(ns, 0, 1, b, 1));
    assert_eq!(status, unrecovered);
    rig.pool.give_back(buffer);
    let (status, buffer) = run(&mut rig, |q, ns, b| q.read(ns, 0, 1, b, 2));
    assert_eq!(status, Status::SUCCESS, "the fault was for one command");
    rig.pool.give_back(buffer);
}

/// Stepping the simulator by hand: exactly `entries - 1` commands fit, the next one is refused,
/// and rounds of full queues wrap the rings many times over.
#[test]
fn queues_fill_up_and_wrap_around_at_several_sizes() {
    for entries in [2u16, 3, 16, 255, 1024] {
        let mut rig = rig_with(SimConfig::default(), entries);
        assert_eq!(rig.qpair.entries(), entries);
        rig.sim.pause();
        let depth = entries as usize - 1;
        for round in 0..5u64 {
            for i in 0..depth {
                let lba = (round * depth as u64 + i as u64) % rig.ns.blocks;
                rig.qpair.write_zeroes(&rig.ns, lba, 1, i as u64).unwrap();
            }
            let refused = rig.qpair.write_zeroes(&rig.ns, 0, 1, 0).unwrap_err();
            assert_eq!(
                refused.error,
                SubmitError::QueueFull,
                "queue of {entries} entries took more than {depth} commands"
            );
            assert_eq!(
                rig.qpair.poll(usize::MAX, |_| {}),
                0,
                "completion before the device ran"
            );
            rig.sim.step();
            let mut tags = Vec::new();
            let reaped = rig.qpair.poll(usize::MAX, |c| {
                assert_eq!(c.status, Status::SUCCESS);
                tags.push(c.tag)
            });
            assert_eq!(reaped, depth);
            tags.sort_unstable();
            assert_eq!(tags, (0..depth as u64).collect::<Vec<_>>());
        }
        rig.sim.resume();
        write_read_back(&mut rig, 1, 8, entries as u8);
    }
}

#[test]
fn lost_completion_is_aborted_after_its_timeout() {
    let mut rig = rig();
    rig.sim.inject(Fault::LoseCompletion {
        admin: false,
        opcode: nvm_opcode::READ,
        count: 1,
    });
    let buffer = rig.pool.take().unwrap();
    rig.qpair.read(&rig.ns, 0, 1, buffer, 42).unwrap();
    let timeout = Duration::from_millis(50);
    assert_eq!(
        rig.qpair.check_timeouts(timeout).unwrap(),
        TimeoutReport::default()
    );
    // Wait until the command is overdue (polling, so an unexpected completion would show).
    let start = Instant::now();
    while start.elapsed() < timeout * 2 {
        assert_eq!(rig.qpair.poll(usize::MAX, |_| {}), 0);
    }
    let report = rig.qpair.check_timeouts(timeout).unwrap();
    assert_eq!(
        report,
        TimeoutReport {
            aborts_sent: 1,
            controller_reset: false
        }
    );
    let done = wait_one(&mut rig.qpair);
    assert_eq!(done.tag, 42);
    assert!(
        done.status
            .same_code(Status::generic(generic::ABORT_REQUESTED)),
        "{}",
        done.status
    );
    rig.pool.give_back(done.buffer.unwrap());
}

#[test]
fn ignored_abort_leads_to_a_reset_and_the_queue_pair_recovers() {
    let mut rig = rig();
    rig.sim.inject(Fault::LoseCompletion {
        admin: false,
        opcode: nvm_opcode::WRITE,
        count: 1,
    });
    rig.sim.inject(Fault::IgnoreAbort);
    let buffer = rig.pool.take().unwrap();
    rig.qpair.write(&rig.ns, 5, 1, buffer, 7).unwrap();
    let timeout = Duration::from_millis(30);
    let mut resets = 0;
    let mut aborts = 0;
    let start = Instant::now();
    while resets == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "no reset");
        std::thread::sleep(timeout);
        let report = rig.qpair.check_timeouts(timeout).unwrap();
        aborts += report.aborts_sent;
        resets += usize::from(report.controller_reset);
    }
    assert_eq!(aborts, 1, "one abort before resetting");
    assert_eq!(rig.controller.generation(), 1);
    let done = wait_one(&mut rig.qpair);
    assert_eq!((done.tag, done.status), (7, LOST_IN_RESET));
    rig.pool.give_back(done.buffer.unwrap());
    write_read_back(&mut rig, 9, 8, 3);
    assert_eq!(rig.sim.stats().io_queues, 1, "the queue pair was recreated");
}

#[test]
fn fatal_status_is_detected_and_a_reset_recovers() {
    let mut rig = rig();
    rig.sim.inject(Fault::Fatal);
    assert!(rig.controller.is_fatal());
    let smart = Command {
        cdw10: u32::from(log_id::SMART_HEALTH) | (127 << 16),
        ..Command::new(admin_opcode::GET_LOG_PAGE, u32::MAX)
    };
    let mut log = vec![0u8; 512];
    match rig
        .controller
        .admin(smart, AdminData::FromDevice(&mut log), "Get Log Page")
    {
        Err(Error::ControllerFatal { address }) => assert_eq!(address, "sim"),
        other => panic!("expected ControllerFatal, got {other:?}"),
    }
    rig.controller.reset().unwrap();
    assert!(!rig.controller.is_fatal());
    let buffer = rig.pool.take().unwrap();
    let refused = rig.qpair.read(&rig.ns, 0, 1, buffer, 0).unwrap_err();
    assert_eq!(
        refused.error,
        SubmitError::ControllerReset,
        "a queue pair must be polled after a reset before it takes commands"
    );
    rig.pool.give_back(refused.buffer.unwrap());
    assert_eq!(
        rig.qpair.poll(usize::MAX, |_| {}),
        0,
        "nothing was in flight"
    );
    write_read_back(&mut rig, 0, 4, 4);
}

#[test]
fn admin_passthrough_reads_smart_log_and_features() {
    let mut rig = rig();
    write_read_back(&mut rig, 0, 256, 1);
    let smart = Command {
        cdw10: u32::from(log_id::SMART_HEALTH) | (127 << 16),
        ..Command::new(admin_opcode::GET_LOG_PAGE, u32::MAX)
    };
    let mut log = vec![0u8; 512];
    rig.controller
        .admin(smart, AdminData::FromDevice(&mut log), "Get Log Page")
        .unwrap();
    let smart = SmartLog::from_bytes(&log).unwrap();
    assert_eq!(smart.temperature_kelvin, 310);
    assert_eq!(smart.avail_spare, 100);

    let set = Command {
        cdw10: u32::from(feature::KEEP_ALIVE_TIMER),
        cdw11: 15_000,
        ..Command::new(admin_opcode::SET_FEATURES, 0)
    };
    rig.controller
        .admin(set, AdminData::None, "Set Features")
        .unwrap();
    let get = Command {
        cdw10: u32::from(feature::KEEP_ALIVE_TIMER),
        ..Command::new(admin_opcode::GET_FEATURES, 0)
    };
    assert_eq!(
        rig.controller
            .admin(get, AdminData::None, "Get Features")
            .unwrap(),
        15_000
    );

    let bad_log = Command {
        cdw10: 0xc5 | (127 << 16),
        ..Command::new(admin_opcode::GET_LOG_PAGE, 0)
    };
    match rig
        .controller
        .admin(bad_log, AdminData::FromDevice(&mut log), "Get Log Page")
    {
        Err(Error::Command { status, .. }) => {
            assert_eq!((status.sct(), status.sc()), (sct::COMMAND_SPECIFIC, 0x09))
        }
        other => panic!("expected Invalid Log Page, got {other:?}"),
    }
}

/// Batched doorbells (`IoQueuePair::batch_doorbells`): a submission only writes its entry; the
/// next poll writes the CQ head of what the poll before it reaped, then the SQ tail. Where the
/// queue has no room to delay that head (2 entries: one command, one reaped), the submission
/// writes it at once, so the device never finds its CQ full of entries already reaped. Data
/// still goes through at every size, commands and completions wrapping around the rings.
#[test]
fn batched_doorbells_are_written_by_the_next_poll() {
    for entries in [2u16, 3, 16] {
        let mut rig = rig_with(SimConfig::default(), entries);
        rig.qpair.batch_doorbells();
        let stride = rig.controller.capabilities().doorbell_stride();
        let qid = rig.qpair.qid();
        let registers = rig.sim.registers().clone();
        let sq_tail = || registers.read32(regs::sq_tail_doorbell(qid, stride));
        let cq_head = || registers.read32(regs::cq_head_doorbell(qid, stride));
        let wrap = |index: u32| index % u32::from(entries);
        rig.sim.pause();
        rig.qpair.write_zeroes(&rig.ns, 0, 1, 1).unwrap();
        assert_eq!(
            sq_tail(),
            0,
            "{entries} entries: SQ tail written at submission"
        );
        assert_eq!(rig.qpair.poll(usize::MAX, |_| {}), 0);
        assert_eq!(
            sq_tail(),
            wrap(1),
            "{entries} entries: the poll wrote no SQ tail"
        );
        rig.sim.step();
        assert_eq!(rig.qpair.poll(usize::MAX, |_| {}), 1);
        assert_eq!(
            cq_head(),
            0,
            "{entries} entries: CQ head written by the reaping poll"
        );
        rig.qpair.write_zeroes(&rig.ns, 1, 1, 2).unwrap();
        assert_eq!(
            sq_tail(),
            wrap(1),
            "{entries} entries: SQ tail written at submission"
        );
        let head_at_submission = if entries == 2 { wrap(1) } else { 0 };
        assert_eq!(
            cq_head(),
            head_at_submission,
            "{entries} entries: CQ head at the second submission"
        );
        assert_eq!(rig.qpair.poll(usize::MAX, |_| {}), 0);
        assert_eq!(
            (sq_tail(), cq_head()),
            (wrap(2), wrap(1)),
            "{entries} entries"
        );
        rig.sim.step();
        assert_eq!(rig.qpair.poll(usize::MAX, |_| {}), 1);
        rig.sim.resume();
        for i in 0..u64::from(entries) * 3 {
            write_read_back(&mut rig, i * 8, 8, i as u8);
        }
        assert_eq!(rig.qpair.stale_completions(), 0);
    }
}

#[test]
fn doorbell_stride_from_cap_is_honoured() {
    let config = SimConfig {
        doorbell_stride_shift: 2,
        ..SimConfig::default()
    };
    let mut rig = rig_with(config, 32);
    assert_eq!(rig.controller.capabilities().doorbell_stride(), 16);
    for i in 0..100 {
        write_read_back(&mut rig, i * 8, 8, i as u8);
    }
}

#[test]
fn buffers_of_unregistered_pools_are_refused() {
    let mut rig = rig();
    let mut stranger = BufferPool::new(rig.sim.dma(), 4096, 1).unwrap();
    let buffer = stranger.take().unwrap();
    let refused = rig.qpair.read(&rig.ns, 0, 1, buffer, 0).unwrap_err();
    assert_eq!(refused.error, SubmitError::UnregisteredBuffer);
    stranger.give_back(refused.buffer.unwrap());
}

#[test]
fn queue_ids_are_released_at_once_so_an_immediate_recreate_gets_them() {
    let rig = rig();
    let first = rig.qpair.qid();
    let second = rig.controller.create_io_qpair(16).unwrap();
    assert_ne!(second.qid(), first);
    let second_qid = second.qid();
    drop(second);
    assert_eq!(
        rig.sim.stats().io_queues,
        1,
        "dropping a queue pair deletes it on the device"
    );
    let again = rig.controller.create_io_qpair(16).unwrap();
    assert_eq!(again.qid(), second_qid);
    assert_eq!(rig.sim.stats().io_queues, 2);
}

#[test]
fn all_queue_ids_can_be_taken_and_the_next_is_refused() {
    let config = SimConfig {
        io_queues: 3,
        ..SimConfig::default()
    };
    let rig = rig_with(config, 8);
    let more: Vec<_> = (0..2)
        .map(|_| rig.controller.create_io_qpair(8).unwrap())
        .collect();
    match rig.controller.create_io_qpair(8) {
        Err(Error::NoQueueLeft { granted: 3, .. }) => {}
        other => panic!("expected NoQueueLeft, got {:?}", other.map(|q| q.qid())),
    }
    drop(more);
    rig.controller.create_io_qpair(8).unwrap();
}

/// Teardown with a command the device never completes: shutting the queue pair down deletes its
/// SQ, which aborts the command and gives its buffer back; the device never touches memory after
/// it was unmapped, and every mapping is gone once the controller is.
#[test]
fn teardown_with_a_command_in_flight_unmaps_everything_without_iommu_faults() {
    let rig = rig();
    let sim = rig.sim.clone();
    let Rig {
        mut qpair,
        mut pool,
        ns,
        controller,
        sim: _,
    } = rig;
    sim.inject(Fault::LoseCompletion {
        admin: false,
        opcode: nvm_opcode::READ,
        count: 1,
    });
    let buffer = pool.take().unwrap();
    qpair.read(&ns, 0, 8, buffer, 1).unwrap();
    let mut aborted = None;
    let deadline = Instant::now() + Duration::from_millis(100);
    assert_eq!(
        qpair.drain(deadline, |done| aborted = Some(done)),
        1,
        "the lost read is still out"
    );
    assert!(aborted.is_none());
    // Shutting the queue pair down deletes its SQ, which aborts the lost read; its completion
    // (and buffer) comes back before the rings go.
    qpair.shut_down(|done| aborted = Some(done));
    let aborted = aborted.expect("the lost read completes, aborted by the SQ deletion");
    assert_eq!(aborted.tag, 1);
    assert!(
        aborted
            .status
            .same_code(Status::generic(generic::SQ_DELETION_ABORT)),
        "{}",
        aborted.status
    );
    pool.give_back(aborted.buffer.expect("its buffer comes back"));
    assert_eq!(sim.stats().io_queues, 0);
    assert_eq!(sim.stats().in_flight, 0);
    drop(pool);
    drop(controller);
    assert_eq!(sim.stats().iommu_faults, 0);
    assert_eq!(
        sim.mapped_bytes(),
        0,
        "every buffer came home, so every region is unmapped"
    );
    let status = sim.registers().csts();
    assert_eq!(
        status.shst(),
        ShutdownStatus::Complete,
        "controller was shut down"
    );
}

#[test]
fn teardown_after_all_completions_unmaps_every_byte() {
    let mut rig = rig();
    write_read_back(&mut rig, 0, 16, 1);
    let sim = rig.sim.clone();
    drop(rig);
    assert_eq!(
        sim.mapped_bytes(),
        0,
        "DMA memory still mapped after teardown"
    );
    assert_eq!(sim.stats().iommu_faults, 0);
}

#[test]
fn completion_latency_is_simulated() {
    let config = SimConfig {
        latency: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let mut rig = rig_with(config, 8);
    let start = Instant::now();
    let (status, buffer) = run(&mut rig, |q, ns, b| q.read(ns, 0, 1, b, 1));
    assert_eq!(status, Status::SUCCESS);
    assert!(
        start.elapsed() >= Duration::from_millis(20),
        "completed before its latency"
    );
    rig.pool.give_back(buffer);
}

/// Submits a read of 8 blocks at `lba` and waits until the device holds it mid-transfer.
fn submit_held_read(rig: &mut Rig, lba: u64, tag: u64) {
    rig.sim.inject(Fault::HoldCommand {
        admin: false,
        opcode: nvm_opcode::READ,
        count: 1,
    });
    let buffer = rig.pool.take().unwrap();
    rig.qpair.read(&rig.ns, lba, 8, buffer, tag).unwrap();
    poll_until(
        Duration::from_secs(10),
        Duration::ZERO,
        || (rig.sim.stats().held == 1).then_some(()),
        || "the device never took the read".to_owned(),
    );
}

/// A reset from another thread while the device is still in the middle of a READ's transfer:
/// the READ's buffer comes back (with `LOST_IN_RESET`) only once the device finished its reset
/// (CSTS.RDY = 0), so what the owner then puts into it (socket data, in the target) is never
/// overwritten by the device completing that transfer late.
#[test]
fn a_reset_hands_buffers_back_only_after_the_device_stopped() {
    let mut rig = rig();
    let len = 8 * rig.ns.block_size as usize;
    write_read_back(&mut rig, 0, 8, 1);
    submit_held_read(&mut rig, 0, 2);
    let resets_before = rig.sim.stats().resets;
    let controller = rig.controller.clone();
    let resetter = std::thread::spawn(move || controller.reset());
    let socket_data = pattern(len, 2);
    let registers = rig.sim.registers().clone();
    let mut returned = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while returned.is_none() {
        assert!(Instant::now() < deadline, "the read never came back");
        let disabling = !registers.cc().en();
        rig.qpair.poll(usize::MAX, |mut done| {
            let device_resets = rig.sim.stats().resets;
            let mut buffer = done.buffer.take().expect("the buffer comes back");
            // What the target does with a buffer that came back: the next command's data.
            buffer.as_mut_slice()[..len].copy_from_slice(&socket_data);
            // The device finishes what it was doing at the worst moment it still may.
            rig.sim.release_held();
            returned = Some((done, device_resets, buffer));
        });
        if disabling {
            // Told to reset, the device finishes its transfer first (real devices do too).
            rig.sim.release_held();
        }
    }
    resetter.join().unwrap().expect("the reset succeeds");
    let (done, device_resets, buffer) = returned.unwrap();
    assert_eq!((done.tag, done.status), (2, LOST_IN_RESET));
    assert!(
        buffer.as_slice()[..len] == socket_data[..],
        "the device wrote into the buffer after it was handed back"
    );
    assert!(
        device_resets > resets_before,
        "the buffer came back before the device finished its reset (CSTS.RDY still 1)"
    );
    rig.pool.give_back(buffer);
    assert_eq!(rig.sim.stats().iommu_faults, 0);
    write_read_back(&mut rig, 16, 8, 3);
}

/// A device that does not stop when reset (CSTS.RDY stays 1): the controller is taken out of
/// service and the buffer of the command the device still holds never comes back; when the
/// device finally moves that data, the memory is still allocated and mapped (no IOMMU fault).
#[test]
fn a_device_that_does_not_stop_takes_the_controller_out_of_service_keeping_its_memory() {
    let mut rig = rig();
    submit_held_read(&mut rig, 0, 1);
    match rig.controller.reset() {
        Err(Error::Timeout { what, .. }) => assert_eq!(what, "controller disable (CSTS.RDY = 0)"),
        other => panic!("expected a disable timeout, got {other:?}"),
    }
    assert!(rig.controller.is_out_of_service());
    let handed_back = rig.qpair.poll(usize::MAX, |done| {
        panic!(
            "command {} was handed back while the device holds it",
            done.cid
        )
    });
    assert_eq!(handed_back, 0);
    let buffer = rig.pool.take().unwrap();
    let refused = rig.qpair.read(&rig.ns, 8, 1, buffer, 2).unwrap_err();
    assert_eq!(refused.error, SubmitError::OutOfService);
    rig.pool.give_back(refused.buffer.unwrap());
    match rig.controller.reset() {
        Err(Error::OutOfService { address }) => assert_eq!(address, "sim"),
        other => panic!("expected OutOfService, got {other:?}"),
    }
    let sim = rig.sim.clone();
    drop(rig);
    assert!(
        sim.mapped_bytes() > 0,
        "memory the device may still write was unmapped"
    );
    assert_eq!(sim.release_held(), 1, "the device still had the read");
    poll_until(
        Duration::from_secs(10),
        Duration::ZERO,
        || (sim.stats().resets == 1).then_some(()),
        || "the device never finished its reset".to_owned(),
    );
    assert_eq!(sim.stats().iommu_faults, 0);
}

/// The device sends a completion twice, the copy after the command's slot was taken by a new
/// command: the copy must not complete the new command (which is still being transferred); it
/// is counted and dropped, and the new command completes later with its own data and status.
#[test]
fn a_duplicate_completion_never_completes_the_command_that_reused_its_slot() {
    let mut rig = rig();
    let len = 8 * rig.ns.block_size as usize;
    write_read_back(&mut rig, 0, 8, 4);
    write_read_back(&mut rig, 8, 8, 5);
    rig.sim.inject(Fault::DuplicateCompletion {
        admin: false,
        opcode: nvm_opcode::READ,
        count: 1,
    });
    let (status, buffer) = run(&mut rig, |q, ns, b| q.read(ns, 0, 8, b, 1));
    assert_eq!(status, Status::SUCCESS);
    assert!(buffer.as_slice()[..len] == pattern(len, 4)[..]);
    rig.pool.give_back(buffer);
    // Fetching the second read (held mid-transfer) sends the first one's completion again, in
    // the same step of the device.
    submit_held_read(&mut rig, 8, 2);
    assert_eq!(rig.sim.stats().duplicate_completions, 1);
    rig.qpair.poll(usize::MAX, |done| {
        panic!(
            "command {} (tag {}) completed with {} by a stale completion while the device \
             still held it",
            done.cid, done.tag, done.status
        )
    });
    assert_eq!(rig.qpair.stale_completions(), 1);
    assert_eq!(rig.sim.release_held(), 1);
    let done = wait_one(&mut rig.qpair);
    assert_eq!((done.tag, done.status), (2, Status::SUCCESS));
    let buffer = done.buffer.expect("the buffer comes back");
    assert!(
        buffer.as_slice()[..len] == pattern(len, 5)[..],
        "the second read's data"
    );
    rig.pool.give_back(buffer);
}

/// The simulated device reaching memory while the driver unmaps and frees it: every access
/// either completes on memory that is still alive or is counted as an IOMMU fault; none touches
/// freed memory (which AddressSanitizer or a segfault would show: `make asan`).
#[test]
fn a_device_access_racing_an_unmap_is_a_fault_or_reaches_live_memory() {
    const LEN: usize = 64 << 10;
    let iommu = Arc::new(SimIommu::default());
    let space = DmaSpace::new(
        iommu.clone(),
        MemoryKind::Anonymous,
        std::iter::once(0..1u64 << 48).collect(),
    );
    for round in 0..64u8 {
        let region = space.allocate(LEN).unwrap();
        let iova = region.iova();
        region.memory().write(0, &[round; LEN]);
        let accesses = AtomicU64::new(0);
        let faults_before = iommu.faults();
        std::thread::scope(|scope| {
            let device = scope.spawn(|| {
                let mut seen = vec![0u8; LEN];
                // A device transfer both ways: read the whole range, write it back.
                while iommu
                    .access(iova, LEN, |memory| {
                        memory.copy_to(&mut seen[..]);
                        memory.copy_from(&seen[..]);
                    })
                    .is_some()
                {
                    assert!(
                        seen.iter().all(|&b| b == round),
                        "memory changed under the device"
                    );
                    accesses.fetch_add(1, Ordering::Release);
                }
            });
            while accesses.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            // Unmapped, then freed, while the device is in the middle of its accesses.
            drop(region);
            device.join().unwrap();
        });
        assert_eq!(
            iommu.faults(),
            faults_before + 1,
            "the first access after the unmap, and only it, is a fault"
        );
    }
    assert_eq!(iommu.mapped_bytes(), 0);
}
