//! What namespaces are backed by, and the per-poll-group queues that reach them.
//!
//! A [`Drive`] is opened once for the whole target: a controller bound to vfio-pci, or a
//! [`RamDisk`]. Each poll group then owns one [`BackendQueue`] per drive: for a controller its own
//! I/O queue pair and DMA buffer pool, for RAM a buffer pool and a queue of completions, so the
//! I/O path is the same for both and takes no lock.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use vfnvme_driver::dma::{BufferPool, DmaBuffer, DmaSpace};
use vfnvme_driver::queue::{Completed, Rejected, SubmitError};
use vfnvme_driver::ram::RamDisk;
use vfnvme_driver::vfio::VfioNvme;
use vfnvme_driver::{Controller, ControllerOptions, Namespace, NvmeDevice};
use vfnvme_spec::Command;

/// DMA buffer memory one poll group sets aside per drive.
const POOL_BUDGET: usize = 16 << 20;
/// Buffers per poll group and drive, whatever their size.
const MIN_POOL_BUFFERS: usize = 16;
/// How long a drive may take for one command before it is aborted (then reset).
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A drive whose namespaces the target exports.
pub enum Drive {
    Nvme(Controller),
    Ram(RamMemory),
}

/// A RAM drive: its disk, and host-only memory for buffers (RAM needs no IOMMU, but shares the
/// buffer type with real drives).
pub struct RamMemory {
    pub disk: Arc<RamDisk>,
    space: DmaSpace,
}

impl Drive {
    /// Opens the vfio-bound controller at `address`.
    pub fn open_pci(address: &str) -> vfnvme_driver::Result<Self> {
        let device = VfioNvme::open(address)?;
        Ok(Self::Nvme(Controller::new(
            device,
            ControllerOptions::default(),
        )?))
    }

    /// A simulated NVMe controller with one namespace: the full driver path without a drive.
    /// `metadata_size` bytes of metadata per block in its LBA format (0: none); its Get Log
    /// Page takes `log_page_latency` more than its other commands.
    #[cfg(feature = "sim")]
    pub fn simulated(
        blocks: u64,
        block_size: u32,
        latency: std::time::Duration,
        metadata_size: u16,
        log_page_latency: std::time::Duration,
    ) -> vfnvme_driver::Result<Self> {
        use vfnvme_driver::sim::{SimConfig, SimController, SimNamespace};
        use vfnvme_spec::identify::NamespaceIds;

        let unsupported = |what: String| vfnvme_driver::Error::Unsupported {
            address: "sim".into(),
            what,
        };
        // Its medium is new at each start, so is its identity (as a RAM namespace's).
        let nguid = crate::subsystem::random_id()
            .map_err(|e| unsupported(format!("cannot draw a random NGUID: {e}")))?;
        let config = SimConfig {
            namespaces: vec![SimNamespace {
                nsid: 1,
                blocks,
                block_size,
                ids: NamespaceIds {
                    nguid: Some(nguid),
                    ..NamespaceIds::default()
                },
            }],
            io_queues: 64,
            latency,
            log_page_latency,
            metadata_size,
            ..SimConfig::default()
        };
        let device = SimController::new(config)
            .map_err(|e| unsupported(format!("cannot start the simulated controller: {e}")))?;
        Ok(Self::Nvme(Controller::new(
            device,
            ControllerOptions::default(),
        )?))
    }

    /// Without the simulator built in, a `sim_mib` namespace cannot be served.
    #[cfg(not(feature = "sim"))]
    pub fn simulated(
        _blocks: u64,
        _block_size: u32,
        _latency: std::time::Duration,
        _metadata_size: u16,
        _log_page_latency: std::time::Duration,
    ) -> vfnvme_driver::Result<Self> {
        Err(vfnvme_driver::Error::Unsupported {
            address: "sim".into(),
            what: "sim_mib namespaces need the simulated controller, which this vfnvme was \
                   built without (enable the `sim` feature of vfnvme-target)"
                .into(),
        })
    }

    /// A RAM drive of `blocks` blocks. Its buffers are plain memory: no device reaches them.
    pub fn ram(blocks: u64, block_size: u32) -> std::io::Result<Self> {
        Ok(Self::Ram(RamMemory {
            disk: Arc::new(RamDisk::new(blocks, block_size)?),
            space: DmaSpace::host_only(),
        }))
    }

