//! Controller bring-up, admin commands, namespaces, and I/O queue pairs.
//!
//! Ownership expresses teardown: an [`IoQueuePair`] holds its controller alive, and its `Drop`
//! first waits for its commands, then deletes its queues on the device (or resets the
//! controller), releases its queue id, and only then lets its ring memory go. The controller is
//! shut down (CC.SHN) when its last owner is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::device::NvmeDevice;
use crate::dma::{BufferPool, DmaBuffer, DmaRegion};
use crate::error::{Error, Result};
use crate::mmio::Mmio;
use crate::queue::{Completed, DataPointer, QueuePair, Rejected, SubmitError, MAX_PRP_TRANSFER};
use vfnvme_spec::identify::{self, IdentifyController, IdentifyNamespace};
use vfnvme_spec::regs::{self, cc, csts, Cap};
use vfnvme_spec::status::generic;
use vfnvme_spec::{admin_opcode, cns, feature, nvm_opcode, Command, DsmRange, Status, PAGE_SIZE};

/// Tunables of a controller.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Admin queue entries.
    pub admin_entries: u16,
    /// I/O queue pairs asked for with Set Features Number of Queues.
    pub io_queues: u16,
    /// How long an admin command may take before the controller is reset.
    pub admin_timeout: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            admin_entries: 32,
            io_queues: 64,
            admin_timeout: Duration::from_secs(10),
        }
    }
}

/// Data moved by an admin command, through the controller's bounce buffer.
pub enum AdminData<'a> {
    None,
    /// Controller to host (Identify, Get Log Page, ...).
    FromDevice(&'a mut [u8]),
    /// Host to controller (Set Features with a data buffer, ...).
    ToDevice(&'a [u8]),
}

/// An active namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub nsid: u32,
    pub block_size: u32,
    pub blocks: u64,
    pub identify: IdentifyNamespace,
}

/// Status given to commands lost in a controller reset.
pub const LOST_IN_RESET: Status = Status::generic(generic::SQ_DELETION_ABORT);

/// The largest admin data transfer (Identify and log pages are 4 KiB; a few logs are longer).
const ADMIN_BOUNCE_BYTES: usize = 64 * 1024;

struct AdminQueue {
    queue: QueuePair,
    bounce: DmaRegion,
}

struct Shared {
    address: String,
    cap: Cap,
    options: ControllerOptions,
    identify: IdentifyController,
    io_queues_granted: u16,
    max_transfer: usize,
    /// Bumped by every reset; queue pairs compare it to notice that their queues are gone.
    generation: AtomicU64,
    /// Which I/O queue ids are taken, updated synchronously as queue pairs come and go.
    qids_in_use: Mutex<Vec<bool>>,
    admin: Mutex<AdminQueue>,
    registers: Mmio,
    device: Arc<dyn NvmeDevice>,
}

/// An initialised NVMe controller.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
}

