//! What the driver needs from a PCIe NVMe function, whether real (VFIO) or simulated.

#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;

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

    /// An eventfd that becomes readable when the device is to be given up: the kernel asks for
    /// it back (VFIO device request, as on hot removal), or an operator does
    /// ([`request_removal`](Self::request_removal)). The owner must then stop using the
    /// device and drop it.
    fn removal_event(&self) -> BorrowedFd<'_>;

    /// Asks for the device to be given up, as the kernel does on hot removal.
    fn request_removal(&self);

    /// The owner is giving the device up because its removal was requested: the device may
    /// vanish (from sysfs too) as soon as it is closed.
    fn prepare_for_removal(&self);
}

/// The eventfd behind [`NvmeDevice::removal_event`].
pub struct RemovalEvent(nix::sys::eventfd::EventFd);

impl RemovalEvent {
    pub fn new() -> std::io::Result<Self> {
        let flags =
            nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC;
        Ok(Self(nix::sys::eventfd::EventFd::from_value_and_flags(
            0, flags,
        )?))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.0.as_fd()
    }

    pub fn signal(&self) {
        // A full counter still reads as signalled.
        let _ = self.0.write(1);
    }
}
