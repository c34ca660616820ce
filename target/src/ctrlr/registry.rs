//! The controllers of each subsystem: where a Connect goes (as Linux nvmet's fabrics-cmd.c and
//! the controller list of core.c). An admin queue Connect creates a controller with the lowest
//! free controller ID; an I/O queue Connect attaches a queue to a controller the same host
//! created. Its own file because Connect checks and queue attachments are apart from what a
//! live controller answers; the registry's struct sits with the controller's in `controller.rs`,
//! since each refers to the other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};
use std::time::Instant;

use vfnvme_spec::fabrics::{
    connect_offset, ConnectCommand, ConnectData, ConnectRejection, CNTLID_DYNAMIC,
    MAX_ADMIN_QUEUE_ENTRIES,
};

use super::controller::{
    keep_alive_from_ms, lock, AdminForwarder, AdminState, Arrival, Catalog, ControllerRegistry,
    ControllerSettings, FabricController,
};
use crate::listeners::ListenerTable;
use crate::subsystem::{HostAccess, Subsystem};

impl ControllerRegistry {
    /// Checks what every Connect must satisfy. Returns the host access it was checked against,
    /// still locked: an admin Connect holds it until its controller is registered, so that a
    /// host the management socket removes meanwhile either is refused or has its controller
    /// found and disconnected.
    fn check_common(
        &self,
        connect: &ConnectCommand,
        data: &ConnectData,
    ) -> Result<MutexGuard<'_, HostAccess>, ConnectRejection> {
        if connect.recfmt != 0 {
            return Err(ConnectRejection::incompatible_format());
        }
        if data.subsystem_nqn != self.subsystem.nqn {
            return Err(ConnectRejection::invalid_data_field(
                connect_offset::SUBNQN,
                "not this subsystem",
            ));
        }
        let access = lock(&self.access);
        if !access.allows(&data.host_nqn) {
            return Err(ConnectRejection::invalid_host());
        }
        Ok(access)
    }

    /// An admin queue Connect arrived at `arrival`: creates a controller with the lowest free
    /// controller ID of the configured range.
    pub fn connect_admin(
        self: &Arc<Self>,
        connect: &ConnectCommand,
        data: &ConnectData,
        arrival: Arrival,
        now: Instant,
    ) -> Result<Arc<FabricController>, ConnectRejection> {
        // Held until the controller is registered (see `check_common`).
        let _access = self.check_common(connect, data)?;
        if connect.qid != 0 {
            return Err(ConnectRejection::invalid_command_field(
                connect_offset::QID,
                "an admin queue Connect has QID 0",
            ));
        }
        if connect.sqsize == 0 || connect.sqsize >= MAX_ADMIN_QUEUE_ENTRIES {
            return Err(ConnectRejection::invalid_command_field(
                connect_offset::SQSIZE,
                "an admin queue has 2 to 128 entries (ASQSZ)",
            ));
        }
        if data.cntlid != CNTLID_DYNAMIC {
            return Err(ConnectRejection::invalid_data_field(
                connect_offset::CNTLID,
                "only the dynamic controller model (controller ID FFFFh) is supported",
            ));
        }
        let keep_alive = match keep_alive_from_ms(connect.kato_ms) {
            None if self.is_discovery() => Some(self.settings.discovery_keep_alive),
            requested => requested,
        };
        let admission = self
            .settings
            .admission
            .admit_controller(&data.host_nqn)
            .map_err(|refusal| {
                log::warn!("{}: {refusal}", self.subsystem.nqn);
                ConnectRejection::controller_limit()
            })?;
        let mut controllers = lock(&self.controllers);
        // Every ID of the range taken: Connect Controller Busy, do not retry (as nvmet).
        let cntlid = self
            .settings
            .cntlids
            .clone()
            .find(|id| controllers.get(id).is_none_or(|c| c.strong_count() == 0))
            .ok_or_else(ConnectRejection::controller_busy)?;
        let controller = Arc::new(FabricController {
            registry: Arc::clone(self),
            cntlid,
            host_nqn: data.host_nqn.clone(),
            host_id: data.host_id,
            arrival,
            enabled: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            state: Mutex::new(AdminState::new(
                keep_alive,
                now,
                self.settings.max_io_queues,
            )),
            _admission: admission,
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
        drop(self.check_common(connect, data)?);
        // The registry lock is released before the controller can be dropped: its `Drop`
        // takes the same lock.
        let found = lock(&self.controllers)
            .get(&data.cntlid)
            .and_then(Weak::upgrade);
        let controller = found
            .filter(|controller| !controller.is_terminated())
            .ok_or(ConnectRejection::invalid_data_field(
                connect_offset::CNTLID,
                "no live controller has this ID",
            ))?;
        if controller.host_nqn != data.host_nqn {
            return Err(ConnectRejection::invalid_data_field(
                connect_offset::HOSTNQN,
                "the controller belongs to another host NQN",
            ));
        }
        if controller.host_id != data.host_id {
            return Err(ConnectRejection::invalid_data_field(
                connect_offset::HOSTID,
                "the controller belongs to another host ID",
            ));
        }
        controller.attach_io_queue(connect)
    }
}

/// Every subsystem of the target with its controllers, the discovery subsystem included:
/// where Connect commands go. Subsystems come and go while the target runs (the management
/// socket); the discovery subsystem stays.
pub struct TargetSubsystems {
    catalog: Arc<Catalog>,
    discovery: Arc<ControllerRegistry>,
    settings: ControllerSettings,
    forwarder: Arc<dyn AdminForwarder>,
}

/// What a successful Connect created.
pub enum Association {
    /// A new controller, owned by the admin queue that connected.
    Admin(Arc<FabricController>),
    /// An I/O queue of an existing controller; dropping it detaches the queue.
    Io(IoQueueAttachment),
}

/// A subsystem could not be added: one with its NQN exists.
#[derive(Debug, thiserror::Error)]
#[error("subsystem {0} exists already")]
pub struct SubsystemExists(pub String);

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TargetSubsystems {
    /// Registries for `subsystems` (each open to its hosts) and for the discovery subsystem
    /// listing them on `listeners`.
    pub fn new(
        subsystems: Vec<(Arc<Subsystem>, HostAccess)>,
        listeners: Arc<ListenerTable>,
        settings: ControllerSettings,
        forwarder: Arc<dyn AdminForwarder>,
    ) -> Self {
        let registries = subsystems
            .into_iter()
            .map(|(subsystem, access)| {
                ControllerRegistry::for_subsystem(
                    subsystem,
                    access,
                    settings.clone(),
                    Arc::clone(&forwarder),
                )
            })
            .collect();
        let catalog = Arc::new(Catalog {
            registries: RwLock::new(registries),
            generation: AtomicU64::new(1),
        });
        let discovery =
            ControllerRegistry::for_discovery(Arc::clone(&catalog), listeners, settings.clone());
        Self {
            catalog,
            discovery,
            settings,
            forwarder,
        }
    }

    /// The NVM subsystems' registries, in the order they were configured or created.
    pub fn registries(&self) -> Vec<Arc<ControllerRegistry>> {
        read(&self.catalog.registries).clone()
    }

    /// The registry of the NVM subsystem `nqn`.
    pub fn find(&self, nqn: &str) -> Option<Arc<ControllerRegistry>> {
        read(&self.catalog.registries)
            .iter()
            .find(|registry| registry.subsystem.nqn == nqn)
            .cloned()
    }

    pub fn discovery(&self) -> &Arc<ControllerRegistry> {
        &self.discovery
    }

    /// Adds subsystem `subsystem`, open to `access`; hosts may connect at once. The caller
    /// tells discovery controllers ([`Self::discovery_changed`]).
    pub fn add(
        &self,
        subsystem: Arc<Subsystem>,
        access: HostAccess,
    ) -> Result<Arc<ControllerRegistry>, SubsystemExists> {
        let mut registries = self
            .catalog
            .registries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if subsystem.nqn == self.discovery.subsystem.nqn
            || registries.iter().any(|r| r.subsystem.nqn == subsystem.nqn)
        {
            return Err(SubsystemExists(subsystem.nqn.clone()));
        }
        let registry = ControllerRegistry::for_subsystem(
            subsystem,
            access,
            self.settings.clone(),
            Arc::clone(&self.forwarder),
        );
        registries.push(Arc::clone(&registry));
        Ok(registry)
    }

    /// Takes subsystem `nqn` out: new Connects to it are refused as to an unknown subsystem.
    /// Its controllers live on until the caller disconnects them.
    pub fn remove(&self, nqn: &str) -> Option<Arc<ControllerRegistry>> {
        let mut registries = self
            .catalog
            .registries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = registries.iter().position(|r| r.subsystem.nqn == nqn)?;
        Some(registries.remove(index))
    }

    /// What the discovery log lists changed: its Generation Counter moves on, and each
    /// discovery controller that asked for Discovery Log Page Change notices gets the event.
    pub fn discovery_changed(&self) {
        self.catalog.generation.fetch_add(1, Ordering::AcqRel);
        for controller in self.discovery.live_controllers() {
            controller.post_discovery_changed();
        }
    }

    /// Handles a Connect on a new queue (QID 0: admin queue, else I/O queue) that arrived at
    /// `arrival`. A subsystem not reachable on that listener is refused as an unknown one,
    /// as nvmet refuses a subsystem that is not on the port.
    pub fn connect(
        &self,
        connect: &ConnectCommand,
        data: &ConnectData,
        arrival: Arrival,
        now: Instant,
    ) -> Result<Association, ConnectRejection> {
        let registry = if data.subsystem_nqn == self.discovery.subsystem.nqn {
            Arc::clone(&self.discovery)
        } else {
            self.find(&data.subsystem_nqn)
                .ok_or(ConnectRejection::invalid_data_field(
                    connect_offset::SUBNQN,
                    "no such subsystem",
                ))?
        };
        if !lock(&registry.access).is_reachable_on(arrival.listener) {
            return Err(ConnectRejection::invalid_data_field(
                connect_offset::SUBNQN,
                "the subsystem is not reachable on this listener (see its listeners)",
            ));
        }
        if connect.qid == 0 {
            registry
                .connect_admin(connect, data, arrival, now)
                .map(Association::Admin)
        } else {
            registry.connect_io(connect, data).map(Association::Io)
        }
    }
}

impl Catalog {
    /// The subsystems host `host_nqn` may connect to, with the listeners they are on, for its
    /// discovery log.
    pub(super) fn visible_to(&self, host_nqn: &str) -> Vec<(String, Vec<usize>)> {
        read(&self.registries)
            .iter()
            .filter_map(|registry| {
                let access = lock(&registry.access);
                access
                    .allows(host_nqn)
                    .then(|| (registry.subsystem.nqn.clone(), access.listeners.clone()))
            })
            .collect()
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl ControllerRegistry {
    /// Who may connect now.
    pub fn access(&self) -> HostAccess {
        lock(&self.access).clone()
    }

    /// Changes who may connect; returns what `change` returns. Connects after it see the
    /// change; controllers connected before stay until [`Self::disconnect`].
    pub fn change_access<R>(&self, change: impl FnOnce(&mut HostAccess) -> R) -> R {
        change(&mut lock(&self.access))
    }

    /// What `read` finds in who may connect now, without a copy of it.
    pub fn read_access<R>(&self, read: impl FnOnce(&HostAccess) -> R) -> R {
        read(&lock(&self.access))
    }

    /// Ends the controllers `which` picks, as a keep-alive expiry does: each one's admin
    /// queue closes (at its poll group's next tick), and its I/O queues follow. Returns them,
    /// weakly, for [`Self::wait_until_gone`].
    pub fn disconnect(
        &self,
        which: impl Fn(&FabricController) -> bool,
    ) -> Vec<Weak<FabricController>> {
        let controllers: Vec<Arc<FabricController>> = self
            .live_controllers()
            .into_iter()
            .filter(|controller| which(controller))
            .collect();
        for controller in &controllers {
            log::info!(
                "{}: disconnecting controller {} of host {}",
                self.subsystem.nqn,
                controller.cntlid,
                controller.host_nqn
            );
            controller.terminate();
        }
        controllers.iter().map(Arc::downgrade).collect()
    }

    /// Waits until `controllers` (of this registry) have all gone, their last queue closed, or
    /// until `deadline`. Returns how many are still there.
    pub fn wait_until_gone(
        &self,
        controllers: &[Weak<FabricController>],
        deadline: Instant,
    ) -> usize {
        let mut guard = lock(&self.controllers);
        loop {
            let left = controllers.iter().filter(|c| c.strong_count() > 0).count();
            let now = Instant::now();
            if left == 0 || now >= deadline {
                return left;
            }
            guard = self
                .released
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
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
    /// Attaches I/O queue `connect.qid`: it must be within the granted number of queues, not
    /// attached yet, of a size within CAP.MQES, on an enabled controller.
    pub fn attach_io_queue(
        self: &Arc<Self>,
        connect: &ConnectCommand,
    ) -> Result<IoQueueAttachment, ConnectRejection> {
        let invalid_qid =
            |reason| ConnectRejection::invalid_command_field(connect_offset::QID, reason);
        let mut state = lock(&self.state);
        if self.is_discovery() {
            return Err(invalid_qid("a discovery controller has no I/O queues"));
        }
        if self.is_terminated() || !state.ready() {
            return Err(invalid_qid("the controller is not enabled"));
        }
        if connect.qid == 0 || connect.qid > state.io_queues_granted {
            return Err(invalid_qid(
                "the QID is beyond the I/O queues granted (Set Features Number of Queues)",
            ));
        }
        if connect.sqsize == 0 || connect.sqsize >= self.registry.settings.max_queue_depth {
            return Err(ConnectRejection::invalid_command_field(
                connect_offset::SQSIZE,
                "the I/O queue size is beyond CAP.MQES",
            ));
        }
        if !state.io_queues.insert(connect.qid) {
            return Err(invalid_qid(
                "an I/O queue with this QID is connected already",
            ));
        }
        Ok(IoQueueAttachment {
            controller: Arc::clone(self),
            qid: connect.qid,
            entries: connect.queue_entries(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::AdminResponse;
    use super::*;
    use crate::listeners::ListenerInfo;
    use vfnvme_spec::fabrics::connect_status;
    use vfnvme_spec::regs;

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
        for sqsize in [0, MAX_ADMIN_QUEUE_ENTRIES] {
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
    fn connects_are_routed_by_subsystem_nqn() {
        let target = TargetSubsystems::new(
            vec![(Arc::new(subsystem()), access())],
            Arc::new(ListenerTable::new(vec![
                ListenerInfo::plain(local().local_address),
                ListenerInfo::plain("192.0.2.1:4421".parse().unwrap()),
            ])),
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
        let elsewhere = Arrival {
            listener: 1,
            ..local()
        };
        assert_rejection(
            target
                .connect(&admin_connect(0), &data(0xffff), elsewhere, now)
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
