//! One NVMe/TCP connection: one fabric queue (the admin queue or an I/O queue of a fabric
//! controller), owned by the poll group that polls its socket.
//!
//! Incoming PDUs are cut by a [`PduReader`]; the data of a write lands straight in the DMA
//! buffer of its command (in-capsule, or H2CData after our R2T). Reads are sent as C2HData
//! straight from the DMA buffer the drive filled, with vectored writes. Outgoing PDUs wait in a
//! queue sized at connection setup, so the I/O path allocates nothing.
//!
//! A connection that closes while its commands are still on a drive stays in its poll group's
//! slot, socket shut, until the drive has completed every one of them; only then are their
//! buffers returned and the slot freed. Nothing a late completion touches is ever gone.
//!
//! This file is the connection itself: its socket, the PDU loop, the dispatch of each command,
//! responses, and closing. Beside it, as in Linux nvmet's tcp.c / io-cmd / fabrics-cmd:
//! - `request`: a command slot and its state machine;
//! - `send_queue`: what waits to be sent;
//! - `io_cmd`: I/O commands (the data path);
//! - `fabrics_cmd`: ICReq, Connect, Disconnect and the admin commands.

mod fabrics_cmd;
mod io_cmd;
mod request;
mod send_queue;

use std::collections::VecDeque;
use std::io::{IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfnvme_spec::fabrics::{FABRICS_OPCODE, MAX_ADMIN_QUEUE_ENTRIES};
use vfnvme_spec::status::generic;
use vfnvme_spec::{Command, Completion, Status};
use vfnvme_tcp::pdu::{self, PduError, TermReq, CAPSULE_RESP_HEADER_LEN};
use vfnvme_tcp::{DecodeConfig, EncodeConfig, PduHeader, PduLayout, PduReader, ReadEvent, Role};

use self::fabrics_cmd::{is_connect, PendingConnect};
use self::request::{Event, Request, RequestState};
use self::send_queue::{Marker, Outgoing, SendQueue, IOVECS_PER_WRITE, MAX_SENT_HEADER};
use crate::backend::BackendQueue;
use crate::session::QueueBinding;
use crate::shared::TargetShared;

/// The poll group's state a connection works with.
pub struct IoContext<'a> {
    pub backends: &'a mut [BackendQueue],
}

/// PDUs handled per readiness event before other connections get their turn.
const PDUS_PER_ROUND: usize = 64;
/// Receive buffer: room for many command capsules per read.
const RECV_BUFFER_LEN: usize = 64 * 1024;
/// Admin queues always accept this much in-capsule data (NVMe/TCP: 8 KiB, as Linux hosts send).
const ADMIN_IN_CAPSULE_DATA: usize = 8192;
/// How long a connection that is terminating (or disconnecting) may take to hand its last
/// PDUs to a peer that does not read, before it is closed anyway.
const CLOSING_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for ICReq.
    Initializing,
    Established,
    /// A fatal error was reported: flush, then close.
    Terminating,
    Closed,
}

/// Where the data of the PDU being received goes.
#[derive(Clone, Copy, Debug)]
enum DataTarget {
    /// A command's DMA buffer.
    Request(u16),
    /// `scratch`: admin command data, or data of a command already failed.
    Scratch(u16),
}

pub struct Connection {
    socket: TcpStream,
    peer: String,
    slot: u32,
    shared: Arc<TargetShared>,
    phase: Phase,
    reader: PduReader,
    encode: EncodeConfig,
    binding: Option<QueueBinding>,
    requests: Vec<Request>,
    free_requests: Vec<u16>,
    /// Requests waiting for a buffer or drive queue room, oldest first.
    waiting: VecDeque<u16>,
    receiving: Option<DataTarget>,
    scratch: Vec<u8>,
    outgoing: SendQueue,
    sq_head: u16,
    accepting_commands: bool,
    /// Terminating or disconnecting: closed at this time even if the peer never reads.
    closing_deadline: Option<Instant>,
    /// The last write found the socket's send buffer full.
    write_blocked: bool,
    /// An I/O queue Connect waiting for its QID to be released by the previous connection.
    pending_connect: Option<PendingConnect>,
}

