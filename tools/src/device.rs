//! Opening a controller by address: a PCI address of a drive bound to vfio-pci, or `sim`.

use std::sync::Arc;

use vfnvme_driver::sim::{SimConfig, SimController};
use vfnvme_driver::vfio::VfioNvme;
use vfnvme_driver::{Controller, ControllerOptions, NvmeDevice};

use crate::error::{Error, Result};

/// The address that selects the simulated controller instead of a PCI device.
pub const SIM_ADDRESS: &str = "sim";

/// An initialised controller and the device under it, whose DMA space buffer pools come from.
pub struct OpenDevice {
    pub device: Arc<dyn NvmeDevice>,
    pub controller: Controller,
}

pub fn open(address: &str) -> Result<OpenDevice> {
    let device: Arc<dyn NvmeDevice> = if address == SIM_ADDRESS {
        SimController::new(SimConfig::default()).map_err(Error::Simulator)?
    } else {
        VfioNvme::open(address)?
    };
    let controller = Controller::new(Arc::clone(&device), ControllerOptions::default())?;
    Ok(OpenDevice { device, controller })
}
