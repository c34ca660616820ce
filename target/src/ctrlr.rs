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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use vfnvme_spec::identify::{
    build_active_namespace_list, build_namespace_id_descriptors, IdentifyController,
    IdentifyNamespace, NamespaceId, IDENTIFY_DATA_SIZE,
};
use vfnvme_spec::log_page::{
    log_id, ChangedNamespaceList, FirmwareSlotLog, SmartLog, ERROR_LOG_ENTRY_SIZE,
};
use vfnvme_spec::regs::{self, cc, csts, Cap};
use vfnvme_spec::status::{command_specific, generic, sct};
use vfnvme_spec::{admin_opcode, cns, feature, Command, Status, PAGE_SIZE};

use crate::config::TargetConfig;
use crate::subsystem::{discovery_log_page, NamespaceBacking, Subsystem};
use vfnvme_spec::fabrics::{
    connect_offset, ConnectCommand, ConnectData, ConnectRejection, FabricsCommand, PropertyGet,
    PropertySet, PropertySize, CNTLID_DYNAMIC, CNTLID_MAX, CNTLID_MIN, FABRICS_OPCODE,
    MAX_ADMIN_QUEUE_ENTRIES,
};

/// NVMe version the controllers report (VS and Identify Controller VER): 1.3.0.
pub const NVME_VERSION: u32 = 0x0001_0300;
/// Asynchronous Event Requests a controller holds at once (Identify AERL + 1).
pub const AER_LIMIT: usize = 4;
/// Keep Alive Support in 100 ms units: the timer has a granularity of one second.
const KEEP_ALIVE_SUPPORT: u16 = 10;
const KEEP_ALIVE_GRANULARITY_MS: u64 = 100 * KEEP_ALIVE_SUPPORT as u64;
/// CAP.TO: enabling is immediate, but hosts wait this long at most (Linux nvmet uses 7.5 s).
const READY_TIMEOUT_MS: u64 = 7500;
/// Largest admin data transfer the target builds (the discovery log page is the long one).
const MAX_ADMIN_DATA: u64 = 4 << 20;
/// Events kept for Asynchronous Event Requests the host has not sent yet.
const MAX_QUEUED_EVENTS: usize = 16;
/// The discovery log never changes while the target runs: the configuration is fixed.
const DISCOVERY_GENERATION: u64 = 1;

/// Asynchronous event (CQE DW0): type Notice (bits 2:0), information Namespace Attribute
/// Changed (bits 15:8, code 0), log page Changed Namespace List (bits 23:16).
const EVENT_NAMESPACE_ATTRIBUTE_CHANGED: u32 =
    0x02 | ((log_id::CHANGED_NAMESPACE_LIST as u32) << 16);
/// Asynchronous Event Configuration bit enabling Namespace Attribute Notices.
const AEC_NAMESPACE_ATTRIBUTE_NOTICES: u32 = 1 << 8;

/// Identify Controller fields.
const CMIC_MULTI_CONTROLLER: u8 = 1 << 1;
const CTRATT_128_BIT_HOST_ID: u32 = 1 << 0;
const CNTRLTYPE_IO: u8 = 1;
const CNTRLTYPE_DISCOVERY: u8 = 2;
const LPA_EXTENDED_DATA: u8 = 1 << 2;
const ONCS_DATASET_MANAGEMENT: u16 = 1 << 2;
const ONCS_WRITE_ZEROES: u16 = 1 << 3;
/// SGLs supported without alignment requirements, with in-capsule data at an offset: what
/// Linux nvmet reports for TCP, and what the Linux host requires (bit 0 or 1).
const SGLS_SUPPORTED: u32 = (1 << 0) | (1 << 20);
const NMIC_SHARED: u8 = 1 << 0;
/// Get Features SEL 3 result bit: the feature is changeable.
const FEATURE_CHANGEABLE: u32 = 1 << 2;

fn invalid_field() -> Status {
    Status::generic(generic::INVALID_FIELD).do_not_retry()
}

fn invalid_opcode() -> Status {
    Status::generic(generic::INVALID_OPCODE).do_not_retry()
}

fn sequence_error() -> Status {
    Status::generic(generic::COMMAND_SEQUENCE_ERROR).do_not_retry()
}

fn invalid_namespace() -> Status {
    Status::generic(generic::INVALID_NAMESPACE_OR_FORMAT).do_not_retry()
}

fn command_specific_failure(sc: u8) -> Status {
    Status::new(sct::COMMAND_SPECIFIC, sc).do_not_retry()
}

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

/// A held Asynchronous Event Request completed by an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AerCompletion {
    pub cid: u16,
    pub response: AdminResponse,
}

enum Role {
    Nvm {
        forwarder: Arc<dyn AdminForwarder>,
    },
    Discovery {
        subsystems: Vec<Arc<Subsystem>>,
        listeners: Vec<SocketAddr>,
    },
}

/// The live controllers of one subsystem, found by controller ID when an I/O queue connects.
pub struct ControllerRegistry {
    subsystem: Arc<Subsystem>,
    role: Role,
    settings: ControllerSettings,
    /// Weak: a controller lives as long as its queues hold it, and its `Drop` frees its ID.
    controllers: Mutex<BTreeMap<u16, Weak<FabricController>>>,
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

impl ControllerRegistry {
    /// The registry of an NVM subsystem; `forwarder` reaches its drives.
    pub fn for_subsystem(
        subsystem: Arc<Subsystem>,
        settings: ControllerSettings,
        forwarder: Arc<dyn AdminForwarder>,
    ) -> Arc<Self> {
        Arc::new(Self {
            subsystem,
            role: Role::Nvm { forwarder },
            settings,
            controllers: Mutex::new(BTreeMap::new()),
        })
    }

