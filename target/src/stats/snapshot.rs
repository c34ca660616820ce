//! What a poll group publishes of itself: its counters as of its last tick (every 100 ms),
//! copied into the input side of a triple buffer (`triple_buffer`: wait-free, one writer,
//! one reader), which the management side reads without ever making the group wait.
//!
//! Why published copies rather than a request through the group's ring: a copy per tick costs
//! the group a memory copy of its counters (no allocation once its tables have their size:
//! `clone_from` reuses the back buffer's), while a request would have to wake a sleeping
//! group, wait for it, and be answered through a second ring; and the Prometheus endpoint,
//! scraped on its own schedule, reads the same copies. The price: what the management side
//! sees is up to one tick old (docs/statistics.md).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::counters::{ConnectionStats, IoCounters, RoundClock};

/// One queue (connection) as its poll group last saw it (and as `vfnvme_get_stats` shows it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueSnapshot {
    pub peer: String,
    /// Unset until the queue is bound by a Connect.
    pub host_nqn: Option<Arc<str>>,
    pub subsystem_nqn: Option<Arc<str>>,
    pub cntlid: u16,
    pub qid: u16,
    /// Commands received and not yet answered (sent).
    pub depth_in_use: usize,
    /// The submission queue's entries (the Connect's SQSIZE + 1), 0 before the Connect.
    pub sq_entries: u16,
    pub header_digest: bool,
    pub data_digest: bool,
}

/// The I/O commands of one host on one namespace (`nsid` none: commands naming no namespace
/// of the subsystem) in one poll group, since the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoEntry {
    pub subsystem_nqn: Arc<str>,
    pub host_nqn: Arc<str>,
    pub nsid: Option<u32>,
    pub counters: IoCounters,
}

/// A poll group's statistics as of its last tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub index: usize,
    /// Connections the group holds (accepted, not yet released).
    pub connections: usize,
    /// Of those, the queues bound by a Connect: admin and I/O.
    pub admin_queue_pairs: usize,
    pub io_queue_pairs: usize,
    /// Commands received and not yet answered, over all its queues.
    pub outstanding_commands: usize,
    /// Time of the rounds that found work, and of those that found none (parked included).
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub queues: Vec<QueueSnapshot>,
    pub io: Vec<IoEntry>,
}

/// Fold `counters` into the entry of its key in `entries`.
fn fold(
    entries: &mut Vec<IoEntry>,
    key: (&Arc<str>, &Arc<str>, Option<u32>),
    counters: &IoCounters,
) {
    let (subsystem, host, nsid) = key;
    match entries
        .iter_mut()
        .find(|e| e.nsid == nsid && e.host_nqn == *host && e.subsystem_nqn == *subsystem)
    {
        Some(entry) => entry.counters.merge(counters),
        None => entries.push(IoEntry {
            subsystem_nqn: Arc::clone(subsystem),
            host_nqn: Arc::clone(host),
            nsid,
            counters: counters.clone(),
        }),
    }
}

/// Every entry of a connection's counters.
fn fold_connection(entries: &mut Vec<IoEntry>, stats: &ConnectionStats) {
    let Some(identity) = &stats.identity else {
        return;
    };
    let key = |nsid| (&identity.subsystem_nqn, &identity.host_nqn, nsid);
    for (nsid, counters) in &stats.namespaces {
        if counters.commands() > 0 {
            fold(entries, key(Some(*nsid)), counters);
        }
    }
    if stats.unrouted.commands() > 0 {
        fold(entries, key(None), &stats.unrouted);
    }
}

/// The statistics side of a poll group: its clock, its polling time, the counters of its
/// connections already released, and where it publishes.
pub struct GroupStats {
    index: usize,
    clock: RoundClock,
    busy_ns: u64,
    idle_ns: u64,
    last_round: Instant,
    last_worked: bool,
    /// Counters of connections released, so that totals never go down.
    retired: Vec<IoEntry>,
    publisher: triple_buffer::Input<GroupSnapshot>,
}

/// What the group tells of a connection when it publishes.
pub struct QueueView<'a> {
    pub stats: &'a ConnectionStats,
    pub peer: &'a str,
    pub depth_in_use: usize,
    pub sq_entries: u16,
    pub header_digest: bool,
    pub data_digest: bool,
}

