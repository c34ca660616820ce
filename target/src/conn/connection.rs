//! The connection's state ([`Connection`]) and the primitives every part of it uses: setup,
//! queueing a response, terminating and closing. Its own leaf module so that the PDU loop
//! (`conn/mod.rs`), the I/O commands and the fabrics commands, each an `impl Connection` of
//! their own, all build on it and never on each other.

use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfnvme_spec::fabrics::MAX_ADMIN_QUEUE_ENTRIES;
use vfnvme_spec::sgl::SglDescriptor;
use vfnvme_spec::{Completion, Status};
use vfnvme_tcp::pdu::{self, C2HData, PduError, TermReq, CAPSULE_RESP_HEADER_LEN};
use vfnvme_tcp::{DecodeConfig, EncodeConfig, PduReader, Role};

use vfnvme_auth::ControllerAuth;
use vfnvme_driver::dma::DmaBuffer;

use super::request::{Event, Request, RequestState};
use super::send_queue::{Outgoing, SendQueue, MAX_SENT_HEADER};
use super::socket::Socket;
use crate::admin_worker::AdminSubmitter;
use crate::admission::ConnectionTicket;
use crate::backend::BackendQueue;
use crate::session::QueueBinding;
use crate::shared::TargetShared;
use crate::stats::{ConnectionStats, RoundClock};

/// The poll group's state a connection works with.
pub struct IoContext<'a> {
    pub backends: &'a mut [BackendQueue],
    /// Per drive, the requests of all the group's connections waiting for one of its buffers,
    /// oldest first: buffers go to them in that order (`PollGroup::hand_out_buffers`).
    pub buffer_waiters: &'a mut [VecDeque<BufferWaiter>],
    /// Where admin commands a drive answers go, off the poll group.
    pub admin: &'a mut AdminSubmitter,
}

/// A request waiting for a buffer: connection slot and request index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferWaiter {
    pub slot: u32,
    pub request: u16,
}

impl IoContext<'_> {
    /// A buffer of drive `drive`, unless others wait for one already (they come first).
    pub(super) fn take_buffer_in_turn(&mut self, drive: usize) -> Option<DmaBuffer> {
        if self.buffer_waiters[drive].is_empty() {
            self.backends[drive].take_buffer()
        } else {
            None
        }
    }

    /// Queues a request for the next buffer of `drive`. The queue has room for every request
    /// of the group's connections (reserved as each connection is adopted): nothing allocates.
    pub(super) fn wait_for_buffer(&mut self, drive: usize, slot: u32, request: u16) {
        self.buffer_waiters[drive].push_back(BufferWaiter { slot, request });
    }

    /// A closing connection's requests stop waiting.
    fn forget_buffer_waits(&mut self, slot: u32) {
        for waiters in self.buffer_waiters.iter_mut() {
            waiters.retain(|waiter| waiter.slot != slot);
        }
    }
}

/// PDUs handled per readiness event before other connections get their turn.
pub(super) const PDUS_PER_ROUND: usize = 64;
/// Receive buffer: room for many command capsules per read.
const RECV_BUFFER_LEN: usize = 64 * 1024;
/// Admin queues always accept this much in-capsule data (NVMe/TCP: 8 KiB, as Linux hosts send).
const ADMIN_IN_CAPSULE_DATA: usize = 8192;
/// How long a connection that is terminating (or disconnecting) may take to hand its last
/// PDUs to a peer that does not read, before it is closed anyway.
pub(super) const CLOSING_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for ICReq.
    Initializing,
    Established,
    /// A fatal error was reported: flush, then close.
    Terminating,
    Closed,
}

/// Where the data of the PDU being received goes.
#[derive(Clone, Copy, Debug)]
pub(super) enum DataTarget {
    /// A command's DMA buffer.
    Request(u16),
    /// `scratch`: admin command data, or in-capsule data of a command already failed.
    Scratch(u16),
    /// Write data of a command that failed (its drive is gone): read and dropped, through
    /// `scratch`, however long it is.
    Discard(u16),
}

