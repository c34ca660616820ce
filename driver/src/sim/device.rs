//! The simulated controller's state ([`DeviceState`]): the register file (enable, reset,
//! shutdown), its queues, injected faults, and posting completions. The leaf every other part
//! of the simulator builds on: fetching and dispatching commands is in `fetch`, what the
//! commands do in `admin` and `io`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{fence, Ordering};
use std::time::Instant;

use vm_memory::VolatileMemory;

use super::config::{Fault, SimConfig, SimStats, BAR_SIZE, VERSION};
use super::iommu::SimIommu;
use crate::mmio::Mmio;
use crate::ram::RamDisk;
use vfnvme_spec::regs::{self, Aqa, Cap, Cc, Csts, ShutdownNotification, ShutdownStatus};
use vfnvme_spec::status::sct;
use vfnvme_spec::{Command, Completion, Status, CQE_SIZE};

/// CSTS.CFS = 1, the rest of CSTS kept.
pub(super) fn set_fatal_status(bar: &Mmio) {
    bar.set_csts(bar.csts().with_cfs(true));
}

/// Completion of one command: status and DW0.
pub(super) type Outcome = (Status, u32);

pub(super) fn ok(result: u32) -> Outcome {
    (Status::SUCCESS, result)
}

pub(super) fn fail(status: Status) -> Outcome {
    (status.do_not_retry(), 0)
}

pub(super) fn generic_error(sc: u8) -> Outcome {
    fail(Status::generic(sc))
}

pub(super) fn specific_error(sc: u8) -> Outcome {
    fail(Status::new(sct::COMMAND_SPECIFIC, sc))
}

pub(super) struct SubmissionQueue {
    pub(super) iova: u64,
    pub(super) entries: u16,
    pub(super) head: u16,
    pub(super) cqid: u16,
}

pub(super) struct CompletionQueue {
    pub(super) iova: u64,
    pub(super) entries: u16,
    pub(super) tail: u16,
    pub(super) phase: bool,
}

pub(super) struct PendingCompletion {
    due: Instant,
    pub(super) sqid: u16,
    pub(super) cid: u16,
    pub(super) outcome: Outcome,
}

/// A namespace and its medium.
pub(super) struct Medium {
    pub(super) nsid: u32,
    pub(super) blocks: u64,
    pub(super) block_size: u32,
    pub(super) disk: RamDisk,
}

