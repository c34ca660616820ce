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
//! This file holds the controller's state and the admin command dispatch; each concern the
//! dispatch reaches has its own file, as in Linux nvmet:
//! - `registry.rs`: the controllers of a subsystem, controller IDs, Connect checks, I/O queues.
//! - `properties.rs`: Property Get/Set, CAP/VS/CC/CSTS, enable and shutdown.
//! - `admin.rs`: Identify (one function per CNS), Get/Set Features.
//! - `log_page.rs`: Get Log Page (one function per log page).
//! - `aer.rs`: Asynchronous Event Requests and the Namespace Attribute Changed event.

mod admin;
mod aer;
mod log_page;
mod properties;
mod registry;
#[cfg(test)]
mod test_support;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vfnvme_spec::fabrics::{ConnectRejection, FABRICS_OPCODE};
use vfnvme_spec::regs::{Cc, Csts, Vs};
use vfnvme_spec::{admin_opcode, Command, Status};

use crate::config::TargetConfig;
use crate::subsystem::{NamespaceBacking, Subsystem};

pub use aer::AerCompletion;
pub use registry::{Association, ControllerRegistry, IoQueueAttachment, TargetSubsystems};

/// NVMe version the controllers report (VS and Identify Controller VER): 1.3.0.
pub const NVME_VERSION: Vs = Vs::of(1, 3);
/// Asynchronous Event Requests a controller holds at once (Identify AERL + 1).
pub const AER_LIMIT: usize = 4;
/// Keep Alive Support in 100 ms units: the timer has a granularity of one second.
const KEEP_ALIVE_SUPPORT: u16 = 10;
const KEEP_ALIVE_GRANULARITY_MS: u64 = 100 * KEEP_ALIVE_SUPPORT as u64;

/// Admin commands the target cannot answer by itself, forwarded to a backing drive. The
/// caller implements it over the drives' admin queues (the driver's `Controller::admin`).
pub trait AdminForwarder: Send + Sync {
    /// The SMART / Health Information log page (512 bytes) of drive `device_index`.
    fn smart_log(&self, device_index: usize) -> Result<Vec<u8>, Status>;
    /// Sets (`Some`) or reads (`None`) the volatile write cache of drive `device_index`;
    /// returns whether it is enabled afterwards.
    fn volatile_write_cache(
        &self,
        device_index: usize,
        enable: Option<bool>,
    ) -> Result<bool, Status>;
}

/// Target-wide settings of controllers, from `[target]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Entries of an I/O queue (CAP.MQES + 1).
    pub max_queue_depth: u16,
    /// In-capsule write data accepted, in bytes.
    pub in_capsule_data_size: u32,
    /// I/O queues a controller grants at most.
    pub max_io_queues: u16,
    /// Keep-alive timeout of discovery controllers connected with KATO 0.
    pub discovery_keep_alive: Duration,
}

impl ControllerSettings {
    pub fn from_config(target: &TargetConfig) -> Self {
        Self {
            max_queue_depth: target.max_queue_depth,
            in_capsule_data_size: target.in_capsule_data_size,
            max_io_queues: target.max_io_queues,
            discovery_keep_alive: target.keep_alive_timeout,
        }
    }
}

/// The completion of an admin command: status, CQE DW0 and DW1, and the data to send to the
/// host (Identify: 4096 bytes; Get Log Page: exactly the length asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: Status,
    pub result: u32,
    pub dw1: u32,
    pub data: Vec<u8>,
}

impl AdminResponse {
    pub fn success(result: u32) -> Self {
        Self {
            status: Status::SUCCESS,
            result,
            dw1: 0,
            data: Vec::new(),
        }
    }

    pub fn failure(status: Status) -> Self {
        Self {
            status,
            ..Self::success(0)
        }
    }

    fn with_data(data: Vec<u8>) -> Self {
        Self {
            data,
            ..Self::success(0)
        }
    }
}

impl From<ConnectRejection> for AdminResponse {
    fn from(rejection: ConnectRejection) -> Self {
        Self {
            status: rejection.status,
            result: rejection.result,
            dw1: 0,
            data: Vec::new(),
        }
    }
}

impl From<Result<AdminResponse, Status>> for AdminResponse {
    fn from(result: Result<AdminResponse, Status>) -> Self {
        result.unwrap_or_else(AdminResponse::failure)
    }
}

/// What to do with an admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    /// Send this completion now.
    Respond(AdminResponse),
    /// An Asynchronous Event Request the controller keeps until an event: its completion comes
    /// from [`FabricController::notify_namespace_changed`] or, at teardown,
    /// [`FabricController::take_pending_aers`].
    Held,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Admin state stays consistent across a panic: every update is a single assignment.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn keep_alive_from_ms(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| {
        let rounded = u64::from(ms).div_ceil(KEEP_ALIVE_GRANULARITY_MS) * KEEP_ALIVE_GRANULARITY_MS;
        Duration::from_millis(rounded)
    })
}

