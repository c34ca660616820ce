//! The submit/poll loop every backend shares: command slots, what each does next, and the
//! accounting of completions. A backend ([`Backend`]) only submits and reaps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vfnvme_spec::Status;

use super::args::PerfArgs;
use super::histogram::Histogram;
use super::pattern;
use super::plan::{IoKind, Plan};
use super::report::{self, IoFailure, Progress, Stats};
use super::workload::{Extent, Offsets};
use crate::error::Result;

/// How often commands are checked against the backend's I/O timeout.
const TIMEOUT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Polling rounds without a completion after which the thread yields once.
const IDLE_ROUNDS_BEFORE_YIELD: u32 = 64;
/// Fills buffers before a verify read, so that a local read that moved no data cannot pass.
const POISON_BYTE: u8 = 0xA5;

/// One I/O queue as the shared loop sees it: a queue pair of a local drive
/// (`local::LocalQueue`) or an NVMe/TCP I/O connection (`remote::RemoteQueue`). Its command
/// slots are numbered `0..queue depth` (the tag), and each owns one data buffer for the run.
pub(super) trait Backend {
    /// Whether the loop yields its CPU after rounds without a completion: for a device thread
    /// that may share the CPU (the simulator). A drive or a target elsewhere needs no CPU of
    /// ours, and a yield there is a system call per few rounds (costly on an emulated CPU)
    /// that at best hands the CPU to unrelated work for a scheduler slice.
    fn yields_when_idle(&self) -> bool;

    /// Slot `tag`'s buffer, to fill before submission; `None` while a command holds it.
    fn buffer(&mut self, tag: u16) -> Option<&mut [u8]>;

    /// Submits slot `tag`'s I/O: a write of its buffer to `extent`, or a read of `extent`.
    /// `Ok(false)`: the queue has no room now; try again after reaping.
    fn submit(&mut self, tag: u16, write: bool, extent: Extent) -> Result<bool>;

    /// Reaps completions, reporting each as `(tag, status, data)`, `data` starting with what a
    /// read brought. Returns how many; a backend that can block waits for at least one while
    /// commands are outstanding.
    fn reap(&mut self, done: impl FnMut(u16, Status, &[u8])) -> Result<usize>;

    /// Commands submitted and not completed.
    fn outstanding(&self) -> usize;

    /// Deals with commands that take too long (a no-op where the transport times out itself).
    fn check_timeouts(&mut self) -> Result<()>;
}

#[derive(Clone, Copy, Debug)]
enum SlotState {
    Idle,
    /// Waiting to be submitted (again, when the queue had no room).
    Ready(IoKind, Extent),
    InFlight(IoKind, Extent, Instant),
}

/// What every queue pair shares: where the next I/O goes, and the counters.
struct Engine<'a> {
    plan: &'a Plan,
    offsets: Offsets,
    /// Cleared when `-t` expires: chunks already started still finish.
    taking_new_extents: bool,
    stats: Stats,
}

impl Engine<'_> {
    /// Fills `buffer` as `kind` needs it before submission.
    fn prepare(&self, kind: IoKind, extent: Extent, buffer: &mut [u8]) {
        let data = &mut buffer[..self.plan.bytes_of(extent)];
        match kind {
            IoKind::PatternWrite => {
                pattern::fill(data, extent.lba, self.plan.block_size(), self.plan.seed)
            }
            IoKind::CheckRead => data.fill(POISON_BYTE),
            IoKind::Read | IoKind::Write => {}
        }
    }

    /// Accounts for a completed command whose buffer holds `data`; returns what its slot does
    /// next.
    fn complete(&mut self, kind: IoKind, extent: Extent, status: Status, data: &[u8]) -> SlotState {
        let stats = &mut self.stats;
        if !status.is_success() {
            stats.errors += 1;
            stats.first_error.get_or_insert(IoFailure {
                kind,
                extent,
                status,
            });
            return SlotState::Idle;
        }
        let len = self.plan.bytes_of(extent);
        stats.bytes += len as u64;
        match kind {
            IoKind::PatternWrite => SlotState::Ready(IoKind::CheckRead, extent),
            IoKind::CheckRead => {
                let check = pattern::check(
                    &data[..len],
                    extent.lba,
                    self.plan.block_size(),
                    self.plan.seed,
                );
                stats.verified_bytes += len as u64;
                stats.mismatched_blocks += check.bad_blocks;
                if let Some(mismatch) = check.first {
                    stats.first_mismatch.get_or_insert(mismatch);
                }
                SlotState::Idle
            }
            IoKind::Read | IoKind::Write => SlotState::Idle,
        }
    }
}

/// One backend queue with the state of its command slots.
struct Queue<B> {
    backend: B,
    slots: Vec<SlotState>,
    /// Slots with something to submit (or idle, to be given a new extent).
    ready: VecDeque<u16>,
}

impl<B: Backend> Queue<B> {
    fn new(backend: B, depth: u16) -> Self {
        Self {
            backend,
            slots: vec![SlotState::Idle; usize::from(depth)],
            ready: (0..depth).collect(),
        }
    }

