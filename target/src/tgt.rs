//! The target: drives, subsystems, listeners, the acceptor and the poll groups, and the order
//! in which they go away.
//!
//! Shutdown order, by ownership: the listeners close first (no new connections), then the
//! management thread (no more changes; it finishes the request it carries out); the acceptor
//! then tells each poll group to stop, which stops taking commands, drains its drives' queues,
//! answers, closes its sockets and deletes its hardware queues, and joins its thread; the
//! acceptor's handles are the only way to reach a poll group, so once they are gone no one can
//! hand a connection to a stopped group (the SPDK #3273 failure). The admin worker goes
//! next (its channel ends with the poll groups; it finishes the admin
//! command it runs), and the drives, shared by all, go last: controllers shut down (CC.SHN)
//! when the last poll group has let go of them.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::admin_worker::{AdminChannel, AdminWorker, ResultRing};
use crate::admission::{ensure_fd_room, Admission, ConnectionTicket, RefusalLog};
use crate::attach::{buffer_size, open_backing, OpenError, PciOpener};
use crate::backend::{Drive, DriveSlot};
use crate::config::{BackingConfig, Config};
use crate::drive_table::DriveTable;
use crate::group_control;
use crate::listeners::{AcceptorListeners, ListenerInfo, ListenerTable, CHANGE_TOKEN};
use crate::poll_group::{PollGroupHandle, PollGroupSummary};
use crate::rpc::{Management, ManagementServer, SocketError};
use crate::session::{DrivePlacement, Registry};
use crate::shared::TargetShared;
use crate::stats::{MetricsServer, StatsBoard};
use crate::tls::{PskTable, TlsServer};

