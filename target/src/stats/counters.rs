//! The counters a connection keeps of its I/O commands: plain integers in its own structs,
//! changed only by its poll group's thread. No lock, no shared atomic, no allocation per
//! command: the tables are sized when the queue is bound (its Connect).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vfnvme_spec::{nvm_opcode, Status};

use super::histogram::LatencyHistogram;

/// Distinct error statuses counted one by one per namespace and host; others go to
/// `other_errors` (a host seldom sees more than a few kinds).
pub const STATUS_KINDS: usize = 8;

/// Errors by status: (SCT, SC) and how many, in the order first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    kinds: [(u8, u8, u64); STATUS_KINDS],
    used: usize,
    /// Errors whose status found no free entry.
    other: u64,
}

impl StatusCounts {
    pub fn record(&mut self, sct: u8, sc: u8, count: u64) {
        let used = &mut self.kinds[..self.used];
        if let Some(entry) = used.iter_mut().find(|(t, c, _)| (*t, *c) == (sct, sc)) {
            entry.2 += count;
        } else if self.used < STATUS_KINDS {
            self.kinds[self.used] = (sct, sc, count);
            self.used += 1;
        } else {
            self.other += count;
        }
    }

    pub fn merge(&mut self, other: &Self) {
        for &(sct, sc, count) in other.entries() {
            self.record(sct, sc, count);
        }
        self.other += other.other;
    }

    /// (SCT, SC, count) of each status seen.
    pub fn entries(&self) -> &[(u8, u8, u64)] {
        &self.kinds[..self.used]
    }

    pub fn other(&self) -> u64 {
        self.other
    }

    pub fn total(&self) -> u64 {
        self.entries().iter().map(|e| e.2).sum::<u64>() + self.other
    }
}

/// Commands of one namespace (or of none: an invalid NSID) from one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub reads: u64,
    pub writes: u64,
    /// Every other I/O command (Flush, Write Zeroes, Dataset Management, refused opcodes).
    pub others: u64,
    /// Data of successful reads and writes.
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: StatusCounts,
    pub latency: LatencyHistogram,
}

impl IoCounters {
    /// A command of `opcode` answered with `status` after `latency_ns`, `bytes` of data.
    pub fn record(&mut self, opcode: u8, bytes: usize, status: Status, latency_ns: u64) {
        let success = status.is_success();
        match opcode {
            nvm_opcode::READ => {
                self.reads += 1;
                if success {
                    self.bytes_read += bytes as u64;
                }
            }
            nvm_opcode::WRITE => {
                self.writes += 1;
                if success {
                    self.bytes_written += bytes as u64;
                }
            }
            _ => self.others += 1,
        }
        if !success {
            self.errors.record(status.sct(), status.sc(), 1);
        }
        self.latency.record(latency_ns);
    }

    pub fn merge(&mut self, other: &Self) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.others += other.others;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.errors.merge(&other.errors);
        self.latency.merge(&other.latency);
    }

    pub fn commands(&self) -> u64 {
        self.reads + self.writes + self.others
    }
}

/// A poll group's clock: the `now` of its current round, read once per round by the loop, in
/// nanoseconds since the group started. Shared only by the group's own connections, on its
/// thread (like their host's buffer budget): a relaxed store per round and a relaxed load per
/// command, never contended. A command's arrival is the round's `now` (no clock read); its
/// answer reads the clock once ([`RoundClock::read`]), since a command answered in the round it
/// arrived in (a RAM namespace, an error) would otherwise take no time at all.
#[derive(Clone, Debug)]
pub struct RoundClock {
    epoch: Instant,
    now: Arc<AtomicU64>,
}

impl RoundClock {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            now: Arc::default(),
        }
    }

    /// The group's loop read the clock: `now` is the time of this round.
    pub fn set(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.now.store(nanos, Ordering::Relaxed);
    }

    /// The time of the current round, in nanoseconds since the group started.
    pub fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// The time now (a clock read), in nanoseconds since the group started.
    pub fn read(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64
    }
}

/// What a connection counts: its host and subsystem once bound, per namespace of its table
/// (in the table's order) and for commands naming none.
#[derive(Debug)]
pub struct ConnectionStats {
    pub clock: RoundClock,
    pub identity: Option<QueueIdentity>,
    /// NSID and counters, in the order of the queue's namespace table (sorted by NSID).
    pub namespaces: Vec<(u32, IoCounters)>,
    /// Commands whose NSID is none of the table's.
    pub unrouted: IoCounters,
}

/// Who a queue serves, from its Connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueIdentity {
    pub host_nqn: Arc<str>,
    pub subsystem_nqn: Arc<str>,
    pub cntlid: u16,
    pub qid: u16,
}

impl ConnectionStats {
    pub fn new(clock: RoundClock) -> Self {
        Self {
            clock,
            identity: None,
            namespaces: Vec::new(),
            unrouted: IoCounters::default(),
        }
    }

    /// The queue was bound: `nsids` are its namespace table's (sorted).
    pub fn bound(&mut self, identity: QueueIdentity, nsids: impl Iterator<Item = u32>) {
        self.identity = Some(identity);
        self.namespaces = nsids.map(|nsid| (nsid, IoCounters::default())).collect();
    }

    /// The queue's namespace table changed: `nsids` (sorted) are its namespaces now. Those new
    /// get counters; those removed keep theirs (what they served stays counted).
    pub fn namespaces_changed(&mut self, nsids: impl Iterator<Item = u32>) {
        for nsid in nsids {
            if let Err(index) = self.namespaces.binary_search_by_key(&nsid, |(n, _)| *n) {
                self.namespaces.insert(index, (nsid, IoCounters::default()));
            }
        }
    }

    /// The counters of namespace `nsid`: a binary search, no allocation.
    pub fn of(&mut self, nsid: u32) -> &mut IoCounters {
        match self.namespaces.binary_search_by_key(&nsid, |(n, _)| *n) {
            Ok(index) => &mut self.namespaces[index].1,
            Err(_) => &mut self.unrouted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfnvme_spec::status::generic;

    #[test]
    fn errors_are_counted_by_status_and_bytes_only_on_success() {
        let mut counters = IoCounters::default();
        counters.record(nvm_opcode::READ, 4096, Status::SUCCESS, 10);
        counters.record(nvm_opcode::WRITE, 8192, Status::SUCCESS, 10);
        let out_of_range = Status::generic(generic::LBA_OUT_OF_RANGE).do_not_retry();
        counters.record(nvm_opcode::READ, 4096, out_of_range, 10);
        counters.record(nvm_opcode::READ, 4096, out_of_range, 10);
        counters.record(nvm_opcode::FLUSH, 0, Status::invalid_opcode(), 10);
        assert_eq!(
            (counters.reads, counters.writes, counters.others),
            (3, 1, 1)
        );
        assert_eq!((counters.bytes_read, counters.bytes_written), (4096, 8192));
        assert_eq!(
            counters.errors.entries(),
            &[
                (0, generic::LBA_OUT_OF_RANGE, 2),
                (0, Status::invalid_opcode().sc(), 1)
            ]
        );
        assert_eq!(counters.latency.count(), 5);
    }

    #[test]
    fn statuses_past_the_table_are_counted_as_others() {
        let mut errors = StatusCounts::default();
        for sc in 0..STATUS_KINDS as u8 + 3 {
            errors.record(1, sc, 1);
        }
        errors.record(1, 0, 1);
        assert_eq!(errors.entries().len(), STATUS_KINDS);
        assert_eq!(errors.other(), 3);
        assert_eq!(errors.total(), STATUS_KINDS as u64 + 4);
    }
}
