//! Opening what backs a namespace, and attaching namespaces to (and detaching them from) the
//! running target. The target's start opens every configured namespace's drive with
//! [`open_backing`]; `nvmf_subsystem_add_ns` goes through the same function, then
//! [`add_namespace`] gives every poll group its queue and the subsystem's new namespace table
//! (through its ring, `group_control`) before hosts hear of it. [`remove_namespace`] is the
//! hot-removal path for one namespace: the table without it goes out first (new commands get
//! Invalid Namespace), then hosts hear of it, then, if no namespace uses the drive any more,
//! the poll groups drain and drop their queues and the drive is released
//! ([`release_if_unneeded`], which `nvmf_delete_subsystem` uses too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{BackendQueue, Drive, DriveSlot};
use crate::config::{BackingConfig, NamespaceConfig};
use crate::ctrlr::ControllerRegistry;
use crate::group_control::{apply_everywhere, Change, GroupLink};
use crate::session::{describe_drive, NamespaceRoute};
use crate::shared::TargetShared;
use crate::subsystem::{drive_key, namespace_info, NamespaceBacking, NamespaceInfo};

/// Opens the vfio-bound drive at a PCI address (tests put simulated controllers there).
pub type PciOpener = Box<dyn FnMut(&str) -> vfnvme_driver::Result<Drive> + Send>;

/// A namespace's drive could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Drive(#[from] vfnvme_driver::Error),
    #[error("RAM namespace of {bytes} bytes: {source}")]
    Ram {
        bytes: u64,
        #[source]
        source: std::io::Error,
    },
}

/// Why a namespace was not attached or detached.
#[derive(Debug)]
pub enum AttachError {
    /// What was asked cannot be done (a drive that cannot be exported, or not in this
    /// subsystem): the message says why.
    Refused(String),
    /// It could be done, and failed (a drive that did not open, a poll group that did not
    /// answer).
    Failed(String),
}

/// The drive namespace `namespace` of subsystem `nqn` needs, opened, with the name the target
/// knows it by: for a `pci` namespace the drive `open_pci` opens (a drive serving several
/// namespaces is opened once: the caller looks for it first), else a new RAM disk or simulated
/// controller.
pub fn open_backing(
    nqn: &str,
    namespace: &NamespaceConfig,
    open_pci: &mut dyn FnMut(&str) -> vfnvme_driver::Result<Drive>,
) -> Result<(String, Drive), OpenError> {
    Ok(match &namespace.backing {
        BackingConfig::Passthrough { pci, .. } => (pci.clone(), open_pci(pci)?),
        BackingConfig::Simulated {
            bytes,
            block_size,
            latency_us,
            metadata_bytes,
            log_page_latency_ms,
        } => {
            let (key, _) = drive_key(nqn, namespace);
            let drive = Drive::simulated(
                bytes / u64::from(*block_size),
                *block_size,
                Duration::from_micros(*latency_us),
                *metadata_bytes,
                Duration::from_millis(*log_page_latency_ms),
            )?;
            (key, drive)
        }
        BackingConfig::Ram { bytes, block_size } => {
            let drive =
                Drive::ram(bytes / u64::from(*block_size), *block_size).map_err(|source| {
                    OpenError::Ram {
                        bytes: *bytes,
                        source,
                    }
                })?;
            (format!("ram:{nqn}:{}", namespace.nsid), drive)
        }
    })
}

/// A drive's buffers hold the largest command any subsystem may send it: its own limit,
/// capped by `max_io_size` (subsystems advertise at most that, as a power of two).
pub fn buffer_size(drive: &Drive, max_io_size: Option<u32>) -> usize {
    let limit = drive.max_transfer();
    max_io_size
        .map_or(limit, |cap| (cap as usize).min(limit))
        .next_multiple_of(4096)
}

/// The drive namespace `namespace` is served by: an open drive at its PCI address, or one
/// opened now (appended to the target's drives) with a queue for each of `groups` poll groups.
struct Backing {
    index: usize,
    queues: Vec<Option<BackendQueue>>,
}

