//! What a run will do ([`Plan`]): the options checked against what the controller and the
//! namespace allow ([`Limits`], learned by a backend), and the kinds of I/O a slot issues.

use std::time::Duration;

use vfnvme_driver::Namespace;

use super::args::PerfArgs;
use super::pattern;
use super::workload::{Extent, Workload};
use crate::error::{Error, Result};

/// What the controller and the namespace allow, as a backend learned it.
pub(super) struct Limits {
    pub(super) namespace: Namespace,
    /// Largest data of one command, in bytes.
    pub(super) max_transfer: usize,
    /// Entries of one I/O queue, at most.
    pub(super) max_queue_entries: u32,
    /// I/O queues the controller granted.
    pub(super) io_queues: u16,
}

/// The run, checked against what the controller and namespace allow.
pub(super) struct Plan {
    pub(super) workload: Workload,
    pub(super) namespace: Namespace,
    pub(super) io_blocks: u32,
    pub(super) io_bytes: usize,
    pub(super) queue_depth: u16,
    pub(super) qpairs: u16,
    pub(super) duration: Duration,
    pub(super) seed: u64,
    /// Verify writes the pattern first (unless checking existing data).
    pub(super) writes_pattern: bool,
}

impl Plan {
    pub(super) fn new(args: &PerfArgs, limits: Limits) -> Result<Self> {
        let namespace = limits.namespace;
        let block_size = namespace.block_size as usize;
        let invalid = |message: String| Err(Error::Invalid(message));
        if !args.io_size.is_multiple_of(block_size) {
            return invalid(format!(
                "I/O size {} bytes is not a multiple of namespace {}'s {block_size}-byte blocks",
                args.io_size, args.nsid
            ));
        }
        if args.io_size > limits.max_transfer {
            return invalid(format!(
                "I/O size {} bytes exceeds the controller's maximum transfer of {} bytes",
                args.io_size, limits.max_transfer
            ));
        }
        let io_blocks = (args.io_size / block_size) as u32;
        if u64::from(io_blocks) > namespace.blocks {
            return invalid(format!(
                "I/O size {} bytes is larger than namespace {} ({} blocks of {block_size} bytes)",
                args.io_size, args.nsid, namespace.blocks
            ));
        }
        if args.workload == Workload::Verify && !pattern::fits_block_size(block_size) {
            return invalid(format!(
                "verify needs blocks of whole 8-byte words, not {block_size} bytes"
            ));
        }
        if u32::from(args.queue_depth) + 1 > limits.max_queue_entries {
            return invalid(format!(
                "queue depth {} is more than the controller's queues hold (at most {})",
                args.queue_depth,
                limits.max_queue_entries - 1
            ));
        }
        if args.qpairs > limits.io_queues {
            return invalid(format!(
                "{} queue pairs asked for, the controller grants {}",
                args.qpairs, limits.io_queues
            ));
        }
        Ok(Self {
            workload: args.workload,
            namespace,
            io_blocks,
            io_bytes: args.io_size,
            queue_depth: args.queue_depth,
            qpairs: args.qpairs,
            duration: Duration::from_secs(args.seconds),
            seed: args.seed,
            writes_pattern: args.workload == Workload::Verify && !args.verify_existing,
        })
    }

    pub(super) fn block_size(&self) -> usize {
        self.namespace.block_size as usize
    }

    pub(super) fn bytes_of(&self, extent: Extent) -> usize {
        extent.blocks as usize * self.block_size()
    }

    /// What a command slot does first with a fresh extent.
    pub(super) fn first_kind(&self) -> IoKind {
        match self.workload {
            Workload::Read | Workload::RandRead => IoKind::Read,
            Workload::Write | Workload::RandWrite => IoKind::Write,
            Workload::Verify if self.writes_pattern => IoKind::PatternWrite,
            Workload::Verify => IoKind::CheckRead,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IoKind {
    Read,
    Write,
    /// Verify: writes the pattern, then reads it back.
    PatternWrite,
    /// Verify: reads and compares with the pattern.
    CheckRead,
}

impl IoKind {
    pub(super) fn is_write(self) -> bool {
        matches!(self, Self::Write | Self::PatternWrite)
    }
}
