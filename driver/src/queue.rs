//! Submission/completion queue pairs in DMA memory: command ids, PRP lists, phase tags and
//! doorbells. A `QueuePair` is owned by one thread (`Send`, not `Sync`); nothing here locks or
//! allocates after construction.
//!
//! A queue pair rings its doorbells at once (each submission writes the SQ tail, each poll
//! that reaped writes the CQ head), or, once [batched](QueuePair::batch_doorbells), as SPDK's
//! driver does with `delay_cmd_submit`: a submission only writes its entry, and the next
//! [`QueuePair::poll`] writes the CQ head once for everything reaped before, then the SQ tail
//! once for everything submitted since. Each doorbell is an uncached write (an exit to the
//! device model on an emulated controller). The tail goes last, as in SPDK, so the device starts
//! on the new commands with no register write of ours behind them.
//!
//! Entries are moved in and out of the rings with volatile copies through raw pointers; no Rust
//! reference ever points into queue memory, which the device writes concurrently.

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use crate::dma::{DmaBuffer, DmaRegion, DmaSpace};
use crate::error::Result;
use crate::mmio::{Doorbell, Mmio};
use vfnvme_spec::{self, Command, Completion, Status, CQE_SIZE, PAGE_SIZE, SQE_SIZE};

// Entries are written and read as their in-memory representation, which is the little-endian
// wire layout.
#[cfg(not(target_endian = "little"))]
compile_error!("queue entries are copied as in-memory structs, which needs a little-endian host");

/// The largest transfer one command can describe with a single PRP list page: PRP1 plus 512 list
/// entries of 4 KiB pages, less a page for a non-aligned start. Larger requests are split by the
/// caller (see `max_transfer`).
pub const MAX_PRP_TRANSFER: usize = 512 * PAGE_SIZE;

/// The most commands one queue has in flight, so that a command id keeps at least 4 bits for
/// its use count (see [`QueuePair`]); the queue has one entry more.
pub const MAX_COMMANDS: u16 = 4095;

/// Where a command's data lives: `len` bytes, contiguous in IOVA space, starting at `iova`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPointer {
    pub iova: u64,
    pub len: usize,
}

/// A command whose completion has been seen.
#[derive(Debug, PartialEq, Eq)]
pub struct Completed {
    /// The caller's tag given at submission.
    pub tag: u64,
    pub cid: u16,
    pub status: Status,
    /// Command specific result (CQE DW0).
    pub result: u32,
    /// The data buffer handed over at submission, back now that the device is done with it.
    pub buffer: Option<DmaBuffer>,
}

/// A command that was not submitted, with its buffer handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    pub error: SubmitError,
    pub buffer: Option<DmaBuffer>,
}

/// Why a command was not submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full; poll for completions and retry")]
    QueueFull,
    #[error("{len} bytes exceed the {max} bytes one command can transfer; split the request")]
    TooLarge { len: usize, max: usize },
    #[error("the data does not start on a 4-byte boundary (IOVA {iova:#x})")]
    Misaligned { iova: u64 },
    #[error("the controller was reset; poll to collect the commands it lost, then resubmit")]
    ControllerReset,
    #[error("the controller did not stop when it was reset and is out of service")]
    OutOfService,
    #[error("the buffer comes from a pool not registered with this queue pair")]
    UnregisteredBuffer,
    #[error("{len} bytes do not fit the {buffer} byte buffer")]
    BufferTooSmall { len: usize, buffer: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    InFlight,
    /// An Abort was sent for it; it still owns its command id until its completion arrives.
    AbortSent,
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    /// The command id of its current (or last) use: slot index and use count.
    cid: u16,
    tag: u64,
    /// The last timeout check before submission (no clock read on the I/O path).
    submitted: Instant,
    /// Held while the device may use it: nobody else can touch it meanwhile.
    buffer: Option<DmaBuffer>,
}

/// A command found overdue by [`QueuePair::overdue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overdue {
    pub cid: u16,
    pub tag: u64,
    /// An Abort was already sent for it and did not help.
    pub abort_sent: bool,
}

/// Layout of a queue pair's region: SQ ring, CQ ring, then one PRP list per command id.
#[derive(Clone, Copy, Debug)]
struct Layout {
    entries: u16,
    cq_offset: usize,
    prp_offset: usize,
    prp_list_bytes: usize,
    total: usize,
}