    /// The registry of the discovery subsystem, which lists `subsystems` on `listeners`.
    pub fn for_discovery(
        subsystems: Vec<Arc<Subsystem>>,
        listeners: Vec<SocketAddr>,
        settings: ControllerSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            subsystem: Arc::new(Subsystem::discovery()),
            role: Role::Discovery {
                subsystems,
                listeners,
            },
            settings,
            controllers: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn subsystem(&self) -> &Arc<Subsystem> {
        &self.subsystem
    }

    pub fn is_discovery(&self) -> bool {
        matches!(self.role, Role::Discovery { .. })
    }

    /// Controllers still referenced by a queue.
    /// The controllers alive now.
    pub fn live_controllers(&self) -> Vec<Arc<FabricController>> {
        lock(&self.controllers)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub fn controller_count(&self) -> usize {
        lock(&self.controllers)
            .values()
            .filter(|controller| controller.strong_count() > 0)
            .count()
    }

    fn check_common(
        &self,
        connect: &ConnectCommand,
        data: &ConnectData,
    ) -> Result<(), ConnectRejection> {
        if connect.recfmt != 0 {
            return Err(ConnectRejection::incompatible_format());
        }
        if data.subsystem_nqn != self.subsystem.nqn {
            return Err(ConnectRejection::invalid_data_field(connect_offset::SUBNQN));
        }
        if !self.subsystem.allows(&data.host_nqn) {
            return Err(ConnectRejection::invalid_host());
        }
        Ok(())
    }

    /// An admin queue Connect: creates a controller with the lowest free controller ID.
    /// `local_address` is where the host reached the target (reported in discovery entries of
    /// wildcard listeners).
    pub fn connect_admin(
        self: &Arc<Self>,
        connect: &ConnectCommand,
        data: &ConnectData,
        local_address: SocketAddr,
        now: Instant,
    ) -> Result<Arc<FabricController>, ConnectRejection> {
        self.check_common(connect, data)?;
        if connect.qid != 0 {
            return Err(ConnectRejection::invalid_command_field(connect_offset::QID));
        }
        if connect.sqsize == 0 || connect.sqsize >= MAX_ADMIN_QUEUE_ENTRIES {
            return Err(ConnectRejection::invalid_command_field(
                connect_offset::SQSIZE,
            ));
        }
        if data.cntlid != CNTLID_DYNAMIC {
            // Only the dynamic controller model exists here.
            return Err(ConnectRejection::invalid_data_field(connect_offset::CNTLID));
        }
        let keep_alive = match keep_alive_from_ms(connect.kato_ms) {
            None if self.is_discovery() => Some(self.settings.discovery_keep_alive),
            requested => requested,
        };
        let mut controllers = lock(&self.controllers);
        let cntlid = (CNTLID_MIN..=CNTLID_MAX)
            .find(|id| controllers.get(id).is_none_or(|c| c.strong_count() == 0))
            .ok_or_else(ConnectRejection::controller_busy)?;
        let controller = Arc::new(FabricController {
            registry: Arc::clone(self),
            cntlid,
            host_nqn: data.host_nqn.clone(),
            host_id: data.host_id,
            local_address,
            enabled: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            state: Mutex::new(AdminState {
                cc: 0,
                csts: 0,
                keep_alive,
                last_keep_alive: now,
                io_queues_granted: self.settings.max_io_queues,
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
            }),
        });
        controllers.insert(cntlid, Arc::downgrade(&controller));
        log::info!(
            "{}: controller {cntlid} for host {} (KATO {keep_alive:?})",
            self.subsystem.nqn,
            data.host_nqn
        );
        Ok(controller)
    }

    /// An I/O queue Connect: attaches queue `connect.qid` to controller `data.cntlid`, which
    /// the same host (NQN and host ID) created.
    pub fn connect_io(
        &self,
        connect: &ConnectCommand,
        data: &ConnectData,
    ) -> Result<IoQueueAttachment, ConnectRejection> {
        self.check_common(connect, data)?;
        // The registry lock is released before the controller can be dropped: its `Drop`
        // takes the same lock.
        let found = lock(&self.controllers)
            .get(&data.cntlid)
            .and_then(Weak::upgrade);
        let controller = found
            .filter(|controller| !controller.is_terminated())
            .ok_or(ConnectRejection::invalid_data_field(connect_offset::CNTLID))?;
        if controller.host_nqn != data.host_nqn {
            return Err(ConnectRejection::invalid_data_field(
                connect_offset::HOSTNQN,
            ));
        }
        if controller.host_id != data.host_id {
            return Err(ConnectRejection::invalid_data_field(connect_offset::HOSTID));
        }
        controller.attach_io_queue(connect)
    }
}

/// Every subsystem of the target with its controllers, the discovery subsystem included:
/// where Connect commands go.
pub struct TargetSubsystems {
    registries: Vec<Arc<ControllerRegistry>>,
}

/// What a successful Connect created.
pub enum Association {
    /// A new controller, owned by the admin queue that connected.
    Admin(Arc<FabricController>),
    /// An I/O queue of an existing controller; dropping it detaches the queue.
    Io(IoQueueAttachment),
}

impl TargetSubsystems {
    /// Registries for `subsystems` and for the discovery subsystem listing them on `listeners`.
    pub fn new(
        subsystems: Vec<Arc<Subsystem>>,
        listeners: Vec<SocketAddr>,
        settings: ControllerSettings,
        forwarder: Arc<dyn AdminForwarder>,
    ) -> Self {
        let mut registries: Vec<Arc<ControllerRegistry>> = subsystems
            .iter()
            .map(|subsystem| {
                ControllerRegistry::for_subsystem(
                    Arc::clone(subsystem),
                    settings.clone(),
                    Arc::clone(&forwarder),
                )
            })
            .collect();
        registries.push(ControllerRegistry::for_discovery(
            subsystems, listeners, settings,
        ));
        Self { registries }
    }

    pub fn registries(&self) -> &[Arc<ControllerRegistry>] {
        &self.registries
    }

    /// Handles a Connect on a new queue (QID 0: admin queue, else I/O queue).
    pub fn connect(
        &self,
        connect: &ConnectCommand,
        data: &ConnectData,
        local_address: SocketAddr,
        now: Instant,
    ) -> Result<Association, ConnectRejection> {
        let registry = self
            .registries
            .iter()
            .find(|registry| registry.subsystem.nqn == data.subsystem_nqn)
            .ok_or(ConnectRejection::invalid_data_field(connect_offset::SUBNQN))?;
        if connect.qid == 0 {
            registry
                .connect_admin(connect, data, local_address, now)
                .map(Association::Admin)
        } else {
            registry.connect_io(connect, data).map(Association::Io)
        }
    }
}

struct AdminState {
    cc: u32,
    csts: u32,
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
    fn ready(&self) -> bool {
        self.cc & cc::EN != 0 && self.csts & csts::RDY != 0
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

impl Drop for FabricController {
    fn drop(&mut self) {
        let mut controllers = lock(&self.registry.controllers);
        // The ID may already belong to a newer controller; only a dead entry is this one.
        if controllers
            .get(&self.cntlid)
            .is_some_and(|controller| controller.strong_count() == 0)
        {
            controllers.remove(&self.cntlid);
        }
    }
}

/// An I/O queue attached to a controller; dropping it detaches the queue at once, so that a
/// reconnect of the same QID right after never sees a duplicate.
pub struct IoQueueAttachment {
    controller: Arc<FabricController>,
    qid: u16,
    entries: u32,
}

impl IoQueueAttachment {
    pub fn controller(&self) -> &Arc<FabricController> {
        &self.controller
    }

    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Entries of the queue (Connect SQSIZE + 1).
    pub fn entries(&self) -> u32 {
        self.entries
    }
}

impl Drop for IoQueueAttachment {
    fn drop(&mut self) {
        lock(&self.controller.state).io_queues.remove(&self.qid);
    }
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

    /// Attaches I/O queue `connect.qid`: it must be within the granted number of queues, not
    /// attached yet, of a size within CAP.MQES, on an enabled controller.
    pub fn attach_io_queue(
        self: &Arc<Self>,
        connect: &ConnectCommand,
    ) -> Result<IoQueueAttachment, ConnectRejection> {
        let invalid_qid = ConnectRejection::invalid_command_field(connect_offset::QID);
        let mut state = lock(&self.state);
        if self.is_discovery() || self.is_terminated() || !state.ready() {
            return Err(invalid_qid);
        }
        if connect.qid == 0 || connect.qid > state.io_queues_granted {
            return Err(invalid_qid);
        }
        if connect.sqsize == 0 || connect.sqsize >= self.registry.settings.max_queue_depth {
            return Err(ConnectRejection::invalid_command_field(
                connect_offset::SQSIZE,
            ));
        }
        if !state.io_queues.insert(connect.qid) {
            return Err(invalid_qid);
        }
        Ok(IoQueueAttachment {
            controller: Arc::clone(self),
            qid: connect.qid,
            entries: connect.queue_entries(),
        })
    }

    /// Command IDs of the held Asynchronous Event Requests, which the caller completes (or
    /// drops with the connection) at teardown or after the host disabled the controller.
    pub fn take_pending_aers(&self) -> Vec<u16> {
        std::mem::take(&mut lock(&self.state).held_aers)
    }

    /// Namespace `nsid` changed (its drive went away): notes it, and completes a held AER for
    /// the admin queue's connection to send (see [`take_completed_aers`](Self::take_completed_aers)).
    pub fn post_namespace_changed(&self, nsid: u32) {
        if let Some(completion) = self.notify_namespace_changed(nsid) {
            lock(&self.state).completed_aers.push(completion);
        }
    }

    /// AERs completed by [`post_namespace_changed`](Self::post_namespace_changed), to send now.
    pub fn take_completed_aers(&self) -> Vec<AerCompletion> {
        let mut state = lock(&self.state);
        if state.completed_aers.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut state.completed_aers)
    }

    /// Records that namespace `nsid` changed. If the host enabled Namespace Attribute Notices
    /// and has read the previous change, returns the held AER to complete with the event
    /// (or keeps the event for the next AER).
    pub fn notify_namespace_changed(&self, nsid: u32) -> Option<AerCompletion> {
        let mut state = lock(&self.state);
        if !state.changed_namespaces.contains(&nsid) && state.changed_namespaces.len() <= 1024 {
            state.changed_namespaces.push(nsid);
        }
        if state.async_event_config & AEC_NAMESPACE_ATTRIBUTE_NOTICES == 0
            || state.namespace_notices_masked
        {
            return None;
        }
        state.namespace_notices_masked = true;
        if state.held_aers.is_empty() {
            if state.queued_events.len() < MAX_QUEUED_EVENTS {
                state
                    .queued_events
                    .push_back(EVENT_NAMESPACE_ATTRIBUTE_CHANGED);
            }
            return None;
        }
        let cid = state.held_aers.remove(0);
        Some(AerCompletion {
            cid,
            response: AdminResponse::success(EVENT_NAMESPACE_ATTRIBUTE_CHANGED),
        })
    }

    /// Executes an admin queue command (Fabrics Property Get/Set included) received at `now`.
    pub fn execute_admin(&self, command: &Command, now: Instant) -> AdminOutcome {
        let mut state = lock(&self.state);
        state.last_keep_alive = now;
        if command.opcode() == FABRICS_OPCODE {
            return AdminOutcome::Respond(self.fabrics(&mut state, command).into());
        }
        if !state.ready() {
            return AdminOutcome::Respond(AdminResponse::failure(sequence_error()));
        }
        let response = match (command.opcode(), self.is_discovery()) {
            (admin_opcode::ASYNC_EVENT_REQUEST, _) => {
                return self.async_event_request(&mut state, command)
            }
            (admin_opcode::KEEP_ALIVE, _) => Ok(AdminResponse::success(0)),
            (admin_opcode::IDENTIFY, _) => self.identify(command),
            (admin_opcode::GET_LOG_PAGE, _) => self.get_log_page(&mut state, command),
            (admin_opcode::GET_FEATURES, _) => self.get_features(&mut state, command),
            (admin_opcode::SET_FEATURES, _) => self.set_features(&mut state, command),
            // Not aborted (DW0 bit 0): in-flight commands always complete, which the
            // specification allows.
            (admin_opcode::ABORT, false) => Ok(AdminResponse::success(1)),
            _ => Err(invalid_opcode()),
        };
        AdminOutcome::Respond(response.into())
    }

    fn fabrics(&self, state: &mut AdminState, command: &Command) -> Result<AdminResponse, Status> {
        match FabricsCommand::parse(command)? {
            FabricsCommand::PropertyGet(get) => self.property_get(state, get),
            FabricsCommand::PropertySet(set) => self.property_set(state, set),
            // The admin queue is connected already; Disconnect applies to I/O queues.
            FabricsCommand::Connect(_) => Err(sequence_error()),
            FabricsCommand::Disconnect => Err(invalid_field()),
        }
    }

    fn capabilities(&self) -> u64 {
        Cap::build(
            u32::from(self.registry.settings.max_queue_depth),
            READY_TIMEOUT_MS,
            0,
        )
        .0
    }

    fn property_get(&self, state: &AdminState, get: PropertyGet) -> Result<AdminResponse, Status> {
        let offset = usize::try_from(get.offset).map_err(|_| invalid_field())?;
        let value = match (offset, get.size) {
            (regs::CAP, PropertySize::Eight) => self.capabilities(),
            (regs::CAP, PropertySize::Four) => self.capabilities() & 0xffff_ffff,
            (o, PropertySize::Four) if o == regs::CAP + 4 => self.capabilities() >> 32,
            (regs::VS, PropertySize::Four) => u64::from(NVME_VERSION),
            (regs::CC, PropertySize::Four) => u64::from(state.cc),
            (regs::CSTS, PropertySize::Four) => u64::from(state.csts),
            _ => return Err(invalid_field()),
        };
        Ok(AdminResponse {
            dw1: (value >> 32) as u32,
            ..AdminResponse::success(value as u32)
        })
    }

    fn property_set(
        &self,
        state: &mut AdminState,
        set: PropertySet,
    ) -> Result<AdminResponse, Status> {
        if set.offset != regs::CC as u32 || set.size != PropertySize::Four {
            return Err(invalid_field());
        }
        self.write_cc(state, set.value as u32);
        Ok(AdminResponse::success(0))
    }

    /// CC write side effects, as Linux nvmet `nvmet_update_cc`: enabling sets CSTS.RDY (or
    /// CSTS.CFS for an unusable configuration), disabling resets, a shutdown notification
    /// completes at once.
    fn write_cc(&self, state: &mut AdminState, new: u32) {
        let old = std::mem::replace(&mut state.cc, new);
        let enabled = |value: u32| value & cc::EN != 0;
        let shutdown = |value: u32| value & cc::SHN_MASK != 0;
        if enabled(new) && !enabled(old) {
            if cc_is_supported(new) {
                state.csts |= csts::RDY;
                self.enabled.store(!self.is_terminated(), Ordering::Release);
            } else {
                state.csts |= csts::CFS;
            }
        }
        if !enabled(new) && enabled(old) {
            state.csts &= !(csts::RDY | csts::CFS);
            self.enabled.store(false, Ordering::Release);
        }
        if shutdown(new) && !shutdown(old) {
            state.csts = (state.csts & !(csts::RDY | csts::SHST_MASK)) | csts::SHST_COMPLETE;
            self.enabled.store(false, Ordering::Release);
        }
        if !shutdown(new) && shutdown(old) {
            state.csts &= !csts::SHST_MASK;
        }
    }

    fn async_event_request(&self, state: &mut AdminState, command: &Command) -> AdminOutcome {
        if let Some(event) = state.queued_events.pop_front() {
            return AdminOutcome::Respond(AdminResponse::success(event));
        }
        if state.held_aers.len() >= AER_LIMIT {
            return AdminOutcome::Respond(AdminResponse::failure(command_specific_failure(
                command_specific::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED,
            )));
        }
        state.held_aers.push(command.cid());
        AdminOutcome::Held
    }

    fn identify(&self, command: &Command) -> Result<AdminResponse, Status> {
        let cns = command.cdw10 as u8;
        let subsystem = self.subsystem();
        let data = match (cns, self.is_discovery()) {
            (cns::CONTROLLER, _) => self.identify_controller().to_bytes(),
            (cns::NAMESPACE, false) => {
                if command.nsid == 0 || command.nsid > subsystem.max_nsid() {
                    return Err(invalid_namespace());
                }
                // An inactive NSID within NN gets a zero filled structure.
                match subsystem.namespace(command.nsid) {
                    Some(namespace) => {
                        let mut identify = IdentifyNamespace {
                            nsze: namespace.blocks,
                            ncap: namespace.blocks,
                            nuse: namespace.blocks,
                            nmic: NMIC_SHARED,
                            nguid: namespace.nguid,
                            ..IdentifyNamespace::default()
                        };
                        identify.lbaf[0].lbads = namespace.block_size.trailing_zeros() as u8;
                        identify.to_bytes()
                    }
                    None => vec![0; IDENTIFY_DATA_SIZE],
                }
            }
            (cns::ACTIVE_NAMESPACE_LIST, false) => {
                if command.nsid >= 0xffff_fffe {
                    return Err(invalid_namespace());
                }
                let nsids: Vec<u32> = subsystem.namespaces.iter().map(|n| n.nsid).collect();
                build_active_namespace_list(&nsids, command.nsid)
            }
            (cns::NAMESPACE_ID_DESCRIPTORS, false) => {
                let namespace = subsystem
                    .namespace(command.nsid)
                    .ok_or_else(invalid_namespace)?;
                build_namespace_id_descriptors(&[
                    NamespaceId::Nguid(namespace.nguid),
                    NamespaceId::Csi(0),
                ])
            }
            _ => return Err(invalid_field()),
        };
        Ok(AdminResponse::with_data(data))
    }

    fn identify_controller(&self) -> IdentifyController {
        let subsystem = self.subsystem();
        let settings = &self.registry.settings;
        let common = IdentifyController {
            serial: subsystem.serial.clone(),
            model: subsystem.model.clone(),
            firmware: subsystem.firmware.clone(),
            cntlid: self.cntlid,
            ver: NVME_VERSION,
            ctratt: CTRATT_128_BIT_HOST_ID,
            aerl: (AER_LIMIT - 1) as u8,
            lpa: LPA_EXTENDED_DATA,
            kas: KEEP_ALIVE_SUPPORT,
            sqes: 0x66,
            cqes: 0x44,
            maxcmd: settings.max_queue_depth,
            sgls: SGLS_SUPPORTED,
            subnqn: subsystem.nqn.clone(),
            ioccsz: (64 + settings.in_capsule_data_size) / 16,
            iorcsz: 1,
            msdbd: 1,
            ..IdentifyController::default()
        };
        if self.is_discovery() {
            return IdentifyController {
                cntrltype: CNTRLTYPE_DISCOVERY,
                ..common
            };
        }
        let pages = subsystem.max_io_size / PAGE_SIZE as u32;
        IdentifyController {
            rab: 6,
            cmic: CMIC_MULTI_CONTROLLER,
            mdts: pages.trailing_zeros() as u8,
            oaes: AEC_NAMESPACE_ATTRIBUTE_NOTICES,
            cntrltype: CNTRLTYPE_IO,
            acl: 3,
            // One read-only firmware slot.
            frmw: (1 << 1) | 1,
            nn: subsystem.max_nsid(),
            oncs: ONCS_DATASET_MANAGEMENT | ONCS_WRITE_ZEROES,
            vwc: u8::from(subsystem.volatile_write_cache),
            ..common
        }
    }

    fn get_log_page(
        &self,
        state: &mut AdminState,
        command: &Command,
    ) -> Result<AdminResponse, Status> {
        let lid = command.cdw10 as u8;
        let retain_event = command.cdw10 & (1 << 15) != 0;
        let dwords = (u64::from(command.cdw11 & 0xffff) << 16 | u64::from(command.cdw10 >> 16)) + 1;
        let len = dwords * 4;
        let offset = u64::from(command.cdw12) | (u64::from(command.cdw13) << 32);
        if offset % 4 != 0 || len > MAX_ADMIN_DATA {
            return Err(invalid_field());
        }
        let log = match (&self.registry.role, lid) {
            (
                Role::Discovery {
                    subsystems,
                    listeners,
                },
                log_id::DISCOVERY,
            ) => discovery_log_page(
                subsystems,
                listeners,
                self.local_address.ip(),
                &self.host_nqn,
                DISCOVERY_GENERATION,
            ),
            (Role::Nvm { .. }, log_id::ERROR) => vec![0; ERROR_LOG_ENTRY_SIZE],
            (Role::Nvm { forwarder }, log_id::SMART_HEALTH) => {
                self.smart_log(forwarder.as_ref())?
            }
            (Role::Nvm { .. }, log_id::FIRMWARE_SLOT) => {
                let mut slots = FirmwareSlotLog {
                    afi: 1,
                    ..FirmwareSlotLog::default()
                };
                slots.frs[0] = self.subsystem().firmware.clone();
                slots.to_bytes()
            }
            (Role::Nvm { .. }, log_id::CHANGED_NAMESPACE_LIST) => {
                let changed = std::mem::take(&mut state.changed_namespaces);
                if !retain_event {
                    state.namespace_notices_masked = false;
                }
                ChangedNamespaceList::from_nsids(&changed).to_bytes()
            }
            _ => {
                return Err(command_specific_failure(command_specific::INVALID_LOG_PAGE));
            }
        };
        let start = usize::try_from(offset).map_err(|_| invalid_field())?;
        if start > log.len() {
            return Err(invalid_field());
        }
        let mut data: Vec<u8> = log[start..].iter().copied().take(len as usize).collect();
        data.resize(len as usize, 0);
        Ok(AdminResponse::with_data(data))
    }

    /// The subsystem's SMART log: the drive's when one backs it, counters summed and the worst
    /// condition reported when several do, zeros for memory (nothing is measured there).
    fn smart_log(&self, forwarder: &dyn AdminForwarder) -> Result<Vec<u8>, Status> {
        let drives: BTreeSet<usize> = self
            .subsystem()
            .namespaces
            .iter()
            .filter_map(|namespace| match namespace.backend {
                NamespaceBacking::Passthrough { device_index, .. } => Some(device_index),
                NamespaceBacking::Ram { .. } => None,
            })
            .collect();
        let mut merged: Option<SmartLog> = None;
        for device_index in drives {
            let page = forwarder.smart_log(device_index)?;
            let log = SmartLog::from_bytes(&page)
                .map_err(|_| Status::generic(generic::INTERNAL_ERROR))?;
            merged = Some(match merged {
                None => log,
                Some(sum) => merge_smart(sum, log),
            });
        }
        Ok(merged.unwrap_or_default().to_bytes())
    }

    fn get_features(
        &self,
        state: &mut AdminState,
        command: &Command,
    ) -> Result<AdminResponse, Status> {
        let fid = command.cdw10 as u8;
        let select = (command.cdw10 >> 8) & 0x7;
        let supported = if self.is_discovery() {
            matches!(fid, feature::KEEP_ALIVE_TIMER | feature::ASYNC_EVENT_CONFIG)
        } else {
            matches!(
                fid,
                feature::ARBITRATION
                    | feature::POWER_MANAGEMENT
                    | feature::VOLATILE_WRITE_CACHE
                    | feature::NUMBER_OF_QUEUES
                    | feature::ASYNC_EVENT_CONFIG
                    | feature::KEEP_ALIVE_TIMER
            )
        };
        if !supported {
            return Err(invalid_field());
        }
        const SELECT_SUPPORTED_CAPABILITIES: u32 = 3;
        if select == SELECT_SUPPORTED_CAPABILITIES {
            return Ok(AdminResponse::success(FEATURE_CHANGEABLE));
        }
        let value = match fid {
            feature::ARBITRATION => state.arbitration,
            feature::POWER_MANAGEMENT => state.power_management,
            feature::VOLATILE_WRITE_CACHE => u32::from(self.volatile_write_cache(state, None)?),
            feature::NUMBER_OF_QUEUES => {
                let granted = u32::from(state.io_queues_granted - 1);
                granted << 16 | granted
            }
            feature::ASYNC_EVENT_CONFIG => state.async_event_config,
            _ => state.keep_alive.map_or(0, |timeout| {
                u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)
            }),
        };
        Ok(AdminResponse::success(value))
    }

    fn set_features(
        &self,
        state: &mut AdminState,
        command: &Command,
    ) -> Result<AdminResponse, Status> {
        let fid = command.cdw10 as u8;
        if command.cdw10 & (1 << 31) != 0 {
            return Err(command_specific_failure(
                command_specific::FEATURE_NOT_SAVEABLE,
            ));
        }
        let value = command.cdw11;
        match (fid, self.is_discovery()) {
            (feature::KEEP_ALIVE_TIMER, discovery) => {
                state.keep_alive = match keep_alive_from_ms(value) {
                    None if discovery => Some(self.registry.settings.discovery_keep_alive),
                    requested => requested,
                };
            }
            (feature::ASYNC_EVENT_CONFIG, _) => state.async_event_config = value,
            (feature::ARBITRATION, false) => state.arbitration = value,
            (feature::POWER_MANAGEMENT, false) => state.power_management = value,
            (feature::VOLATILE_WRITE_CACHE, false) => {
                self.volatile_write_cache(state, Some(value & 1 != 0))?;
            }
            (feature::NUMBER_OF_QUEUES, false) => {
                let submission = value & 0xffff;
                let completion = value >> 16;
                if submission == 0xffff || completion == 0xffff {
                    return Err(invalid_field());
                }
                if !state.io_queues.is_empty() {
                    return Err(sequence_error());
                }
                let wanted = submission.min(completion) + 1;
                let granted = wanted.min(u32::from(self.registry.settings.max_io_queues));
                state.io_queues_granted = granted as u16;
                return Ok(AdminResponse::success((granted - 1) << 16 | (granted - 1)));
            }
            _ => return Err(invalid_field()),
        }
        Ok(AdminResponse::success(0))
    }

    /// Reads or sets the volatile write cache: forwarded to every backing drive, kept here
    /// for memory. Reports the first drive's state (or the memory setting).
    fn volatile_write_cache(
        &self,
        state: &mut AdminState,
        enable: Option<bool>,
    ) -> Result<bool, Status> {
        let subsystem = self.subsystem();
        let Role::Nvm { forwarder } = &self.registry.role else {
            return Err(invalid_field());
        };
        if !subsystem.volatile_write_cache {
            return Err(invalid_field());
        }
        let drives: BTreeSet<usize> = subsystem
            .namespaces
            .iter()
            .filter_map(|namespace| match namespace.backend {
                NamespaceBacking::Passthrough { device_index, .. } => Some(device_index),
                NamespaceBacking::Ram { .. } => None,
            })
            .collect();
        let mut first = None;
        for device_index in drives {
            let state = forwarder.volatile_write_cache(device_index, enable)?;
            first.get_or_insert(state);
        }
        if let Some(enable) = enable {
            state.ram_write_cache = enable;
        }
        Ok(first.unwrap_or(state.ram_write_cache))
    }
}

/// CC values the controller can run with: NVM command set, 4 KiB pages, round robin,
/// 64-byte submission and 16-byte completion entries.
fn cc_is_supported(value: u32) -> bool {
    let field = |shift: u32, mask: u32| (value >> shift) & mask;
    field(cc::CSS_SHIFT, 0x7) == 0
        && field(cc::MPS_SHIFT, 0xf) == 0
        && field(11, 0x7) == 0
        && field(cc::IOSQES_SHIFT, 0xf) == 6
        && field(cc::IOCQES_SHIFT, 0xf) == 4
}

fn merge_smart(a: SmartLog, b: SmartLog) -> SmartLog {
    SmartLog {
        critical_warning: a.critical_warning | b.critical_warning,
        temperature_kelvin: a.temperature_kelvin.max(b.temperature_kelvin),
        avail_spare: a.avail_spare.min(b.avail_spare),
        spare_thresh: a.spare_thresh.max(b.spare_thresh),
        percent_used: a.percent_used.max(b.percent_used),
        data_units_read: a.data_units_read.saturating_add(b.data_units_read),
        data_units_written: a.data_units_written.saturating_add(b.data_units_written),
        host_reads: a.host_reads.saturating_add(b.host_reads),
        host_writes: a.host_writes.saturating_add(b.host_writes),
        ctrl_busy_time: a.ctrl_busy_time.saturating_add(b.ctrl_busy_time),
        power_cycles: a.power_cycles.max(b.power_cycles),
        power_on_hours: a.power_on_hours.max(b.power_on_hours),
        unsafe_shutdowns: a.unsafe_shutdowns.max(b.unsafe_shutdowns),
        media_errors: a.media_errors.saturating_add(b.media_errors),
        num_err_log_entries: a.num_err_log_entries.saturating_add(b.num_err_log_entries),
        ..a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subsystem::NamespaceInfo;
    use std::sync::atomic::AtomicUsize;
    use vfnvme_spec::fabrics::connect_status;
    use vfnvme_spec::fabrics::DISCOVERY_NQN;

    const SUBSYSTEM_NQN: &str = "nqn.2026-11.io.vfnvme:test";
    const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:host-a";
    const HOST_ID: [u8; 16] = *b"host-a-id-16byte";
    const ENABLE: u32 = cc::EN | (6 << cc::IOSQES_SHIFT) | (4 << cc::IOCQES_SHIFT);

    const _: () = {
        const fn shared_across_threads<T: Send + Sync>() {}
        shared_across_threads::<FabricController>();
        shared_across_threads::<ControllerRegistry>();
        shared_across_threads::<IoQueueAttachment>();
    };

    #[derive(Default)]
    struct FakeDrives {
        smart_calls: AtomicUsize,
        cache_enabled: AtomicBool,
    }

    impl AdminForwarder for FakeDrives {
        fn smart_log(&self, device_index: usize) -> Result<Vec<u8>, Status> {
            self.smart_calls.fetch_add(1, Ordering::Relaxed);
            Ok(SmartLog {
                temperature_kelvin: 300 + device_index as u16,
                avail_spare: 90,
                host_reads: 10,
                ..SmartLog::default()
            }
            .to_bytes())
        }

        fn volatile_write_cache(&self, _: usize, enable: Option<bool>) -> Result<bool, Status> {
            if let Some(enable) = enable {
                self.cache_enabled.store(enable, Ordering::Relaxed);
            }
            Ok(self.cache_enabled.load(Ordering::Relaxed))
        }
    }

    fn subsystem() -> Subsystem {
        Subsystem {
            nqn: SUBSYSTEM_NQN.into(),
            serial: "SN-0042".into(),
            model: "QEMU NVMe Ctrl".into(),
            firmware: "8.2.0".into(),
            allow_any_host: false,
            hosts: vec![HOST_NQN.into()],
            namespaces: vec![
                NamespaceInfo {
                    nsid: 1,
                    block_size: 4096,
                    blocks: 1000,
                    nguid: [0x11; 16],
                    backend: NamespaceBacking::Passthrough {
                        device_index: 0,
                        device_nsid: 1,
                    },
                },
                NamespaceInfo {
                    nsid: 3,
                    block_size: 512,
                    blocks: 2048,
                    nguid: [0x33; 16],
                    backend: NamespaceBacking::Ram { bytes: 2048 * 512 },
                },
            ],
            max_io_size: 128 * 1024,
            volatile_write_cache: true,
        }
    }

    fn settings() -> ControllerSettings {
        ControllerSettings::from_config(&TargetConfig::default())
    }

    fn registry_with(drives: Arc<FakeDrives>) -> Arc<ControllerRegistry> {
        ControllerRegistry::for_subsystem(Arc::new(subsystem()), settings(), drives)
    }

    fn registry() -> Arc<ControllerRegistry> {
        registry_with(Arc::default())
    }

    fn local() -> SocketAddr {
        "192.0.2.1:4420".parse().unwrap()
    }

    fn admin_connect(kato_ms: u32) -> ConnectCommand {
        ConnectCommand {
            recfmt: 0,
            qid: 0,
            sqsize: 31,
            cattr: 0,
            kato_ms,
        }
    }

    fn io_connect(qid: u16) -> ConnectCommand {
        ConnectCommand {
            qid,
            sqsize: 127,
            kato_ms: 0,
            ..admin_connect(0)
        }
    }

    fn data(cntlid: u16) -> ConnectData {
        ConnectData {
            host_id: HOST_ID,
            cntlid,
            subsystem_nqn: SUBSYSTEM_NQN.into(),
            host_nqn: HOST_NQN.into(),
        }
    }

    fn connect(registry: &Arc<ControllerRegistry>) -> Arc<FabricController> {
        registry
            .connect_admin(
                &admin_connect(0),
                &data(CNTLID_DYNAMIC),
                local(),
                Instant::now(),
            )
            .unwrap()
    }

    fn respond(controller: &FabricController, command: Command) -> AdminResponse {
        match controller.execute_admin(&command, Instant::now()) {
            AdminOutcome::Respond(response) => response,
            AdminOutcome::Held => panic!("command held"),
        }
    }

    fn property_set(controller: &FabricController, offset: usize, value: u32) -> AdminResponse {
        let set = FabricsCommand::PropertySet(PropertySet {
            size: PropertySize::Four,
            offset: offset as u32,
            value: u64::from(value),
        });
        respond(controller, set.to_command(1))
    }

    fn property_get(
        controller: &FabricController,
        offset: usize,
        size: PropertySize,
    ) -> AdminResponse {
        let get = FabricsCommand::PropertyGet(PropertyGet {
            size,
            offset: offset as u32,
        });
        respond(controller, get.to_command(1))
    }

    fn enabled(registry: &Arc<ControllerRegistry>) -> Arc<FabricController> {
        let controller = connect(registry);
        assert!(property_set(&controller, regs::CC, ENABLE)
            .status
            .is_success());
        controller
    }

    fn identify(controller: &FabricController, cns: u8, nsid: u32) -> AdminResponse {
        let command = Command {
            cdw10: u32::from(cns),
            ..Command::new(admin_opcode::IDENTIFY, nsid)
        };
        respond(controller, command)
    }

    fn get_log(controller: &FabricController, lid: u8, len: u32, offset: u64) -> AdminResponse {
        let numd = len / 4 - 1;
        let command = Command {
            cdw10: u32::from(lid) | (numd & 0xffff) << 16,
            cdw11: numd >> 16,
            cdw12: offset as u32,
            cdw13: (offset >> 32) as u32,
            ..Command::new(admin_opcode::GET_LOG_PAGE, 0xffff_ffff)
        };
        respond(controller, command)
    }

    fn features(opcode: u8, fid: u8, cdw11: u32) -> Command {
        Command {
            cdw10: u32::from(fid),
            cdw11,
            ..Command::new(opcode, 0)
        }
    }

    fn assert_rejection(result: Result<impl Sized, ConnectRejection>, sc: u8, dw0: u32) {
        let Err(rejection) = result.map(|_| ()) else {
            panic!("connect accepted");
        };
        assert_eq!(rejection.status.sct(), sct::COMMAND_SPECIFIC);
        assert_eq!(rejection.status.sc(), sc);
        assert!(rejection.status.dnr());
        assert_eq!(rejection.result, dw0);
    }

    #[test]
    fn enabling_through_cc_sets_csts_ready() {
        let registry = registry();
        let controller = connect(&registry);
        assert_eq!(controller.connect_response(), AdminResponse::success(1));
        assert!(!controller.is_enabled());
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            0
        );
        let early = identify(&controller, cns::CONTROLLER, 0);
        assert_eq!(early.status.sc(), generic::COMMAND_SEQUENCE_ERROR);

        let cap = property_get(&controller, regs::CAP, PropertySize::Eight);
        let cap = Cap(u64::from(cap.result) | u64::from(cap.dw1) << 32);
        assert_eq!(cap.max_queue_entries(), 128);
        assert!(cap.contiguous_queues_required());
        assert!(cap.nvm_command_set());
        assert_eq!(cap.timeout_ms(), 7500);
        let high = property_get(&controller, regs::CAP + 4, PropertySize::Four);
        assert_eq!(u64::from(high.result), cap.0 >> 32);
        assert_eq!(
            property_get(&controller, regs::VS, PropertySize::Four).result,
            0x0001_0300
        );

        assert!(property_set(&controller, regs::CC, ENABLE)
            .status
            .is_success());
        assert_eq!(
            property_get(&controller, regs::CC, PropertySize::Four).result,
            ENABLE
        );
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            csts::RDY
        );
        assert!(controller.is_enabled());
        assert!(identify(&controller, cns::CONTROLLER, 0)
            .status
            .is_success());

        let shutdown = ENABLE | cc::SHN_NORMAL;
        assert!(property_set(&controller, regs::CC, shutdown)
            .status
            .is_success());
        let status = property_get(&controller, regs::CSTS, PropertySize::Four).result;
        assert_eq!(status & csts::SHST_MASK, csts::SHST_COMPLETE);
        assert_eq!(status & csts::RDY, 0);
        assert!(!controller.is_enabled());

        for bad in [
            property_get(&controller, 0x20, PropertySize::Four),
            property_get(&controller, regs::CC, PropertySize::Eight),
            property_set(&controller, regs::CSTS, 1),
        ] {
            assert_eq!(bad.status.sc(), generic::INVALID_FIELD);
        }
    }

    #[test]
    fn unusable_cc_reports_fatal_status() {
        let controller = connect(&registry());
        property_set(&controller, regs::CC, cc::EN);
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            csts::CFS
        );
        assert!(!controller.is_enabled());
        property_set(&controller, regs::CC, 0);
        property_set(&controller, regs::CC, ENABLE);
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            csts::RDY
        );
    }

