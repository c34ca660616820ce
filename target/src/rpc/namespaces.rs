//! `nvmf_subsystem_add_ns` and `nvmf_subsystem_remove_ns`, with SPDK's param shapes: the
//! namespace object is turned into the keys of a `[[subsystem.namespace]]` table and checked by
//! the file's rules (`NamespaceConfig::parse`), then the whole configuration with it, as every
//! change is (`context.rs`); `attach.rs` does the rest while hosts use the subsystem.

use serde_json::{json, Value};

use crate::attach::{add_namespace, remove_namespace, AttachError};
use crate::config::{BackingConfig, NamespaceConfig};

use super::context::{config_error, Management};
use super::params::{parse, AddNamespace, NamespaceParams, RemoveNamespace};
use super::protocol::{RpcError, INTERNAL_ERROR};

/// The largest NSID (FFFFFFFFh means every namespace).
const MAX_NSID: u64 = 0xffff_fffe;

/// `nvmf_subsystem_add_ns`: a namespace for subsystem `nqn`, its hosts told; answers its NSID
/// (the lowest free one when none is asked for).
pub fn add_ns(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: AddNamespace = parse(params_value)?;
    let registry = m.registry(&request.nqn)?;
    let existing = m
        .config
        .subsystems
        .iter()
        .find(|subsystem| subsystem.nqn == request.nqn)
        .map(|subsystem| subsystem.namespaces.clone())
        .unwrap_or_default();
    let nsid = match request.namespace.nsid {
        Some(nsid) => nsid,
        None => (1..=MAX_NSID)
            .find(|&nsid| !existing.iter().any(|n| u64::from(n.nsid) == nsid))
            .ok_or_else(|| {
                RpcError::invalid_params(format!("subsystem {} has no NSID free", request.nqn))
            })?,
    };
    if existing.iter().any(|n| u64::from(n.nsid) == nsid) {
        return Err(RpcError::invalid_params(format!(
            "namespace {nsid} of subsystem {} exists already; give another nsid, or none for \
             the lowest free one",
            request.nqn
        )));
    }
    let text = namespace_table(nsid, &request.namespace)?;
    let namespace = NamespaceConfig::parse(&text, &request.nqn).map_err(config_error)?;
    if let BackingConfig::Passthrough { pci, device_nsid } = &namespace.backing {
        let exported = m.config.subsystems.iter().find(|subsystem| {
            subsystem.namespaces.iter().any(|n| {
                matches!(&n.backing, BackingConfig::Passthrough { pci: p, device_nsid: d }
                    if p == pci && d == device_nsid)
            })
        });
        if let Some(other) = exported {
            return Err(RpcError::invalid_params(format!(
                "namespace {device_nsid} of drive {pci} is already exported by subsystem {}; a \
                 drive namespace can be exported once",
                other.nqn
            )));
        }
    }
    let config = m.changed_config(&request.nqn, |config, index| {
        let saved = &mut config.subsystems[index];
        saved.namespaces.push(namespace.clone());
        saved.namespaces.sort_by_key(|namespace| namespace.nsid);
        // The identity hosts know, which a start with other namespaces would derive anew
        // (from a single drive, or not): `save_config` writes it.
        let subsystem = registry.subsystem();
        saved.serial.get_or_insert_with(|| subsystem.serial.clone());
        saved.model.get_or_insert_with(|| subsystem.model.clone());
        Ok(())
    })?;
    let Management {
        shared,
        groups,
        open_pci,
        ..
    } = m;
    add_namespace(shared, groups, open_pci, &registry, &namespace).map_err(attach_error)?;
    log::info!(
        "management: namespace {nsid} added to {} ({text:?})",
        request.nqn
    );
    m.config = config;
    Ok(json!(nsid))
}

/// `nvmf_subsystem_remove_ns`: namespace `nsid` of subsystem `nqn` goes (hosts told), and
/// with it its drive once no namespace uses it; answers after the drive was released.
pub fn remove_ns(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: RemoveNamespace = parse(params_value)?;
    let registry = m.registry(&request.nqn)?;
    if !(1..=MAX_NSID).contains(&request.nsid) {
        return Err(RpcError::invalid_params(format!(
            "params.nsid: {} is not a namespace ID; give 1 to {MAX_NSID}",
            request.nsid
        )));
    }
    let nsid = request.nsid as u32;
    let config = m.changed_config(&request.nqn, |config, index| {
        let namespaces = &mut config.subsystems[index].namespaces;
        let position = namespaces
            .iter()
            .position(|namespace| namespace.nsid == nsid)
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "subsystem {} has no namespace {nsid}; nvmf_get_subsystems lists its \
                     namespaces",
                    request.nqn
                ))
            })?;
        namespaces.remove(position);
        Ok(())
    })?;
    remove_namespace(&m.shared, &mut m.groups, &registry, nsid).map_err(attach_error)?;
    log::info!("management: namespace {nsid} removed from {}", request.nqn);
    m.config = config;
    Ok(Value::Bool(true))
}

fn attach_error(error: AttachError) -> RpcError {
    match error {
        AttachError::Refused(reason) => RpcError::invalid_params(reason),
        AttachError::Failed(reason) => RpcError::new(INTERNAL_ERROR, reason),
    }
}

/// The namespace as the keys of a `[[subsystem.namespace]]` table, `bdev_name` as `pci` and
/// `device_nsid`.
fn namespace_table(nsid: u64, namespace: &NamespaceParams) -> Result<String, RpcError> {
    let mut pci = namespace.pci.clone();
    let mut device_nsid = namespace.device_nsid;
    if let Some(name) = &namespace.bdev_name {
        if pci.is_some() || device_nsid.is_some() {
            return Err(RpcError::invalid_params(
                "params.namespace.bdev_name names the drive namespace pci and device_nsid name; \
                 give one or the other",
            ));
        }
        let (address, drive_nsid) = name
            .rsplit_once('n')
            .and_then(|(address, nsid)| Some((address, nsid.parse().ok()?)))
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "params.namespace.bdev_name: {name:?} is not a drive namespace as \
                     nvmf_get_subsystems names them (0000:01:00.0n1); RAM and simulated \
                     namespaces take ram_mib or sim_mib"
                ))
            })?;
        pci = Some(address.to_owned());
        device_nsid = Some(drive_nsid);
    }
    let mut table = toml::Table::new();
    let mut integer = |key: &str, value: Option<u64>| {
        if let Some(value) = value {
            // Past i64, TOML has no integer: the range check names the key all the same.
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            table.insert(key.to_owned(), toml::Value::Integer(value));
        }
    };
    integer("nsid", Some(nsid));
    integer("device_nsid", device_nsid);
    integer("ram_mib", namespace.ram_mib);
    integer("sim_mib", namespace.sim_mib);
    integer("sim_latency_us", namespace.sim_latency_us);
    integer("sim_metadata_bytes", namespace.sim_metadata_bytes);
    integer("sim_log_page_latency_ms", namespace.sim_log_page_latency_ms);
    integer("block_size", namespace.block_size);
    if let Some(pci) = pci {
        table.insert("pci".into(), toml::Value::String(pci));
    }
    toml::to_string(&table).map_err(|error| RpcError::new(INTERNAL_ERROR, error.to_string()))
}
