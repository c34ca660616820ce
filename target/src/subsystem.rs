//! Subsystems as hosts see them: NQN, identity strings, allowed hosts and namespaces; and the
//! discovery subsystem's log page, which lists them.
//!
//! A [`Subsystem`]'s identity is fixed once built and shared as an `Arc`; its namespace list
//! ([`NamespaceList`]) is replaced whole when the management socket adds or removes a namespace,
//! and read by the admin path only (the I/O path has its own route table, see `session`).
//! Who may connect and on which listeners ([`HostAccess`]) changes while the target runs (the
//! management socket's `nvmf_subsystem_add_host`, `nvmf_subsystem_add_listener` and friends):
//! it is kept apart, by the subsystem's controller registry, and read at Connect and discovery
//! time only.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::config::{
    BackingConfig, HostKey, HostPsk, NamespaceConfig, SecureChannel, SubsystemConfig, TargetConfig,
    MAX_MODEL_BYTES, MAX_SERIAL_BYTES,
};
use crate::listeners::ListenerInfo;
use vfnvme_spec::discovery::{
    DiscoveryLogEntry, DiscoveryLogHeader, TcpSecurityType, ADRFAM_IPV4, ADRFAM_IPV6,
    EFLAGS_DUPRETINFO, EFLAGS_EPCSD, SUBTYPE_CURRENT_DISCOVERY, SUBTYPE_NVME,
    TREQ_SECURE_CHANNEL_NOT_SPECIFIED, TREQ_SECURE_CHANNEL_REQUIRED,
    TREQ_SQ_FLOW_CONTROL_DISABLE_SUPPORTED, TRTYPE_TCP,
};
use vfnvme_spec::fabrics::{CNTLID_DYNAMIC, DISCOVERY_NQN, MAX_ADMIN_QUEUE_ENTRIES};
use vfnvme_spec::identify::{oncs, NamespaceIds};
use vfnvme_spec::padded::PaddedString;
use zerocopy::little_endian::{U16, U64};
use zerocopy::IntoBytes;

/// Largest command of a subsystem backed by memory only, in bytes.
pub const RAM_MAX_IO_SIZE: u32 = 128 * 1024;
/// Smallest transfer size MDTS can express (2 pages of 4 KiB; MDTS 0 means unlimited).
const MIN_MAX_IO_SIZE: u32 = 8192;
/// The optional NVM commands the target passes on to a drive (`conn/io_cmd.rs`): a subsystem
/// advertises those of them that all its drives support.
const FORWARDED_ONCS: u16 = oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT;
/// The optional NVM commands the RAM backend executes (`vfnvme_driver::ram`).
const RAM_ONCS: u16 = oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT;

/// How the target names the drive behind a passthrough or simulated namespace, and which of the
/// drive's namespaces it is: a PCI address (shared by the namespaces of one drive), or for a
/// simulated controller (one per namespace) `sim:<subsystem NQN>:<nsid>`.
pub fn drive_key(subsystem_nqn: &str, namespace: &NamespaceConfig) -> (String, u32) {
    match &namespace.backing {
        BackingConfig::Passthrough { pci, device_nsid } => (pci.clone(), *device_nsid),
        _ => (format!("sim:{subsystem_nqn}:{}", namespace.nsid), 1),
    }
}

/// What a namespace is backed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceBacking {
    /// Memory of `bytes` bytes.
    Ram { bytes: u64 },
    /// Namespace `device_nsid` of drive `device_index` in the target's list of opened drives.
    Passthrough {
        device_index: usize,
        device_nsid: u32,
    },
}

/// A namespace of a subsystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub nsid: u32,
    pub block_size: u32,
    pub blocks: u64,
    /// NGUID, EUI-64 and UUID as hosts see them: the drive's own, else derived from the drive
    /// (see [`drive_namespace_ids`]); for RAM, new at each start, like its content.
    pub ids: NamespaceIds,
    pub backend: NamespaceBacking,
}

/// What the caller knows about one namespace of an opened drive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveNamespace {
    /// Index of the drive in the target's list of opened drives.
    pub device_index: usize,
    pub block_size: u32,
    pub blocks: u64,
    /// PCI Vendor ID (Identify Controller VID).
    pub vid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// The namespace's identifiers as the drive reports them.
    pub ids: NamespaceIds,
    /// The optional NVM commands the drive supports (Identify Controller ONCS).
    pub oncs: u16,
    /// Whether the drive has a volatile write cache (Identify Controller VWC bit 0).
    pub volatile_write_cache: bool,
    /// Largest transfer of one command to the drive, in bytes.
    pub max_transfer: usize,
}

