//! The simulator's IOMMU: which IOVAs the driver mapped, and to which memory. The simulated
//! device reaches host memory only through [`SimIommu::access`], which counts every access to
//! an IOVA that is not mapped as a fault.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use vm_memory::volatile_memory::VolatileSlice;

use crate::dma::{DmaMapper, DmaMemory};
use crate::error::{DmaError, Result};

/// The memory behind each mapping, keyed by its IOVA.
#[derive(Default)]
pub struct SimIommu {
    mappings: RwLock<BTreeMap<u64, DmaMemory>>,
    faults: AtomicU64,
}

impl SimIommu {
    /// Runs `access` on a volatile view of the `len` bytes at `iova`, if one mapping covers them
    /// all; otherwise an IOMMU fault is counted and `None` returned. The lookup and the access
    /// happen under one read guard, and the mapping holds its memory alive, so an unmap racing
    /// an access waits for it: the access is either a fault or reaches memory that is alive.
    pub fn access<R>(
        &self,
        iova: u64,
        len: usize,
        access: impl FnOnce(VolatileSlice<'_>) -> R,
    ) -> Option<R> {
        let mappings = self.mappings.read().unwrap_or_else(|p| p.into_inner());
        let found = mappings
            .range(..=iova)
            .next_back()
            .filter(|(start, memory)| {
                iova.checked_add(len as u64)
                    .is_some_and(|end| end <= **start + memory.len() as u64)
            })
            .map(|(start, memory)| access(memory.volatile((iova - start) as usize, len)));
        if found.is_none() {
            self.faults.fetch_add(1, Ordering::Relaxed);
            log::error!("simulated IOMMU fault: {len} bytes at IOVA {iova:#x} are not mapped");
        }
        found
    }

    /// Whether `len` bytes at `iova` are mapped (a fault is counted if not).
    pub(crate) fn is_mapped(&self, iova: u64, len: usize) -> bool {
        self.access(iova, len, |_| ()).is_some()
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    pub fn mapped_bytes(&self) -> usize {
        let mappings = self.mappings.read().unwrap_or_else(|p| p.into_inner());
        mappings.values().map(DmaMemory::len).sum()
    }
}

impl DmaMapper for SimIommu {
    fn map(&self, memory: &DmaMemory, iova: u64) -> Result<()> {
        let len = memory.len();
        let mut mappings = self.mappings.write().map_err(|_| DmaError::Poisoned)?;
        let overlaps = mappings
            .range(..iova + len as u64)
            .next_back()
            .is_some_and(|(start, mapped)| start + mapped.len() as u64 > iova);
        if overlaps {
            return Err(DmaError::Map {
                iova,
                len,
                reason: "overlaps an existing mapping".into(),
            }
            .into());
        }
        mappings.insert(iova, memory.clone());
        Ok(())
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<()> {
        let mut mappings = self.mappings.write().map_err(|_| DmaError::Poisoned)?;
        match mappings.get(&iova) {
            Some(memory) if memory.len() == len => {
                mappings.remove(&iova);
                Ok(())
            }
            _ => Err(DmaError::Unmap {
                iova,
                len,
                reason: "no such mapping".into(),
            }
            .into()),
        }
    }
}
