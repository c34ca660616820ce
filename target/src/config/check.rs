//! Checking the raw configuration and turning it into a [`Config`]: ranges, formats,
//! duplicates and combinations of keys, with every message an operator may see. Its own file
//! because these rules grow with every setting, apart from the file format in [`super::raw`].

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::Spanned;

use vfnvme_driver::vfio::PciAddress;
use vfnvme_spec::fabrics::{DISCOVERY_NQN, MAX_NQN_BYTES};

use super::raw::{RawConfig, RawListener, RawMetrics, RawNamespace, RawSubsystem, Source};
use super::types::{
    BackingConfig, Config, ConfigError, ListenerConfig, NamespaceConfig, SubsystemConfig,
    MAX_MODEL_BYTES, MAX_SERIAL_BYTES,
};

const DEFAULT_RAM_BLOCK_SIZE: u32 = 512;

/// The configuration `raw`, read from `source`, checked.
pub(super) fn config(source: &Source, raw: RawConfig) -> Result<Config, ConfigError> {
    Checker { source }.config(raw)
}

/// Validation of the raw structures, with the source for naming the line of an error.
pub(super) struct Checker<'a> {
    pub(super) source: &'a Source<'a>,
}

impl Checker<'_> {
    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let limits = super::limits::check(self.source, raw.limits)?;
        let target = self.target(raw.target, limits)?;
        if raw.listener.is_empty() {
            return self.source.incomplete(
                "no [[listener]]; add one, e.g. [[listener]] address = \"0.0.0.0:4420\"",
            );
        }
        let listeners = self.listeners(raw.listener)?;
        let metrics_address = self.metrics_address(raw.metrics)?;
        let keyring = super::keyring::check(self.source, raw.keyring)?;
        let mut subsystems = Vec::with_capacity(raw.subsystem.len());
        let mut nqn_lines: HashMap<String, usize> = HashMap::new();
        let mut exported: HashMap<(String, u32), (String, usize)> = HashMap::new();
        for raw_subsystem in raw.subsystem {
            let nqn_span = raw_subsystem.nqn.span();
            let subsystem = self.subsystem(raw_subsystem, &listeners, &mut exported)?;
            if let Some(first) =
                nqn_lines.insert(subsystem.nqn.clone(), self.source.line_of(&nqn_span))
            {
                return self.source.invalid(
                    nqn_span,
                    format!(
                        "subsystem {} is already configured at line {first}; NQNs must be unique",
                        subsystem.nqn
                    ),
                );
            }
            subsystems.push(subsystem);
        }
        Ok(Config {
            target,
            listeners,
            subsystems,
            metrics_address,
            keyring,
        })
    }

    /// `[metrics] address`: an IP address with a port, if given.
    fn metrics_address(&self, raw: RawMetrics) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(address) = raw.address else {
            return Ok(None);
        };
        let span = address.span();
        let text = address.into_inner();
        match text.parse::<SocketAddr>() {
            Ok(address) => Ok(Some(address)),
            Err(_) => self.source.invalid(
                span,
                format!(
                    "metrics address \"{text}\" is not an IP address with a port; write e.g. \
                     \"127.0.0.1:9420\""
                ),
            ),
        }
    }

    /// The `[[listener]]` tables: addresses, each once.
    fn listeners(&self, raw: Vec<RawListener>) -> Result<Vec<ListenerConfig>, ConfigError> {
        let mut listeners = Vec::with_capacity(raw.len());
        let mut listener_lines: HashMap<SocketAddr, usize> = HashMap::new();
        for listener in raw {
            let span = listener.address.span();
            let text = listener.address.into_inner();
            let Ok(address) = text.parse::<SocketAddr>() else {
                return self.source.invalid(
                    span,
                    format!(
                        "listener address \"{text}\" is not an IP address with a port; \
                         write e.g. \"192.0.2.1:4420\" or \"[2001:db8::1]:4420\""
                    ),
                );
            };
            if let Some(first) = listener_lines.insert(address, self.source.line_of(&span)) {
                return self.source.invalid(
                    span,
                    format!("listener {address} is already configured at line {first}"),
                );
            }
            listeners.push(ListenerConfig {
                address,
                discovery_only: listener.discovery_only,
                secure_channel: super::tls::secure_channel(self.source, listener.secure_channel)?,
            });
        }
        Ok(listeners)
    }

    /// A subsystem's `listeners`: the indices of the listeners named, or by default of every
    /// listener that is not discovery-only. A subsystem must be reachable somewhere.
    fn subsystem_listeners(
        &self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        nqn: &str,
        nqn_span: std::ops::Range<usize>,
        listeners: &[ListenerConfig],
    ) -> Result<Vec<usize>, ConfigError> {
        let Some(raw) = raw else {
            let io_listeners: Vec<usize> = (0..listeners.len())
                .filter(|&index| !listeners[index].discovery_only)
                .collect();
            if io_listeners.is_empty() {
                return self.source.invalid(
                    nqn_span,
                    format!(
                        "subsystem {nqn} is reachable on no listener: every [[listener]] is \
                         discovery_only; add a listener without it"
                    ),
                );
            }
            return Ok(io_listeners);
        };
        let list_span = raw.span();
        let mut chosen = Vec::new();
        for entry in raw.into_inner() {
            let span = entry.span();
            let text = entry.into_inner();
            let Ok(address) = text.parse::<SocketAddr>() else {
                return self.source.invalid(
                    span,
                    format!(
                        "subsystem {nqn}: listener \"{text}\" is not an IP address with a port; \
                         write it as its [[listener]] address is written, e.g. \"0.0.0.0:4420\""
                    ),
                );
            };
            let Some(index) = listeners.iter().position(|l| l.address == address) else {
                let known: Vec<String> = listeners.iter().map(|l| l.address.to_string()).collect();
                return self.source.invalid(
                    span,
                    format!(
                        "subsystem {nqn}: {address} is not a [[listener]] address; give one of {}",
                        known.join(", ")
                    ),
                );
            };
            if listeners[index].discovery_only {
                return self.source.invalid(
                    span,
                    format!(
                        "subsystem {nqn}: listener {address} is discovery_only (only the \
                         discovery subsystem is reachable there); name another listener"
                    ),
                );
            }
            if chosen.contains(&index) {
                return self.source.invalid(
                    span,
                    format!("subsystem {nqn}: listener {address} is listed twice"),
                );
            }
            chosen.push(index);
        }
        if chosen.is_empty() {
            return self.source.invalid(
                list_span,
                format!(
                    "subsystem {nqn} has listeners = [], so no host could reach it; name a \
                     [[listener]] address, or remove the key for every listener that is not \
                     discovery_only"
                ),
            );
        }
        chosen.sort_unstable();
        Ok(chosen)
    }

    fn nqn(&self, nqn: Spanned<String>, what: &str) -> Result<String, ConfigError> {
        let span = nqn.span();
        let nqn = nqn.into_inner();
        if !nqn.starts_with("nqn.") {
            return self.source.invalid(
                span,
                format!(
                    "{what} \"{nqn}\" is not an NQN; NQNs start with \"nqn.\", \
                     e.g. \"nqn.2026-11.io.vfnvme:ssd0\""
                ),
            );
        }
        if nqn.len() > MAX_NQN_BYTES {
            return self.source.invalid(
                span,
                format!(
                    "{what} \"{nqn}\" is {} bytes long; NQNs have at most {MAX_NQN_BYTES}",
                    nqn.len()
                ),
            );
        }
        Ok(nqn)
    }

    fn identify_string(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        max: usize,
    ) -> Result<Option<String>, ConfigError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let span = value.span();
        let text = value.into_inner();
        if text.is_empty() || text.len() > max || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return self.source.invalid(
                span,
                format!("{key} \"{text}\" must be 1 to {max} printable ASCII characters"),
            );
        }
        Ok(Some(text))
    }

    fn subsystem(
        &self,
        raw: RawSubsystem,
        listeners: &[ListenerConfig],
        exported: &mut HashMap<(String, u32), (String, usize)>,
    ) -> Result<SubsystemConfig, ConfigError> {
        let nqn_span = raw.nqn.span();
        let nqn = self.nqn(raw.nqn, "subsystem nqn")?;
        if nqn == DISCOVERY_NQN {
            return self.source.invalid(
                nqn_span,
                format!("{DISCOVERY_NQN} is the discovery subsystem, which vfnvme provides by itself; give your subsystem another NQN"),
            );
        }
        let allow_any_host = raw.allow_any_host.as_ref().is_some_and(|a| *a.get_ref());
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        for host in raw.hosts {
            let span = host.span();
            let host = self.nqn(host, "host")?;
            if hosts.contains(&host) {
                return self
                    .source
                    .invalid(span, format!("host {host} is listed twice"));
            }
            hosts.push(host);
        }
        let mut keys = Vec::new();
        let mut tls_psks = Vec::new();
        for mut entry in raw.host {
            let span = entry.nqn.span();
            let host = self.nqn(entry.nqn.clone(), "host")?;
            if hosts.contains(&host) {
                return self
                    .source
                    .invalid(span, format!("host {host} is listed twice"));
            }
            if let Some(file) = entry.tls_psk_file.take() {
                tls_psks.push(super::tls::host_psk(self.source, &host, &nqn, file)?);
            }
            keys.extend(super::auth::host_key(self.source, &host, entry)?);
            hosts.push(host);
        }
        let auth = super::auth::subsystem_auth(
            self.source,
            &nqn,
            raw.require_authentication,
            allow_any_host,
            &hosts,
            keys,
        )?;
        match (&raw.allow_any_host, hosts.is_empty()) {
            (Some(allow), false) if *allow.get_ref() => {
                return self.source.invalid(
                    allow.span(),
                    format!(
                        "subsystem {nqn} has both allow_any_host = true and a hosts list; \
                         remove one"
                    ),
                )
            }
            _ => {}
        }
        let listeners =
            self.subsystem_listeners(raw.listeners, &nqn, nqn_span.clone(), listeners)?;
        let serial = self.identify_string(raw.serial, "serial", MAX_SERIAL_BYTES)?;
        let model = self.identify_string(raw.model, "model", MAX_MODEL_BYTES)?;
        let mut namespaces: Vec<NamespaceConfig> = Vec::with_capacity(raw.namespace.len());
        let mut nsid_lines: HashMap<u32, usize> = HashMap::new();
        for raw_namespace in raw.namespace {
            let nsid_span = raw_namespace.nsid.span();
            let namespace = self.namespace(raw_namespace, &nqn, exported)?;
            if let Some(first) = nsid_lines.insert(namespace.nsid, self.source.line_of(&nsid_span))
            {
                return self.source.invalid(
                    nsid_span,
                    format!(
                        "namespace {} of subsystem {nqn} is already configured at line {first}",
                        namespace.nsid
                    ),
                );
            }
            namespaces.push(namespace);
        }
        namespaces.sort_by_key(|namespace| namespace.nsid);
        Ok(SubsystemConfig {
            nqn,
            allow_any_host,
            hosts,
            auth,
            tls_psks,
            serial,
            model,
            listeners,
            namespaces,
        })
    }

    pub(super) fn namespace(
        &self,
        raw: RawNamespace,
        subsystem_nqn: &str,
        exported: &mut HashMap<(String, u32), (String, usize)>,
    ) -> Result<NamespaceConfig, ConfigError> {
        let nsid_span = raw.nsid.span();
        let nsid: u32 = self
            .source
            .integer(Some(raw.nsid), "nsid", 1..=0xffff_fffe, 1)?;
        if let Some(sim) = raw.sim_mib.clone() {
            if raw.pci.is_some() || raw.ram_mib.is_some() || raw.device_nsid.is_some() {
                return self.source.invalid(
                    sim.span(),
                    format!(
                        "namespace {nsid}: sim_mib stands alone; drop pci, ram_mib, device_nsid"
                    ),
                );
            }
            let mib: u64 = self.source.integer(Some(sim), "sim_mib", 1..=1 << 20, 1)?;
            let block_size = self.block_size(raw.block_size.clone(), nsid_span.clone())?;
            let latency_us: u64 =
                self.source
                    .integer(raw.sim_latency_us, "sim_latency_us", 0..=10_000_000, 0)?;
            let metadata_bytes: u16 =
                self.source
                    .integer(raw.sim_metadata_bytes, "sim_metadata_bytes", 0..=256, 0)?;
            let log_page_latency_ms: u64 = self.source.integer(
                raw.sim_log_page_latency_ms,
                "sim_log_page_latency_ms",
                0..=60_000,
                0,
            )?;
            let backing = BackingConfig::Simulated {
                bytes: mib << 20,
                block_size,
                latency_us,
                metadata_bytes,
                log_page_latency_ms,
            };
            return Ok(NamespaceConfig { nsid, backing });
        }
        for (key, value) in [
            ("sim_latency_us", &raw.sim_latency_us),
            ("sim_metadata_bytes", &raw.sim_metadata_bytes),
            ("sim_log_page_latency_ms", &raw.sim_log_page_latency_ms),
        ] {
            if let Some(value) = value {
                return self.source.invalid(
                    value.span(),
                    format!("namespace {nsid}: {key} applies to sim_mib namespaces only"),
                );
            }
        }
        let backing = match (raw.pci, raw.ram_mib) {
            (Some(_), Some(ram)) => {
                return self.source.invalid(
                    ram.span(),
                    format!("namespace {nsid} has both pci and ram_mib; give one"),
                )
            }
            (None, None) => {
                return self.source.invalid(
                    nsid_span,
                    format!(
                        "namespace {nsid} has no backing; give pci = \"0000:01:00.0\" \
                         (a vfio-bound drive) or ram_mib = 256"
                    ),
                )
            }
            (Some(pci), None) => {
                if let Some(block_size) = raw.block_size {
                    return self.source.invalid(
                        block_size.span(),
                        format!(
                            "namespace {nsid}: block_size applies to ram_mib namespaces; \
                             a pci namespace has the drive's block size"
                        ),
                    );
                }
                let pci_span = pci.span();
                let pci = pci.into_inner();
                if pci.parse::<PciAddress>().is_err() {
                    return self.source.invalid(
                        pci_span,
                        format!(
                            "namespace {nsid}: pci = \"{pci}\" is not a PCI address; write \
                             domain:bus:device.function, e.g. \"0000:01:00.0\" (see lspci -D)"
                        ),
                    );
                }
                let device_nsid: u32 =
                    self.source
                        .integer(raw.device_nsid, "device_nsid", 1..=0xffff_fffe, 1)?;
                let line = self.source.line_of(&pci_span);
                if let Some((other, first)) =
                    exported.insert((pci.clone(), device_nsid), (subsystem_nqn.to_owned(), line))
                {
                    return self.source.invalid(
                        pci_span,
                        format!(
                            "namespace {device_nsid} of drive {pci} is already exported by \
                             subsystem {other} at line {first}; a drive namespace can be \
                             exported once"
                        ),
                    );
                }
                BackingConfig::Passthrough { pci, device_nsid }
            }
            (None, Some(ram)) => {
                if let Some(device_nsid) = raw.device_nsid {
                    return self.source.invalid(
                        device_nsid.span(),
                        format!("namespace {nsid}: device_nsid applies to pci namespaces only"),
                    );
                }
                let mib: u64 = self.source.integer(Some(ram), "ram_mib", 1..=1 << 24, 1)?;
                let block_size = self.block_size(raw.block_size, nsid_span)?;
                BackingConfig::Ram {
                    bytes: mib << 20,
                    block_size,
                }
            }
        };
        Ok(NamespaceConfig { nsid, backing })
    }

    /// `block_size` of a RAM or simulated namespace: a power of two from 512 to 64 KiB.
    fn block_size(
        &self,
        raw: Option<Spanned<u64>>,
        nsid_span: std::ops::Range<usize>,
    ) -> Result<u32, ConfigError> {
        let block_size: u32 = self.source.integer(
            raw.clone(),
            "block_size",
            512..=65536,
            DEFAULT_RAM_BLOCK_SIZE,
        )?;
        if !block_size.is_power_of_two() {
            let span = raw.map_or(nsid_span, |b| b.span());
            return self.source.invalid(
                span,
                format!("block_size = {block_size} is not a power of two"),
            );
        }
        Ok(block_size)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::types::{TargetConfig, DEFAULT_MAX_IO_SIZE};
    use super::*;

    const MINIMAL: &str = r#"[target]
cores = 2                       # poll groups

[[listener]]
address = "127.0.0.1:4420"

[[subsystem]]
nqn = "nqn.2026-11.io.vfnvme:ssd0"
allow_any_host = true           # or: hosts = ["nqn.2014-08.org.nvmexpress:uuid:..."]

[[subsystem.namespace]]
nsid = 1
pci = "0000:01:00.0"            # passthrough of that drive's namespace 1 (device_nsid = N for another)
# ram_mib = 256                 # or a RAM namespace instead of pci
"#;

    fn error_of(text: &str) -> String {
        Config::parse(text, "vfnvme.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_metrics_endpoint_is_off_unless_given_an_address() {
        assert_eq!(
            Config::parse(MINIMAL, "m.toml").unwrap().metrics_address,
            None
        );
        let on = Config::parse(&with("[metrics]\naddress = \"127.0.0.1:9420\"\n"), "m.toml");
        assert_eq!(
            on.unwrap().metrics_address,
            Some("127.0.0.1:9420".parse().unwrap())
        );
        let message = error_of(&with("[metrics]\naddress = \"localhost\"\n"));
        assert!(
            message.contains("metrics address \"localhost\" is not an IP address with a port"),
            "{message}"
        );
        let message = error_of(&with("[metrics]\nport = 9420\n"));
        assert!(message.contains("unknown field `port`"), "{message}");
    }

    /// The minimal configuration with `extra` appended (new tables or namespace keys).
    fn with(extra: &str) -> String {
        format!("{MINIMAL}{extra}")
    }

    #[test]
    fn simulated_namespaces_take_size_block_size_latency_and_metadata() {
        let text = with("\n[[subsystem.namespace]]\nnsid = 2\nsim_mib = 8\nblock_size = 4096\nsim_latency_us = 50\nsim_metadata_bytes = 8\nsim_log_page_latency_ms = 7\n");
        let config = Config::parse(&text, "vfnvme.toml").unwrap();
        assert_eq!(
            config.subsystems[0].namespaces[1].backing,
            BackingConfig::Simulated {
                bytes: 8 << 20,
                block_size: 4096,
                latency_us: 50,
                metadata_bytes: 8,
                log_page_latency_ms: 7,
            }
        );
        assert_eq!(
            error_of(&with(
                "\n[[subsystem.namespace]]\nnsid = 2\nsim_mib = 8\nram_mib = 8\n"
            )),
            "vfnvme.toml:18: namespace 2: sim_mib stands alone; drop pci, ram_mib, device_nsid"
        );
        assert_eq!(
            error_of(&with(
                "\n[[subsystem.namespace]]\nnsid = 2\nram_mib = 8\nsim_latency_us = 5\n"
            )),
            "vfnvme.toml:19: namespace 2: sim_latency_us applies to sim_mib namespaces only"
        );
        assert_eq!(
            error_of(&with(
                "\n[[subsystem.namespace]]\nnsid = 2\nram_mib = 8\nsim_metadata_bytes = 8\n"
            )),
            "vfnvme.toml:19: namespace 2: sim_metadata_bytes applies to sim_mib namespaces only"
        );
        assert_eq!(
            error_of(&with(
                "\n[[subsystem.namespace]]\nnsid = 2\nram_mib = 8\nsim_log_page_latency_ms = 8\n"
            )),
            "vfnvme.toml:19: namespace 2: sim_log_page_latency_ms applies to sim_mib namespaces \
             only"
        );
    }

    #[test]
    fn minimal_form_is_accepted_with_defaults() {
        let config = Config::parse(MINIMAL, "vfnvme.toml").unwrap();
        assert_eq!(
            config.target,
            TargetConfig {
                cores: 2,
                ..TargetConfig::default()
            }
        );
        assert_eq!(config.target.in_capsule_data_size, 8192);
        assert_eq!(config.target.max_queue_depth, 128);
        assert_eq!(config.target.max_io_size, Some(DEFAULT_MAX_IO_SIZE));
        assert_eq!(config.target.keep_alive_timeout, Duration::from_secs(120));
        assert_eq!(config.target.shutdown_deadline, Duration::from_secs(10));
        assert_eq!(
            config.listeners,
            vec![ListenerConfig {
                address: "127.0.0.1:4420".parse().unwrap(),
                discovery_only: false,
                secure_channel: crate::config::SecureChannel::None,
            }]
        );
        assert_eq!(
            config.subsystems,
            vec![SubsystemConfig {
                nqn: "nqn.2026-11.io.vfnvme:ssd0".into(),
                allow_any_host: true,
                hosts: vec![],
                auth: crate::config::SubsystemAuth::default(),
                tls_psks: Vec::new(),
                serial: None,
                model: None,
                listeners: vec![0],
                namespaces: vec![NamespaceConfig {
                    nsid: 1,
                    backing: BackingConfig::Passthrough {
                        pci: "0000:01:00.0".into(),
                        device_nsid: 1
                    }
                }]
            }]
        );
    }

    #[test]
    fn deployed_example_parses() {
        let text = include_str!("../../../deploy/vfnvme.toml");
        let config = Config::parse(text, "deploy/vfnvme.toml").unwrap();
        assert!(!config.subsystems.is_empty());
        assert!(!config.listeners.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"
[target]
cores = 4
in_capsule_data_size = 4096
max_queue_depth = 256
max_io_queues = 8
max_io_size = 131072
keep_alive_timeout_ms = 5000
shutdown_deadline_ms = 2500
cntlid_min = 16
cntlid_max = 31

[[listener]]
address = "[::1]:4420"

[[subsystem]]
nqn = "nqn.2026-11.io.vfnvme:mixed"
hosts = ["nqn.2014-08.org.nvmexpress:uuid:1", "nqn.2014-08.org.nvmexpress:uuid:2"]
serial = "SN123"
model = "vfnvme test"

[[subsystem.namespace]]
nsid = 7
ram_mib = 16
block_size = 4096

[[subsystem.namespace]]
nsid = 2
pci = "0000:af:00.1"
device_nsid = 3
"#;
        let config = Config::parse(text, "t.toml").unwrap();
        assert_eq!(
            config.target,
            TargetConfig {
                cores: 4,
                cpus: None,
                c2h_success: false,
                in_capsule_data_size: 4096,
                max_queue_depth: 256,
                max_io_queues: 8,
                max_io_size: Some(131072),
                keep_alive_timeout: Duration::from_secs(5),
                shutdown_deadline: Duration::from_millis(2500),
                park_after: Duration::from_millis(1),
                cntlids: 16..=31,
                limits: Default::default(),
                rpc_socket: None,
                dhchap: Default::default(),
            }
        );
        let subsystem = &config.subsystems[0];
        assert!(!subsystem.allow_any_host);
        assert_eq!(subsystem.hosts.len(), 2);
        assert_eq!(subsystem.serial.as_deref(), Some("SN123"));
        assert_eq!(subsystem.model.as_deref(), Some("vfnvme test"));
        assert_eq!(
            subsystem.namespaces,
            vec![
                NamespaceConfig {
                    nsid: 2,
                    backing: BackingConfig::Passthrough {
                        pci: "0000:af:00.1".into(),
                        device_nsid: 3
                    }
                },
                NamespaceConfig {
                    nsid: 7,
                    backing: BackingConfig::Ram {
                        bytes: 16 << 20,
                        block_size: 4096
                    }
                }
            ]
        );
    }

    #[test]
    fn syntax_and_unknown_keys_are_reported_with_their_line() {
        assert!(error_of("[target]\ncores = \n").starts_with("vfnvme.toml:2: "));
        let unknown = error_of("[target]\ncores = 1\ncorse = 2\n");
        assert!(unknown.starts_with("vfnvme.toml:3: "), "{unknown}");
        assert!(unknown.contains("corse"), "{unknown}");
        let wrong_type = error_of(&MINIMAL.replace("cores = 2", "cores = \"two\""));
        assert!(wrong_type.starts_with("vfnvme.toml:2: "), "{wrong_type}");
    }

    #[test]
    fn cpus_name_one_distinct_cpu_per_poll_group() {
        let parse = |keys: &str| Config::parse(&MINIMAL.replace("cores = 2", keys), "f");
        let pinned = parse("cpus = [3, 1]").unwrap().target;
        assert_eq!((pinned.cores, pinned.cpus), (2, Some(vec![3, 1])));
        let both = parse("cores = 2\ncpus = [0, 1]").unwrap().target;
        assert_eq!((both.cores, both.cpus), (2, Some(vec![0, 1])));
        assert_eq!(parse("cores = 2").unwrap().target.cpus, None);
        let error = |keys: &str| error_of(&MINIMAL.replace("cores = 2", keys));
        assert_eq!(
            error("cores = 3\ncpus = [0, 1]"),
            "vfnvme.toml:2: cores = 3 but cpus lists 2 CPUs; each poll group needs one CPU of \
             its own: list 3, or leave cores out"
        );
        assert_eq!(
            error("cpus = [0, 2, 0]"),
            "vfnvme.toml:2: cpus names CPU 0 twice; each poll group needs one of its own"
        );
        assert_eq!(
            error("cpus = [1024]"),
            "vfnvme.toml:2: cpus: CPU 1024 is out of range; give 0 to 1023"
        );
        assert!(error("cpus = []").starts_with("vfnvme.toml:2: cpus = [] names no CPU"));
    }

    #[test]
    fn park_after_us_sets_the_polling_window() {
        let parse = |keys: &str| Config::parse(&MINIMAL.replace("cores = 2", keys), "f");
        assert_eq!(
            parse("park_after_us = 20000").unwrap().target.park_after,
            Duration::from_millis(20)
        );
        assert_eq!(
            parse("park_after_us = 0").unwrap().target.park_after,
            Duration::ZERO
        );
        assert_eq!(
            error_of(&MINIMAL.replace("cores = 2", "park_after_us = 60000001")),
            "vfnvme.toml:2: park_after_us = 60000001 is out of range; give 0 to 60000000"
        );
    }

    #[test]
    fn target_values_are_range_checked() {
        assert_eq!(
            error_of(&MINIMAL.replace("cores = 2", "cores = 0")),
            "vfnvme.toml:2: cores = 0 is out of range; give 1 to 1024"
        );
        let icd = error_of(&MINIMAL.replace("cores = 2", "in_capsule_data_size = 100"));
        assert!(
            icd.starts_with("vfnvme.toml:2: in_capsule_data_size = 100"),
            "{icd}"
        );
        let mdts = error_of(&MINIMAL.replace("cores = 2", "max_io_size = 100000"));
        assert!(
            mdts.starts_with("vfnvme.toml:2: max_io_size = 100000"),
            "{mdts}"
        );
        let depth = error_of(&MINIMAL.replace("cores = 2", "max_queue_depth = 1"));
        assert!(
            depth.starts_with("vfnvme.toml:2: max_queue_depth = 1"),
            "{depth}"
        );
        let zero = Config::parse(&MINIMAL.replace("cores = 2", "max_io_size = 0"), "f").unwrap();
        assert_eq!(zero.target.max_io_size, None);
    }

    #[test]
    fn controller_id_range_is_checked() {
        let range = |keys: &str| error_of(&MINIMAL.replace("cores = 2", keys));
        assert_eq!(
            range("cntlid_min = 0"),
            "vfnvme.toml:2: cntlid_min = 0 is out of range; give 1 to 65519"
        );
        assert_eq!(
            range("cntlid_max = 65520"),
            "vfnvme.toml:2: cntlid_max = 65520 is out of range; give 1 to 65519"
        );
        assert_eq!(
            range("cntlid_min = 200\ncntlid_max = 100"),
            "vfnvme.toml:2: cntlid_min = 200 is above cntlid_max = 100; controller IDs are \
             given from cntlid_min to cntlid_max"
        );
        let parse = |keys: &str| Config::parse(&MINIMAL.replace("cores = 2", keys), "f");
        assert_eq!(parse("cntlid_max = 1").unwrap().target.cntlids, 1..=1);
        assert_eq!(
            parse("cntlid_min = 65519").unwrap().target.cntlids,
            65519..=65519
        );
    }

    #[test]
    fn in_capsule_data_size_leaves_room_for_connect_data() {
        for small in [0, 16, 1008] {
            let line = format!("in_capsule_data_size = {small}");
            assert_eq!(
                error_of(&MINIMAL.replace("cores = 2", &line)),
                format!(
                    "vfnvme.toml:2: in_capsule_data_size = {small} leaves no room for the \
                     1024 bytes of Connect data, which Linux hosts then send by R2T, and every \
                     I/O queue Connect would fail; give at least 1024 (8192, the default, is \
                     what Linux and SPDK targets use)"
                )
            );
        }
        let smallest = Config::parse(
            &MINIMAL.replace("cores = 2", "in_capsule_data_size = 1024"),
            "f",
        )
        .unwrap();
        assert_eq!(smallest.target.in_capsule_data_size, 1024);
    }

    #[test]
    fn listener_errors_point_at_the_address() {
        let bad = error_of(&MINIMAL.replace("127.0.0.1:4420", "localhost"));
        assert!(
            bad.starts_with("vfnvme.toml:5: listener address \"localhost\""),
            "{bad}"
        );
        let duplicate = error_of(&with("\n[[listener]]\naddress = \"127.0.0.1:4420\"\n"));
        assert!(
            duplicate.starts_with(
                "vfnvme.toml:17: listener 127.0.0.1:4420 is already configured at line 5"
            ),
            "{duplicate}"
        );
        let none = error_of(&MINIMAL.replace("[[listener]]\naddress = \"127.0.0.1:4420\"", ""));
        assert!(none.starts_with("vfnvme.toml: no [[listener]]"), "{none}");
    }

    /// `MINIMAL` with a discovery-only listener on 8009 after its listener, and `keys` in its
    /// subsystem (after `allow_any_host`, line 13).
    fn with_listeners(keys: &str) -> String {
        MINIMAL
            .replace(
                "address = \"127.0.0.1:4420\"\n",
                "address = \"127.0.0.1:4420\"\n\n[[listener]]\naddress = \"0.0.0.0:8009\"\n\
                 discovery_only = true\n",
            )
            .replace(
                "# or: hosts = [\"nqn.2014-08.org.nvmexpress:uuid:...\"]\n",
                &format!("# or: hosts = [\"nqn.2014-08.org.nvmexpress:uuid:...\"]\n{keys}\n"),
            )
    }

    #[test]
    fn subsystems_are_on_the_listeners_they_name_by_default_every_io_listener() {
        let config = Config::parse(&with_listeners(""), "vfnvme.toml").unwrap();
        assert_eq!(
            config.listeners[1],
            ListenerConfig {
                address: "0.0.0.0:8009".parse().unwrap(),
                discovery_only: true,
                secure_channel: crate::config::SecureChannel::None,
            }
        );
        assert_eq!(
            config.subsystems[0].listeners,
            vec![0],
            "not the discovery port"
        );
        let two = with_listeners("listeners = [\"127.0.0.2:4420\", \"127.0.0.1:4420\"]").replace(
            "[[subsystem]]",
            "[[listener]]\naddress = \"127.0.0.2:4420\"\n\n[[subsystem]]",
        );
        let config = Config::parse(&two, "vfnvme.toml").unwrap();
        assert_eq!(config.subsystems[0].listeners, vec![0, 2]);
    }

    #[test]
    fn subsystem_listener_errors_point_at_their_line() {
        assert_eq!(
            error_of(&with_listeners("listeners = [\"127.0.0.1:4421\"]")),
            "vfnvme.toml:14: subsystem nqn.2026-11.io.vfnvme:ssd0: 127.0.0.1:4421 is not a \
             [[listener]] address; give one of 127.0.0.1:4420, 0.0.0.0:8009"
        );
        assert_eq!(
            error_of(&with_listeners("listeners = [\"0.0.0.0:8009\"]")),
            "vfnvme.toml:14: subsystem nqn.2026-11.io.vfnvme:ssd0: listener 0.0.0.0:8009 is \
             discovery_only (only the discovery subsystem is reachable there); name another \
             listener"
        );
        assert_eq!(
            error_of(&with_listeners(
                "listeners = [\"127.0.0.1:4420\", \"127.0.0.1:4420\"]"
            )),
            "vfnvme.toml:14: subsystem nqn.2026-11.io.vfnvme:ssd0: listener 127.0.0.1:4420 is \
             listed twice"
        );
        let empty = error_of(&with_listeners("listeners = []"));
        assert!(
            empty.starts_with(
                "vfnvme.toml:14: subsystem nqn.2026-11.io.vfnvme:ssd0 has listeners = [], so no \
                 host could reach it"
            ),
            "{empty}"
        );
        let bad = error_of(&with_listeners("listeners = [\"localhost:4420\"]"));
        assert!(
            bad.starts_with(
                "vfnvme.toml:14: subsystem nqn.2026-11.io.vfnvme:ssd0: listener \"localhost:4420\" \
                 is not an IP address with a port"
            ),
            "{bad}"
        );
        let nowhere = error_of(&with_listeners("").replace(
            "address = \"127.0.0.1:4420\"\n",
            "address = \"127.0.0.1:4420\"\ndiscovery_only = true\n",
        ));
        assert_eq!(
            nowhere,
            "vfnvme.toml:13: subsystem nqn.2026-11.io.vfnvme:ssd0 is reachable on no listener: \
             every [[listener]] is discovery_only; add a listener without it"
        );
    }

    #[test]
    fn subsystem_errors_point_at_their_line() {
        let not_nqn = error_of(&MINIMAL.replace("nqn.2026-11.io.vfnvme:ssd0", "ssd0"));
        assert!(
            not_nqn.starts_with("vfnvme.toml:8: subsystem nqn \"ssd0\" is not an NQN"),
            "{not_nqn}"
        );
        let long = format!("nqn.{}", "x".repeat(220));
        let too_long = error_of(&MINIMAL.replace("nqn.2026-11.io.vfnvme:ssd0", &long));
        assert!(
            too_long.starts_with("vfnvme.toml:8: ") && too_long.contains("224 bytes"),
            "{too_long}"
        );
        let discovery = error_of(&MINIMAL.replace("nqn.2026-11.io.vfnvme:ssd0", DISCOVERY_NQN));
        assert!(discovery.starts_with("vfnvme.toml:8: "), "{discovery}");
        let duplicate = error_of(&with(
            "\n[[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:ssd0\"\nallow_any_host = true\n\
             [[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n",
        ));
        assert!(
            duplicate.starts_with("vfnvme.toml:17: subsystem nqn.2026-11.io.vfnvme:ssd0 is already configured at line 8"),
            "{duplicate}"
        );
        // Closed to every host, without namespaces, or none at all: states the management
        // socket reaches (a subsystem created, its last host removed), so they load.
        let nobody = MINIMAL.replace("allow_any_host = true", "allow_any_host = false");
        let config = Config::parse(&nobody, "vfnvme.toml").unwrap();
        assert!(!config.subsystems[0].allow_any_host && config.subsystems[0].hosts.is_empty());
        let empty = &MINIMAL[..MINIMAL.find("[[subsystem.namespace]]").unwrap()];
        assert!(Config::parse(empty, "vfnvme.toml").unwrap().subsystems[0]
            .namespaces
            .is_empty());
        let no_subsystem = &MINIMAL[..MINIMAL.find("[[subsystem]]").unwrap()];
        assert!(Config::parse(no_subsystem, "vfnvme.toml")
            .unwrap()
            .subsystems
            .is_empty());
        let both = error_of(&MINIMAL.replace(
            "allow_any_host = true",
            "allow_any_host = true\nhosts = [\"nqn.2014-08.org.nvmexpress:uuid:1\"]",
        ));
        assert!(
            both.starts_with("vfnvme.toml:9: ") && both.contains("remove one"),
            "{both}"
        );
        let bad_host = error_of(&MINIMAL.replace("allow_any_host = true", "hosts = [\"me\"]"));
        assert!(
            bad_host.starts_with("vfnvme.toml:9: host \"me\" is not an NQN"),
            "{bad_host}"
        );
        let serial = error_of(&MINIMAL.replace(
            "allow_any_host = true",
            "allow_any_host = true\nserial = \"012345678901234567890\"",
        ));
        assert!(serial.starts_with("vfnvme.toml:10: serial"), "{serial}");
    }

    #[test]
    fn namespace_errors_point_at_their_line() {
        assert_eq!(
            error_of(&MINIMAL.replace("# ram_mib = 256", "ram_mib = 256")),
            "vfnvme.toml:14: namespace 1 has both pci and ram_mib; give one"
        );
        let neither = error_of(&MINIMAL.replace("pci = \"0000:01:00.0\"", ""));
        assert!(
            neither.starts_with("vfnvme.toml:12: namespace 1 has no backing"),
            "{neither}"
        );
        let duplicate = error_of(&with("\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n"));
        assert!(
            duplicate.starts_with("vfnvme.toml:17: namespace 1 of subsystem nqn.2026-11.io.vfnvme:ssd0 is already configured at line 12"),
            "{duplicate}"
        );
        let zero = error_of(&MINIMAL.replace("nsid = 1", "nsid = 0"));
        assert!(
            zero.starts_with("vfnvme.toml:12: nsid = 0 is out of range"),
            "{zero}"
        );
        let bdf = error_of(&MINIMAL.replace("0000:01:00.0", "01:00.0"));
        assert!(
            bdf.starts_with("vfnvme.toml:13: namespace 1: pci = \"01:00.0\" is not a PCI address"),
            "{bdf}"
        );
        let twice = error_of(&with(
            "\n[[subsystem.namespace]]\nnsid = 2\npci = \"0000:01:00.0\"\n",
        ));
        assert!(
            twice.starts_with(
                "vfnvme.toml:18: namespace 1 of drive 0000:01:00.0 is already exported"
            ),
            "{twice}"
        );
        let other_ns =
            with("\n[[subsystem.namespace]]\nnsid = 2\npci = \"0000:01:00.0\"\ndevice_nsid = 2\n");
        assert!(Config::parse(&other_ns, "f").is_ok());
        let ram_nsid = error_of(&with(
            "\n[[subsystem.namespace]]\nnsid = 2\nram_mib = 1\ndevice_nsid = 2\n",
        ));
        assert!(
            ram_nsid.starts_with("vfnvme.toml:19: namespace 2: device_nsid applies to pci"),
            "{ram_nsid}"
        );
        let pci_block = error_of(&MINIMAL.replace("nsid = 1\n", "nsid = 1\nblock_size = 4096\n"));
        assert!(
            pci_block.starts_with("vfnvme.toml:13: namespace 1: block_size applies to ram_mib"),
            "{pci_block}"
        );
        let odd_block = error_of(&with(
            "\n[[subsystem.namespace]]\nnsid = 2\nram_mib = 1\nblock_size = 1000\n",
        ));
        assert!(
            odd_block.starts_with("vfnvme.toml:19: block_size = 1000 is not a power of two"),
            "{odd_block}"
        );
        let missing = error_of(&with("\n[[subsystem.namespace]]\nram_mib = 1\n"));
        assert!(missing.contains("nsid"), "{missing}");
    }

    #[test]
    fn pci_addresses_are_recognised() {
        assert!("0000:01:00.0".parse::<PciAddress>().is_ok());
        assert!("10de:AF:1f.7".parse::<PciAddress>().is_ok());
        assert!("0000:01:00.8".parse::<PciAddress>().is_err());
        assert!("0000:01:00".parse::<PciAddress>().is_err());
        assert!("0000:01:00.0:1".parse::<PciAddress>().is_err());
        assert!("000g:01:00.0".parse::<PciAddress>().is_err());
    }
}
