//! RAM standing in for an NVMe namespace's medium: anonymous memory, zero until written. The
//! target serves RAM namespaces from it directly (no controller, no IOMMU in between), and the
//! simulated controller keeps its namespaces in it. Its own module because the target's
//! production path uses it and the simulator is optional.
//!
//! Several threads may read and write one disk at once, as several queues of a drive do: the
//! memory is a [`DmaMemory`], reached only by volatile copies, like a device's DMA engine, never
//! through Rust references. Overlapping writes in flight at the same time leave either one's
//! data, as on a real drive.

#![forbid(unsafe_code)]

use vm_memory::volatile_memory::VolatileSlice;

use crate::dma::DmaMemory;
use vfnvme_spec::status::generic;
use vfnvme_spec::{nvm_opcode, Command, DsmRange, Status, DSM_ATTR_DEALLOCATE};

pub struct RamDisk {
    blocks: u64,
    block_size: u32,
    bytes: DmaMemory,
}

impl RamDisk {
    pub fn new(blocks: u64, block_size: u32) -> std::io::Result<Self> {
        let len = blocks
            .checked_mul(u64::from(block_size))
            .and_then(|len| usize::try_from(len).ok())
            .ok_or_else(|| std::io::Error::other("RAM disk size overflows"))?;
        Ok(Self {
            blocks,
            block_size,
            bytes: DmaMemory::anonymous(len)?,
        })
    }

    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Byte offset and length of `count` blocks from `slba`, or LBA Out of Range.
    pub fn byte_range(&self, slba: u64, count: u64) -> Result<(u64, usize), Status> {
        if slba.checked_add(count).is_none_or(|end| end > self.blocks) {
            return Err(Status::generic(generic::LBA_OUT_OF_RANGE).do_not_retry());
        }
        let block_size = u64::from(self.block_size);
        Ok((slba * block_size, (count * block_size) as usize))
    }

    /// A volatile view of `len` bytes at `offset`, checked to lie inside the disk: what a
    /// (simulated) DMA engine copies to and from.
    pub fn volatile(&self, offset: u64, len: usize) -> VolatileSlice<'_> {
        self.bytes.volatile(self.offset(offset, len), len)
    }

    fn offset(&self, offset: u64, len: usize) -> usize {
        assert!(
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.bytes.len() as u64),
            "{len} bytes at {offset} outside a {} byte RAM disk",
            self.bytes.len()
        );
        offset as usize
    }

    pub fn read(&self, offset: u64, out: &mut [u8]) {
        self.bytes.read(self.offset(offset, out.len()), out);
    }

    pub fn write(&self, offset: u64, data: &[u8]) {
        self.bytes.write(self.offset(offset, data.len()), data);
    }

    pub fn zero(&self, offset: u64, len: usize) {
        self.bytes.zero(self.offset(offset, len), len);
    }

    /// Deallocates (zeroes: deallocated blocks read as zeroes) every range, after checking them
    /// all.
    pub fn deallocate(&self, ranges: &[DsmRange]) -> Result<(), Status> {
        let spans = ranges
            .iter()
            .map(|range| self.byte_range(range.slba, u64::from(range.blocks)))
            .collect::<Result<Vec<_>, _>>()?;
        for (offset, len) in spans {
            self.zero(offset, len);
        }
        Ok(())
    }

    /// Executes an NVM command whose data is in `data` (host memory): Read fills it, Write and
    /// Dataset Management take from it. Returns the completion status.
    pub fn execute(&self, command: &Command, data: &mut [u8]) -> Status {
        let blocks = || self.byte_range(command.slba(), u64::from(command.nlb()));
        let range = || {
            let (offset, len) = blocks()?;
            if len > data.len() {
                return Err(Status::generic(generic::DATA_TRANSFER_ERROR).do_not_retry());
            }
            Ok((offset, len))
        };
        let outcome = match command.opcode() {
            nvm_opcode::READ => range().map(|(offset, len)| self.read(offset, &mut data[..len])),
            nvm_opcode::WRITE => range().map(|(offset, len)| self.write(offset, &data[..len])),
            nvm_opcode::WRITE_ZEROES => blocks().map(|(offset, len)| self.zero(offset, len)),
            nvm_opcode::FLUSH => Ok(()),
            nvm_opcode::DATASET_MANAGEMENT => {
                let count = (command.cdw10 & 0xff) as usize + 1;
                if data.len() < count * 16 {
                    Err(Status::generic(generic::DATA_TRANSFER_ERROR).do_not_retry())
                } else if command.cdw11 & DSM_ATTR_DEALLOCATE != 0 {
                    let ranges: Vec<DsmRange> = data[..count * 16]
                        .chunks_exact(16)
                        .map(|chunk| DsmRange::from_bytes(chunk.try_into().expect("16 bytes")))
                        .collect();
                    self.deallocate(&ranges)
                } else {
                    Ok(())
                }
            }
            _ => Err(Status::generic(generic::INVALID_OPCODE).do_not_retry()),
        };
        outcome.err().unwrap_or(Status::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_move_data_and_check_ranges() {
        let disk = RamDisk::new(64, 512).unwrap();
        let mut block = vec![0xabu8; 1024];
        let write = Command::nvm_rw(nvm_opcode::WRITE, 1, 10, 2);
        assert_eq!(disk.execute(&write, &mut block), Status::SUCCESS);
        let mut back = vec![0u8; 1024];
        let read = Command::nvm_rw(nvm_opcode::READ, 1, 10, 2);
        assert_eq!(disk.execute(&read, &mut back), Status::SUCCESS);
        assert_eq!(back, block);
        let past_end = Command::nvm_rw(nvm_opcode::READ, 1, 63, 2);
        let status = disk.execute(&past_end, &mut back);
        assert!(status.same_code(Status::generic(generic::LBA_OUT_OF_RANGE)));
        let zeroes = Command::nvm_rw(nvm_opcode::WRITE_ZEROES, 1, 11, 1);
        assert_eq!(disk.execute(&zeroes, &mut []), Status::SUCCESS);
        disk.read(10 * 512, &mut back);
        assert!(back[..512].iter().all(|&b| b == 0xab));
        assert!(back[512..].iter().all(|&b| b == 0));
    }
}