impl Layout {
    fn new(entries: u16, max_transfer: usize) -> Self {
        let sq_bytes = (entries as usize * SQE_SIZE).next_multiple_of(PAGE_SIZE);
        let cq_bytes = (entries as usize * CQE_SIZE).next_multiple_of(PAGE_SIZE);
        // One list entry per page past the first, for a transfer that may start mid-page; sized
        // to a power of two so a list never crosses a page boundary.
        let list_entries = max_transfer.div_ceil(PAGE_SIZE);
        let prp_list_bytes = (list_entries * 8).next_power_of_two().clamp(8, PAGE_SIZE);
        let commands = entries as usize - 1;
        Self {
            entries,
            cq_offset: sq_bytes,
            prp_offset: sq_bytes + cq_bytes,
            prp_list_bytes,
            total: sq_bytes + cq_bytes + commands * prp_list_bytes,
        }
    }
}

/// A submission queue and its completion queue (always paired 1:1 here). Crate-private: it
/// takes raw data pointers and can reclaim buffers after a reset, which only the controller
/// may do, and only once the device stopped.
///
/// A command id is a slot index in its low bits and, above them, how many times the slot was
/// used before (wrapping): a completion whose id does not match its slot's current use (stale,
/// sent twice, or never issued) is counted, logged and dropped, and never completes another
/// command. As in OpenVMM's `nvme_driver`, but with the count per slot and the split sized to
/// the queue (a 128-command queue keeps 9 bits of count, the largest 4).
pub(crate) struct QueuePair {
    qid: u16,
    layout: Layout,
    max_transfer: usize,
    sq_tail: u16,
    /// Oldest SQ entry the controller may not have fetched yet (from CQE SQ head pointers).
    sq_head: u16,
    cq_head: u16,
    phase: bool,
    slots: Vec<Slot>,
    /// The command id each free slot's next use gets.
    free_cids: Vec<u16>,
    /// Selects the slot index of a command id.
    cid_index_mask: u16,
    /// Added to a command id to make the id of its slot's next use.
    cid_use_step: u16,
    stale_completions: u64,
    /// Doorbells are written by the next poll (see the module's documentation).
    batched: bool,
    /// The SQ tail the device was last told of.
    sq_tail_rung: u16,
    /// Completions reaped since the CQ head doorbell was last written.
    cq_unacked: u16,
    last_check: Instant,
    sq_doorbell: Doorbell,
    cq_doorbell: Doorbell,
    /// Declared last so it is dropped last: the rings and PRP lists live here.
    memory: DmaRegion,
}

impl QueuePair {
    /// Allocates the rings for queue `qid` with `entries` slots each (so `entries - 1` commands
    /// in flight) and PRP lists for transfers of up to `max_transfer` bytes.
    pub fn new(
        qid: u16,
        entries: u16,
        max_transfer: usize,
        dma: &DmaSpace,
        registers: &Mmio,
        doorbell_stride: usize,
    ) -> Result<Self> {
        assert!(entries >= 2, "a queue needs at least 2 entries");
        let entries = entries.min(MAX_COMMANDS + 1);
        let max_transfer = max_transfer.clamp(PAGE_SIZE, MAX_PRP_TRANSFER);
        let layout = Layout::new(entries, max_transfer);
        let memory = dma.allocate(layout.total)?;
        let commands = entries - 1;
        let index_bits = u16::BITS - (commands - 1).leading_zeros();
        let now = Instant::now();
        Ok(Self {
            qid,
            layout,
            max_transfer,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: true,
            slots: (0..commands)
                .map(|_| Slot {
                    state: SlotState::Free,
                    cid: 0,
                    tag: 0,
                    submitted: now,
                    buffer: None,
                })
                .collect(),
            free_cids: (0..commands).rev().collect(),
            cid_index_mask: ((1u32 << index_bits) - 1) as u16,
            cid_use_step: 1 << index_bits,
            stale_completions: 0,
            batched: false,
            sq_tail_rung: 0,
            cq_unacked: 0,
            last_check: now,
            sq_doorbell: registers
                .doorbell(vfnvme_spec::regs::sq_tail_doorbell(qid, doorbell_stride)),
            cq_doorbell: registers
                .doorbell(vfnvme_spec::regs::cq_head_doorbell(qid, doorbell_stride)),
            memory,
        })
    }

    pub fn qid(&self) -> u16 {
        self.qid
    }

    pub fn entries(&self) -> u16 {
        self.layout.entries
    }

    pub fn sq_iova(&self) -> u64 {
        self.memory.iova()
    }

    pub fn cq_iova(&self) -> u64 {
        self.memory.iova() + self.layout.cq_offset as u64
    }

    /// The largest transfer one command may carry.
    pub fn max_transfer(&self) -> usize {
        self.max_transfer
    }

