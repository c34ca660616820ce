//! The admin worker: one thread per target that runs the admin commands a drive answers (SMART
//! log, volatile write cache), so that a poll group never waits for a drive's admin queue (the
//! driver's `Controller::admin` blocks, up to its 10 s timeout).
//!
//! A poll group's connection hands a job over a channel (the admin path: it may allocate) and
//! keeps the command's slot as if it were on a drive; the worker runs the command against its
//! fabric controller and pushes the result into that poll group's ring, then wakes the group
//! with its eventfd. The group answers the command from its own thread, or, if the connection
//! closed meanwhile, frees the slot then. One worker, in order: forwarded admin commands are
//! rare, and the driver serialises a drive's admin queue anyway.
//!
//! The worker also runs the steps of DH-HMAC-CHAP exchanges ([`AuthJob`]): a Challenge draws a
//! DH key pair and a Reply computes the shared secret, up to about 70 ms each on ffdhe8192,
//! which no poll group may spend. The connection lends its queue's `ControllerAuth` to the job
//! and gets it back with the result.
//!
//! Teardown: poll groups go first (each waits for its jobs, bounded by the shutdown deadline,
//! as for commands on drives); with their senders gone, the worker's channel ends and the
//! thread exits after the job it is running. A result for a group that is gone is dropped:
//! it holds no DMA memory.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::EventFd;
use vfnvme_auth::{ControllerAuth, Received};
use vfnvme_spec::{Command, Status};

use crate::ctrlr::{AdminOutcome, FabricController};

/// Results a poll group's ring holds before the worker waits for the group to take them.
pub const RESULTS_PER_GROUP: usize = 64;
/// How long the worker waits before it looks again at a full result ring.
const FULL_RING_WAIT: Duration = Duration::from_millis(1);

/// An admin command (or an authentication step) to run off its poll group.
pub struct AdminJob {
    group: usize,
    slot: u32,
    request: u16,
    work: Work,
}

enum Work {
    Admin {
        controller: Arc<FabricController>,
        command: Command,
        received: Instant,
    },
    Auth(AuthJob),
}

/// One step of a queue's DH-HMAC-CHAP exchange: its state machine and what the host sent.
pub struct AuthJob {
    pub exchange: Box<ControllerAuth>,
    pub step: AuthStep,
}

/// An Authentication Send's message, or a Receive's allocation length.
pub enum AuthStep {
    Send(Vec<u8>),
    Receive(u32),
}

/// A step done: the state machine back, and for a Receive what the host gets.
pub struct AuthDone {
    pub exchange: Box<ControllerAuth>,
    pub received: Option<Result<Received, Status>>,
}

impl AuthJob {
    fn run(self) -> AuthDone {
        let mut exchange = self.exchange;
        let received = match self.step {
            AuthStep::Send(message) => {
                exchange.send(&message);
                None
            }
            AuthStep::Receive(al) => Some(exchange.receive(al)),
        };
        AuthDone { exchange, received }
    }
}

/// What came of a job.
pub enum JobOutcome {
    Admin(AdminOutcome),
    Auth(AuthDone),
}

/// What came of a job, for the connection in `slot` to answer request `request` with.
pub struct AdminResult {
    pub slot: u32,
    pub request: u16,
    pub outcome: JobOutcome,
}

/// A poll group's way to the worker: where jobs go, and how many are out.
pub struct AdminSubmitter {
    group: usize,
    jobs: mpsc::Sender<AdminJob>,
    outstanding: usize,
}

impl AdminSubmitter {
    /// Hands `command` of request `request` of the connection in `slot` to the worker. Returns
    /// false when the worker is gone (the target is stopping).
    pub fn submit(
        &mut self,
        slot: u32,
        request: u16,
        controller: Arc<FabricController>,
        command: Command,
    ) -> bool {
        let work = Work::Admin {
            controller,
            command,
            received: Instant::now(),
        };
        self.send(slot, request, work)
    }

    /// Hands an authentication step of request `request` of the connection in `slot` to the
    /// worker. Returns false when the worker is gone (the target is stopping).
    pub fn submit_auth(&mut self, slot: u32, request: u16, job: AuthJob) -> bool {
        self.send(slot, request, Work::Auth(job))
    }

    fn send(&mut self, slot: u32, request: u16, work: Work) -> bool {
        let job = AdminJob {
            group: self.group,
            slot,
            request,
            work,
        };
        let sent = self.jobs.send(job).is_ok();
        self.outstanding += usize::from(sent);
        sent
    }

    /// A result of this group came back.
    pub fn returned(&mut self) {
        self.outstanding -= 1;
    }

    /// Jobs handed over whose results have not come back.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

/// Where the worker puts a group's results, and how it wakes the group.
pub struct ResultRing {
    pub ring: rtrb::Producer<AdminResult>,
    pub wake: Arc<EventFd>,
}

/// The worker's channel, before the thread starts: poll groups get their submitters first,
/// the thread starts once every group (and its ring) exists.
pub struct AdminChannel {
    jobs: mpsc::Sender<AdminJob>,
    queue: mpsc::Receiver<AdminJob>,
}

impl AdminChannel {
    pub fn new() -> Self {
        let (jobs, queue) = mpsc::channel();
        Self { jobs, queue }
    }

    pub fn submitter(&self, group: usize) -> AdminSubmitter {
        AdminSubmitter {
            group,
            jobs: self.jobs.clone(),
            outstanding: 0,
        }
    }

    /// Starts the worker with one result ring per poll group, by group index.
    pub fn start(self, groups: Vec<ResultRing>) -> std::io::Result<AdminWorker> {
        let Self { jobs, queue } = self;
        // Only the groups' submitters keep the channel open: it ends when the last group is
        // gone.
        drop(jobs);
        let thread = std::thread::Builder::new()
            .name("admin-worker".into())
            .spawn(move || run(queue, groups))?;
        Ok(AdminWorker {
            thread: Some(thread),
        })
    }
}

impl Default for AdminChannel {
    fn default() -> Self {
        Self::new()
    }
}

/// The running worker; dropping it waits for the thread, which ends once every poll group
/// (every submitter) is gone.
pub struct AdminWorker {
    thread: Option<JoinHandle<()>>,
}

impl Drop for AdminWorker {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(queue: mpsc::Receiver<AdminJob>, mut groups: Vec<ResultRing>) {
    while let Ok(job) = queue.recv() {
        let Some(group) = groups.get_mut(job.group) else {
            continue;
        };
        if group.ring.is_abandoned() {
            // The group is gone: nobody waits for this command.
            continue;
        }
        let outcome = match job.work {
            Work::Admin {
                controller,
                command,
                received,
            } => JobOutcome::Admin(controller.execute_admin(&command, received)),
            Work::Auth(auth) => JobOutcome::Auth(auth.run()),
        };
        let mut result = AdminResult {
            slot: job.slot,
            request: job.request,
            outcome,
        };
        loop {
            match group.ring.push(result) {
                Ok(()) => break,
                Err(rtrb::PushError::Full(back)) if !group.ring.is_abandoned() => {
                    result = back;
                    let _ = group.wake.write(1);
                    std::thread::sleep(FULL_RING_WAIT);
                }
                Err(rtrb::PushError::Full(_)) => break,
            }
        }
        let _ = group.wake.write(1);
    }
}