/// An NVM subsystem exported to hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subsystem {
    pub nqn: String,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// Sorted by NSID.
    pub namespaces: NamespaceList,
    /// Largest data transfer of one command, in bytes: a power of two of at least 8 KiB.
    pub max_io_size: u32,
    /// Whether hosts are told about a volatile write cache (and so send Flush).
    pub volatile_write_cache: bool,
    /// The optional NVM commands hosts are told of (ONCS) and may send.
    pub oncs: u16,
}

impl Subsystem {
    /// Builds a subsystem from its configuration; `drive_namespace(key, device_nsid)` tells what
    /// the opened drive known by `key` (see [`drive_key`]) offers as namespace `device_nsid`, or
    /// why it cannot.
    pub fn from_config<E: From<String>>(
        config: &SubsystemConfig,
        target: &TargetConfig,
        mut drive_namespace: impl FnMut(&str, u32) -> Result<DriveNamespace, E>,
    ) -> Result<Subsystem, E> {
        let mut namespaces = Vec::with_capacity(config.namespaces.len());
        let mut drives: Vec<DriveNamespace> = Vec::new();
        let mut has_ram = false;
        for namespace in &config.namespaces {
            let (info, drive) = namespace_info(&config.nqn, namespace, &mut drive_namespace)?;
            has_ram |= drive.is_none();
            drives.extend(drive);
            namespaces.push(info);
        }
        namespaces.sort_by_key(|namespace| namespace.nsid);

        let drive_limit = drives
            .iter()
            .map(|drive| u32::try_from(drive.max_transfer).unwrap_or(u32::MAX))
            .min();
        let max_io_size = match (drive_limit, target.max_io_size) {
            (Some(drive), Some(cap)) => drive.min(cap),
            (Some(drive), None) => drive,
            (None, Some(cap)) => cap,
            (None, None) => RAM_MAX_IO_SIZE,
        };
        let max_io_size = prev_power_of_two(max_io_size).max(MIN_MAX_IO_SIZE);

        // Identity strings come from the drive when the subsystem is just that one drive, so
        // that `nvme list` on the host shows what is behind it.
        let single_drive = match drives.split_first() {
            Some((first, rest))
                if !has_ram && rest.iter().all(|d| d.device_index == first.device_index) =>
            {
                Some(first)
            }
            _ => None,
        };
        let serial = config.serial.clone().unwrap_or_else(|| match single_drive {
            Some(drive) => truncate(&drive.serial, MAX_SERIAL_BYTES),
            None => generated_serial(&config.nqn),
        });
        let model = config.model.clone().unwrap_or_else(|| match single_drive {
            Some(drive) => truncate(&drive.model, MAX_MODEL_BYTES),
            None => "vfnvme".to_owned(),
        });
        let firmware = match single_drive {
            Some(drive) => truncate(&drive.firmware, 8),
            None => truncate(env!("CARGO_PKG_VERSION"), 8),
        };
        Ok(Subsystem {
            nqn: config.nqn.clone(),
            serial,
            model,
            firmware,
            namespaces: NamespaceList::new(namespaces),
            max_io_size,
            // Flush matters if any drive caches writes: a host told of no cache sends none. A
            // subsystem without namespaces yet says it has one, for those added later may.
            volatile_write_cache: has_ram
                || config.namespaces.is_empty()
                || drives.iter().any(|d| d.volatile_write_cache),
            oncs: drives
                .iter()
                .map(|drive| drive.oncs)
                .chain(has_ram.then_some(RAM_ONCS))
                .fold(FORWARDED_ONCS, |common, supported| common & supported),
        })
    }

    /// The namespace `nsid`, if active (the admin path: this takes a lock).
    pub fn namespace(&self, nsid: u32) -> Option<NamespaceInfo> {
        let namespaces = self.namespaces.get();
        namespaces
            .binary_search_by_key(&nsid, |namespace| namespace.nsid)
            .ok()
            .map(|index| namespaces[index].clone())
    }

    /// The largest active NSID (Identify Controller NN).
    pub fn max_nsid(&self) -> u32 {
        self.namespaces
            .get()
            .last()
            .map_or(0, |namespace| namespace.nsid)
    }

    /// Whether a namespace can join the subsystem while hosts are connected: what they were
    /// told at Identify (MDTS, ONCS, VWC) must hold for it too. `drive` is what its drive
    /// offers (none for RAM), `buffer_size` the most one command to it can carry. The error
    /// says why not.
    pub fn admits(
        &self,
        name: &str,
        drive: Option<&DriveNamespace>,
        buffer_size: usize,
    ) -> Result<(), String> {
        let carries = drive.map_or(buffer_size, |drive| drive.max_transfer.min(buffer_size));
        if carries < self.max_io_size as usize {
            return Err(format!(
                "{name} carries at most {carries} bytes per command, less than the {} bytes \
                 subsystem {} told its hosts (MDTS); export it from another subsystem",
                self.max_io_size, self.nqn
            ));
        }
        let Some(drive) = drive else {
            return Ok(());
        };
        let missing = self.oncs & !drive.oncs;
        if missing != 0 {
            return Err(format!(
                "{name} lacks optional commands (ONCS {missing:#x}) subsystem {} told its hosts \
                 of; export it from another subsystem",
                self.nqn
            ));
        }
        if drive.volatile_write_cache && !self.volatile_write_cache {
            return Err(format!(
                "{name} has a volatile write cache and subsystem {} told its hosts it has none \
                 (they would not flush it); export it from another subsystem",
                self.nqn
            ));
        }
        Ok(())
    }

