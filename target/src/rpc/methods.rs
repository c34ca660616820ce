//! The method table: each method's name and the function that answers it, the dispatch, and
//! the methods about the management interface and the configuration as a whole
//! (`rpc_get_methods`, `save_config`).

use serde_json::Value;

use super::context::Management;
use super::params::{parse, GetMethods, SaveConfig};
use super::protocol::{RpcError, INTERNAL_ERROR, METHOD_NOT_FOUND};
use super::{hosts, keyring, listeners, namespaces, stats, subsystems};

type Method = fn(&mut Management, Value) -> Result<Value, RpcError>;

/// Every method, in the order `rpc_get_methods` lists them.
const METHODS: &[(&str, Method)] = &[
    ("rpc_get_methods", get_methods),
    ("nvmf_get_subsystems", subsystems::get_subsystems),
    (
        "nvmf_subsystem_get_controllers",
        subsystems::get_controllers,
    ),
    ("nvmf_create_subsystem", subsystems::create_subsystem),
    ("nvmf_delete_subsystem", subsystems::delete_subsystem),
    ("nvmf_subsystem_add_host", hosts::add_host),
    ("nvmf_subsystem_remove_host", hosts::remove_host),
    ("nvmf_subsystem_allow_any_host", hosts::allow_any_host),
    ("nvmf_subsystem_set_keys", hosts::set_keys),
    ("nvmf_subsystem_add_listener", listeners::add_listener),
    ("nvmf_subsystem_remove_listener", listeners::remove_listener),
    ("nvmf_subsystem_add_ns", namespaces::add_ns),
    ("nvmf_subsystem_remove_ns", namespaces::remove_ns),
    ("keyring_file_add_key", keyring::add_key),
    ("keyring_file_remove_key", keyring::remove_key),
    ("keyring_get_keys", keyring::get_keys),
    ("save_config", save_config),
    ("nvmf_get_stats", stats::get_stats),
    ("vfnvme_get_stats", stats::get_all_stats),
];

/// Answers `method` with `params`.
pub fn dispatch(m: &mut Management, method: &str, params: Value) -> Result<Value, RpcError> {
    let Some((_, function)) = METHODS.iter().find(|(name, _)| *name == method) else {
        return Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("no method {method}; rpc_get_methods lists them"),
        ));
    };
    function(m, params)
}

/// `rpc_get_methods`: the method names.
fn get_methods(_: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let _: GetMethods = parse(params_value)?;
    Ok(Value::Array(
        METHODS
            .iter()
            .map(|(name, _)| Value::String((*name).to_owned()))
            .collect(),
    ))
}

/// `save_config`: the running configuration as TOML, which `vfnvme serve --config` reads back
/// to the same subsystems, hosts and namespaces.
fn save_config(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: SaveConfig = parse(params_value)?;
    let text = m.file_config().to_toml();
    if let Some(file) = request.file {
        write_whole(&file, &text).map_err(|error| {
            RpcError::new(
                INTERNAL_ERROR,
                format!("cannot write {}: {error}", file.display()),
            )
        })?;
        log::info!("management: configuration saved to {}", file.display());
    }
    Ok(Value::String(text))
}

/// Writes `text` to a file beside `path` and renames it over `path`.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}
