//! The validated configuration: the types the rest of the target uses ([`Config`] and its
//! sections), their defaults, and [`ConfigError`]. A leaf of its own so that both loading steps
//! (`raw`, `check`) and the loader in `config/mod.rs` build on it.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use vfnvme_auth::ControllerPolicy;
use vfnvme_spec::auth::{DhGroupId, HashId};
use vfnvme_spec::fabrics::{CNTLID_MAX, CNTLID_MIN};

/// Length of the Serial Number field of Identify Controller.
pub const MAX_SERIAL_BYTES: usize = 20;
/// Length of the Model Number field of Identify Controller.
pub const MAX_MODEL_BYTES: usize = 40;

const DEFAULT_IN_CAPSULE_DATA_SIZE: u32 = 8192;
const DEFAULT_MAX_QUEUE_DEPTH: u16 = 128;
const DEFAULT_MAX_IO_QUEUES: u16 = 64;
pub(super) const DEFAULT_KEEP_ALIVE_TIMEOUT_MS: u64 = 120_000;
pub(super) const DEFAULT_SHUTDOWN_DEADLINE_MS: u64 = 10_000;
pub(super) const DEFAULT_PARK_AFTER_US: u64 = 1000;
/// The default cap on one command's data (SPDK's default too): larger commands are split by the
/// host, and each poll group's buffers for a drive stay small.
pub(super) const DEFAULT_MAX_IO_SIZE: u32 = 128 * 1024;

/// Where `vfnvme serve` answers management requests when `[target] rpc_socket` is not set.
pub const DEFAULT_RPC_SOCKET: &str = "/run/vfnvme/vfnvme.sock";

/// A configuration that failed to load.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// A problem at one place of the file.
    #[error("{file}:{line}: {reason}")]
    Invalid {
        file: String,
        line: usize,
        reason: String,
    },
    /// Something the file as a whole lacks.
    #[error("{file}: {reason}")]
    Incomplete { file: String, reason: String },
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub target: TargetConfig,
    pub listeners: Vec<ListenerConfig>,
    pub subsystems: Vec<SubsystemConfig>,
    /// `[metrics] address`: where the Prometheus endpoint listens; `None`: it is off.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `[[keyring]]`: key names for the management socket's methods (SPDK's file keyring).
    pub keyring: crate::keyring::Keyring,
}

/// `[target]`: settings of the whole target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// Poll groups, one thread each.
    pub cores: usize,
    /// `cpus`: the CPU each poll group's thread is pinned to (group `i` on `cpus[i]`, one
    /// each, as SPDK's reactor mask); `None`: the scheduler places them.
    pub cpus: Option<Vec<usize>>,
    /// `c2h_success`: a successful read's data PDU carries the SUCCESS flag in place of a
    /// response capsule even while the host keeps SQ flow control on (SPDK's default), not
    /// only when it disabled it (the NVMe/TCP rule, nvmet's behaviour).
    pub c2h_success: bool,
    /// Bytes of write data a host may send inside a command capsule.
    pub in_capsule_data_size: u32,
    /// Entries of an I/O queue (CAP.MQES + 1).
    pub max_queue_depth: u16,
    /// I/O queues a host may create per controller.
    pub max_io_queues: u16,
    /// Cap on the data of one command in bytes; `None`: the backing drives' limit.
    pub max_io_size: Option<u32>,
    /// Keep-alive timeout of discovery controllers whose host asked for none: such hosts often
    /// just go away, and their controllers must not live forever.
    pub keep_alive_timeout: Duration,
    /// How long shutdown waits for outstanding commands before aborting them.
    pub shutdown_deadline: Duration,
    /// `park_after_us`: how long a poll group keeps polling after its last work before it
    /// sleeps in `epoll_wait` (`polling.rs`).
    pub park_after: Duration,
    /// The controller IDs this target gives (`cntlid_min..=cntlid_max`): disjoint ranges keep
    /// the controllers of two targets exporting one subsystem apart at a multipath host.
    pub cntlids: RangeInclusive<u16>,
    /// `[limits]`, kept with the target's settings: the connections and poll groups read
    /// them where they read the rest.
    pub limits: Limits,
    /// The management socket (JSON-RPC, docs/rpc.md); `None`: none. The file leaves it unset
    /// for `vfnvme serve` to use [`DEFAULT_RPC_SOCKET`]; a target started by a program (the
    /// tests) has one only when this names it.
    pub rpc_socket: Option<PathBuf>,
    /// `dhchap_digests`, `dhchap_dhgroups`: what DH-HMAC-CHAP exchanges may use.
    pub dhchap: DhchapAlgorithms,
}

/// The hash functions and DH groups the target accepts in DH-HMAC-CHAP (SPDK's
/// `nvmf_set_config --dhchap-digests --dhchap-dhgroups`), each strongest first: the exchange
/// picks the strongest one the host offers too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhchapAlgorithms {
    pub hashes: Vec<HashId>,
    pub dh_groups: Vec<DhGroupId>,
}

impl Default for DhchapAlgorithms {
    /// All of them.
    fn default() -> Self {
        let policy = ControllerPolicy::default();
        Self {
            hashes: policy.hashes,
            dh_groups: policy.dh_groups,
        }
    }
}

