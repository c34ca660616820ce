//! The simulator's IOMMU: which IOVAs the driver mapped, and to which host memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::dma::DmaMapper;
use crate::error::{DmaError, Result};

/// Host address and length of a mapping, keyed by its IOVA.
#[derive(Default)]
pub struct SimIommu {
    mappings: RwLock<BTreeMap<u64, (usize, usize)>>,
    faults: AtomicU64,
}

impl SimIommu {
    /// The host address of `len` bytes at `iova`, if one mapping covers them all; otherwise an
    /// IOMMU fault is counted.
    pub(crate) fn translate(&self, iova: u64, len: usize) -> Option<*mut u8> {
        let mappings = self.mappings.read().unwrap_or_else(|p| p.into_inner());
        let found = mappings
            .range(..=iova)
            .next_back()
            .filter(|(start, (map_len, _))| {
                iova.checked_add(len as u64)
                    .is_some_and(|end| end <= **start + *map_len as u64)
            })
            .map(|(start, (_, host))| (*host + (iova - start) as usize) as *mut u8);
        if found.is_none() {
            self.faults.fetch_add(1, Ordering::Relaxed);
            log::error!("simulated IOMMU fault: {len} bytes at IOVA {iova:#x} are not mapped");
        }
        found
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    pub fn mapped_bytes(&self) -> usize {
        let mappings = self.mappings.read().unwrap_or_else(|p| p.into_inner());
        mappings.values().map(|(len, _)| len).sum()
    }
}

impl DmaMapper for SimIommu {
    unsafe fn map(&self, vaddr: *mut u8, len: usize, iova: u64) -> Result<()> {
        let mut mappings = self.mappings.write().map_err(|_| DmaError::Poisoned)?;
        let overlaps = mappings
            .range(..iova + len as u64)
            .next_back()
            .is_some_and(|(start, (map_len, _))| start + *map_len as u64 > iova);
        if overlaps {
            return Err(DmaError::Map {
                iova,
                len,
                reason: "overlaps an existing mapping".into(),
            }
            .into());
        }
        mappings.insert(iova, (len, vaddr as usize));
        Ok(())
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<()> {
        let mut mappings = self.mappings.write().map_err(|_| DmaError::Poisoned)?;
        match mappings.get(&iova) {
            Some((map_len, _)) if *map_len == len => {
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
