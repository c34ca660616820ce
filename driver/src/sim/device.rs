//! The simulated controller's state machine: registers, queues, command execution, media.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{fence, Ordering};
use std::time::Instant;

use super::{Fault, RamDisk, SimConfig, SimIommu, SimStats, BAR_SIZE};
use crate::mmio::Mmio;
use vfnvme_spec::identify::{
    build_active_namespace_list, build_namespace_id_descriptors, IdentifyController,
    IdentifyNamespace, NamespaceId,
};
use vfnvme_spec::log_page::{log_id, ErrorLogEntry, FirmwareSlotLog, SmartLog};
use vfnvme_spec::padded::PaddedString;
use vfnvme_spec::regs::{self, cc, csts, Cap};
use vfnvme_spec::status::{command_specific as cs, generic, sct};
use vfnvme_spec::{
    admin_opcode, cns, feature, nvm_opcode, Command, Completion, DsmRange, Status, CQE_SIZE,
    DSM_ATTR_DEALLOCATE, PAGE_SIZE, SQE_SIZE,
};

/// Completion of one command: status and DW0.
type Outcome = (Status, u32);

fn ok(result: u32) -> Outcome {
    (Status::SUCCESS, result)
}

fn fail(status: Status) -> Outcome {
    (status.do_not_retry(), 0)
}

fn generic_error(sc: u8) -> Outcome {
    fail(Status::generic(sc))
}

fn specific_error(sc: u8) -> Outcome {
    fail(Status::new(sct::COMMAND_SPECIFIC, sc))
}

struct SubmissionQueue {
    iova: u64,
    entries: u16,
    head: u16,
    cqid: u16,
}

struct CompletionQueue {
    iova: u64,
    entries: u16,
    tail: u16,
    phase: bool,
}

struct PendingCompletion {
    due: Instant,
    sqid: u16,
    cid: u16,
    outcome: Outcome,
}

/// A namespace and its medium.
struct Medium {
    nsid: u32,
    blocks: u64,
    block_size: u32,
    disk: RamDisk,
}

impl Medium {
    fn ptr(&self, offset: u64, len: usize) -> *mut u8 {
        self.disk.ptr(offset, len)
    }
}

/// Everything behind the register file.
pub(super) struct DeviceState {
    config: SimConfig,
    cap: Cap,
    doorbell_stride: usize,
    last_cc: u32,
    enabled: bool,
    fatal: bool,
    shut_down: bool,
    /// Index = queue id; 0 is the admin queue.
    sqs: Vec<Option<SubmissionQueue>>,
    cqs: Vec<Option<CompletionQueue>>,
    pending: VecDeque<PendingCompletion>,
    /// Fetched commands whose completion is being withheld (sqid, cid).
    lost: Vec<(u16, u16)>,
    /// Async Event Requests waiting for an event (cid).
    async_events: Vec<u16>,
    faults: Vec<Fault>,
    ignore_abort: bool,
    features: HashMap<u8, u32>,
    io_queues_granted: u16,
    media: Vec<Medium>,
    commands: u64,
    data_units_read: u128,
    data_units_written: u128,
    /// Reused scratch for the (IOVA, length) segments of one transfer.
    segments: Vec<(u64, usize)>,
}

