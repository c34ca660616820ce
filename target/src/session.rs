//! What a connection is bound to once its Connect succeeded: the admin queue of a new fabric
//! controller, or an I/O queue of an existing one; and the target-wide registry Connects go to.
//!
//! This is the seam between the transport (`conn`) and the fabric controller logic (`ctrlr`):
//! the I/O path asks a binding only lock-free questions (enabled? which drive serves this
//! namespace?).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use vfnvme_auth::{ControllerAuth, ControllerPolicy};
use vfnvme_driver::{AdminData, Controller};
use vfnvme_spec::identify::{
    parse_namespace_id_descriptors, NamespaceId, NamespaceIds, IDENTIFY_DATA_SIZE, VWC_PRESENT,
};
use vfnvme_spec::log_page::log_id;
use vfnvme_spec::status::generic;
use vfnvme_spec::{admin_opcode, cns, feature, Command, Status};

use crate::admission::Admission;
use crate::backend::{check_exportable, Drive};
use crate::config::{Config, DhchapAlgorithms};
use crate::ctrlr::{
    AdminForwarder, AdminResponse, Arrival, Association, ControllerSettings, FabricController,
    IoQueueAttachment, TargetSubsystems,
};
use crate::drive_table::DriveTable;
use crate::listeners::ListenerTable;
use crate::subsystem::{DriveNamespace, HostAccess, NamespaceBacking, Subsystem};
use vfnvme_spec::fabrics::{ConnectData, FabricsCommand};

pub use crate::ctrlr::AdminOutcome;

/// Where the commands for one namespace go: a drive (index into the target's drives and the
/// poll group's backend queues) and the drive's own namespace id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceRoute {
    pub nsid: u32,
    pub drive: usize,
    pub device_nsid: u32,
    pub block_size: u32,
    /// The optional NVM commands (ONCS bits) its subsystem advertises: the others are refused.
    pub oncs: u16,
}

/// Every subsystem's controllers, and how each namespace reaches its drive.
pub struct Registry {
    subsystems: TargetSubsystems,
    /// Per subsystem NQN, its namespaces' routes sorted by NSID; read at Connect, changed when
    /// a namespace is added or removed or a subsystem deleted. A connection keeps the table it
    /// was given until its poll group hands it the next (`poll_group::changes`).
    routes: Mutex<Vec<(String, Arc<[NamespaceRoute]>)>>,
}

/// Where each configured namespace's drive sits in the target's list of drives.
pub struct DrivePlacement {
    /// PCI address → drive index, for passthrough namespaces.
    pub pci: Vec<(String, usize)>,
    /// (subsystem NQN, NSID) → drive index, for RAM namespaces.
    pub ram: Vec<(String, u32, usize)>,
}

impl Registry {
    pub fn build(
        config: &Config,
        drives: &Arc<DriveTable>,
        placement: &DrivePlacement,
        listeners: Arc<ListenerTable>,
        admission: Arc<Admission>,
    ) -> Result<Self, String> {
        let mut subsystems = Vec::new();
        let mut routes = Vec::new();
        for subsystem_config in &config.subsystems {
            let subsystem =
                Subsystem::from_config(subsystem_config, &config.target, |pci, nsid| {
                    describe_drive_namespace(drives, placement, pci, nsid)
                })?;
            let mut table: Vec<NamespaceRoute> = subsystem
                .namespaces
                .get()
                .iter()
                .map(|namespace| {
                    let (drive, device_nsid) = match namespace.backend {
                        NamespaceBacking::Passthrough {
                            device_index,
                            device_nsid,
                        } => (device_index, device_nsid),
                        NamespaceBacking::Ram { .. } => {
                            let drive = placement
                                .ram
                                .iter()
                                .find(|(nqn, nsid, _)| {
                                    *nqn == subsystem.nqn && *nsid == namespace.nsid
                                })
                                .map(|(_, _, drive)| *drive)
                                .expect("every RAM namespace was given a drive");
                            (drive, 1)
                        }
                    };
                    NamespaceRoute {
                        nsid: namespace.nsid,
                        drive,
                        device_nsid,
                        block_size: namespace.block_size,
                        oncs: subsystem.oncs,
                    }
                })
                .collect();
            table.sort_by_key(|route| route.nsid);
            routes.push((subsystem.nqn.clone(), table.into()));
            subsystems.push((Arc::new(subsystem), HostAccess::of(subsystem_config)));
        }
        let forwarder = Arc::new(DriveForwarder {
            drives: Arc::clone(drives),
        });
        let settings = ControllerSettings::from_config(&config.target, admission);
        Ok(Self {
            subsystems: TargetSubsystems::new(subsystems, listeners, settings, forwarder),
            routes: Mutex::new(routes),
        })
    }