/// `[limits]`: what hosts may take of the target, so that no host on the storage network (a
/// port scanner, a reconnect storm, a host that stops reading) can exhaust it for the others.
/// Each limit is logged when it bites (docs/limits.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections of the whole target; beyond it new connections are closed at once.
    pub connections: usize,
    /// Open connections from one host address.
    pub connections_per_address: usize,
    /// Fabric controllers (admin queues, discovery ones included) of one host NQN, over all
    /// subsystems.
    pub controllers_per_host: usize,
    /// From accept to the ICReq: a socket silent longer is closed.
    pub icreq_timeout: Duration,
    /// From the ICReq to a Connect that binds the queue.
    pub connect_timeout: Duration,
    /// DMA buffer memory the connections from one host address may hold at once in a poll
    /// group (data of their reads and writes, at the drive or waiting for the socket); their
    /// further commands wait for their own buffers to come back, not for other hosts'. At
    /// least one buffer is always allowed.
    pub buffer_bytes_per_host: usize,
    /// R2Ts one connection may have outstanding; further writes wait for their R2T.
    pub r2t_per_connection: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 4096,
            connections_per_address: 512,
            controllers_per_host: 128,
            icreq_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            // Half of a poll group's pool for one drive (16 MiB): one host that stops reading
            // leaves the other half to the rest.
            buffer_bytes_per_host: 8 << 20,
            r2t_per_connection: 32,
        }
    }
}

/// `[[listener]]`: an address accepting NVMe/TCP connections. The discovery subsystem is
/// reachable on every listener; an NVM subsystem on those its `listeners` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// Only the discovery subsystem is reachable here (a discovery port such as 8009), so that
    /// a host discovering through it is not handed a second path to every subsystem.
    pub discovery_only: bool,
    /// Plain TCP or TLS 1.3 with a PSK (never both on one listener).
    pub secure_channel: super::tls_keys::SecureChannel,
}

/// `[[subsystem]]`: an NVM subsystem exported to hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsystemConfig {
    pub nqn: String,
    pub allow_any_host: bool,
    /// Host NQNs allowed to connect when `allow_any_host` is false (`hosts = [...]` and the
    /// `[[subsystem.host]]` entries).
    pub hosts: Vec<String>,
    /// DH-HMAC-CHAP keys of hosts, and whether every host must authenticate.
    pub auth: super::keys::SubsystemAuth,
    /// TLS PSKs of hosts (`tls_psk_file`): such a host connects only over a TLS listener.
    pub tls_psks: Vec<super::tls_keys::HostPsk>,
    /// Serial Number reported to hosts; `None`: derived from the backing drive.
    pub serial: Option<String>,
    /// Model Number reported to hosts; `None`: derived from the backing drive.
    pub model: Option<String>,
    /// The listeners hosts reach this subsystem on: indices into [`Config::listeners`],
    /// ascending. By default every listener that is not `discovery_only`.
    pub listeners: Vec<usize>,
    /// Sorted by NSID.
    pub namespaces: Vec<NamespaceConfig>,
}

/// `[[subsystem.namespace]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceConfig {
    pub nsid: u32,
    pub backing: BackingConfig,
}

/// What a configured namespace is backed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackingConfig {
    /// Namespace `device_nsid` of the vfio-bound drive at PCI address `pci`.
    Passthrough { pci: String, device_nsid: u32 },
    /// Memory of `bytes` bytes in blocks of `block_size` bytes.
    Ram { bytes: u64, block_size: u32 },
    /// A simulated NVMe controller (the driver's simulator) with one namespace of `bytes`
    /// bytes: the whole passthrough path (queue pairs, PRPs, DMA buffers) without a drive, for
    /// tests and demos. Completions take `latency_us` microseconds. With `metadata_bytes`, the
    /// namespace reports an LBA format with that much metadata per block (which the target
    /// refuses to export, as it refuses such drives). Its Get Log Page takes
    /// `log_page_latency_ms` more (a drive slow to answer an admin command).
    Simulated {
        bytes: u64,
        block_size: u32,
        latency_us: u64,
        metadata_bytes: u16,
        log_page_latency_ms: u64,
    },
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            cores: 1,
            cpus: None,
            c2h_success: false,
            in_capsule_data_size: DEFAULT_IN_CAPSULE_DATA_SIZE,
            max_queue_depth: DEFAULT_MAX_QUEUE_DEPTH,
            max_io_queues: DEFAULT_MAX_IO_QUEUES,
            max_io_size: Some(DEFAULT_MAX_IO_SIZE),
            keep_alive_timeout: Duration::from_millis(DEFAULT_KEEP_ALIVE_TIMEOUT_MS),
            shutdown_deadline: Duration::from_millis(DEFAULT_SHUTDOWN_DEADLINE_MS),
            park_after: Duration::from_micros(DEFAULT_PARK_AFTER_US),
            cntlids: CNTLID_MIN..=CNTLID_MAX,
            limits: Limits::default(),
            rpc_socket: None,
            dhchap: DhchapAlgorithms::default(),
        }
    }
}
