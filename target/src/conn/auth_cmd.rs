//! Authentication Send and Receive (Fabrics FCTYPE 05h / 06h) on a connection whose host has
//! a DH-HMAC-CHAP key: each step goes to the queue's `ControllerAuth` on the admin worker (the
//! DH work is too slow for a poll group), and its result comes back to be answered here.
//!
//! As nvmet and SPDK's target: a Send's message travels in the capsule and TL must be its
//! length (Invalid Field otherwise); a Receive's message goes back as C2HData; after an
//! AUTH_Failure1 the queue closes. Until the exchange succeeds every command but the Fabrics
//! ones fails with Authentication Required (`Connection::on_command`). Who is refused and why
//! is logged, never a key.

use std::time::Instant;

use vfnvme_auth::ControllerAuth;
use vfnvme_spec::auth::{AuthCommand, AuthDirection};
use vfnvme_spec::sgl::SglDescriptor;
use vfnvme_spec::Status;

use super::connection::{Connection, IoContext, Phase, CLOSING_GRACE};
use super::request::Event;
use super::send_queue::Outgoing;
use crate::admin_worker::{AuthDone, AuthJob, AuthStep};

impl Connection {
    /// An Authentication Send or Receive (`parsed` as `AuthCommand::parse` returned it) of
    /// request `index`, whose data (a Send's) is in `scratch`.
    pub(super) fn on_auth_command(
        &mut self,
        index: u16,
        parsed: Result<AuthCommand, Status>,
        context: &mut IoContext<'_>,
    ) {
        let command = match parsed {
            Ok(command) => command,
            Err(status) => return self.respond(index, status, 0),
        };
        // A host without a key, or a second step while one runs: nothing to hand it to.
        let Some(exchange) = self.auth.as_mut().and_then(|auth| auth.exchange.take()) else {
            return self.respond(index, Status::command_sequence_error(), 0);
        };
        // TL (Send) or AL (Receive) must be the command's transfer length, as SPDK's target
        // checks: a Receive's message must not overrun the host's buffer.
        let request = &self.requests[usize::from(index)];
        let len = match command.direction {
            AuthDirection::Send => request.len,
            AuthDirection::Receive => SglDescriptor::of(&request.command).length.get() as usize,
        };
        if command.length as usize != len {
            self.auth.as_mut().expect("taken from it").exchange = Some(exchange);
            return self.respond(index, Status::invalid_field(), 0);
        }
        // A Send to an authenticated queue starts a re-authentication: with the host's key of
        // now, which `nvmf_subsystem_set_keys` may have changed (a Negotiate is the only
        // message either exchange takes then).
        let exchange = match command.direction {
            AuthDirection::Send if exchange.is_authenticated() => match self.fresh_exchange() {
                Some(fresh) => fresh,
                None => {
                    // Its keys were taken away: it stays authenticated, as it was.
                    self.auth.as_mut().expect("taken from it").exchange = Some(exchange);
                    return self.respond(index, Status::command_sequence_error(), 0);
                }
            },
            _ => exchange,
        };
        let step = match command.direction {
            AuthDirection::Send => AuthStep::Send(self.scratch[..len].to_vec()),
            AuthDirection::Receive => AuthStep::Receive(command.length),
        };
        if context
            .admin
            .submit_auth(self.slot, index, AuthJob { exchange, step })
        {
            // Out like a command on a drive: the slot stays until the result is back.
            let request = &mut self.requests[usize::from(index)];
            request.advance(Event::Ready);
            request.advance(Event::Submitted);
        } else {
            // The worker is gone (the target stops), and the exchange with it.
            self.respond(index, Status::namespace_not_ready().do_not_retry(), 0);
        }
    }

    /// A new exchange with the host's key of now, if it still has one.
    fn fresh_exchange(&self) -> Option<Box<ControllerAuth>> {
        let binding = self.binding.as_ref()?;
        binding
            .authentication(&self.shared.settings().dhchap)
            .map(Box::new)
    }

    /// The admin worker ran the step of request `index`.
    pub(super) fn on_auth_done(&mut self, index: u16, done: AuthDone) {
        let AuthDone { exchange, received } = done;
        let who = self
            .binding
            .as_ref()
            .map_or_else(String::new, |binding| binding.describe());
        let Some(auth) = self.auth.as_mut() else {
            return;
        };
        if let Some(why) = exchange.failure() {
            auth.authenticated = false;
            if !auth.refusal_logged {
                auth.refusal_logged = true;
                log::warn!(
                    "{}: {who}: DH-HMAC-CHAP authentication refused: {why}",
                    self.peer
                );
            }
        } else if exchange.is_authenticated() && !auth.authenticated {
            auth.authenticated = true;
            log::info!("{}: {who}: authenticated (DH-HMAC-CHAP)", self.peer);
        }
        auth.exchange = Some(exchange);
        match received {
            None => self.respond(index, Status::SUCCESS, 0),
            Some(Err(status)) => self.respond(index, status, 0),
            Some(Ok(received)) => {
                self.send_admin_data(index, received.data);
                self.respond(index, Status::SUCCESS, 0);
                if received.close {
                    self.close_after_sending("DH-HMAC-CHAP authentication failed");
                }
            }
        }
    }

    /// Timer work: an exchange under way whose host has not sent its next step in time
    /// closes the queue (SPDK's target and nvmet do).
    pub(super) fn authentication_expired(&self, now: Instant) -> bool {
        let expired = self
            .auth
            .as_ref()
            .and_then(|auth| auth.exchange.as_ref())
            .is_some_and(|exchange| exchange.expired(now));
        if expired {
            let who = self
                .binding
                .as_ref()
                .map_or_else(String::new, |binding| binding.describe());
            log::warn!(
                "{}: {who}: DH-HMAC-CHAP exchange timed out waiting for the host",
                self.peer
            );
        }
        expired
    }

    /// Sends what is queued, then closes.
    fn close_after_sending(&mut self, why: &'static str) {
        self.phase = Phase::Terminating;
        self.outgoing.push(Outgoing::Close(why));
        self.closing_deadline = Some(Instant::now() + CLOSING_GRACE);
    }
}
