//! The controller handle ([`Controller`]) and what its clones share: bring-up (reset, enable,
//! Identify, queue negotiation), resets, namespaces, admin commands under the lock, and the
//! shutdown (CC.SHN) when the last owner is gone. A module of its own below the I/O queue pairs
//! (`io_qpair`), which hold a handle and use all of this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::admin::{negotiate_queues, AdminContext, AdminData, AdminQueue, ADMIN_BOUNCE_BYTES};
use super::wait::wait_for;
use crate::device::NvmeDevice;
use crate::error::{Error, Result};
use crate::mmio::Mmio;
use crate::queue::{QueuePair, MAX_PRP_TRANSFER};
use vfnvme_spec::identify::{self, IdentifyController, IdentifyNamespace};
use vfnvme_spec::regs::{self, Aqa, Cap, Cc, ShutdownNotification, ShutdownStatus};
use vfnvme_spec::status::generic;
use vfnvme_spec::{admin_opcode, cns, Command, Status, PAGE_SIZE};

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

/// The generation of a controller that did not stop when reset: its device may still write into
/// the memory of the commands it had, so none of it is ever handed back, reused or freed.
pub(super) const OUT_OF_SERVICE: u64 = u64::MAX;

pub(super) struct Shared {
    pub(super) address: String,
    pub(super) cap: Cap,
    pub(super) options: ControllerOptions,
    pub(super) identify: IdentifyController,
    pub(super) io_queues_granted: u16,
    pub(super) max_transfer: usize,
    /// Bumped by every reset once the device has stopped (CSTS.RDY = 0), [`OUT_OF_SERVICE`] if
    /// it never did; queue pairs compare it to notice that their queues are gone.
    pub(super) generation: AtomicU64,
    /// Which I/O queue ids are taken, updated synchronously as queue pairs come and go.
    pub(super) qids_in_use: Mutex<Vec<bool>>,
    pub(super) admin: Mutex<AdminQueue>,
    pub(super) registers: Mmio,
    pub(super) device: Arc<dyn NvmeDevice>,
}

/// An initialised NVMe controller.
#[derive(Clone)]
pub struct Controller {
    pub(super) shared: Arc<Shared>,
}