    #[test]
    fn identify_controller_describes_the_subsystem() {
        let registry = registry();
        let _first = connect(&registry);
        let controller = enabled(&registry);
        let response = identify(&controller, cns::CONTROLLER, 0);
        assert_eq!(response.data.len(), IDENTIFY_DATA_SIZE);
        let id = IdentifyController::from_bytes(&response.data).unwrap();
        assert_eq!(id.serial, "SN-0042");
        assert_eq!(id.model, "QEMU NVMe Ctrl");
        assert_eq!(id.firmware, "8.2.0");
        assert_eq!(id.subnqn, SUBSYSTEM_NQN);
        assert_eq!(id.cntlid, 2);
        assert_eq!(id.ver, 0x0001_0300);
        assert_eq!(id.mdts, 5, "128 KiB is 2^5 pages of 4 KiB");
        assert_eq!(id.ioccsz, (64 + 8192) / 16);
        assert_eq!(id.iorcsz, 1);
        assert_eq!(id.icdoff, 0);
        assert_eq!(id.msdbd, 1);
        assert_eq!(id.sgls & 1, 1, "the Linux host requires SGL support");
        assert_eq!((id.sqes, id.cqes), (0x66, 0x44));
        assert_eq!(id.nn, 3);
        assert_eq!(id.oncs, 0b1100);
        assert_eq!(id.vwc, 1);
        assert_eq!(id.kas, 10);
        assert_eq!(id.aerl, 3);
        assert_eq!(id.maxcmd, 128);
        assert_eq!(id.cntrltype, 1);
        assert_eq!(id.oaes, 1 << 8);
        assert_eq!(id.ctratt & 1, 1);
    }

