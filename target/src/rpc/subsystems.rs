//! The `nvmf_*` methods: subsystems, their allowed hosts and controllers, one function per
//! method, with SPDK's names and param and result shapes where they fit (docs/rpc.md).
//!
//! A change that takes a host's access away disconnects that host's controllers of the
//! subsystem as a keep-alive expiry does (admin queue closed, I/O queues following), and the
//! method answers once they are gone (at most the shutdown deadline). Discovery controllers
//! hear of every change that alters what a discovery log lists.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use vfnvme_spec::fabrics::DISCOVERY_NQN;
use vfnvme_spec::identify::NamespaceIds;

use crate::attach::{release_if_unneeded, AttachError};
use crate::config::{
    BackingConfig, HostKey, HostPsk, NamespaceConfig, SubsystemAuth, SubsystemConfig,
};
use crate::subsystem::{HostAccess, Subsystem};

use super::context::Management;
use super::keyring::keyring_error;
use super::params::{
    parse, AddHost, AllowAnyHost, CreateSubsystem, GetSubsystems, Nqn, RemoveHost,
};
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

/// `nvmf_subsystem_add_host`: host `host` may connect to subsystem `nqn`, authenticating with
/// the keyring's keys `dhchap_key` (and `dhchap_ctrlr_key`, bidirectional) if given, over TLS
/// with the keyring's PSK `psk` if given.
pub fn add_host(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: AddHost = parse(params_value)?;
    let registry = m.registry(&request.nqn)?;
    let key = host_key(m, &request)?;
    let psk = host_psk(m, &request)?;
    let config = m.changed_config(&request.nqn, |config, index| {
        let subsystem = &mut config.subsystems[index];
        subsystem.hosts.push(request.host.clone());
        subsystem.auth.keys.extend(key.clone());
        subsystem.tls_psks.extend(psk.clone());
        Ok(())
    })?;
    if let Some(psk) = &psk {
        m.shared.tls().psks().add(psk);
    }
    registry.change_access(|access| {
        access.hosts.push(request.host.clone());
        access.keys.extend(key.clone());
        access.tls_psks.extend(psk.clone());
    });
    m.subsystems().discovery_changed();
    log::info!(
        "management: host {} may connect to {}{}{}",
        request.host,
        request.nqn,
        match &key {
            Some(key) if key.ctrl_secret.is_some() => " (DH-HMAC-CHAP, bidirectional)",
            Some(_) => " (DH-HMAC-CHAP)",
            None => "",
        },
        if psk.is_some() { " (TLS PSK)" } else { "" }
    );
    m.config = config;
    Ok(Value::Bool(true))
}

/// The TLS PSK `request` gives its host from the keyring, if any.
fn host_psk(m: &Management, request: &AddHost) -> Result<Option<HostPsk>, RpcError> {
    let Some(name) = request.psk.as_deref() else {
        return Ok(None);
    };
    let (file, psk) = m
        .keyring
        .tls_psk(name)
        .map_err(|error| keyring_error(Some("psk"), error))?;
    HostPsk::new(&psk, file, &request.host, &request.nqn)
        .map(Some)
        .map_err(|reason| RpcError::invalid_params(format!("params.psk: {reason}")))
}

/// The DH-HMAC-CHAP key `request` gives its host from the keyring, if any.
fn host_key(m: &Management, request: &AddHost) -> Result<Option<HostKey>, RpcError> {
    let ctrl = request
        .dhchap_ctrlr_key
        .as_deref()
        .map(|name| m.keyring.dhchap_secret(name))
        .transpose()
        .map_err(|error| keyring_error(Some("dhchap_ctrlr_key"), error))?;
    let Some(name) = request.dhchap_key.as_deref() else {
        return match ctrl {
            Some(_) => Err(RpcError::invalid_params(
                "params.dhchap_ctrlr_key: needs a dhchap_key; the controller authenticates \
                 itself only to a host that authenticates",
            )),
            None => Ok(None),
        };
    };
    let (secret_file, secret) = m
        .keyring
        .dhchap_secret(name)
        .map_err(|error| keyring_error(Some("dhchap_key"), error))?;
    let (ctrl_secret_file, ctrl_secret) = ctrl.unzip();
    Ok(Some(HostKey {
        host_nqn: request.host.clone(),
        secret: Arc::new(secret),
        ctrl_secret: ctrl_secret.map(Arc::new),
        secret_file,
        ctrl_secret_file,
    }))
}

/// `nvmf_subsystem_remove_host`: host `host` may no longer connect to subsystem `nqn`; its
/// controllers there are disconnected (unless the subsystem allows any host).
pub fn remove_host(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: RemoveHost = parse(params_value)?;
    let registry = m.registry(&request.nqn)?;
    let config = m.changed_config(&request.nqn, |config, index| {
        let hosts = &mut config.subsystems[index].hosts;
        let position = hosts
            .iter()
            .position(|host| *host == request.host)
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "host {} is not in the hosts of {}",
                    request.host, request.nqn
                ))
            })?;
        hosts.remove(position);
        // Its keys go with it, as in SPDK: added again, it needs them given again.
        let subsystem = &mut config.subsystems[index];
        subsystem
            .auth
            .keys
            .retain(|key| key.host_nqn != request.host);
        subsystem
            .tls_psks
            .retain(|psk| psk.host_nqn != request.host);
        Ok(())
    })?;
    let (still_allowed, psks) = registry.change_access(|access| {
        access.hosts.retain(|host| *host != request.host);
        access.keys.retain(|key| key.host_nqn != request.host);
        let (psks, kept) = std::mem::take(&mut access.tls_psks)
            .into_iter()
            .partition(|psk| psk.host_nqn == request.host);
        access.tls_psks = kept;
        (access.allows(&request.host), psks)
    });
    for psk in &psks {
        m.shared.tls().psks().remove(psk);
    }
    if !still_allowed {
        let controllers = registry.disconnect(|controller| controller.host_nqn() == request.host);
        let within = request.timeout_ms.map(std::time::Duration::from_millis);
        m.wait_until_gone_within(&registry, &controllers, within);
    }
    m.subsystems().discovery_changed();
    log::info!(
        "management: host {} removed from {}",
        request.host,
        request.nqn
    );
    m.config = config;
    Ok(Value::Bool(true))
}

/// `nvmf_subsystem_allow_any_host`: open subsystem `nqn` to every host, or only to its hosts
/// again (the controllers of the others are disconnected).
pub fn allow_any_host(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: AllowAnyHost = parse(params_value)?;
    let registry = m.registry(&request.nqn)?;
    let config = m.changed_config(&request.nqn, |config, index| {
        config.subsystems[index].allow_any_host = request.allow_any_host;
        Ok(())
    })?;
    let access = registry.change_access(|access| {
        access.allow_any_host = request.allow_any_host;
        access.clone()
    });
    let controllers = registry.disconnect(|controller| !access.allows(controller.host_nqn()));
    m.wait_until_gone(&registry, &controllers);
    m.subsystems().discovery_changed();
    m.config = config;
    Ok(Value::Bool(true))
}