    /// The largest transfer one command may carry.
    pub fn max_transfer(&self) -> usize {
        match self {
            Self::Nvme(controller) => controller.max_transfer(),
            Self::Ram(_) => crate::subsystem::RAM_MAX_IO_SIZE as usize,
        }
    }

    fn device(&self) -> Option<&Arc<dyn NvmeDevice>> {
        match self {
            Self::Nvme(controller) => Some(controller.device()),
            Self::Ram(_) => None,
        }
    }

    fn dma(&self) -> &DmaSpace {
        match self {
            Self::Nvme(controller) => controller.device().dma(),
            Self::Ram(ram) => &ram.space,
        }
    }

    /// A queue for one poll group: `depth` commands in flight, buffers of `buffer_size` bytes
    /// (as many as fit `POOL_BUDGET`, at least `MIN_POOL_BUFFERS`, at most `depth`).
    pub fn open_queue(
        &self,
        depth: u16,
        buffer_size: usize,
    ) -> vfnvme_driver::Result<BackendQueue> {
        // One buffer per command the queue can hold, within a memory budget: with large
        // transfers, commands beyond it wait for a buffer rather than pin more hugepages.
        let count = (POOL_BUDGET / buffer_size)
            .max(MIN_POOL_BUFFERS)
            .min(usize::from(depth));
        let pool = BufferPool::new(self.dma(), buffer_size, count)?;
        Ok(match self {
            Self::Nvme(controller) => {
                let mut qpair = controller.create_io_qpair(depth.saturating_add(1))?;
                // The poll group polls every round, after reading its sockets: one SQ doorbell
                // per round for the commands those brought.
                qpair.batch_doorbells();
                qpair.register_pool(&pool);
                BackendQueue::Nvme {
                    qpair: Some(Box::new(qpair)),
                    pool,
                }
            }
            Self::Ram(ram) => BackendQueue::Ram {
                disk: Arc::clone(&ram.disk),
                completed: VecDeque::with_capacity(usize::from(depth)),
                pool,
            },
        })
    }
}

/// Refuses a namespace whose blocks carry metadata or protection information: the drive would
/// move more bytes per block than the PRPs of a command's buffer describe. The error says how
/// to reformat it.
pub fn check_exportable(address: &str, namespace: &Namespace) -> Result<(), String> {
    let identify = &namespace.identify;
    let index = identify.formatted_lba_index();
    let metadata = identify.lbaf[index].ms.get();
    let protection = identify.dps & 0x7;
    if metadata == 0 && protection == 0 {
        return Ok(());
    }
    let nsid = namespace.nsid;
    let what = if metadata == 0 {
        format!("with end-to-end protection information (type {protection})")
    } else {
        let layout = if identify.flbas & (1 << 4) != 0 {
            "extended"
        } else {
            "separate buffer"
        };
        let protection = match protection {
            0 => String::new(),
            kind => format!(", protection information type {kind}"),
        };
        format!(
            "with {metadata} bytes of metadata per block (LBA format {index}, {layout}{protection})"
        )
    };
    let plain = identify
        .lba_formats()
        .iter()
        .enumerate()
        .find(|(_, format)| format.ms.get() == 0 && format.lbads >= 9);
    let remedy = match plain {
        Some((plain, format)) => format!(
            "reformat it with `nvme format /dev/nvmeXnY --namespace-id={nsid} --lbaf={plain}` \
             ({}-byte blocks, no metadata{}) while the drive is bound to the nvme driver, then \
             bind it to vfio-pci again",
            1u64 << format.lbads,
            if protection != 0 { "; add --pi=0" } else { "" },
        ),
        None => "the drive offers no LBA format without metadata: export another drive".into(),
    };
    Err(format!(
        "{address} namespace {nsid} is formatted {what}; vfnvme exports namespaces without \
         metadata: {remedy}"
    ))
}

