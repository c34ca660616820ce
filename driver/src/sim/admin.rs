//! The simulated controller's admin commands: Identify, Get Log Page, features, queue creation
//! and deletion, Abort, Async Event Request. One function per command, apart from the queue and
//! register handling in [`super::device`].

use super::config::VERSION;
use super::device::{
    fail, generic_error, ok, specific_error, CompletionQueue, DeviceState, Outcome, SubmissionQueue,
};
use super::iommu::SimIommu;
use crate::mmio::Mmio;
use vfnvme_spec::identify::{
    build_active_namespace_list, IdentifyController, IdentifyNamespace, NamespaceIds, VWC_PRESENT,
};
use vfnvme_spec::log_page::{log_id, ErrorLogEntry, FirmwareSlotLog, SmartLog};
use vfnvme_spec::padded::PaddedString;
use vfnvme_spec::regs;
use vfnvme_spec::status::{command_specific as cs, generic};
use vfnvme_spec::{admin_opcode, cns, feature, Command, Status, CQE_SIZE, PAGE_SIZE, SQE_SIZE};

/// FLBAS bit 4: metadata is transferred at the end of each block (extended LBA).
const FLBAS_EXTENDED_METADATA: u8 = 1 << 4;

impl DeviceState {
    /// `None` when the command completes later (Async Event Request).
    pub(super) fn execute_admin(
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
            ver: VERSION.into_bits().into(),
            acl: 3,
            aerl: 3,
            frmw: 0x02,
            lpa: 0x02,
            elpe: 15,
            sqes: 0x66,
            cqes: 0x44,
            nn: self.media.iter().map(|m| m.nsid).max().unwrap_or(0).into(),
            oncs: self.config.oncs.into(),
            vwc: if self.config.volatile_write_cache {
                VWC_PRESENT
            } else {
                0
            },
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
                    self.namespace_ids(medium.nsid).fill(&mut identify);
                    if self.config.metadata_size != 0 {
                        // Format 1: the same blocks with metadata, in use, as extended LBAs.
                        identify.nlbaf = 1;
                        identify.lbaf[1] = identify.lbaf[0];
                        identify.lbaf[1].ms = self.config.metadata_size.into();
                        identify.flbas = 1 | FLBAS_EXTENDED_METADATA;
                    }
                    identify.to_bytes()
                }
                None => return generic_error(generic::INVALID_NAMESPACE_OR_FORMAT),
            },
            cns::ACTIVE_NAMESPACE_LIST => {
                let nsids: Vec<u32> = self.media.iter().map(|m| m.nsid).collect();
                build_active_namespace_list(&nsids, command.nsid)
            }
            cns::NAMESPACE_ID_DESCRIPTORS => match self.medium(command.nsid) {
                Some(medium) => self.namespace_ids(medium.nsid).descriptor_list(0),
                None => return generic_error(generic::INVALID_NAMESPACE_OR_FORMAT),
            },
            _ => return generic_error(generic::INVALID_FIELD),
        };
        self.copy_to_host(command, &data, iommu)
    }

    fn namespace_ids(&self, nsid: u32) -> NamespaceIds {
        self.config
            .namespaces
            .iter()
            .find(|namespace| namespace.nsid == nsid)
            .map_or_else(NamespaceIds::default, |namespace| namespace.ids)
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
        if !iommu.is_mapped(command.prp1, usize::from(entries) * CQE_SIZE) {
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
        if !iommu.is_mapped(command.prp1, usize::from(entries) * SQE_SIZE) {
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
        // Withheld and held commands of this queue complete as aborted before the queue goes
        // away; their data never moves.
        let aborted: Vec<u16> = self
            .lost
            .iter()
            .filter(|(sqid, _)| *sqid == qid)
            .map(|(_, cid)| *cid)
            .chain(
                self.held
                    .iter()
                    .filter(|(sqid, _)| *sqid == qid)
                    .map(|(_, command)| command.cid()),
            )
            .collect();
        self.lost.retain(|(sqid, _)| *sqid != qid);
        self.held.retain(|(sqid, _)| *sqid != qid);
        self.duplicates.retain(|(sqid, ..)| *sqid != qid);
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