impl Backing {
    /// Gives back a drive opened for a namespace that was then refused.
    fn abandon(self, shared: &TargetShared) {
        if !self.queues.is_empty() {
            drop(self.queues);
            let slot = &shared.drives()[self.index];
            slot.retire();
            slot.release_if_unused();
        }
    }
}

fn open_for(
    shared: &TargetShared,
    groups: usize,
    nqn: &str,
    namespace: &NamespaceConfig,
    open_pci: &mut PciOpener,
) -> Result<Backing, AttachError> {
    if let BackingConfig::Passthrough { pci, .. } = &namespace.backing {
        let open = shared
            .drives()
            .iter()
            .rev()
            .find(|(_, slot)| slot.name() == pci && !slot.is_removed());
        if let Some((index, _)) = open {
            return Ok(Backing {
                index,
                queues: Vec::new(),
            });
        }
    }
    let failed = |error: &dyn std::fmt::Display| AttachError::Failed(error.to_string());
    let (name, drive) = open_backing(nqn, namespace, open_pci).map_err(|e| failed(&e))?;
    let settings = shared.settings();
    let size = buffer_size(&drive, settings.max_io_size).min(shared.max_h2c_data() as usize);
    let queues = (0..groups)
        .map(|_| drive.open_queue(settings.max_queue_depth, size).map(Some))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&e))?;
    let slot = DriveSlot::new(name, drive, size).map_err(|e| failed(&e))?;
    let index = shared.drives().push(slot).map_err(|e| failed(&e))?;
    Ok(Backing { index, queues })
}

/// Attaches `namespace` to the subsystem of `registry` while hosts use it: opens its drive
/// (or finds it open), checks it against what the subsystem's hosts were told, gives every
/// poll group its queue and the new namespace table and waits until each has them, then tells
/// the subsystem's controllers (Namespace Attribute Changed, Changed Namespace List).
pub fn add_namespace(
    shared: &TargetShared,
    links: &mut [GroupLink],
    open_pci: &mut PciOpener,
    registry: &ControllerRegistry,
    namespace: &NamespaceConfig,
) -> Result<(), AttachError> {
    let subsystem = Arc::clone(registry.subsystem());
    let backing = open_for(shared, links.len(), &subsystem.nqn, namespace, open_pci)?;
    let index = backing.index;
    let slot = &shared.drives()[index];
    let described = namespace_info(&subsystem.nqn, namespace, |key, device_nsid| {
        describe_drive(shared.drives(), index, key, device_nsid)
    })
    .and_then(|(info, drive)| {
        subsystem.admits(slot.name(), drive.as_ref(), slot.buffer_size())?;
        Ok(info)
    });
    let info = match described {
        Ok(info) => info,
        Err(reason) => {
            backing.abandon(shared);
            return Err(AttachError::Refused(reason));
        }
    };
    let device_nsid = match info.backend {
        NamespaceBacking::Passthrough { device_nsid, .. } => device_nsid,
        NamespaceBacking::Ram { .. } => 1,
    };
    let route = NamespaceRoute {
        nsid: namespace.nsid,
        drive: index,
        device_nsid,
        block_size: info.block_size,
        oncs: subsystem.oncs,
    };
    let mut namespaces: Vec<NamespaceInfo> = subsystem.namespaces.get().to_vec();
    namespaces.push(info);
    namespaces.sort_by_key(|namespace| namespace.nsid);
    let mut routes: Vec<NamespaceRoute> = shared.registry().routes_of(&subsystem.nqn).to_vec();
    routes.push(route);
    routes.sort_by_key(|route| route.nsid);
    let routes: Arc<[NamespaceRoute]> = routes.into();
    // New Connects, then the queues connected already, then Identify (which never lists a
    // namespace a queue would refuse); hosts last.
    shared
        .registry()
        .set_routes(&subsystem.nqn, Arc::clone(&routes));
    let mut queues = backing.queues;
    for _ in queues.iter().flatten() {
        slot.hold();
    }
    apply_everywhere(
        links,
        |group, done| Change {
            drive: queues
                .get_mut(group)
                .and_then(Option::take)
                .map(|queue| (index, queue)),
            subsystem: Arc::clone(&subsystem),
            routes: Arc::clone(&routes),
            done,
        },
        shared.settings().shutdown_deadline,
    )
    .map_err(AttachError::Failed)?;
    subsystem.namespaces.replace(namespaces.into());
    for controller in registry.live_controllers() {
        controller.post_namespace_changed(namespace.nsid);
    }
    Ok(())
}

