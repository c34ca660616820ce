//! Model check (loom) of the poll group's lifecycle: the real `Gate` and `Lifecycle` of
//! `vfnvme_target::lifecycle`, with an acceptor handing connections over while a stop request
//! arrives, and a drive completing a command during teardown. `make loom` runs it.
//!
//! The ring between acceptor and group is rtrb in the target; here it is a mutex-guarded queue,
//! since what is checked is the protocol around the ring.
#![cfg(loom)]

use std::time::Instant;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use vfnvme_target::lifecycle::{Action, Gate, Lifecycle, Observation};

#[test]
fn no_connection_is_lost_or_adopted_late_and_nothing_is_released_under_a_command() {
    loom::model(|| {
        let gate = Arc::new(Gate::new());
        let ring = Arc::new(Mutex::new(Vec::<u32>::new()));
        let handed_over = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // One command is on the drive when the model starts.
        let on_drive = Arc::new(AtomicUsize::new(1));
        let released = Arc::new(AtomicBool::new(false));

        let acceptor = {
            let (gate, ring, handed_over) = (gate.clone(), ring.clone(), handed_over.clone());
            thread::spawn(move || {
                for connection in 0..2 {
                    if let Some(_handover) = gate.enter() {
                        ring.lock().unwrap().push(connection);
                        handed_over.fetch_add(1, Ordering::AcqRel);
                    }
                }
            })
        };
        let stopper = {
            let stop = stop.clone();
            thread::spawn(move || stop.store(true, Ordering::Release))
        };
        let drive = {
            let (on_drive, released) = (on_drive.clone(), released.clone());
            thread::spawn(move || {
                // The completion is written into memory the group must not have released.
                assert!(
                    !released.load(Ordering::Acquire),
                    "a completion arrived in released memory"
                );
                on_drive.fetch_sub(1, Ordering::AcqRel);
            })
        };

        // The poll group.
        let mut life = Lifecycle::new();
        let mut adopted = 0;
        let mut closed_late = 0;
        loop {
            // Quiet is read before the ring is drained: a handover that finished before the
            // read is then in the ring for this drain.
            let handovers_quiet = gate.is_quiet();
            for _connection in ring.lock().unwrap().drain(..) {
                if life.is_running() {
                    adopted += 1;
                } else {
                    closed_late += 1;
                }
            }
            let seen = Observation {
                stop_requested: stop.load(Ordering::Acquire),
                handovers_quiet,
                commands_on_drives: on_drive.load(Ordering::Acquire),
                output_pending: false,
                now: Instant::now(),
                deadline: None,
            };
            match life.step(&seen) {
                Action::StopTakingCommands => gate.close(),
                Action::Release => {
                    released.store(true, Ordering::Release);
                    break;
                }
                Action::Abandon(_) => unreachable!("no deadline in the model"),
                Action::Serve | Action::Drain => thread::yield_now(),
            }
        }
        assert!(
            ring.lock().unwrap().is_empty(),
            "a connection got into the ring after the group released its resources"
        );
        acceptor.join().unwrap();
        stopper.join().unwrap();
        drive.join().unwrap();
        assert!(
            ring.lock().unwrap().is_empty(),
            "a connection was handed over after the group finished"
        );
        assert_eq!(
            adopted + closed_late,
            handed_over.load(Ordering::Acquire),
            "every connection that got through the gate was taken from the ring"
        );
        assert_eq!(on_drive.load(Ordering::Acquire), 0);
    });
}
