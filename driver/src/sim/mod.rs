//! A simulated NVMe controller: a register file in ordinary memory, admin and I/O queue
//! processing, and namespaces backed by RAM. It reads and writes the very queue memory and PRP
//! lists the driver builds, through an IOMMU that only knows what the driver mapped, so phase
//! tags, wrap-around, doorbells, PRP lists and unmap ordering are all really exercised.
//!
//! It runs on its own thread, like hardware, or is stepped by hand ([`SimController::pause`],
//! [`SimController::step`]) for deterministic tests and for measuring the driver alone.

#![forbid(unsafe_code)]

mod admin;
mod device;
mod io;
mod iommu;

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::device::RemovalEvent;
use crate::dma::{DmaSpace, MemoryKind};
use crate::mmio::Mmio;
use crate::NvmeDevice;
use vfnvme_spec::regs::{self, Vs};
use vfnvme_spec::Status;

pub use iommu::SimIommu;

use device::DeviceState;

/// BAR0 of the simulated controller: registers plus doorbells for up to 1024 queues.
const BAR_SIZE: usize = regs::DOORBELL_BASE + 1024 * 2 * 4 * 4;

/// The NVMe version the simulated controller reports (VS and Identify Controller VER): 1.4.0.
const VERSION: Vs = Vs::of(1, 4);

/// The simulated IOMMU accepts any IOVA below this (48 bits, like most real ones).
const SIM_IOVA_END: u64 = 1 << 48;

/// A namespace of the simulated controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNamespace {
    pub nsid: u32,
    pub blocks: u64,
    pub block_size: u32,
}

/// What the simulated controller looks like.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub namespaces: Vec<SimNamespace>,
    /// Entries per queue the controller accepts (CAP.MQES + 1).
    pub max_queue_entries: u32,
    /// Maximum Data Transfer Size, as a power of two of 4 KiB pages (0: no limit).
    pub mdts: u8,
    /// I/O queue pairs the controller grants at most.
    pub io_queues: u16,
    /// Time from fetching a command to posting its completion.
    pub latency: Duration,
    /// CAP.DSTRD: doorbells are `4 << dstrd` bytes apart.
    pub doorbell_stride_shift: u8,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            serial: "VFNVME-SIM-0001".into(),
            model: "vfnvme simulated controller".into(),
            firmware: "1.0".into(),
            namespaces: vec![SimNamespace {
                nsid: 1,
                blocks: 16384,
                block_size: 512,
            }],
            max_queue_entries: 1024,
            mdts: 5,
            io_queues: 16,
            latency: Duration::ZERO,
            doorbell_stride_shift: 0,
        }
    }
}

/// Misbehaviour to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next `count` commands with `opcode` (on the admin queue if `admin`, else on any I/O
    /// queue) complete with `status`.
    FailCommand {
        admin: bool,
        opcode: u8,
        status: Status,
        count: u32,
    },
    /// The next `count` matching commands are fetched but never complete, until aborted or the
    /// controller is reset.
    LoseCompletion { admin: bool, opcode: u8, count: u32 },
    /// Abort commands report that they aborted nothing.
    IgnoreAbort,
    /// CSTS.CFS: the controller stops processing until it is disabled.
    Fatal,
}

/// Counters for assertions in tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Commands fetched from any submission queue.
    pub commands: u64,
    /// Device accesses to IOVAs that were not mapped: each one is a driver bug (a use after
    /// unmap, or a bad PRP).
    pub iommu_faults: u64,
    /// I/O queue pairs that exist on the device now.
    pub io_queues: u16,
    /// Commands fetched whose completion has not been posted.
    pub in_flight: usize,
}

struct Shared {
    bar: Mmio,
    iommu: Arc<SimIommu>,
    state: Mutex<DeviceState>,
    stop: AtomicBool,
    paused: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn step(&self) -> bool {
        self.lock().step(&self.bar, &self.iommu)
    }
}

/// The simulated controller, usable wherever a real one is (it is an [`NvmeDevice`]).
pub struct SimController {
    shared: Arc<Shared>,
    dma: DmaSpace,
    removal: RemovalEvent,
    worker: Option<JoinHandle<()>>,
}

impl SimController {
    /// Creates the controller and starts its processing thread.
    pub fn new(config: SimConfig) -> std::io::Result<Arc<Self>> {
        let bar = Mmio::anonymous(BAR_SIZE)?;
        let iommu = Arc::new(SimIommu::default());
        let state = DeviceState::new(config, &bar)?;
        let shared = Arc::new(Shared {
            bar,
            iommu: Arc::clone(&iommu),
            state: Mutex::new(state),
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        });
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("nvme-sim".into())
            .spawn(move || run(&worker_shared))?;
        Ok(Arc::new(Self {
            shared,
            dma: DmaSpace::new(
                iommu,
                MemoryKind::Anonymous,
                std::iter::once(0..SIM_IOVA_END).collect(),
            ),
            removal: RemovalEvent::new()?,
            worker: Some(worker),
        }))
    }

    /// Stops the processing thread from touching the device: from now on only [`Self::step`]
    /// does. Returns once the thread is idle.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        // The thread steps only while holding the state lock; taking it once means any step it
        // had begun before seeing the flag is over.
        drop(self.shared.lock());
    }

    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Processes everything that is due: register changes, new commands, completions.
    /// Returns whether there was anything to do.
    pub fn step(&self) -> bool {
        self.shared.step()
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.lock().inject(fault, &self.shared.bar);
    }

    pub fn stats(&self) -> SimStats {
        let mut stats = self.shared.lock().stats();
        stats.iommu_faults = self.shared.iommu.faults();
        stats
    }

    /// Bytes currently mapped for DMA, to check that teardown unmapped everything.
    pub fn mapped_bytes(&self) -> usize {
        self.shared.iommu.mapped_bytes()
    }

    /// Copies `out.len()` bytes of namespace `nsid` starting at byte `offset` straight from the
    /// medium, bypassing queues (for checking what the driver wrote).
    pub fn read_medium(&self, nsid: u32, offset: u64, out: &mut [u8]) -> bool {
        self.shared.lock().read_medium(nsid, offset, out)
    }
}

impl NvmeDevice for SimController {
    fn address(&self) -> &str {
        "sim"
    }

    fn registers(&self) -> &Mmio {
        &self.shared.bar
    }

    fn dma(&self) -> &DmaSpace {
        &self.dma
    }

    fn removal_event(&self) -> BorrowedFd<'_> {
        self.removal.fd()
    }

    fn request_removal(&self) {
        self.removal.signal();
    }

    fn prepare_for_removal(&self) {}
}

impl Drop for SimController {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                log::error!("the simulated controller's thread panicked");
            }
        }
    }
}

/// The processing thread: steps while there is work, backs off when idle so that many
/// simulated controllers in parallel tests do not starve the machine.
fn run(shared: &Shared) {
    let mut idle_rounds = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let busy = !shared.paused.load(Ordering::Relaxed) && shared.step();
        if busy {
            idle_rounds = 0;
            continue;
        }
        idle_rounds = idle_rounds.saturating_add(1);
        match idle_rounds {
            0..=256 => std::hint::spin_loop(),
            257..=4096 => std::thread::yield_now(),
            _ => std::thread::sleep(Duration::from_micros(50)),
        }
    }
}