impl Controller {
    /// Resets and enables the controller, identifies it and negotiates I/O queues.
    pub fn new(device: Arc<dyn NvmeDevice>, options: ControllerOptions) -> Result<Self> {
        let registers = device.registers().clone();
        let address = device.address().to_owned();
        let cap = Cap(registers.read64(regs::CAP));
        if !cap.nvm_command_set() {
            return Err(Error::Unsupported {
                address,
                what: "the controller does not support the NVM command set".into(),
            });
        }
        if cap.mpsmin_bytes() > PAGE_SIZE {
            return Err(Error::Unsupported {
                address,
                what: format!(
                    "the controller's smallest memory page is {} bytes; only 4 KiB is supported",
                    cap.mpsmin_bytes()
                ),
            });
        }
        let admin_entries = options
            .admin_entries
            .clamp(2, 4096)
            .min(cap.max_queue_entries().min(4096) as u16);
        let admin_queue = QueuePair::new(
            0,
            admin_entries,
            ADMIN_BOUNCE_BYTES,
            device.dma(),
            &registers,
            cap.doorbell_stride(),
        )?;
        let bounce = device.dma().allocate(ADMIN_BOUNCE_BYTES)?;
        let mut admin = AdminQueue {
            queue: admin_queue,
            bounce,
        };
        enable(&address, &registers, cap, &mut admin.queue)?;
        let context = AdminContext {
            address: &address,
            registers: &registers,
            timeout: options.admin_timeout,
        };
        let mut data = vec![0u8; identify::IDENTIFY_DATA_SIZE];
        let identify_command = Command {
            cdw10: u32::from(cns::CONTROLLER),
            ..Command::new(admin_opcode::IDENTIFY, 0)
        };
        context.execute(
            &mut admin,
            identify_command,
            AdminData::FromDevice(&mut data),
            "Identify Controller",
        )?;
        let identify = IdentifyController::from_bytes(&data).map_err(|e| Error::Malformed {
            address: address.clone(),
            what: "Identify Controller data",
            reason: e.to_string(),
        })?;
        let io_queues_granted = negotiate_queues(&context, &mut admin, options.io_queues)?;
        let max_transfer = identify
            .mdts_bytes(cap.mpsmin_bytes())
            .unwrap_or(MAX_PRP_TRANSFER)
            .min(MAX_PRP_TRANSFER);
        log::info!(
            "{address}: {} {} (fw {}), {} I/O queues, max transfer {} KiB",
            identify.model,
            identify.serial,
            identify.firmware,
            io_queues_granted,
            max_transfer / 1024
        );
        Ok(Self {
            shared: Arc::new(Shared {
                address,
                cap,
                identify,
                io_queues_granted,
                max_transfer,
                generation: AtomicU64::new(0),
                qids_in_use: Mutex::new(vec![false; usize::from(io_queues_granted) + 1]),
                admin: Mutex::new(admin),
                options,
                registers,
                device,
            }),
        })
    }

    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// The device this controller drives (its DMA space serves buffer pools).
    pub fn device(&self) -> &Arc<dyn NvmeDevice> {
        &self.shared.device
    }

    pub fn identify(&self) -> &IdentifyController {
        &self.shared.identify
    }

    pub fn capabilities(&self) -> Cap {
        self.shared.cap
    }

    /// The largest transfer of one command: MDTS, capped at what one PRP list describes.
    pub fn max_transfer(&self) -> usize {
        self.shared.max_transfer
    }

    pub fn io_queues_granted(&self) -> u16 {
        self.shared.io_queues_granted
    }

    /// Whether the controller reports a fatal error (CSTS.CFS).
    pub fn is_fatal(&self) -> bool {
        self.shared.registers.read32(regs::CSTS) & csts::CFS != 0
    }

    /// How many resets the controller went through.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Runs one admin command and waits for it; a command that never completes resets the
    /// controller. This is also the admin passthrough for arbitrary commands.
    pub fn admin(&self, command: Command, data: AdminData<'_>, name: &'static str) -> Result<u32> {
        let mut admin = self.shared.lock_admin();
        let result = self
            .shared
            .context()
            .execute(&mut admin, command, data, name);
        if matches!(result, Err(Error::Timeout { .. })) {
            drop(admin);
            log::warn!(
                "{}: {name} timed out; resetting the controller",
                self.address()
            );
            self.reset()?;
        }
        result
    }

    /// Every active namespace.
    pub fn namespaces(&self) -> Result<Vec<Namespace>> {
        let mut list = vec![0u8; identify::IDENTIFY_DATA_SIZE];
        let command = Command {
            cdw10: u32::from(cns::ACTIVE_NAMESPACE_LIST),
            ..Command::new(admin_opcode::IDENTIFY, 0)
        };
        self.admin(
            command,
            AdminData::FromDevice(&mut list),
            "Identify Active Namespace List",
        )?;
        identify::parse_active_namespace_list(&list)
            .into_iter()
            .map(|nsid| self.identify_namespace(nsid))
            .collect()
    }

    /// One namespace, or an error naming the active ones.
    pub fn namespace(&self, nsid: u32) -> Result<Namespace> {
        let namespaces = self.namespaces()?;
        namespaces
            .iter()
            .find(|ns| ns.nsid == nsid)
            .cloned()
            .ok_or_else(|| Error::NoSuchNamespace {
                address: self.address().to_owned(),
                nsid,
                active: namespaces.iter().map(|ns| ns.nsid).collect(),
            })
    }

