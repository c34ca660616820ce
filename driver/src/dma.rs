//! DMA memory: hugepage (or, for the simulator and RAM drives, anonymous) memory mapped for the
//! device at IOVAs the driver chooses, and fixed-size buffer pools carved out of it.
//!
//! Memory the device can write is only ever touched through raw pointers (volatile accesses or
//! copies to and from ordinary Rust memory); no Rust reference points into it. Code outside the
//! driver's hardware modules reaches it through [`DmaMemory`], whose safe accessors are
//! bounds-checked volatile copies: DMA memory is reached by copy, never by reference.
//!
//! A mapping is released by the `Drop` of the [`DmaRegion`] that owns it: first unmapped from the
//! device, then freed. If the unmap fails the device might still reach the memory, so it is
//! leaked on purpose rather than freed.

use std::alloc::Layout;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::volatile_memory::VolatileSlice;

use crate::error::{DmaError, Result};

/// The granule of hugepage allocations and of IOVA alignment.
pub const HUGEPAGE_SIZE: usize = 2 << 20;
const SMALL_PAGE_SIZE: usize = 4096;
/// A host-only space hands out IOVAs below this (48 bits; they name regions, nothing maps them).
const HOST_ONLY_IOVA_END: u64 = 1 << 48;

/// Something that makes host memory reachable by the device at an IOVA: the VFIO container on
/// real hardware, the simulator's IOMMU otherwise.
pub trait DmaMapper: Send + Sync {
    /// Makes all of `memory` reachable by the device at `iova`. A mapper keeps its clone of
    /// `memory` until [`DmaMapper::unmap`] of the same range has succeeded, so the memory can
    /// never be freed while the device may reach it.
    fn map(&self, memory: &DmaMemory, iova: u64) -> Result<()>;

    /// Makes the range unreachable by the device again.
    fn unmap(&self, iova: u64, len: usize) -> Result<()>;
}

/// Which memory backs DMA regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// 2 MiB hugepages from the reservation in /proc/sys/vm/nr_hugepages: pinned, physically
    /// contiguous per page, what real devices need.
    Hugepages,
    /// Ordinary anonymous memory, for the simulated controller and RAM drives.
    Anonymous,
}

/// Allocates DMA regions: memory plus an IOVA inside the ranges the IOMMU accepts.
pub struct DmaSpace {
    /// `None` for a space no device reaches ([`DmaSpace::host_only`]).
    mapper: Option<Arc<dyn DmaMapper>>,
    kind: MemoryKind,
    iova: Mutex<IovaAllocator>,
}

impl DmaSpace {
    pub fn new(mapper: Arc<dyn DmaMapper>, kind: MemoryKind, iova_ranges: Vec<Range<u64>>) -> Self {
        Self {
            mapper: Some(mapper),
            kind,
            iova: Mutex::new(IovaAllocator::new(iova_ranges)),
        }
    }

    /// Plain anonymous memory that no device reaches (no IOMMU): for RAM drives, whose buffers
    /// share the [`DmaBuffer`] type with real drives. Its IOVAs are only identities.
    pub fn host_only() -> Self {
        Self {
            mapper: None,
            kind: MemoryKind::Anonymous,
            iova: Mutex::new(IovaAllocator::new(
                std::iter::once(0..HOST_ONLY_IOVA_END).collect(),
            )),
        }
    }

    pub fn kind(&self) -> MemoryKind {
        self.kind
    }

    /// Allocates and maps at least `len` bytes, zeroed.
    pub fn allocate(&self, len: usize) -> Result<DmaRegion> {
        let granule = match self.kind {
            MemoryKind::Hugepages => HUGEPAGE_SIZE,
            MemoryKind::Anonymous => SMALL_PAGE_SIZE,
        };
        let len = len.max(1).div_ceil(granule) * granule;
        let memory = DmaMemory::allocate(self.kind, len)?;
        let iova = self
            .iova
            .lock()
            .map_err(|_| DmaError::Poisoned)?
            .allocate(len as u64)
            .ok_or(DmaError::IovaExhausted { len })?;
        if let Some(mapper) = &self.mapper {
            mapper.map(&memory, iova)?;
        }
        MAPPED_BYTES.fetch_add(len, Ordering::Relaxed);
        Ok(DmaRegion {
            id: next_region_id(),
            base: memory.base(),
            memory,
            iova,
            mapper: self.mapper.clone(),
            leaked: false,
        })
    }
}

