//! Volatile access to a controller's register file (BAR0), with CC and CSTS (the registers
//! the driver and the simulator read and write over and over) as their types.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

use vfnvme_spec::regs::{self, Cc, Csts};

/// A view of BAR0. Cloning shares the mapping, which stays alive until the last clone is gone,
/// so a queue's doorbell can never outlive the registers it points into.
#[derive(Clone)]
pub struct Mmio {
    base: NonNull<u8>,
    len: usize,
    _mapping: Arc<dyn Any + Send + Sync>,
}

// SAFETY: MMIO registers are accessed only with volatile reads and writes of aligned 32/64-bit
// words, which the device (real or simulated) accepts from any thread.
unsafe impl Send for Mmio {}
// SAFETY: as above; shared access is a sequence of independent volatile word accesses.
unsafe impl Sync for Mmio {}

impl Mmio {
    /// # Safety
    /// `base..base + len` must be mapped device registers (or memory standing in for them) for as
    /// long as `mapping` is alive, and must only be accessed with volatile operations.
    pub unsafe fn new(base: NonNull<u8>, len: usize, mapping: Arc<dyn Any + Send + Sync>) -> Self {
        Self {
            base,
            len,
            _mapping: mapping,
        }
    }

    /// `len` bytes of zeroed anonymous memory standing in for a register file: the simulated
    /// controller's BAR0, which it and the driver both reach only through `Mmio`.
    pub fn anonymous(len: usize) -> std::io::Result<Self> {
        let map: memmap2::MmapRaw = memmap2::MmapOptions::new().len(len).map_anon()?.into();
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns a null mapping");
        // SAFETY: the mapping is `len` bytes, kept alive by the `Arc` handed over, and reached
        // only through this type's volatile word accesses.
        Ok(unsafe { Self::new(base, len, Arc::new(map)) })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn word<T>(&self, offset: usize) -> *mut T {
        let size = std::mem::size_of::<T>();
        assert!(
            offset.is_multiple_of(size) && offset + size <= self.len,
            "register offset {offset:#x} unaligned or outside BAR0 ({:#x} bytes)",
            self.len
        );
        // SAFETY: checked to be inside the mapping above.
        unsafe { self.base.as_ptr().add(offset).cast() }
    }

    pub fn read32(&self, offset: usize) -> u32 {
        // SAFETY: aligned and in bounds (checked by `word`), mapped while `self` lives.
        unsafe { self.word::<u32>(offset).read_volatile() }
    }

    pub fn write32(&self, offset: usize, value: u32) {
        // SAFETY: aligned and in bounds (checked by `word`), mapped while `self` lives.
        unsafe { self.word::<u32>(offset).write_volatile(value) }
    }

    /// 64-bit registers are accessed as two 32-bit halves, low first, which every controller
    /// accepts (not all accept a single 64-bit access).
    pub fn read64(&self, offset: usize) -> u64 {
        let low = self.read32(offset);
        let high = self.read32(offset + 4);
        u64::from(low) | (u64::from(high) << 32)
    }

    pub fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }

    /// Controller Configuration.
    pub fn cc(&self) -> Cc {
        Cc::from_bits(self.read32(regs::CC))
    }

    pub fn set_cc(&self, value: Cc) {
        self.write32(regs::CC, value.into_bits());
    }

    /// Controller Status.
    pub fn csts(&self) -> Csts {
        Csts::from_bits(self.read32(regs::CSTS))
    }

    pub fn set_csts(&self, value: Csts) {
        self.write32(regs::CSTS, value.into_bits());
    }

    /// A doorbell register, checked once here so that ringing it costs one store.
    pub fn doorbell(&self, offset: usize) -> Doorbell {
        Doorbell {
            register: NonNull::new(self.word::<u32>(offset)).expect("inside a non-null mapping"),
            _mmio: self.clone(),
        }
    }
}

/// One doorbell register; keeps BAR0 mapped while it exists.
pub struct Doorbell {
    register: NonNull<u32>,
    _mmio: Mmio,
}

// SAFETY: see `Mmio`; a doorbell is one aligned 32-bit register.
unsafe impl Send for Doorbell {}

impl Doorbell {
    pub fn ring(&self, value: u32) {
        // SAFETY: validated aligned and in bounds by `Mmio::doorbell`; the mapping is kept alive
        // by `_mmio`.
        unsafe { self.register.as_ptr().write_volatile(value) }
    }
}