impl GroupStats {
    pub fn clock(&self) -> &RoundClock {
        &self.clock
    }

    /// A round of the loop began at `now`; the previous one found work if `worked`.
    pub fn round(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_round).as_nanos() as u64;
        if self.last_worked {
            self.busy_ns += elapsed;
        } else {
            self.idle_ns += elapsed;
        }
        self.last_round = now;
        self.last_worked = false;
        self.clock.set(now);
    }

    /// The current round found work.
    pub fn worked(&mut self) {
        self.last_worked = true;
    }

    /// A connection is released: its counters stay in the totals.
    pub fn retire(&mut self, stats: &ConnectionStats) {
        fold_connection(&mut self.retired, stats);
    }

    /// Copies the counters of the group and of `queues` for the management side.
    pub fn publish<'a>(&mut self, queues: impl Iterator<Item = QueueView<'a>>) {
        let snapshot = self.publisher.input_buffer_mut();
        snapshot.index = self.index;
        snapshot.busy_ns = self.busy_ns;
        snapshot.idle_ns = self.idle_ns;
        snapshot.io.clone_from(&self.retired);
        let (mut count, mut admin, mut io, mut outstanding) = (0, 0, 0, 0);
        for view in queues {
            if snapshot.queues.len() == count {
                snapshot.queues.push(QueueSnapshot::default());
            }
            let queue = &mut snapshot.queues[count];
            count += 1;
            queue.peer.clear();
            queue.peer.push_str(view.peer);
            let identity = view.stats.identity.as_ref();
            queue.host_nqn = identity.map(|i| Arc::clone(&i.host_nqn));
            queue.subsystem_nqn = identity.map(|i| Arc::clone(&i.subsystem_nqn));
            queue.cntlid = identity.map_or(0, |i| i.cntlid);
            queue.qid = identity.map_or(0, |i| i.qid);
            queue.depth_in_use = view.depth_in_use;
            queue.sq_entries = view.sq_entries;
            queue.header_digest = view.header_digest;
            queue.data_digest = view.data_digest;
            match identity {
                Some(i) if i.qid == 0 => admin += 1,
                Some(_) => io += 1,
                None => {}
            }
            outstanding += view.depth_in_use;
            fold_connection(&mut snapshot.io, view.stats);
        }
        snapshot.queues.truncate(count);
        // After a burst of connections (a storm, a scan) the copies are as small as before it.
        if snapshot.queues.capacity() > 4 * count.max(4) {
            snapshot.queues.shrink_to_fit();
        }
        snapshot.connections = count;
        snapshot.admin_queue_pairs = admin;
        snapshot.io_queue_pairs = io;
        snapshot.outstanding_commands = outstanding;
        self.publisher.publish();
    }
}

/// The management side's view of every poll group: the reading ends of their snapshots.
/// The lock is the management side's own (the RPC thread and the metrics endpoint may read
/// at once); a poll group never takes it.
pub struct StatsBoard {
    started: Instant,
    groups: Vec<Mutex<triple_buffer::Output<GroupSnapshot>>>,
}

impl StatsBoard {
    /// A board for `groups` poll groups, and each group's side of it.
    pub fn new(groups: usize) -> (Arc<Self>, Vec<GroupStats>) {
        let started = Instant::now();
        let mut outputs = Vec::new();
        let mut inputs = Vec::new();
        for index in 0..groups {
            let initial = GroupSnapshot {
                index,
                ..GroupSnapshot::default()
            };
            let (input, output) = triple_buffer::triple_buffer(&initial);
            outputs.push(Mutex::new(output));
            inputs.push(GroupStats {
                index,
                clock: RoundClock::new(started),
                busy_ns: 0,
                idle_ns: 0,
                last_round: started,
                last_worked: false,
                retired: Vec::new(),
                publisher: input,
            });
        }
        let board = Arc::new(Self {
            started,
            groups: outputs,
        });
        (board, inputs)
    }

    /// How long the target has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Each group's last published snapshot.
    pub fn snapshots(&self) -> Vec<GroupSnapshot> {
        self.groups
            .iter()
            .map(|output| {
                let mut output = output.lock().unwrap_or_else(|poison| poison.into_inner());
                output.read().clone()
            })
            .collect()
    }
}
