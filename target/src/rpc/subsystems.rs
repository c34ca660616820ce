//! The `nvmf_*` methods of subsystems and their controllers, one function per method, with
//! SPDK's names and param and result shapes where they fit (docs/rpc.md). Their hosts are
//! `hosts.rs`'s.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use vfnvme_spec::fabrics::DISCOVERY_NQN;
use vfnvme_spec::identify::NamespaceIds;

use crate::attach::{release_if_unneeded, AttachError};
use crate::config::{BackingConfig, NamespaceConfig, SubsystemAuth, SubsystemConfig};
use crate::subsystem::{HostAccess, Subsystem};

use super::context::Management;
use super::params::{parse, CreateSubsystem, GetSubsystems, Nqn};
use super::protocol::{RpcError, INTERNAL_ERROR};

/// `nvmf_get_subsystems`: the discovery subsystem, then every NVM subsystem.
pub fn get_subsystems(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: GetSubsystems = parse(params_value)?;
    let listeners = m.shared.listeners().all();
    let mut list = Vec::new();
    if request
        .nqn
        .as_deref()
        .is_none_or(|nqn| nqn == DISCOVERY_NQN)
    {
        list.push(json!({
            "nqn": DISCOVERY_NQN,
            "subtype": "Discovery",
            "listen_addresses": listeners
                .iter()
                .filter(|listener| listener.open)
                .map(|listener| listen_address(&listener.address))
                .collect::<Vec<_>>(),
            "allow_any_host": true,
            "hosts": [],
        }));
    }
    for config in &m.config.subsystems {
        if request.nqn.as_deref().is_some_and(|nqn| nqn != config.nqn) {
            continue;
        }
        let registry = m.registry(&config.nqn)?;
        let subsystem = registry.subsystem();
        let access = registry.access();
        list.push(json!({
            "nqn": subsystem.nqn,
            "subtype": "NVMe",
            "listen_addresses": access
                .listeners
                .iter()
                .map(|&index| listen_address(&listeners[index].address))
                .collect::<Vec<_>>(),
            "allow_any_host": access.allow_any_host,
            "hosts": access.hosts.iter().map(|host| json!({"nqn": host})).collect::<Vec<_>>(),
            "serial_number": subsystem.serial,
            "model_number": subsystem.model,
            "max_io_size": subsystem.max_io_size,
            "namespaces": namespaces(config, subsystem),
        }));
    }
    if let (Some(nqn), true) = (&request.nqn, list.is_empty()) {
        return Err(RpcError::invalid_params(format!(
            "no subsystem {nqn}; nvmf_get_subsystems without params lists them"
        )));
    }
    Ok(Value::Array(list))
}

/// A listener as SPDK's `listen_addresses` entries describe one.
pub(super) fn listen_address(address: &SocketAddr) -> Value {
    json!({
        "trtype": "TCP",
        "adrfam": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "traddr": address.ip().to_string(),
        "trsvcid": address.port().to_string(),
    })
}

fn namespaces(config: &SubsystemConfig, subsystem: &Subsystem) -> Vec<Value> {
    subsystem
        .namespaces
        .get()
        .iter()
        .map(|namespace| {
            let name = config
                .namespaces
                .iter()
                .find(|configured| configured.nsid == namespace.nsid)
                .map_or_else(String::new, |configured| {
                    drive_name(&config.nqn, configured)
                });
            let mut entry = json!({
                "nsid": namespace.nsid,
                "bdev_name": name,
                "name": name,
                "block_size": namespace.block_size,
                "num_blocks": namespace.blocks,
                "size": namespace.blocks * u64::from(namespace.block_size),
            });
            add_ids(&mut entry, &namespace.ids);
            entry
        })
        .collect()
}

/// What backs a namespace, as the target names its drives: the PCI address (with the drive's
/// namespace), `ram:<nqn>:<nsid>`, `sim:<nqn>:<nsid>`.
fn drive_name(nqn: &str, namespace: &NamespaceConfig) -> String {
    match &namespace.backing {
        BackingConfig::Passthrough { pci, device_nsid } => format!("{pci}n{device_nsid}"),
        BackingConfig::Ram { .. } => format!("ram:{nqn}:{}", namespace.nsid),
        BackingConfig::Simulated { .. } => format!("sim:{nqn}:{}", namespace.nsid),
    }
}

