//! How the management thread changes what the poll groups serve while they run: each group has
//! a ring of [`Change`]s (apart from the acceptor's ring of connections, which the acceptor
//! alone feeds) and takes them between commands, at the top of its loop. A change is a queue
//! to a drive just opened and a subsystem's new namespace table: the group stores the queue
//! beside its others and hands the table to that subsystem's queues (an `Arc` swap), so the I/O
//! path still takes no lock and allocates nothing. The management thread waits until every
//! group has applied a change before it tells hosts of it.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::backend::BackendQueue;
use crate::session::NamespaceRoute;
use crate::subsystem::Subsystem;

/// Changes one ring holds before the management thread has to wait.
const RING_CAPACITY: usize = 16;

/// One change for one poll group.
pub struct Change {
    /// A drive opened for the change: its index in the target's drives and this group's queue
    /// to it (the slot already counts the group as a holder).
    pub drive: Option<(usize, BackendQueue)>,
    /// The subsystem whose queues get `routes` as their namespace table.
    pub subsystem: Arc<Subsystem>,
    pub routes: Arc<[NamespaceRoute]>,
    /// Told once the group has applied the change.
    pub done: mpsc::Sender<()>,
}

/// The management thread's end of one poll group's ring, and the group's wake-up eventfd.
pub struct GroupLink {
    changes: rtrb::Producer<Change>,
    wake: Arc<EventFd>,
}

/// A poll group's end: the changes it takes, and the eventfd that wakes it (its own, which the
/// acceptor and the admin worker signal too).
pub struct ChangeInbox {
    pub changes: rtrb::Consumer<Change>,
    pub wake: Arc<EventFd>,
}

/// Links for `groups` poll groups: the management thread's ends and the groups'.
pub fn links(groups: usize) -> std::io::Result<(Vec<GroupLink>, Vec<ChangeInbox>)> {
    let mut links = Vec::with_capacity(groups);
    let mut inboxes = Vec::with_capacity(groups);
    for _ in 0..groups {
        let (producer, consumer) = rtrb::RingBuffer::new(RING_CAPACITY);
        let wake = Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK)?);
        links.push(GroupLink {
            changes: producer,
            wake: Arc::clone(&wake),
        });
        inboxes.push(ChangeInbox {
            changes: consumer,
            wake,
        });
    }
    Ok((links, inboxes))
}

impl GroupLink {
    /// Wakes the group if it sleeps in `epoll_wait`.
    pub fn wake(&self) {
        // A full eventfd counter already means "wake up".
        let _ = self.wake.write(1);
    }
}

/// Hands poll group `i` the change `change(i, done)` for every group, then waits until each
/// has applied its own, at most `within`. The error names the group that did not.
pub fn apply_everywhere(
    links: &mut [GroupLink],
    mut change: impl FnMut(usize, mpsc::Sender<()>) -> Change,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let (done, applied) = mpsc::channel();
    for (index, link) in links.iter_mut().enumerate() {
        let mut pending = change(index, done.clone());
        loop {
            match link.changes.push(pending) {
                Ok(()) => break,
                Err(rtrb::PushError::Full(back)) => pending = back,
            }
            link.wake();
            if link.changes.is_abandoned() || Instant::now() >= deadline {
                return Err(format!(
                    "poll group {index} takes no changes (it stopped, or is stuck); the target \
                     should be restarted"
                ));
            }
            std::thread::yield_now();
        }
        link.wake();
    }
    drop(done);
    for taken in 0..links.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if applied.recv_timeout(left).is_err() {
            return Err(format!(
                "{} of {} poll groups did not apply the change within {within:?}; the target \
                 should be restarted",
                links.len() - taken,
                links.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(done: mpsc::Sender<()>) -> Change {
        Change {
            drive: None,
            subsystem: Arc::new(Subsystem::discovery()),
            routes: Arc::from(Vec::new()),
            done,
        }
    }

    /// A poll group that answers `count` changes.
    fn answering(mut inbox: ChangeInbox, count: usize) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut applied = 0;
            while applied < count {
                match inbox.changes.pop() {
                    Ok(change) => {
                        change.done.send(()).unwrap();
                        applied += 1;
                    }
                    Err(_) => std::thread::yield_now(),
                }
            }
        })
    }

    #[test]
    fn a_change_is_applied_once_every_group_said_so_and_a_silent_group_is_named() {
        let (mut links, mut inboxes) = links(2).unwrap();
        let mut silent = inboxes.pop().unwrap();
        let group = answering(inboxes.pop().unwrap(), 2);
        let within = Duration::from_millis(200);
        let error = apply_everywhere(&mut links, |_, done| change(done), within).unwrap_err();
        assert!(
            error.starts_with("1 of 2 poll groups did not apply the change"),
            "{error}"
        );
        assert!(
            silent.changes.pop().is_ok(),
            "the silent group got its change"
        );
        assert_eq!(silent.wake.read().unwrap(), 1, "and was woken");
        let late = answering(silent, 1);
        apply_everywhere(&mut links, |_, done| change(done), Duration::from_secs(10)).unwrap();
        group.join().unwrap();
        late.join().unwrap();
    }
}