pub struct Connection {
    pub(super) socket: Socket,
    pub(super) peer: String,
    /// The listener (an index in the target's listeners) the connection was accepted on.
    pub(super) listener: usize,
    pub(super) slot: u32,
    pub(super) shared: Arc<TargetShared>,
    pub(super) phase: Phase,
    pub(super) reader: PduReader,
    pub(super) encode: EncodeConfig,
    pub(super) binding: Option<QueueBinding>,
    pub(super) requests: Vec<Request>,
    pub(super) free_requests: Vec<u16>,
    /// Requests waiting for a buffer or drive queue room, oldest first.
    pub(super) waiting: VecDeque<u16>,
    pub(super) receiving: Option<DataTarget>,
    pub(super) scratch: Vec<u8>,
    pub(super) outgoing: SendQueue,
    pub(super) sq_head: u16,
    pub(super) accepting_commands: bool,
    /// Terminating or disconnecting: closed at this time even if the peer never reads.
    pub(super) closing_deadline: Option<Instant>,
    /// The last write found the socket's send buffer full.
    pub(super) write_blocked: bool,
    /// The last read stopped at the round limit with PDUs possibly left in the receive buffer,
    /// which no epoll event will announce: read on without waiting for one.
    pub(super) input_pending: bool,
    /// The last read from the socket brought less than it asked for: the socket had nothing
    /// more, so reading again before epoll reports it readable (level-triggered, so it does as
    /// long as bytes are there) would only fail with EWOULDBLOCK, a system call per command.
    pub(super) socket_drained: bool,
    /// Bytes read from the socket so far (tells the poll group whether a read brought any).
    pub(super) bytes_received: u64,
    /// An I/O queue Connect waiting for its QID to be released by the previous connection.
    pub(super) pending_connect: Option<PendingConnect>,
    /// Until the queue is bound: when the connection is closed if it has not sent its ICReq
    /// (`limits.icreq_timeout`) or, after it, a Connect that bound it (`connect_timeout`).
    pub(super) setup_deadline: Option<Instant>,
    /// Buffer bytes the requests of the connections from its host address in this poll group
    /// hold or wait for in the group's queue, against `limits.buffer_bytes_per_host`. Shared
    /// with those connections only, all on this thread: plain loads and stores, no contention.
    pub(super) host_charge: Arc<AtomicUsize>,
    /// Requests that would take its host past its buffer limit, oldest first: they wait for
    /// the host's own buffers to come back, not in the poll group's queue.
    pub(super) over_buffer_limit: VecDeque<u16>,
    /// R2Ts sent whose data has not all arrived, against `limits.r2t_per_connection`.
    pub(super) r2ts_outstanding: u16,
    /// Writes waiting for their R2T, oldest first.
    pub(super) waiting_for_r2t: VecDeque<u16>,
    /// Which limits of the connection's own have bitten (logged once per connection).
    pub(super) limits_reported: LimitsReported,
    /// The queue's DH-HMAC-CHAP exchange, when its host has a key (from its Connect on).
    pub(super) auth: Option<QueueAuth>,
    /// What it counts of its I/O commands (see `stats`).
    pub(super) stats: ConnectionStats,
    /// Its place in the target's count of connections, given back with it.
    _admission: ConnectionTicket,
}

/// Limits logged for a connection already: a host at a limit stays there for a while, and one
/// line per connection says so without a line per command.
#[derive(Default)]
pub(super) struct LimitsReported {
    pub(super) buffers: bool,
    pub(super) r2ts: bool,
}

/// A queue's DH-HMAC-CHAP state (see `auth_cmd`).
pub(super) struct QueueAuth {
    /// The exchange; `None` while one of its steps runs on the admin worker.
    pub(super) exchange: Option<Box<ControllerAuth>>,
    /// The host authenticated this queue. It stays so while the host re-authenticates, as
    /// nvmet's `sq->authenticated`: I/O goes on meanwhile.
    pub(super) authenticated: bool,
    /// The refusal was logged (once per queue).
    pub(super) refusal_logged: bool,
}

/// A Connect parked until its QID is free (see `fabrics_cmd::QID_REUSE_WAIT`).
pub(super) struct PendingConnect {
    pub(super) index: u16,
    /// The Connect data: `scratch` may be reused meanwhile.
    pub(super) data: Vec<u8>,
    pub(super) deadline: Instant,
}

