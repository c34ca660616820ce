//! What the simulated controller is ([`SimConfig`], its namespaces, its fixed registers), the
//! misbehaviour a test may inject ([`Fault`]) and the counters it may assert on ([`SimStats`]).
//! A leaf of its own: the device state, the command sets and the handle all read it.

use std::time::Duration;

use vfnvme_spec::identify::{oncs, NamespaceIds};
use vfnvme_spec::regs::{self, Vs};
use vfnvme_spec::Status;

/// BAR0 of the simulated controller: registers plus doorbells for up to 1024 queues.
pub(super) const BAR_SIZE: usize = regs::DOORBELL_BASE + 1024 * 2 * 4 * 4;

/// The NVMe version the simulated controller reports (VS and Identify Controller VER): 1.4.0.
pub(super) const VERSION: Vs = Vs::of(1, 4);

/// A namespace of the simulated controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNamespace {
    pub nsid: u32,
    pub blocks: u64,
    pub block_size: u32,
    /// The NGUID, EUI-64 and UUID it reports (Identify Namespace, descriptor list); by default
    /// none, as drives that predate them.
    pub ids: NamespaceIds,
}

impl Default for SimNamespace {
    fn default() -> Self {
        Self {
            nsid: 1,
            blocks: 16384,
            block_size: 512,
            ids: NamespaceIds::default(),
        }
    }
}

/// What the simulated controller looks like.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub namespaces: Vec<SimNamespace>,
    /// Entries per queue the controller accepts (CAP.MQES + 1).
    pub max_queue_entries: u32,
    /// Maximum Data Transfer Size, as a power of two of 4 KiB pages (0: no limit).
    pub mdts: u8,
    /// I/O queue pairs the controller grants at most.
    pub io_queues: u16,
    /// Time from fetching a command to posting its completion.
    pub latency: Duration,
    /// Added to `latency` for Get Log Page: a drive slow to answer an admin command.
    pub log_page_latency: Duration,
    /// CAP.DSTRD: doorbells are `4 << dstrd` bytes apart.
    pub doorbell_stride_shift: u8,
    /// Identify Controller ONCS: the optional NVM commands it reports (it executes them all).
    pub oncs: u16,
    /// Identify Controller VWC: whether it reports a volatile write cache.
    pub volatile_write_cache: bool,
    /// Metadata bytes per block of the LBA format every namespace is formatted with (extended
    /// LBAs; a format without metadata is offered beside it); 0: formatted without. Only
    /// reported in Identify Namespace: the medium keeps no metadata.
    pub metadata_size: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            serial: "VFNVME-SIM-0001".into(),
            model: "vfnvme simulated controller".into(),
            firmware: "1.0".into(),
            namespaces: vec![SimNamespace::default()],
            max_queue_entries: 1024,
            mdts: 5,
            io_queues: 16,
            latency: Duration::ZERO,
            log_page_latency: Duration::ZERO,
            doorbell_stride_shift: 0,
            oncs: oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT,
            volatile_write_cache: true,
            metadata_size: 0,
        }
    }
}

/// Misbehaviour to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next `count` commands with `opcode` (on the admin queue if `admin`, else on any I/O
    /// queue) complete with `status`.
    FailCommand {
        admin: bool,
        opcode: u8,
        status: Status,
        count: u32,
    },
    /// The next `count` matching commands are fetched but never complete, until aborted or the
    /// controller is reset.
    LoseCompletion { admin: bool, opcode: u8, count: u32 },
    /// The next `count` matching commands are fetched and then held mid-transfer: their data is
    /// moved and their completion posted only when [`super::SimController::release_held`] is
    /// called. Meanwhile a disable (CC.EN = 0) is not finished: CSTS.RDY stays 1, as on a device
    /// still busy with DMA, so the device may write into their buffers until RDY = 0.
    HoldCommand { admin: bool, opcode: u8, count: u32 },
    /// The completion of the next `count` matching commands is posted twice: again when the
    /// next command is fetched from the same queue, so the copy arrives after the driver may
    /// have reused the command's slot (a stale completion, as a buggy device or a lost doorbell
    /// race can produce).
    DuplicateCompletion { admin: bool, opcode: u8, count: u32 },
    /// Abort commands report that they aborted nothing.
    IgnoreAbort,
    /// CSTS.CFS: the controller stops processing until it is disabled.
    Fatal,
}

/// Counters for assertions in tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Commands fetched from any submission queue.
    pub commands: u64,
    /// Device accesses to IOVAs that were not mapped: each one is a driver bug (a use after
    /// unmap, or a bad PRP).
    pub iommu_faults: u64,
    /// I/O queue pairs that exist on the device now.
    pub io_queues: u16,
    /// Commands fetched whose completion has not been posted.
    pub in_flight: usize,
    /// Commands held mid-transfer ([`Fault::HoldCommand`]), a part of `in_flight`.
    pub held: usize,
    /// Resets completed (CC.EN 1 to 0 processed, CSTS.RDY = 0): from then on the device does
    /// not touch host memory until it is enabled again.
    pub resets: u64,
    /// Duplicate completions sent ([`Fault::DuplicateCompletion`]).
    pub duplicate_completions: u64,
}
