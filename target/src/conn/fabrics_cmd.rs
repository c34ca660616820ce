//! What a connection does with the commands that are not I/O: the ICReq that sets it up, the
//! Connect that binds it to a fabric controller's queue, Disconnect, and the admin and
//! Property Get/Set commands it hands to that controller, with their data.
//!
//! Its own file because none of it is the data path: these commands are rare, may allocate,
//! and reach the fabric controller (and its lock) through the queue binding.

use std::time::{Duration, Instant};

use vfnvme_spec::auth::{connect_authreq, AuthCommand};
use vfnvme_spec::fabrics::{self, connect_offset, connect_status, FabricsCommand, FABRICS_OPCODE};
use vfnvme_spec::{Command, Status};
use vfnvme_tcp::pdu::{self, ICResp, MIN_MAXH2CDATA};
use vfnvme_tcp::{DecodeConfig, EncodeConfig, Role};

use super::connection::{Connection, IoContext, PendingConnect, Phase, QueueAuth, CLOSING_GRACE};
use super::request::Event;
use super::send_queue::{Outgoing, MAX_SENT_HEADER};
use crate::admin_worker::JobOutcome;
use crate::ctrlr::{AdminResponse, Arrival};
use crate::session::AdminOutcome;

/// How long an I/O queue Connect whose QID is still attached waits for the previous connection
/// of that queue to be seen closing (a host that reconnects right after closing the socket; the
/// old connection may live on another poll group that has not read its EOF yet).
const QID_REUSE_WAIT: Duration = Duration::from_secs(1);

impl Connection {
    pub(super) fn on_ic_req(&mut self, request: pdu::ICReq) {
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
                self.outgoing.push_header(bytes, len);
                self.phase = Phase::Established;
                self.setup_deadline =
                    Some(Instant::now() + self.shared.settings().limits.connect_timeout);
            }
            Err(error) => log::error!("{}: cannot encode ICResp: {error}", self.peer),
        }
    }

    /// Admin and fabrics commands: run them against the fabric controller, with their data in
    /// `scratch`; those a drive answers on the admin worker, which may take seconds.
    pub(super) fn finish_admin(&mut self, index: u16, context: &mut IoContext<'_>) {
        let request = &self.requests[usize::from(index)];
        if let Some(status) = request.failed {
            self.respond(index, status, 0);
            return;
        }
        let command = request.command;
        if let Some(parsed) = AuthCommand::parse(&command) {
            self.on_auth_command(index, parsed, context);
            return;
        }
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
            if let Some(controller) = binding.forwarded_to_drive(&command) {
                if context.admin.submit(self.slot, index, controller, command) {
                    // Out like a command on a drive: the slot stays until the result is back,
                    // even if the connection closes.
                    let request = &mut self.requests[usize::from(index)];
                    request.advance(Event::Ready);
                    request.advance(Event::Submitted);
                    return;
                }
                AdminOutcome::Respond(AdminResponse::failure(Status::namespace_not_ready()))
            } else {
                binding.execute_admin(&command)
            }
        } else {
            AdminOutcome::Respond(AdminResponse::failure(Status::command_sequence_error()))
        };
        self.answer_admin(index, outcome);
    }

    /// The admin worker ran request `index`'s command.
    pub fn on_admin_result(&mut self, index: u16, outcome: JobOutcome) {
        if self.phase == Phase::Closed {
            self.requests[usize::from(index)].advance(Event::Dropped);
            self.free_requests.push(index);
            return;
        }
        match outcome {
            JobOutcome::Admin(outcome) => self.answer_admin(index, outcome),
            JobOutcome::Auth(done) => self.on_auth_done(index, done),
        }
    }

    fn answer_admin(&mut self, index: u16, outcome: AdminOutcome) {
        match outcome {
            AdminOutcome::Held => self.requests[usize::from(index)].advance(Event::Held),
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
        if let Some(why) = self.secure_channel_refusal(&data) {
            log::warn!(
                "{}: Connect refused on listener {}: {why}",
                self.peer,
                self.shared.listeners().get(self.listener).address
            );
            let rejection = fabrics::ConnectRejection::invalid_host();
            let refusal = AdminResponse {
                result: rejection.result,
                ..AdminResponse::failure(rejection.status)
            };
            self.answer_admin(index, AdminOutcome::Respond(refusal));
            return;
        }
        let arrival = Arrival {
            listener: self.listener,
            local_address: self
                .socket
                .stream()
                .local_addr()
                .unwrap_or_else(|_| self.shared.listeners().get(self.listener).address),
        };
        let outcome =
            match crate::session::connect(self.shared.registry(), &command, &data, arrival) {
                Ok((binding, mut result)) => {
                    log::info!(
                        "{}: connected queue {} (controller {result})",
                        self.peer,
                        binding.qid()
                    );
                    // A host with a key authenticates every queue before using it: ATR tells
                    // it so (nvmet `nvmet_connect_result`).
                    self.auth =
                        binding
                            .authentication(&self.shared.settings().dhchap)
                            .map(|exchange| QueueAuth {
                                exchange: Some(Box::new(exchange)),
                                authenticated: false,
                                refusal_logged: false,
                            });
                    if self.auth.is_some() {
                        result |= connect_authreq::ATR;
                    }
                    self.sq_head %= binding.sq_entries();
                    self.stats.bound(binding.identity(), binding.nsids());
                    self.binding = Some(binding);
                    self.setup_deadline = None;
                    AdminResponse::success(result)
                }
                Err(refused) => {
                    if qid_in_use(&command, refused.status, refused.result)
                        && Instant::now() < deadline
                    {
                        self.requests[usize::from(index)].advance(Event::Held);
                        self.pending_connect = Some(PendingConnect {
                            index,
                            data,
                            deadline,
                        });
                        return;
                    }
                    log::info!(
                        "{}: Connect refused on listener {}: {}",
                        self.peer,
                        self.shared.listeners().get(self.listener).address,
                        refused.why
                    );
                    AdminResponse {
                        result: refused.result,
                        ..AdminResponse::failure(refused.status)
                    }
                }
            };
        self.answer_admin(index, AdminOutcome::Respond(outcome));
    }

    /// Retries a parked Connect.
    pub(super) fn retry_connect(&mut self) {
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
            .push(Outgoing::Close("the host disconnected the queue"));
        self.closing_deadline = Some(Instant::now() + CLOSING_GRACE);
    }
}

fn is_fabrics(command: &Command, fctype: u8) -> bool {
    command.opcode() == FABRICS_OPCODE && fabrics::fctype_of(command) == fctype
}

pub(super) fn is_connect(command: &Command) -> bool {
    is_fabrics(command, fabrics::fctype::CONNECT)
}

fn is_disconnect(command: &Command) -> bool {
    is_fabrics(command, fabrics::fctype::DISCONNECT)
}

/// Whether an I/O queue Connect was refused for its QID (which may be still attached).
fn qid_in_use(command: &Command, status: Status, result: u32) -> bool {
    let io_queue = matches!(
        FabricsCommand::parse(command),
        Ok(FabricsCommand::Connect(connect)) if connect.qid != 0
    );
    io_queue
        && fabrics::is_connect_status(status, connect_status::INVALID_PARAMETERS)
        && result == u32::from(connect_offset::QID)
}
