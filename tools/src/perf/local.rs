//! The local backend: I/O queue pairs of a drive (or the simulator) through the user-space
//! driver. Each command slot owns a DMA buffer from the queue pair's pool, lent to the queue
//! pair while its command is in flight and given back with the completion.

use std::time::{Duration, Instant};

use vfnvme_driver::dma::{BufferPool, DmaBuffer};
use vfnvme_driver::queue::{Completed, Rejected, SubmitError};
use vfnvme_driver::{Controller, IoQueuePair, Namespace, NvmeDevice};
use vfnvme_spec::Status;

use super::args::PerfArgs;
use super::engine::{run_plan, Backend};
use super::plan::{Limits, Plan};
use super::workload::Extent;
use crate::device;
use crate::error::{Error, Result};

/// A command taking longer than this is aborted (and the controller reset if that fails).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long teardown waits for commands still in flight after an error.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DMA_ALIGNMENT: usize = 4096;

/// `vfnvme perf --device ADDRESS`.
pub fn run(args: &PerfArgs, address: &str) -> Result<()> {
    let opened = device::open(address)?;
    let controller = &opened.controller;
    let limits = Limits {
        namespace: controller.namespace(args.nsid)?,
        max_transfer: controller.max_transfer(),
        max_queue_entries: controller.capabilities().max_queue_entries(),
        io_queues: controller.io_queues_granted(),
    };
    let plan = Plan::new(args, limits)?;
    let queues = (0..plan.qpairs)
        .map(|_| LocalQueue::new(controller, opened.device.as_ref(), &plan))
        .collect::<Result<Vec<_>>>()?;
    run_plan(args, &plan, controller.address(), queues)
}

/// One I/O queue pair with its buffer pool.
pub struct LocalQueue {
    /// Declared before `pool`: dropped first, so no command can still use a pool buffer.
    qpair: IoQueuePair,
    pool: BufferPool,
    namespace: Namespace,
    /// Slot buffers; `None` while the queue pair holds it for the command in flight.
    buffers: Vec<Option<DmaBuffer>>,
    completions: Vec<Completed>,
    /// The simulator's device thread may need this CPU.
    simulated: bool,
}

impl LocalQueue {
    fn new(controller: &Controller, device: &dyn NvmeDevice, plan: &Plan) -> Result<Self> {
        let depth = usize::from(plan.queue_depth);
        // Room for a round's completions to be acknowledged with the next round's doorbells
        // (see `IoQueuePair::batch_doorbells`): with QD + 1 entries, QD 16 in the guest ran at
        // half the IOPS (BENCHMARKS.md).
        let mut qpair =
            controller.create_io_qpair(plan.queue_depth.saturating_mul(2).saturating_add(1))?;
        qpair.batch_doorbells();
        let mut pool = BufferPool::new(
            device.dma(),
            plan.io_bytes.next_multiple_of(DMA_ALIGNMENT),
            depth,
        )?;
        qpair.register_pool(&pool);
        let buffers = std::iter::from_fn(|| pool.take()).map(Some).collect();
        Ok(Self {
            qpair,
            pool,
            namespace: plan.namespace.clone(),
            buffers,
            completions: Vec::with_capacity(depth),
            simulated: device.address() == crate::device::SIM_ADDRESS,
        })
    }
}

impl Backend for LocalQueue {
    fn yields_when_idle(&self) -> bool {
        self.simulated
    }

    fn buffer(&mut self, tag: u16) -> Option<&mut [u8]> {
        self.buffers
            .get_mut(usize::from(tag))?
            .as_mut()
            .map(DmaBuffer::as_mut_slice)
    }

    fn submit(&mut self, tag: u16, write: bool, extent: Extent) -> Result<bool> {
        let Some(buffer) = self.buffers[usize::from(tag)].take() else {
            return Err(Error::Invalid(format!(
                "command slot {tag} submitted while in flight"
            )));
        };
        let (ns, lba, blocks, tag_value) = (&self.namespace, extent.lba, extent.blocks, tag.into());
        let submitted = if write {
            self.qpair.write(ns, lba, blocks, buffer, tag_value)
        } else {
            self.qpair.read(ns, lba, blocks, buffer, tag_value)
        };
        match submitted {
            Ok(_) => Ok(true),
            Err(Rejected { error, buffer }) => {
                self.buffers[usize::from(tag)] = buffer;
                // After a controller reset the next poll hands back what was lost and
                // recreates the queues; until then, as when full, retry later.
                if matches!(error, SubmitError::QueueFull | SubmitError::ControllerReset) {
                    Ok(false)
                } else {
                    Err(error.into())
                }
            }
        }
    }

    fn reap(&mut self, mut done: impl FnMut(u16, Status, &[u8])) -> Result<usize> {
        let completions = &mut self.completions;
        self.qpair
            .poll(self.buffers.len(), |completed| completions.push(completed));
        let reaped = self.completions.len();
        for completed in self.completions.drain(..) {
            let (Some(slot), Some(buffer)) = (
                self.buffers.get_mut(completed.tag as usize),
                completed.buffer,
            ) else {
                log::error!(
                    "completion for command slot {} without its buffer",
                    completed.tag
                );
                continue;
            };
            done(completed.tag as u16, completed.status, buffer.as_slice());
            *slot = Some(buffer);
        }
        Ok(reaped)
    }

    fn outstanding(&self) -> usize {
        self.qpair.outstanding()
    }

    fn check_timeouts(&mut self) -> Result<()> {
        self.qpair.check_timeouts(IO_TIMEOUT)?;
        Ok(())
    }
}

impl Drop for LocalQueue {
    /// Waits for commands still in flight (after an error), then returns every buffer to the
    /// pool. A command that never completed keeps its buffer inside the queue pair, which makes
    /// the pool keep its memory mapped rather than free pages the device may still write.
    fn drop(&mut self) {
        let buffers = &mut self.buffers;
        let lost = self.qpair.drain(Instant::now() + DRAIN_TIMEOUT, |done| {
            if let Some(slot) = buffers.get_mut(done.tag as usize) {
                *slot = done.buffer;
            }
        });
        if lost > 0 {
            log::warn!("{lost} commands never completed; their buffer memory stays mapped");
        }
        for buffer in self.buffers.drain(..).flatten() {
            self.pool.give_back(buffer);
        }
    }
}