impl Connection {
    pub fn new(socket: TcpStream, shared: Arc<TargetShared>, slot: u32) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        let peer = socket
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let depth = usize::from(shared.settings().max_queue_depth);
        // Admin queues take up to 32 entries whatever the I/O queue depth.
        let depth = depth.max(usize::from(MAX_ADMIN_QUEUE_ENTRIES));
        let scratch_len =
            (shared.settings().in_capsule_data_size as usize).max(ADMIN_IN_CAPSULE_DATA);
        Ok(Self {
            socket,
            peer,
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
            pending_connect: None,
            shared,
        })
    }

    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    pub fn has_output(&self) -> bool {
        !self.outgoing.is_empty() && self.phase != Phase::Closed
    }

    /// Whether the connection waits for a peer that has not read what was sent: then only
    /// writability (EPOLLOUT) is worth waking up for, not a busy poll.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked && self.has_output()
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Closed, and no command of it is on a drive any more: its slot can be freed.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Closed
            && self
                .requests
                .iter()
                .all(|r| r.state() != RequestState::AtDrive)
    }

    /// Reads and handles what the socket has.
    pub fn on_readable(&mut self, context: &mut IoContext<'_>) {
        for _ in 0..PDUS_PER_ROUND {
            if !matches!(self.phase, Phase::Initializing | Phase::Established) {
                return;
            }
            match self.reader.poll() {
                Err(error) => {
                    self.terminate(error);
                    return;
                }
                Ok(ReadEvent::NeedMoreBytes) => match self.socket.read(self.reader.recv_buffer()) {
                    Ok(0) => {
                        self.close("the host closed the connection", context);
                        return;
                    }
                    Ok(n) => self.reader.commit_received(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.close(&format!("receive failed: {e}"), context);
                        return;
                    }
                },
                Ok(ReadEvent::Header { header, layout }) => self.on_header(header, layout, context),
                Ok(ReadEvent::Data { .. }) => {
                    if !self.receive_data(context) {
                        return;
                    }
                }
                Ok(ReadEvent::DataComplete(digest)) => {
                    if let Err(mismatch) = digest {
                        log::warn!("{}: {mismatch}", self.peer);
                        if let Some(DataTarget::Request(request) | DataTarget::Scratch(request)) =
                            self.receiving
                        {
                            self.requests[usize::from(request)].failed =
                                Some(mismatch.completion_status());
                        }
                    }
                    self.on_data_complete(context);
                }
            }
        }
    }

    /// Moves data of the current PDU into its target. Returns false when the socket has no
    /// more for now.
    fn receive_data(&mut self, context: &mut IoContext<'_>) -> bool {
        let Some(target) = self.receiving else {
            self.terminate(PduError::SequenceError("data without a destination"));
            return false;
        };
        let remaining = self.reader.data_remaining();
        let Self {
            reader,
            socket,
            requests,
            scratch,
            ..
        } = self;
        let (destination, position): (&mut [u8], &mut usize) = match target {
            DataTarget::Request(index) => {
                let request = &mut requests[usize::from(index)];
                let buffer = request
                    .buffer
                    .as_mut()
                    .expect("a request receiving data has a buffer");
                (buffer.as_mut_slice(), &mut request.received)
            }
            DataTarget::Scratch(index) => (
                scratch.as_mut_slice(),
                &mut requests[usize::from(index)].received,
            ),
        };
        let start = *position;
        let window = &mut destination[start..start + remaining];
        let copied = reader.copy_buffered_data(window);
        *position += copied;
        let rest = &mut window[copied..];
        if rest.is_empty() {
            return true;
        }
        match socket.read(rest) {
            Ok(0) => {
                self.close("the host closed the connection", context);
                false
            }
            Ok(n) => {
                reader.data_received_directly(&rest[..n]);
                *position += n;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(e) => {
                self.close(&format!("receive failed: {e}"), context);
                false
            }
        }
    }

    fn on_header(&mut self, header: PduHeader, layout: PduLayout, context: &mut IoContext<'_>) {
        match (self.phase, header) {
            (Phase::Initializing, PduHeader::ICReq(request)) => self.on_ic_req(request),
            (Phase::Established, PduHeader::CapsuleCmd(command)) => {
                self.on_command(command, layout, context)
            }
            (Phase::Established, PduHeader::H2CData(data)) => self.on_h2c_data(data),
            (_, PduHeader::H2CTermReq(term)) => {
                log::warn!(
                    "{}: host terminated the connection (FES {:#x}, FEI {:#x})",
                    self.peer,
                    term.fes,
                    term.fei
                );
                self.close("terminated by the host", context);
            }
            _ => self.terminate(PduError::SequenceError("unexpected PDU")),
        }
    }

    fn on_command(&mut self, command: Command, layout: PduLayout, context: &mut IoContext<'_>) {
        // A host may have as many commands outstanding as its queue has entries (SQSIZE + 1:
        // Linux hosts keep one fewer, nvmet tolerates more); one more is a protocol violation
        // that no status can report, since there is no slot to answer from. Like Linux nvmet
        // and SPDK the connection ends; unlike them, a C2HTermReq (PDU Sequence Error) says why.
        let outstanding = self.requests.len() - self.free_requests.len();
        let limit = self
            .binding
            .as_ref()
            .map_or(self.requests.len(), |binding| {
                usize::from(binding.sq_entries()).min(self.requests.len())
            });
        let index = match self.free_requests.pop() {
            Some(index) if outstanding < limit => index,
            other => {
                if let Some(index) = other {
                    self.free_requests.push(index);
                }
                self.terminate(PduError::SequenceError(
                    "more commands outstanding than the queue has entries",
                ));
                return;
            }
        };
        self.sq_head = self.sq_head.wrapping_add(1) % self.sq_entries();
        self.requests[usize::from(index)].advance(Event::Received(command));
        let in_capsule = layout.data_len;

        let refusal = if !self.accepting_commands {
            Some(Status::namespace_not_ready())
        } else if self.binding.is_none() && !is_connect(&command) {
            Some(Status::command_sequence_error())
        } else {
            None
        };
        let admin = command.opcode() == FABRICS_OPCODE
            || self.binding.as_ref().is_none_or(QueueBinding::is_admin);
        if refusal.is_some() || admin {
            self.requests[usize::from(index)].failed = refusal;
            self.requests[usize::from(index)].len = in_capsule;
            if in_capsule > 0 {
                self.receiving = Some(DataTarget::Scratch(index));
            } else {
                self.finish_admin(index);
            }
            return;
        }
        self.start_io(index, in_capsule, context);
    }

    fn on_data_complete(&mut self, context: &mut IoContext<'_>) {
        let Some(target) = self.receiving.take() else {
            return;
        };
        match target {
            // Admin data, or the data of a command that already failed: `finish_admin` answers
            // with the failure if there is one.
            DataTarget::Scratch(index) => self.finish_admin(index),
            DataTarget::Request(index) => self.on_io_data_complete(index, context),
        }
    }

    /// Queues the CapsuleResp of a request and its release.
    fn respond(&mut self, index: u16, status: Status, result: u32) {
        self.respond_with(index, status, result, 0);
    }

    fn respond_with(&mut self, index: u16, status: Status, result: u32, dw1: u32) {
        self.requests[usize::from(index)].advance(Event::Responding);
        self.queue_response(index, status, result, dw1);
    }

    /// Queues the CapsuleResp of a request already responding, and its release.
    fn queue_response(&mut self, index: u16, status: Status, result: u32, dw1: u32) {
        let completion = Completion {
            result,
            dw1,
            sq_head: self.sq_head,
            sq_id: self.binding.as_ref().map_or(0, QueueBinding::qid),
            cid: self.requests[usize::from(index)].command.cid(),
            status_phase: status.raw() << 1,
        };
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

    /// Sends what is queued, as far as the socket takes it.
    pub fn flush(&mut self, context: &mut IoContext<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.retry_connect();
        self.submit_waiting(context);
        loop {
            self.retire_empty_items(context);
            if self.phase == Phase::Closed || self.outgoing.is_empty() {
                return;
            }
            let mut slices = [IoSlice::new(&[]); IOVECS_PER_WRITE];
            let count = self.outgoing.gather(&self.requests, &mut slices);
            if count == 0 {
                return;
            }
            match self.socket.write_vectored(&slices[..count]) {
                Ok(0) => {
                    self.close("the socket accepts no more data", context);
                    return;
                }
                Ok(written) => {
                    self.write_blocked = false;
                    self.account_sent(written, context);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(&format!("send failed: {e}"), context);
                    return;
                }
            }
        }
    }

    /// Accounts for `written` bytes sent from the front of the queue.
    fn account_sent(&mut self, mut written: usize, context: &mut IoContext<'_>) {
        while written > 0 {
            let Some(left_over) = self.outgoing.take_sent(written) else {
                return;
            };
            written = left_over;
            self.retire_empty_items(context);
        }
    }

    /// Acts on Release and Close items that reached the front.
    fn retire_empty_items(&mut self, context: &mut IoContext<'_>) {
        while let Some(marker) = self.outgoing.pop_marker() {
            match marker {
                Marker::Release(index) => self.release(index, context),
                Marker::Close(why) => {
                    self.close(why, context);
                    return;
                }
            }
        }
    }

    fn release(&mut self, index: u16, context: &mut IoContext<'_>) {
        let request = &mut self.requests[usize::from(index)];
        if let (Some(buffer), Some(route)) = (request.buffer.take(), request.route) {
            context.backends[route.drive].give_back(buffer);
        }
        request.advance(Event::Sent);
        self.free_requests.push(index);
    }

    /// Reports a fatal protocol error with a C2HTermReq and closes once it is sent.
    fn terminate(&mut self, error: PduError) {
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
    fn close(&mut self, why: &str, context: &mut IoContext<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        log::info!("{}: closing ({why})", self.peer);
        self.phase = Phase::Closed;
        let _ = self.socket.shutdown(Shutdown::Both);
        self.outgoing.clear();
        self.waiting.clear();
        self.pending_connect = None;
        for (index, request) in self.requests.iter_mut().enumerate() {
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

    /// Timer work: keep-alive, asynchronous events, a controller that went away.
    pub fn tick(&mut self, now: Instant, context: &mut IoContext<'_>) {
        if self.phase == Phase::Terminating {
            if self
                .closing_deadline
                .is_some_and(|deadline| now >= deadline)
            {
                self.close("the peer does not take the last PDUs", context);
            }
            return;
        }
        if self.phase != Phase::Established {
            return;
        }
        let Some(binding) = self.binding.as_ref() else {
            return;
        };
        if let Some(why) = binding.expired(now) {
            self.close(why, context);
            return;
        }
        for event in binding.take_completed_aers() {
            let held = self.requests.iter().position(|request| {
                request.state() == RequestState::Held && request.command.cid() == event.cid
            });
            if let Some(index) = held {
                let response = event.response;
                self.respond_with(index as u16, response.status, response.result, response.dw1);
            }
        }
    }

    /// Shutdown: new commands are refused; held Asynchronous Event Requests are answered.
    pub fn stop_taking_commands(&mut self, context: &mut IoContext<'_>) {
        self.accepting_commands = false;
        // A parked Connect is held like an AER, and answered with them below.
        self.pending_connect = None;
        let held: Vec<u16> = (0..self.requests.len() as u16)
            .filter(|&i| self.requests[usize::from(i)].state() == RequestState::Held)
            .collect();
        for index in held {
            self.respond(
                index,
                Status::generic(generic::ABORT_REQUESTED).do_not_retry(),
                0,
            );
        }
        self.flush(context);
    }

    fn sq_entries(&self) -> u16 {
        self.binding
            .as_ref()
            .map_or(self.requests.len() as u16 + 1, QueueBinding::sq_entries)
            .max(1)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(binding) = self.binding.take() {
            binding.release();
        }
    }
}
