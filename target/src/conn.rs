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

use std::collections::VecDeque;
use std::io::{IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfnvme_driver::dma::DmaBuffer;
use vfnvme_driver::queue::Completed;
use vfnvme_spec::status::generic;
use vfnvme_spec::{nvm_opcode, Command, Completion, Status};

use crate::backend::BackendQueue;
use crate::ctrlr::AdminResponse;
use crate::session::{AdminOutcome, NamespaceRoute, QueueBinding};
use crate::shared::TargetShared;
use vfnvme_spec::fabrics::{
    connect_offset, connect_status, FabricsCommand, FABRICS_OPCODE, MAX_ADMIN_QUEUE_ENTRIES,
};
use vfnvme_tcp::digest::DIGEST_LEN;
use vfnvme_tcp::pdu::{
    self, C2HData, ICResp, PduError, TermReq, CAPSULE_RESP_HEADER_LEN, MIN_MAXH2CDATA, R2T,
};
use vfnvme_tcp::{DecodeConfig, EncodeConfig, PduHeader, PduLayout, PduReader, ReadEvent, Role};

/// The poll group's state a connection works with.
pub struct IoContext<'a> {
    pub backends: &'a mut [BackendQueue],
}

/// PDUs handled per readiness event before other connections get their turn.
const PDUS_PER_ROUND: usize = 64;
/// Receive buffer: room for many command capsules per read.
const RECV_BUFFER_LEN: usize = 64 * 1024;
/// The largest header we send with its digest and pad (a TermReq with the offending header).
const MAX_SENT_HEADER: usize = 160;
/// Iovecs per vectored write.
const IOVECS_PER_WRITE: usize = 32;
/// SGL descriptor identifiers (byte 15 of the data pointer): in-capsule data, or data the
/// transport moves (C2HData, or H2CData after R2T).
const SGL_IN_CAPSULE: u8 = 0x01;
const SGL_TRANSPORT: u8 = 0x5a;

/// Generic status: SGL data block length invalid.
const SGL_LENGTH_INVALID: u8 = 0x0f;
/// Admin queues always accept this much in-capsule data (NVMe/TCP: 8 KiB, as Linux hosts send).
const ADMIN_IN_CAPSULE_DATA: usize = 8192;
/// How long a connection that is terminating (or disconnecting) may take to hand its last
/// PDUs to a peer that does not read, before it is closed anyway.
const CLOSING_GRACE: Duration = Duration::from_secs(2);
/// How long an I/O queue Connect whose QID is still attached waits for the previous connection
/// of that queue to be seen closing (a host that reconnects right after closing the socket; the
/// old connection may live on another poll group that has not read its EOF yet).
const QID_REUSE_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for ICReq.
    Initializing,
    Established,
    /// A fatal error was reported: flush, then close.
    Terminating,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestState {
    Free,
    /// Receiving the command's data (in-capsule or after R2T).
    ReceivingData,
    /// Waiting for a buffer or for room on the drive's queue.
    Waiting,
    /// On a drive.
    AtDrive,
    /// An Asynchronous Event Request held by the fabric controller.
    Held,
    /// Its response is queued for sending.
    Responding,
}

struct Request {
    state: RequestState,
    command: Command,
    route: Option<NamespaceRoute>,
    /// Data transfer length of the command.
    len: usize,
    /// Bytes of write data received so far.
    received: usize,
    buffer: Option<DmaBuffer>,
    /// A data digest error: the command completes with this once its data is in.
    failed: Option<Status>,
}

impl Request {
    fn free() -> Self {
        Self {
            state: RequestState::Free,
            command: Command::default(),
            route: None,
            len: 0,
            received: 0,
            buffer: None,
            failed: None,
        }
    }
}

/// Where the data of the PDU being received goes.
#[derive(Clone, Copy, Debug)]
enum DataTarget {
    /// A command's DMA buffer.
    Request(u16),
    /// `scratch`: admin command data, or data of a command already failed.
    Scratch(u16),
}

