//! The NVMe-oF target: NVMe/TCP transport, fabric controllers, subsystems and poll groups.
//!
//! - [`config`], [`subsystem`], [`ctrlr`]: what hosts see.
//! - [`backend`]: drives and the per-poll-group queues that reach them; [`drive_table`]: the
//!   append-only table of the target's drives; [`attach`]: opening a namespace's drive and
//!   attaching it to (or detaching it from) the running target, through each poll group's
//!   ring of changes ([`group_control`]).
//! - [`conn`], [`poll_group`], [`tgt`]: connections, the threads that own them, the target;
//!   [`polling`]: when a poll group polls or parks, which connections it reads directly.
//! - [`lifecycle`]: a poll group's life and the gate connections enter it by (model checked).
//! - [`session`]: a connection's binding to a fabric controller.
//! - [`shared`]: the state the target's threads share, built by [`tgt`]; [`listeners`]: the
//!   listeners, opened and closed while the target runs.
//! - [`admin_worker`]: the thread that runs the admin commands drives answer.
//! - [`rpc`]: the management socket (JSON-RPC), its thread and methods.
//! - [`stats`]: the statistics poll groups count and publish, and their reports.

#![forbid(unsafe_code)]

pub mod admin_worker;
pub mod admission;
pub mod attach;
pub mod backend;
pub mod config;
pub mod conn;
pub mod cpus;
pub mod ctrlr;
pub mod drive_table;
pub mod group_control;
pub mod keyring;
pub mod lifecycle;
pub mod listeners;
pub mod poll_group;
pub mod polling;
pub mod rpc;
pub mod session;
pub mod shared;
pub mod stats;
pub mod subsystem;
pub mod tgt;
pub mod tls;
