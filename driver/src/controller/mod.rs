//! The controller: bring-up (reset, enable, Identify, queue negotiation), resets, namespaces,
//! and shutdown. The handle and its shared state are in `handle`, the admin queue in
//! `admin`, the I/O queue pairs in `io_qpair`, the polling helpers in `wait`.
//!
//! Ownership expresses teardown: an [`IoQueuePair`] holds its controller alive, and its `Drop`
//! first waits for its commands, then deletes its queues on the device (or resets the
//! controller), releases its queue id, and only then lets its ring memory go. The controller is
//! shut down (CC.SHN) when its last owner is gone.

#![forbid(unsafe_code)]

mod admin;
mod handle;
mod io_qpair;
mod wait;

pub use admin::AdminData;
pub use handle::{Controller, ControllerOptions, Namespace, LOST_IN_RESET};
pub use io_qpair::{IoQueuePair, TimeoutReport};
