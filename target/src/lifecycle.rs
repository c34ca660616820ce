//! A poll group's life, as the state machine `poll_group` runs and the `loom` model checks
//! (target/tests/loom_lifecycle.rs).
//!
//! Two pieces:
//! - [`Gate`]: how the acceptor hands connections to a poll group. A handover happens only
//!   inside the gate; a stopping group closes it and waits until no handover is in progress, so
//!   after that nothing can reach the group's ring: the acceptor never hands a connection to a
//!   group that is releasing what it owns (SPDK #3273), and no connection is lost in a ring
//!   nobody reads. The acceptor also skips closed gates when choosing a group.
//! - [`Lifecycle`]: running → draining (no new connections, no new commands; keep polling the
//!   drives until every outstanding command completed and the last responses are sent, or the
//!   deadline passes) → finished, when, and only when, the group may release its queues and
//!   DMA memory.

#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Set in [`Gate`]'s state once closed; the other bits count handovers in progress.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// The door between the acceptor and one poll group.
#[derive(Debug)]
pub struct Gate {
    state: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
        }
    }

    /// Starts a handover; `None` once the gate is closed. The handover ends when the guard is
    /// dropped, after the connection was put into the ring.
    pub fn enter(&self) -> Option<Handover<'_>> {
        let previous = self.state.fetch_add(1, Ordering::AcqRel);
        if previous & CLOSED != 0 {
            self.state.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Handover { gate: self })
    }

    /// No handover may start from now on.
    pub fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
    }

    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closed, and every handover that got in has finished: the ring holds all there will ever
    /// be. Read it before draining the ring, not after: a handover may finish in between.
    pub fn is_quiet(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }
}

/// A handover in progress (see [`Gate::enter`]).
#[derive(Debug)]
pub struct Handover<'a> {
    gate: &'a Gate,
}

impl Drop for Handover<'_> {
    fn drop(&mut self) {
        self.gate.state.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a poll group sees when it decides what to do next.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    /// A shutdown was asked for (or the acceptor is gone).
    pub stop_requested: bool,
    /// The group's gate is quiet (see [`Gate::is_quiet`]).
    pub handovers_quiet: bool,
    /// Commands on the drives, not yet completed.
    pub commands_on_drives: usize,
    /// Responses not yet sent.
    pub output_pending: bool,
    pub now: Instant,
    /// When draining gives up: outstanding commands are then aborted by the queue pairs.
    pub deadline: Option<Instant>,
}

/// What the group does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Serve,
    /// Close the gate and refuse new commands (once, when draining starts).
    StopTakingCommands,
    /// Keep polling: handovers, completions and output are still coming.
    Drain,
    /// The deadline passed with this many commands on the drives; release anyway (the queue
    /// pairs abort them, then reset the controller).
    Abandon(usize),
    /// Everything completed and was answered: release queues and DMA memory.
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Draining,
    Finished,
}

/// The poll group's life; see the module documentation.
#[derive(Debug)]
pub struct Lifecycle {
    phase: Phase,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        Self {
            phase: Phase::Running,
        }
    }

    /// Whether the group may still take new connections and commands.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    pub fn step(&mut self, seen: &Observation) -> Action {
        match self.phase {
            Phase::Running if !seen.stop_requested => Action::Serve,
            Phase::Running => {
                self.phase = Phase::Draining;
                Action::StopTakingCommands
            }
            Phase::Draining => {
                let busy = seen.commands_on_drives > 0 || seen.output_pending;
                if seen.handovers_quiet && !busy {
                    self.phase = Phase::Finished;
                    Action::Release
                } else if seen.deadline.is_some_and(|deadline| seen.now >= deadline) {
                    self.phase = Phase::Finished;
                    Action::Abandon(seen.commands_on_drives)
                } else {
                    Action::Drain
                }
            }
            Phase::Finished => Action::Release,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seen(stop: bool, quiet: bool, commands: usize) -> Observation {
        Observation {
            stop_requested: stop,
            handovers_quiet: quiet,
            commands_on_drives: commands,
            output_pending: false,
            now: Instant::now(),
            deadline: None,
        }
    }

    #[test]
    fn release_waits_for_quiet_handovers_and_completions() {
        let mut life = Lifecycle::new();
        assert_eq!(life.step(&seen(false, false, 3)), Action::Serve);
        assert_eq!(life.step(&seen(true, false, 3)), Action::StopTakingCommands);
        assert!(!life.is_running());
        assert_eq!(
            life.step(&seen(true, false, 0)),
            Action::Drain,
            "a handover is in progress"
        );
        assert_eq!(
            life.step(&seen(true, true, 2)),
            Action::Drain,
            "commands are on the drives"
        );
        let output = Observation {
            output_pending: true,
            ..seen(true, true, 0)
        };
        assert_eq!(life.step(&output), Action::Drain, "responses are not sent");
        assert_eq!(life.step(&seen(true, true, 0)), Action::Release);
        assert_eq!(life.step(&seen(true, true, 0)), Action::Release);
    }

    #[test]
    fn the_deadline_abandons_what_is_left() {
        let mut life = Lifecycle::new();
        life.step(&seen(true, true, 1));
        let late = Observation {
            deadline: Some(Instant::now() - Duration::from_millis(1)),
            ..seen(true, true, 4)
        };
        assert_eq!(life.step(&late), Action::Abandon(4));
    }

    #[test]
    fn a_closed_gate_lets_no_handover_in_and_turns_quiet_when_the_last_leaves() {
        let gate = Gate::new();
        let first = gate.enter().expect("open");
        gate.close();
        assert!(gate.is_closed());
        assert!(gate.enter().is_none());
        assert!(!gate.is_quiet(), "a handover is still in progress");
        drop(first);
        assert!(gate.is_quiet());
    }
}
