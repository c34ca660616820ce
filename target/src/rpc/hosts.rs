//! The `nvmf_*` methods of a subsystem's hosts: who may connect (`nvmf_subsystem_add_host`,
//! `remove_host`, `allow_any_host`) and with which keys (`add_host`'s and `set_keys`'s, by
//! keyring name), with SPDK's names and param shapes (docs/rpc.md).
//!
//! A change that takes a host's access away disconnects that host's controllers of the
//! subsystem as a keep-alive expiry does (admin queue closed, I/O queues following), and the
//! method answers once they are gone (at most the shutdown deadline). Discovery controllers
//! hear of every change that alters what a discovery log lists.

use std::sync::Arc;

use serde_json::Value;

use crate::config::{HostKey, HostPsk};

use super::context::Management;
use super::keyring::keyring_error;
use super::params::{parse, AddHost, AllowAnyHost, RemoveHost, SetKeys};
use super::protocol::RpcError;

/// `nvmf_subsystem_add_host`: host `host` may connect to subsystem `nqn`, authenticating with
/// the keyring's keys `dhchap_key` (and `dhchap_ctrlr_key`, bidirectional) if given, over TLS
/// with the keyring's PSK `psk` if given.
pub fn add_host(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: AddHost = parse(params_value)?;
    let registry = m.registry(&request.nqn)?;
    let key = host_key(
        m,
        &request.host,
        request.dhchap_key.as_deref(),
        request.dhchap_ctrlr_key.as_deref(),
    )?;
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
        .config
        .keyring
        .tls_psk(name)
        .map_err(|error| keyring_error(Some("psk"), error))?;
    HostPsk::new(&psk, file, &request.host, &request.nqn)
        .map(Some)
        .map_err(|reason| RpcError::invalid_params(format!("params.psk: {reason}")))
}

/// The DH-HMAC-CHAP key of host `host` the keyring's keys named `dhchap_key` and
/// `dhchap_ctrlr_key` make, if any.
fn host_key(
    m: &Management,
    host: &str,
    dhchap_key: Option<&str>,
    dhchap_ctrlr_key: Option<&str>,
) -> Result<Option<HostKey>, RpcError> {
    let ctrl = dhchap_ctrlr_key
        .map(|name| m.config.keyring.dhchap_secret(name))
        .transpose()
        .map_err(|error| keyring_error(Some("dhchap_ctrlr_key"), error))?;
    let Some(name) = dhchap_key else {
        return match ctrl {
            Some(_) => Err(RpcError::invalid_params(
                "params.dhchap_ctrlr_key: needs a dhchap_key; the controller authenticates \
                 itself only to a host that authenticates",
            )),
            None => Ok(None),
        };
    };
    let (secret_file, secret) = m
        .config
        .keyring
        .dhchap_secret(name)
        .map_err(|error| keyring_error(Some("dhchap_key"), error))?;
    let (ctrl_secret_file, ctrl_secret) = ctrl.unzip();
    Ok(Some(HostKey {
        host_nqn: host.to_owned(),
        secret: Arc::new(secret),
        ctrl_secret: ctrl_secret.map(Arc::new),
        secret_file,
        ctrl_secret_file,
    }))
}

/// `nvmf_subsystem_set_keys`: host `host` of subsystem `nqn` authenticates with the
/// keyring's keys `dhchap_key` (and `dhchap_ctrlr_key`, bidirectional) from now on, or
/// without authentication when neither is given, as SPDK's. Its queues already connected go
/// on; its next queue and its next re-authentication take the new keys.
pub fn set_keys(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: SetKeys = parse(params_value)?;
    let registry = m.registry(&request.nqn)?;
    let key = host_key(
        m,
        &request.host,
        request.dhchap_key.as_deref(),
        request.dhchap_ctrlr_key.as_deref(),
    )?;
    let config = m.changed_config(&request.nqn, |config, index| {
        let subsystem = &mut config.subsystems[index];
        if !subsystem.hosts.contains(&request.host) {
            return Err(RpcError::invalid_params(format!(
                "host {} is not in the hosts of {}; add it with nvmf_subsystem_add_host",
                request.host, request.nqn
            )));
        }
        let keys = &mut subsystem.auth.keys;
        keys.retain(|key| key.host_nqn != request.host);
        keys.extend(key.clone());
        Ok(())
    })?;
    registry.change_access(|access| {
        access.keys.retain(|key| key.host_nqn != request.host);
        access.keys.extend(key.clone());
    });
    log::info!(
        "management: host {} of {} {}",
        request.host,
        request.nqn,
        match &key {
            Some(key) if key.ctrl_secret.is_some() => {
                "has new DH-HMAC-CHAP keys (bidirectional)"
            }
            Some(_) => "has a new DH-HMAC-CHAP key",
            None => "no longer authenticates (its keys were cleared)",
        }
    );
    m.config = config;
    Ok(Value::Bool(true))
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
