//! The target's drives: an append-only table of [`DriveSlot`]s, so that a drive opened while
//! the target runs (`nvmf_subsystem_add_ns`) gets the next index and an index, once given, is
//! never another drive's (a namespace route or a poll group's queue that outlived its drive
//! can only ever reach that drive's slot, which says it was removed).
//!
//! Reading a slot is two atomic loads (a chunk, then the slot in it: `OnceLock`s) and takes no
//! lock, so the I/O path may look a drive up per command. Appending is the management
//! thread's (and the start's), serialised by a mutex the readers never see.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::backend::DriveSlot;

/// Slots per chunk: a chunk is allocated when its first drive is appended.
const CHUNK: usize = 64;
/// Chunks of the table.
const CHUNKS: usize = 1024;
/// Drives a target can open in its life (each drive opened takes a slot for good).
pub const MAX_DRIVES: usize = CHUNK * CHUNKS;

/// `CHUNK` slots, each set once.
type Chunk = Box<[OnceLock<DriveSlot>]>;

/// Every drive the target opened since it started, released ones included.
pub struct DriveTable {
    chunks: Box<[OnceLock<Chunk>]>,
    len: AtomicUsize,
    appending: Mutex<()>,
}

/// The table holds [`MAX_DRIVES`] drives already.
#[derive(Debug, thiserror::Error)]
#[error(
    "the target has opened {MAX_DRIVES} drives since it started, as many as it can; restart it \
     to open more"
)]
pub struct TableFull;

impl Default for DriveTable {
    fn default() -> Self {
        Self {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            appending: Mutex::new(()),
        }
    }
}

impl DriveTable {
    /// Appends `slot`; returns its index.
    pub fn push(&self, slot: DriveSlot) -> Result<usize, TableFull> {
        let _appending = self.appending.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.len.load(Ordering::Acquire);
        let chunk = self.chunks.get(index / CHUNK).ok_or(TableFull)?;
        let chunk = chunk.get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        if chunk[index % CHUNK].set(slot).is_err() {
            unreachable!("slots past the length are empty");
        }
        self.len.store(index + 1, Ordering::Release);
        Ok(index)
    }

    /// Drive `index`, if the table has it. No lock, no allocation.
    pub fn get(&self, index: usize) -> Option<&DriveSlot> {
        self.chunks
            .get(index / CHUNK)?
            .get()?
            .get(index % CHUNK)?
            .get()
    }

    /// How many drives were appended.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The drives, in the order they were appended, with their indices.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (usize, &DriveSlot)> {
        (0..self.len()).filter_map(|index| self.get(index).map(|slot| (index, slot)))
    }
}

impl std::ops::Index<usize> for DriveTable {
    type Output = DriveSlot;

    /// Drive `index`, which the caller was given by [`DriveTable::push`] (a route, a queue).
    fn index(&self, index: usize) -> &DriveSlot {
        self.get(index)
            .expect("drive indices come from the table and are never taken back")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Drive;

    fn ram(name: &str) -> DriveSlot {
        DriveSlot::new(name.into(), Drive::ram(8, 512).unwrap(), 4096).unwrap()
    }

    #[test]
    fn drives_are_appended_across_chunks_and_keep_their_index() {
        let table = DriveTable::default();
        assert!(table.is_empty() && table.get(0).is_none());
        for index in 0..CHUNK + 3 {
            assert_eq!(table.push(ram(&format!("ram:{index}"))).unwrap(), index);
        }
        assert_eq!(table.len(), CHUNK + 3);
        assert_eq!(table[CHUNK + 1].name(), format!("ram:{}", CHUNK + 1));
        assert_eq!(table.get(2).unwrap().buffer_size(), 4096);
        assert!(table.get(CHUNK + 3).is_none() && table.get(MAX_DRIVES).is_none());
        let names: Vec<&str> = table.iter().rev().take(2).map(|(_, s)| s.name()).collect();
        assert_eq!(
            names,
            [format!("ram:{}", CHUNK + 2), format!("ram:{}", CHUNK + 1)]
        );
    }
}
