//! One round of the simulated device: noticing register changes, fetching commands from the
//! submission queues, and dispatching each to `admin` or `io` (or failing it, when a fault is
//! injected). Its own file because it is the only part that uses both command sets.

use std::sync::atomic::{fence, Ordering};

use super::config::Fault;
use super::device::{set_fatal_status, DeviceState};
use super::iommu::SimIommu;
use crate::mmio::Mmio;
use vfnvme_spec::{regs, Command, SQE_SIZE};

impl DeviceState {
    /// One round of the device: register changes, commands, due completions.
    pub(super) fn step(&mut self, bar: &Mmio, iommu: &SimIommu) -> bool {
        let mut busy = false;
        let config = bar.cc();
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
                let mut latency = self.config.latency;
                if command.opcode() == vfnvme_spec::admin_opcode::GET_LOG_PAGE {
                    latency += self.config.log_page_latency;
                }
                self.complete_after(latency, qid, command.cid(), outcome);
            }
        } else {
            let outcome = self.execute_io(&command, iommu);
            self.complete(qid, command.cid(), outcome);
        }
    }

    pub(super) fn consume_fault(&mut self, position: usize, count: u32) {
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
}
