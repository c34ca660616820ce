//! The statistics as the management socket answers them (`nvmf_get_stats`,
//! `vfnvme_get_stats`): each poll group's snapshot, and the I/O counters summed over the
//! groups per namespace and per host. docs/statistics.md documents every field.

use std::sync::Arc;

use serde::Serialize;
use vfnvme_spec::Status;

use super::counters::IoCounters;
use super::histogram::LatencySummary;
use super::snapshot::{GroupSnapshot, IoEntry, QueueSnapshot, StatsBoard};

/// Times are in nanoseconds: SPDK's `tick_rate` (ticks per second) is 10^9.
pub const TICK_RATE: u64 = 1_000_000_000;

#[derive(Serialize)]
pub struct PollGroupReport {
    pub name: String,
    pub connections: usize,
    pub current_admin_qpairs: usize,
    pub current_io_qpairs: usize,
    pub outstanding_commands: usize,
    /// I/O commands the group answered since the start.
    pub completed_nvme_io: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub transports: [Transport; 1],
}

#[derive(Serialize)]
pub struct Transport {
    pub trtype: &'static str,
}

/// `nvmf_get_stats`: SPDK's shape.
#[derive(Serialize)]
pub struct TargetStats {
    pub tick_rate: u64,
    pub uptime_ns: u64,
    pub poll_groups: Vec<PollGroupReport>,
}

#[derive(Serialize)]
pub struct ErrorCount {
    pub sct: u8,
    pub sc: u8,
    pub status: String,
    pub count: u64,
}

#[derive(Serialize)]
pub struct IoReport {
    pub reads: u64,
    pub writes: u64,
    pub others: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: Vec<ErrorCount>,
    /// Errors of statuses beyond the few counted one by one.
    pub other_errors: u64,
    pub latency: LatencySummary,
}

impl From<&IoCounters> for IoReport {
    fn from(counters: &IoCounters) -> Self {
        Self {
            reads: counters.reads,
            writes: counters.writes,
            others: counters.others,
            bytes_read: counters.bytes_read,
            bytes_written: counters.bytes_written,
            errors: counters
                .errors
                .entries()
                .iter()
                .map(|&(sct, sc, count)| ErrorCount {
                    sct,
                    sc,
                    status: Status::new(sct, sc).to_string(),
                    count,
                })
                .collect(),
            other_errors: counters.errors.other(),
            latency: counters.latency.summary(),
        }
    }
}

#[derive(Serialize)]
pub struct NamespaceReport {
    pub subsystem_nqn: Arc<str>,
    pub nsid: u32,
    #[serde(flatten)]
    pub io: IoReport,
}

#[derive(Serialize)]
pub struct HostReport {
    pub host_nqn: Arc<str>,
    #[serde(flatten)]
    pub io: IoReport,
}

#[derive(Serialize)]
pub struct ConnectionReport {
    pub poll_group: usize,
    #[serde(flatten)]
    pub queue: QueueSnapshot,
}

/// `vfnvme_get_stats`: everything.
#[derive(Serialize)]
pub struct FullStats {
    #[serde(flatten)]
    pub target: TargetStats,
    pub namespaces: Vec<NamespaceReport>,
    pub hosts: Vec<HostReport>,
    pub connections: Vec<ConnectionReport>,
}

fn poll_group(snapshot: &GroupSnapshot) -> PollGroupReport {
    PollGroupReport {
        name: format!("poll-group-{}", snapshot.index),
        connections: snapshot.connections,
        current_admin_qpairs: snapshot.admin_queue_pairs,
        current_io_qpairs: snapshot.io_queue_pairs,
        outstanding_commands: snapshot.outstanding_commands,
        completed_nvme_io: snapshot.io.iter().map(|e| e.counters.commands()).sum(),
        busy_ns: snapshot.busy_ns,
        idle_ns: snapshot.idle_ns,
        transports: [Transport { trtype: "TCP" }],
    }
}

fn target(board: &StatsBoard, snapshots: &[GroupSnapshot]) -> TargetStats {
    TargetStats {
        tick_rate: TICK_RATE,
        uptime_ns: board.uptime().as_nanos() as u64,
        poll_groups: snapshots.iter().map(poll_group).collect(),
    }
}

/// Sums `entries` by `key`, in the order keys are first seen, then sorted.
fn sum_by<K: Ord + Clone>(entries: impl Iterator<Item = (K, IoCounters)>) -> Vec<(K, IoCounters)> {
    let mut sums: Vec<(K, IoCounters)> = Vec::new();
    for (key, counters) in entries {
        match sums.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sum)) => sum.merge(&counters),
            None => sums.push((key, counters)),
        }
    }
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    sums
}

pub fn target_stats(board: &StatsBoard) -> TargetStats {
    target(board, &board.snapshots())
}

pub fn full_stats(board: &StatsBoard) -> FullStats {
    let snapshots = board.snapshots();
    let entries = || snapshots.iter().flat_map(|s| s.io.iter());
    let by_namespace = sum_by(entries().filter_map(|e: &IoEntry| {
        e.nsid
            .map(|nsid| ((Arc::clone(&e.subsystem_nqn), nsid), e.counters.clone()))
    }));
    let by_host = sum_by(entries().map(|e| (Arc::clone(&e.host_nqn), e.counters.clone())));
    FullStats {
        target: target(board, &snapshots),
        namespaces: by_namespace
            .iter()
            .map(|((subsystem_nqn, nsid), counters)| NamespaceReport {
                subsystem_nqn: Arc::clone(subsystem_nqn),
                nsid: *nsid,
                io: counters.into(),
            })
            .collect(),
        hosts: by_host
            .iter()
            .map(|(host_nqn, counters)| HostReport {
                host_nqn: Arc::clone(host_nqn),
                io: counters.into(),
            })
            .collect(),
        connections: snapshots
            .iter()
            .flat_map(|s| {
                s.queues.iter().map(|q| ConnectionReport {
                    poll_group: s.index,
                    queue: q.clone(),
                })
            })
            .collect(),
    }
}