impl Controller {
    /// Resets and enables the controller, identifies it and negotiates I/O queues.
    pub fn new(device: Arc<dyn NvmeDevice>, options: ControllerOptions) -> Result<Self> {
        let registers = device.registers().clone();
        let address = device.address().to_owned();
        let cap = Cap::from_bits(registers.read64(regs::CAP));
        if !cap.css().nvm() {
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
        self.shared.registers.csts().cfs()
    }

    /// How many resets the controller went through (`u64::MAX` once it is out of service).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Whether the controller did not stop when it was reset: then nothing more is submitted to
    /// it, and the memory its commands used is never handed back or freed.
    pub fn is_out_of_service(&self) -> bool {
        self.generation() == OUT_OF_SERVICE
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

    /// Disables and re-enables the controller. Every I/O queue is gone afterwards; queue pairs
    /// notice on their next poll, complete what they had in flight with [`LOST_IN_RESET`] and
    /// create their queues again.
    ///
    /// Nothing is announced before the device has stopped (CSTS.RDY = 0): until then it may
    /// still move the data of commands in flight, so their buffers must not come back. A device
    /// that does not stop takes the controller out of service instead: its memory is never
    /// handed back.
    pub fn reset(&self) -> Result<()> {
        let shared = &self.shared;
        let mut admin = shared.lock_admin();
        shared.check_in_service()?;
        log::warn!("{}: resetting the controller", shared.address);
        if let Err(error) = disable(&shared.address, &shared.registers, shared.cap) {
            log::error!(
                "{}: {error}; taking the controller out of service: the memory of its commands \
                 stays allocated and mapped so the device cannot write into reused buffers",
                shared.address
            );
            shared.generation.store(OUT_OF_SERVICE, Ordering::Release);
            return Err(error);
        }
        // The device is stopped: queue pairs may now hand back what was in flight.
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
}

impl Shared {
    pub(super) fn lock_admin(&self) -> MutexGuard<'_, AdminQueue> {
        // A panic while holding the admin queue leaves it in a state a reset recovers from.
        self.admin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn context(&self) -> AdminContext<'_> {
        AdminContext {
            address: &self.address,
            registers: &self.registers,
            timeout: self.options.admin_timeout,
        }
    }

    pub(super) fn check_in_service(&self) -> Result<()> {
        if self.generation.load(Ordering::Acquire) == OUT_OF_SERVICE {
            return Err(Error::OutOfService {
                address: self.address.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn take_qid(&self) -> Result<u16> {
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

    pub(super) fn release_qid(&self, qid: u16) {
        let mut qids = self.qids_in_use.lock().unwrap_or_else(|p| p.into_inner());
        qids[usize::from(qid)] = false;
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if *self.generation.get_mut() == OUT_OF_SERVICE {
            let admin = self
                .admin
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            admin.queue.leak_memory();
            admin.bounce.leak();
            log::error!(
                "{}: out of service; leaking its admin queue memory",
                self.address
            );
            return;
        }
        let registers = &self.registers;
        if !registers.csts().rdy() {
            return;
        }
        registers.set_cc(registers.cc().with_shn(ShutdownNotification::Normal));
        let timeout = Duration::from_millis(self.cap.timeout_ms().max(1000));
        let done = wait_for(timeout, || {
            registers.csts().shst() == ShutdownStatus::Complete
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

/// CC.EN = 0, then waits for CSTS.RDY = 0: from then on the device touches no host memory.
fn disable(address: &str, registers: &Mmio, cap: Cap) -> Result<()> {
    let timeout = enable_timeout(cap);
    let config = registers.cc();
    if config.en() {
        registers.set_cc(config.with_en(false));
    }
    if !wait_for(timeout, || !registers.csts().rdy()) {
        return Err(Error::Timeout {
            address: address.to_owned(),
            what: "controller disable (CSTS.RDY = 0)",
            timeout,
        });
    }
    Ok(())
}

/// CAP.TO, the longest a controller may take to become ready or to stop, with a floor.
fn enable_timeout(cap: Cap) -> Duration {
    Duration::from_millis(cap.timeout_ms().max(500))
}

/// Brings the controller from any state to enabled with the admin queue in `admin`.
fn enable(address: &str, registers: &Mmio, cap: Cap, admin: &mut QueuePair) -> Result<()> {
    disable(address, registers, cap)?;
    let timeout = enable_timeout(cap);
    let entries = admin.entries() - 1;
    let aqa = Aqa::new().with_asqs(entries).with_acqs(entries);
    registers.write32(regs::AQA, aqa.into_bits());
    registers.write64(regs::ASQ, admin.sq_iova());
    registers.write64(regs::ACQ, admin.cq_iova());
    registers.set_cc(Cc::nvm_enabled());
    let mut fatal = false;
    let ready = wait_for(timeout, || {
        let status = registers.csts();
        fatal = status.cfs();
        fatal || status.rdy()
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

impl Controller {
    /// Runs one admin command and waits for it; a command that never completes resets the
    /// controller. This is also the admin passthrough for arbitrary commands.
    pub fn admin(&self, command: Command, data: AdminData<'_>, name: &'static str) -> Result<u32> {
        let mut admin = self.shared.lock_admin();
        self.shared.check_in_service()?;
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

    /// Asks the controller to abort command `cid` on queue `qid`. Returns whether it says it did.
    pub fn abort(&self, qid: u16, cid: u16) -> Result<bool> {
        let command = Command {
            cdw10: u32::from(qid) | (u32::from(cid) << 16),
            ..Command::new(admin_opcode::ABORT, 0)
        };
        let result = self.admin(command, AdminData::None, "Abort")?;
        Ok(result & 1 == 0)
    }
}
