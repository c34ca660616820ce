//! Hardware-in-the-loop harness: builds a guest (Debian kernel + busybox initramfs with the
//! project's binaries), boots QEMU with emulated NVMe drives behind an emulated IOMMU, runs a
//! scenario script inside and turns its result marker into pass/fail.
//!
//! ```no_run
//! use vfnvme_hw_tests::{Drive, Scenario};
//! Scenario::new("example", "step list; run ls /sys/bus/pci/devices")
//!     .drive(Drive::new("SERIAL0", 64 << 20))
//!     .run_expecting_pass();
//! ```

pub mod binaries;
pub mod cpio;
pub mod demo;
pub mod error;
pub mod guest;
pub mod host;
pub mod kernel;
pub mod kmod;
pub mod qemu;
pub mod qmp;
pub mod scenario;

pub use error::{HarnessError, Result};
pub use scenario::{Capture, Drive, Outcome, Scenario};