    /// The discovery subsystem: no namespaces (open to every host on every listener:
    /// [`HostAccess::discovery`]).
    pub fn discovery() -> Subsystem {
        Subsystem {
            nqn: DISCOVERY_NQN.to_owned(),
            serial: generated_serial(DISCOVERY_NQN),
            model: "vfnvme discovery".to_owned(),
            firmware: truncate(env!("CARGO_PKG_VERSION"), 8),
            namespaces: NamespaceList::default(),
            max_io_size: MIN_MAX_IO_SIZE,
            volatile_write_cache: false,
            oncs: 0,
        }
    }
}

/// The namespaces of a subsystem, sorted by NSID: replaced whole when one is added or removed
/// (Identify reads the list it finds at the time). The admin path only: it takes a lock.
#[derive(Default)]
pub struct NamespaceList(RwLock<Arc<[NamespaceInfo]>>);

impl NamespaceList {
    pub fn new(mut namespaces: Vec<NamespaceInfo>) -> Self {
        namespaces.sort_by_key(|namespace| namespace.nsid);
        Self(RwLock::new(namespaces.into()))
    }

    /// The list now.
    pub fn get(&self) -> Arc<[NamespaceInfo]> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the list (sorted by NSID).
    pub fn replace(&self, namespaces: Arc<[NamespaceInfo]>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = namespaces;
    }
}

impl Clone for NamespaceList {
    fn clone(&self) -> Self {
        Self(RwLock::new(self.get()))
    }
}

impl PartialEq for NamespaceList {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for NamespaceList {}

impl std::fmt::Debug for NamespaceList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.get().iter()).finish()
    }
}

/// Namespace `namespace` of subsystem `nqn` as hosts see it, and for a drive's namespace what
/// `drive_namespace(key, device_nsid)` said of it (none for RAM). At start and for
/// `nvmf_subsystem_add_ns` alike.
pub fn namespace_info<E: From<String>>(
    nqn: &str,
    namespace: &NamespaceConfig,
    mut drive_namespace: impl FnMut(&str, u32) -> Result<DriveNamespace, E>,
) -> Result<(NamespaceInfo, Option<DriveNamespace>), E> {
    Ok(match &namespace.backing {
        BackingConfig::Ram { bytes, block_size } => {
            let nguid = random_id().map_err(|e| {
                format!(
                    "{nqn}: namespace {}: cannot draw a random NGUID: {e}",
                    namespace.nsid
                )
            })?;
            let info = NamespaceInfo {
                nsid: namespace.nsid,
                block_size: *block_size,
                blocks: bytes / u64::from(*block_size),
                ids: NamespaceIds {
                    nguid: Some(nguid),
                    ..NamespaceIds::default()
                },
                backend: NamespaceBacking::Ram { bytes: *bytes },
            };
            (info, None)
        }
        BackingConfig::Passthrough { .. } | BackingConfig::Simulated { .. } => {
            let (key, device_nsid) = drive_key(nqn, namespace);
            let drive = drive_namespace(&key, device_nsid)?;
            let info = NamespaceInfo {
                nsid: namespace.nsid,
                block_size: drive.block_size,
                blocks: drive.blocks,
                ids: drive_namespace_ids(&drive, device_nsid),
                backend: NamespaceBacking::Passthrough {
                    device_index: drive.device_index,
                    device_nsid,
                },
            };
            (info, Some(drive))
        }
    })
}

/// Who may connect to a subsystem and see it in discovery, and on which listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAccess {
    pub allow_any_host: bool,
    /// Host NQNs allowed when `allow_any_host` is false, in the order they were added.
    pub hosts: Vec<String>,
    /// The listeners (indices in the target's list, ascending) hosts reach it on.
    pub listeners: Vec<usize>,
    /// The DH-HMAC-CHAP keys of hosts that have one; each exchange takes its host's when it
    /// starts (a queue's Connect, a re-authentication).
    pub keys: Vec<HostKey>,
    /// The TLS PSKs of hosts that have one: such a host connects over a TLS listener only.
    pub tls_psks: Vec<HostPsk>,
}

