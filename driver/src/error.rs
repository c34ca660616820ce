//! Errors of the driver. Each says what went wrong on which device and, where the user can fix

#![forbid(unsafe_code)]
//! it, how.

use std::time::Duration;

use vfnvme_spec::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Vfio(#[from] VfioError),
    #[error(transparent)]
    Dma(#[from] DmaError),
    #[error("{address}: {what} did not happen within {timeout:?}; the controller may be hung")]
    Timeout {
        address: String,
        what: &'static str,
        timeout: Duration,
    },
    #[error("{address}: controller fatal status (CSTS.CFS) is set; it needs a reset")]
    ControllerFatal { address: String },
    #[error(
        "{address}: the controller did not stop when it was reset and is out of service; the \
         memory it may still write is kept, never reused; restart vfnvme (and, if that fails, \
         rebind or power-cycle the drive)"
    )]
    OutOfService { address: String },
    #[error("{address}: {command} failed: {status}")]
    Command {
        address: String,
        command: &'static str,
        status: Status,
    },
    #[error("{address}: namespace {nsid} does not exist (active namespaces: {active:?})")]
    NoSuchNamespace {
        address: String,
        nsid: u32,
        active: Vec<u32>,
    },
    #[error("{address}: no I/O queue left (the controller grants {granted})")]
    NoQueueLeft { address: String, granted: u16 },
    #[error("{address}: {what}")]
    Unsupported { address: String, what: String },
    #[error("{address}: malformed {what}: {reason}")]
    Malformed {
        address: String,
        what: &'static str,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    #[error("{address}: no such PCI device; `tools/setup.sh status` lists the NVMe drives")]
    NoSuchDevice { address: String },
    #[error("{address} is not a PCI address like 0000:01:00.0")]
    BadAddress { address: String },
    #[error("{address} is bound to {driver}; run tools/setup.sh to bind it to vfio-pci")]
    BoundToOtherDriver { address: String, driver: String },
    #[error("{address} is not an NVMe controller (PCI class {class}, expected 0x010802)")]
    NotNvme { address: String, class: String },
    #[error("{address} is bound to no driver; run tools/setup.sh to bind it to vfio-pci")]
    Unbound { address: String },
    #[error(
        "{address} has no IOMMU group; enable the IOMMU (kernel argument intel_iommu=on or \
         amd_iommu=on) and check the firmware's VT-d/AMD-Vi setting"
    )]
    NoIommuGroup { address: String },
    #[error(
        "{address}: IOMMU group {group} is not viable: {others} must also be bound to vfio-pci \
         (or unbound); tools/setup.sh warns about shared groups"
    )]
    GroupNotViable {
        address: String,
        group: u32,
        others: String,
    },
    #[error("cannot open /dev/vfio/vfio ({source}); load vfio-pci with tools/setup.sh")]
    NoVfio {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{address}: memlock limit is {limit_kib} KiB, below the {need_kib} KiB of DMA memory \
         needed; run as root or raise it (`ulimit -l unlimited`, LimitMEMLOCK=infinity in the \
         systemd unit)"
    )]
    MemlockTooLow {
        address: String,
        limit_kib: u64,
        need_kib: u64,
    },
    #[error("{address}: VFIO {operation} failed: {source}")]
    Ioctl {
        address: String,
        operation: &'static str,
        #[source]
        source: vfio_ioctls::VfioError,
    },
    #[error("{address}: {operation} failed: {source}")]
    Io {
        address: String,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{address}: BAR0 is {reason}")]
    BadBar { address: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    #[error(
        "no free 2 MiB hugepages for {len} bytes of DMA memory; run tools/setup.sh \
         (HUGEMEM=<MiB> to reserve more) or write a page count to /proc/sys/vm/nr_hugepages"
    )]
    NoHugepages { len: usize },
    #[error("cannot allocate {len} bytes of DMA memory: {source}")]
    Allocate {
        len: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("no IOVA range left for {len} bytes")]
    IovaExhausted { len: usize },
    #[error("mapping {len} bytes at IOVA {iova:#x} for DMA failed: {reason}")]
    Map {
        iova: u64,
        len: usize,
        reason: String,
    },
    #[error("unmapping {len} bytes at IOVA {iova:#x} failed: {reason}")]
    Unmap {
        iova: u64,
        len: usize,
        reason: String,
    },
    #[error(
        "a buffer pool needs a non-zero count of 4 KiB multiples, not {count} x {buffer_size}"
    )]
    BadPoolShape { buffer_size: usize, count: usize },
    #[error("a DMA bookkeeping lock was poisoned by a panic")]
    Poisoned,
}
