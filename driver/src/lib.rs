//! vfnvme-driver: a user-space NVMe driver. Drives a controller bound to `vfio-pci` through
//! VFIO with hugepage DMA memory, or the simulated controller in [`sim`], through the same code.
//!
//! Layers, bottom up: `vfnvme_spec` (wire formats, its own crate), [`mmio`] (registers), [`dma`] (memory the device
//! reaches), [`queue`] (rings), [`controller`] (bring-up, admin, I/O queue pairs); [`vfio`] and
//! [`sim`] each provide an [`device::NvmeDevice`].

pub mod controller;
pub mod device;
pub mod dma;
pub mod error;
pub mod mmio;
pub mod queue;
pub mod sim;
pub mod vfio;

pub use controller::{AdminData, Controller, ControllerOptions, IoQueuePair, Namespace};
pub use device::NvmeDevice;
pub use error::{DmaError, Error, Result, VfioError};