    /// Whether nothing is in flight and nothing waits to be submitted. Right after
    /// [`Queue::submit`], `ready` only holds slots the queue had no room for: idle slots left
    /// it because no new extent was to be had.
    fn is_finished(&self) -> bool {
        self.backend.outstanding() == 0 && self.ready.is_empty()
    }

    /// Reaps completions; returns how many.
    fn reap(&mut self, engine: &mut Engine<'_>) -> Result<usize> {
        let Self {
            backend,
            slots,
            ready,
        } = self;
        backend.reap(|tag, status, data| {
            let Some(slot) = slots.get_mut(usize::from(tag)) else {
                log::error!("completion for command slot {tag}, which does not exist");
                return;
            };
            let SlotState::InFlight(kind, extent, submitted) = *slot else {
                log::error!("completion for command slot {tag}, which is not in flight");
                return;
            };
            let nanos = submitted.elapsed().as_nanos();
            engine
                .stats
                .latency
                .record(u64::try_from(nanos).unwrap_or(u64::MAX));
            *slot = engine.complete(kind, extent, status, data);
            ready.push_back(tag);
        })
    }

    /// Submits what the ready slots have, giving idle ones new extents while the run lasts.
    fn submit(&mut self, engine: &mut Engine<'_>) -> Result<()> {
        let Self {
            backend,
            slots,
            ready,
        } = self;
        while let Some(tag) = ready.pop_front() {
            let slot = &mut slots[usize::from(tag)];
            let Some(buffer) = backend.buffer(tag) else {
                continue;
            };
            let (kind, extent) = match *slot {
                SlotState::Ready(kind, extent) => (kind, extent),
                SlotState::Idle if engine.taking_new_extents => {
                    let Some(extent) = engine.offsets.next_extent() else {
                        continue;
                    };
                    (engine.plan.first_kind(), extent)
                }
                SlotState::Idle | SlotState::InFlight(..) => continue,
            };
            engine.prepare(kind, extent, buffer);
            let submitted = Instant::now();
            if backend.submit(tag, kind.is_write(), extent)? {
                *slot = SlotState::InFlight(kind, extent, submitted);
            } else {
                *slot = SlotState::Ready(kind, extent);
                ready.push_front(tag);
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Runs `plan` on `backends` (one per queue pair) and reports, on stdout, how it went: what
/// every backend shares once its queues exist. `address` names the device or target.
pub(super) fn run_plan<B: Backend>(
    args: &PerfArgs,
    plan: &Plan,
    address: &str,
    backends: Vec<B>,
) -> Result<()> {
    let queues = backends
        .into_iter()
        .map(|backend| Queue::new(backend, plan.queue_depth))
        .collect();
    let (stats, elapsed) = drive(plan, queues)?;
    report::report(plan, address, &stats, elapsed, args.json)
}

/// The submit/poll loop, until `-t` expires (or the verify pass ends) and everything started
/// has completed.
fn drive<B: Backend>(plan: &Plan, mut queues: Vec<Queue<B>>) -> Result<(Stats, Duration)> {
    let mut engine = Engine {
        plan,
        offsets: Offsets::new(
            plan.workload,
            plan.io_blocks,
            plan.namespace.blocks,
            plan.seed,
        ),
        taking_new_extents: true,
        stats: Stats {
            latency: Histogram::default(),
            bytes: 0,
            errors: 0,
            first_error: None,
            mismatched_blocks: 0,
            first_mismatch: None,
            verified_bytes: 0,
        },
    };
    let start = Instant::now();
    let deadline = start + plan.duration;
    let mut progress = Progress::new(start);
    let mut next_timeout_check = start + TIMEOUT_CHECK_INTERVAL;
    let mut idle_rounds = 0u32;
    let yields_when_idle = queues.iter().any(|queue| queue.backend.yields_when_idle());
    loop {
        let mut reaped = 0;
        for queue in &mut queues {
            reaped += queue.reap(&mut engine)?;
            queue.submit(&mut engine)?;
        }
        idle_rounds = if reaped == 0 {
            idle_rounds.saturating_add(1)
        } else {
            0
        };
        if yields_when_idle && idle_rounds == IDLE_ROUNDS_BEFORE_YIELD {
            // Lets the simulator's device thread, sharing this CPU on a busy machine, run now
            // instead of at the next scheduler tick.
            std::thread::yield_now();
            idle_rounds = 0;
        }
        if queues.iter().all(Queue::is_finished) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            engine.taking_new_extents = false;
        }
        if now >= next_timeout_check {
            next_timeout_check = now + TIMEOUT_CHECK_INTERVAL;
            for queue in &mut queues {
                queue.backend.check_timeouts()?;
            }
        }
        progress.maybe_report(now, &engine.stats);
    }
    let elapsed = start.elapsed();
    drop(queues);
    Ok((engine.stats, elapsed))
}
