//! One round of the simulated device: noticing register changes, fetching commands from the
//! submission queues, and dispatching each to `admin` or `io` (or failing it, when a fault is
//! injected). Its own file because it is the only part that uses both command sets.

use std::sync::atomic::{fence, Ordering};

use super::config::Fault;
use super::device::{set_fatal_status, DeviceState, Outcome};
use super::iommu::SimIommu;
use crate::mmio::Mmio;
use vfnvme_spec::{regs, Command, SQE_SIZE};

impl DeviceState {
    /// One round of the device: register changes, commands, due completions.
    pub(super) fn step(&mut self, bar: &Mmio, iommu: &SimIommu) -> bool {
        let mut busy = false;
        let config = bar.cc();
        if config != self.last_cc && !self.held.is_empty() {
            // Busy with a transfer: the register change (a disable) waits until it is done.
            return false;
        }
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

    pub(super) fn fetch_commands(&mut self, qid: u16, bar: &Mmio, iommu: &SimIommu) -> bool {
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
                set_fatal_status(bar);
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
            let mut entry = [0u8; SQE_SIZE];
            if iommu
                .access(address, SQE_SIZE, |sqe| sqe.copy_to(&mut entry[..]))
                .is_none()
            {
                self.fatal = true;
                set_fatal_status(bar);
                return true;
            }
            let command = Command::from_bytes(&entry);
            self.commands += 1;
            self.dispatch(qid, command, bar, iommu);
        }
    }

    pub(super) fn dispatch(&mut self, qid: u16, command: Command, bar: &Mmio, iommu: &SimIommu) {
        let cid = command.cid();
        // A duplicate armed by an earlier command of this queue goes out now, before this
        // command's own completion: the driver may already have reused the earlier one's slot.
        if let Some(position) = self.duplicates.iter().position(|d| d.0 == qid) {
            let (_, duplicate_cid, outcome) = self.duplicates.remove(position);
            self.duplicate_completions += 1;
            self.complete(qid, duplicate_cid, outcome);
        }
        match self.take_fault(qid == 0, command.opcode()) {
            Some(Fault::FailCommand { status, .. }) => self.complete(qid, cid, (status, 0)),
            Some(Fault::LoseCompletion { .. }) => self.lost.push((qid, cid)),
            Some(Fault::HoldCommand { .. }) => self.held.push((qid, command)),
            fault => {
                let Some(outcome) = self.execute(qid, &command, bar, iommu) else {
                    return;
                };
                let mut latency = self.config.latency;
                if qid == 0 && command.opcode() == vfnvme_spec::admin_opcode::GET_LOG_PAGE {
                    latency += self.config.log_page_latency;
                }
                self.complete_after(latency, qid, cid, outcome);
                if matches!(fault, Some(Fault::DuplicateCompletion { .. })) {
                    self.duplicates.push((qid, cid, outcome));
                }
            }
        }
    }

    /// What the command does; `None` when it completes later (Async Event Request).
    fn execute(
        &mut self,
        qid: u16,
        command: &Command,
        bar: &Mmio,
        iommu: &SimIommu,
    ) -> Option<Outcome> {
        if qid == 0 {
            self.execute_admin(command, bar, iommu)
        } else {
            Some(self.execute_io(command, iommu))
        }
    }

    /// Moves the data of every held command and queues its completion. Returns how many.
    pub(super) fn release_held(&mut self, bar: &Mmio, iommu: &SimIommu) -> usize {
        let held = std::mem::take(&mut self.held);
        for (qid, command) in &held {
            if let Some(outcome) = self.execute(*qid, command, bar, iommu) {
                self.complete(*qid, command.cid(), outcome);
            }
        }
        held.len()
    }

    /// The first injected fault for this kind of command, used up by one.
    fn take_fault(&mut self, admin: bool, opcode: u8) -> Option<Fault> {
        let position = self.faults.iter().position(|fault| match *fault {
            Fault::FailCommand {
                admin: a,
                opcode: o,
                ..
            }
            | Fault::LoseCompletion {
                admin: a,
                opcode: o,
                ..
            }
            | Fault::HoldCommand {
                admin: a,
                opcode: o,
                ..
            }
            | Fault::DuplicateCompletion {
                admin: a,
                opcode: o,
                ..
            } => a == admin && o == opcode,
            Fault::IgnoreAbort | Fault::Fatal => false,
        })?;
        let fault = self.faults[position];
        match &mut self.faults[position] {
            Fault::FailCommand { count, .. }
            | Fault::LoseCompletion { count, .. }
            | Fault::HoldCommand { count, .. }
            | Fault::DuplicateCompletion { count, .. } => {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.faults.remove(position);
                }
            }
            Fault::IgnoreAbort | Fault::Fatal => {}
        }
        Some(fault)
    }
}