/// Hands out IOVAs from the usable ranges, aligned to 2 MiB. IOVAs are not reused: a 48-bit
/// space outlasts any process, and a fresh IOVA can never alias a mapping a device still uses.
struct IovaAllocator {
    ranges: Vec<Range<u64>>,
    next: u64,
}

impl IovaAllocator {
    /// The lowest IOVA handed out: keeps IOVA 0 (a classic bug value) unused.
    const FLOOR: u64 = 1 << 32;

    fn new(ranges: Vec<Range<u64>>) -> Self {
        Self {
            ranges,
            next: Self::FLOOR,
        }
    }

    fn allocate(&mut self, len: u64) -> Option<u64> {
        let align = HUGEPAGE_SIZE as u64;
        for range in &self.ranges {
            let start = self.next.max(range.start).next_multiple_of(align);
            let end = start.checked_add(len)?;
            if end <= range.end {
                self.next = end;
                return Some(start);
            }
        }
        None
    }
}

/// Bytes of DMA memory allocated (and, where a device reaches it, mapped) by this process right
/// now, over every device and RAM drive: what a teardown must bring back to where it started.
pub fn mapped_bytes() -> usize {
    MAPPED_BYTES.load(Ordering::Relaxed)
}

static MAPPED_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Keeps `kept` (DMA memory, or what holds it) allocated, and mapped, until the process exits:
/// for memory a device might still write. Held here, reachable, rather than forgotten, so that
/// it is plain (to readers and to leak checkers) that it is kept on purpose.
pub fn keep_forever(kept: impl Send + 'static) {
    static KEPT: Mutex<Vec<Box<dyn Send>>> = Mutex::new(Vec::new());
    KEPT.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Box::new(kept));
}

fn next_region_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

enum Backing {
    Hugepages { ptr: NonNull<u8>, layout: Layout },
    Anonymous(memmap2::MmapRaw),
}

// SAFETY: the backing is an allocation owned by whoever holds it; it is only ever accessed
// through raw pointers (volatile copies), never through references, so any thread may do so.
unsafe impl Send for Backing {}
// SAFETY: as above; shared access is a sequence of raw-pointer copies.
unsafe impl Sync for Backing {}

impl Backing {
    fn allocate(kind: MemoryKind, len: usize) -> Result<Self> {
        match kind {
            MemoryKind::Hugepages => {
                let layout = Layout::from_size_align(len, HUGEPAGE_SIZE)
                    .map_err(|_| DmaError::NoHugepages { len })?;
                // SAFETY: `layout` has a non-zero size; the memory is released with the same
                // layout in `Drop`.
                let ptr = unsafe { hugepage_rs::alloc(layout) };
                let ptr = NonNull::new(ptr).ok_or(DmaError::NoHugepages { len })?;
                // Touch every page now so a short reservation fails here, not as SIGBUS later.
                for offset in (0..len).step_by(HUGEPAGE_SIZE) {
                    // SAFETY: `offset < len`, inside the fresh allocation.
                    unsafe { ptr.as_ptr().add(offset).write_volatile(0) };
                }
                Ok(Self::Hugepages { ptr, layout })
            }
            MemoryKind::Anonymous => {
                Self::anonymous(len).map_err(|source| DmaError::Allocate { len, source }.into())
            }
        }
    }

