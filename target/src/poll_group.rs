//! A poll group: one thread that owns, exclusively, its connections (fabric queues), one
//! backend queue per drive (its own hardware I/O queue pair and DMA buffer pool), the
//! receiving end of the ring the acceptor hands it connections through, and that of the ring
//! the management thread hands it changes through (`drives.rs`: a drive's queue, a
//! subsystem's namespace table; and letting go of a drive being removed).
//!
//! It busy-polls while it has work (commands in flight, output pending) and parks in
//! `epoll_wait` when idle, so an idle target does not burn cores.
//!
//! Teardown is the order of ownership: when told to stop (or when the acceptor's end of the
//! ring is gone) it takes no new connections and no new commands, polls its backend queues until
//! every command id has completed (bounded by the shutdown deadline, after which the queue
//! pairs abort and reset as their `Drop` does), sends the last responses, closes the sockets,
//! and only then drops its backend queues: queue pairs first (deleting their queues on the
//! drive), buffer pools after.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::EventFd;

use crate::admin_worker::{AdminResult, AdminSubmitter, RESULTS_PER_GROUP};
use crate::admission::ConnectionTicket;
use crate::backend::BackendQueue;
use crate::conn::{BufferWaiter, Connection, IoContext};
use crate::group_control::{Change, ChangeInbox};
use crate::lifecycle::{Action, Gate, Lifecycle, Observation};
use crate::polling::Polling;
use crate::shared::TargetShared;
use crate::stats::GroupStats;
use vfnvme_driver::queue::Completed;

/// Messages from the acceptor to a poll group.
pub enum Message {
    /// A connection accepted on listener `.1` (an index in the target's listeners), with its
    /// place in the target's count of connections.
    Connection(std::net::TcpStream, usize, ConnectionTicket),
    /// Finish in-flight work, close everything, exit.
    Shutdown,
}

/// How many connections one ring holds before the acceptor has to wait.
const RING_CAPACITY: usize = 64;
mod drives;

/// Epoll events taken per wait.
const EVENTS_PER_WAIT: usize = 64;
/// Completions reaped per backend queue per round.
const COMPLETIONS_PER_ROUND: usize = 64;
/// Empty busy-polling rounds before the group yields its CPU once.
const SPINS_BEFORE_YIELD: u32 = 64;
/// How long an idle poll group sleeps before looking at timers again.
const IDLE_WAIT_MS: u16 = 100;
/// How long a drive being removed may take to complete its commands before they are failed.
const REMOVAL_DRAIN: Duration = Duration::from_secs(5);
/// Timer work (keep-alive, command timeouts) runs this often.
const TICK: Duration = Duration::from_millis(100);
/// The epoll token of the wake-up eventfd; connections use their slot index.
const WAKE_TOKEN: u64 = u64::MAX;

/// What the acceptor keeps of a poll group: its ring endpoint, its wake-up eventfd and its
/// thread. Nothing else of the group is reachable from outside.
pub struct PollGroupHandle {
    gate: Arc<Gate>,
    inbox: rtrb::Producer<Message>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<PollGroupSummary>>,
}

/// What a poll group reports when it exits.
#[derive(Debug, Default, Clone, Copy)]
pub struct PollGroupSummary {
    /// Commands still in flight on a drive when the shutdown deadline passed.
    pub abandoned_commands: usize,
    pub connections_served: u64,
}