    /// The subsystems and their controllers (the management socket changes them).
    pub fn subsystems(&self) -> &TargetSubsystems {
        &self.subsystems
    }

    /// Tells every controller that exports a namespace of drive `drive` that the namespace
    /// changed (it is going away), completing their held AERs.
    pub fn notify_drive_removed(&self, drive: usize) {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (nqn, routes) in routes {
            let Some(registry) = self.subsystems.find(&nqn) else {
                continue;
            };
            for route in routes.iter().filter(|route| route.drive == drive) {
                for controller in registry.live_controllers() {
                    controller.post_namespace_changed(route.nsid);
                }
            }
        }
    }

    /// Subsystem `nqn`'s namespaces are reached by `table` from now on: Connects after this get
    /// it (the poll groups give it to the queues connected before).
    pub fn set_routes(&self, nqn: &str, table: Arc<[NamespaceRoute]>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        match routes.iter_mut().find(|(name, _)| name == nqn) {
            Some((_, routes)) => *routes = table,
            None => routes.push((nqn.to_owned(), table)),
        }
    }

    /// Whether a namespace of some subsystem is still backed by drive `drive`.
    pub fn drive_in_use(&self, drive: usize) -> bool {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(_, routes)| routes.iter().any(|route| route.drive == drive))
    }

    /// Forgets the namespace routes of subsystem `nqn` (deleted): a subsystem created later
    /// with that NQN starts without namespaces.
    pub fn forget_routes(&self, nqn: &str) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(name, _)| name != nqn);
    }

    /// The namespace routes of subsystem `nqn`, sorted by NSID.
    pub fn routes_of(&self, nqn: &str) -> Arc<[NamespaceRoute]> {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(name, _)| name == nqn)
            .map_or_else(|| Arc::from(Vec::new()), |(_, table)| Arc::clone(table))
    }
}

fn describe_drive_namespace(
    drives: &DriveTable,
    placement: &DrivePlacement,
    pci: &str,
    device_nsid: u32,
) -> Result<DriveNamespace, String> {
    let index = placement
        .pci
        .iter()
        .find(|(address, _)| address == pci)
        .map(|(_, index)| *index)
        .ok_or_else(|| format!("{pci} was not opened"))?;
    describe_drive(drives, index, pci, device_nsid)
}

/// What namespace `device_nsid` of drive `index` (known as `pci`) offers hosts, or why it
/// cannot be exported; at start and for `nvmf_subsystem_add_ns` alike.
pub fn describe_drive(
    drives: &DriveTable,
    index: usize,
    pci: &str,
    device_nsid: u32,
) -> Result<DriveNamespace, String> {
    let slot = drives
        .get(index)
        .ok_or_else(|| format!("{pci} was not opened"))?
        .lock();
    let Some(Drive::Nvme(controller)) = slot.as_ref() else {
        return Err(format!("{pci} is not an NVMe drive"));
    };
    let namespace = controller
        .namespace(device_nsid)
        .map_err(|e| e.to_string())?;
    check_exportable(pci, &namespace)?;
    let identify = controller.identify();
    let descriptors = namespace_descriptors(controller, device_nsid);
    Ok(DriveNamespace {
        device_index: index,
        block_size: namespace.block_size,
        blocks: namespace.blocks,
        vid: identify.vid.get(),
        serial: identify.serial.to_string(),
        model: identify.model.to_string(),
        firmware: identify.firmware.to_string(),
        ids: NamespaceIds::reported(&namespace.identify, &descriptors),
        oncs: identify.oncs.get(),
        volatile_write_cache: identify.vwc & VWC_PRESENT != 0,
        max_transfer: controller.max_transfer(),
    })
}