    fn anonymous(len: usize) -> std::io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(len).map_anon()?;
        Ok(Self::Anonymous(map.into()))
    }

    fn ptr(&self) -> NonNull<u8> {
        match self {
            Self::Hugepages { ptr, .. } => *ptr,
            Self::Anonymous(map) => {
                NonNull::new(map.as_mut_ptr()).expect("mmap never returns a null mapping")
            }
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Self::Hugepages { ptr, layout } = self {
            // SAFETY: allocated by `hugepage_rs::alloc` with this layout, freed once.
            unsafe { hugepage_rs::dealloc(ptr.as_ptr(), *layout) };
        }
    }
}

/// Memory that others (a device, other threads) may access at the same time, reached only by
/// bounds-checked volatile copies. Cloning shares it; it is freed with the last clone. What the
/// simulated controller and the RAM disk see of memory.
#[derive(Clone)]
pub struct DmaMemory {
    backing: Arc<Backing>,
    len: usize,
}

impl DmaMemory {
    fn allocate(kind: MemoryKind, len: usize) -> Result<Self> {
        Ok(Self {
            backing: Arc::new(Backing::allocate(kind, len)?),
            len,
        })
    }

    /// `len` bytes of zeroed anonymous memory (one byte at least, as a mapping cannot be
    /// empty; `len()` still says `len`).
    pub fn anonymous(len: usize) -> std::io::Result<Self> {
        Ok(Self {
            backing: Arc::new(Backing::anonymous(len.max(1))?),
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn base(&self) -> NonNull<u8> {
        self.backing.ptr()
    }

    /// The host address, for handing the memory to the kernel (VFIO's DMA map).
    pub(crate) fn host_address(&self) -> *mut u8 {
        self.base().as_ptr()
    }

    /// A bounds-checked volatile view of `len` bytes at `offset`.
    pub fn volatile(&self, offset: usize, len: usize) -> VolatileSlice<'_> {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "{len} bytes at {offset} outside {} bytes of DMA memory",
            self.len
        );
        // SAFETY: the range is inside the allocation, which lives as long as `self` (the `Arc`
        // keeps it), and is only accessed through volatile operations.
        unsafe { VolatileSlice::new(self.base().as_ptr().add(offset), len) }
    }

    /// Copies from the memory at `offset` into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        self.volatile(offset, out.len()).copy_to(out);
    }

    /// Copies `data` into the memory at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) {
        self.volatile(offset, data.len()).copy_from(data);
    }

    /// Zeroes `len` bytes at `offset`.
    pub fn zero(&self, offset: usize, len: usize) {
        const ZEROES: [u8; SMALL_PAGE_SIZE] = [0; SMALL_PAGE_SIZE];
        let target = self.volatile(offset, len);
        for start in (0..len).step_by(SMALL_PAGE_SIZE) {
            let piece = (len - start).min(SMALL_PAGE_SIZE);
            target
                .subslice(start, piece)
                .expect("inside the checked view")
                .copy_from(&ZEROES[..piece]);
        }
    }
}

/// Memory mapped for the device. Owns both the memory and the mapping.
pub struct DmaRegion {
    id: u64,
    /// `memory`'s start, cached for the I/O path.
    base: NonNull<u8>,
    memory: DmaMemory,
    iova: u64,
    /// `None` in a host-only space.
    mapper: Option<Arc<dyn DmaMapper>>,
    /// Set once the memory is deliberately leaked (see [`DmaRegion::leak`]).
    leaked: bool,
}

// SAFETY: the region is plain memory plus an IOVA; all access goes through raw pointers whose
// synchronisation is the responsibility of the queue that uses it.
unsafe impl Send for DmaRegion {}
// SAFETY: as above; `&DmaRegion` only exposes raw pointers and copies.
unsafe impl Sync for DmaRegion {}