/// Why the target could not start.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Drive(#[from] vfnvme_driver::Error),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{0}")]
    Drives(#[from] crate::drive_table::TableFull),
    #[error("cannot listen on {address}: {source} (is another target running?)")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Subsystem(String),
    #[error(transparent)]
    Cpus(#[from] crate::cpus::CpuError),
    #[error("starting poll group {index}: {source}")]
    PollGroup {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the admin worker thread: {0}")]
    AdminWorker(#[source] std::io::Error),
    #[error("setting up TLS (OpenSSL): {0}")]
    Tls(#[source] openssl::error::ErrorStack),
    #[error("the acceptor failed: {0}")]
    Acceptor(#[source] std::io::Error),
    #[error(transparent)]
    Management(#[from] SocketError),
    #[error("cannot serve metrics on {address}: {source} ([metrics] address; is another target running?)")]
    Metrics {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running target.
pub struct Target {
    listeners: AcceptorListeners,
    /// After the listeners, before the poll groups: changes stop before hosts are stopped.
    management: Option<ManagementServer>,
    /// The Prometheus endpoint, when `[metrics] address` is set.
    metrics: Option<MetricsServer>,
    epoll: Epoll,
    /// Declared after the listeners: they close first.
    groups: Vec<PollGroupHandle>,
    /// After the poll groups: its thread ends once they are gone.
    admin_worker: AdminWorker,
    next_group: usize,
    /// Connections refused by `[limits]`, logged at most once a second.
    refusals: RefusalLog,
    /// Out of file descriptors: the listeners are out of epoll until then.
    accept_paused_until: Option<Instant>,
    /// Drives whose removal eventfd is in epoll: the first this many (drives opened while
    /// the target runs are added as they appear).
    watched_drives: usize,
    shared: Arc<TargetShared>,
}

/// What shutdown did.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    pub abandoned_commands: usize,
    pub connections_served: u64,
}

impl Target {
    /// Opens the drives, builds the subsystems, listens, and starts the poll groups.
    pub fn start(config: Config) -> Result<Self, TargetError> {
        Self::start_opening(config, Drive::open_pci)
    }

    /// As [`Self::start`], with `open_pci` opening the drive of each `pci` address (tests put
    /// simulated controllers there), at start and for `nvmf_subsystem_add_ns`.
    pub fn start_opening(
        config: Config,
        open_pci: impl FnMut(&str) -> vfnvme_driver::Result<Drive> + Send + 'static,
    ) -> Result<Self, TargetError> {
        // Before the drives: a CPU the process may not use must not cost a controller reset.
        if let Some(cpus) = &config.target.cpus {
            crate::cpus::check_allowed(cpus)?;
        }
        let mut open_pci: PciOpener = Box::new(open_pci);
        let mut drives: Vec<(String, Drive)> = Vec::new();
        let mut placement = DrivePlacement {
            pci: Vec::new(),
            ram: Vec::new(),
        };
        for subsystem in &config.subsystems {
            for namespace in &subsystem.namespaces {
                // A drive with several namespaces is opened once.
                if let BackingConfig::Passthrough { pci, .. } = &namespace.backing {
                    if placement.pci.iter().any(|(address, _)| address == pci) {
                        continue;
                    }
                }
                let (name, drive) = open_backing(&subsystem.nqn, namespace, &mut open_pci)?;
                let index = drives.len();
                match &namespace.backing {
                    BackingConfig::Ram { .. } => {
                        placement
                            .ram
                            .push((subsystem.nqn.clone(), namespace.nsid, index))
                    }
                    _ => placement.pci.push((name.clone(), index)),
                }
                drives.push((name, drive));
            }
        }
        let buffer_sizes: Vec<usize> = drives
            .iter()
            .map(|(_, drive)| buffer_size(drive, config.target.max_io_size))
            .collect();
        // No drive opened later has larger buffers: they are capped by this, which is
        // max_io_size when set (the default).
        let max_h2c_data = buffer_sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(config.target.max_io_size.unwrap_or(0) as usize)
            .max(crate::subsystem::RAM_MAX_IO_SIZE as usize) as u32;

        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io)?;
        let mut sockets = Vec::new();
        let mut bound = Vec::new();
        for listener in &config.listeners {
            let socket = listen(listener.address).map_err(|source| TargetError::Listen {
                address: listener.address,
                source,
            })?;
            bound.push(ListenerInfo {
                address: socket.local_addr().map_err(TargetError::Acceptor)?,
                secure_channel: listener.secure_channel,
                open: true,
            });
            sockets.push(socket);
        }
        let (listeners, listener_control) = AcceptorListeners::new(sockets, &epoll).map_err(io)?;
        let listener_table = Arc::new(ListenerTable::new(bound));
        let table = Arc::new(DriveTable::default());
        for ((name, drive), size) in drives.into_iter().zip(buffer_sizes) {
            table.push(DriveSlot::new(name, drive, size).map_err(TargetError::Acceptor)?)?;
        }
        let drives = table;
        for (index, slot) in drives.iter() {
            watch_removal(&epoll, index, slot).map_err(io)?;
        }
        ensure_fd_room(&config.target.limits);
        let admission = Admission::new(config.target.limits.clone());
        let registry = Registry::build(
            &config,
            &drives,
            &placement,
            Arc::clone(&listener_table),
            Arc::clone(&admission),
        )
        .map_err(TargetError::Subsystem)?;
        let depth = config.target.max_queue_depth;
        let shared = Arc::new(TargetShared::new(
            config.target.clone(),
            max_h2c_data,
            registry,
            listener_table,
            tls_server(&config)?,
            drives,
            admission,
        ));
        warn_unreachable(&config);
        // Before the poll groups: if the socket is refused, nothing has started that must be
        // stopped in order.
        let (stats, mut group_stats) = StatsBoard::new(config.target.cores);
        let (group_links, mut inboxes) =
            group_control::links(config.target.cores).map_err(TargetError::Acceptor)?;
        let management = match config.target.rpc_socket.clone() {
            None => None,
            Some(path) => {
                // The running configuration names the ports the system chose for port 0.
                let mut running = config.clone();
                for (listener, bound) in running.listeners.iter_mut().zip(shared.listeners().all())
                {
                    listener.address = bound.address;
                }
                let management = Management {
                    shared: Arc::clone(&shared),
                    config: running,
                    stats: Arc::clone(&stats),
                    groups: group_links,
                    open_pci,
                    listeners: listener_control,
                };
                Some(ManagementServer::start(&path, management)?)
            }
        };
        let metrics = match config.metrics_address {
            None => None,
            Some(address) => Some(
                MetricsServer::start(address, Arc::clone(&stats))
                    .map_err(|source| TargetError::Metrics { address, source })?,
            ),
        };
        let admin = AdminChannel::new();
        let mut groups = Vec::new();
        let mut admin_rings = Vec::new();
        for index in 0..config.target.cores {
            let backends = shared
                .drives()
                .iter()
                .map(|(_, slot)| {
                    let queue = slot
                        .lock()
                        .as_ref()
                        .expect("drives are present at start")
                        .open_queue(depth, slot.buffer_size())?;
                    slot.hold();
                    Ok(queue)
                })
                .collect::<Result<Vec<_>, vfnvme_driver::Error>>()?;
            let (group, ring) = PollGroupHandle::spawn(
                index,
                config.target.cpus.as_ref().map(|cpus| cpus[index]),
                Arc::clone(&shared),
                backends,
                inboxes.remove(0),
                admin.submitter(index),
                group_stats.remove(0),
            )
            .map_err(|source| TargetError::PollGroup { index, source })?;
            admin_rings.push(ResultRing {
                ring,
                wake: group.waker(),
            });
            groups.push(group);
        }
        let admin_worker = admin.start(admin_rings).map_err(TargetError::AdminWorker)?;
        log::info!(
            "target started: {} poll groups, {} drives, listening on {:?}",
            groups.len(),
            shared.drives().len(),
            self_addresses(&shared)
        );
        Ok(Self {
            listeners,
            management,
            metrics,
            epoll,
            groups,
            admin_worker,
            next_group: 0,
            refusals: RefusalLog::default(),
            accept_paused_until: None,
            watched_drives: shared.drives().len(),
            shared,
        })
    }

    /// Where the Prometheus endpoint listens, if it does.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::address)
    }

    /// The addresses of the configured listeners (with the port the system chose for port
    /// 0), then of those opened since.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self_addresses(&self.shared)
    }

    /// Accepts connections and hands them to poll groups until `stop` becomes readable.
    pub fn run_until(&mut self, stop: impl AsFd) -> Result<(), TargetError> {
        const STOP_TOKEN: u64 = u64::MAX;
        self.epoll
            .add(
                stop.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, STOP_TOKEN),
            )
            .map_err(io)?;
        let mut events = [EpollEvent::empty(); 16];
        loop {
            // While a removed drive waits for its poll groups, look again soon.
            self.watch_new_drives();
            let releasing = self
                .shared
                .drives()
                .iter()
                .any(|(_, slot)| slot.is_removed() && slot.lock().is_some());
            let timeout: u16 = if releasing || self.accept_paused_until.is_some() {
                10
            } else {
                1000
            };
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(error) => return Err(io(error)),
            };
            for event in &events[..ready] {
                match event.data() {
                    STOP_TOKEN => {
                        let _ = self.epoll.delete(stop.as_fd());
                        return Ok(());
                    }
                    CHANGE_TOKEN => self
                        .listeners
                        .apply_changes(&self.epoll, self.accept_paused_until.is_some()),
                    token if token >= REMOVAL_TOKEN_BASE => {
                        self.on_removal_request((token - REMOVAL_TOKEN_BASE) as usize)
                    }
                    listener => self.accept(listener as usize),
                }
            }
            if releasing {
                self.release_removed_drives();
            }
            self.refusals.report_unlogged();
            self.resume_accepting();
        }
    }

    /// Out of file descriptors: a level-triggered listener would wake the acceptor at once,
    /// again and again, so the listeners leave epoll for `ACCEPT_PAUSE` while connections
    /// close and give theirs back. The connections waiting meanwhile stay in the backlog.
    fn pause_accepting(&mut self, error: &std::io::Error) {
        log::warn!(
            "accept failed: {error}; not accepting for {ACCEPT_PAUSE:?} (raise LimitNOFILE, \
             or lower limits.connections)"
        );
        self.listeners.unregister(&self.epoll);
        self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
    }

    fn resume_accepting(&mut self) {
        if self
            .accept_paused_until
            .is_none_or(|until| Instant::now() < until)
        {
            return;
        }
        self.accept_paused_until = None;
        self.listeners.register(&self.epoll);
    }

    /// The kernel (hot removal) or an operator wants drive `index` back: new commands to it
    /// fail, hosts get an asynchronous event, each poll group lets go of its queue to it once
    /// its commands completed, and then the drive is dropped.
    fn on_removal_request(&mut self, index: usize) {
        let slot = &self.shared.drives()[index];
        if !slot.take_removal_signal() {
            return;
        }
        log::warn!(
            "drive {}: removal requested; failing new commands and releasing it",
            slot.name()
        );
        if let Some(slot_with_event) = slot.removal_event().as_ref() {
            let _ = self.epoll.delete(slot_with_event.as_fd());
        }
        self.shared.registry().notify_drive_removed(index);
        for group in &self.groups {
            group.wake();
        }
    }

    /// Watches the removal eventfds of drives opened since the last look (by
    /// `nvmf_subsystem_add_ns`): a drive added at runtime can be hot-removed too.
    fn watch_new_drives(&mut self) {
        let drives = self.shared.drives();
        while self.watched_drives < drives.len() {
            let index = self.watched_drives;
            if let Err(error) = watch_removal(&self.epoll, index, &drives[index]) {
                log::error!(
                    "drive {}: cannot watch for its removal: {error}",
                    drives[index].name()
                );
            }
            self.watched_drives += 1;
        }
    }

    fn release_removed_drives(&self) {
        for (_, slot) in self.shared.drives().iter() {
            if slot.release_if_unused() {
                log::warn!("drive {}: released", slot.name());
            }
        }
    }

    /// A handle for asking, from another thread, for drives to be given up as a hot removal
    /// does.
    pub fn drive_control(&self) -> DriveControl {
        DriveControl {
            drives: self.shared.drives_weak(),
        }
    }

    fn accept(&mut self, listener: usize) {
        loop {
            let accepted = match self.listeners.socket(listener) {
                Some(socket) => socket.accept(),
                // Closed since epoll said it was readable.
                None => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    log::debug!("connection from {peer}");
                    // Refused by closing at once: before its ICReq a host can be told nothing.
                    match self.shared.admission().admit_connection(peer.ip()) {
                        Ok(ticket) => self.hand_over(stream, listener, ticket),
                        Err(refusal) => self.refusals.note(peer, &refusal),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                        nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE
                    ) =>
                {
                    self.pause_accepting(&e);
                    return;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Round robin over the groups whose gate is open, skipping one whose ring is fuller than
    /// the others'.
    fn hand_over(
        &mut self,
        mut stream: std::net::TcpStream,
        listener: usize,
        mut ticket: ConnectionTicket,
    ) {
        let count = self.groups.len();
        let least = self
            .groups
            .iter()
            .filter(|group| group.is_open())
            .map(PollGroupHandle::backlog)
            .min()
            .unwrap_or(0);
        for attempt in 0..count * 2 {
            let index = (self.next_group + attempt) % count;
            if !self.groups[index].is_open()
                || (attempt < count && self.groups[index].backlog() > least)
            {
                continue;
            }
            match self.groups[index].hand_over(stream, listener, ticket) {
                Ok(()) => {
                    self.next_group = (index + 1) % count;
                    return;
                }
                Err(back) => (stream, ticket) = back,
            }
        }
        log::warn!("every poll group is saturated; refusing a connection");
    }

    /// Stops in order: listeners, then each poll group (drain, answer, close, delete queues),
    /// then the drives.
    pub fn shut_down(self) -> ShutdownReport {
        let Self {
            listeners,
            management,
            metrics,
            groups,
            admin_worker,
            shared,
            ..
        } = self;
        drop(listeners);
        drop(management);
        drop(metrics);
        shared.start_shutdown();
        let mut report = ShutdownReport::default();
        // Every group stops taking commands before any closes a socket: an admin queue closed
        // by one group ends its controller, whose I/O queues may live on another.
        let mut groups = groups;
        for group in &mut groups {
            group.request_stop();
        }
        for group in groups {
            let PollGroupSummary {
                abandoned_commands,
                connections_served,
            } = group.join();
            report.abandoned_commands += abandoned_commands;
            report.connections_served += connections_served;
        }
        // Every submitter is gone with its group: the worker ends after the command it runs.
        drop(admin_worker);
        if report.abandoned_commands > 0 {
            log::warn!(
                "shutdown: {} commands did not complete within {:?} and were aborted",
                report.abandoned_commands,
                shared.settings().shutdown_deadline
            );
        }
        drop(shared);
        log::info!("target stopped");
        report
    }
}

/// Subsystems no host can use yet are allowed (the management socket fills them), and said.
fn warn_unreachable(config: &Config) {
    for subsystem in &config.subsystems {
        if !subsystem.allow_any_host && subsystem.hosts.is_empty() {
            log::warn!(
                "subsystem {} admits no host yet; add one with nvmf_subsystem_add_host or set \
                 allow_any_host",
                subsystem.nqn
            );
        }
        if subsystem.namespaces.is_empty() {
            log::warn!("subsystem {} has no namespace yet", subsystem.nqn);
        }
    }
}

/// How long the acceptor stops accepting when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Epoll tokens of drives' removal eventfds start here (listeners count from 0).
const REMOVAL_TOKEN_BASE: u64 = 1 << 32;

/// Puts drive `index`'s removal eventfd, if it has one, in `epoll`.
fn watch_removal(epoll: &Epoll, index: usize, slot: &DriveSlot) -> nix::Result<()> {
    match slot.removal_event().as_ref() {
        Some(event) => epoll.add(
            event.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, REMOVAL_TOKEN_BASE + index as u64),
        ),
        None => Ok(()),
    }
}

/// Lets another thread ask for a drive to be given up while the target runs. It does not keep
/// the drives alive: once the target is gone, it finds nothing.
#[derive(Clone)]
pub struct DriveControl {
    drives: Weak<DriveTable>,
}

impl DriveControl {
    /// Names of the drives: PCI addresses, `sim:<nqn>:<nsid>`, `ram:<nqn>:<nsid>`.
    pub fn names(&self) -> Vec<String> {
        self.drives.upgrade().map_or_else(Vec::new, |drives| {
            drives
                .iter()
                .map(|(_, slot)| slot.name().to_owned())
                .collect()
        })
    }

    /// Signals the removal of drive `name`, as the kernel does on hot removal. Returns whether
    /// such a drive exists (RAM drives cannot be removed).
    pub fn request_removal(&self, name: &str) -> bool {
        let Some(drives) = self.drives.upgrade() else {
            return false;
        };
        // A name comes back when a namespace is removed and added again: the newest is meant.
        let newest = drives.iter().rev().find(|(_, slot)| slot.name() == name);
        let Some((_, slot)) = newest.filter(|(_, slot)| slot.removal_event().is_some()) else {
            return false;
        };
        slot.request_removal();
        true
    }

    /// Whether drive `name` has been released (or the target is gone).
    pub fn is_released(&self, name: &str) -> bool {
        self.drives.upgrade().is_none_or(|drives| {
            drives
                .iter()
                .rev()
                .find(|(_, slot)| slot.name() == name)
                .is_some_and(|(_, slot)| slot.is_removed() && slot.lock().is_none())
        })
    }
}

fn io(errno: nix::errno::Errno) -> TargetError {
    TargetError::Acceptor(errno.into())
}

/// The TLS context, always (a TLS listener and hosts' PSKs may come at runtime); its PSK
/// table from every subsystem's host PSKs.
fn tls_server(config: &Config) -> Result<TlsServer, TargetError> {
    let table = Arc::new(PskTable::new(&config.subsystems));
    TlsServer::new(table).map_err(TargetError::Tls)
}

/// A non-blocking listening socket on `address` (the acceptor's and the management
/// thread's).
pub(crate) fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpListener::bind(address)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn self_addresses(shared: &TargetShared) -> Vec<SocketAddr> {
    shared
        .listeners()
        .all()
        .iter()
        .map(|info| info.address)
        .collect()
}