/// The drive's Namespace Identification Descriptor list of namespace `nsid`; none from a drive
/// older than NVMe 1.3, which answers Invalid Field (its Identify Namespace still has the
/// NGUID and EUI-64).
fn namespace_descriptors(controller: &Controller, nsid: u32) -> Vec<NamespaceId> {
    let mut data = vec![0u8; IDENTIFY_DATA_SIZE];
    let command = Command {
        cdw10: u32::from(cns::NAMESPACE_ID_DESCRIPTORS),
        ..Command::new(admin_opcode::IDENTIFY, nsid)
    };
    let name = "Identify (Namespace Identification Descriptor list)";
    let answered = controller
        .admin(command, AdminData::FromDevice(&mut data), name)
        .map_err(|e| e.to_string())
        .and_then(|_| parse_namespace_id_descriptors(&data).map_err(|e| e.to_string()));
    answered.unwrap_or_else(|error| {
        log::info!(
            "{}: namespace {nsid}: no descriptor list ({error}); its Identify Namespace \
             identifiers are used",
            controller.address()
        );
        Vec::new()
    })
}

/// Forwards the admin commands the fabric controller cannot answer itself to the drives.
struct DriveForwarder {
    drives: Arc<DriveTable>,
}

impl DriveForwarder {
    /// The drive's controller; held only for one admin command, so a removed drive's
    /// controller goes as soon as that command is done.
    fn controller(&self, index: usize) -> Result<Controller, Status> {
        let not_ready = Status::namespace_not_ready().do_not_retry();
        let slot = self.drives.get(index).ok_or(not_ready)?;
        if slot.is_removed() {
            return Err(not_ready);
        }
        match slot.lock().as_ref() {
            Some(Drive::Nvme(controller)) => Ok(controller.clone()),
            _ => Err(Status::invalid_field()),
        }
    }
}

fn internal_error(error: vfnvme_driver::Error) -> Status {
    match error {
        vfnvme_driver::Error::Command { status, .. } => status,
        other => {
            log::error!("forwarding an admin command: {other}");
            Status::generic(generic::INTERNAL_ERROR)
        }
    }
}

impl AdminForwarder for DriveForwarder {
    fn smart_log(&self, device_index: usize) -> Result<Vec<u8>, Status> {
        let controller = self.controller(device_index)?;
        let mut log = vec![0u8; 512];
        let command = Command {
            cdw10: u32::from(log_id::SMART_HEALTH) | (127 << 16),
            ..Command::new(admin_opcode::GET_LOG_PAGE, u32::MAX)
        };
        controller
            .admin(
                command,
                AdminData::FromDevice(&mut log),
                "Get Log Page (SMART)",
            )
            .map_err(internal_error)?;
        Ok(log)
    }

    fn volatile_write_cache(
        &self,
        device_index: usize,
        enable: Option<bool>,
    ) -> Result<bool, Status> {
        let controller = self.controller(device_index)?;
        if let Some(enable) = enable {
            let set = Command {
                cdw10: u32::from(feature::VOLATILE_WRITE_CACHE),
                cdw11: u32::from(enable),
                ..Command::new(admin_opcode::SET_FEATURES, 0)
            };
            controller
                .admin(set, AdminData::None, "Set Features (Volatile Write Cache)")
                .map_err(internal_error)?;
        }
        let get = Command {
            cdw10: u32::from(feature::VOLATILE_WRITE_CACHE),
            ..Command::new(admin_opcode::GET_FEATURES, 0)
        };
        let result = controller
            .admin(get, AdminData::None, "Get Features (Volatile Write Cache)")
            .map_err(internal_error)?;
        Ok(result & 1 != 0)
    }
}

enum Queue {
    Admin(Arc<FabricController>),
    Io(IoQueueAttachment),
}

/// A connection's fabric queue.
pub struct QueueBinding {
    queue: Queue,
    entries: u16,
    sq_flow_control_disabled: bool,
    routes: Arc<[NamespaceRoute]>,
}

/// A refused Connect: the status and DW0 to answer with, and for the log who asked for what
/// and why it was refused.
#[derive(Debug)]
pub struct RefusedConnect {
    pub status: Status,
    pub result: u32,
    pub why: String,
}