struct AdminState {
    cc: Cc,
    csts: Csts,
    keep_alive: Option<Duration>,
    last_keep_alive: Instant,
    io_queues_granted: u16,
    io_queues: BTreeSet<u16>,
    async_event_config: u32,
    arbitration: u32,
    power_management: u32,
    /// Volatile write cache setting of RAM namespaces (they have nothing to forward to).
    ram_write_cache: bool,
    /// Command IDs of held Asynchronous Event Requests, oldest first.
    held_aers: Vec<u16>,
    /// AERs completed by an event noticed on another thread, for the admin queue's
    /// connection to send.
    completed_aers: Vec<AerCompletion>,
    queued_events: VecDeque<u32>,
    changed_namespaces: Vec<u32>,
    /// A Namespace Attribute Changed event was reported and the host has not yet read the
    /// Changed Namespace List: no further event until it does.
    namespace_notices_masked: bool,
}

impl AdminState {
    /// A new controller's state: disabled, the keep-alive timer started at `now`.
    fn new(keep_alive: Option<Duration>, now: Instant, io_queues_granted: u16) -> Self {
        Self {
            cc: Cc::new(),
            csts: Csts::new(),
            keep_alive,
            last_keep_alive: now,
            io_queues_granted,
            io_queues: BTreeSet::new(),
            async_event_config: 0,
            arbitration: 0,
            power_management: 0,
            ram_write_cache: true,
            held_aers: Vec::new(),
            completed_aers: Vec::new(),
            queued_events: VecDeque::new(),
            changed_namespaces: Vec::new(),
            namespace_notices_masked: false,
        }
    }

    fn ready(&self) -> bool {
        self.cc.en() && self.csts.rdy()
    }
}

/// A controller of a subsystem, as one host sees it.
pub struct FabricController {
    registry: Arc<ControllerRegistry>,
    cntlid: u16,
    host_nqn: String,
    host_id: [u8; 16],
    local_address: SocketAddr,
    /// CSTS.RDY, for the I/O path.
    enabled: AtomicBool,
    terminated: AtomicBool,
    state: Mutex<AdminState>,
}

impl FabricController {
    pub fn cntlid(&self) -> u16 {
        self.cntlid
    }

    pub fn host_nqn(&self) -> &str {
        &self.host_nqn
    }

    pub fn host_id(&self) -> [u8; 16] {
        self.host_id
    }

    /// The subsystem, for namespace lookups on the I/O path.
    pub fn subsystem(&self) -> &Arc<Subsystem> {
        &self.registry.subsystem
    }

    pub fn is_discovery(&self) -> bool {
        self.registry.is_discovery()
    }

    /// Largest data transfer of one command, in bytes.
    pub fn max_io_size(&self) -> u32 {
        self.subsystem().max_io_size
    }

    /// Whether the host has enabled the controller (CSTS.RDY). I/O queues check it per
    /// command: after a reset or shutdown they fail commands and should disconnect.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The completion of the Connect that created this controller or attached an I/O queue
    /// to it: DW0 holds the controller ID.
    pub fn connect_response(&self) -> AdminResponse {
        AdminResponse::success(u32::from(self.cntlid))
    }

    /// Ends the association: the admin queue is gone or keep-alive expired. No I/O queue may
    /// connect any more and [`is_enabled`](Self::is_enabled) turns false, so I/O queues stop;
    /// the controller ID is free once the last queue lets the controller go.
    pub fn terminate(&self) {
        self.terminated.store(true, Ordering::Release);
        self.enabled.store(false, Ordering::Release);
    }

    pub fn is_terminated(&self) -> bool {
        self.terminated.load(Ordering::Acquire)
    }

    /// The keep-alive timeout (`None`: keep-alive disabled).
    pub fn keep_alive_timeout(&self) -> Option<Duration> {
        lock(&self.state).keep_alive
    }

    /// Whether the keep-alive timeout has passed at `now` since the last admin command.
    pub fn keep_alive_expired(&self, now: Instant) -> bool {
        let state = lock(&self.state);
        state
            .keep_alive
            .is_some_and(|timeout| now.saturating_duration_since(state.last_keep_alive) >= timeout)
    }

    /// The drives behind the subsystem's passthrough namespaces (RAM namespaces have none):
    /// where forwarded admin commands go.
    fn backing_drives(&self) -> BTreeSet<usize> {
        self.subsystem()
            .namespaces
            .iter()
            .filter_map(|namespace| match namespace.backend {
                NamespaceBacking::Passthrough { device_index, .. } => Some(device_index),
                NamespaceBacking::Ram { .. } => None,
            })
            .collect()
    }

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
            (admin_opcode::GET_LOG_PAGE, _) => self.execute_get_log_page(&mut state, command),
            (admin_opcode::GET_FEATURES, _) => self.execute_get_features(&mut state, command),
            (admin_opcode::SET_FEATURES, _) => self.execute_set_features(&mut state, command),
            // Not aborted (DW0 bit 0): in-flight commands always complete, which the
            // specification allows.
            (admin_opcode::ABORT, false) => Ok(AdminResponse::success(1)),
            _ => Err(Status::invalid_opcode()),
        };
        AdminOutcome::Respond(response.into())
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
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
