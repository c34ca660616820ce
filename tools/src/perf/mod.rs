//! `vfnvme perf`: a load generator in the style of `spdk_nvme_perf`.
//!
//! One thread drives every queue pair round-robin: each pair keeps `-q` commands in flight,
//! each command slot owning one data buffer for the whole run, so the submit/poll loop
//! allocates nothing. Latency is measured from just before submission to the poll that reaped
//! the completion.
//!
//! The workload, verify and statistics logic is shared by two backends, which differ only
//! in how a command is submitted and its completion reaped (`engine::Backend`): a queue pair of a
//! local drive through the user-space driver (`--device`, [`local`]), or an NVMe/TCP I/O queue
//! of a remote target through `vfnvme_host` (`--connect`, [`remote`]).
//!
//! Workloads: `read`/`write` walk the namespace sequentially and wrap around; `randread`/
//! `randwrite` pick `-o`-aligned offsets uniformly; writes send whatever the buffers hold.
//! `verify` makes one sequential pass over the namespace: it writes each `-o` chunk with the
//! pattern below, reads it back and compares; it stops at the end of the pass or when `-t`
//! expires. `--verify-existing` skips the writes and checks data written earlier (by a previous
//! run, or by `dd` from `vfnvme pattern` through the kernel driver).
//!
//! The pattern: for logical block `lba` of `bs` bytes and seed `seed` (`--seed`, default 1),
//! the block is `bs / 8` little-endian u64 words, word `i` being
//! `lba.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.rotate_left(17) ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)`
//! (see [`pattern`]).
//!
//! - [`args`]: the options; [`plan`]: the run they describe, checked against the device.
//! - [`engine`]: the shared submit/poll loop; [`report`]: counters, progress, the summary.
//! - [`local`], [`remote`]: the two backends; [`workload`], [`pattern`], [`histogram`]: helpers.

mod args;
mod engine;
mod histogram;
mod local;
pub mod pattern;
mod plan;
mod remote;
mod report;
mod workload;

pub use args::PerfArgs;

use crate::error::{Error, Result};

pub fn run(args: &PerfArgs) -> Result<()> {
    match (&args.device, &args.connect) {
        (Some(address), None) => local::run(args, address),
        (None, Some(url)) => remote::run(args, url),
        _ => Err(Error::Invalid(
            "give either --device or --connect, not both or neither".into(),
        )),
    }
}
