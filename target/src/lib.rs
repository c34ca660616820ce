//! The NVMe-oF target: NVMe/TCP transport, fabric controllers, subsystems and poll groups.

pub mod tcp;
