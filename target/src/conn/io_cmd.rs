//! I/O commands on an I/O queue: Read, Write, Flush, Write Zeroes and Dataset Management,
//! checked against their namespace and SGL, their write data asked for with R2T, sent to their
//! drive, and answered (read data as C2HData straight from the drive's DMA buffer).
//!
//! Its own file because it is the data path: what it does per command must allocate nothing
//! and take no lock, unlike the admin and fabrics commands beside it.

use vfnvme_driver::dma::DmaBuffer;
use vfnvme_driver::queue::{Completed, SubmitError};
use vfnvme_spec::identify::oncs;
use vfnvme_spec::sgl::{self, SglDescriptor};
use vfnvme_spec::status::generic;
use vfnvme_spec::{nvm_opcode, Command, Status};
use vfnvme_tcp::pdu::{self, C2HData, PduError, R2T};

use std::sync::atomic::Ordering;

use super::connection::{charge, Connection, DataTarget, IoContext, Phase};
use super::request::{Event, Request, RequestState};
use super::send_queue::{Outgoing, MAX_SENT_HEADER};
use crate::session::{NamespaceRoute, QueueBinding};
use crate::shared::TargetShared;

impl Connection {
    /// An I/O command: check it, find its namespace and a buffer, then receive its data or
    /// send it to the drive.
    pub(super) fn start_io(&mut self, index: u16, in_capsule: usize, context: &mut IoContext<'_>) {
        let binding = self.binding.as_ref().expect("an I/O queue is bound");
        let command = self.requests[usize::from(index)].command;
        let checked =
            check_io(binding, &command, in_capsule, &self.shared).and_then(|(route, len)| {
                if self.shared.drive_removed(route.drive) {
                    // The drive is being given up (hot removal): no retry on this path.
                    Err(Status::namespace_not_ready().do_not_retry())
                } else {
                    Ok((route, len))
                }
            });
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
            request.advance(Event::Ready);
            self.waiting.push_back(index);
            self.submit_waiting(context);
        } else if in_capsule > 0 {
            self.receive_into_buffer(index, context);
        } else if is_host_to_controller(command.opcode()) {
            // The buffer is taken when the data arrives, not now: a buffer held for data the
            // host has yet to send could be the one a stalled connection waits for, with that
            // data queued behind the stall.
            self.request_data(index);
        } else {
            request.advance(Event::Ready);
            if self.take_buffer(index, route.drive, context) {
                self.waiting.push_back(index);
                self.submit_waiting(context);
            }
        }
    }

    /// Request `index` needs a buffer of `drive`: it takes one now, or waits in turn for the
    /// poll group's next one, or, while its host holds its limit of buffer memory, for the
    /// host's own buffers to come back (so that a host that does not read its data cannot
    /// take a whole pool from the others). Returns whether it has its buffer.
    fn take_buffer(&mut self, index: u16, drive: usize, context: &mut IoContext<'_>) -> bool {
        if !self.over_buffer_limit.is_empty() || !self.may_charge(drive) {
            if !std::mem::replace(&mut self.limits_reported.buffers, true) {
                log::info!(
                    "{}: its host holds {} bytes of buffers in this poll group \
                     (limits.buffer_bytes_per_host); its commands wait for them (logged once \
                     per connection)",
                    self.peer,
                    self.host_charge.load(Ordering::Relaxed)
                );
            }
            self.over_buffer_limit.push_back(index);
            return false;
        }
        self.charge_and_take(index, drive, context)
    }

    /// Counts a buffer of `drive` against the host and takes it for request `index`,
    /// or queues the request for the poll group's next one.
    fn charge_and_take(&mut self, index: u16, drive: usize, context: &mut IoContext<'_>) -> bool {
        let size = self.shared.buffer_size(drive);
        self.requests[usize::from(index)].charged = size;
        charge(&self.host_charge, size);
        match context.take_buffer_in_turn(drive) {
            Some(buffer) => {
                self.requests[usize::from(index)].buffer = Some(buffer);
                true
            }
            None => {
                context.wait_for_buffer(drive, self.slot, index);
                false
            }
        }
    }

    /// Whether one more buffer of `drive` stays within the host's limit (one buffer is always
    /// allowed, or a limit below the buffer size would stop the host).
    fn may_charge(&self, drive: usize) -> bool {
        let held = self.host_charge.load(Ordering::Relaxed);
        let size = self.shared.buffer_size(drive);
        held == 0 || held + size <= self.shared.settings().limits.buffer_bytes_per_host
    }

    /// Requests that waited for their host's own buffers go on, oldest first, as released
    /// ones make room.
    pub(super) fn resume_over_buffer_limit(&mut self, context: &mut IoContext<'_>) {
        while let Some(&index) = self.over_buffer_limit.front() {
            let request = &self.requests[usize::from(index)];
            let drive = request.route.expect("an I/O command has a route").drive;
            debug_assert!(request.buffer.is_none() && request.charged == 0);
            if !self.may_charge(drive) {
                return;
            }
            self.over_buffer_limit.pop_front();
            if self.charge_and_take(index, drive, context) {
                self.go_on_with_buffer(index, context);
            }
        }
    }

    /// Asks for a write's data with an R2T, or, while the connection has its limit of R2Ts
    /// outstanding, queues the write for one.
    fn request_data(&mut self, index: u16) {
        let limit = self.shared.settings().limits.r2t_per_connection;
        if self.waiting_for_r2t.is_empty() && self.r2ts_outstanding < limit {
            self.send_r2t(index);
            return;
        }
        if !std::mem::replace(&mut self.limits_reported.r2ts, true) {
            log::info!(
                "{}: {limit} R2Ts outstanding (limits.r2t_per_connection); further writes wait \
                 for theirs (logged once per connection)",
                self.peer
            );
        }
        self.waiting_for_r2t.push_back(index);
    }

    /// The data an R2T asked for is in: the next write waiting for an R2T gets one.
    fn r2t_done(&mut self, index: u16) {
        if !std::mem::take(&mut self.requests[usize::from(index)].r2t_outstanding) {
            return;
        }
        self.r2ts_outstanding -= 1;
        if let Some(next) = self.waiting_for_r2t.pop_front() {
            self.send_r2t(next);
        }
    }

    /// Write data for request `index` is arriving: it goes into the request's buffer. Without
    /// a free buffer the request waits for one in turn, and the connection stops reading its
    /// socket meanwhile, so the data waits in the socket, not anywhere of ours (nothing is
    /// failed, nothing allocated, nothing copied).
    fn receive_into_buffer(&mut self, index: u16, context: &mut IoContext<'_>) {
        let request = &mut self.requests[usize::from(index)];
        self.receiving = Some(DataTarget::Request(index));
        if request.buffer.is_some() {
            return;
        }
        let drive = request.route.expect("an I/O command has a route").drive;
        if request.failed.is_some() || context.backends[drive].is_gone() {
            request
                .failed
                .get_or_insert(Status::namespace_not_ready().do_not_retry());
            self.receiving = Some(DataTarget::Discard(index));
            return;
        }
        self.take_buffer(index, drive, context);
    }

    /// The poll group hands request `index` the buffer of `drive` it waited for: a read goes
    /// on to its drive, a stalled write's data is read on.
    pub fn on_buffer(
        &mut self,
        drive: usize,
        index: u16,
        buffer: DmaBuffer,
        context: &mut IoContext<'_>,
    ) {
        let request = &mut self.requests[usize::from(index)];
        let waits = self.phase != Phase::Closed
            && request.buffer.is_none()
            && request.route.is_some_and(|route| route.drive == drive)
            && matches!(
                request.state(),
                RequestState::Waiting | RequestState::ReceivingData
            );
        if !waits {
            context.backends[drive].give_back(buffer);
            return;
        }
        request.buffer = Some(buffer);
        self.go_on_with_buffer(index, context);
    }

    /// Request `index` has the buffer it waited for: a read goes on to its drive, a stalled
    /// write's data is read on.
    fn go_on_with_buffer(&mut self, index: u16, context: &mut IoContext<'_>) {
        if self.requests[usize::from(index)].state() == RequestState::Waiting {
            self.waiting.push_back(index);
            self.submit_waiting(context);
        } else {
            self.on_readable(context);
        }
    }

    fn send_r2t(&mut self, index: u16) {
        self.r2ts_outstanding += 1;
        let request = &mut self.requests[usize::from(index)];
        request.r2t_outstanding = true;
        let r2t = R2T {
            cccid: request.command.cid(),
            ttag: index,
            r2to: 0,
            r2tl: request.len as u32,
        };
        let mut bytes = [0u8; MAX_SENT_HEADER];
        match pdu::encode_r2t(&self.encode, &r2t, &mut bytes) {
            Ok(len) => self.outgoing.push_header(bytes, len),
            Err(error) => log::error!("{}: cannot encode R2T: {error}", self.peer),
        }
    }

    pub(super) fn on_h2c_data(&mut self, data: pdu::H2CData, context: &mut IoContext<'_>) {
        let Some(request) = self.requests.get(usize::from(data.ttag)) else {
            self.terminate(PduError::InvalidHeaderField {
                offset: 10,
                reason: "unknown transfer tag",
            });
            return;
        };
        // As SPDK: no R2T outstanding under this tag is a sequence error, a tag whose command
        // has another CID an invalid CCCID field. (A write whose data arrives in the capsule
        // is received in one go: no H2CData header can come while it is receiving.)
        if !request.r2t_outstanding {
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
        self.receive_into_buffer(data.ttag, context);
    }

    /// A data PDU into the buffer of request `index` is complete.
    pub(super) fn on_io_data_complete(&mut self, index: u16, context: &mut IoContext<'_>) {
        let request = &self.requests[usize::from(index)];
        if request.received < request.len {
            // More H2CData PDUs follow for this transfer.
            return;
        }
        self.r2t_done(index);
        let request = &mut self.requests[usize::from(index)];
        if let Some(status) = request.failed {
            let buffer = request.buffer.take();
            if let (Some(buffer), Some(route)) = (buffer, request.route) {
                context.backends[route.drive].give_back(buffer);
            }
            self.respond(index, status, 0);
            return;
        }
        request.advance(Event::Ready);
        self.waiting.push_back(index);
        self.submit_waiting(context);
    }

    /// Sends waiting requests (with their buffers) to their drives, oldest first, as queue
    /// room allows.
    pub(super) fn submit_waiting(&mut self, context: &mut IoContext<'_>) {
        while let Some(&index) = self.waiting.front() {
            let request = &mut self.requests[usize::from(index)];
            let route = request.route.expect("waiting requests have a route");
            let backend = &mut context.backends[route.drive];
            if backend.is_gone() {
                self.waiting.pop_front();
                if let Some(buffer) = request.buffer.take() {
                    backend.give_back(buffer);
                }
                self.respond(index, Status::namespace_not_ready().do_not_retry(), 0);
                continue;
            }
            let command = device_command(&request.command, &route);
            let data = request.buffer.take().map(|buffer| (buffer, request.len));
            let tag = (u64::from(self.slot) << 16) | u64::from(index);
            match backend.submit(command, data, tag) {
                Ok(()) => {
                    request.advance(Event::Submitted);
                    self.waiting.pop_front();
                }
                Err(rejected) => {
                    request.buffer = rejected.buffer;
                    if rejected.error != SubmitError::QueueFull {
                        log::error!("{}: drive refused a command: {}", self.peer, rejected.error);
                        self.waiting.pop_front();
                        if let Some(buffer) = self.requests[usize::from(index)].buffer.take() {
                            context.backends[route.drive].give_back(buffer);
                        }
                        // The drive is gone or being reset: retryable once it is back.
                        self.respond(index, Status::namespace_not_ready(), 0);
                        continue;
                    }
                    return;
                }
            }
        }
    }

    /// Drive `drive` is being given up and this poll group drops its queue to it: requests
    /// waiting for it (for room on it or one of its buffers) fail now; with `in_flight`, so do
    /// those still on it (their completions will never come). A write whose data waited for a
    /// buffer fails once its data is read (and dropped).
    pub fn abandon_drive(&mut self, drive: usize, in_flight: bool, context: &mut IoContext<'_>) {
        let on_drive = |request: &Request| request.route.is_some_and(|r| r.drive == drive);
        self.over_buffer_limit
            .retain(|&index| !on_drive(&self.requests[usize::from(index)]));
        let mut failed = Vec::new();
        self.waiting.retain(|&index| {
            let waiting = on_drive(&self.requests[usize::from(index)]);
            if waiting {
                failed.push(index);
            }
            !waiting
        });
        failed.extend((0..self.requests.len() as u16).filter(|&index| {
            let request = &self.requests[usize::from(index)];
            let waits_for_buffer = request.state() == RequestState::Waiting
                && request.len > 0
                && request.buffer.is_none();
            let abandoned =
                waits_for_buffer || (in_flight && request.state() == RequestState::AtDrive);
            abandoned && on_drive(request)
        }));
        for index in failed {
            if let Some(buffer) = self.requests[usize::from(index)].buffer.take() {
                context.backends[drive].give_back(buffer);
            }
            if self.phase == Phase::Closed {
                self.requests[usize::from(index)].advance(Event::Dropped);
                self.free_requests.push(index);
            } else {
                self.respond(index, Status::namespace_not_ready().do_not_retry(), 0);
            }
        }
        if let Some(DataTarget::Request(index)) = self.receiving {
            let request = &mut self.requests[usize::from(index)];
            if request.buffer.is_none() && on_drive(request) {
                request.failed = Some(Status::namespace_not_ready().do_not_retry());
                self.receiving = Some(DataTarget::Discard(index));
                self.on_readable(context);
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
            request.advance(Event::Dropped);
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

    /// C2HData from the request's buffer, then the response (unless the SUCCESS flag
    /// replaces it: the host disabled SQ flow control, or `c2h_success` says to anyway).
    fn send_read_data(&mut self, index: u16) {
        let success_flag = self.shared.settings().c2h_success
            || self
                .binding
                .as_ref()
                .is_some_and(QueueBinding::sq_flow_control_disabled);
        let request = &mut self.requests[usize::from(index)];
        request.advance(Event::Responding);
        let len = request.len;
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
        self.outgoing.push_header(bytes, layout.data_offset);
        self.outgoing.push(Outgoing::RequestData {
            request: index,
            len,
            digest,
        });
        if success_flag {
            self.count_answer(index, Status::SUCCESS);
            self.outgoing.push(Outgoing::Release(index));
        } else {
            self.queue_response(index, Status::SUCCESS, 0, 0);
        }
    }
}

fn is_host_to_controller(opcode: u8) -> bool {
    matches!(opcode, nvm_opcode::WRITE | nvm_opcode::DATASET_MANAGEMENT)
}

/// Checks an I/O command against its namespace and SGL; returns the route and data length.
fn check_io(
    binding: &QueueBinding,
    command: &Command,
    in_capsule: usize,
    shared: &TargetShared,
) -> Result<(NamespaceRoute, usize), Status> {
    let invalid = |sc| Err(Status::generic(sc).do_not_retry());
    if binding.terminated() {
        // The admin queue is gone (a shutdown, a dropped host): retryable once the host has
        // reconnected, unlike a controller the host never enabled.
        return Err(Status::namespace_not_ready());
    }
    if !binding.enabled() {
        return Err(Status::command_sequence_error());
    }
    let Some(route) = binding.namespace(command.nsid) else {
        return Err(Status::invalid_namespace());
    };
    let buffer_len = shared.buffer_size(route.drive);
    let len = match command.opcode() {
        nvm_opcode::READ | nvm_opcode::WRITE => command.nlb() as usize * route.block_size as usize,
        // Optional commands the subsystem does not advertise never reach the drive.
        nvm_opcode::DATASET_MANAGEMENT if route.oncs & oncs::DATASET_MANAGEMENT != 0 => {
            ((command.cdw10 & 0xff) as usize + 1) * 16
        }
        nvm_opcode::WRITE_ZEROES if route.oncs & oncs::WRITE_ZEROES != 0 => 0,
        nvm_opcode::FLUSH => 0,
        _ => return Err(Status::invalid_opcode()),
    };
    if len > 0 {
        // In-capsule data, or data the transport moves (C2HData, or H2CData after R2T).
        let sgl = SglDescriptor::of(command);
        let expected_kind = if in_capsule > 0 {
            sgl::IN_CAPSULE
        } else {
            sgl::TRANSPORT
        };
        if sgl.identifier != expected_kind {
            return invalid(generic::INVALID_SGL_DESCRIPTOR);
        }
        let sgl_length = sgl.length.get() as usize;
        if sgl_length != len || (in_capsule > 0 && in_capsule != len) {
            return invalid(generic::DATA_SGL_LENGTH_INVALID);
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