/// Everything behind the register file.
pub(super) struct DeviceState {
    pub(super) config: SimConfig,
    pub(super) cap: Cap,
    pub(super) doorbell_stride: usize,
    pub(super) last_cc: Cc,
    pub(super) enabled: bool,
    pub(super) fatal: bool,
    pub(super) shut_down: bool,
    /// Index = queue id; 0 is the admin queue.
    pub(super) sqs: Vec<Option<SubmissionQueue>>,
    pub(super) cqs: Vec<Option<CompletionQueue>>,
    pub(super) pending: VecDeque<PendingCompletion>,
    /// Fetched commands whose completion is being withheld (sqid, cid).
    pub(super) lost: Vec<(u16, u16)>,
    /// Fetched commands held before their data moves ([`Fault::HoldCommand`]): (sqid, command).
    pub(super) held: Vec<(u16, Command)>,
    /// Completions to send a second time when the next command of their queue is fetched
    /// ([`Fault::DuplicateCompletion`]): (sqid, cid, outcome).
    pub(super) duplicates: Vec<(u16, u16, Outcome)>,
    pub(super) duplicate_completions: u64,
    pub(super) resets: u64,
    /// Async Event Requests waiting for an event (cid).
    pub(super) async_events: Vec<u16>,
    pub(super) faults: Vec<Fault>,
    pub(super) ignore_abort: bool,
    pub(super) features: HashMap<u8, u32>,
    pub(super) io_queues_granted: u16,
    pub(super) media: Vec<Medium>,
    pub(super) commands: u64,
    pub(super) data_units_read: u128,
    pub(super) data_units_written: u128,
    /// Reused scratch for the (IOVA, length) segments of one transfer.
    pub(super) segments: Vec<(u64, usize)>,
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
        bar.write64(regs::CAP, cap.into_bits());
        bar.write32(regs::VS, VERSION.into_bits());
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
            last_cc: Cc::new(),
            enabled: false,
            fatal: false,
            shut_down: false,
            sqs: (0..queues).map(|_| None).collect(),
            cqs: (0..queues).map(|_| None).collect(),
            pending: VecDeque::new(),
            lost: Vec::new(),
            held: Vec::new(),
            duplicates: Vec::new(),
            duplicate_completions: 0,
            resets: 0,
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
                set_fatal_status(bar);
            }
            other => self.faults.push(other),
        }
    }

    pub(super) fn stats(&self) -> SimStats {
        SimStats {
            commands: self.commands,
            iommu_faults: 0,
            io_queues: self.sqs.iter().skip(1).filter(|q| q.is_some()).count() as u16,
            in_flight: self.pending.len()
                + self.lost.len()
                + self.held.len()
                + self.async_events.len(),
            held: self.held.len(),
            duplicate_completions: self.duplicate_completions,
            resets: self.resets,
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

    pub(super) fn on_config_change(&mut self, config: Cc, bar: &Mmio) {
        let was_enabled = self.last_cc.en();
        let enable = config.en();
        self.last_cc = config;
        if was_enabled && !enable {
            self.disable(bar);
            return;
        }
        if !was_enabled && enable {
            self.enable(config, bar);
        }
        if enable && config.shn() != ShutdownNotification::None && !self.shut_down {
            self.shut_down = true;
            bar.set_csts(bar.csts().with_shst(ShutdownStatus::Complete));
        }
    }

    fn enable(&mut self, config: Cc, bar: &Mmio) {
        let aqa = Aqa::from_bits(bar.read32(regs::AQA));
        let sq_entries = aqa.asqs() + 1;
        let cq_entries = aqa.acqs() + 1;
        if config.iosqes() != regs::IOSQES
            || config.iocqes() != regs::IOCQES
            || sq_entries < 2
            || cq_entries < 2
        {
            log::error!(
                "simulated controller: bad CC {:#x} or AQA {:#x}; fatal",
                config.into_bits(),
                aqa.into_bits()
            );
            self.fatal = true;
            bar.set_csts(Csts::new().with_cfs(true));
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
        bar.set_csts(Csts::new().with_rdy(true));
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
        self.held.clear();
        self.duplicates.clear();
        self.async_events.clear();
        self.io_queues_granted = 0;
        for qid in 0..self.sqs.len() as u16 {
            bar.write32(regs::sq_tail_doorbell(qid, self.doorbell_stride), 0);
            bar.write32(regs::cq_head_doorbell(qid, self.doorbell_stride), 0);
        }
        self.resets += 1;
        bar.set_csts(Csts::new());
    }

    pub(super) fn complete(&mut self, sqid: u16, cid: u16, outcome: Outcome) {
        self.complete_after(self.config.latency, sqid, cid, outcome);
    }

    pub(super) fn complete_after(
        &mut self,
        latency: std::time::Duration,
        sqid: u16,
        cid: u16,
        outcome: Outcome,
    ) {
        self.pending.push_back(PendingCompletion {
            due: Instant::now() + latency,
            sqid,
            cid,
            outcome,
        });
    }

    pub(super) fn post_due(&mut self, bar: &Mmio, iommu: &SimIommu) -> bool {
        let mut busy = false;
        let now = Instant::now();
        let mut index = 0;
        while index < self.pending.len() {
            let pending = &self.pending[index];
            if pending.due > now {
                // Not in due order: a slow Get Log Page does not hold back what follows.
                index += 1;
                continue;
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

    pub(super) fn post(
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
        // The status word with the phase tag is written last, alone, after a fence, so the
        // driver never sees a torn entry.
        let written = iommu.access(address, CQE_SIZE, |cqe| {
            cqe.copy_from(&bytes[..CQE_SIZE - 2]);
            fence(Ordering::Release);
            cqe.get_ref::<u16>(CQE_SIZE - 2)
                .expect("the status word is inside the entry")
                .store(completion.status_phase);
        });
        if written.is_none() {
            return Posted::QueueGone;
        }
        cq.tail += 1;
        if cq.tail == cq.entries {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        Posted::Done
    }
}

pub(super) enum Posted {
    Done,
    QueueFull,
    QueueGone,
}
