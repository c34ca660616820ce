//! A simulated NVMe controller: a register file in ordinary memory, admin and I/O queue
//! processing, and namespaces backed by RAM. It reads and writes the very queue memory and PRP
//! lists the driver builds, through an IOMMU that only knows what the driver mapped, so phase
//! tags, wrap-around, doorbells, PRP lists and unmap ordering are all really exercised.
//!
//! It runs on its own thread, like hardware, or is stepped by hand ([`SimController::pause`],
//! [`SimController::step`]) for deterministic tests and for measuring the driver alone.

#![forbid(unsafe_code)]

mod admin;
mod config;
mod device;
mod fetch;
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

use config::BAR_SIZE;
pub use config::{Fault, SimConfig, SimNamespace, SimStats};
pub use iommu::SimIommu;

use device::DeviceState;

/// The simulated IOMMU accepts any IOVA below this (48 bits, like most real ones).
const SIM_IOVA_END: u64 = 1 << 48;

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

    /// Lets every command held by [`Fault::HoldCommand`] move its data and complete, now: the
    /// device finishing a transfer at the worst moment it may. Returns how many there were.
    pub fn release_held(&self) -> usize {
        self.shared
            .lock()
            .release_held(&self.shared.bar, &self.shared.iommu)
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
