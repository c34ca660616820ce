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
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<SavedMetrics>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keyring: Vec<SavedKeyringKey>,
}

#[derive(Serialize)]
struct SavedKeyringKey {
    name: String,
    path: String,
}

#[derive(Serialize)]
struct SavedMetrics {
    address: String,
}

#[derive(Serialize)]
struct SavedTarget {
    cores: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    c2h_success: bool,
    in_capsule_data_size: u32,
    max_queue_depth: u16,
    max_io_queues: u16,
    /// 0: the drives' own limit.
    max_io_size: u32,
    keep_alive_timeout_ms: u64,
    shutdown_deadline_ms: u64,
    park_after_us: u64,
    cntlid_min: u16,
    cntlid_max: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc_socket: Option<String>,
    dhchap_digests: Vec<&'static str>,
    dhchap_dhgroups: Vec<&'static str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    secure_channel: Option<&'static str>,
}

#[derive(Serialize)]
struct SavedSubsystem {
    nqn: String,
    allow_any_host: bool,
    /// The hosts without a key; those with one are `host` entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    require_authentication: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    listeners: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    host: Vec<SavedHost>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    namespace: Vec<SavedNamespace>,
}

/// A `[[subsystem.host]]`: a host with its DH-HMAC-CHAP key files (the files are named, their
/// content stays where it is).
#[derive(Serialize)]
struct SavedHost {
    nqn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dhchap_secret_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dhchap_ctrl_secret_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_psk_file: Option<String>,
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
                cpus: target.cpus.clone(),
                c2h_success: target.c2h_success,
                in_capsule_data_size: target.in_capsule_data_size,
                max_queue_depth: target.max_queue_depth,
                max_io_queues: target.max_io_queues,
                max_io_size: target.max_io_size.unwrap_or(0),
                keep_alive_timeout_ms: target.keep_alive_timeout.as_millis() as u64,
                shutdown_deadline_ms: target.shutdown_deadline.as_millis() as u64,
                park_after_us: target.park_after.as_micros() as u64,
                cntlid_min: *target.cntlids.start(),
                cntlid_max: *target.cntlids.end(),
                rpc_socket: target
                    .rpc_socket
                    .as_ref()
                    .map(|path| path.display().to_string()),
                dhchap_digests: target.dhchap.hashes.iter().map(|h| h.name()).collect(),
                dhchap_dhgroups: target.dhchap.dh_groups.iter().map(|g| g.name()).collect(),
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
                    secure_channel: (listener.secure_channel != super::SecureChannel::None)
                        .then(|| listener.secure_channel.name()),
                })
                .collect(),
            subsystem: self
                .subsystems
                .iter()
                .map(|subsystem| self.saved_subsystem(subsystem))
                .collect(),
            metrics: self.metrics_address.map(|address| SavedMetrics {
                address: address.to_string(),
            }),
            keyring: self
                .keyring
                .keys()
                .iter()
                .map(|key| SavedKeyringKey {
                    name: key.name.clone(),
                    path: key.path.display().to_string(),
                })
                .collect(),
        };
        let body = toml::to_string(&saved).expect("the configuration's types serialize as TOML");
        format!("# The running configuration of vfnvme serve (save_config).\n\n{body}")
    }

    fn saved_subsystem(&self, subsystem: &SubsystemConfig) -> SavedSubsystem {
        let auth = &subsystem.auth;
        let psk_of = |host: &str| subsystem.tls_psks.iter().find(|psk| psk.host_nqn == host);
        // Keys of hosts removed while the target ran are kept (the running subsystem still
        // has them) but not written: the file lists only hosts it admits.
        let (keyed, plain): (Vec<&String>, Vec<&String>) = subsystem
            .hosts
            .iter()
            .partition(|host| auth.key_of(host).is_some() || psk_of(host).is_some());
        SavedSubsystem {
            nqn: subsystem.nqn.clone(),
            allow_any_host: subsystem.allow_any_host,
            hosts: plain.into_iter().cloned().collect(),
            require_authentication: auth.required,
            host: keyed
                .into_iter()
                .map(|host| {
                    let key = auth.key_of(host);
                    SavedHost {
                        nqn: host.clone(),
                        dhchap_secret_file: key.map(|key| key.secret_file.display().to_string()),
                        dhchap_ctrl_secret_file: key
                            .and_then(|key| key.ctrl_secret_file.as_ref())
                            .map(|file| file.display().to_string()),
                        tls_psk_file: psk_of(host).map(|psk| psk.file.display().to_string()),
                    }
                })
                .collect(),
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
cpus = [2, 0, 1]
c2h_success = true
max_io_size = 0
park_after_us = 20000
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

[metrics]
address = "127.0.0.1:9420"
"#;
        let config = Config::parse(text, "in.toml").unwrap();
        let saved = config.to_toml();
        let again =
            Config::parse(&saved, "saved.toml").unwrap_or_else(|error| panic!("{error}\n{saved}"));
        assert_eq!(again, config, "{saved}");
        assert_eq!(again.to_toml(), saved, "saving is stable");
        assert!(
            saved.contains("cpus = [2, 0, 1]\nc2h_success = true"),
            "{saved}"
        );
        assert!(saved.contains("[[subsystem.namespace]]"), "{saved}");
        assert!(
            saved.contains("[metrics]\naddress = \"127.0.0.1:9420\""),
            "{saved}"
        );
    }

    #[test]
    fn host_keys_are_saved_as_the_files_they_came_from() {
        use std::os::unix::fs::PermissionsExt;
        let key_file = |name: &str, byte: u8| {
            let path =
                std::env::temp_dir().join(format!("vfnvme-save-{name}-{}.key", std::process::id()));
            let key = vfnvme_auth::DhchapSecret::new(&[byte; 32], None).unwrap();
            std::fs::write(&path, &*key.representation()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let (host, ctrl, other) = (key_file("h", 1), key_file("c", 2), key_file("o", 3));
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:4420\"\n\n\
             [[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:locked\"\nrequire_authentication = true\n\
             [[subsystem.host]]\nnqn = \"nqn.2014-08.org.nvmexpress:uuid:h1\"\n\
             dhchap_secret_file = \"{}\"\ndhchap_ctrl_secret_file = \"{}\"\n\n\
             [[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:mixed\"\n\
             hosts = [\"nqn.2014-08.org.nvmexpress:uuid:plain\"]\n\
             [[subsystem.host]]\nnqn = \"nqn.2014-08.org.nvmexpress:uuid:h2\"\n\
             dhchap_secret_file = \"{}\"\n",
            host.display(),
            ctrl.display(),
            other.display()
        );
        let config = Config::parse(&text, "/etc/in.toml").unwrap();
        let saved = config.to_toml();
        let again = Config::parse(&saved, "/etc/saved.toml");
        for file in [&host, &ctrl, &other] {
            std::fs::remove_file(file).unwrap();
        }
        assert_eq!(again.unwrap(), config, "{saved}");
        assert!(
            !saved.contains("DHHC-1"),
            "secrets are named by file, never written"
        );
        assert!(saved.contains("require_authentication = true"), "{saved}");
    }
}