impl RefusedConnect {
    fn new(status: Status, why: impl Into<String>) -> Self {
        Self {
            status,
            result: 0,
            why: why.into(),
        }
    }
}

/// Handles a Connect that arrived at `arrival`: returns the binding and the completion's DW0
/// (the controller ID), or what to refuse it with.
pub fn connect(
    registry: &Registry,
    command: &Command,
    data: &[u8],
    arrival: Arrival,
) -> Result<(QueueBinding, u32), RefusedConnect> {
    let connect = match FabricsCommand::parse(command) {
        Ok(FabricsCommand::Connect(connect)) => connect,
        Ok(_) => {
            return Err(RefusedConnect::new(
                Status::command_sequence_error(),
                "not a Connect command",
            ))
        }
        Err(status) => return Err(RefusedConnect::new(status, "not a Connect command")),
    };
    let data = ConnectData::from_bytes(data).map_err(|rejection| RefusedConnect {
        status: rejection.status,
        result: rejection.result,
        why: format!("queue {}, malformed Connect data: {rejection}", connect.qid),
    })?;
    let association = registry
        .subsystems
        .connect(&connect, &data, arrival, Instant::now())
        .map_err(|rejection| RefusedConnect {
            status: rejection.status,
            result: rejection.result,
            why: format!(
                "host NQN {:?} to subsystem {:?}, queue {}: {rejection}",
                data.host_nqn, data.subsystem_nqn, connect.qid
            ),
        })?;
    let (queue, controller) = match association {
        Association::Admin(controller) => (Queue::Admin(Arc::clone(&controller)), controller),
        Association::Io(attachment) => {
            let controller = Arc::clone(attachment.controller());
            (Queue::Io(attachment), controller)
        }
    };
    let response = controller.connect_response();
    let binding = QueueBinding {
        queue,
        entries: connect.queue_entries().min(u32::from(u16::MAX)) as u16,
        sq_flow_control_disabled: connect.sq_flow_control_disabled(),
        routes: registry.routes_of(&controller.subsystem().nqn),
    };
    Ok((binding, response.result))
}

impl QueueBinding {
    fn controller(&self) -> &Arc<FabricController> {
        match &self.queue {
            Queue::Admin(controller) => controller,
            Queue::Io(attachment) => attachment.controller(),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.queue, Queue::Admin(_))
    }

    pub fn qid(&self) -> u16 {
        match &self.queue {
            Queue::Admin(_) => 0,
            Queue::Io(attachment) => attachment.qid(),
        }
    }

    /// Entries of the submission queue (SQHD wraps at this).
    pub fn sq_entries(&self) -> u16 {
        self.entries
    }

    pub fn sq_flow_control_disabled(&self) -> bool {
        self.sq_flow_control_disabled
    }

    pub fn enabled(&self) -> bool {
        self.controller().is_enabled()
    }

    /// The controller's association ended (its admin queue is gone): the host will reconnect.
    pub fn terminated(&self) -> bool {
        self.controller().is_terminated()
    }

    pub fn max_io_size(&self) -> usize {
        self.controller().max_io_size() as usize
    }

    /// Who the queue serves, for its statistics.
    pub fn identity(&self) -> crate::stats::QueueIdentity {
        let controller = self.controller();
        crate::stats::QueueIdentity {
            host_nqn: controller.host_nqn().into(),
            subsystem_nqn: controller.subsystem().nqn.as_str().into(),
            cntlid: controller.cntlid(),
            qid: self.qid(),
        }
    }

    /// Whether the queue is one of a controller of `subsystem`.
    pub fn serves(&self, subsystem: &Arc<crate::subsystem::Subsystem>) -> bool {
        Arc::ptr_eq(self.controller().subsystem(), subsystem)
    }

    /// The queue's namespaces are reached by `routes` from its next command on (those in
    /// flight keep the route they were sent by).
    pub fn set_routes(&mut self, routes: Arc<[NamespaceRoute]>) {
        self.routes = routes;
    }

