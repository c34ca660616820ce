//! A poll group's drives coming and going. The management thread's changes
//! (`group_control`) are applied between commands: a queue to a drive opened while the target
//! runs joins the group's backends, and a subsystem's new namespace table goes to every queue
//! of that subsystem's controllers here (allocating, as the tables grow, is fine: this is not
//! the I/O path). A drive being given up (hot removal, or its last namespace removed) is let
//! go of once its commands here completed.

use std::collections::VecDeque;
use std::time::Instant;

use super::{PollGroup, REMOVAL_DRAIN};
use crate::backend::BackendQueue;

impl PollGroup {
    /// Applies the changes that arrived, and says so to the management thread.
    pub(super) fn take_changes(&mut self) {
        while let Ok(change) = self.changes.pop() {
            if let Some((drive, queue)) = change.drive {
                self.adopt_drive(drive, queue);
            }
            for connection in self.connections.iter_mut().flatten() {
                connection.namespaces_changed(&change.subsystem, &change.routes);
            }
            // The management thread may have given up waiting: nothing to tell then.
            let _ = change.done.send(());
        }
    }

    /// Drive `drive`'s queue joins the backends, at its index.
    fn adopt_drive(&mut self, drive: usize, queue: BackendQueue) {
        if drive < self.backends.len() {
            log::error!(
                "poll group {}: a second queue to drive {drive}; dropped",
                self.index
            );
            drop(queue);
            self.shared.drives()[drive].let_go();
            return;
        }
        let requests = self.request_slots();
        while self.backends.len() <= drive {
            // A drive this group has no queue to (none was made for it) stays gone here.
            self.backends.push(BackendQueue::Gone);
            self.buffer_waiters.push(VecDeque::with_capacity(requests));
            self.removal_seen.push(None);
        }
        self.backends[drive] = queue;
        log::debug!(
            "poll group {}: took a queue to drive {}",
            self.index,
            self.shared.drives()[drive].name()
        );
    }

    /// Lets go of the queues to drives being given up: once their commands completed and their
    /// buffers came home (the device still answers while the kernel waits for us), or after
    /// `REMOVAL_DRAIN` when it does not, failing what is left.
    pub(super) fn retire_removed_drives(&mut self) {
        for drive in 0..self.backends.len() {
            if self.backends[drive].is_gone() || !self.shared.drive_removed(drive) {
                continue;
            }
            let now = Instant::now();
            let since = *self.removal_seen[drive].get_or_insert(now);
            let overdue = now.duration_since(since) >= REMOVAL_DRAIN;
            let busy =
                self.backends[drive].outstanding() > 0 || self.backends[drive].buffers_lent() > 0;
            if busy && !overdue {
                continue;
            }
            let (connections, mut context) = self.context();
            for connection in connections.iter_mut().flatten() {
                connection.abandon_drive(drive, overdue, &mut context);
            }
            // Its waiting room goes too: drives come and go while the target runs.
            self.buffer_waiters[drive] = VecDeque::new();
            drop(std::mem::replace(
                &mut self.backends[drive],
                BackendQueue::Gone,
            ));
            self.shared.drives()[drive].let_go();
            log::info!(
                "poll group {}: let go of drive {}",
                self.index,
                self.shared.drives()[drive].name()
            );
        }
    }
}