impl PollGroupHandle {
    /// Starts poll group `index`. `backends` are its queues, one per drive, created by the
    /// caller on this thread so that a failure is reported before anything runs; `inbox` is
    /// where the management thread's changes arrive, with the group's wake-up eventfd.
    /// `admin` hands admin commands to the admin worker, whose results come back through the
    /// ring whose producer end this returns (with the group's handle), for the worker.
    /// `cpu`: the CPU the group's thread is pinned to (`[target] cpus`, checked at start).
    pub fn spawn(
        index: usize,
        cpu: Option<usize>,
        shared: Arc<TargetShared>,
        backends: Vec<BackendQueue>,
        inbox: ChangeInbox,
        admin: AdminSubmitter,
        stats: GroupStats,
    ) -> std::io::Result<(Self, rtrb::Producer<AdminResult>)> {
        let (producer, consumer) = rtrb::RingBuffer::new(RING_CAPACITY);
        let (admin_results, admin_returns) = rtrb::RingBuffer::new(RESULTS_PER_GROUP);
        let gate = Arc::new(Gate::new());
        let ChangeInbox { changes, wake } = inbox;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        let group = PollGroup {
            gate: Arc::clone(&gate),
            lifecycle: Lifecycle::new(),
            stop_requested: false,
            index,
            epoll,
            wake: Arc::clone(&wake),
            inbox: consumer,
            changes,
            connections: Vec::new(),
            interest: Vec::new(),
            removal_seen: vec![None; backends.len()],
            host_charges: HashMap::new(),
            buffer_waiters: (0..backends.len()).map(|_| VecDeque::new()).collect(),
            backends,
            completions: Vec::with_capacity(COMPLETIONS_PER_ROUND),
            admin,
            admin_returns,
            shared,
            summary: PollGroupSummary::default(),
            stats,
        };
        // The thread says when it has its name and CPU, so that once the target has started
        // its groups run where `cpus` says.
        let (placed, is_placed) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("poll-group-{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    // The CPU was allowed when the target started; the process's affinity
                    // may have been narrowed since: the group then runs where it may.
                    match crate::cpus::pin_current_thread(cpu) {
                        Ok(()) => log::info!("poll group {index} runs on CPU {cpu}"),
                        Err(error) => log::error!(
                            "poll group {index}: cannot pin to CPU {cpu} ({error}); it runs \
                             unpinned"
                        ),
                    }
                }
                // `spawn` waits for this before it returns.
                let _ = placed.send(());
                group.run()
            })?;
        // Err only if the thread ended (panicked) before it said so: its join reports that.
        let _ = is_placed.recv();
        let handle = Self {
            gate,
            inbox: producer,
            wake,
            thread: Some(thread),
        };
        Ok((handle, admin_results))
    }

    /// The group's wake-up eventfd, for the admin worker to signal results with.
    pub fn waker(&self) -> Arc<EventFd> {
        Arc::clone(&self.wake)
    }

    /// Hands a connection over, through the group's gate. Gives it back if the gate is closed
    /// (the group is stopping or gone) or the ring is full.
    pub fn hand_over(
        &mut self,
        stream: std::net::TcpStream,
        listener: usize,
        ticket: ConnectionTicket,
    ) -> Result<(), (std::net::TcpStream, ConnectionTicket)> {
        let Some(_handover) = self.gate.enter() else {
            return Err((stream, ticket));
        };
        match self
            .inbox
            .push(Message::Connection(stream, listener, ticket))
        {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            Err(rtrb::PushError::Full(Message::Connection(stream, _, ticket))) => {
                Err((stream, ticket))
            }
            Err(rtrb::PushError::Full(Message::Shutdown)) => unreachable!("pushed a connection"),
        }
    }

    /// Whether the group still takes connections; the acceptor leaves the others out.
    pub fn is_open(&self) -> bool {
        !self.gate.is_closed()
    }

    /// How many connections are waiting in the ring: the acceptor's measure of load.
    pub fn backlog(&self) -> usize {
        RING_CAPACITY - self.inbox.slots()
    }

    /// Wakes the group if it sleeps in `epoll_wait`.
    pub fn wake(&self) {
        // A full eventfd counter already means "wake up".
        let _ = self.wake.write(1);
    }

    /// Tells the group to stop: it stops taking connections and commands at once, then
    /// drains. Does not wait; see [`join`](Self::join).
    pub fn request_stop(&mut self) {
        let Some(thread) = self.thread.as_ref() else {
            return;
        };
        while self.inbox.push(Message::Shutdown).is_err() && !thread.is_finished() {
            self.wake();
            std::thread::yield_now();
        }
        self.wake();
    }

    /// Waits for a group told to stop.
    pub fn join(mut self) -> PollGroupSummary {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> PollGroupSummary {
        self.request_stop();
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for PollGroupHandle {
    /// A handle dropped without `join` (a failed start) still stops its group first: the
    /// group would otherwise wait for messages while this waits for the group.
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Whether a table of `capacity` entries holding `needed` is worth shrinking (see
/// `PollGroup::shrink_to_connections`).
fn oversized(capacity: usize, needed: usize) -> bool {
    capacity > 4 * needed.max(4)
}

/// What epoll watches a connection's socket for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interest {
    /// Not in epoll: a closed connection (a shut-down socket is always readable, so it must
    /// leave epoll at once or the group would spin on it) or a free slot.
    Nothing,
    /// EPOLLIN unless the connection waits for a buffer before it can read on (its data is
    /// in the socket: readability would wake the group for nothing); EPOLLOUT when its peer
    /// has not taken what was sent (wait for room rather than busy-poll).
    Watched(EpollFlags),
}

struct PollGroup {
    /// Closed when the group starts stopping (or dies): no handover gets in after that.
    gate: Arc<Gate>,
    lifecycle: Lifecycle,
    /// A shutdown was asked for, or the acceptor is gone.
    stop_requested: bool,
    index: usize,
    epoll: Epoll,
    wake: Arc<EventFd>,
    inbox: rtrb::Consumer<Message>,
    /// Changes from the management thread.
    changes: rtrb::Consumer<Change>,
    /// Slot index = epoll token = the upper half of backend command tags. A closed connection
    /// stays in its slot until the drives have completed all of its commands.
    connections: Vec<Option<Connection>>,
    /// Per slot, what epoll watches its socket for.
    interest: Vec<Interest>,
    completions: Vec<Completed>,
    /// Dropped last: after every connection, so nothing can still want its buffers.
    backends: Vec<BackendQueue>,
    /// Per drive, the requests waiting for one of its buffers, oldest first, whatever their
    /// connection: buffers go to them in that order.
    buffer_waiters: Vec<VecDeque<BufferWaiter>>,
    /// Admin commands handed to the admin worker, and the ring their results come back in.
    admin: AdminSubmitter,
    admin_returns: rtrb::Consumer<AdminResult>,
    /// Per host address, the buffer bytes its connections here hold (their shared budget).
    host_charges: HashMap<IpAddr, Arc<AtomicUsize>>,
    /// When this group first saw each drive being removed.
    removal_seen: Vec<Option<Instant>>,
    shared: Arc<TargetShared>,
    summary: PollGroupSummary,
    /// Its counters, its round clock, and where it publishes them at each tick.
    stats: GroupStats,
}

impl Drop for PollGroup {
    fn drop(&mut self) {
        // However the group ends, the acceptor must stop choosing it.
        self.gate.close();
    }
}

impl PollGroup {
    fn run(mut self) -> PollGroupSummary {
        log::debug!("poll group {} started", self.index);
        let mut events = [EpollEvent::empty(); EVENTS_PER_WAIT];
        let mut next_tick = Instant::now() + TICK;
        let mut idle_rounds = 0u32;
        let mut polling = Polling::new(Instant::now(), self.shared.settings().park_after);
        loop {
            // Read before the ring is drained, so that a quiet gate means the drain below got
            // every connection there will ever be (the loom model found the other order wrong).
            let handovers_quiet = self.gate.is_quiet();
            self.take_messages();
            self.take_changes();
            // Admin commands at the worker count as on a drive: their slots wait for them.
            let commands_on_drives = self
                .backends
                .iter()
                .map(BackendQueue::outstanding)
                .sum::<usize>()
                + self.admin.outstanding();
            let output_pending = self
                .connections
                .iter()
                .flatten()
                .any(|c| c.has_output() && !c.write_blocked());
            let input_pending = self
                .connections
                .iter()
                .flatten()
                .any(Connection::input_pending);
            let now = Instant::now();
            self.stats.round(now);
            let seen = Observation {
                stop_requested: self.stop_requested,
                handovers_quiet,
                commands_on_drives,
                output_pending,
                now,
                deadline: self.shared.shutdown_deadline(),
            };
            match self.lifecycle.step(&seen) {
                Action::Serve | Action::Drain => {}
                Action::StopTakingCommands => {
                    self.gate.close();
                    // Commands already in the sockets are taken: the group may not have asked
                    // epoll for a few rounds (see `polling`).
                    self.read_ready(&mut events, 0, &mut polling, now);
                    self.stop_taking_commands();
                }
                Action::Abandon(commands) => {
                    self.summary.abandoned_commands = commands;
                    log::warn!(
                        "poll group {}: shutdown deadline passed with {commands} commands in \
                         flight; the queue pairs abort them",
                        self.index
                    );
                    break;
                }
                Action::Release => break,
            }
            let waiting_for_buffers = self.buffer_waiters.iter().any(|w| !w.is_empty());
            let busy = commands_on_drives > 0
                || output_pending
                || input_pending
                || waiting_for_buffers
                || !self.lifecycle.is_running();
            if busy {
                polling.worked(now);
                self.stats.worked();
            }
            // Parks only after a while without work (see `polling`).
            let is_polling = polling.is_polling(now);
            let ready = if polling.skip_epoll(now) {
                self.read_hot(&mut polling, now)
            } else {
                polling.cool(now);
                let timeout = if is_polling { 0u16 } else { IDLE_WAIT_MS };
                self.read_ready(&mut events, timeout, &mut polling, now)
            };
            if is_polling && ready == 0 {
                idle_rounds += 1;
            }
            self.read_pending_input();
            if self.reap_completions() + self.take_admin_results() > 0 || ready > 0 {
                polling.worked(now);
                self.stats.worked();
                idle_rounds = 0;
            } else if idle_rounds >= SPINS_BEFORE_YIELD {
                // Busy polling with nothing arriving: let a thread that shares this CPU (a
                // device emulator, the host side of a loopback test) run.
                idle_rounds = 0;
                std::thread::yield_now();
            }
            self.retire_removed_drives();
            self.hand_out_buffers();
            self.flush_all();
            if now >= next_tick {
                next_tick = now + TICK;
                self.tick(now);
            }
            self.update_interest();
            self.release_closed();
        }
        self.connections.clear();
        for (drive, backend) in self.backends.drain(..).enumerate() {
            if !backend.is_gone() {
                drop(backend);
                self.shared.drives()[drive].let_go();
            }
        }
        log::debug!("poll group {} stopped", self.index);
        self.summary
    }

    /// Adopts handed-over connections while running; a stopping group closes late ones (its
    /// gate lets no more in). Notes a shutdown request, or an acceptor that went away.
    fn take_messages(&mut self) {
        while let Ok(message) = self.inbox.pop() {
            match message {
                Message::Connection(stream, listener, ticket) if self.lifecycle.is_running() => {
                    self.adopt(stream, listener, ticket)
                }
                Message::Connection(..) => {
                    log::info!(
                        "poll group {}: stopping; closed a late connection",
                        self.index
                    )
                }
                Message::Shutdown => self.stop_requested = true,
            }
        }
        if self.inbox.is_abandoned() {
            self.stop_requested = true;
        }
    }

    fn adopt(&mut self, stream: std::net::TcpStream, listener: usize, ticket: ConnectionTicket) {
        let slot = match self.connections.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.connections.push(None);
                self.interest.push(Interest::Nothing);
                self.connections.len() - 1
            }
        };
        let host_charge = match stream.peer_addr() {
            Ok(peer) => Arc::clone(self.host_charges.entry(peer.ip()).or_default()),
            Err(_) => Arc::default(),
        };
        match Connection::new(
            stream,
            listener,
            Arc::clone(&self.shared),
            slot as u32,
            ticket,
            host_charge,
            self.stats.clock().clone(),
        ) {
            Ok(connection) => {
                let event = EpollEvent::new(EpollFlags::EPOLLIN, slot as u64);
                if let Err(error) = self.epoll.add(connection.socket(), event) {
                    log::error!(
                        "poll group {}: cannot watch a connection: {error}",
                        self.index
                    );
                    return;
                }
                self.summary.connections_served += 1;
                self.connections[slot] = Some(connection);
                self.interest[slot] = Interest::Watched(EpollFlags::EPOLLIN);
                self.reserve_buffer_waits();
            }
            Err(error) => log::warn!("poll group {}: refused a connection: {error}", self.index),
        }
    }

    /// Room in each drive's waiting list for every request of every connection, so that
    /// queueing one on the I/O path never allocates.
    fn reserve_buffer_waits(&mut self) {
        let requests = self.request_slots();
        let drives = self.buffer_waiters.iter_mut().zip(&self.backends);
        // A drive given up takes no more waiters: its room stays given back.
        for (waiters, _) in drives.filter(|(_, backend)| !backend.is_gone()) {
            waiters.reserve(requests.saturating_sub(waiters.len()));
        }
    }

    fn context(&mut self) -> (&mut Vec<Option<Connection>>, IoContext<'_>) {
        (
            &mut self.connections,
            IoContext {
                backends: &mut self.backends,
                buffer_waiters: &mut self.buffer_waiters,
                admin: &mut self.admin,
            },
        )
    }

    /// Gives the buffers that came back to the requests waiting for them, oldest first.
    fn hand_out_buffers(&mut self) {
        for drive in 0..self.backends.len() {
            while let Some(&waiter) = self.buffer_waiters[drive].front() {
                let Some(buffer) = self.backends[drive].take_buffer() else {
                    break;
                };
                self.buffer_waiters[drive].pop_front();
                let (connections, mut context) = self.context();
                match connections.get_mut(waiter.slot as usize) {
                    Some(Some(connection)) => {
                        connection.on_buffer(drive, waiter.request, buffer, &mut context)
                    }
                    _ => context.backends[drive].give_back(buffer),
                }
            }
        }
    }

    /// Reads connection `slot`'s socket; returns whether it brought bytes.
    fn on_readable(&mut self, slot: usize) -> bool {
        let (connections, mut context) = self.context();
        match connections.get_mut(slot) {
            Some(Some(connection)) => connection.on_socket_readable(&mut context),
            _ => false,
        }
    }

    /// Waits up to `timeout_ms` for epoll and reads what it reports; returns how many events.
    fn read_ready(
        &mut self,
        events: &mut [EpollEvent],
        timeout_ms: u16,
        polling: &mut Polling,
        now: Instant,
    ) -> usize {
        let ready = self.epoll.wait(events, timeout_ms).unwrap_or(0);
        for event in &events[..ready] {
            let token = event.data();
            if token == WAKE_TOKEN {
                let _ = self.wake.read();
            } else if self.on_readable(token as usize) {
                polling.received(token as usize, now);
            }
        }
        ready
    }

    /// Reads the hot connections without asking epoll; returns how many brought bytes.
    fn read_hot(&mut self, polling: &mut Polling, now: Instant) -> usize {
        let mut brought = 0;
        for slot in polling.slots() {
            if self.on_readable(slot) {
                polling.received(slot, now);
                brought += 1;
            }
        }
        brought
    }

    /// Reads on where a connection stopped at its round limit: the PDUs left in its receive
    /// buffer came with an epoll event that was already used.
    fn read_pending_input(&mut self) {
        let (connections, mut context) = self.context();
        for connection in connections.iter_mut().flatten() {
            if connection.input_pending() {
                connection.on_readable(&mut context);
            }
        }
    }

    /// Hands each backend completion to the connection whose command it was, or, for a
    /// connection that is gone, just returns the buffer.
    fn reap_completions(&mut self) -> usize {
        let mut reaped = 0;
        for drive in 0..self.backends.len() {
            // Taken out for the round so that connections can be handed `self` mutably; put
            // back (with its capacity) below, so nothing is allocated.
            let mut completions = std::mem::take(&mut self.completions);
            completions.clear();
            reaped += self.backends[drive].poll(COMPLETIONS_PER_ROUND, &mut completions);
            for done in completions.drain(..) {
                let slot = (done.tag >> 16) as usize;
                let request = done.tag as u16;
                let (connections, mut context) = self.context();
                match connections.get_mut(slot) {
                    Some(Some(connection)) => {
                        connection.on_completion(drive, request, done, &mut context)
                    }
                    _ => {
                        if let Some(buffer) = done.buffer {
                            self.backends[drive].give_back(buffer);
                        }
                    }
                }
            }
            self.completions = completions;
        }
        reaped
    }

    /// Hands the admin worker's results to their connections.
    fn take_admin_results(&mut self) -> usize {
        let mut taken = 0;
        while let Ok(result) = self.admin_returns.pop() {
            taken += 1;
            self.admin.returned();
            if let Some(Some(connection)) = self.connections.get_mut(result.slot as usize) {
                connection.on_admin_result(result.request, result.outcome);
            }
        }
        taken
    }

    fn flush_all(&mut self) {
        let (connections, mut context) = self.context();
        for connection in connections.iter_mut().flatten() {
            connection.flush(&mut context);
        }
    }

    fn tick(&mut self, now: Instant) {
        let (connections, mut context) = self.context();
        for connection in connections.iter_mut().flatten() {
            connection.tick(now, &mut context);
        }
        for backend in &mut self.backends {
            backend.check_timeouts();
        }
        let views = self
            .connections
            .iter()
            .flatten()
            .map(Connection::stats_view);
        self.stats.publish(views);
    }

    fn stop_taking_commands(&mut self) {
        let (connections, mut context) = self.context();
        for connection in connections.iter_mut().flatten() {
            connection.stop_taking_commands(&mut context);
        }
    }

    /// Keeps epoll in step with each connection: closed ones leave it at once (even while
    /// their commands are still on a drive), blocked writers wait for EPOLLOUT.
    fn update_interest(&mut self) {
        for (slot, connection) in self.connections.iter().enumerate() {
            let Some(connection) = connection else {
                continue;
            };
            let wanted = if connection.is_closed() {
                Interest::Nothing
            } else {
                let mut flags = EpollFlags::empty();
                flags.set(EpollFlags::EPOLLIN, connection.wants_input());
                flags.set(EpollFlags::EPOLLOUT, connection.write_blocked());
                Interest::Watched(flags)
            };
            let current = self.interest[slot];
            if wanted == current {
                continue;
            }
            let flags = match wanted {
                Interest::Nothing => {
                    let _ = self.epoll.delete(connection.socket());
                    self.interest[slot] = Interest::Nothing;
                    continue;
                }
                Interest::Watched(flags) => flags,
            };
            let mut event = EpollEvent::new(flags, slot as u64);
            match self.epoll.modify(connection.socket(), &mut event) {
                Ok(()) => self.interest[slot] = wanted,
                Err(error) => log::error!(
                    "poll group {}: cannot change what a connection waits for: {error}",
                    self.index
                ),
            }
        }
    }

    /// Frees the slots of connections that are closed and have nothing left on any drive.
    fn release_closed(&mut self) {
        let mut released = false;
        for (slot, connection) in self.connections.iter_mut().enumerate() {
            if connection.as_ref().is_some_and(Connection::is_finished) {
                if let Some(connection) = connection.take() {
                    self.stats.retire(connection.stats());
                    if self.interest[slot] != Interest::Nothing {
                        let _ = self.epoll.delete(connection.socket());
                    }
                    self.interest[slot] = Interest::Nothing;
                    released = true;
                }
            }
        }
        if released {
            self.shrink_to_connections();
        }
    }

    /// Gives back the memory of slots and buffer waiting room that a burst of connections
    /// needed: after a reconnect storm or a port scan the group is as small as before it.
    /// Tables are reallocated only once they are four times larger than needed, so that a
    /// release beside an accept does not copy them back and forth.
    fn shrink_to_connections(&mut self) {
        while self.connections.last().is_some_and(Option::is_none) {
            self.connections.pop();
            self.interest.pop();
        }
        if oversized(self.connections.capacity(), self.connections.len()) {
            self.connections.shrink_to_fit();
            self.interest.shrink_to_fit();
        }
        // A host whose last connection here is gone.
        self.host_charges
            .retain(|_, budget| Arc::strong_count(budget) > 1);
        if oversized(self.host_charges.capacity(), self.host_charges.len()) {
            self.host_charges.shrink_to_fit();
        }
        let requests = self.request_slots();
        for waiters in &mut self.buffer_waiters {
            if oversized(waiters.capacity(), requests) {
                waiters.shrink_to(requests);
            }
        }
    }

    /// Command slots of all the group's connections: the most requests that can wait for
    /// buffers at once.
    fn request_slots(&self) -> usize {
        self.connections
            .iter()
            .flatten()
            .map(Connection::request_slots)
            .sum()
    }
}