    #[test]
    fn identify_namespace_lists_and_descriptors() {
        let controller = enabled(&registry());
        let ns =
            IdentifyNamespace::from_bytes(&identify(&controller, cns::NAMESPACE, 1).data).unwrap();
        assert_eq!((ns.nsze, ns.ncap, ns.nuse), (1000, 1000, 1000));
        assert_eq!(ns.block_size(), 4096);
        assert_eq!(ns.nguid, [0x11; 16]);
        assert_eq!(ns.nmic, 1);
        let ram =
            IdentifyNamespace::from_bytes(&identify(&controller, cns::NAMESPACE, 3).data).unwrap();
        assert_eq!((ram.nsze, ram.block_size()), (2048, 512));
        let inactive = identify(&controller, cns::NAMESPACE, 2);
        assert!(inactive.status.is_success());
        assert!(inactive.data.iter().all(|&b| b == 0));
        for nsid in [0, 4, 0xffff_ffff] {
            let out_of_range = identify(&controller, cns::NAMESPACE, nsid);
            assert_eq!(
                out_of_range.status.sc(),
                generic::INVALID_NAMESPACE_OR_FORMAT
            );
        }

        let list = identify(&controller, cns::ACTIVE_NAMESPACE_LIST, 0).data;
        assert_eq!(&list[..12], &[1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        let after_one = identify(&controller, cns::ACTIVE_NAMESPACE_LIST, 1).data;
        assert_eq!(&after_one[..8], &[3, 0, 0, 0, 0, 0, 0, 0]);

        let descriptors = identify(&controller, cns::NAMESPACE_ID_DESCRIPTORS, 3).data;
        assert_eq!(
            vfnvme_spec::identify::parse_namespace_id_descriptors(&descriptors).unwrap(),
            vec![NamespaceId::Nguid([0x33; 16]), NamespaceId::Csi(0)]
        );
        let missing = identify(&controller, cns::NAMESPACE_ID_DESCRIPTORS, 2);
        assert_eq!(missing.status.sc(), generic::INVALID_NAMESPACE_OR_FORMAT);
        assert_eq!(
            identify(&controller, 0x10, 0).status.sc(),
            generic::INVALID_FIELD
        );
    }

    #[test]
    fn hosts_outside_the_allow_list_get_connect_invalid_host() {
        let registry = registry();
        let stranger = ConnectData {
            host_nqn: "nqn.2014-08.org.nvmexpress:uuid:stranger".into(),
            ..data(CNTLID_DYNAMIC)
        };
        let result = registry.connect_admin(&admin_connect(0), &stranger, local(), Instant::now());
        assert_rejection(result, connect_status::INVALID_HOST, 0x0001_0200);
        assert_eq!(
            AdminResponse::from(ConnectRejection::invalid_host())
                .status
                .raw()
                & 0x7ff,
            0x184
        );
    }

    #[test]
    fn bad_admin_connects_name_the_field() {
        let registry = registry();
        let now = Instant::now();
        let wrong_format = ConnectCommand {
            recfmt: 1,
            ..admin_connect(0)
        };
        assert_rejection(
            registry.connect_admin(&wrong_format, &data(0xffff), local(), now),
            connect_status::INCOMPATIBLE_FORMAT,
            0,
        );
        for sqsize in [0, 32] {
            let size = ConnectCommand {
                sqsize,
                ..admin_connect(0)
            };
            assert_rejection(
                registry.connect_admin(&size, &data(0xffff), local(), now),
                connect_status::INVALID_PARAMETERS,
                44,
            );
        }
        assert_rejection(
            registry.connect_admin(&admin_connect(0), &data(5), local(), now),
            connect_status::INVALID_PARAMETERS,
            0x0001_0010,
        );
        let other_subsystem = ConnectData {
            subsystem_nqn: "nqn.other".into(),
            ..data(0xffff)
        };
        assert_rejection(
            registry.connect_admin(&admin_connect(0), &other_subsystem, local(), now),
            connect_status::INVALID_PARAMETERS,
            0x0001_0100,
        );
    }

    #[test]
    fn io_connect_to_an_unknown_controller_points_at_cntlid() {
        let registry = registry();
        let _controller = enabled(&registry);
        assert_rejection(
            registry.connect_io(&io_connect(1), &data(7)),
            connect_status::INVALID_PARAMETERS,
            0x0001_0010,
        );
        let wrong_host_id = ConnectData {
            host_id: [0; 16],
            ..data(1)
        };
        assert_rejection(
            registry.connect_io(&io_connect(1), &wrong_host_id),
            connect_status::INVALID_PARAMETERS,
            0x0001_0000,
        );
    }

    #[test]
    fn io_connect_checks_queue_id_size_and_state() {
        let registry = registry();
        let controller = connect(&registry);
        assert_rejection(
            registry.connect_io(&io_connect(1), &data(1)),
            connect_status::INVALID_PARAMETERS,
            42,
        );
        property_set(&controller, regs::CC, ENABLE);
        assert_rejection(
            registry.connect_io(&io_connect(0), &data(1)),
            connect_status::INVALID_PARAMETERS,
            42,
        );
        assert_rejection(
            registry.connect_io(&io_connect(65), &data(1)),
            connect_status::INVALID_PARAMETERS,
            42,
        );
        let too_deep = ConnectCommand {
            sqsize: 128,
            ..io_connect(1)
        };
        assert_rejection(
            registry.connect_io(&too_deep, &data(1)),
            connect_status::INVALID_PARAMETERS,
            44,
        );
        let queue = registry.connect_io(&io_connect(64), &data(1)).unwrap();
        assert_eq!((queue.qid(), queue.entries()), (64, 128));
        assert_eq!(queue.controller().cntlid(), 1);
    }

    #[test]
    fn duplicate_qid_is_refused_until_the_queue_detaches() {
        let registry = registry();
        let _controller = enabled(&registry);
        let first = registry.connect_io(&io_connect(3), &data(1)).unwrap();
        assert_rejection(
            registry.connect_io(&io_connect(3), &data(1)),
            connect_status::INVALID_PARAMETERS,
            42,
        );
        let other = registry.connect_io(&io_connect(4), &data(1)).unwrap();
        drop(first);
        let again = registry.connect_io(&io_connect(3), &data(1)).unwrap();
        assert_eq!(again.qid(), 3);
        drop(other);
    }

    #[test]
    fn controller_ids_are_unique_and_reused_once_free() {
        let registry = registry();
        let first = connect(&registry);
        let second = connect(&registry);
        assert_eq!((first.cntlid(), second.cntlid()), (1, 2));
        assert_eq!(registry.controller_count(), 2);
        drop(first);
        assert_eq!(registry.controller_count(), 1);
        let third = enabled(&registry);
        assert_eq!(third.cntlid(), 1);

        // A terminated controller keeps its ID while an I/O queue still holds it, but takes
        // no more queues.
        let queue = registry.connect_io(&io_connect(1), &data(1)).unwrap();
        third.terminate();
        assert!(!third.is_enabled());
        drop(third);
        assert_rejection(
            registry.connect_io(&io_connect(2), &data(1)),
            connect_status::INVALID_PARAMETERS,
            0x0001_0010,
        );
        assert_eq!(connect(&registry).cntlid(), 3);
        drop(queue);
        assert_eq!(connect(&registry).cntlid(), 1);
    }

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
    fn keep_alive_timer_feature_changes_the_timeout() {
        let controller = enabled(&registry());
        let set = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::KEEP_ALIVE_TIMER,
                15_000,
            ),
        );
        assert!(set.status.is_success());
        assert_eq!(
            controller.keep_alive_timeout(),
            Some(Duration::from_secs(15))
        );
        let get = respond(
            &controller,
            features(admin_opcode::GET_FEATURES, feature::KEEP_ALIVE_TIMER, 0),
        );
        assert_eq!(get.result, 15_000);
    }

