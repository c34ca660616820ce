//! Statistics: what hosts do with each namespace, what each poll group and connection holds.
//! docs/statistics.md is the reference.
//!
//! - `histogram.rs`: the latency histogram (log-linear buckets, a fixed array);
//! - `counters.rs`: the counters a connection keeps (per namespace of its table), and the
//!   poll group's round clock its latencies are measured with;
//! - `snapshot.rs`: what a poll group publishes once per tick, and the board the management
//!   side reads those snapshots from;
//! - `report.rs`: the JSON of `nvmf_get_stats` and `vfnvme_get_stats`, summed over groups;
//! - `metrics.rs`: the optional Prometheus endpoint (`[metrics] address`).
//!
//! Nothing here takes a lock or touches a shared atomic on the I/O path: a poll group counts in
//! its connections' own structs and copies them out at its tick.

mod counters;
mod histogram;
mod metrics;
pub mod report;
mod snapshot;

pub use counters::{ConnectionStats, IoCounters, QueueIdentity, RoundClock, StatusCounts};
pub use histogram::{LatencyHistogram, LatencySummary};
pub use metrics::{exposition, MetricsServer};
pub use snapshot::{GroupSnapshot, GroupStats, IoEntry, QueueSnapshot, QueueView, StatsBoard};
