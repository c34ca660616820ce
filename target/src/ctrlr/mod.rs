//! The fabric controller a host sees: created by an admin queue Connect, it answers admin
//! commands, holds the registers hosts read and write with Property Get/Set, keeps the
//! keep-alive timer and the asynchronous events, and books the I/O queues attached to it.
//!
//! Pure logic: no sockets, no threads. The connection code feeds it decoded commands and sends
//! what it returns. A controller is shared between the poll group of its admin queue and those
//! of its I/O queues: admin state sits behind a mutex (admin path only), and what the I/O path
//! reads per command is an atomic ([`FabricController::is_enabled`]) or immutable
//! ([`FabricController::subsystem`], [`FabricController::max_io_size`]).
//!
//! Keep-alive: the timer restarts on Keep Alive and on every other admin command (Property Get
//! polls included). I/O commands do not restart it and Traffic Based Keep Alive is not
//! advertised, so hosts keep sending Keep Alive, as Linux does every KATO/2.
//!
//! This file holds the admin command dispatch; the state it works on and each concern the
//! dispatch reaches have their own files, as in Linux nvmet:
//! - `controller.rs`: `FabricController` and its admin state, the registry's struct, settings.
//! - `response.rs`: what an admin command is answered with (`AdminResponse`, `AdminOutcome`).
//! - `registry.rs`: the controllers of a subsystem, controller IDs, Connect checks, I/O queues.
//! - `properties.rs`: Property Get/Set, CAP/VS/CC/CSTS, enable and shutdown.
//! - `admin.rs`: Identify (one function per CNS), Get/Set Features.
//! - `log_page.rs`: Get Log Page (one function per log page).
//! - `aer.rs`: Asynchronous Event Requests, the Namespace Attribute Changed and Discovery Log
//!   Page Change events.

mod admin;
mod aer;
mod controller;
mod log_page;
mod properties;
mod registry;
mod response;
#[cfg(test)]
mod test_support;

use std::time::Instant;

use vfnvme_spec::fabrics::FABRICS_OPCODE;
use vfnvme_spec::log_page::log_id;
use vfnvme_spec::{admin_opcode, feature, Command, Status};

use self::controller::lock;
pub use self::controller::{
    AdminForwarder, Arrival, Catalog, ControllerRegistry, ControllerSettings, FabricController,
    AER_LIMIT, NVME_VERSION,
};
pub use self::registry::{Association, IoQueueAttachment, SubsystemExists, TargetSubsystems};
pub use self::response::{AdminOutcome, AdminResponse, AerCompletion};

impl FabricController {
    /// Executes an admin queue command (Fabrics Property Get/Set included) received at `now`.
    pub fn execute_admin(&self, command: &Command, now: Instant) -> AdminOutcome {
        let mut state = lock(&self.state);
        state.last_keep_alive = now;
        if command.opcode() == FABRICS_OPCODE {
            return AdminOutcome::Respond(self.execute_fabrics(&mut state, command).into());
        }
        if !state.ready() {
            return AdminOutcome::Respond(AdminResponse::failure(Status::command_sequence_error()));
        }
        let response = match (command.opcode(), self.is_discovery()) {
            (admin_opcode::ASYNC_EVENT_REQUEST, _) => {
                return self.execute_async_event_request(&mut state, command)
            }
            (admin_opcode::KEEP_ALIVE, _) => Ok(AdminResponse::success(0)),
            (admin_opcode::IDENTIFY, _) => self.execute_identify(command),
            (admin_opcode::GET_LOG_PAGE, _) => self.execute_get_log_page(state, command),
            (admin_opcode::GET_FEATURES, _) => self.execute_get_features(state, command),
            (admin_opcode::SET_FEATURES, _) => self.execute_set_features(state, command),
            // Not aborted (DW0 bit 0): in-flight commands always complete, which the
            // specification allows.
            (admin_opcode::ABORT, false) => Ok(AdminResponse::success(1)),
            _ => Err(Status::invalid_opcode()),
        };
        AdminOutcome::Respond(response.into())
    }
}

impl FabricController {
    /// Whether `command` is answered by a backing drive (SMART log, volatile write cache), so
    /// that executing it may take as long as the drive does: the connection has it executed
    /// off its poll group.
    pub fn forwards_to_drive(&self, command: &Command) -> bool {
        if self.is_discovery() {
            return false;
        }
        match command.opcode() {
            admin_opcode::GET_LOG_PAGE => command.cdw10 as u8 == log_id::SMART_HEALTH,
            admin_opcode::GET_FEATURES | admin_opcode::SET_FEATURES => {
                command.cdw10 as u8 == feature::VOLATILE_WRITE_CACHE
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use std::time::Duration;
    use vfnvme_spec::fabrics::FabricsCommand;
    use vfnvme_spec::status::generic;

    const _: () = {
        const fn shared_across_threads<T: Send + Sync>() {}
        shared_across_threads::<FabricController>();
        shared_across_threads::<ControllerRegistry>();
        shared_across_threads::<IoQueueAttachment>();
    };

    #[test]
    fn keep_alive_expires_after_kato_without_admin_commands() {
        let registry = registry();
        let start = Instant::now();
        let controller = registry
            .connect_admin(&admin_connect(4500), &data(0xffff), local(), start)
            .unwrap();
        assert_eq!(
            controller.keep_alive_timeout(),
            Some(Duration::from_secs(5))
        );
        assert!(!controller.keep_alive_expired(start + Duration::from_secs(4)));
        let keep_alive = Command::new(admin_opcode::KEEP_ALIVE, 0);
        controller.execute_admin(&keep_alive, start + Duration::from_secs(4));
        assert!(!controller.keep_alive_expired(start + Duration::from_secs(8)));
        assert!(controller.keep_alive_expired(start + Duration::from_secs(9)));

        let no_timer = registry
            .connect_admin(&admin_connect(0), &data(0xffff), local(), start)
            .unwrap();
        assert_eq!(no_timer.keep_alive_timeout(), None);
        assert!(!no_timer.keep_alive_expired(start + Duration::from_secs(100_000)));
    }

    #[test]
    fn other_admin_commands() {
        let controller = enabled(&registry());
        assert_eq!(
            respond(&controller, Command::new(admin_opcode::ABORT, 0)).result,
            1
        );
        let create_queue = respond(&controller, Command::new(admin_opcode::CREATE_IO_SQ, 0));
        assert_eq!(create_queue.status.sc(), generic::INVALID_OPCODE);
        assert!(create_queue.status.dnr());
        let connect_again = respond(
            &controller,
            FabricsCommand::Connect(admin_connect(0)).to_command(1),
        );
        assert_eq!(connect_again.status.sc(), generic::COMMAND_SEQUENCE_ERROR);
    }
}