    fn aer(cid: u16) -> Command {
        let mut command = Command::new(admin_opcode::ASYNC_EVENT_REQUEST, 0);
        command.set_cid(cid);
        command
    }

    #[test]
    fn aers_are_held_up_to_the_limit_and_complete_on_namespace_change() {
        let controller = enabled(&registry());
        for cid in 10..14 {
            assert_eq!(
                controller.execute_admin(&aer(cid), Instant::now()),
                AdminOutcome::Held
            );
        }
        let over = respond(&controller, aer(14));
        assert_eq!(over.status.sct(), sct::COMMAND_SPECIFIC);
        assert_eq!(
            over.status.sc(),
            command_specific::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED
        );

        assert_eq!(
            controller.notify_namespace_changed(1),
            None,
            "notices not enabled yet"
        );
        let enable = features(
            admin_opcode::SET_FEATURES,
            feature::ASYNC_EVENT_CONFIG,
            1 << 8,
        );
        assert!(respond(&controller, enable).status.is_success());
        let completion = controller.notify_namespace_changed(3).unwrap();
        assert_eq!(completion.cid, 10);
        assert_eq!(completion.response.result, 0x0004_0002);
        assert_eq!(
            controller.notify_namespace_changed(1),
            None,
            "masked until the log is read"
        );

        let log = get_log(&controller, log_id::CHANGED_NAMESPACE_LIST, 4096, 0);
        assert_eq!(&log.data[..12], &[1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        let empty = get_log(&controller, log_id::CHANGED_NAMESPACE_LIST, 4096, 0);
        assert!(empty.data.iter().all(|&b| b == 0));
        assert_eq!(controller.notify_namespace_changed(3).unwrap().cid, 11);
        assert_eq!(controller.take_pending_aers(), vec![12, 13]);
        assert!(controller.take_pending_aers().is_empty());
    }

    #[test]
    fn events_wait_for_the_next_aer() {
        let controller = enabled(&registry());
        respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::ASYNC_EVENT_CONFIG,
                1 << 8,
            ),
        );
        assert_eq!(controller.notify_namespace_changed(1), None);
        assert_eq!(respond(&controller, aer(5)).result, 0x0004_0002);
    }