impl Connection {
    pub fn new(
        socket: TcpStream,
        listener: usize,
        shared: Arc<TargetShared>,
        slot: u32,
        admission: ConnectionTicket,
        host_charge: Arc<AtomicUsize>,
        clock: RoundClock,
    ) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        let peer = socket
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let socket = match shared.tls_of(listener) {
            Some(server) => Socket::accept_tls(socket, server, &peer)?,
            None => Socket::Plain(socket),
        };
        let depth = usize::from(shared.settings().max_queue_depth);
        // Admin queues take up to 32 entries whatever the I/O queue depth.
        let depth = depth.max(usize::from(MAX_ADMIN_QUEUE_ENTRIES));
        let scratch_len =
            (shared.settings().in_capsule_data_size as usize).max(ADMIN_IN_CAPSULE_DATA);
        Ok(Self {
            socket,
            peer,
            listener,
            slot,
            phase: Phase::Initializing,
            reader: PduReader::new(DecodeConfig::initial(Role::Controller), RECV_BUFFER_LEN),
            encode: EncodeConfig::default(),
            binding: None,
            requests: (0..depth).map(|_| Request::free()).collect(),
            free_requests: (0..depth as u16).rev().collect(),
            waiting: VecDeque::with_capacity(depth),
            receiving: None,
            scratch: vec![0; scratch_len],
            outgoing: SendQueue::with_capacity(depth * 4 + 8),
            sq_head: 0,
            accepting_commands: true,
            closing_deadline: None,
            write_blocked: false,
            input_pending: false,
            socket_drained: false,
            bytes_received: 0,
            pending_connect: None,
            setup_deadline: Some(Instant::now() + shared.settings().limits.icreq_timeout),
            host_charge,
            over_buffer_limit: VecDeque::with_capacity(depth),
            r2ts_outstanding: 0,
            waiting_for_r2t: VecDeque::with_capacity(depth),
            limits_reported: LimitsReported::default(),
            auth: None,
            stats: ConnectionStats::new(clock),
            _admission: admission,
            shared,
        })
    }

    pub fn socket(&self) -> &TcpStream {
        self.socket.stream()
    }

    pub fn has_output(&self) -> bool {
        !self.outgoing.is_empty() && self.phase != Phase::Closed
    }

    /// Whether the connection waits for a peer that has not read what was sent: then only
    /// writability (EPOLLOUT) is worth waking up for, not a busy poll.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked && self.has_output()
    }

    /// Whether [`on_readable`](Self::on_readable) stopped at its round limit and must be
    /// called again without an epoll event.
    pub fn input_pending(&self) -> bool {
        // TLS: plaintext left in OpenSSL, which epoll does not see.
        (self.input_pending || self.socket.pending() > 0 && !self.receive_stalled())
            && matches!(self.phase, Phase::Initializing | Phase::Established)
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Command slots: what the poll group reserves room for in its buffer waiting lists.
    pub fn request_slots(&self) -> usize {
        self.requests.len()
    }

    /// Whether reading the socket can make progress: not while the data of the PDU being
    /// received waits for a buffer (it stays in the socket until one comes back).
    pub fn wants_input(&self) -> bool {
        !self.is_closed() && !self.receive_stalled()
    }

    pub(super) fn receive_stalled(&self) -> bool {
        matches!(self.receiving, Some(DataTarget::Request(index))
            if self.requests[usize::from(index)].buffer.is_none())
    }

    /// Closed, and no command of it is on a drive any more: its slot can be freed.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Closed
            && self
                .requests
                .iter()
                .all(|r| r.state() != RequestState::AtDrive)
    }

    /// Queues the CapsuleResp of a request and its release.
    pub(super) fn respond(&mut self, index: u16, status: Status, result: u32) {
        self.respond_with(index, status, result, 0);
    }

    pub(super) fn respond_with(&mut self, index: u16, status: Status, result: u32, dw1: u32) {
        self.requests[usize::from(index)].advance(Event::Responding);
        self.queue_response(index, status, result, dw1);
    }

    /// Queues the CapsuleResp of a request already responding, and its release.
    pub(super) fn queue_response(&mut self, index: u16, status: Status, result: u32, dw1: u32) {
        let completion = Completion {
            result,
            dw1,
            sq_head: self.sq_head,
            sq_id: self.binding.as_ref().map_or(0, QueueBinding::qid),
            cid: self.requests[usize::from(index)].command.cid(),
            status_phase: status.raw() << 1,
        };
        self.count_answer(index, status);
        let mut bytes = [0u8; MAX_SENT_HEADER];
        match pdu::encode_capsule_resp(&self.encode, &completion, &mut bytes) {
            Ok(len) => {
                debug_assert!(len >= CAPSULE_RESP_HEADER_LEN);
                self.outgoing.push_header(bytes, len);
            }
            Err(error) => log::error!("{}: cannot encode CapsuleResp: {error}", self.peer),
        }
        self.outgoing.push(Outgoing::Release(index));
    }

    pub(super) fn release(&mut self, index: u16, context: &mut IoContext<'_>) {
        let request = &mut self.requests[usize::from(index)];
        if let (Some(buffer), Some(route)) = (request.buffer.take(), request.route) {
            context.backends[route.drive].give_back(buffer);
        }
        uncharge(&self.host_charge, std::mem::take(&mut request.charged));
        request.advance(Event::Sent);
        self.free_requests.push(index);
    }

    /// Reports a fatal protocol error with a C2HTermReq and closes once it is sent.
    pub(super) fn terminate(&mut self, error: PduError) {
        log::warn!("{}: {error}; terminating the connection", self.peer);
        self.phase = Phase::Terminating;
        let term = TermReq {
            fes: error.fatal_error_status(),
            fei: error.field_offset(),
        };
        let mut bytes = [0u8; MAX_SENT_HEADER];
        if let Ok(len) = pdu::encode_term_req(Role::Controller, &term, &[], &mut bytes) {
            self.outgoing.push_header(bytes, len);
        }
        self.outgoing
            .push(Outgoing::Close("after a fatal protocol error"));
        self.closing_deadline = Some(Instant::now() + CLOSING_GRACE);
    }

    /// Closes the socket. Commands on a drive keep their requests (and buffers) until they
    /// complete; everything else is released now.
    pub(super) fn close(&mut self, why: &str, context: &mut IoContext<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        log::info!("{}: closing ({why})", self.peer);
        self.phase = Phase::Closed;
        let _ = self.socket.shutdown(Shutdown::Both);
        self.outgoing.clear();
        self.waiting.clear();
        self.over_buffer_limit.clear();
        self.waiting_for_r2t.clear();
        context.forget_buffer_waits(self.slot);
        self.pending_connect = None;
        for (index, request) in self.requests.iter_mut().enumerate() {
            // The host's other connections may use its budget at once.
            uncharge(&self.host_charge, std::mem::take(&mut request.charged));
            if matches!(request.state(), RequestState::AtDrive | RequestState::Free) {
                continue;
            }
            if let (Some(buffer), Some(route)) = (request.buffer.take(), request.route) {
                context.backends[route.drive].give_back(buffer);
            }
            request.advance(Event::Dropped);
            self.free_requests.push(index as u16);
        }
        if let Some(binding) = self.binding.take() {
            binding.release();
        }
    }

    /// Queues admin data (a command's result to the host) as one C2HData PDU.
    pub(super) fn send_admin_data(&mut self, index: u16, mut data: Vec<u8>) {
        // Never more than the host's buffer: the command's transfer length (SPDK copies at
        // most the request's length too).
        let transfer = SglDescriptor::of(&self.requests[usize::from(index)].command).length;
        data.truncate(transfer.get() as usize);
        if data.is_empty() {
            return;
        }
        let header = C2HData {
            cccid: self.requests[usize::from(index)].command.cid(),
            datao: 0,
            datal: data.len() as u32,
            last: true,
            success: false,
        };
        let mut bytes = [0u8; MAX_SENT_HEADER];
        match pdu::encode_c2h_data_header(&self.encode, &header, &mut bytes) {
            Ok(layout) => {
                if layout.data_digest {
                    let digest = pdu::data_digest(&[&data]);
                    data.extend_from_slice(&digest);
                }
                self.outgoing.push_header(bytes, layout.data_offset);
                self.outgoing.push(Outgoing::AdminData(data));
            }
            Err(error) => log::error!("{}: cannot encode C2HData: {error}", self.peer),
        }
    }

    /// The queue's host has a key and has not authenticated: only Fabrics commands pass.
    pub(super) fn authentication_pending(&self) -> bool {
        self.auth.as_ref().is_some_and(|auth| !auth.authenticated)
    }

    /// Subsystem `subsystem`'s namespaces are reached by `routes` from now on: if this queue
    /// is one of its controllers', its next commands use them (the management thread added or
    /// removed a namespace). Between commands, on the poll group's thread.
    pub fn namespaces_changed(
        &mut self,
        subsystem: &Arc<crate::subsystem::Subsystem>,
        routes: &Arc<[crate::session::NamespaceRoute]>,
    ) {
        let Some(binding) = self.binding.as_mut().filter(|b| b.serves(subsystem)) else {
            return;
        };
        binding.set_routes(Arc::clone(routes));
        self.stats.namespaces_changed(binding.nsids());
    }

    pub(super) fn sq_entries(&self) -> u16 {
        self.binding
            .as_ref()
            .map_or(self.requests.len() as u16 + 1, QueueBinding::sq_entries)
            .max(1)
    }
}

/// Gives `bytes` back to a host's buffer budget. The budget is shared only by connections of
/// one poll group, on its thread: a load and a store, not a read-modify-write.
pub(super) fn uncharge(budget: &AtomicUsize, bytes: usize) {
    let held = budget.load(Ordering::Relaxed);
    debug_assert!(held >= bytes, "{bytes} bytes given back of {held}");
    budget.store(held - bytes, Ordering::Relaxed);
}

/// Counts `bytes` against a host's buffer budget (see [`uncharge`]).
pub(super) fn charge(budget: &AtomicUsize, bytes: usize) {
    budget.store(budget.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(binding) = self.binding.take() {
            binding.release();
        }
    }
}