impl HostAccess {
    /// Every host on every one of `listener_count` listeners (the discovery subsystem).
    pub fn discovery(listener_count: usize) -> Self {
        Self {
            allow_any_host: true,
            hosts: Vec::new(),
            listeners: (0..listener_count).collect(),
            keys: Vec::new(),
            tls_psks: Vec::new(),
        }
    }

    pub fn of(config: &SubsystemConfig) -> Self {
        Self {
            allow_any_host: config.allow_any_host,
            hosts: config.hosts.clone(),
            listeners: config.listeners.clone(),
            keys: config.auth.keys.clone(),
            tls_psks: config.tls_psks.clone(),
        }
    }

    /// The DH-HMAC-CHAP key of host `host_nqn`, if it has one.
    pub fn key_of(&self, host_nqn: &str) -> Option<&HostKey> {
        self.keys.iter().find(|key| key.host_nqn == host_nqn)
    }

    /// Whether host `host_nqn` has a TLS PSK (and so must connect over TLS).
    pub fn has_tls_psk(&self, host_nqn: &str) -> bool {
        self.tls_psks.iter().any(|psk| psk.host_nqn == host_nqn)
    }

    /// Whether host `host_nqn` may connect to the subsystem and see it in discovery.
    pub fn allows(&self, host_nqn: &str) -> bool {
        self.allow_any_host || self.hosts.iter().any(|host| host == host_nqn)
    }

    /// Whether hosts may reach the subsystem on listener `listener` (an index).
    pub fn is_reachable_on(&self, listener: usize) -> bool {
        self.listeners.binary_search(&listener).is_ok()
    }
}

/// The Discovery Log Page (log 70h) asked through listener `current` (an index into
/// `listeners`) by a host that may connect to `subsystems` (each NQN with the listeners it is
/// on): as nvmet, one entry for this discovery subsystem where the host asked, then, as SPDK,
/// one per listener of each of those subsystems, with the listener's port ID. Wildcard listeners are reported with `local_address`, the address the
/// host reached us on. `generation` is the Generation Counter: change it when the subsystems or
/// listeners change.
pub fn discovery_log_page(
    subsystems: &[(String, Vec<usize>)],
    listeners: &[ListenerInfo],
    current: usize,
    local_address: IpAddr,
    generation: u64,
) -> Vec<u8> {
    let current_entry = std::iter::once((DISCOVERY_NQN, current));
    let nvm_entries = subsystems
        .iter()
        .flat_map(|(nqn, on)| on.iter().map(move |&listener| (nqn.as_str(), listener)));
    let entries: Vec<(&str, usize)> = current_entry.chain(nvm_entries).collect();
    let header = DiscoveryLogHeader {
        genctr: U64::new(generation),
        numrec: U64::new(entries.len() as u64),
        ..DiscoveryLogHeader::default()
    };
    let mut page = header.as_bytes().to_vec();
    for (nqn, listener) in entries {
        let entry = discovery_entry(nqn, listener, listeners[listener], local_address);
        page.extend_from_slice(entry.as_bytes());
    }
    page
}

/// The Port ID of listener `index`: stable for a configuration, from 1 as nvmet's ports are
/// usually numbered.
fn port_id(index: usize) -> u16 {
    u16::try_from(index + 1).unwrap_or(u16::MAX)
}