/// NGUID and EUI-64 as SPDK writes them (hexadecimal), the UUID in its usual form.
fn add_ids(entry: &mut Value, ids: &NamespaceIds) {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<String>();
    if let Some(nguid) = ids.nguid {
        entry["nguid"] = json!(hex(&nguid));
    }
    if let Some(eui64) = ids.eui64 {
        entry["eui64"] = json!(hex(&eui64));
    }
    if let Some(uuid) = ids.uuid {
        let h = hex(&uuid).to_lowercase();
        entry["uuid"] = json!(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ));
    }
}

/// `nvmf_subsystem_get_controllers`: the live controllers of subsystem `nqn`.
pub fn get_controllers(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: Nqn = parse(params_value)?;
    let registry = if request.nqn == DISCOVERY_NQN {
        Arc::clone(m.subsystems().discovery())
    } else {
        m.registry(&request.nqn)?
    };
    let hex = |bytes: [u8; 16]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let controllers: Vec<Value> = registry
        .live_controllers()
        .iter()
        .map(|controller| {
            json!({
                "cntlid": controller.cntlid(),
                "hostnqn": controller.host_nqn(),
                "hostid": hex(controller.host_id()),
            })
        })
        .collect();
    Ok(Value::Array(controllers))
}

/// `nvmf_create_subsystem`: a subsystem without namespaces, reachable on every listener that
/// is not discovery-only, closed to every host unless `allow_any_host`.
pub fn create_subsystem(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: CreateSubsystem = parse(params_value)?;
    if m.config.subsystems.iter().any(|s| s.nqn == request.nqn) {
        return Err(RpcError::invalid_params(format!(
            "subsystem {} exists already",
            request.nqn
        )));
    }
    let subsystem_config = SubsystemConfig {
        nqn: request.nqn.clone(),
        allow_any_host: request.allow_any_host,
        hosts: Vec::new(),
        serial: request.serial_number,
        model: request.model_number,
        listeners: (0..m.config.listeners.len())
            .filter(|&index| {
                !m.config.listeners[index].discovery_only && m.shared.listeners().get(index).open
            })
            .collect(),
        namespaces: Vec::new(),
        auth: SubsystemAuth::default(),
        tls_psks: Vec::new(),
    };
    let mut config = m.config.clone();
    config.subsystems.push(subsystem_config);
    m.checked(&config)?;
    let subsystem_config = config.subsystems.last().expect("just added");
    let subsystem = Subsystem::from_config(subsystem_config, &config.target, |key, _| {
        Err(format!("{key}: a created subsystem has no namespaces yet"))
    })
    .map_err(|reason| RpcError::new(INTERNAL_ERROR, reason))?;
    m.subsystems()
        .add(Arc::new(subsystem), HostAccess::of(subsystem_config))
        .map_err(|exists| RpcError::invalid_params(exists.to_string()))?;
    m.subsystems().discovery_changed();
    log::info!("management: created subsystem {}", request.nqn);
    m.config = config;
    Ok(Value::Bool(true))
}

/// `nvmf_delete_subsystem`: as shutdown does for one subsystem: new Connects are refused (as
/// to an unknown subsystem), its hosts' controllers are disconnected and gone, then discovery
/// controllers are told. Its drives that no other subsystem's namespace uses are released.
pub fn delete_subsystem(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: Nqn = parse(params_value)?;
    let config = m.changed_config(&request.nqn, |config, index| {
        config.subsystems.remove(index);
        Ok(())
    })?;
    let registry = m
        .subsystems()
        .remove(&request.nqn)
        .ok_or_else(|| RpcError::invalid_params(format!("no subsystem {}", request.nqn)))?;
    let routes = m.shared.registry().routes_of(&request.nqn);
    m.shared.registry().forget_routes(&request.nqn);
    let controllers = registry.disconnect(|_| true);
    m.wait_until_gone(&registry, &controllers);
    m.subsystems().discovery_changed();
    m.config = config;
    let mut drives: Vec<usize> = routes.iter().map(|route| route.drive).collect();
    drives.sort_unstable();
    drives.dedup();
    for drive in drives {
        release_if_unneeded(&m.shared, &m.groups, drive).map_err(|error| match error {
            AttachError::Refused(reason) | AttachError::Failed(reason) => {
                RpcError::new(INTERNAL_ERROR, reason)
            }
        })?;
    }
    log::info!(
        "management: deleted subsystem {} ({} controllers disconnected)",
        request.nqn,
        controllers.len()
    );
    Ok(Value::Bool(true))
}
