//! I/O queue pairs: submission of NVM commands with buffers from registered pools, polling,
//! recovery after a controller reset, timeouts (Abort, then reset), and removal from the device
//! on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::admin::AdminData;
use super::handle::{Controller, Namespace, LOST_IN_RESET, OUT_OF_SERVICE};
use crate::dma::{keep_forever, BufferPool, DmaBuffer, DmaRegion};
use crate::error::Result;
use crate::queue::{Completed, DataPointer, QueuePair, Rejected, SubmitError};
use vfnvme_spec::{admin_opcode, nvm_opcode, Command, DsmRange};

impl Controller {
    /// Creates an I/O queue pair with up to `entries` entries (capped by CAP.MQES).
    pub fn create_io_qpair(&self, entries: u16) -> Result<IoQueuePair> {
        let shared = &self.shared;
        let entries = entries
            .max(2)
            .min(shared.cap.max_queue_entries().min(u32::from(u16::MAX)) as u16);
        let qid = shared.take_qid()?;
        let queue = QueuePair::new(
            qid,
            entries,
            shared.max_transfer,
            shared.device.dma(),
            &shared.registers,
            shared.cap.doorbell_stride(),
        );
        let queue = match queue {
            Ok(queue) => queue,
            Err(error) => {
                shared.release_qid(qid);
                return Err(error);
            }
        };
        let generation = self.generation();
        let mut qpair = IoQueuePair {
            queue,
            generation,
            live_on_device: false,
            closed: false,
            pools: Vec::new(),
            controller: self.clone(),
        };
        // On failure the queue pair's Drop releases the qid.
        qpair.create_on_device()?;
        Ok(qpair)
    }
}

/// What [`IoQueuePair::check_timeouts`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeoutReport {
    pub aborts_sent: usize,
    pub controller_reset: bool,
}

/// An I/O submission/completion queue pair on the device, owned by one thread.
pub struct IoQueuePair {
    queue: QueuePair,
    generation: u64,
    live_on_device: bool,
    /// Removed from the device (or given up on) already.
    closed: bool,
    /// Buffer memory this queue pair's commands may point into, kept alive while it lives.
    pools: Vec<Arc<DmaRegion>>,
    controller: Controller,
}

impl IoQueuePair {
    pub fn qid(&self) -> u16 {
        self.queue.qid()
    }