    fn identify_namespace(&self, nsid: u32) -> Result<Namespace> {
        let mut data = vec![0u8; identify::IDENTIFY_DATA_SIZE];
        let command = Command {
            cdw10: u32::from(cns::NAMESPACE),
            ..Command::new(admin_opcode::IDENTIFY, nsid)
        };
        self.admin(
            command,
            AdminData::FromDevice(&mut data),
            "Identify Namespace",
        )?;
        let identify = IdentifyNamespace::from_bytes(&data).map_err(|e| Error::Malformed {
            address: self.address().to_owned(),
            what: "Identify Namespace data",
            reason: e.to_string(),
        })?;
        Ok(Namespace {
            nsid,
            block_size: identify.block_size(),
            blocks: identify.nsze.get(),
            identify,
        })
    }

    /// Asks the controller to abort command `cid` on queue `qid`. Returns whether it says it did.
    pub fn abort(&self, qid: u16, cid: u16) -> Result<bool> {
        let command = Command {
            cdw10: u32::from(qid) | (u32::from(cid) << 16),
            ..Command::new(admin_opcode::ABORT, 0)
        };
        let result = self.admin(command, AdminData::None, "Abort")?;
        Ok(result & 1 == 0)
    }

    /// Disables and re-enables the controller. Every I/O queue is gone afterwards; queue pairs
    /// notice on their next poll, complete what they had in flight with [`LOST_IN_RESET`] and
    /// create their queues again.
    pub fn reset(&self) -> Result<()> {
        let shared = &self.shared;
        let mut admin = shared.lock_admin();
        log::warn!("{}: resetting the controller", shared.address);
        // Announced first, so that queue pairs stop ringing doorbells of queues about to vanish.
        shared.generation.fetch_add(1, Ordering::AcqRel);
        admin
            .queue
            .reset_after_controller_reset(LOST_IN_RESET, |_| {});
        enable(
            &shared.address,
            &shared.registers,
            shared.cap,
            &mut admin.queue,
        )?;
        negotiate_queues(&shared.context(), &mut admin, shared.options.io_queues)?;
        Ok(())
    }

    /// Creates an I/O queue pair with up to `entries` entries (capped by CAP.MQES).
    pub fn create_io_qpair(&self, entries: u16) -> Result<IoQueuePair> {
        let shared = &self.shared;
        let entries = entries
            .max(2)
            .min(shared.cap.max_queue_entries().min(u32::from(u16::MAX)) as u16);
        let qid = shared.take_qid()?;
        let queue = QueuePair::new(
            qid,
            entries,
            shared.max_transfer,
            shared.device.dma(),
            &shared.registers,
            shared.cap.doorbell_stride(),
        );
        let queue = match queue {
            Ok(queue) => queue,
            Err(error) => {
                shared.release_qid(qid);
                return Err(error);
            }
        };
        let generation = self.generation();
        let mut qpair = IoQueuePair {
            queue,
            generation,
            live_on_device: false,
            closed: false,
            pools: Vec::new(),
            controller: self.clone(),
        };
        // On failure the queue pair's Drop releases the qid.
        qpair.create_on_device()?;
        Ok(qpair)
    }
}

impl Shared {
    fn lock_admin(&self) -> MutexGuard<'_, AdminQueue> {
        // A panic while holding the admin queue leaves it in a state a reset recovers from.
        self.admin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn context(&self) -> AdminContext<'_> {
        AdminContext {
            address: &self.address,
            registers: &self.registers,
            timeout: self.options.admin_timeout,
        }
    }

    fn take_qid(&self) -> Result<u16> {
        let mut qids = self.qids_in_use.lock().unwrap_or_else(|p| p.into_inner());
        let qid = qids
            .iter()
            .skip(1)
            .position(|used| !used)
            .map(|i| i + 1)
            .ok_or_else(|| Error::NoQueueLeft {
                address: self.address.clone(),
                granted: self.io_queues_granted,
            })?;
        qids[qid] = true;
        Ok(qid as u16)
    }

    fn release_qid(&self, qid: u16) {
        let mut qids = self.qids_in_use.lock().unwrap_or_else(|p| p.into_inner());
        qids[usize::from(qid)] = false;
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let registers = &self.registers;
        if registers.read32(regs::CSTS) & csts::RDY == 0 {
            return;
        }
        let config = registers.read32(regs::CC);
        registers.write32(regs::CC, (config & !cc::SHN_MASK) | cc::SHN_NORMAL);
        let timeout = Duration::from_millis(self.cap.timeout_ms().max(1000));
        let done = wait_for(timeout, || {
            registers.read32(regs::CSTS) & csts::SHST_MASK == csts::SHST_COMPLETE
        });
        if done {
            log::info!("{}: shut down", self.address);
        } else {
            log::warn!(
                "{}: shutdown did not complete within {timeout:?}",
                self.address
            );
        }
    }
}

