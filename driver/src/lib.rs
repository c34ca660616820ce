//! vfnvme-driver: a user-space NVMe driver. Drives a controller bound to `vfio-pci` through
//! VFIO with hugepage DMA memory, or (with the `sim` feature) the simulated controller in `sim`,
//! through the same code.
//!
//! Layers, bottom up: `vfnvme_spec` (wire formats, its own crate), [`mmio`] (registers), [`dma`]
//! (memory the device reaches), [`queue`] (rings), [`controller`] (bring-up, admin, I/O queue
//! pairs); [`vfio`] and `sim` each provide an [`device::NvmeDevice`]; [`ram`] is the RAM medium
//! of RAM namespaces and of the simulator.
//!
//! One unsafe boundary: `unsafe` is allowed only in the hardware modules `vfio`, `dma`, `mmio`
//! and `queue`; every other module forbids it and reaches DMA memory and registers through their
//! safe, bounds-checked, copying APIs.

#![deny(unsafe_code)]

pub mod controller;
pub mod device;
#[allow(unsafe_code)]
pub mod dma;
pub mod error;
#[allow(unsafe_code)]
pub mod mmio;
#[allow(unsafe_code)]
pub mod queue;
pub mod ram;
#[cfg(feature = "sim")]
pub mod sim;
#[allow(unsafe_code)]
pub mod vfio;

pub use controller::{AdminData, Controller, ControllerOptions, IoQueuePair, Namespace};
pub use device::NvmeDevice;
pub use error::{DmaError, Error, Result, VfioError};
