//! What the driver needs from a PCIe NVMe function, whether real (VFIO) or simulated.

use crate::dma::DmaSpace;
use crate::mmio::Mmio;

/// A controller's register file and the DMA space its device can reach.
pub trait NvmeDevice: Send + Sync {
    /// The device's address for messages: a PCI address, or `sim` for the simulator.
    fn address(&self) -> &str;

    /// BAR0.
    fn registers(&self) -> &Mmio;

    /// Memory the device can reach.
    fn dma(&self) -> &DmaSpace;
}