/// What an admin command needs besides the queue.
struct AdminContext<'a> {
    address: &'a str,
    registers: &'a Mmio,
    timeout: Duration,
}

impl AdminContext<'_> {
    fn execute(
        &self,
        admin: &mut AdminQueue,
        command: Command,
        data: AdminData<'_>,
        name: &'static str,
    ) -> Result<u32> {
        let len = match &data {
            AdminData::None => 0,
            AdminData::FromDevice(buffer) => buffer.len(),
            AdminData::ToDevice(buffer) => buffer.len(),
        };
        if len > ADMIN_BOUNCE_BYTES {
            return Err(Error::Unsupported {
                address: self.address.to_owned(),
                what: format!(
                    "{name} moves {len} bytes; admin data is limited to {ADMIN_BOUNCE_BYTES}"
                ),
            });
        }
        if let AdminData::ToDevice(buffer) = &data {
            admin.bounce.write(0, buffer);
        }
        let pointer = (len > 0).then(|| DataPointer {
            iova: admin.bounce.iova(),
            len,
        });
        admin
            .queue
            .submit(command, pointer, None, 0)
            .map_err(|rejected| Error::Unsupported {
                address: self.address.to_owned(),
                what: format!("{name}: {}", rejected.error),
            })?;
        let mut outcome = None;
        let deadline = Instant::now() + self.timeout;
        loop {
            admin.queue.poll(usize::MAX, |done| outcome = Some(done));
            if let Some(done) = outcome {
                return self.finish(admin, done, data, name);
            }
            if self.registers.read32(regs::CSTS) & csts::CFS != 0 {
                return Err(Error::ControllerFatal {
                    address: self.address.to_owned(),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    address: self.address.to_owned(),
                    what: name,
                    timeout: self.timeout,
                });
            }
            pause();
        }
    }

    fn finish(
        &self,
        admin: &AdminQueue,
        done: Completed,
        data: AdminData<'_>,
        name: &'static str,
    ) -> Result<u32> {
        if !done.status.is_success() {
            return Err(Error::Command {
                address: self.address.to_owned(),
                command: name,
                status: done.status,
            });
        }
        if let AdminData::FromDevice(buffer) = data {
            admin.bounce.read(0, buffer);
        }
        Ok(done.result)
    }
}

/// Brings the controller from any state to enabled with the admin queue in `admin`.
fn enable(address: &str, registers: &Mmio, cap: Cap, admin: &mut QueuePair) -> Result<()> {
    let timeout = Duration::from_millis(cap.timeout_ms().max(500));
    if registers.read32(regs::CC) & cc::EN != 0 {
        registers.write32(regs::CC, registers.read32(regs::CC) & !cc::EN);
    }
    if !wait_for(timeout, || registers.read32(regs::CSTS) & csts::RDY == 0) {
        return Err(Error::Timeout {
            address: address.to_owned(),
            what: "controller disable (CSTS.RDY = 0)",
            timeout,
        });
    }
    let entries = u32::from(admin.entries()) - 1;
    registers.write32(regs::AQA, (entries << 16) | entries);
    registers.write64(regs::ASQ, admin.sq_iova());
    registers.write64(regs::ACQ, admin.cq_iova());
    let config = cc::EN
        | (6 << cc::IOSQES_SHIFT)
        | (4 << cc::IOCQES_SHIFT)
        | (0 << cc::MPS_SHIFT)
        | (0 << cc::CSS_SHIFT);
    registers.write32(regs::CC, config);
    let mut fatal = false;
    let ready = wait_for(timeout, || {
        let status = registers.read32(regs::CSTS);
        fatal = status & csts::CFS != 0;
        fatal || status & csts::RDY != 0
    });
    if fatal {
        return Err(Error::ControllerFatal {
            address: address.to_owned(),
        });
    }
    if !ready {
        return Err(Error::Timeout {
            address: address.to_owned(),
            what: "controller enable (CSTS.RDY = 1)",
            timeout,
        });
    }
    Ok(())
}

