//! The running configuration written back as TOML (the management socket's `save_config`), in
//! the format [`super::raw`] reads: `Config::parse(&config.to_toml())` gives `config` again.
//! Every key is written, defaults included, so that the file says what the target ran with
//! even if a later version changes a default. Its own file because writing the format is apart
//! from reading and checking it.

use serde::Serialize;

use super::types::{BackingConfig, Config, NamespaceConfig, SubsystemConfig};

#[derive(Serialize)]
struct SavedConfig {
    target: SavedTarget,
    limits: SavedLimits,
    listener: Vec<SavedListener>,
    subsystem: Vec<SavedSubsystem>,
}

#[derive(Serialize)]
struct SavedTarget {
    cores: usize,
    in_capsule_data_size: u32,
    max_queue_depth: u16,
    max_io_queues: u16,
    /// 0: the drives' own limit.
    max_io_size: u32,
    keep_alive_timeout_ms: u64,
    shutdown_deadline_ms: u64,
    cntlid_min: u16,
    cntlid_max: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc_socket: Option<String>,
}

#[derive(Serialize)]
struct SavedLimits {
    connections: usize,
    connections_per_address: usize,
    controllers_per_host: usize,
    icreq_timeout_ms: u64,
    connect_timeout_ms: u64,
    buffer_bytes_per_host: usize,
    r2t_per_connection: u16,
}

#[derive(Serialize)]
struct SavedListener {
    address: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    discovery_only: bool,
}

#[derive(Serialize)]
struct SavedSubsystem {
    nqn: String,
    allow_any_host: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    listeners: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    namespace: Vec<SavedNamespace>,
}

#[derive(Serialize, Default)]
struct SavedNamespace {
    nsid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pci: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_nsid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ram_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim_latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim_metadata_bytes: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim_log_page_latency_ms: Option<u64>,
}

impl Config {
    /// The configuration as TOML that [`Config::parse`] reads back to the same `Config`.
    pub fn to_toml(&self) -> String {
        let target = &self.target;
        let limits = &target.limits;
        let saved = SavedConfig {
            target: SavedTarget {
                cores: target.cores,
                in_capsule_data_size: target.in_capsule_data_size,
                max_queue_depth: target.max_queue_depth,
                max_io_queues: target.max_io_queues,
                max_io_size: target.max_io_size.unwrap_or(0),
                keep_alive_timeout_ms: target.keep_alive_timeout.as_millis() as u64,
                shutdown_deadline_ms: target.shutdown_deadline.as_millis() as u64,
                cntlid_min: *target.cntlids.start(),
                cntlid_max: *target.cntlids.end(),
                rpc_socket: target
                    .rpc_socket
                    .as_ref()
                    .map(|path| path.display().to_string()),
            },
            limits: SavedLimits {
                connections: limits.connections,
                connections_per_address: limits.connections_per_address,
                controllers_per_host: limits.controllers_per_host,
                icreq_timeout_ms: limits.icreq_timeout.as_millis() as u64,
                connect_timeout_ms: limits.connect_timeout.as_millis() as u64,
                buffer_bytes_per_host: limits.buffer_bytes_per_host,
                r2t_per_connection: limits.r2t_per_connection,
            },
            listener: self
                .listeners
                .iter()
                .map(|listener| SavedListener {
                    address: listener.address.to_string(),
                    discovery_only: listener.discovery_only,
                })
                .collect(),
            subsystem: self
                .subsystems
                .iter()
                .map(|subsystem| self.saved_subsystem(subsystem))
                .collect(),
        };
        let body = toml::to_string(&saved).expect("the configuration's types serialize as TOML");
        format!("# The running configuration of vfnvme serve (save_config).\n\n{body}")
    }

    fn saved_subsystem(&self, subsystem: &SubsystemConfig) -> SavedSubsystem {
        SavedSubsystem {
            nqn: subsystem.nqn.clone(),
            allow_any_host: subsystem.allow_any_host,
            hosts: subsystem.hosts.clone(),
            serial: subsystem.serial.clone(),
            model: subsystem.model.clone(),
            listeners: subsystem
                .listeners
                .iter()
                .map(|&index| self.listeners[index].address.to_string())
                .collect(),
            namespace: subsystem.namespaces.iter().map(saved_namespace).collect(),
        }
    }
}

fn saved_namespace(namespace: &NamespaceConfig) -> SavedNamespace {
    let nsid = namespace.nsid;
    match &namespace.backing {
        BackingConfig::Passthrough { pci, device_nsid } => SavedNamespace {
            nsid,
            pci: Some(pci.clone()),
            device_nsid: Some(*device_nsid),
            ..SavedNamespace::default()
        },
        BackingConfig::Ram { bytes, block_size } => SavedNamespace {
            nsid,
            ram_mib: Some(bytes >> 20),
            block_size: Some(*block_size),
            ..SavedNamespace::default()
        },
        BackingConfig::Simulated {
            bytes,
            block_size,
            latency_us,
            metadata_bytes,
            log_page_latency_ms,
        } => SavedNamespace {
            nsid,
            sim_mib: Some(bytes >> 20),
            block_size: Some(*block_size),
            sim_latency_us: Some(*latency_us),
            sim_metadata_bytes: Some(*metadata_bytes),
            sim_log_page_latency_ms: Some(*log_page_latency_ms),
            ..SavedNamespace::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_configuration_reads_back_the_same() {
        let text = r#"
[target]
cores = 3
max_io_size = 0
keep_alive_timeout_ms = 5000
cntlid_min = 10
cntlid_max = 20
rpc_socket = "/tmp/vfnvme-test.sock"

[limits]
connections = 77
r2t_per_connection = 4

[[listener]]
address = "127.0.0.1:4420"

[[listener]]
address = "[::1]:8009"
discovery_only = true

[[listener]]
address = "0.0.0.0:4421"

[[subsystem]]
nqn = "nqn.2026-11.io.vfnvme:a"
hosts = ["nqn.2014-08.org.nvmexpress:uuid:1", "nqn.2014-08.org.nvmexpress:uuid:2"]
serial = "SN 1"
model = "Model \"quoted\""
listeners = ["0.0.0.0:4421"]

[[subsystem.namespace]]
nsid = 2
pci = "0000:01:00.0"
device_nsid = 3

[[subsystem.namespace]]
nsid = 1
ram_mib = 8
block_size = 4096

[[subsystem.namespace]]
nsid = 7
sim_mib = 4
sim_latency_us = 9
sim_log_page_latency_ms = 5

[[subsystem]]
nqn = "nqn.2026-11.io.vfnvme:empty"
allow_any_host = false
"#;
        let config = Config::parse(text, "in.toml").unwrap();
        let saved = config.to_toml();
        let again =
            Config::parse(&saved, "saved.toml").unwrap_or_else(|error| panic!("{error}\n{saved}"));
        assert_eq!(again, config, "{saved}");
        assert_eq!(again.to_toml(), saved, "saving is stable");
        assert!(saved.contains("[[subsystem.namespace]]"), "{saved}");
    }
}
