//! One NVMe/TCP connection: one fabric queue (the admin queue or an I/O queue of a fabric
//! controller), owned by the poll group that polls its socket.
//!
//! Incoming PDUs are cut by a [`PduReader`](vfnvme_tcp::PduReader); the data of a write lands straight in the DMA
//! buffer of its command (in-capsule, or H2CData after our R2T). Reads are sent as C2HData
//! straight from the DMA buffer the drive filled, with vectored writes. Outgoing PDUs wait in a
//! queue sized at connection setup, so the I/O path allocates nothing.
//!
//! A connection that closes while its commands are still on a drive stays in its poll group's
//! slot, socket shut, until the drive has completed every one of them; only then are their
//! buffers returned and the slot freed. Nothing a late completion touches is ever gone.
//!
//! This file is the PDU loop: reading and cutting PDUs, the dispatch of each command, sending
//! what is queued, and the timer work. Beside it, as in Linux nvmet's tcp.c / io-cmd /
//! fabrics-cmd:
//! - `connection`: the connection's state and the primitives the others share (responses,
//!   terminating, closing);
//! - `request`: a command slot and its state machine;
//! - `send_queue`: what waits to be sent;
//! - `io_cmd`: I/O commands (the data path);
//! - `fabrics_cmd`: ICReq, Connect, Disconnect and the admin commands;
//! - `auth_cmd`: Authentication Send / Receive (DH-HMAC-CHAP) and the queue's authentication.

mod auth_cmd;
mod connection;
mod fabrics_cmd;
mod io_cmd;
mod request;
mod secure_channel;
mod send_queue;
mod socket;
mod stats;

use std::io::IoSlice;
use std::time::Instant;

use vfnvme_spec::fabrics::FABRICS_OPCODE;
use vfnvme_spec::status::generic;
use vfnvme_spec::{Command, Status};
use vfnvme_tcp::pdu::PduError;
use vfnvme_tcp::{PduHeader, PduLayout, ReadEvent};

pub use self::connection::{BufferWaiter, Connection, IoContext};
use self::connection::{DataTarget, Phase, PDUS_PER_ROUND};
use self::fabrics_cmd::is_connect;
use self::request::{Event, Request, RequestState};
use self::send_queue::{Marker, IOVECS_PER_WRITE};
use crate::session::QueueBinding;

impl Connection {
    /// The socket may have bytes (epoll said so, or the poll group reads a busy connection
    /// without asking): reads on (see [`on_readable`](Self::on_readable)). Returns whether
    /// bytes came.
    pub fn on_socket_readable(&mut self, context: &mut IoContext<'_>) -> bool {
        self.socket_drained = false;
        let before = self.bytes_received;
        self.on_readable(context);
        self.bytes_received != before
    }