/// Set Features Number of Queues; returns how many I/O queue pairs the controller granted.
fn negotiate_queues(
    context: &AdminContext<'_>,
    admin: &mut AdminQueue,
    wanted: u16,
) -> Result<u16> {
    let wanted = u32::from(wanted.max(1) - 1);
    let command = Command {
        cdw10: u32::from(feature::NUMBER_OF_QUEUES),
        cdw11: wanted | (wanted << 16),
        ..Command::new(admin_opcode::SET_FEATURES, 0)
    };
    let result = context.execute(
        admin,
        command,
        AdminData::None,
        "Set Features (Number of Queues)",
    )?;
    let submission = (result & 0xffff) as u16;
    let completion = (result >> 16) as u16;
    Ok(submission.min(completion).saturating_add(1))
}

/// Polls `condition` until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        pause();
    }
}

/// Yields between polls of a slow (admin) operation.
fn pause() {
    std::thread::sleep(Duration::from_micros(20));
}

/// What [`IoQueuePair::check_timeouts`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeoutReport {
    pub aborts_sent: usize,
    pub controller_reset: bool,
}

/// An I/O submission/completion queue pair on the device, owned by one thread.
pub struct IoQueuePair {
    queue: QueuePair,
    generation: u64,
    live_on_device: bool,
    /// Removed from the device (or given up on) already.
    closed: bool,
    /// Buffer memory this queue pair's commands may point into, kept alive while it lives.
    pools: Vec<Arc<DmaRegion>>,
    controller: Controller,
}

impl IoQueuePair {
    pub fn qid(&self) -> u16 {
        self.queue.qid()
    }