/// Something to send. Headers are encoded when queued; data is referenced where it lies.
enum Outgoing {
    Header {
        bytes: [u8; MAX_SENT_HEADER],
        len: usize,
    },
    /// `len` bytes of a request's buffer, then its data digest if any.
    RequestData {
        request: u16,
        len: usize,
        digest: Option<[u8; DIGEST_LEN]>,
    },
    /// Admin command data (already followed by its digest when digests are on).
    AdminData(Vec<u8>),
    /// Everything before has been sent: the request is done.
    Release(u16),
    /// Everything before has been sent: close the connection (for this reason).
    Close(&'static str),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Self::Header { len, .. } => *len,
            Self::RequestData { len, digest, .. } => len + digest.map_or(0, |d| d.len()),
            Self::AdminData(bytes) => bytes.len(),
            Self::Release(_) | Self::Close(_) => 0,
        }
    }
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
    outgoing: VecDeque<Outgoing>,
    /// Bytes of the first outgoing item already sent.
    sent_of_first: usize,
    sq_head: u16,
    accepting_commands: bool,
    /// Terminating or disconnecting: closed at this time even if the peer never reads.
    closing_deadline: Option<Instant>,
    /// The last write found the socket's send buffer full.
    write_blocked: bool,
    /// An I/O queue Connect waiting for its QID to be released by the previous connection.
    pending_connect: Option<PendingConnect>,
}

/// A Connect parked until its QID is free (see [`QID_REUSE_WAIT`]).
struct PendingConnect {
    index: u16,
    /// The Connect data: `scratch` may be reused meanwhile.
    data: Vec<u8>,
    deadline: Instant,
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
            outgoing: VecDeque::with_capacity(depth * 4 + 8),
            sent_of_first: 0,
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
                .all(|r| r.state != RequestState::AtDrive)
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