impl DmaRegion {
    /// A process-unique identity, used to check that a buffer comes from a registered pool.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn iova(&self) -> u64 {
        self.iova
    }

    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// Host address of `offset`. Only for raw-pointer access.
    pub fn ptr_at(&self, offset: usize) -> *mut u8 {
        assert!(
            offset <= self.len(),
            "offset {offset} outside a {} byte region",
            self.len()
        );
        // SAFETY: `offset <= len`, so the result is inside or one past the allocation.
        unsafe { self.base.as_ptr().add(offset) }
    }

    /// The region's memory, for access by copy.
    pub fn memory(&self) -> &DmaMemory {
        &self.memory
    }

    /// Never unmaps nor frees the memory: for when the device may still be using it.
    pub fn leak(&mut self) {
        if !self.leaked {
            self.leaked = true;
            keep_forever(self.memory.clone());
        }
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        let len = self.len();
        MAPPED_BYTES.fetch_sub(len, Ordering::Relaxed);
        let Some(mapper) = &self.mapper else {
            return;
        };
        if let Err(error) = mapper.unmap(self.iova, len) {
            log::error!(
                "unmapping {len} bytes at IOVA {:#x} failed ({error}); leaking the memory so the \
                 device cannot write into freed pages",
                self.iova
            );
            self.leak();
        }
    }
}

/// Fixed-size buffers carved out of one region. Taking and returning a buffer allocates
/// nothing and takes no lock: the pool belongs to one thread.
pub struct BufferPool {
    region: Arc<DmaRegion>,
    buffer_size: usize,
    /// Buffers in the pool (the region may be larger: it is rounded up to whole pages).
    count: usize,
    free: Vec<u32>,
}

impl BufferPool {
    /// `count` buffers of `buffer_size` bytes each (a multiple of 4 KiB, so each starts on a page).
    pub fn new(space: &DmaSpace, buffer_size: usize, count: usize) -> Result<Self> {
        if buffer_size == 0 || !buffer_size.is_multiple_of(SMALL_PAGE_SIZE) || count == 0 {
            return Err(DmaError::BadPoolShape { buffer_size, count }.into());
        }
        let region = Arc::new(space.allocate(buffer_size * count)?);
        Ok(Self {
            region,
            buffer_size,
            count,
            free: (0..count as u32).rev().collect(),
        })
    }

    /// The region the buffers live in; a queue pair keeps it alive while it may use it.
    pub fn region(&self) -> &Arc<DmaRegion> {
        &self.region
    }

    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Buffers taken and not given back.
    pub fn lent(&self) -> usize {
        self.count - self.free.len()
    }

    pub fn take(&mut self) -> Option<DmaBuffer> {
        let index = self.free.pop()?;
        let offset = index as usize * self.buffer_size;
        Some(DmaBuffer {
            region_id: self.region.id(),
            index,
            ptr: self.region.ptr_at(offset),
            iova: self.region.iova() + offset as u64,
            len: self.buffer_size,
        })
    }

    /// Returns a buffer taken from this pool.
    pub fn give_back(&mut self, buffer: DmaBuffer) {
        assert_eq!(
            buffer.region_id,
            self.region.id(),
            "buffer returned to the wrong pool"
        );
        self.free.push(buffer.index);
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        let total = self.count;
        if self.free.len() != total {
            log::error!(
                "buffer pool dropped with {} of {total} buffers still out; leaking its memory so \
                 they never point at freed pages",
                total - self.free.len()
            );
            keep_forever(Arc::clone(&self.region));
        }
    }
}

/// One buffer of a [`BufferPool`]. Not `Clone`: exactly one owner until it is given back.
#[derive(Debug, PartialEq, Eq)]
pub struct DmaBuffer {
    region_id: u64,
    index: u32,
    ptr: *mut u8,
    iova: u64,
    len: usize,
}

// SAFETY: a buffer is a unique handle on its slice of a region; moving it to another thread moves
// that exclusive use with it.
unsafe impl Send for DmaBuffer {}

impl DmaBuffer {
    pub fn region_id(&self) -> u64 {
        self.region_id
    }

    pub fn iova(&self) -> u64 {
        self.iova
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's bytes. Safe because a buffer is outside a queue pair only while no command
    /// uses it: submitting hands it to the queue pair, which gives it back with the completion.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is this buffer's exclusive slice of a live region (kept alive
        // by its pool or the queue pairs it is registered with), and the device does not access
        // it while the buffer is out here (see above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