    /// Reads and handles what the socket has, at most `PDUS_PER_ROUND` PDUs so that one busy
    /// connection does not starve the others; [`input_pending`](Self::input_pending) then says
    /// to come back.
    pub fn on_readable(&mut self, context: &mut IoContext<'_>) {
        self.input_pending = false;
        for _ in 0..PDUS_PER_ROUND {
            if !matches!(self.phase, Phase::Initializing | Phase::Established)
                || self.receive_stalled()
            {
                return;
            }
            match self.reader.poll() {
                Err(error) => {
                    self.terminate(error);
                    return;
                }
                Ok(ReadEvent::NeedMoreBytes) if self.socket_drained => return,
                Ok(ReadEvent::NeedMoreBytes) => {
                    let buffer = self.reader.recv_buffer();
                    let room = buffer.len();
                    match self.socket.read(buffer) {
                        Ok(0) => {
                            self.close("the host closed the connection", context);
                            return;
                        }
                        Ok(n) => {
                            self.bytes_received += n as u64;
                            self.socket_drained = self.socket.drained_after(n, room);
                            self.reader.commit_received(n);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            self.close(&format!("receive failed: {e}"), context);
                            return;
                        }
                    }
                }
                Ok(ReadEvent::Header { header, layout }) => self.on_header(header, layout, context),
                Ok(ReadEvent::Data { .. }) => {
                    if !self.receive_data(context) {
                        return;
                    }
                }
                Ok(ReadEvent::DataComplete(digest)) => {
                    if let Err(mismatch) = digest {
                        log::warn!("{}: {mismatch}", self.peer);
                        if let Some(
                            DataTarget::Request(request)
                            | DataTarget::Scratch(request)
                            | DataTarget::Discard(request),
                        ) = self.receiving
                        {
                            self.requests[usize::from(request)].failed =
                                Some(mismatch.completion_status());
                        }
                    }
                    self.on_data_complete(context);
                }
            }
        }
        // Every early return above waits for something (bytes, room, a close); only the round
        // limit leaves PDUs in the receive buffer with nothing to announce them.
        self.input_pending = true;
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
        let (window, position): (&mut [u8], &mut usize) = match target {
            DataTarget::Request(index) => {
                let Request {
                    buffer, received, ..
                } = &mut requests[usize::from(index)];
                let buffer = buffer
                    .as_mut()
                    .expect("a request receiving data has a buffer");
                let start = *received;
                (
                    &mut buffer.as_mut_slice()[start..start + remaining],
                    received,
                )
            }
            DataTarget::Scratch(index) => {
                let received = &mut requests[usize::from(index)].received;
                let start = *received;
                (&mut scratch[start..start + remaining], received)
            }
            DataTarget::Discard(index) => {
                let len = remaining.min(scratch.len());
                (
                    &mut scratch[..len],
                    &mut requests[usize::from(index)].received,
                )
            }
        };
        let copied = reader.copy_buffered_data(window);
        *position += copied;
        let rest = &mut window[copied..];
        if rest.is_empty() {
            return true;
        }
        if self.socket_drained {
            return false;
        }
        match socket.read(rest) {
            Ok(0) => {
                self.close("the host closed the connection", context);
                false
            }
            Ok(n) => {
                reader.data_received_directly(&rest[..n]);
                *position += n;
                self.bytes_received += n as u64;
                self.socket_drained = socket.drained_after(n, rest.len());
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
            (Phase::Established, PduHeader::H2CData(data)) => self.on_h2c_data(data, context),
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
        self.requests[usize::from(index)].received_at = self.stats.clock.now();
        let in_capsule = layout.data_len;

        let refusal = if !self.accepting_commands {
            Some(Status::namespace_not_ready())
        } else if self.binding.is_none() && !is_connect(&command) {
            Some(Status::command_sequence_error())
        } else if command.opcode() != FABRICS_OPCODE && self.authentication_pending() {
            // nvmet `nvmet_check_auth_status`: Fabrics commands (Property Get/Set, the
            // authentication commands, Disconnect) pass, every other one is refused.
            Some(Status::authentication_required())
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
                self.finish_admin(index, context);
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
            DataTarget::Scratch(index) => self.finish_admin(index, context),
            DataTarget::Request(index) | DataTarget::Discard(index) => {
                self.on_io_data_complete(index, context)
            }
        }
    }

    /// Sends what is queued, as far as the socket takes it.
    pub fn flush(&mut self, context: &mut IoContext<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.retry_connect();
        self.resume_over_buffer_limit(context);
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
        if self.setup_deadline.is_some_and(|deadline| now >= deadline)
            && self.pending_connect.is_none()
        {
            let why = if self.phase == Phase::Initializing {
                "no ICReq within limits.icreq_timeout_ms"
            } else {
                "no Connect within limits.connect_timeout_ms"
            };
            log::warn!("{}: {why}", self.peer);
            self.close(why, context);
            return;
        }
        if self.phase != Phase::Established {
            return;
        }
        if self.authentication_expired(now) {
            self.close("the DH-HMAC-CHAP exchange timed out", context);
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
}