fn discovery_entry(
    nqn: &str,
    listener_index: usize,
    port: ListenerInfo,
    local_address: IpAddr,
) -> DiscoveryLogEntry {
    let listener = port.address;
    let address = if listener.ip().is_unspecified() {
        local_address.to_canonical()
    } else {
        listener.ip()
    };
    let current = nqn == DISCOVERY_NQN;
    // As nvmet: a TLS port says a secure channel is required and TLS 1.3 in TSAS (what
    // `nvme connect-all` reads to add --tls); a plain one leaves both unspecified.
    let (secure_channel, security_type) = match port.secure_channel {
        SecureChannel::None => (TREQ_SECURE_CHANNEL_NOT_SPECIFIED, TcpSecurityType::None),
        SecureChannel::Tls => (TREQ_SECURE_CHANNEL_REQUIRED, TcpSecurityType::Tls13),
    };
    let mut tsas = [0u8; 256];
    tsas[0] = security_type as u8;
    DiscoveryLogEntry {
        trtype: TRTYPE_TCP,
        adrfam: if address.is_ipv4() {
            ADRFAM_IPV4
        } else {
            ADRFAM_IPV6
        },
        subtype: if current {
            SUBTYPE_CURRENT_DISCOVERY
        } else {
            SUBTYPE_NVME
        },
        // SQ flow control may be disabled (Connect CATTR).
        treq: secure_channel | TREQ_SQ_FLOW_CONTROL_DISABLE_SUPPORTED,
        portid: U16::new(port_id(listener_index)),
        cntlid: U16::new(CNTLID_DYNAMIC),
        asqsz: U16::new(MAX_ADMIN_QUEUE_ENTRIES),
        // As SPDK: every listener returns the same log; keep-alive and AER are supported.
        eflags: U16::new(if current {
            EFLAGS_DUPRETINFO | EFLAGS_EPCSD
        } else {
            0
        }),
        trsvcid: PaddedString::space_padded(&listener.port().to_string()),
        subnqn: PaddedString::nul_padded(nqn),
        traddr: PaddedString::space_padded(&address.to_string()),
        tsas,
        ..DiscoveryLogEntry::default()
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn prev_power_of_two(value: u32) -> u32 {
    if value == 0 {
        0
    } else {
        1 << (31 - value.leading_zeros())
    }
}

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`, because the results are
/// identities hosts remember.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// "VFNVME" and 14 hex digits derived from the NQN: 20 characters, the Serial Number length.
fn generated_serial(nqn: &str) -> String {
    let hash = fnv1a(FNV_OFFSET_BASIS, nqn.as_bytes());
    format!("VFNVME{:014X}", hash >> 8)
}

/// The identifiers hosts see for namespace `device_nsid` of `drive`: the drive's own (as
/// nvmet's passthru reports them); for a drive that reports none, an NGUID derived from the
/// drive itself (vendor, serial, model, namespace), so that two drives never look like one
/// and a swapped drive looks new, whatever the configuration says.
fn drive_namespace_ids(drive: &DriveNamespace, device_nsid: u32) -> NamespaceIds {
    if !drive.ids.is_empty() {
        return drive.ids;
    }
    let mut identity = Vec::with_capacity(drive.serial.len() + drive.model.len() + 8);
    identity.extend_from_slice(&drive.vid.to_le_bytes());
    // Each string ends with a NUL, so that moving bytes between serial and model changes
    // the identity.
    for text in [&drive.serial, &drive.model] {
        identity.extend_from_slice(text.as_bytes());
        identity.push(0);
    }
    identity.extend_from_slice(&device_nsid.to_le_bytes());
    let first = fnv1a(FNV_OFFSET_BASIS, &identity);
    let second = fnv1a(first, &identity);
    let mut nguid = [0u8; 16];
    nguid[..8].copy_from_slice(&first.to_be_bytes());
    nguid[8..].copy_from_slice(&second.to_be_bytes());
    NamespaceIds {
        nguid: Some(nguid),
        ..NamespaceIds::default()
    }
}

/// A random identifier of `N` bytes, never all zero (which means "none").
pub fn random_id<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut id = [0u8; N];
    while id.iter().all(|&b| b == 0) {
        getrandom::fill(&mut id)?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, NamespaceConfig};
    use vfnvme_test_support::ConfigText;

    fn drive(device_index: usize) -> DriveNamespace {
        DriveNamespace {
            device_index,
            block_size: 4096,
            blocks: 1 << 20,
            vid: 0x1b36,
            serial: format!("SERIAL{device_index}"),
            model: "QEMU NVMe Ctrl".into(),
            firmware: "8.2.0".into(),
            ids: NamespaceIds::default(),
            oncs: oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT | oncs::COMPARE,
            volatile_write_cache: false,
            max_transfer: 512 * 1024,
        }
    }

    fn subsystem_config(namespaces: Vec<NamespaceConfig>) -> SubsystemConfig {
        SubsystemConfig {
            nqn: "nqn.2026-11.io.vfnvme:test".into(),
            allow_any_host: false,
            hosts: vec!["nqn.host:a".into()],
            auth: crate::config::SubsystemAuth::default(),
            tls_psks: Vec::new(),
            serial: None,
            model: None,
            listeners: vec![0],
            namespaces,
        }
    }

    fn passthrough(nsid: u32, pci: &str, device_nsid: u32) -> NamespaceConfig {
        NamespaceConfig {
            nsid,
            backing: BackingConfig::Passthrough {
                pci: pci.into(),
                device_nsid,
            },
        }
    }

    fn ram(nsid: u32) -> NamespaceConfig {
        NamespaceConfig {
            nsid,
            backing: BackingConfig::Ram {
                bytes: 64 << 20,
                block_size: 512,
            },
        }
    }

    fn open(pci: &str, _device_nsid: u32) -> Result<DriveNamespace, String> {
        match pci {
            "0000:01:00.0" => Ok(drive(0)),
            "0000:02:00.0" => Ok(drive(1)),
            other => Err(format!("{other} is not bound to vfio-pci")),
        }
    }

    #[test]
    fn single_drive_subsystem_takes_the_drive_identity() {
        let config = subsystem_config(vec![
            passthrough(3, "0000:01:00.0", 1),
            passthrough(1, "0000:01:00.0", 2),
        ]);
        let subsystem = Subsystem::from_config(&config, &TargetConfig::default(), open).unwrap();
        assert_eq!(subsystem.serial, "SERIAL0");
        assert_eq!(subsystem.model, "QEMU NVMe Ctrl");
        assert_eq!(subsystem.firmware, "8.2.0");
        assert_eq!(
            subsystem.max_io_size,
            128 * 1024,
            "the default cap under the drive's 512 KiB"
        );
        let uncapped = TargetConfig {
            max_io_size: None,
            ..TargetConfig::default()
        };
        let subsystem = Subsystem::from_config(&config, &uncapped, open).unwrap();
        assert_eq!(subsystem.max_io_size, 512 * 1024, "the drive's own limit");
        assert!(!subsystem.volatile_write_cache);
        assert_eq!(
            subsystem
                .namespaces
                .get()
                .iter()
                .map(|n| n.nsid)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(
            subsystem.namespace(3).unwrap().backend,
            NamespaceBacking::Passthrough {
                device_index: 0,
                device_nsid: 1
            }
        );
        assert_eq!(subsystem.namespace(3).unwrap().blocks, 1 << 20);
        assert!(subsystem.namespace(2).is_none());
        assert_eq!(subsystem.max_nsid(), 3);
        assert_ne!(
            subsystem.namespace(1).unwrap().ids,
            subsystem.namespace(3).unwrap().ids
        );
    }

    #[test]
    fn mixed_subsystem_gets_a_generated_identity() {
        let config = subsystem_config(vec![
            passthrough(1, "0000:01:00.0", 1),
            passthrough(2, "0000:02:00.0", 1),
        ]);
        let target = TargetConfig {
            max_io_size: Some(65536),
            ..TargetConfig::default()
        };
        let subsystem = Subsystem::from_config(&config, &target, open).unwrap();
        assert_eq!(subsystem.serial.len(), 20);
        assert!(subsystem.serial.starts_with("VFNVME"));
        assert_eq!(subsystem.model, "vfnvme");
        assert_eq!(subsystem.max_io_size, 65536);
        let again = Subsystem::from_config(&config, &target, open).unwrap();
        assert_eq!(again, subsystem, "identities are stable");

        let ram_only = Subsystem::from_config(
            &subsystem_config(vec![ram(1)]),
            &TargetConfig::default(),
            open,
        )
        .unwrap();
        assert_eq!(ram_only.max_io_size, RAM_MAX_IO_SIZE);
        assert!(ram_only.volatile_write_cache);
        assert_eq!(ram_only.namespace(1).unwrap().blocks, (64 << 20) / 512);
        assert_eq!(
            ram_only.namespace(1).unwrap().backend,
            NamespaceBacking::Ram { bytes: 64 << 20 }
        );
    }

    #[test]
    fn configured_identity_wins_and_drive_errors_pass_through() {
        let mut config = subsystem_config(vec![passthrough(1, "0000:01:00.0", 1)]);
        config.serial = Some("MINE".into());
        config.model = Some("My Model".into());
        let subsystem = Subsystem::from_config(&config, &TargetConfig::default(), open).unwrap();
        assert_eq!(
            (subsystem.serial.as_str(), subsystem.model.as_str()),
            ("MINE", "My Model")
        );
        let missing = subsystem_config(vec![passthrough(1, "0000:09:00.0", 1)]);
        assert_eq!(
            Subsystem::from_config(&missing, &TargetConfig::default(), open).unwrap_err(),
            "0000:09:00.0 is not bound to vfio-pci"
        );
    }

    #[test]
    fn odd_drive_limits_round_down_to_what_mdts_expresses() {
        let config = subsystem_config(vec![passthrough(1, "0000:01:00.0", 1)]);
        let odd = |_: &str, _: u32| -> Result<DriveNamespace, String> {
            Ok(DriveNamespace {
                max_transfer: 100_000,
                ..drive(0)
            })
        };
        let subsystem = Subsystem::from_config(&config, &TargetConfig::default(), odd).unwrap();
        assert_eq!(subsystem.max_io_size, 65536);
    }

    #[test]
    fn oncs_is_what_every_drive_supports_and_the_target_forwards() {
        let config = subsystem_config(vec![
            passthrough(1, "0000:01:00.0", 1),
            passthrough(2, "0000:02:00.0", 1),
        ]);
        let target = TargetConfig::default();
        let both = Subsystem::from_config(&config, &target, open).unwrap();
        assert_eq!(
            both.oncs,
            oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT,
            "Compare is not forwarded"
        );
        let one_lacks_write_zeroes = |pci: &str, nsid: u32| {
            open(pci, nsid).map(|drive| DriveNamespace {
                oncs: if drive.device_index == 1 {
                    oncs::DATASET_MANAGEMENT
                } else {
                    drive.oncs
                },
                ..drive
            })
        };
        let subsystem = Subsystem::from_config(&config, &target, one_lacks_write_zeroes).unwrap();
        assert_eq!(subsystem.oncs, oncs::DATASET_MANAGEMENT);
        let ram = Subsystem::from_config(&subsystem_config(vec![ram(1)]), &target, open).unwrap();
        assert_eq!(ram.oncs, RAM_ONCS);
    }

    #[test]
    fn namespace_ids_are_the_drives_or_derived_from_it() {
        let config = subsystem_config(vec![passthrough(1, "0000:01:00.0", 1)]);
        let target = TargetConfig::default();
        let own = NamespaceIds {
            eui64: Some([7; 8]),
            ..NamespaceIds::default()
        };
        let reporting = |pci: &str, nsid: u32| {
            open(pci, nsid).map(|drive| DriveNamespace { ids: own, ..drive })
        };
        let subsystem = Subsystem::from_config(&config, &target, reporting).unwrap();
        assert_eq!(subsystem.namespace(1).unwrap().ids, own, "the drive's own");

        let derived = |serial: &'static str| {
            let drive = move |pci: &str, nsid: u32| {
                open(pci, nsid).map(|drive| DriveNamespace {
                    serial: serial.into(),
                    ..drive
                })
            };
            let ids = Subsystem::from_config(&config, &target, drive)
                .unwrap()
                .namespace(1)
                .unwrap()
                .ids;
            assert!(ids.nguid.is_some() && ids.eui64.is_none() && ids.uuid.is_none());
            ids
        };
        assert_ne!(derived("SN-A"), derived("SN-B"));
        assert_eq!(derived("SN-A"), derived("SN-A"));
    }

    #[test]
    fn allow_list_is_checked() {
        let access = HostAccess::of(&subsystem_config(vec![ram(1)]));
        assert!(access.allows("nqn.host:a"));
        assert!(!access.allows("nqn.host:b"));
        assert!(HostAccess::discovery(1).allows("nqn.host:b"));
        assert!(access.is_reachable_on(0) && !access.is_reachable_on(1));
    }

    fn field(entry: &[u8], offset: usize, len: usize) -> &[u8] {
        &entry[offset..offset + len]
    }

    #[test]
    fn discovery_log_lists_only_allowed_subsystems_at_spec_offsets() {
        // Entry field offsets (NVMe over Fabrics, "Discovery Log Page Entry").
        const OFFSET_TRTYPE: usize = 0;
        const OFFSET_ADRFAM: usize = 1;
        const OFFSET_SUBTYPE: usize = 2;
        const OFFSET_TREQ: usize = 3;
        const OFFSET_PORTID: usize = 4;
        const OFFSET_CNTLID: usize = 6;
        const OFFSET_ASQSZ: usize = 8;
        const OFFSET_EFLAGS: usize = 10;
        let text = ConfigText::new("")
            .listener("192.0.2.7:4420")
            .listener("0.0.0.0:4421")
            .subsystem("nqn.2026-11.io.vfnvme:open", "allow_any_host = true")
            .namespace(1, "ram_mib = 1")
            .subsystem(
                "nqn.2026-11.io.vfnvme:closed",
                "hosts = [\"nqn.host:other\"]\nlisteners = [\"0.0.0.0:4421\"]",
            )
            .namespace(1, "ram_mib = 1")
            .text();
        let config = Config::parse(&text, "t.toml").unwrap();
        // What the subsystems' registries hand the log page: those the host may connect to.
        let visible_to = |host: &str| -> Vec<(String, Vec<usize>)> {
            config
                .subsystems
                .iter()
                .filter(|s| HostAccess::of(s).allows(host))
                .map(|s| (s.nqn.clone(), s.listeners.clone()))
                .collect()
        };
        let listeners: Vec<ListenerInfo> = config
            .listeners
            .iter()
            .map(|l| ListenerInfo::plain(l.address))
            .collect();
        let local: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
        let page = discovery_log_page(&visible_to("nqn.host:me"), &listeners, 1, local, 5);

        assert_eq!(page.len(), 1024 + 3 * 1024);
        assert_eq!(&page[0..8], &5u64.to_le_bytes());
        assert_eq!(&page[8..16], &3u64.to_le_bytes());
        assert_eq!(&page[16..18], &[0, 0]);
        let entries: Vec<&[u8]> = page[1024..].chunks(1024).collect();

        // The discovery subsystem, once: where the host asked (listener 1, a wildcard).
        let current = entries[0];
        assert_eq!(current[OFFSET_TRTYPE], 3);
        assert_eq!(current[OFFSET_ADRFAM], 1);
        assert_eq!(current[OFFSET_SUBTYPE], 3);
        assert_eq!(
            current[OFFSET_TREQ], 0x04,
            "secure channel not specified (as nvmet without TLS), SQ flow control disable \
             supported"
        );
        assert_eq!(field(current, OFFSET_PORTID, 2), &[2, 0]);
        assert_eq!(field(current, OFFSET_CNTLID, 2), &[0xff, 0xff]);
        assert_eq!(field(current, OFFSET_ASQSZ, 2), &[128, 0]);
        assert_eq!(field(current, OFFSET_EFLAGS, 2), &[3, 0]);
        assert!(current[12..32].iter().all(|&b| b == 0));
        let mut trsvcid = *b"4421                            ";
        assert_eq!(field(current, 32, 32), &trsvcid);
        assert!(current[64..256].iter().all(|&b| b == 0));
        assert_eq!(
            &current[256..256 + DISCOVERY_NQN.len()],
            DISCOVERY_NQN.as_bytes()
        );
        assert!(current[256 + DISCOVERY_NQN.len()..512]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(
            &current[512..525],
            b"198.51.100.9 ",
            "wildcard reported as the local address"
        );
        assert!(current[524..768].iter().all(|&b| b == b' '));
        assert!(current[768..].iter().all(|&b| b == 0));

        // The open subsystem on each of its listeners (by default both), with their port IDs.
        for (entry, (port_id, address)) in entries[1..]
            .iter()
            .zip([(1u8, &b"192.0.2.7 "[..]), (2, b"198.51.100.9 ")])
        {
            assert_eq!(entry[OFFSET_SUBTYPE], 2);
            assert_eq!(entry[OFFSET_TREQ], 0x04);
            assert_eq!(field(entry, OFFSET_EFLAGS, 2), &[0, 0]);
            assert_eq!(field(entry, OFFSET_PORTID, 2), &[port_id, 0]);
            assert_eq!(&entry[512..512 + address.len()], address);
            let nqn = b"nqn.2026-11.io.vfnvme:open";
            assert_eq!(&entry[256..256 + nqn.len()], nqn);
            assert_eq!(entry[256 + nqn.len()], 0);
        }
        trsvcid[..4].copy_from_slice(b"4420");
        assert_eq!(field(entries[1], 32, 32), &trsvcid);

        // The closed subsystem only on its one listener, for the host it admits.
        let other = discovery_log_page(&visible_to("nqn.host:other"), &listeners, 0, local, 5);
        assert_eq!(u64::from_le_bytes(other[8..16].try_into().unwrap()), 4);
        let last = &other[4 * 1024..];
        assert_eq!(&last[256..284], b"nqn.2026-11.io.vfnvme:closed");
        assert_eq!(field(last, OFFSET_PORTID, 2), &[2, 0]);
        assert_eq!(
            field(&other[1024..], OFFSET_PORTID, 2),
            &[1, 0],
            "asked on 0"
        );
    }

    #[test]
    fn ipv6_listeners_are_reported_as_ipv6() {
        let page = discovery_log_page(
            &[],
            &[ListenerInfo::plain("[2001:db8::1]:4420".parse().unwrap())],
            0,
            "::1".parse().unwrap(),
            1,
        );
        let entry = &page[1024..];
        assert_eq!(entry[1], 2, "adrfam");
        assert_eq!(&entry[512..524], b"2001:db8::1 ");
    }

    #[test]
    fn tls_listeners_require_a_secure_channel_and_name_tls_1_3() {
        let tls = ListenerInfo {
            address: "192.0.2.7:4430".parse().unwrap(),
            secure_channel: SecureChannel::Tls,
            open: true,
        };
        let plain = ListenerInfo::plain("192.0.2.7:4420".parse().unwrap());
        let subsystems = [("nqn.2026-11.io.vfnvme:a".to_owned(), vec![0, 1])];
        let page = discovery_log_page(&subsystems, &[tls, plain], 1, "::1".parse().unwrap(), 1);
        let entries: Vec<&[u8]> = page[1024..].chunks(1024).collect();
        assert_eq!(entries.len(), 3);
        // TREQ (byte 3): secure channel required (01b) plus SQ flow control disable (bit 2);
        // TSAS (byte 768) of an NVMe/TCP entry: Security Type 2, TLS 1.3.
        assert_eq!(
            (entries[1][3], entries[1][768]),
            (0x05, 2),
            "the TLS listener"
        );
        assert!(entries[1][769..].iter().all(|&b| b == 0));
        assert_eq!(
            (entries[2][3], entries[2][768]),
            (0x04, 0),
            "the plain listener"
        );
        assert_eq!(
            (entries[0][3], entries[0][768]),
            (0x04, 0),
            "asked on the plain one"
        );
    }
}
