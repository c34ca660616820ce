//! Our own NVMe/TCP initiator, sharing the target's PDU code: what the tests and
//! `vfnvme perf --connect` use to talk to a target (ours or any other).
//!
//! - [`queue`]: a [`HostQueue`] is one connection, one fabric queue. Commands are pipelined:
//!   `submit` sends the capsule (with in-capsule data when it fits), `poll` receives C2HData
//!   into the command's slot, answers R2Ts with H2CData, and reports completions. Slots and
//!   their data buffers are allocated once, at connection time.
//! - [`admin`]: a [`Host`] is a controller reached through its admin queue: Connect,
//!   properties, Identify, log pages, and opening I/O queues.
//! - [`auth`]: DH-HMAC-CHAP on a connected queue ([`authenticate`]), the Authentication
//!   Send / Receive commands carrying `vfnvme_auth::HostAuth`'s messages.
//! - [`options`] and [`error`]: what both take and return.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod error;
pub mod options;
pub mod queue;
mod socket;
mod tls;

pub use admin::Host;
pub use auth::authenticate;
pub use error::HostError;
pub use options::HostOptions;
pub use queue::{HostCompletion, HostQueue};
