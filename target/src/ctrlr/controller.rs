//! The fabric controller's state: [`FabricController`] with its admin state behind a mutex,
//! and the [`ControllerRegistry`] of its subsystem, with the settings and the forwarder both
//! use. The two types are here together because each refers to the other: a controller keeps
//! its registry alive (`Arc`), the registry knows its controllers weakly, and a controller's
//! `Drop` frees its ID there. What they do lives beside: the Connect logic in `registry`, each
//! command in its own file, the dispatch in `mod.rs`; all of them build on this leaf.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use vfnvme_spec::regs::{Cc, Csts, Vs};
use vfnvme_spec::Status;

use super::response::{AdminResponse, AerCompletion};
use crate::admission::{Admission, ControllerTicket};
use crate::config::HostKey;
use crate::config::TargetConfig;
use crate::listeners::ListenerTable;
use crate::subsystem::{HostAccess, NamespaceBacking, Subsystem};

/// NVMe version the controllers report (VS and Identify Controller VER): 1.3.0.
pub const NVME_VERSION: Vs = Vs::of(1, 3);
/// Asynchronous Event Requests a controller holds at once (Identify AERL + 1).
pub const AER_LIMIT: usize = 4;
/// Keep Alive Support in 100 ms units: the timer has a granularity of one second.
pub(super) const KEEP_ALIVE_SUPPORT: u16 = 10;
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

/// Target-wide settings of controllers, from `[target]`, and the target's admission counts.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// Entries of an I/O queue (CAP.MQES + 1).
    pub max_queue_depth: u16,
    /// In-capsule write data accepted, in bytes.
    pub in_capsule_data_size: u32,
    /// I/O queues a controller grants at most.
    pub max_io_queues: u16,
    /// Keep-alive timeout of discovery controllers connected with KATO 0.
    pub discovery_keep_alive: Duration,
    /// The controller IDs new controllers get, the lowest free one first.
    pub cntlids: RangeInclusive<u16>,
    /// Counts controllers per host NQN against `limits.controllers_per_host`.
    pub admission: Arc<Admission>,
}

impl ControllerSettings {
    pub fn from_config(target: &TargetConfig, admission: Arc<Admission>) -> Self {
        Self {
            max_queue_depth: target.max_queue_depth,
            in_capsule_data_size: target.in_capsule_data_size,
            max_io_queues: target.max_io_queues,
            discovery_keep_alive: target.keep_alive_timeout,
            cntlids: target.cntlids.clone(),
            admission,
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Admin state stays consistent across a panic: every update is a single assignment.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn keep_alive_from_ms(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| {
        let rounded = u64::from(ms).div_ceil(KEEP_ALIVE_GRANULARITY_MS) * KEEP_ALIVE_GRANULARITY_MS;
        Duration::from_millis(rounded)
    })
}

pub(super) struct AdminState {
    pub(super) cc: Cc,
    pub(super) csts: Csts,
    pub(super) keep_alive: Option<Duration>,
    pub(super) last_keep_alive: Instant,
    pub(super) io_queues_granted: u16,
    pub(super) io_queues: BTreeSet<u16>,
    pub(super) async_event_config: u32,
    pub(super) arbitration: u32,
    pub(super) power_management: u32,
    /// Volatile write cache setting of RAM namespaces (they have nothing to forward to).
    pub(super) ram_write_cache: bool,
    /// Command IDs of held Asynchronous Event Requests, oldest first.
    pub(super) held_aers: Vec<u16>,
    /// AERs completed by an event noticed on another thread, for the admin queue's
    /// connection to send.
    pub(super) completed_aers: Vec<AerCompletion>,
    pub(super) queued_events: VecDeque<u32>,
    pub(super) changed_namespaces: Vec<u32>,
    /// A Namespace Attribute Changed event was reported and the host has not yet read the
    /// Changed Namespace List: no further event until it does.
    pub(super) namespace_notices_masked: bool,
    /// A Discovery Log Page Change event was reported and the host has not yet read the
    /// discovery log: no further event until it does (as nvmet's masked AENs).
    pub(super) discovery_notices_masked: bool,
}

impl AdminState {
    /// A new controller's state: disabled, the keep-alive timer started at `now`.
    pub(super) fn new(keep_alive: Option<Duration>, now: Instant, io_queues_granted: u16) -> Self {
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
            discovery_notices_masked: false,
        }
    }

    pub(super) fn ready(&self) -> bool {
        self.cc.en() && self.csts.rdy()
    }
}

/// Where a queue's connection arrived: the listener (its index in the target's listeners) and
/// the local address the host reached, which for a wildcard listener is the one the host chose
/// (discovery entries report it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub listener: usize,
    pub local_address: SocketAddr,
}