/// A drive as the target holds it: present until it is removed (hot removal, an operator's
/// request, or `nvmf_subsystem_remove_ns` of its last namespace), then released once every
/// poll group has let go of its queue to it.
pub struct DriveSlot {
    name: String,
    /// The size of its buffers: the most data one command to it can carry.
    buffer_size: usize,
    drive: Mutex<Option<Drive>>,
    /// Signalled (with `holders_changed`) when a poll group lets go of its queue; apart from
    /// `drive`, which an admin command to the drive may hold for a while.
    let_go: Condvar,
    holders_changed: Mutex<()>,
    /// A duplicate of the device's removal eventfd, for the acceptor to watch; closed with the
    /// drive.
    removal: Mutex<Option<File>>,
    removed: AtomicBool,
    /// Poll groups still holding a queue to the drive.
    holders: AtomicUsize,
}

impl DriveSlot {
    pub fn new(name: String, drive: Drive, buffer_size: usize) -> std::io::Result<Self> {
        let removal = match drive.device() {
            Some(device) => Some(File::from(device.removal_event().try_clone_to_owned()?)),
            None => None,
        };
        Ok(Self {
            name,
            buffer_size,
            drive: Mutex::new(Some(drive)),
            let_go: Condvar::new(),
            holders_changed: Mutex::new(()),
            removal: Mutex::new(removal),
            removed: AtomicBool::new(false),
            holders: AtomicUsize::new(0),
        })
    }

    /// The PCI address, or the name of a RAM or simulated drive.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most data one command to the drive can carry (its buffers' size).
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// The drive, unless it was released. The admin path only: this takes a lock.
    pub fn lock(&self) -> MutexGuard<'_, Option<Drive>> {
        self.drive.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The eventfd that says the drive is to be given up (none for RAM, none once released).
    pub fn removal_event(&self) -> MutexGuard<'_, Option<File>> {
        self.removal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Consumes a removal signal; returns whether this is the first one.
    pub fn take_removal_signal(&self) -> bool {
        if let Some(mut event) = self.removal_event().as_ref() {
            let mut counter = [0u8; 8];
            let _ = event.read(&mut counter);
        }
        if let Some(device) = self.lock().as_ref().and_then(Drive::device) {
            device.prepare_for_removal();
        }
        !self.removed.swap(true, Ordering::AcqRel)
    }

    /// Asks for the drive to be given up, as the kernel does on hot removal.
    pub fn request_removal(&self) {
        if let Some(device) = self.lock().as_ref().and_then(Drive::device) {
            device.request_removal();
        }
    }