    /// Commands submitted and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.slots.len() - self.free_cids.len()
    }

    /// Commands that can be submitted right now.
    pub fn free_slots(&self) -> usize {
        self.free_cids.len()
    }

    /// Completions dropped because their command id matched no command in flight.
    pub fn stale_completions(&self) -> u64 {
        self.stale_completions
    }

    fn slot_index(&self, cid: u16) -> usize {
        usize::from(cid & self.cid_index_mask)
    }

    /// Frees the slot of command `cid`: its next use gets the next id.
    fn free_slot(&mut self, cid: u16) {
        self.free_cids.push(cid.wrapping_add(self.cid_use_step));
    }

    fn sq_full(&self) -> bool {
        (self.sq_tail + 1) % self.layout.entries == self.sq_head
    }

    /// Writes the command into the SQ and rings the doorbell (batched: leaves that to the next
    /// [`Self::poll`]). `tag` and `buffer` come back in [`Completed`]; the queue holds the
    /// buffer while the device may use it.
    pub fn submit(
        &mut self,
        mut command: Command,
        data: Option<DataPointer>,
        buffer: Option<DmaBuffer>,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let reject = |error, buffer| Err(Rejected { error, buffer });
        if self.sq_full() {
            return reject(SubmitError::QueueFull, buffer);
        }
        let Some(&cid) = self.free_cids.last() else {
            return reject(SubmitError::QueueFull, buffer);
        };
        let index = self.slot_index(cid);
        if let Some(data) = data {
            if let Err(error) = self.set_prps(&mut command, index, data) {
                return reject(error, buffer);
            }
        }
        self.free_cids.pop();
        command.set_cid(cid);
        self.slots[index] = Slot {
            state: SlotState::InFlight,
            cid,
            tag,
            submitted: self.last_check,
            buffer,
        };
        let offset = self.sq_tail as usize * SQE_SIZE;
        // SAFETY: `sq_tail < entries`, so the 64-byte entry is inside the SQ ring of `memory`;
        // the device reads it only after the SQ doorbell that follows (here or in `poll`).
        unsafe {
            self.memory
                .ptr_at(offset)
                .cast::<Command>()
                .write_volatile(command)
        };
        self.sq_tail = (self.sq_tail + 1) % self.layout.entries;
        if self.outstanding() + usize::from(self.cq_unacked) > self.slots.len() {
            // Otherwise the device could find the CQ full of entries already reaped.
            self.ring_cq_doorbell();
        }
        if !self.batched {
            self.ring_sq_doorbell();
        }
        Ok(cid)
    }

    /// Fills PRP1/PRP2 (and slot `index`'s PRP list when more than two pages are spanned).
    fn set_prps(
        &mut self,
        command: &mut Command,
        index: usize,
        data: DataPointer,
    ) -> Result<(), SubmitError> {
        if data.len > self.max_transfer {
            return Err(SubmitError::TooLarge {
                len: data.len,
                max: self.max_transfer,
            });
        }
        if !data.iova.is_multiple_of(4) {
            return Err(SubmitError::Misaligned { iova: data.iova });
        }
        let page = PAGE_SIZE as u64;
        let first_page_bytes = (page - data.iova % page) as usize;
        command.prp1 = data.iova;
        command.prp2 = 0;
        if data.len <= first_page_bytes {
            return Ok(());
        }
        let second_page = data.iova - data.iova % page + page;
        let remaining_pages = (data.len - first_page_bytes).div_ceil(PAGE_SIZE);
        if remaining_pages == 1 {
            command.prp2 = second_page;
            return Ok(());
        }
        if remaining_pages * 8 > self.layout.prp_list_bytes {
            return Err(SubmitError::TooLarge {
                len: data.len,
                max: self.max_transfer,
            });
        }
        let list_offset = self.layout.prp_offset + index * self.layout.prp_list_bytes;
        let list = self.memory.ptr_at(list_offset).cast::<u64>();
        for i in 0..remaining_pages {
            // SAFETY: `i < remaining_pages <= prp_list_bytes / 8`, inside this slot's list,
            // which the device reads only while the command is in flight.
            unsafe { list.add(i).write_volatile(second_page + i as u64 * page) };
        }
        command.prp2 = self.memory.iova() + list_offset as u64;
        Ok(())
    }

    /// From now on, submissions and completions are told to the device by the next poll.
    pub fn batch_doorbells(&mut self) {
        self.batched = true;
    }

    /// Tells the device of what was reaped and submitted since the last poll, if anything (CQ
    /// head, then SQ tail: one doorbell each at most), then reaps up to `max` completions,
    /// calling `on_complete` for each, and unless batched rings the CQ doorbell for them.
    /// Returns how many were reaped.
    pub fn poll(&mut self, max: usize, mut on_complete: impl FnMut(Completed)) -> usize {
        self.ring_cq_doorbell();
        self.ring_sq_doorbell();
        let mut reaped = 0;
        while reaped < max {
            let Some(cqe) = self.next_completion() else {
                break;
            };
            self.cq_head += 1;
            if self.cq_head == self.layout.entries {
                self.cq_head = 0;
                self.phase = !self.phase;
            }
            if cqe.sq_head < self.layout.entries {
                self.sq_head = cqe.sq_head;
            }
            reaped += 1;
            let index = self.slot_index(cqe.cid);
            let Some(slot) = self
                .slots
                .get_mut(index)
                .filter(|slot| slot.state != SlotState::Free && slot.cid == cqe.cid)
            else {
                self.stale_completions += 1;
                log::error!(
                    "queue {}: completion (status {}) for command id {:#06x}, which is not in \
                     flight (stale, sent twice or never issued); dropped",
                    self.qid,
                    cqe.status(),
                    cqe.cid
                );
                continue;
            };
            slot.state = SlotState::Free;
            let tag = slot.tag;
            let buffer = slot.buffer.take();
            self.free_slot(cqe.cid);
            on_complete(Completed {
                tag,
                cid: cqe.cid,
                status: cqe.status(),
                result: cqe.result,
                buffer,
            });
        }
        self.cq_unacked = self.cq_unacked.saturating_add(reaped as u16);
        if !self.batched {
            self.ring_cq_doorbell();
        }
        reaped
    }

    fn ring_sq_doorbell(&mut self) {
        if self.sq_tail != self.sq_tail_rung {
            // The entries must be visible in memory before the device learns of them.
            fence(Ordering::SeqCst);
            self.sq_doorbell.ring(u32::from(self.sq_tail));
            self.sq_tail_rung = self.sq_tail;
        }
    }

    fn ring_cq_doorbell(&mut self) {
        if self.cq_unacked > 0 {
            self.cq_doorbell.ring(u32::from(self.cq_head));
            self.cq_unacked = 0;
        }
    }

    fn next_completion(&self) -> Option<Completion> {
        let entry = self
            .memory
            .ptr_at(self.layout.cq_offset + self.cq_head as usize * CQE_SIZE);
        // SAFETY: `cq_head < entries`, so the 16-byte entry is inside the CQ ring; the status
        // word is read first and alone, because the device writes it last.
        let status_phase = unsafe { entry.add(14).cast::<u16>().read_volatile() };
        if (status_phase & 1 != 0) != self.phase {
            return None;
        }
        // The rest of the entry must not be read before its phase tag.
        fence(Ordering::Acquire);
        // SAFETY: as above; the whole entry is in bounds and complete once its phase flipped.
        Some(unsafe { entry.cast::<Completion>().read_volatile() })
    }

    /// Commands in flight for longer than `timeout` (measured from the timeout check before
    /// their submission, so with the granularity of how often this is called).
    pub fn overdue(&mut self, now: Instant, timeout: Duration, mut found: impl FnMut(Overdue)) {
        self.last_check = now;
        for slot in &self.slots {
            if slot.state != SlotState::Free && now.duration_since(slot.submitted) >= timeout {
                found(Overdue {
                    cid: slot.cid,
                    tag: slot.tag,
                    abort_sent: slot.state == SlotState::AbortSent,
                });
            }
        }
    }

    /// Records that an Abort was sent for `cid`, restarting its timeout.
    pub fn mark_abort_sent(&mut self, cid: u16) {
        let index = self.slot_index(cid);
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.state == SlotState::InFlight && slot.cid == cid {
                slot.state = SlotState::AbortSent;
                slot.submitted = self.last_check;
            }
        }
    }

    /// Keeps the rings mapped and allocated forever: for when the device could not be made to
    /// stop using them.
    pub fn leak_memory(&mut self) {
        self.memory.leak();
    }

    /// After the controller was reset (its queues are gone): every command still in flight is
    /// completed with `status`, and the rings start over empty.
    pub fn reset_after_controller_reset(
        &mut self,
        status: Status,
        mut on_complete: impl FnMut(Completed),
    ) {
        for slot in &mut self.slots {
            if slot.state != SlotState::Free {
                slot.state = SlotState::Free;
                self.free_cids
                    .push(slot.cid.wrapping_add(self.cid_use_step));
                on_complete(Completed {
                    tag: slot.tag,
                    cid: slot.cid,
                    status,
                    result: 0,
                    buffer: slot.buffer.take(),
                });
            }
        }
        let cq_len = self.layout.prp_offset - self.layout.cq_offset;
        // SAFETY: the CQ ring lies inside `memory`; the controller was reset, so it no longer
        // writes there.
        unsafe {
            self.memory
                .ptr_at(self.layout.cq_offset)
                .write_bytes(0, cq_len)
        };
        self.sq_tail = 0;
        self.sq_tail_rung = 0;
        self.sq_head = 0;
        self.cq_head = 0;
        self.cq_unacked = 0;
        self.phase = true;
    }
}
