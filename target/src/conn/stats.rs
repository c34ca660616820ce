//! What a connection counts of its I/O commands, and what it shows of itself when its poll
//! group publishes statistics (see `crate::stats`). Per command: a round-clock load at its
//! arrival, one clock read at its answer, a binary search in the queue's namespace table and a
//! few increments; no lock, no allocation.

use vfnvme_spec::fabrics::FABRICS_OPCODE;
use vfnvme_spec::Status;

use super::connection::Connection;
use crate::stats::QueueView;

impl Connection {
    /// Request `index` is answered with `status`: counted if it is an I/O command.
    pub(super) fn count_answer(&mut self, index: u16, status: Status) {
        if self
            .binding
            .as_ref()
            .is_none_or(|binding| binding.is_admin())
        {
            return;
        }
        let request = &self.requests[usize::from(index)];
        let command = request.command;
        if command.opcode() == FABRICS_OPCODE {
            return;
        }
        let latency = self.stats.clock.read().saturating_sub(request.received_at);
        let len = request.len;
        self.stats
            .of(command.nsid)
            .record(command.opcode(), len, status, latency);
    }

    /// The connection's counters and state, for its poll group's snapshot.
    pub fn stats_view(&self) -> QueueView<'_> {
        QueueView {
            stats: &self.stats,
            peer: &self.peer,
            depth_in_use: self.requests.len() - self.free_requests.len(),
            sq_entries: self.binding.as_ref().map_or(0, |b| b.sq_entries()),
            header_digest: self.encode.header_digest,
            data_digest: self.encode.data_digest,
        }
    }

    /// The connection's counters (kept by its poll group once it is released).
    pub fn stats(&self) -> &crate::stats::ConnectionStats {
        &self.stats
    }
}