    pub fn entries(&self) -> u16 {
        self.queue.entries()
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn max_transfer(&self) -> usize {
        self.queue.max_transfer()
    }

    pub fn outstanding(&self) -> usize {
        self.queue.outstanding()
    }

    pub fn free_slots(&self) -> usize {
        self.queue.free_slots()
    }

    /// Lets commands of this queue pair use buffers of `pool`; the pool's memory then stays
    /// mapped as long as this queue pair exists, whatever happens to the pool.
    pub fn register_pool(&mut self, pool: &BufferPool) {
        if !self
            .pools
            .iter()
            .any(|region| region.id() == pool.region().id())
        {
            self.pools.push(Arc::clone(pool.region()));
        }
    }

    fn data_pointer(&self, buffer: &DmaBuffer, len: usize) -> Result<DataPointer, SubmitError> {
        if !self
            .pools
            .iter()
            .any(|region| region.id() == buffer.region_id())
        {
            return Err(SubmitError::UnregisteredBuffer);
        }
        if len > buffer.len() {
            return Err(SubmitError::BufferTooSmall {
                len,
                buffer: buffer.len(),
            });
        }
        Ok(DataPointer {
            iova: buffer.iova(),
            len,
        })
    }

    /// Submits any I/O command, with the first `len` bytes of `buffer` as its data. The buffer
    /// comes back in the command's [`Completed`] (or in [`Rejected`]).
    pub fn submit(
        &mut self,
        command: Command,
        data: Option<(DmaBuffer, usize)>,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let (pointer, buffer) = match data {
            Some((buffer, len)) => match self.data_pointer(&buffer, len) {
                Ok(pointer) => (Some(pointer), Some(buffer)),
                Err(error) => {
                    return Err(Rejected {
                        error,
                        buffer: Some(buffer),
                    })
                }
            },
            None => (None, None),
        };
        if self.controller.shared.generation.load(Ordering::Acquire) != self.generation {
            return Err(Rejected {
                error: SubmitError::ControllerReset,
                buffer,
            });
        }
        self.queue.submit(command, pointer, buffer, tag)
    }

    pub fn read(
        &mut self,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        self.transfer(nvm_opcode::READ, ns, lba, blocks, buffer, tag)
    }

    pub fn write(
        &mut self,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        self.transfer(nvm_opcode::WRITE, ns, lba, blocks, buffer, tag)
    }

    fn transfer(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let command = Command::nvm_rw(opcode, ns.nsid, lba, blocks);
        let len = blocks as usize * ns.block_size as usize;
        self.submit(command, Some((buffer, len)), tag)
    }

    pub fn flush(&mut self, ns: &Namespace, tag: u64) -> Result<u16, Rejected> {
        self.submit(Command::new(nvm_opcode::FLUSH, ns.nsid), None, tag)
    }

    pub fn write_zeroes(
        &mut self,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let command = Command::nvm_rw(nvm_opcode::WRITE_ZEROES, ns.nsid, lba, blocks);
        self.submit(command, None, tag)
    }

    /// Dataset Management with the deallocate attribute over `ranges` (1 to 256), which are
    /// written into `buffer` first.
    pub fn deallocate(
        &mut self,
        ns: &Namespace,
        ranges: &[DsmRange],
        mut buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let len = ranges.len() * 16;
        let error = if ranges.is_empty() || ranges.len() > 256 {
            Some(SubmitError::TooLarge {
                len: ranges.len(),
                max: 256,
            })
        } else if len > buffer.len() {
            Some(SubmitError::BufferTooSmall {
                len,
                buffer: buffer.len(),
            })
        } else {
            None
        };
        if let Some(error) = error {
            return Err(Rejected {
                error,
                buffer: Some(buffer),
            });
        }
        for (range, bytes) in ranges
            .iter()
            .zip(buffer.as_mut_slice().chunks_exact_mut(16))
        {
            bytes.copy_from_slice(&range.to_bytes());
        }
        let command = Command {
            cdw10: ranges.len() as u32 - 1,
            cdw11: vfnvme_spec::DSM_ATTR_DEALLOCATE,
            ..Command::new(nvm_opcode::DATASET_MANAGEMENT, ns.nsid)
        };
        self.submit(command, Some((buffer, len)), tag)
    }

    /// Reaps up to `max` completions. After a controller reset, first completes everything that
    /// was in flight with [`LOST_IN_RESET`] and recreates the queues.
    pub fn poll(&mut self, max: usize, mut on_complete: impl FnMut(Completed)) -> usize {
        if self.controller.shared.generation.load(Ordering::Acquire) != self.generation {
            return self.recover(&mut on_complete);
        }
        self.queue.poll(max, on_complete)
    }

    fn recover(&mut self, on_complete: &mut impl FnMut(Completed)) -> usize {
        let mut lost = 0;
        self.queue
            .reset_after_controller_reset(LOST_IN_RESET, |done| {
                lost += 1;
                on_complete(done)
            });
        self.generation = self.controller.generation();
        self.live_on_device = false;
        if let Err(error) = self.create_on_device() {
            log::error!(
                "{}: recreating queue {} after a reset failed: {error}",
                self.controller.address(),
                self.qid()
            );
        }
        lost
    }

    /// Sends Abort for commands overdue by `timeout`; a command still overdue after its Abort,
    /// a failing Abort, or a fatal controller status resets the controller. Call it now and then
    /// (e.g. every 100 ms): its granularity is how often it runs.
    pub fn check_timeouts(&mut self, timeout: Duration) -> Result<TimeoutReport> {
        let mut report = TimeoutReport::default();
        let mut overdue = Vec::new();
        self.queue
            .overdue(Instant::now(), timeout, |found| overdue.push(found));
        if overdue.is_empty() {
            return Ok(report);
        }
        let mut needs_reset = self.controller.is_fatal();
        for command in &overdue {
            if needs_reset {
                break;
            }
            if command.abort_sent {
                needs_reset = true;
                break;
            }
            log::warn!(
                "{}: command {} on queue {} overdue by {timeout:?}; aborting it",
                self.controller.address(),
                command.cid,
                self.qid()
            );
            match self.controller.abort(self.qid(), command.cid) {
                Ok(_) => {
                    self.queue.mark_abort_sent(command.cid);
                    report.aborts_sent += 1;
                }
                Err(_) => needs_reset = true,
            }
        }
        if needs_reset {
            self.controller.reset()?;
            report.controller_reset = true;
        }
        Ok(report)
    }

    /// Polls until nothing is outstanding or `deadline` passes; returns what was still out.
    pub fn drain(&mut self, deadline: Instant, mut on_complete: impl FnMut(Completed)) -> usize {
        while self.outstanding() > 0 && Instant::now() < deadline {
            if self.poll(usize::MAX, &mut on_complete) == 0 {
                std::hint::spin_loop();
            }
        }
        self.outstanding()
    }

    fn create_on_device(&mut self) -> Result<()> {
        let qid = u32::from(self.qid());
        let size = (u32::from(self.entries()) - 1) << 16;
        let physically_contiguous = 1;
        let create_cq = Command {
            prp1: self.queue.cq_iova(),
            cdw10: size | qid,
            cdw11: physically_contiguous,
            ..Command::new(admin_opcode::CREATE_IO_CQ, 0)
        };
        self.controller
            .admin(create_cq, AdminData::None, "Create I/O Completion Queue")?;
        let create_sq = Command {
            prp1: self.queue.sq_iova(),
            cdw10: size | qid,
            cdw11: (qid << 16) | physically_contiguous,
            ..Command::new(admin_opcode::CREATE_IO_SQ, 0)
        };
        if let Err(error) =
            self.controller
                .admin(create_sq, AdminData::None, "Create I/O Submission Queue")
        {
            let delete_cq = Command {
                cdw10: qid,
                ..Command::new(admin_opcode::DELETE_IO_CQ, 0)
            };
            // The CQ is unused; if deleting it fails too the controller reset that follows a
            // failed admin command has removed it.
            let _ =
                self.controller
                    .admin(delete_cq, AdminData::None, "Delete I/O Completion Queue");
            return Err(error);
        }
        self.live_on_device = true;
        Ok(())
    }

    /// Deletes SQ then CQ on the device. Returns whether the device is known to be done with
    /// this queue pair's memory.
    /// The device posts the completions of commands aborted by the SQ deletion before the
    /// deletion itself completes; they are reaped (to `on_complete`) before the CQ goes.
    fn delete_on_device(&mut self, on_complete: &mut dyn FnMut(Completed)) -> bool {
        if !self.live_on_device || self.controller.generation() != self.generation {
            return true;
        }
        let qid = u32::from(self.qid());
        let delete = |controller: &Controller, opcode, name| {
            let command = Command {
                cdw10: qid,
                ..Command::new(opcode, 0)
            };
            controller.admin(command, AdminData::None, name)
        };
        let deleted = delete(
            &self.controller,
            admin_opcode::DELETE_IO_SQ,
            "Delete I/O Submission Queue",
        )
        .and_then(|_| {
            self.queue.poll(usize::MAX, &mut *on_complete);
            delete(
                &self.controller,
                admin_opcode::DELETE_IO_CQ,
                "Delete I/O Completion Queue",
            )
        });
        match deleted {
            Ok(_) => {
                self.live_on_device = false;
                true
            }
            Err(error) => {
                log::warn!(
                    "{}: deleting queue {qid} failed ({error}); resetting the controller",
                    self.controller.address()
                );
                // A reset (perhaps already done by the failed admin command) removes every queue.
                self.controller.generation() != self.generation || self.controller.reset().is_ok()
            }
        }
    }
}

impl IoQueuePair {
    /// Removes the queue pair from the device, handing every command still in flight to
    /// `on_complete` (completed, or aborted by the SQ deletion) with its buffer, so that the
    /// caller can put the buffers back where they belong. Dropping a queue pair does the same
    /// without giving the buffers back.
    pub fn shut_down(mut self, mut on_complete: impl FnMut(Completed)) {
        self.close(&mut on_complete);
    }

    fn close(&mut self, on_complete: &mut dyn FnMut(Completed)) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Commands still in flight: give the device a moment, then deleting the SQ aborts them.
        let deadline = Instant::now() + Duration::from_secs(1);
        let lost = self.drain(deadline, &mut *on_complete);
        if lost > 0 {
            log::warn!(
                "{}: queue {} closed with {lost} commands in flight",
                self.controller.address(),
                self.qid()
            );
        }
        if self.delete_on_device(on_complete) {
            self.controller.shared.release_qid(self.qid());
        } else {
            log::error!(
                "{}: queue {} could not be removed from the device; leaking its memory and id",
                self.controller.address(),
                self.qid()
            );
            self.queue.leak_memory();
            for region in self.pools.drain(..) {
                std::mem::forget(region);
            }
        }
    }
}

impl Drop for IoQueuePair {
    fn drop(&mut self) {
        self.close(&mut |_| {});
    }
}
