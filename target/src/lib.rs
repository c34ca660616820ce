//! The NVMe-oF target: NVMe/TCP transport, fabric controllers, subsystems and poll groups.

pub mod tcp;

pub mod config;
pub mod ctrlr;
pub mod fabrics;
pub mod subsystem;