    #[test]
    fn features_are_granted_stored_and_forwarded() {
        let drives = Arc::new(FakeDrives::default());
        let registry = registry_with(Arc::clone(&drives));
        let controller = enabled(&registry);
        let queues = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::NUMBER_OF_QUEUES,
                0x0007_0007,
            ),
        );
        assert_eq!(queues.result, 0x0007_0007);
        let get = respond(
            &controller,
            features(admin_opcode::GET_FEATURES, feature::NUMBER_OF_QUEUES, 0),
        );
        assert_eq!(get.result, 0x0007_0007);
        assert_rejection(
            registry.connect_io(&io_connect(9), &data(1)),
            connect_status::INVALID_PARAMETERS,
            42,
        );
        let many = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::NUMBER_OF_QUEUES,
                0x00ff_00ff,
            ),
        );
        assert_eq!(many.result, 0x003f_003f, "capped at max_io_queues");
        let _queue = registry.connect_io(&io_connect(1), &data(1)).unwrap();
        let late = respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::NUMBER_OF_QUEUES, 0),
        );
        assert_eq!(late.status.sc(), generic::COMMAND_SEQUENCE_ERROR);
        let all_ones = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::NUMBER_OF_QUEUES,
                0xffff,
            ),
        );
        assert_eq!(all_ones.status.sc(), generic::INVALID_FIELD);

        let cache_on = respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::VOLATILE_WRITE_CACHE, 1),
        );
        assert!(cache_on.status.is_success());
        assert!(drives.cache_enabled.load(Ordering::Relaxed));
        let cache = respond(
            &controller,
            features(admin_opcode::GET_FEATURES, feature::VOLATILE_WRITE_CACHE, 0),
        );
        assert_eq!(cache.result, 1);

        respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::ARBITRATION, 0x0303),
        );
        assert_eq!(
            respond(
                &controller,
                features(admin_opcode::GET_FEATURES, feature::ARBITRATION, 0)
            )
            .result,
            0x0303
        );
        respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::POWER_MANAGEMENT, 0),
        );
        let saved = Command {
            cdw10: u32::from(feature::ARBITRATION) | 1 << 31,
            ..Command::new(admin_opcode::SET_FEATURES, 0)
        };
        assert_eq!(
            respond(&controller, saved).status.sc(),
            command_specific::FEATURE_NOT_SAVEABLE
        );
        let unknown = respond(&controller, features(admin_opcode::GET_FEATURES, 0x0e, 0));
        assert_eq!(unknown.status.sc(), generic::INVALID_FIELD);
    }

    #[test]
    fn log_pages_have_the_requested_length() {
        let drives = Arc::new(FakeDrives::default());
        let controller = enabled(&registry_with(Arc::clone(&drives)));
        let smart = get_log(&controller, log_id::SMART_HEALTH, 512, 0);
        let smart = SmartLog::from_bytes(&smart.data).unwrap();
        assert_eq!(
            (
                smart.temperature_kelvin,
                smart.avail_spare,
                smart.host_reads
            ),
            (300, 90, 10)
        );
        assert_eq!(
            drives.smart_calls.load(Ordering::Relaxed),
            1,
            "the RAM namespace adds no drive"
        );
        let error = get_log(&controller, log_id::ERROR, 64, 0);
        assert_eq!(error.data, vec![0; 64]);
        let firmware = get_log(&controller, log_id::FIRMWARE_SLOT, 64, 0);
        assert_eq!(firmware.data.len(), 64);
        assert_eq!(
            (firmware.data[0], &firmware.data[8..16]),
            (1, &b"8.2.0   "[..])
        );
        let partial = get_log(&controller, log_id::FIRMWARE_SLOT, 8, 8);
        assert_eq!(partial.data, b"8.2.0   ");
        let beyond = get_log(&controller, log_id::FIRMWARE_SLOT, 8, 1024);
        assert_eq!(beyond.status.sc(), generic::INVALID_FIELD);
        let discovery = get_log(&controller, log_id::DISCOVERY, 1024, 0);
        assert_eq!(discovery.status.sc(), command_specific::INVALID_LOG_PAGE);
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

    #[test]
    fn discovery_controllers_serve_the_discovery_log() {
        let open = Arc::new(Subsystem {
            allow_any_host: true,
            ..subsystem()
        });
        let target = TargetSubsystems::new(
            vec![open],
            vec!["0.0.0.0:4420".parse().unwrap()],
            settings(),
            Arc::new(FakeDrives::default()),
        );
        assert_eq!(target.registries().len(), 2);
        let discovery_data = ConnectData {
            subsystem_nqn: DISCOVERY_NQN.into(),
            ..data(0xffff)
        };
        let now = Instant::now();
        let Ok(Association::Admin(controller)) =
            target.connect(&admin_connect(0), &discovery_data, local(), now)
        else {
            panic!("discovery connect refused");
        };
        assert!(controller.is_discovery());
        assert_eq!(
            controller.keep_alive_timeout(),
            Some(Duration::from_secs(120))
        );
        property_set(&controller, regs::CC, ENABLE);
        let id = IdentifyController::from_bytes(&identify(&controller, cns::CONTROLLER, 0).data)
            .unwrap();
        assert_eq!((id.cntrltype, id.nn, id.mdts), (2, 0, 0));
        assert_eq!(id.subnqn, DISCOVERY_NQN);
        assert_eq!(
            identify(&controller, cns::NAMESPACE, 1).status.sc(),
            generic::INVALID_FIELD
        );

        let header = get_log(&controller, log_id::DISCOVERY, 1024, 0);
        assert_eq!(
            u64::from_le_bytes(header.data[8..16].try_into().unwrap()),
            2
        );
        let entries = get_log(&controller, log_id::DISCOVERY, 2048, 1024).data;
        assert_eq!(entries[2], 3);
        assert_eq!(entries[1024 + 2], 2);
        assert_eq!(&entries[1024 + 512..1024 + 522], b"192.0.2.1 ");
        assert_eq!(
            get_log(&controller, log_id::SMART_HEALTH, 512, 0)
                .status
                .sc(),
            command_specific::INVALID_LOG_PAGE
        );
        assert_eq!(
            respond(&controller, Command::new(admin_opcode::ABORT, 0))
                .status
                .sc(),
            generic::INVALID_OPCODE
        );
        let queues = respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::NUMBER_OF_QUEUES, 0),
        );
        assert_eq!(queues.status.sc(), generic::INVALID_FIELD);

        let io = ConnectData {
            cntlid: controller.cntlid(),
            ..discovery_data
        };
        let refused = target
            .connect(&io_connect(1), &io, local(), now)
            .map(|_| ());
        assert_rejection(refused, connect_status::INVALID_PARAMETERS, 42);
    }

    #[test]
    fn connects_are_routed_by_subsystem_nqn() {
        let target = TargetSubsystems::new(
            vec![Arc::new(subsystem())],
            vec![local()],
            settings(),
            Arc::new(FakeDrives::default()),
        );
        let now = Instant::now();
        let unknown = ConnectData {
            subsystem_nqn: "nqn.2026-11.io.vfnvme:absent".into(),
            ..data(0xffff)
        };
        assert_rejection(
            target
                .connect(&admin_connect(0), &unknown, local(), now)
                .map(|_| ()),
            connect_status::INVALID_PARAMETERS,
            0x0001_0100,
        );
        let Ok(Association::Admin(controller)) =
            target.connect(&admin_connect(0), &data(0xffff), local(), now)
        else {
            panic!("admin connect refused");
        };
        property_set(&controller, regs::CC, ENABLE);
        let Ok(Association::Io(queue)) = target.connect(&io_connect(2), &data(1), local(), now)
        else {
            panic!("I/O connect refused");
        };
        assert!(Arc::ptr_eq(queue.controller(), &controller));
        assert_eq!(controller.max_io_size(), 128 * 1024);
        assert_eq!(controller.subsystem().namespace(3).unwrap().block_size, 512);
    }
}
