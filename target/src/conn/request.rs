//! A request: one command slot of a connection, from the capsule that fills it to the
//! response that frees it.
//!
//! Its own file because its state machine is: the state is private here and changes only in
//! [`Request::advance`], which checks (in debug builds) that each event is legal in the state
//! the request is in. Every other file of the connection reads the state, never writes it.

use vfnvme_driver::dma::DmaBuffer;
use vfnvme_spec::{Command, Status};

use crate::session::NamespaceRoute;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestState {
    Free,
    /// Receiving the command's data (in-capsule or after R2T).
    ReceivingData,
    /// Waiting for a buffer (a read) or for room on the drive's queue.
    Waiting,
    /// On a drive.
    AtDrive,
    /// Held by the fabric controller: an Asynchronous Event Request, or a Connect waiting for
    /// its QID.
    Held,
    /// Its response is queued for sending.
    Responding,
}

/// What happens to a request. Each moves it to one state, from the states listed.
#[derive(Debug)]
pub(super) enum Event {
    /// Free -> ReceivingData: a command capsule took the slot; its data, if any, comes next.
    Received(Command),
    /// ReceivingData -> Waiting: its data is in (or it has none); it waits for the drive.
    Ready,
    /// Waiting -> AtDrive: the drive took it.
    Submitted,
    /// ReceivingData or Held -> Held: the fabric controller keeps it (again, for a Connect
    /// retried while its QID is still attached).
    Held,
    /// Any but Free -> Responding: its response is queued.
    Responding,
    /// Responding -> Free: its response is sent.
    Sent,
    /// Any but Free -> Free: dropped with its connection (or its drive) without a response.
    Dropped,
}

pub(super) struct Request {
    state: RequestState,
    pub(super) command: Command,
    pub(super) route: Option<NamespaceRoute>,
    /// Data transfer length of the command.
    pub(super) len: usize,
    /// Bytes of write data received so far.
    pub(super) received: usize,
    pub(super) buffer: Option<DmaBuffer>,
    /// A data digest error: the command completes with this once its data is in.
    pub(super) failed: Option<Status>,
    /// Buffer bytes counted against the connection's `buffer_bytes_per_connection` (0 or
    /// one buffer), until the request is released.
    pub(super) charged: usize,
    /// An R2T for its data is outstanding (counted against `r2t_per_connection`).
    pub(super) r2t_outstanding: bool,
    /// When its capsule was parsed: its poll group's round clock (`stats::RoundClock`), ns.
    pub(super) received_at: u64,
}

impl Request {
    pub(super) fn free() -> Self {
        Self {
            state: RequestState::Free,
            command: Command::default(),
            route: None,
            len: 0,
            received: 0,
            buffer: None,
            failed: None,
            charged: 0,
            r2t_outstanding: false,
            received_at: 0,
        }
    }

    pub(super) fn state(&self) -> RequestState {
        self.state
    }

    /// The one place a request's state changes. A command received starts from a clean slot.
    pub(super) fn advance(&mut self, event: Event) {
        use RequestState::*;
        let (legal, next) = match &event {
            Event::Received(_) => (self.state == Free, ReceivingData),
            Event::Ready => (self.state == ReceivingData, Waiting),
            Event::Submitted => (self.state == Waiting, AtDrive),
            Event::Held => (matches!(self.state, ReceivingData | Held), Held),
            Event::Responding => (self.state != Free && self.state != Responding, Responding),
            Event::Sent => (self.state == Responding, Free),
            Event::Dropped => (self.state != Free, Free),
        };
        debug_assert!(legal, "request in state {:?}: {event:?}", self.state);
        if let Event::Received(command) = event {
            *self = Self {
                command,
                ..Self::free()
            };
        }
        self.state = next;
    }
}
