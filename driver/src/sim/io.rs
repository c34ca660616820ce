//! The simulated controller's data movement (PRP lists, copies between host memory and the
//! medium through the IOMMU) and its NVM commands.

use vm_memory::volatile_memory::VolatileSlice;
use vm_memory::VolatileMemory;

use super::device::{fail, generic_error, ok, DeviceState, Medium, Outcome};
use super::iommu::SimIommu;
use vfnvme_spec::status::generic;
use vfnvme_spec::{nvm_opcode, Command, DsmRange, DSM_ATTR_DEALLOCATE, PAGE_SIZE};

impl DeviceState {
    pub(super) fn medium(&self, nsid: u32) -> Option<&Medium> {
        self.media.iter().find(|m| m.nsid == nsid)
    }

    pub(super) fn copy_to_host(
        &mut self,
        command: &Command,
        data: &[u8],
        iommu: &SimIommu,
    ) -> Outcome {
        let mut owned = data.to_vec();
        let local = VolatileSlice::from(&mut owned[..]);
        match transfer(&mut self.segments, command, local, true, iommu) {
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

    pub(super) fn execute_io(&mut self, command: &Command, iommu: &SimIommu) -> Outcome {
        match command.opcode() {
            nvm_opcode::READ | nvm_opcode::WRITE => {
                let (index, offset, len) = match self.lba_range(command) {
                    Ok(range) => range,
                    Err(outcome) => return outcome,
                };
                if len > self.max_transfer() {
                    return generic_error(generic::INVALID_FIELD);
                }
                let read = command.opcode() == nvm_opcode::READ;
                let local = self.media[index].disk.volatile(offset, len);
                if let Err(outcome) = transfer(&mut self.segments, command, local, read, iommu) {
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
        let local = VolatileSlice::from(&mut raw[..]);
        if let Err(outcome) = transfer(&mut self.segments, command, local, false, iommu) {
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

/// Fills `segments` with the (IOVA, length) pieces of a `len` byte transfer described
/// by the command's PRP1/PRP2. `Err` is the status to complete with.
fn walk_prps(
    segments: &mut Vec<(u64, usize)>,
    command: &Command,
    len: usize,
    iommu: &SimIommu,
) -> Result<(), Outcome> {
    segments.clear();
    let page = PAGE_SIZE as u64;
    let first = len.min((page - command.prp1 % page) as usize);
    segments.push((command.prp1, first));
    let mut remaining = len - first;
    if remaining == 0 {
        return Ok(());
    }
    if remaining <= PAGE_SIZE {
        if !command.prp2.is_multiple_of(page) {
            return Err(generic_error(generic::INVALID_PRP_OFFSET));
        }
        segments.push((command.prp2, remaining));
        return Ok(());
    }
    let mut list = command.prp2;
    if !list.is_multiple_of(8) {
        return Err(generic_error(generic::INVALID_PRP_OFFSET));
    }
    while remaining > 0 {
        let slots = ((page - list % page) / 8) as usize;
        let walked = iommu.access(list, slots * 8, |entries| {
            for slot in 0..slots {
                let entry = entries
                    .get_ref::<u64>(slot * 8)
                    .expect("inside the list page")
                    .load();
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
                segments.push((entry, piece));
                remaining -= piece;
                if remaining == 0 {
                    break;
                }
            }
            Ok(())
        });
        walked.unwrap_or(Err(generic_error(generic::DATA_TRANSFER_ERROR)))?;
    }
    Ok(())
}

/// Moves the bytes of `local` between the command's data buffer and `local`: into host
/// memory when `to_host`, else out of it.
fn transfer(
    segments: &mut Vec<(u64, usize)>,
    command: &Command,
    local: VolatileSlice<'_>,
    to_host: bool,
    iommu: &SimIommu,
) -> Result<(), Outcome> {
    walk_prps(segments, command, local.len(), iommu)?;
    let mut done = 0;
    for &(iova, piece) in segments.iter() {
        let near = local
            .subslice(done, piece)
            .expect("the segments add up to the transfer");
        let moved = iommu.access(iova, piece, |host| {
            if to_host {
                near.copy_to_volatile_slice(host);
            } else {
                host.copy_to_volatile_slice(near);
            }
        });
        if moved.is_none() {
            return Err(generic_error(generic::DATA_TRANSFER_ERROR));
        }
        done += piece;
    }
    Ok(())
}