    fn on_ic_req(&mut self, request: pdu::ICReq) {
        let response = ICResp {
            pfv: pdu::PFV_1_0,
            cpda: 0,
            header_digest: request.header_digest,
            data_digest: request.data_digest,
            maxh2cdata: self.shared.max_h2c_data().max(MIN_MAXH2CDATA),
        };
        self.encode = EncodeConfig {
            header_digest: request.header_digest,
            data_digest: request.data_digest,
            pda: request.hpda,
        };
        self.reader.set_config(DecodeConfig {
            local_role: Role::Controller,
            header_digest: request.header_digest,
            data_digest: request.data_digest,
            pda: 0,
            // Whatever queue this becomes (the Connect says): the admin queue's 8 KiB or the
            // configured size; an I/O command's in-capsule data is checked against its buffer.
            max_in_capsule_data: self.scratch.len() as u32,
            max_data_pdu_len: response.maxh2cdata,
        });
        let mut bytes = [0u8; MAX_SENT_HEADER];
        match pdu::encode_ic_resp(&response, &mut bytes) {
            Ok(len) => {
                self.outgoing.push_back(Outgoing::Header { bytes, len });
                self.phase = Phase::Established;
            }
            Err(error) => log::error!("{}: cannot encode ICResp: {error}", self.peer),
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
        let request = &mut self.requests[usize::from(index)];
        *request = Request::free();
        request.command = command;
        request.state = RequestState::ReceivingData;
        let in_capsule = layout.data_len;

        let refusal = if !self.accepting_commands {
            Some(Status::generic(generic::NAMESPACE_NOT_READY))
        } else if self.binding.is_none() && !is_connect(&command) {
            Some(Status::generic(generic::COMMAND_SEQUENCE_ERROR).do_not_retry())
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

    /// An I/O command: check it, find its namespace and a buffer, then receive its data or
    /// send it to the drive.
    fn start_io(&mut self, index: u16, in_capsule: usize, context: &mut IoContext<'_>) {
        let binding = self.binding.as_ref().expect("an I/O queue is bound");
        let command = self.requests[usize::from(index)].command;
        let checked = check_io(binding, &command, in_capsule, self.shared.buffer_sizes()).and_then(
            |(route, len)| {
                if self.shared.drive_removed(route.drive) {
                    Err(removed_drive_status())
                } else {
                    Ok((route, len))
                }
            },
        );
        let (route, len) = match checked {
            Ok(found) => found,
            Err(status) => {
                self.requests[usize::from(index)].failed = Some(status);
                if in_capsule > 0 {
                    self.requests[usize::from(index)].len = in_capsule;
                    self.receiving = Some(DataTarget::Scratch(index));
                } else {
                    self.respond(index, status, 0);
                }
                return;
            }
        };
        let request = &mut self.requests[usize::from(index)];
        request.route = Some(route);
        request.len = len;
        if len == 0 {
            request.state = RequestState::Waiting;
            self.waiting.push_back(index);
            self.submit_waiting(context);
            return;
        }
        let Some(buffer) = context.backends[route.drive].take_buffer() else {
            if in_capsule > 0 {
                // No buffer for data already on its way: it goes nowhere, the host retries.
                request.failed = Some(Status::generic(generic::NAMESPACE_NOT_READY));
                request.len = in_capsule;
                self.receiving = Some(DataTarget::Scratch(index));
            } else {
                request.state = RequestState::Waiting;
                self.waiting.push_back(index);
            }
            return;
        };
        request.buffer = Some(buffer);
        if in_capsule > 0 {
            self.receiving = Some(DataTarget::Request(index));
        } else if is_host_to_controller(command.opcode()) {
            self.send_r2t(index);
        } else {
            request.state = RequestState::Waiting;
            self.waiting.push_back(index);
            self.submit_waiting(context);
        }
    }

    fn send_r2t(&mut self, index: u16) {
        let request = &self.requests[usize::from(index)];
        let r2t = R2T {
            cccid: request.command.cid(),
            ttag: index,
            r2to: 0,
            r2tl: request.len as u32,
        };
        let mut bytes = [0u8; MAX_SENT_HEADER];
        match pdu::encode_r2t(&self.encode, &r2t, &mut bytes) {
            Ok(len) => self.outgoing.push_back(Outgoing::Header { bytes, len }),
            Err(error) => log::error!("{}: cannot encode R2T: {error}", self.peer),
        }
    }

    fn on_h2c_data(&mut self, data: pdu::H2CData) {
        let Some(request) = self.requests.get(usize::from(data.ttag)) else {
            self.terminate(PduError::InvalidHeaderField {
                offset: 10,
                reason: "unknown transfer tag",
            });
            return;
        };
        // As SPDK: no R2T outstanding under this tag is a sequence error, a tag whose command
        // has another CID an invalid CCCID field.
        if request.state != RequestState::ReceivingData || request.buffer.is_none() {
            self.terminate(PduError::SequenceError("H2CData without a matching R2T"));
            return;
        }
        if request.command.cid() != data.cccid {
            self.terminate(PduError::InvalidHeaderField {
                offset: 8,
                reason: "CCCID is not the command of the transfer tag",
            });
            return;
        }
        let end = u64::from(data.datao) + u64::from(data.datal);
        if data.datao as usize != request.received || end > request.len as u64 {
            self.terminate(PduError::DataOutOfRange(
                "H2CData outside the transfer the R2T asked for",
            ));
            return;
        }
        self.receiving = Some(DataTarget::Request(data.ttag));
    }

    fn on_data_complete(&mut self, context: &mut IoContext<'_>) {
        let Some(target) = self.receiving.take() else {
            return;
        };
        match target {
            // Admin data, or the data of a command that already failed: `finish_admin` answers
            // with the failure if there is one.
            DataTarget::Scratch(index) => self.finish_admin(index),
            DataTarget::Request(index) => {
                let request = &mut self.requests[usize::from(index)];
                if request.received < request.len {
                    // More H2CData PDUs follow for this transfer.
                    return;
                }
                if let Some(status) = request.failed {
                    let buffer = request.buffer.take();
                    if let (Some(buffer), Some(route)) = (buffer, request.route) {
                        context.backends[route.drive].give_back(buffer);
                    }
                    self.respond(index, status, 0);
                    return;
                }
                request.state = RequestState::Waiting;
                self.waiting.push_back(index);
                self.submit_waiting(context);
            }
        }
    }

    /// Sends waiting requests to their drives, oldest first, as buffers and queue room allow.
    fn submit_waiting(&mut self, context: &mut IoContext<'_>) {
        while let Some(&index) = self.waiting.front() {
            let request = &mut self.requests[usize::from(index)];
            let route = request.route.expect("waiting requests have a route");
            let backend = &mut context.backends[route.drive];
            if backend.is_gone() {
                self.waiting.pop_front();
                if let Some(buffer) = request.buffer.take() {
                    backend.give_back(buffer);
                }
                self.respond(index, removed_drive_status(), 0);
                continue;
            }
            if request.len > 0 && request.buffer.is_none() {
                match backend.take_buffer() {
                    Some(buffer) => request.buffer = Some(buffer),
                    None => return,
                }
                if is_host_to_controller(request.command.opcode()) {
                    self.waiting.pop_front();
                    self.requests[usize::from(index)].state = RequestState::ReceivingData;
                    self.send_r2t(index);
                    continue;
                }
            }
            let command = device_command(&request.command, &route);
            let data = request.buffer.take().map(|buffer| (buffer, request.len));
            let tag = (u64::from(self.slot) << 16) | u64::from(index);
            match backend.submit(command, data, tag) {
                Ok(()) => {
                    request.state = RequestState::AtDrive;
                    self.waiting.pop_front();
                }
                Err(rejected) => {
                    request.buffer = rejected.buffer;
                    if rejected.error != vfnvme_driver::queue::SubmitError::QueueFull {
                        log::error!("{}: drive refused a command: {}", self.peer, rejected.error);
                        self.waiting.pop_front();
                        if let Some(buffer) = self.requests[usize::from(index)].buffer.take() {
                            context.backends[route.drive].give_back(buffer);
                        }
                        self.respond(index, BackendQueue::unavailable(), 0);
                        continue;
                    }
                    return;
                }
            }
        }
    }

    /// Drive `drive` is being given up and this poll group drops its queue to it: requests
    /// waiting for it fail now; with `in_flight`, so do those still on it (their completions will
    /// never come).
    pub fn abandon_drive(&mut self, drive: usize, in_flight: bool, context: &mut IoContext<'_>) {
        let on_drive = |request: &Request| request.route.is_some_and(|r| r.drive == drive);
        let mut failed = Vec::new();
        self.waiting.retain(|&index| {
            let waiting = on_drive(&self.requests[usize::from(index)]);
            if waiting {
                failed.push(index);
            }
            !waiting
        });
        if in_flight {
            failed.extend((0..self.requests.len() as u16).filter(|&index| {
                let request = &self.requests[usize::from(index)];
                request.state == RequestState::AtDrive && on_drive(request)
            }));
        }
        for index in failed {
            if let Some(buffer) = self.requests[usize::from(index)].buffer.take() {
                context.backends[drive].give_back(buffer);
            }
            if self.phase == Phase::Closed {
                self.requests[usize::from(index)].state = RequestState::Free;
                self.free_requests.push(index);
            } else {
                self.respond(index, removed_drive_status(), 0);
            }
        }
    }

    /// A drive completed one of this connection's commands.
    pub fn on_completion(
        &mut self,
        drive: usize,
        index: u16,
        done: Completed,
        context: &mut IoContext<'_>,
    ) {
        let Some(request) = self.requests.get_mut(usize::from(index)) else {
            if let Some(buffer) = done.buffer {
                context.backends[drive].give_back(buffer);
            }
            return;
        };
        request.buffer = done.buffer;
        if self.phase == Phase::Closed {
            if let Some(buffer) = request.buffer.take() {
                context.backends[drive].give_back(buffer);
            }
            request.state = RequestState::Free;
            self.free_requests.push(index);
            return;
        }
        let reads_data = done.status.is_success()
            && request.len > 0
            && !is_host_to_controller(request.command.opcode());
        if reads_data {
            self.send_read_data(index);
        } else {
            self.respond(index, done.status, done.result);
        }
    }

    /// C2HData from the request's buffer, then the response (unless the SUCCESS flag may
    /// replace it).
    fn send_read_data(&mut self, index: u16) {
        let request = &mut self.requests[usize::from(index)];
        request.state = RequestState::Responding;
        let len = request.len;
        let success_flag = self
            .binding
            .as_ref()
            .is_some_and(QueueBinding::sq_flow_control_disabled);
        let header = C2HData {
            cccid: request.command.cid(),
            datao: 0,
            datal: len as u32,
            last: true,
            success: success_flag,
        };
        let mut bytes = [0u8; MAX_SENT_HEADER];
        let layout = match pdu::encode_c2h_data_header(&self.encode, &header, &mut bytes) {
            Ok(layout) => layout,
            Err(error) => {
                log::error!("{}: cannot encode C2HData: {error}", self.peer);
                return;
            }
        };
        let digest = layout.data_digest.then(|| {
            let buffer = request.buffer.as_ref().expect("a read has its buffer");
            pdu::data_digest(&[&buffer.as_slice()[..len]])
        });
        self.outgoing.push_back(Outgoing::Header {
            bytes,
            len: layout.data_offset,
        });
        self.outgoing.push_back(Outgoing::RequestData {
            request: index,
            len,
            digest,
        });
        if success_flag {
            self.outgoing.push_back(Outgoing::Release(index));
        } else {
            self.respond(index, Status::SUCCESS, 0);
        }
    }

    /// Queues the CapsuleResp of a request and its release.
    fn respond(&mut self, index: u16, status: Status, result: u32) {
        self.respond_with(index, status, result, 0);
    }

    fn respond_with(&mut self, index: u16, status: Status, result: u32, dw1: u32) {
        let request = &mut self.requests[usize::from(index)];
        request.state = RequestState::Responding;
        let completion = Completion {
            result,
            dw1,
            sq_head: self.sq_head,
            sq_id: self.binding.as_ref().map_or(0, QueueBinding::qid),
            cid: request.command.cid(),
            status_phase: status.raw() << 1,
        };
        let mut bytes = [0u8; MAX_SENT_HEADER];
        match pdu::encode_capsule_resp(&self.encode, &completion, &mut bytes) {
            Ok(len) => {
                debug_assert!(len >= CAPSULE_RESP_HEADER_LEN);
                self.outgoing.push_back(Outgoing::Header { bytes, len });
            }
            Err(error) => log::error!("{}: cannot encode CapsuleResp: {error}", self.peer),
        }
        self.outgoing.push_back(Outgoing::Release(index));
    }

    /// Admin and fabrics commands: run them against the fabric controller, with their data in
    /// `scratch`.
    fn finish_admin(&mut self, index: u16) {
        let request = &self.requests[usize::from(index)];
        if let Some(status) = request.failed {
            self.respond(index, status, 0);
            return;
        }
        let command = request.command;
        if is_disconnect(&command) && self.binding.as_ref().is_some_and(|b| !b.is_admin()) {
            self.disconnect(index);
            return;
        }
        if is_connect(&command) && self.binding.is_none() {
            let data = self.scratch[..request.len].to_vec();
            self.try_connect(index, data, Instant::now() + QID_REUSE_WAIT);
            return;
        }
        let outcome = if !is_connect(&command) {
            let binding = self.binding.as_ref().expect("checked before");
            binding.execute_admin(&command)
        } else {
            AdminOutcome::Respond(AdminResponse::failure(
                Status::generic(generic::COMMAND_SEQUENCE_ERROR).do_not_retry(),
            ))
        };
        self.answer_admin(index, outcome);
    }

    fn answer_admin(&mut self, index: u16, outcome: AdminOutcome) {
        match outcome {
            AdminOutcome::Held => self.requests[usize::from(index)].state = RequestState::Held,
            AdminOutcome::Respond(response) => {
                if response.status.is_success() && !response.data.is_empty() {
                    self.send_admin_data(index, response.data);
                }
                self.respond_with(index, response.status, response.result, response.dw1);
            }
        }
    }

    /// Connect on a connection without a queue yet. An I/O queue Connect refused only because
    /// its QID is still attached is parked and retried until `deadline`: the previous
    /// connection of that queue may be closed by the host already, with its poll group yet to
    /// read the EOF (SPDK's "Duplicate QID" on reconnect).
    fn try_connect(&mut self, index: u16, data: Vec<u8>, deadline: Instant) {
        let command = self.requests[usize::from(index)].command;
        let local = self
            .socket
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let outcome = match crate::session::connect(self.shared.registry(), &command, &data, local)
        {
            Ok((binding, result)) => {
                log::info!(
                    "{}: connected queue {} (controller {result})",
                    self.peer,
                    binding.qid()
                );
                self.sq_head %= binding.sq_entries();
                self.binding = Some(binding);
                AdminResponse::success(result)
            }
            Err((status, result)) => {
                if qid_in_use(&command, status, result) && Instant::now() < deadline {
                    self.requests[usize::from(index)].state = RequestState::Held;
                    self.pending_connect = Some(PendingConnect {
                        index,
                        data,
                        deadline,
                    });
                    return;
                }
                AdminResponse {
                    result,
                    ..AdminResponse::failure(status)
                }
            }
        };
        self.answer_admin(index, AdminOutcome::Respond(outcome));
    }

    /// Retries a parked Connect.
    fn retry_connect(&mut self) {
        if self.phase != Phase::Established {
            return;
        }
        if let Some(pending) = self.pending_connect.take() {
            self.try_connect(pending.index, pending.data, pending.deadline);
        }
    }

    /// Disconnect of an I/O queue: the QID is released before the response goes out, so a
    /// host that reconnects it as soon as it has the response is never refused; then the
    /// connection closes.
    fn disconnect(&mut self, index: u16) {
        self.respond(index, Status::SUCCESS, 0);
        if let Some(binding) = self.binding.take() {
            log::info!("{}: queue {} disconnected", self.peer, binding.qid());
            binding.release();
        }
        self.phase = Phase::Terminating;
        self.outgoing
            .push_back(Outgoing::Close("the host disconnected the queue"));
        self.closing_deadline = Some(Instant::now() + CLOSING_GRACE);
    }

    fn send_admin_data(&mut self, index: u16, mut data: Vec<u8>) {
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
                self.outgoing.push_back(Outgoing::Header {
                    bytes,
                    len: layout.data_offset,
                });
                self.outgoing.push_back(Outgoing::AdminData(data));
            }
            Err(error) => log::error!("{}: cannot encode C2HData: {error}", self.peer),
        }
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
            let mut count = 0;
            let mut skip = self.sent_of_first;
            for item in &self.outgoing {
                // Nothing queued after a Close may reach the wire (a drive completing a command
                // of a terminated connection queues its response there).
                if count + 2 > IOVECS_PER_WRITE || matches!(item, Outgoing::Close(_)) {
                    break;
                }
                let (first, second): (&[u8], &[u8]) = match item {
                    Outgoing::Header { bytes, len } => (&bytes[..*len], &[]),
                    Outgoing::RequestData {
                        request,
                        len,
                        digest,
                    } => {
                        let buffer = self.requests[usize::from(*request)]
                            .buffer
                            .as_ref()
                            .expect("data is sent from the request's buffer");
                        (
                            &buffer.as_slice()[..*len],
                            digest.as_ref().map_or(&[][..], |d| &d[..]),
                        )
                    }
                    Outgoing::AdminData(bytes) => (bytes, &[]),
                    Outgoing::Release(_) | Outgoing::Close(_) => (&[], &[]),
                };
                for part in [first, second] {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    slices[count] = IoSlice::new(&part[skip..]);
                    skip = 0;
                    count += 1;
                }
            }
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
                    self.advance(written, context);
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
    fn advance(&mut self, mut written: usize, context: &mut IoContext<'_>) {
        while written > 0 {
            let Some(front) = self.outgoing.front() else {
                return;
            };
            let left = front.len() - self.sent_of_first;
            if written < left {
                self.sent_of_first += written;
                return;
            }
            written -= left;
            self.sent_of_first = 0;
            self.outgoing.pop_front();
            self.retire_empty_items(context);
        }
    }

    /// Acts on Release and Close items that reached the front.
    fn retire_empty_items(&mut self, context: &mut IoContext<'_>) {
        while let Some(front) = self.outgoing.front() {
            match front {
                Outgoing::Release(index) => {
                    let index = *index;
                    self.outgoing.pop_front();
                    self.release(index, context);
                }
                Outgoing::Close(why) => {
                    let why = *why;
                    self.outgoing.pop_front();
                    self.close(why, context);
                    return;
                }
                _ => return,
            }
        }
    }

    fn release(&mut self, index: u16, context: &mut IoContext<'_>) {
        let request = &mut self.requests[usize::from(index)];
        if let (Some(buffer), Some(route)) = (request.buffer.take(), request.route) {
            context.backends[route.drive].give_back(buffer);
        }
        request.state = RequestState::Free;
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
            self.outgoing.push_back(Outgoing::Header { bytes, len });
        }
        self.outgoing
            .push_back(Outgoing::Close("after a fatal protocol error"));
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
        self.sent_of_first = 0;
        self.waiting.clear();
        self.pending_connect = None;
        for (index, request) in self.requests.iter_mut().enumerate() {
            if matches!(request.state, RequestState::AtDrive | RequestState::Free) {
                continue;
            }
            if let (Some(buffer), Some(route)) = (request.buffer.take(), request.route) {
                context.backends[route.drive].give_back(buffer);
            }
            request.state = RequestState::Free;
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
                request.state == RequestState::Held && request.command.cid() == event.cid
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
            .filter(|&i| self.requests[usize::from(i)].state == RequestState::Held)
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

fn is_fabrics(command: &Command, fctype: u8) -> bool {
    command.opcode() == FABRICS_OPCODE && vfnvme_spec::fabrics::fctype_of(command) == fctype
}

fn is_connect(command: &Command) -> bool {
    is_fabrics(command, vfnvme_spec::fabrics::fctype::CONNECT)
}

fn is_disconnect(command: &Command) -> bool {
    is_fabrics(command, vfnvme_spec::fabrics::fctype::DISCONNECT)
}

/// Whether an I/O queue Connect was refused for its QID (which may be still attached).
fn qid_in_use(command: &Command, status: Status, result: u32) -> bool {
    let io_queue = matches!(
        FabricsCommand::parse(command),
        Ok(FabricsCommand::Connect(connect)) if connect.qid != 0
    );
    io_queue
        && vfnvme_spec::fabrics::is_connect_status(status, connect_status::INVALID_PARAMETERS)
        && result == u32::from(connect_offset::QID)
}

/// Status of commands for a namespace whose drive is being given up (hot removal): the host
/// should not retry on this path.
fn removed_drive_status() -> Status {
    Status::generic(generic::NAMESPACE_NOT_READY).do_not_retry()
}

fn is_host_to_controller(opcode: u8) -> bool {
    matches!(opcode, nvm_opcode::WRITE | nvm_opcode::DATASET_MANAGEMENT)
}

/// Checks an I/O command against its namespace and SGL; returns the route and data length.
fn check_io(
    binding: &QueueBinding,
    command: &Command,
    in_capsule: usize,
    buffer_sizes: &[usize],
) -> Result<(NamespaceRoute, usize), Status> {
    let invalid = |sc| Err(Status::generic(sc).do_not_retry());
    if binding.terminated() {
        // The admin queue is gone (a shutdown, a dropped host): retryable once the host has
        // reconnected, unlike a controller the host never enabled.
        return Err(Status::generic(generic::NAMESPACE_NOT_READY));
    }
    if !binding.enabled() {
        return invalid(generic::COMMAND_SEQUENCE_ERROR);
    }
    let Some(route) = binding.namespace(command.nsid) else {
        return invalid(generic::INVALID_NAMESPACE_OR_FORMAT);
    };
    let buffer_len = buffer_sizes[route.drive];
    let len = match command.opcode() {
        nvm_opcode::READ | nvm_opcode::WRITE => command.nlb() as usize * route.block_size as usize,
        nvm_opcode::DATASET_MANAGEMENT => ((command.cdw10 & 0xff) as usize + 1) * 16,
        nvm_opcode::FLUSH | nvm_opcode::WRITE_ZEROES => 0,
        _ => return invalid(generic::INVALID_OPCODE),
    };
    if len > 0 {
        let sgl_length = command.prp2 as u32 as usize;
        let sgl_kind = (command.prp2 >> 56) as u8;
        let expected_kind = if in_capsule > 0 {
            SGL_IN_CAPSULE
        } else {
            SGL_TRANSPORT
        };
        if sgl_kind != expected_kind {
            return invalid(generic::INVALID_SGL_DESCRIPTOR);
        }
        if sgl_length != len || (in_capsule > 0 && in_capsule != len) {
            return invalid(SGL_LENGTH_INVALID);
        }
        // Beyond MDTS: Invalid Field in Command, as the base specification says (SPDK answers
        // SGL Data Block Length Invalid). The buffers bound it too, whatever MDTS says.
        if len > binding.max_io_size() || len > buffer_len {
            return invalid(generic::INVALID_FIELD);
        }
    }
    Ok((route, len))
}

/// The command as the drive gets it: the drive's namespace id, PRPs left to the driver.
fn device_command(command: &Command, route: &NamespaceRoute) -> Command {
    Command {
        cdw0: u32::from(command.opcode()),
        nsid: route.device_nsid,
        prp1: 0,
        prp2: 0,
        mptr: 0,
        ..*command
    }
}