    /// The target gives the drive up while it still works (its last namespace was removed):
    /// new commands to it fail, and the poll groups let go of their queues once theirs
    /// completed, deleting them on the drive as at shutdown.
    pub fn retire(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Whether the drive is being (or was) given up. One atomic load: the I/O path asks.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// A poll group opened a queue to the drive.
    pub fn hold(&self) {
        self.holders.fetch_add(1, Ordering::AcqRel);
    }

    /// A poll group dropped its queue to the drive.
    pub fn let_go(&self) {
        let _changed = self
            .holders_changed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.holders.fetch_sub(1, Ordering::AcqRel);
        self.let_go.notify_all();
    }

    /// Once removed and no poll group holds a queue: drops the drive (the controller shuts
    /// down, DMA memory is unmapped, the device is closed). Returns whether it did.
    pub fn release_if_unused(&self) -> bool {
        if !self.is_removed() || self.holders.load(Ordering::Acquire) != 0 {
            return false;
        }
        let drive = self.lock().take();
        self.removal_event().take();
        drive.is_some()
    }

    /// Waits until no poll group holds a queue to the drive, at most until `deadline`; returns
    /// whether none does.
    pub fn wait_until_unused(&self, deadline: Instant) -> bool {
        let mut guard = self
            .holders_changed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            if self.holders.load(Ordering::Acquire) == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .let_go
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// One poll group's way to a drive. Field order is drop order: the queue pair (which drains and
/// deletes its queues) before the pool.
pub enum BackendQueue {
    Nvme {
        /// Boxed: a queue pair is large, and the RAM variant should not pay for it. Always
        /// present but while the queue is dropped (its `Drop` shuts it down).
        qpair: Option<Box<vfnvme_driver::IoQueuePair>>,
        pool: BufferPool,
    },
    Ram {
        disk: Arc<RamDisk>,
        /// Commands executed at submission, handed out by the next poll.
        completed: VecDeque<Completed>,
        pool: BufferPool,
    },
    /// The drive was given up: its queue is gone.
    Gone,
}

impl Drop for BackendQueue {
    /// A queue pair is shut down with its pool at hand, so that the buffers of commands still
    /// in flight (completed, or aborted when the SQ is deleted) go back before the pool goes.
    fn drop(&mut self) {
        if let Self::Nvme { qpair, pool } = self {
            if let Some(qpair) = qpair.take() {
                qpair.shut_down(|done| {
                    if let Some(buffer) = done.buffer {
                        pool.give_back(buffer);
                    }
                });
            }
        }
    }
}

impl BackendQueue {
    pub fn take_buffer(&mut self) -> Option<DmaBuffer> {
        match self {
            Self::Nvme { pool, .. } | Self::Ram { pool, .. } => pool.take(),
            Self::Gone => None,
        }
    }

    /// Returns a buffer to its pool. A buffer of a queue that is gone has nowhere to go: its
    /// pool kept the memory when it was dropped without it.
    pub fn give_back(&mut self, buffer: DmaBuffer) {
        if let Self::Nvme { pool, .. } | Self::Ram { pool, .. } = self {
            pool.give_back(buffer);
        }
    }

    /// Buffers of this queue's pool in use (in a request, or on the drive).
    pub fn buffers_lent(&self) -> usize {
        match self {
            Self::Nvme { pool, .. } | Self::Ram { pool, .. } => pool.lent(),
            Self::Gone => 0,
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Gone)
    }

    /// Commands submitted and not yet polled.
    pub fn outstanding(&self) -> usize {
        match self {
            Self::Nvme { qpair, .. } => qpair.as_ref().map_or(0, |q| q.outstanding()),
            Self::Ram { completed, .. } => completed.len(),
            Self::Gone => 0,
        }
    }

    /// Submits `command` (already addressed to the drive's namespace) with the first `len`
    /// bytes of `buffer` as its data.
    pub fn submit(
        &mut self,
        command: Command,
        data: Option<(DmaBuffer, usize)>,
        tag: u64,
    ) -> Result<(), Rejected> {
        match self {
            Self::Nvme {
                qpair: Some(qpair), ..
            } => qpair.submit(command, data, tag).map(|_| ()),
            Self::Ram {
                disk, completed, ..
            } => {
                if completed.len() == completed.capacity() {
                    return Err(Rejected {
                        error: SubmitError::QueueFull,
                        buffer: data.map(|(buffer, _)| buffer),
                    });
                }
                let (status, buffer) = match data {
                    Some((mut buffer, len)) => {
                        let status = disk.execute(&command, &mut buffer.as_mut_slice()[..len]);
                        (status, Some(buffer))
                    }
                    None => (disk.execute(&command, &mut []), None),
                };
                completed.push_back(Completed {
                    tag,
                    cid: 0,
                    status,
                    result: 0,
                    buffer,
                });
                Ok(())
            }
            Self::Nvme { qpair: None, .. } | Self::Gone => Err(Rejected {
                error: SubmitError::ControllerReset,
                buffer: data.map(|(buffer, _)| buffer),
            }),
        }
    }

    /// Moves up to `max` completions into `out`.
    pub fn poll(&mut self, max: usize, out: &mut Vec<Completed>) -> usize {
        match self {
            Self::Nvme {
                qpair: Some(qpair), ..
            } => qpair.poll(max, |done| out.push(done)),
            Self::Ram { completed, .. } => {
                let count = completed.len().min(max);
                out.extend(completed.drain(..count));
                count
            }
            Self::Nvme { qpair: None, .. } | Self::Gone => 0,
        }
    }

    /// Aborts commands a drive has held too long and resets it if that does not help.
    pub fn check_timeouts(&mut self) {
        if let Self::Nvme {
            qpair: Some(qpair), ..
        } = self
        {
            if let Err(error) = qpair.check_timeouts(COMMAND_TIMEOUT) {
                log::error!("{}: {error}", qpair.controller().address());
            }
        }
    }
}