    pub fn entries(&self) -> u16 {
        self.queue.entries()
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn max_transfer(&self) -> usize {
        self.queue.max_transfer()
    }

    pub fn outstanding(&self) -> usize {
        self.queue.outstanding()
    }

    pub fn free_slots(&self) -> usize {
        self.queue.free_slots()
    }

    /// Lets commands of this queue pair use buffers of `pool`; the pool's memory then stays
    /// mapped as long as this queue pair exists, whatever happens to the pool.
    pub fn register_pool(&mut self, pool: &BufferPool) {
        if !self
            .pools
            .iter()
            .any(|region| region.id() == pool.region().id())
        {
            self.pools.push(Arc::clone(pool.region()));
        }
    }

    fn data_pointer(&self, buffer: &DmaBuffer, len: usize) -> Result<DataPointer, SubmitError> {
        if !self
            .pools
            .iter()
            .any(|region| region.id() == buffer.region_id())
        {
            return Err(SubmitError::UnregisteredBuffer);
        }
        if len > buffer.len() {
            return Err(SubmitError::BufferTooSmall {
                len,
                buffer: buffer.len(),
            });
        }
        Ok(DataPointer {
            iova: buffer.iova(),
            len,
        })
    }

    /// From now on a submission reaches the device with the next [`Self::poll`], which writes
    /// one CQ doorbell for all reaped before, then one SQ doorbell for all submitted since: for
    /// an owner that polls in rounds, fewer register writes per command.
    pub fn batch_doorbells(&mut self) {
        self.queue.batch_doorbells();
    }

    /// Submits any I/O command, with the first `len` bytes of `buffer` as its data. The buffer
    /// comes back in the command's [`Completed`] (or in [`Rejected`]).
    pub fn submit(
        &mut self,
        command: Command,
        data: Option<(DmaBuffer, usize)>,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let (pointer, buffer) = match data {
            Some((buffer, len)) => match self.data_pointer(&buffer, len) {
                Ok(pointer) => (Some(pointer), Some(buffer)),
                Err(error) => {
                    return Err(Rejected {
                        error,
                        buffer: Some(buffer),
                    })
                }
            },
            None => (None, None),
        };
        let generation = self.controller.shared.generation.load(Ordering::Acquire);
        if generation != self.generation {
            let error = if generation == OUT_OF_SERVICE {
                SubmitError::OutOfService
            } else {
                SubmitError::ControllerReset
            };
            return Err(Rejected { error, buffer });
        }
        self.queue.submit(command, pointer, buffer, tag)
    }

    pub fn read(
        &mut self,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        self.transfer(nvm_opcode::READ, ns, lba, blocks, buffer, tag)
    }

    pub fn write(
        &mut self,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        self.transfer(nvm_opcode::WRITE, ns, lba, blocks, buffer, tag)
    }

    fn transfer(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let command = Command::nvm_rw(opcode, ns.nsid, lba, blocks);
        let len = blocks as usize * ns.block_size as usize;
        self.submit(command, Some((buffer, len)), tag)
    }

    pub fn flush(&mut self, ns: &Namespace, tag: u64) -> Result<u16, Rejected> {
        self.submit(Command::new(nvm_opcode::FLUSH, ns.nsid), None, tag)
    }

    pub fn write_zeroes(
        &mut self,
        ns: &Namespace,
        lba: u64,
        blocks: u32,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let command = Command::nvm_rw(nvm_opcode::WRITE_ZEROES, ns.nsid, lba, blocks);
        self.submit(command, None, tag)
    }

    /// Dataset Management with the deallocate attribute over `ranges` (1 to 256), which are
    /// written into `buffer` first.
    pub fn deallocate(
        &mut self,
        ns: &Namespace,
        ranges: &[DsmRange],
        mut buffer: DmaBuffer,
        tag: u64,
    ) -> Result<u16, Rejected> {
        let len = ranges.len() * 16;
        let error = if ranges.is_empty() || ranges.len() > 256 {
            Some(SubmitError::TooLarge {
                len: ranges.len(),
                max: 256,
            })
        } else if len > buffer.len() {
            Some(SubmitError::BufferTooSmall {
                len,
                buffer: buffer.len(),
            })
        } else {
            None
        };
        if let Some(error) = error {
            return Err(Rejected {
                error,
                buffer: Some(buffer),
            });
        }
        for (range, bytes) in ranges
            .iter()
            .zip(buffer.as_mut_slice().chunks_exact_mut(16))
        {
            bytes.copy_from_slice(&range.to_bytes());
        }
        let command = Command {
            cdw10: ranges.len() as u32 - 1,
            cdw11: vfnvme_spec::DSM_ATTR_DEALLOCATE,
            ..Command::new(nvm_opcode::DATASET_MANAGEMENT, ns.nsid)
        };
        self.submit(command, Some((buffer, len)), tag)
    }

    /// Reaps up to `max` completions. After a controller reset, first completes everything that
    /// was in flight with [`LOST_IN_RESET`] and recreates the queues. A controller out of
    /// service gives nothing back: its device may still write into those buffers.
    pub fn poll(&mut self, max: usize, mut on_complete: impl FnMut(Completed)) -> usize {
        let generation = self.controller.shared.generation.load(Ordering::Acquire);
        if generation != self.generation {
            if generation == OUT_OF_SERVICE {
                return 0;
            }
            return self.recover(&mut on_complete);
        }
        self.queue.poll(max, on_complete)
    }

    /// Stale or duplicate completions seen and dropped (see `QueuePair::poll`).
    pub fn stale_completions(&self) -> u64 {
        self.queue.stale_completions()
    }

    /// Only called once the generation moved on, which happens after the device stopped.
    fn recover(&mut self, on_complete: &mut impl FnMut(Completed)) -> usize {
        let mut lost = 0;
        self.queue
            .reset_after_controller_reset(LOST_IN_RESET, |done| {
                lost += 1;
                on_complete(done)
            });
        self.generation = self.controller.generation();
        self.live_on_device = false;
        if let Err(error) = self.create_on_device() {
            log::error!(
                "{}: recreating queue {} after a reset failed: {error}",
                self.controller.address(),
                self.qid()
            );
        }
        lost
    }

    /// Sends Abort for commands overdue by `timeout`; a command still overdue after its Abort,
    /// a failing Abort, or a fatal controller status resets the controller. Call it now and then
    /// (e.g. every 100 ms): its granularity is how often it runs.
    pub fn check_timeouts(&mut self, timeout: Duration) -> Result<TimeoutReport> {
        let mut report = TimeoutReport::default();
        let mut overdue = Vec::new();
        self.queue
            .overdue(Instant::now(), timeout, |found| overdue.push(found));
        if overdue.is_empty() {
            return Ok(report);
        }
        let mut needs_reset = self.controller.is_fatal();
        for command in &overdue {
            if needs_reset {
                break;
            }
            if command.abort_sent {
                needs_reset = true;
                break;
            }
            log::warn!(
                "{}: command {} on queue {} overdue by {timeout:?}; aborting it",
                self.controller.address(),
                command.cid,
                self.qid()
            );
            match self.controller.abort(self.qid(), command.cid) {
                Ok(_) => {
                    self.queue.mark_abort_sent(command.cid);
                    report.aborts_sent += 1;
                }
                Err(_) => needs_reset = true,
            }
        }
        if needs_reset {
            self.controller.reset()?;
            report.controller_reset = true;
        }
        Ok(report)
    }

    /// Polls until nothing is outstanding or `deadline` passes (or the controller is out of
    /// service: nothing will come back); returns what was still out.
    pub fn drain(&mut self, deadline: Instant, mut on_complete: impl FnMut(Completed)) -> usize {
        while self.outstanding() > 0
            && Instant::now() < deadline
            && !self.controller.is_out_of_service()
        {
            if self.poll(usize::MAX, &mut on_complete) == 0 {
                std::hint::spin_loop();
            }
        }
        self.outstanding()
    }

    fn create_on_device(&mut self) -> Result<()> {
        let qid = u32::from(self.qid());
        let size = (u32::from(self.entries()) - 1) << 16;
        let physically_contiguous = 1;
        let create_cq = Command {
            prp1: self.queue.cq_iova(),
            cdw10: size | qid,
            cdw11: physically_contiguous,
            ..Command::new(admin_opcode::CREATE_IO_CQ, 0)
        };
        self.controller
            .admin(create_cq, AdminData::None, "Create I/O Completion Queue")?;
        let create_sq = Command {
            prp1: self.queue.sq_iova(),
            cdw10: size | qid,
            cdw11: (qid << 16) | physically_contiguous,
            ..Command::new(admin_opcode::CREATE_IO_SQ, 0)
        };
        if let Err(error) =
            self.controller
                .admin(create_sq, AdminData::None, "Create I/O Submission Queue")
        {
            let delete_cq = Command {
                cdw10: qid,
                ..Command::new(admin_opcode::DELETE_IO_CQ, 0)
            };
            // The CQ is unused; if deleting it fails too the controller reset that follows a
            // failed admin command has removed it.
            let _ =
                self.controller
                    .admin(delete_cq, AdminData::None, "Delete I/O Completion Queue");
            return Err(error);
        }
        self.live_on_device = true;
        Ok(())
    }

    /// Deletes SQ then CQ on the device. Returns whether the device is known to be done with
    /// this queue pair's memory.
    /// The device posts the completions of commands aborted by the SQ deletion before the
    /// deletion itself completes; they are reaped (to `on_complete`) before the CQ goes.
    fn delete_on_device(&mut self, on_complete: &mut dyn FnMut(Completed)) -> bool {
        if self.controller.is_out_of_service() {
            return false;
        }
        if !self.live_on_device || self.controller.generation() != self.generation {
            return true;
        }
        let qid = u32::from(self.qid());
        let delete = |controller: &Controller, opcode, name| {
            let command = Command {
                cdw10: qid,
                ..Command::new(opcode, 0)
            };
            controller.admin(command, AdminData::None, name)
        };
        let deleted = delete(
            &self.controller,
            admin_opcode::DELETE_IO_SQ,
            "Delete I/O Submission Queue",
        )
        .and_then(|_| {
            self.queue.poll(usize::MAX, &mut *on_complete);
            delete(
                &self.controller,
                admin_opcode::DELETE_IO_CQ,
                "Delete I/O Completion Queue",
            )
        });
        match deleted {
            Ok(_) => {
                self.live_on_device = false;
                true
            }
            Err(error) => {
                log::warn!(
                    "{}: deleting queue {qid} failed ({error}); resetting the controller",
                    self.controller.address()
                );
                // A reset (perhaps already done by the failed admin command) removes every queue.
                let reset = self.controller.generation() != self.generation
                    || self.controller.reset().is_ok();
                reset && !self.controller.is_out_of_service()
            }
        }
    }
}

impl IoQueuePair {
    /// Removes the queue pair from the device, handing every command still in flight to
    /// `on_complete` (completed, or aborted by the SQ deletion) with its buffer, so that the
    /// caller can put the buffers back where they belong. Dropping a queue pair does the same
    /// without giving the buffers back.
    pub fn shut_down(mut self, mut on_complete: impl FnMut(Completed)) {
        self.close(&mut on_complete);
    }

    fn close(&mut self, on_complete: &mut dyn FnMut(Completed)) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Commands still in flight: give the device a moment, then deleting the SQ aborts them.
        let deadline = Instant::now() + Duration::from_secs(1);
        let lost = self.drain(deadline, &mut *on_complete);
        if lost > 0 {
            log::warn!(
                "{}: queue {} closed with {lost} commands in flight",
                self.controller.address(),
                self.qid()
            );
        }
        if self.delete_on_device(on_complete) {
            self.controller.shared.release_qid(self.qid());
        } else {
            log::error!(
                "{}: queue {} could not be removed from the device; leaking its memory and id",
                self.controller.address(),
                self.qid()
            );
            self.queue.leak_memory();
            for region in self.pools.drain(..) {
                keep_forever(region);
            }
        }
    }
}

impl Drop for IoQueuePair {
    fn drop(&mut self) {
        self.close(&mut |_| {});
    }
}