    /// The NSIDs of the queue's namespace table, sorted.
    pub fn nsids(&self) -> impl Iterator<Item = u32> + '_ {
        self.routes.iter().map(|route| route.nsid)
    }

    /// The route of namespace `nsid`; no allocation, no lock.
    pub fn namespace(&self, nsid: u32) -> Option<NamespaceRoute> {
        self.routes
            .binary_search_by_key(&nsid, |route| route.nsid)
            .ok()
            .map(|index| self.routes[index])
    }

    /// An admin queue command (Fabrics Property Get/Set included; none of the supported ones
    /// carries data to the controller). On an I/O queue, the only Fabrics commands are Connect
    /// and Disconnect, which the connection handles itself: anything else is Invalid Opcode.
    pub fn execute_admin(&self, command: &Command) -> AdminOutcome {
        if !self.is_admin() {
            return AdminOutcome::Respond(AdminResponse::failure(Status::invalid_opcode()));
        }
        self.controller().execute_admin(command, Instant::now())
    }

    /// The controller to run `command` on off the poll group, if it is an admin queue command
    /// a drive answers (and may take seconds over): see `admin_worker`.
    pub fn forwarded_to_drive(&self, command: &Command) -> Option<Arc<FabricController>> {
        match &self.queue {
            Queue::Admin(controller) if controller.forwards_to_drive(command) => {
                Some(Arc::clone(controller))
            }
            _ => None,
        }
    }

    /// The DH-HMAC-CHAP exchange this queue's host must complete before other commands, or
    /// completes again to re-authenticate, if it has a key now (nvmet: `nvmet_setup_auth` at
    /// Connect and at an admin queue's new Negotiate; SPDK's target reads the key for each
    /// exchange too). Each step may wait for the host as long as the keep-alive timeout
    /// (120 s without one), as SPDK's target and nvmet allow. It may use the hashes and groups
    /// of `algorithms` (`[target] dhchap_digests`, ...).
    pub fn authentication(&self, algorithms: &DhchapAlgorithms) -> Option<ControllerAuth> {
        let controller = self.controller();
        let subsystem = controller.subsystem();
        let key = controller.host_key()?;
        let mut policy = ControllerPolicy {
            hashes: algorithms.hashes.clone(),
            dh_groups: algorithms.dh_groups.clone(),
            ..ControllerPolicy::default()
        };
        if let Some(kato) = controller.keep_alive_timeout() {
            policy.step_timeout = kato;
        }
        Some(ControllerAuth::new(
            controller.host_nqn(),
            &subsystem.nqn,
            &key.secret,
            key.ctrl_secret.as_deref(),
            policy,
        ))
    }

    /// Who is on this queue, for the log: host NQN, subsystem NQN, queue.
    pub fn describe(&self) -> String {
        let controller = self.controller();
        format!(
            "host {} to subsystem {}, queue {}",
            controller.host_nqn(),
            controller.subsystem().nqn,
            self.qid()
        )
    }

    /// Why this queue must close now, if it must: keep-alive expired (admin queue), or the
    /// controller ended (I/O queues; the admin queue too when the management socket ended it:
    /// its host was removed, or its subsystem deleted).
    pub fn expired(&self, now: Instant) -> Option<&'static str> {
        let controller = self.controller();
        if self.is_admin() && controller.is_terminated() {
            return Some("its controller was disconnected by the management socket");
        }
        if self.is_admin() && controller.keep_alive_expired(now) {
            log::warn!(
                "controller {} of {}: keep-alive timeout expired",
                controller.cntlid(),
                controller.host_nqn()
            );
            return Some("keep-alive timeout expired");
        }
        (!self.is_admin() && controller.is_terminated()).then_some("its controller is gone")
    }

    /// AERs completed by an event on another thread (admin queue only).
    pub fn take_completed_aers(&self) -> Vec<crate::ctrlr::AerCompletion> {
        match &self.queue {
            Queue::Admin(controller) => controller.take_completed_aers(),
            Queue::Io(_) => Vec::new(),
        }
    }

    /// Ends the binding: an admin queue ends its controller (its I/O queues then stop); an I/O
    /// queue detaches at once, so an immediate reconnect of its QID succeeds.
    pub fn release(self) {
        if let Queue::Admin(controller) = &self.queue {
            controller.terminate();
        }
    }
}
