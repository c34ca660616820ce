//! SPDK's file keyring over the management socket: `keyring_file_add_key`,
//! `keyring_file_remove_key`, `keyring_get_keys`. `nvmf_subsystem_add_host` and `set_keys` give
//! hosts its keys by name (`hosts.rs`); the keyring itself is `crate::keyring`, kept in the
//! running configuration, so `save_config` writes it as `[[keyring]]`.

use serde_json::{json, Value};

use super::context::Management;
use super::params::{parse, GetKeys, KeyringAddKey, KeyringRemoveKey};
use super::protocol::RpcError;
use crate::keyring::KeyringError;

/// A keyring refusal as an error of the params (`field` names the one at fault, if one is).
pub fn keyring_error(field: Option<&str>, error: KeyringError) -> RpcError {
    match field {
        Some(field) => RpcError::invalid_params(format!("params.{field}: {error}")),
        None => RpcError::invalid_params(error.to_string()),
    }
}

/// `keyring_file_add_key`: key `name` is the secret in file `path`.
pub fn add_key(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: KeyringAddKey = parse(params_value)?;
    let shown = request.path.display().to_string();
    m.config
        .keyring
        .add(request.name.clone(), request.path)
        .map_err(|error| match error {
            KeyringError::Exists(_) => keyring_error(None, error),
            _ => keyring_error(Some("path"), error),
        })?;
    log::info!(
        "management: key {} added to the keyring ({shown})",
        request.name
    );
    Ok(Value::Bool(true))
}

/// `keyring_file_remove_key`: name `name` no longer stands for a key; hosts given it keep it
/// (the running configuration names its file).
pub fn remove_key(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: KeyringRemoveKey = parse(params_value)?;
    m.config
        .keyring
        .remove(&request.name)
        .map_err(|error| keyring_error(None, error))?;
    log::info!("management: key {} removed from the keyring", request.name);
    Ok(Value::Bool(true))
}

/// `keyring_get_keys`: each key's name and file, in SPDK's shape.
pub fn get_keys(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let _: GetKeys = parse(params_value)?;
    Ok(Value::Array(
        m.config
            .keyring
            .keys()
            .iter()
            .map(|key| {
                json!({
                    "name": key.name,
                    "path": key.path,
                    "removed": false,
                    "probed": false,
                })
            })
            .collect(),
    ))
}