impl DeviceState {
    pub(super) fn new(config: SimConfig, bar: &Mmio) -> std::io::Result<Self> {
        let media = config
            .namespaces
            .iter()
            .map(|ns| {
                Ok(Medium {
                    nsid: ns.nsid,
                    blocks: ns.blocks,
                    block_size: ns.block_size,
                    disk: RamDisk::new(ns.blocks, ns.block_size)?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let cap = Cap::build(config.max_queue_entries, 2000, config.doorbell_stride_shift);
        bar.write64(regs::CAP, cap.0);
        bar.write32(regs::VS, 0x0001_0400);
        let queues = usize::from(config.io_queues) + 1;
        let doorbell_stride = cap.doorbell_stride();
        assert!(
            regs::cq_head_doorbell(config.io_queues, doorbell_stride) + 4 <= BAR_SIZE,
            "too many queues for the simulated BAR"
        );
        Ok(Self {
            config,
            cap,
            doorbell_stride,
            last_cc: 0,
            enabled: false,
            fatal: false,
            shut_down: false,
            sqs: (0..queues).map(|_| None).collect(),
            cqs: (0..queues).map(|_| None).collect(),
            pending: VecDeque::new(),
            lost: Vec::new(),
            async_events: Vec::new(),
            faults: Vec::new(),
            ignore_abort: false,
            features: HashMap::new(),
            io_queues_granted: 0,
            media,
            commands: 0,
            data_units_read: 0,
            data_units_written: 0,
            segments: Vec::new(),
        })
    }

    pub(super) fn inject(&mut self, fault: Fault, bar: &Mmio) {
        match fault {
            Fault::IgnoreAbort => self.ignore_abort = true,
            Fault::Fatal => {
                self.fatal = true;
                bar.write32(regs::CSTS, bar.read32(regs::CSTS) | csts::CFS);
            }
            other => self.faults.push(other),
        }
    }

    pub(super) fn stats(&self) -> SimStats {
        SimStats {
            commands: self.commands,
            iommu_faults: 0,
            io_queues: self.sqs.iter().skip(1).filter(|q| q.is_some()).count() as u16,
            in_flight: self.pending.len() + self.lost.len() + self.async_events.len(),
        }
    }

    pub(super) fn read_medium(&self, nsid: u32, offset: u64, out: &mut [u8]) -> bool {
        let Some(medium) = self.media.iter().find(|m| m.nsid == nsid) else {
            return false;
        };
        if offset + out.len() as u64 > medium.blocks * u64::from(medium.block_size) {
            return false;
        }
        medium.disk.read(offset, out);
        true
    }

    /// One round of the device: register changes, commands, due completions.
    pub(super) fn step(&mut self, bar: &Mmio, iommu: &SimIommu) -> bool {
        let mut busy = false;
        let config = bar.read32(regs::CC);
        if config != self.last_cc {
            self.on_config_change(config, bar);
            busy = true;
        }
        if !self.enabled || self.fatal || self.shut_down {
            return busy;
        }
        for qid in 0..self.sqs.len() {
            busy |= self.fetch_commands(qid as u16, bar, iommu);
        }
        busy |= self.post_due(bar, iommu);
        busy
    }

    fn on_config_change(&mut self, config: u32, bar: &Mmio) {
        let was_enabled = self.last_cc & cc::EN != 0;
        let enable = config & cc::EN != 0;
        self.last_cc = config;
        if was_enabled && !enable {
            self.disable(bar);
            return;
        }
        if !was_enabled && enable {
            self.enable(config, bar);
        }
        if enable && config & cc::SHN_MASK != 0 && !self.shut_down {
            self.shut_down = true;
            let status = bar.read32(regs::CSTS) & !csts::SHST_MASK;
            bar.write32(regs::CSTS, status | csts::SHST_COMPLETE);
        }
    }

    fn enable(&mut self, config: u32, bar: &Mmio) {
        let iosqes = (config >> cc::IOSQES_SHIFT) & 0xf;
        let iocqes = (config >> cc::IOCQES_SHIFT) & 0xf;
        let aqa = bar.read32(regs::AQA);
        let sq_entries = (aqa & 0xfff) as u16 + 1;
        let cq_entries = ((aqa >> 16) & 0xfff) as u16 + 1;
        if iosqes != 6 || iocqes != 4 || sq_entries < 2 || cq_entries < 2 {
            log::error!("simulated controller: bad CC {config:#x} or AQA {aqa:#x}; fatal");
            self.fatal = true;
            bar.write32(regs::CSTS, csts::CFS);
            return;
        }
        self.sqs[0] = Some(SubmissionQueue {
            iova: bar.read64(regs::ASQ),
            entries: sq_entries,
            head: 0,
            cqid: 0,
        });
        self.cqs[0] = Some(CompletionQueue {
            iova: bar.read64(regs::ACQ),
            entries: cq_entries,
            tail: 0,
            phase: true,
        });
        self.enabled = true;
        bar.write32(regs::CSTS, csts::RDY);
    }

    /// CC.EN = 0: a controller reset. Every queue and command is forgotten.
    fn disable(&mut self, bar: &Mmio) {
        self.enabled = false;
        self.fatal = false;
        self.shut_down = false;
        self.sqs.iter_mut().for_each(|q| *q = None);
        self.cqs.iter_mut().for_each(|q| *q = None);
        self.pending.clear();
        self.lost.clear();
        self.async_events.clear();
        self.io_queues_granted = 0;
        for qid in 0..self.sqs.len() as u16 {
            bar.write32(regs::sq_tail_doorbell(qid, self.doorbell_stride), 0);
            bar.write32(regs::cq_head_doorbell(qid, self.doorbell_stride), 0);
        }
        bar.write32(regs::CSTS, 0);
    }

    fn fetch_commands(&mut self, qid: u16, bar: &Mmio, iommu: &SimIommu) -> bool {
        let mut busy = false;
        loop {
            let Some(sq) = self.sqs[usize::from(qid)].as_mut() else {
                return busy;
            };
            let tail = bar.read32(regs::sq_tail_doorbell(qid, self.doorbell_stride));
            if tail >= u32::from(sq.entries) {
                log::error!(
                    "simulated controller: SQ {qid} tail doorbell {tail} out of range; fatal"
                );
                self.fatal = true;
                bar.write32(regs::CSTS, bar.read32(regs::CSTS) | csts::CFS);
                return true;
            }
            if u32::from(sq.head) == tail {
                return busy;
            }
            busy = true;
            let address = sq.iova + u64::from(sq.head) * SQE_SIZE as u64;
            sq.head = (sq.head + 1) % sq.entries;
            // The doorbell was read before the entry; the entry is complete by then.
            fence(Ordering::Acquire);
            let Some(entry) = iommu.translate(address, SQE_SIZE) else {
                self.fatal = true;
                bar.write32(regs::CSTS, bar.read32(regs::CSTS) | csts::CFS);
                return true;
            };
            // SAFETY: the IOMMU vouched for SQE_SIZE mapped bytes at `entry`; the driver wrote
            // the entry before ringing the doorbell.
            let command = unsafe { entry.cast::<Command>().read_volatile() };
            self.commands += 1;
            self.dispatch(qid, command, bar, iommu);
        }
    }

    fn dispatch(&mut self, qid: u16, command: Command, bar: &Mmio, iommu: &SimIommu) {
        let admin = qid == 0;
        if let Some(position) = self.faults.iter().position(|fault| match *fault {
            Fault::FailCommand {
                admin: a, opcode, ..
            }
            | Fault::LoseCompletion {
                admin: a, opcode, ..
            } => a == admin && opcode == command.opcode(),
            _ => false,
        }) {
            let fault = self.faults[position];
            match fault {
                Fault::FailCommand { status, count, .. } => {
                    self.consume_fault(position, count);
                    self.complete(qid, command.cid(), (status, 0));
                    return;
                }
                Fault::LoseCompletion { count, .. } => {
                    self.consume_fault(position, count);
                    self.lost.push((qid, command.cid()));
                    return;
                }
                _ => {}
            }
        }
        if admin {
            if let Some(outcome) = self.execute_admin(&command, bar, iommu) {
                self.complete(qid, command.cid(), outcome);
            }
        } else {
            let outcome = self.execute_io(&command, iommu);
            self.complete(qid, command.cid(), outcome);
        }
    }

    fn consume_fault(&mut self, position: usize, count: u32) {
        match &mut self.faults[position] {
            Fault::FailCommand { count: left, .. } | Fault::LoseCompletion { count: left, .. } => {
                *left = count.saturating_sub(1);
                if *left == 0 {
                    self.faults.remove(position);
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, sqid: u16, cid: u16, outcome: Outcome) {
        self.pending.push_back(PendingCompletion {
            due: Instant::now() + self.config.latency,
            sqid,
            cid,
            outcome,
        });
    }

    fn post_due(&mut self, bar: &Mmio, iommu: &SimIommu) -> bool {
        let mut busy = false;
        let now = Instant::now();
        let mut index = 0;
        while index < self.pending.len() {
            let pending = &self.pending[index];
            if pending.due > now {
                // Completions are queued in due order (one latency for all).
                break;
            }
            match self.post(pending.sqid, pending.cid, pending.outcome, bar, iommu) {
                Posted::Done | Posted::QueueGone => {
                    self.pending.remove(index);
                    busy = true;
                }
                Posted::QueueFull => index += 1,
            }
        }
        busy
    }

    fn post(
        &mut self,
        sqid: u16,
        cid: u16,
        outcome: Outcome,
        bar: &Mmio,
        iommu: &SimIommu,
    ) -> Posted {
        let Some(sq) = self.sqs[usize::from(sqid)].as_ref() else {
            return Posted::QueueGone;
        };
        let (sq_head, cqid) = (sq.head, sq.cqid);
        let Some(cq) = self.cqs[usize::from(cqid)].as_mut() else {
            return Posted::QueueGone;
        };
        let head = bar.read32(regs::cq_head_doorbell(cqid, self.doorbell_stride));
        if (u32::from(cq.tail) + 1) % u32::from(cq.entries) == head {
            return Posted::QueueFull;
        }
        let address = cq.iova + u64::from(cq.tail) * CQE_SIZE as u64;
        let Some(entry) = iommu.translate(address, CQE_SIZE) else {
            return Posted::QueueGone;
        };
        let (status, result) = outcome;
        let completion = Completion {
            result,
            dw1: 0,
            sq_head,
            sq_id: sqid,
            cid,
            status_phase: (status.raw() << 1) | u16::from(cq.phase),
        };
        let bytes = completion.to_bytes();
        // SAFETY: the IOMMU vouched for CQE_SIZE mapped bytes at `entry`. The status word with
        // the phase tag is written last, after a fence, so the driver never sees a torn entry.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), entry, CQE_SIZE - 2);
            fence(Ordering::Release);
            entry
                .add(CQE_SIZE - 2)
                .cast::<u16>()
                .write_volatile(completion.status_phase);
        }
        cq.tail += 1;
        if cq.tail == cq.entries {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        Posted::Done
    }
}

enum Posted {
    Done,
    QueueFull,
    QueueGone,
}

/// Admin commands.
impl DeviceState {
    /// `None` when the command completes later (Async Event Request).
    fn execute_admin(
        &mut self,
        command: &Command,
        bar: &Mmio,
        iommu: &SimIommu,
    ) -> Option<Outcome> {
        let outcome = match command.opcode() {
            admin_opcode::IDENTIFY => self.identify(command, iommu),
            admin_opcode::GET_LOG_PAGE => self.get_log_page(command, iommu),
            admin_opcode::SET_FEATURES => self.set_features(command),
            admin_opcode::GET_FEATURES => self.get_features(command),
            admin_opcode::CREATE_IO_CQ => self.create_cq(command, bar, iommu),
            admin_opcode::CREATE_IO_SQ => self.create_sq(command, bar, iommu),
            admin_opcode::DELETE_IO_SQ => self.delete_sq(command, bar, iommu),
            admin_opcode::DELETE_IO_CQ => self.delete_cq(command, bar),
            admin_opcode::ABORT => self.abort(command),
            admin_opcode::KEEP_ALIVE => ok(0),
            admin_opcode::ASYNC_EVENT_REQUEST => {
                if self.async_events.len() > 3 {
                    specific_error(cs::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED)
                } else {
                    self.async_events.push(command.cid());
                    return None;
                }
            }
            _ => generic_error(generic::INVALID_OPCODE),
        };
        Some(outcome)
    }

    fn identify_controller(&self) -> IdentifyController {
        IdentifyController {
            vid: 0x1d1d.into(),
            ssvid: 0x1d1d.into(),
            serial: PaddedString::space_padded(&self.config.serial),
            model: PaddedString::space_padded(&self.config.model),
            firmware: PaddedString::space_padded(&self.config.firmware),
            mdts: self.config.mdts,
            cntlid: 1.into(),
            ver: 0x0001_0400.into(),
            acl: 3,
            aerl: 3,
            frmw: 0x02,
            lpa: 0x02,
            elpe: 15,
            sqes: 0x66,
            cqes: 0x44,
            nn: self.media.iter().map(|m| m.nsid).max().unwrap_or(0).into(),
            // Write Zeroes and Dataset Management.
            oncs: ((1 << 3) | (1 << 2)).into(),
            vwc: 1,
            ..IdentifyController::default()
        }
    }

    fn identify(&mut self, command: &Command, iommu: &SimIommu) -> Outcome {
        let data = match (command.cdw10 & 0xff) as u8 {
            cns::CONTROLLER => self.identify_controller().to_bytes(),
            cns::NAMESPACE => match self.medium(command.nsid) {
                Some(medium) => {
                    let mut identify = IdentifyNamespace::simple(medium.blocks, medium.block_size);
                    // Deallocated blocks read as zeroes.
                    identify.dlfeat = 1;
                    identify.to_bytes()
                }
                None => return generic_error(generic::INVALID_NAMESPACE_OR_FORMAT),
            },
            cns::ACTIVE_NAMESPACE_LIST => {
                let nsids: Vec<u32> = self.media.iter().map(|m| m.nsid).collect();
                build_active_namespace_list(&nsids, command.nsid)
            }
            cns::NAMESPACE_ID_DESCRIPTORS => match self.medium(command.nsid) {
                Some(medium) => {
                    let mut nguid = [0u8; 16];
                    nguid[..4].copy_from_slice(&medium.nsid.to_be_bytes());
                    nguid[4..].copy_from_slice(&self.serial_hash().to_be_bytes()[..12]);
                    build_namespace_id_descriptors(&[
                        NamespaceId::Nguid(nguid),
                        NamespaceId::Csi(0),
                    ])
                }
                None => return generic_error(generic::INVALID_NAMESPACE_OR_FORMAT),
            },
            _ => return generic_error(generic::INVALID_FIELD),
        };
        self.copy_to_host(command, &data, iommu)
    }

    fn serial_hash(&self) -> u128 {
        self.config
            .serial
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u128, |hash, byte| {
                (hash ^ u128::from(byte)).wrapping_mul(0x100_0000_01b3)
            })
    }

    fn get_log_page(&mut self, command: &Command, iommu: &SimIommu) -> Outcome {
        let lid = (command.cdw10 & 0xff) as u8;
        let dwords = ((command.cdw10 >> 16) | ((command.cdw11 & 0xffff) << 16)) as usize + 1;
        let offset = u64::from(command.cdw12) | (u64::from(command.cdw13) << 32);
        let log = match lid {
            log_id::ERROR => {
                let entries = usize::from(self.identify_controller().elpe) + 1;
                let mut log = Vec::with_capacity(entries * 64);
                for _ in 0..entries {
                    log.extend_from_slice(&ErrorLogEntry::default().to_bytes());
                }
                log
            }
            log_id::SMART_HEALTH => SmartLog {
                temperature_kelvin: 310.into(),
                avail_spare: 100,
                spare_thresh: 10,
                data_units_read: (self.data_units_read / 1000).into(),
                data_units_written: (self.data_units_written / 1000).into(),
                ..SmartLog::default()
            }
            .to_bytes(),
            log_id::FIRMWARE_SLOT => {
                let mut slots = FirmwareSlotLog {
                    afi: 1,
                    ..FirmwareSlotLog::default()
                };
                slots.set_revision(1, &self.config.firmware);
                slots.to_bytes()
            }
            _ => return specific_error(cs::INVALID_LOG_PAGE),
        };
        let Some(start) = usize::try_from(offset)
            .ok()
            .filter(|o| o % 4 == 0 && *o <= log.len())
        else {
            return generic_error(generic::INVALID_FIELD);
        };
        let end = (start + dwords * 4).min(log.len());
        let mut data = log[start..end].to_vec();
        data.resize(dwords * 4, 0);
        self.copy_to_host(command, &data, iommu)
    }

    fn set_features(&mut self, command: &Command) -> Outcome {
        let fid = (command.cdw10 & 0xff) as u8;
        match fid {
            feature::NUMBER_OF_QUEUES => {
                if self.sqs.iter().skip(1).any(|q| q.is_some()) {
                    return generic_error(generic::COMMAND_SEQUENCE_ERROR);
                }
                let wanted_sq = command.cdw11 & 0xffff;
                let wanted_cq = command.cdw11 >> 16;
                if wanted_sq == 0xffff || wanted_cq == 0xffff {
                    return generic_error(generic::INVALID_FIELD);
                }
                let most = u32::from(self.config.io_queues) - 1;
                let granted = wanted_sq.min(wanted_cq).min(most);
                self.io_queues_granted = granted as u16 + 1;
                ok(granted | (granted << 16))
            }
            feature::ARBITRATION
            | feature::POWER_MANAGEMENT
            | feature::VOLATILE_WRITE_CACHE
            | feature::ASYNC_EVENT_CONFIG
            | feature::KEEP_ALIVE_TIMER => {
                self.features.insert(fid, command.cdw11);
                ok(0)
            }
            _ => generic_error(generic::INVALID_FIELD),
        }
    }

    fn get_features(&mut self, command: &Command) -> Outcome {
        let fid = (command.cdw10 & 0xff) as u8;
        match fid {
            feature::NUMBER_OF_QUEUES => {
                let granted = u32::from(self.io_queues_granted.max(1)) - 1;
                ok(granted | (granted << 16))
            }
            feature::ARBITRATION
            | feature::POWER_MANAGEMENT
            | feature::VOLATILE_WRITE_CACHE
            | feature::ASYNC_EVENT_CONFIG
            | feature::KEEP_ALIVE_TIMER => ok(self.features.get(&fid).copied().unwrap_or(0)),
            _ => generic_error(generic::INVALID_FIELD),
        }
    }

    /// Queue id and entry count from CDW10 of a create command, validated.
    fn new_queue_shape(&self, command: &Command) -> Result<(u16, u16), Outcome> {
        let qid = (command.cdw10 & 0xffff) as u16;
        let entries = (command.cdw10 >> 16) + 1;
        if qid == 0 || qid > self.io_queues_granted {
            return Err(specific_error(cs::INVALID_QUEUE_IDENTIFIER));
        }
        if entries < 2 || entries > self.cap.max_queue_entries() {
            return Err(specific_error(cs::INVALID_QUEUE_SIZE));
        }
        if command.cdw11 & 1 == 0 {
            // CAP.CQR: queues must be physically contiguous.
            return Err(generic_error(generic::INVALID_FIELD));
        }
        if !command.prp1.is_multiple_of(PAGE_SIZE as u64) {
            return Err(generic_error(generic::INVALID_PRP_OFFSET));
        }
        Ok((qid, entries as u16))
    }

    fn create_cq(&mut self, command: &Command, bar: &Mmio, iommu: &SimIommu) -> Outcome {
        let (qid, entries) = match self.new_queue_shape(command) {
            Ok(shape) => shape,
            Err(outcome) => return outcome,
        };
        if self.cqs[usize::from(qid)].is_some() {
            return specific_error(cs::INVALID_QUEUE_IDENTIFIER);
        }
        if iommu
            .translate(command.prp1, usize::from(entries) * CQE_SIZE)
            .is_none()
        {
            return generic_error(generic::DATA_TRANSFER_ERROR);
        }
        // Doorbell writes to a queue that did not exist are ignored, as the spec allows.
        bar.write32(regs::cq_head_doorbell(qid, self.doorbell_stride), 0);
        self.cqs[usize::from(qid)] = Some(CompletionQueue {
            iova: command.prp1,
            entries,
            tail: 0,
            phase: true,
        });
        ok(0)
    }

    fn create_sq(&mut self, command: &Command, bar: &Mmio, iommu: &SimIommu) -> Outcome {
        let (qid, entries) = match self.new_queue_shape(command) {
            Ok(shape) => shape,
            Err(outcome) => return outcome,
        };
        let cqid = (command.cdw11 >> 16) as u16;
        if self.sqs[usize::from(qid)].is_some() {
            return specific_error(cs::INVALID_QUEUE_IDENTIFIER);
        }
        if cqid == 0
            || self
                .cqs
                .get(usize::from(cqid))
                .is_none_or(|cq| cq.is_none())
        {
            return specific_error(cs::COMPLETION_QUEUE_INVALID);
        }
        if iommu
            .translate(command.prp1, usize::from(entries) * SQE_SIZE)
            .is_none()
        {
            return generic_error(generic::DATA_TRANSFER_ERROR);
        }
        bar.write32(regs::sq_tail_doorbell(qid, self.doorbell_stride), 0);
        self.sqs[usize::from(qid)] = Some(SubmissionQueue {
            iova: command.prp1,
            entries,
            head: 0,
            cqid,
        });
        ok(0)
    }

    fn delete_sq(&mut self, command: &Command, bar: &Mmio, iommu: &SimIommu) -> Outcome {
        let qid = (command.cdw10 & 0xffff) as u16;
        if qid == 0 || self.sqs.get(usize::from(qid)).is_none_or(|sq| sq.is_none()) {
            return specific_error(cs::INVALID_QUEUE_IDENTIFIER);
        }
        // Withheld commands of this queue complete as aborted before the queue goes away.
        let aborted: Vec<u16> = self
            .lost
            .iter()
            .filter(|(sqid, _)| *sqid == qid)
            .map(|(_, cid)| *cid)
            .collect();
        self.lost.retain(|(sqid, _)| *sqid != qid);
        for cid in aborted {
            self.complete(qid, cid, fail(Status::generic(generic::SQ_DELETION_ABORT)));
        }
        // Posting needs the SQ, so flush this queue's completions now, due or not.
        let mut index = 0;
        while index < self.pending.len() {
            let pending = &self.pending[index];
            if pending.sqid == qid {
                let (sqid, cid, outcome) = (pending.sqid, pending.cid, pending.outcome);
                self.pending.remove(index);
                // A full CQ loses the completion, as on real controllers.
                let _ = self.post(sqid, cid, outcome, bar, iommu);
            } else {
                index += 1;
            }
        }
        self.sqs[usize::from(qid)] = None;
        bar.write32(regs::sq_tail_doorbell(qid, self.doorbell_stride), 0);
        ok(0)
    }

    fn delete_cq(&mut self, command: &Command, bar: &Mmio) -> Outcome {
        let qid = (command.cdw10 & 0xffff) as u16;
        if qid == 0 || self.cqs.get(usize::from(qid)).is_none_or(|cq| cq.is_none()) {
            return specific_error(cs::INVALID_QUEUE_IDENTIFIER);
        }
        if self.sqs.iter().flatten().any(|sq| sq.cqid == qid) {
            return specific_error(cs::INVALID_QUEUE_DELETION);
        }
        self.cqs[usize::from(qid)] = None;
        bar.write32(regs::cq_head_doorbell(qid, self.doorbell_stride), 0);
        ok(0)
    }

    fn abort(&mut self, command: &Command) -> Outcome {
        let sqid = (command.cdw10 & 0xffff) as u16;
        let cid = (command.cdw10 >> 16) as u16;
        let not_aborted = 1;
        if self.ignore_abort {
            return ok(not_aborted);
        }
        match self.lost.iter().position(|&(s, c)| s == sqid && c == cid) {
            Some(position) => {
                self.lost.remove(position);
                self.complete(sqid, cid, fail(Status::generic(generic::ABORT_REQUESTED)));
                ok(0)
            }
            None => ok(not_aborted),
        }
    }
}

/// Data movement and NVM commands.
impl DeviceState {
    fn medium(&self, nsid: u32) -> Option<&Medium> {
        self.media.iter().find(|m| m.nsid == nsid)
    }

    /// Fills `self.segments` with the (IOVA, length) pieces of a `len` byte transfer described
    /// by the command's PRP1/PRP2. `Err` is the status to complete with.
    fn walk_prps(
        &mut self,
        command: &Command,
        len: usize,
        iommu: &SimIommu,
    ) -> Result<(), Outcome> {
        self.segments.clear();
        let page = PAGE_SIZE as u64;
        let first = len.min((page - command.prp1 % page) as usize);
        self.segments.push((command.prp1, first));
        let mut remaining = len - first;
        if remaining == 0 {
            return Ok(());
        }
        if remaining <= PAGE_SIZE {
            if !command.prp2.is_multiple_of(page) {
                return Err(generic_error(generic::INVALID_PRP_OFFSET));
            }
            self.segments.push((command.prp2, remaining));
            return Ok(());
        }
        let mut list = command.prp2;
        if !list.is_multiple_of(8) {
            return Err(generic_error(generic::INVALID_PRP_OFFSET));
        }
        while remaining > 0 {
            let slots = ((page - list % page) / 8) as usize;
            let Some(entries) = iommu.translate(list, slots * 8) else {
                return Err(generic_error(generic::DATA_TRANSFER_ERROR));
            };
            for slot in 0..slots {
                // SAFETY: `slot < slots`, inside the translated list page.
                let entry = unsafe { entries.cast::<u64>().add(slot).read_volatile() };
                let pages_left = remaining.div_ceil(PAGE_SIZE);
                if slot == slots - 1 && pages_left > 1 {
                    // The last entry of a full list page chains to the next list.
                    list = entry;
                    break;
                }
                if entry % page != 0 {
                    return Err(generic_error(generic::INVALID_PRP_OFFSET));
                }
                let piece = remaining.min(PAGE_SIZE);
                self.segments.push((entry, piece));
                remaining -= piece;
                if remaining == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Moves `len` bytes between the command's data buffer and `local`: into host memory when
    /// `to_host`, else out of it.
    fn transfer(
        &mut self,
        command: &Command,
        local: *mut u8,
        len: usize,
        to_host: bool,
        iommu: &SimIommu,
    ) -> Result<(), Outcome> {
        self.walk_prps(command, len, iommu)?;
        let mut done = 0;
        for &(iova, piece) in &self.segments {
            let Some(host) = iommu.translate(iova, piece) else {
                return Err(generic_error(generic::DATA_TRANSFER_ERROR));
            };
            // SAFETY: `host` has `piece` mapped bytes (checked by the IOMMU) and `local` has
            // `len >= done + piece` bytes (the caller's buffer or medium range).
            unsafe {
                if to_host {
                    std::ptr::copy_nonoverlapping(local.add(done), host, piece);
                } else {
                    std::ptr::copy_nonoverlapping(host, local.add(done), piece);
                }
            }
            done += piece;
        }
        Ok(())
    }

    fn copy_to_host(&mut self, command: &Command, data: &[u8], iommu: &SimIommu) -> Outcome {
        let mut owned = data.to_vec();
        match self.transfer(command, owned.as_mut_ptr(), owned.len(), true, iommu) {
            Ok(()) => ok(0),
            Err(outcome) => outcome,
        }
    }

    /// The medium and byte range of an LBA-addressed command, or the status to fail with.
    fn lba_range(&self, command: &Command) -> Result<(usize, u64, usize), Outcome> {
        let Some(index) = self.media.iter().position(|m| m.nsid == command.nsid) else {
            return Err(generic_error(generic::INVALID_NAMESPACE_OR_FORMAT));
        };
        let medium = &self.media[index];
        let blocks = u64::from(command.nlb());
        if command
            .slba()
            .checked_add(blocks)
            .is_none_or(|end| end > medium.blocks)
        {
            return Err(generic_error(generic::LBA_OUT_OF_RANGE));
        }
        let block_size = u64::from(medium.block_size);
        Ok((
            index,
            command.slba() * block_size,
            (blocks * block_size) as usize,
        ))
    }

    fn max_transfer(&self) -> usize {
        match self.config.mdts {
            0 => usize::MAX,
            mdts => PAGE_SIZE << mdts,
        }
    }

    fn execute_io(&mut self, command: &Command, iommu: &SimIommu) -> Outcome {
        match command.opcode() {
            nvm_opcode::READ | nvm_opcode::WRITE => {
                let (index, offset, len) = match self.lba_range(command) {
                    Ok(range) => range,
                    Err(outcome) => return outcome,
                };
                if len > self.max_transfer() {
                    return generic_error(generic::INVALID_FIELD);
                }
                let local = self.media[index].ptr(offset, len);
                let read = command.opcode() == nvm_opcode::READ;
                if let Err(outcome) = self.transfer(command, local, len, read, iommu) {
                    return outcome;
                }
                if read {
                    self.data_units_read += len as u128 / 512;
                } else {
                    self.data_units_written += len as u128 / 512;
                }
                ok(0)
            }
            nvm_opcode::FLUSH => {
                if command.nsid == u32::MAX || self.medium(command.nsid).is_some() {
                    ok(0)
                } else {
                    generic_error(generic::INVALID_NAMESPACE_OR_FORMAT)
                }
            }
            nvm_opcode::WRITE_ZEROES => match self.lba_range(command) {
                Ok((index, offset, len)) => {
                    self.zero(index, offset, len);
                    ok(0)
                }
                Err(outcome) => outcome,
            },
            nvm_opcode::DATASET_MANAGEMENT => self.dataset_management(command, iommu),
            _ => generic_error(generic::INVALID_OPCODE),
        }
    }

    fn zero(&self, index: usize, offset: u64, len: usize) {
        self.media[index].disk.zero(offset, len);
    }

    fn dataset_management(&mut self, command: &Command, iommu: &SimIommu) -> Outcome {
        let Some(index) = self.media.iter().position(|m| m.nsid == command.nsid) else {
            return generic_error(generic::INVALID_NAMESPACE_OR_FORMAT);
        };
        let count = (command.cdw10 & 0xff) as usize + 1;
        let mut raw = vec![0u8; count * 16];
        if let Err(outcome) = self.transfer(command, raw.as_mut_ptr(), raw.len(), false, iommu) {
            return outcome;
        }
        let ranges: Vec<DsmRange> = raw
            .chunks_exact(16)
            .map(|chunk| DsmRange::from_bytes(chunk.try_into().expect("16-byte chunks")))
            .collect();
        if command.cdw11 & DSM_ATTR_DEALLOCATE != 0 {
            if let Err(status) = self.media[index].disk.deallocate(&ranges) {
                return fail(status);
            }
        } else if let Err(status) = ranges.iter().try_for_each(|r| {
            self.media[index]
                .disk
                .byte_range(r.slba, u64::from(r.blocks))
                .map(|_| ())
        }) {
            return fail(status);
        }
        ok(0)
    }
}