/// A controller of a subsystem, as one host sees it.
pub struct FabricController {
    pub(super) registry: Arc<ControllerRegistry>,
    pub(super) cntlid: u16,
    pub(super) host_nqn: String,
    pub(super) host_id: [u8; 16],
    /// Where the admin queue arrived.
    pub(super) arrival: Arrival,
    /// CSTS.RDY, for the I/O path.
    pub(super) enabled: AtomicBool,
    pub(super) terminated: AtomicBool,
    pub(super) state: Mutex<AdminState>,
    /// Its place in its host's count of controllers, given back with it.
    pub(super) _admission: ControllerTicket,
}

impl FabricController {
    pub fn cntlid(&self) -> u16 {
        self.cntlid
    }

    pub fn host_nqn(&self) -> &str {
        &self.host_nqn
    }

    /// The host's DH-HMAC-CHAP key now, if it has one. Each exchange takes it when it starts
    /// (a queue's Connect, a re-authentication), as SPDK's target: keys changed by
    /// `nvmf_subsystem_set_keys` hold for the host's next queue and next re-authentication,
    /// and its queues already authenticated go on.
    pub fn host_key(&self) -> Option<HostKey> {
        self.registry
            .read_access(|access| access.key_of(&self.host_nqn).cloned())
    }

    pub fn host_id(&self) -> [u8; 16] {
        self.host_id
    }

    /// Where its admin queue arrived.
    pub fn arrival(&self) -> Arrival {
        self.arrival
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
    pub(super) fn backing_drives(&self) -> BTreeSet<usize> {
        self.subsystem()
            .namespaces
            .get()
            .iter()
            .filter_map(|namespace| match namespace.backend {
                NamespaceBacking::Passthrough { device_index, .. } => Some(device_index),
                NamespaceBacking::Ram { .. } => None,
            })
            .collect()
    }
}

/// What a registry's controllers serve: an NVM subsystem's drives, or the discovery log.
pub(super) enum Role {
    Nvm {
        forwarder: Arc<dyn AdminForwarder>,
    },
    Discovery {
        catalog: Arc<Catalog>,
        listeners: Arc<ListenerTable>,
    },
}

/// The NVM subsystems the target exports now (the management socket adds and deletes them):
/// where Connects are looked up, and what discovery controllers list. Read at Connect and
/// discovery time only, never on the I/O path.
pub struct Catalog {
    pub(super) registries: RwLock<Vec<Arc<ControllerRegistry>>>,
    /// The discovery log's Generation Counter: one more at each change of what it lists.
    pub(super) generation: AtomicU64,
}

/// The live controllers of one subsystem, found by controller ID when an I/O queue connects.
pub struct ControllerRegistry {
    pub(super) subsystem: Arc<Subsystem>,
    /// Who may connect, and on which listeners; changes at runtime, read at Connect.
    pub(super) access: Mutex<HostAccess>,
    pub(super) role: Role,
    pub(super) settings: ControllerSettings,
    /// Weak: a controller lives as long as its queues hold it, and its `Drop` frees its ID.
    pub(super) controllers: Mutex<BTreeMap<u16, Weak<FabricController>>>,
    /// Signalled (with `controllers`) each time a controller goes, for whoever waits for a
    /// host's controllers to be gone.
    pub(super) released: Condvar,
}

impl ControllerRegistry {
    /// The registry of an NVM subsystem open to `access`; `forwarder` reaches its drives.
    pub fn for_subsystem(
        subsystem: Arc<Subsystem>,
        access: HostAccess,
        settings: ControllerSettings,
        forwarder: Arc<dyn AdminForwarder>,
    ) -> Arc<Self> {
        Arc::new(Self {
            subsystem,
            access: Mutex::new(access),
            role: Role::Nvm { forwarder },
            settings,
            controllers: Mutex::new(BTreeMap::new()),
            released: Condvar::new(),
        })
    }

    /// The registry of the discovery subsystem, which lists what `catalog` holds on
    /// `listeners`.
    pub fn for_discovery(
        catalog: Arc<Catalog>,
        listeners: Arc<ListenerTable>,
        settings: ControllerSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            subsystem: Arc::new(Subsystem::discovery()),
            access: Mutex::new(HostAccess::discovery(listeners.all().len())),
            role: Role::Discovery { catalog, listeners },
            settings,
            controllers: Mutex::new(BTreeMap::new()),
            released: Condvar::new(),
        })
    }

    pub fn subsystem(&self) -> &Arc<Subsystem> {
        &self.subsystem
    }

    pub fn is_discovery(&self) -> bool {
        matches!(self.role, Role::Discovery { .. })
    }

    /// The controllers alive now (still referenced by a queue).
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
        self.registry.released.notify_all();
    }
}
