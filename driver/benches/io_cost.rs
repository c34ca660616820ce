//! The driver's software cost per 4 KiB read: submit (SQE, PRP, doorbell) plus completion
//! (phase tag, command id, CQ doorbell), at queue depth 32 on one core.
//!
//! The simulated controller is paused and stepped on the same thread between batches, so the
//! run is deterministic and uses one core; the time spent inside the simulator (fetching,
//! copying 4 KiB, posting) is measured separately and subtracted, leaving the driver's share.

use std::time::{Duration, Instant};

use vfnvme_driver::dma::BufferPool;
use vfnvme_driver::sim::{SimConfig, SimController, SimNamespace};
use vfnvme_driver::{Controller, ControllerOptions, NvmeDevice};
use vfnvme_spec::Status;

const DEPTH: usize = 32;
const IOS_PER_RUN: u64 = 2_000_000;
const RUNS: usize = 7;
const BLOCK_SIZE: u32 = 4096;

struct Run {
    total: Duration,
    device: Duration,
}

fn main() {
    let config = SimConfig {
        namespaces: vec![SimNamespace {
            nsid: 1,
            blocks: 4096,
            block_size: BLOCK_SIZE,
            ..SimNamespace::default()
        }],
        ..SimConfig::default()
    };
    let sim = SimController::new(config).expect("simulator");
    let controller = Controller::new(sim.clone(), ControllerOptions::default()).expect("bring-up");
    let ns = controller.namespace(1).expect("namespace 1");
    let mut qpair = controller
        .create_io_qpair(DEPTH as u16 + 1)
        .expect("queue pair");
    let mut pool = BufferPool::new(sim.dma(), BLOCK_SIZE as usize, DEPTH).expect("pool");
    qpair.register_pool(&pool);
    let mut buffers: Vec<_> = (0..DEPTH).map(|_| pool.take().expect("buffer")).collect();
    sim.pause();

    let mut runs: Vec<Run> = (0..RUNS)
        .map(|_| {
            let mut submitted = 0u64;
            let mut completed = 0u64;
            let mut device = Duration::ZERO;
            let mut failures = 0u64;
            let start = Instant::now();
            while completed < IOS_PER_RUN {
                while submitted < IOS_PER_RUN {
                    let Some(buffer) = buffers.pop() else { break };
                    let lba = submitted % ns.blocks;
                    qpair
                        .read(&ns, lba, 1, buffer, submitted)
                        .expect("queue has room");
                    submitted += 1;
                }
                let device_start = Instant::now();
                sim.step();
                device += device_start.elapsed();
                completed += qpair.poll(usize::MAX, |done| {
                    failures += u64::from(done.status != Status::SUCCESS);
                    buffers.extend(done.buffer);
                }) as u64;
            }
            assert_eq!(failures, 0, "reads failed");
            Run {
                total: start.elapsed(),
                device,
            }
        })
        .collect();

    runs.sort_by_key(|run| run.total - run.device);
    let per_io = |d: Duration| d.as_nanos() as f64 / IOS_PER_RUN as f64;
    for run in &runs {
        println!(
            "run: total {:.1} ns/IO, simulated device {:.1} ns/IO, driver {:.1} ns/IO",
            per_io(run.total),
            per_io(run.device),
            per_io(run.total - run.device)
        );
    }
    let median = &runs[RUNS / 2];
    println!(
        "driver cost per 4 KiB read at QD {DEPTH}, one core, median of {RUNS} runs of {IOS_PER_RUN} I/Os: {:.1} ns",
        per_io(median.total - median.device)
    );
    for buffer in buffers {
        pool.give_back(buffer);
    }
    sim.resume();
}