/// Detaches namespace `nsid` from the subsystem of `registry`: the new table goes out first,
/// so new commands to it get Invalid Namespace while those in flight complete; then the
/// subsystem's controllers are told; then, if no namespace of any subsystem uses its drive any
/// more, every poll group drains and drops its queue to it and the drive is released (its
/// queues deleted, its memory unmapped, its device closed) before this returns.
pub fn remove_namespace(
    shared: &TargetShared,
    links: &mut [GroupLink],
    registry: &ControllerRegistry,
    nsid: u32,
) -> Result<(), AttachError> {
    let subsystem = Arc::clone(registry.subsystem());
    let routes = shared.registry().routes_of(&subsystem.nqn);
    let Some(removed) = routes.iter().find(|route| route.nsid == nsid).copied() else {
        return Err(AttachError::Refused(format!(
            "subsystem {} has no namespace {nsid}",
            subsystem.nqn
        )));
    };
    let routes: Arc<[NamespaceRoute]> = routes
        .iter()
        .filter(|route| route.nsid != nsid)
        .copied()
        .collect();
    let namespaces: Vec<NamespaceInfo> = subsystem
        .namespaces
        .get()
        .iter()
        .filter(|namespace| namespace.nsid != nsid)
        .cloned()
        .collect();
    // Identify first (it never lists a namespace a queue would refuse), then new Connects,
    // then the queues connected already; hosts last.
    subsystem.namespaces.replace(namespaces.into());
    shared
        .registry()
        .set_routes(&subsystem.nqn, Arc::clone(&routes));
    let deadline = shared.settings().shutdown_deadline;
    apply_everywhere(
        links,
        |_, done| Change {
            drive: None,
            subsystem: Arc::clone(&subsystem),
            routes: Arc::clone(&routes),
            done,
        },
        deadline,
    )
    .map_err(AttachError::Failed)?;
    for controller in registry.live_controllers() {
        controller.post_namespace_changed(nsid);
    }
    release_if_unneeded(shared, links, removed.drive)
}

/// Gives drive `drive` up if no namespace of any subsystem uses it any more (a namespace was
/// removed, or a subsystem deleted): every poll group drains and drops its queue to it, and the
/// drive is released (queues deleted, memory unmapped, device closed) before this returns.
pub fn release_if_unneeded(
    shared: &TargetShared,
    links: &[GroupLink],
    drive: usize,
) -> Result<(), AttachError> {
    if shared.registry().drive_in_use(drive) {
        return Ok(());
    }
    let slot = &shared.drives()[drive];
    if slot.is_removed() && slot.lock().is_none() {
        return Ok(());
    }
    slot.retire();
    for link in links.iter() {
        link.wake();
    }
    // The groups give commands still on the drive their time (`REMOVAL_DRAIN`), then fail them.
    let within = shared.settings().shutdown_deadline + Duration::from_secs(5);
    if !slot.wait_until_unused(Instant::now() + within) {
        return Err(AttachError::Failed(format!(
            "poll groups still hold queues to drive {} after {within:?}; it is released when \
             they let go",
            slot.name()
        )));
    }
    if slot.release_if_unused() {
        log::info!("management: drive {} released", slot.name());
    }
    Ok(())
}
