//! `nvmf_subsystem_add_listener` / `nvmf_subsystem_remove_listener`: which listeners a
//! subsystem is reachable on, and the listeners themselves. An address the target does not
//! listen on yet opens a listener (TLS with `secure_channel`); a listener no subsystem is on
//! any more closes, and every connection still on it (discovery controllers) is ended, as
//! SPDK's transport listeners go with their last subsystem. The discovery subsystem's NQN
//! adds or removes a discovery-only listener (a `discovery_only` `[[listener]]`).

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;
use vfnvme_spec::fabrics::DISCOVERY_NQN;

use crate::config::{ListenerConfig, SecureChannel};
use crate::listeners::ListenerInfo;
use crate::tgt::listen;

use super::context::Management;
use super::params::{parse, ListenAddress, SubsystemListener};
use super::protocol::RpcError;

/// The socket address `address` names (an IP address and a port, as SPDK takes them).
fn socket_address(address: &ListenAddress) -> Result<SocketAddr, RpcError> {
    if let Some(trtype) = &address.trtype {
        if !trtype.eq_ignore_ascii_case("tcp") {
            return Err(RpcError::invalid_params(format!(
                "params.listen_address.trtype: {trtype} is not served; vfnvme speaks TCP"
            )));
        }
    }
    let ip: IpAddr = address.traddr.parse().map_err(|_| {
        RpcError::invalid_params(format!(
            "params.listen_address.traddr: {} is not an IP address",
            address.traddr
        ))
    })?;
    let port: u16 = address.trsvcid.parse().map_err(|_| {
        RpcError::invalid_params(format!(
            "params.listen_address.trsvcid: {} is not a port number",
            address.trsvcid
        ))
    })?;
    if let Some(family) = &address.adrfam {
        let expected = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        if !family.eq_ignore_ascii_case(expected) {
            return Err(RpcError::invalid_params(format!(
                "params.listen_address.adrfam: {family} does not match traddr {ip}"
            )));
        }
    }
    Ok(SocketAddr::new(ip, port))
}

/// `nvmf_subsystem_add_listener`: hosts may reach subsystem `nqn` on the listener at
/// `listen_address`, which is opened if the target does not listen there yet.
pub fn add_listener(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: SubsystemListener = parse(params_value)?;
    let address = socket_address(&request.listen_address)?;
    let discovery = request.nqn == DISCOVERY_NQN;
    let registry = if discovery {
        None
    } else {
        Some(m.registry(&request.nqn)?)
    };
    let (index, opened) = match m.shared.listeners().find_open(address) {
        Some(index) => {
            if discovery {
                return Err(RpcError::invalid_params(format!(
                    "the discovery subsystem is reachable on {address} already (on every \
                     listener)"
                )));
            }
            if request.secure_channel && !m.shared.is_tls(index) {
                return Err(RpcError::invalid_params(format!(
                    "listener {address} is plain TCP; a listener is either TLS or plain, so \
                     open the TLS one at another address"
                )));
            }
            (index, false)
        }
        None => (
            open_listener(m, address, request.secure_channel, discovery)?,
            true,
        ),
    };
    let Some(registry) = registry else {
        return Ok(Value::Bool(true));
    };
    let config = m.changed_config(&request.nqn, |config, subsystem| {
        let listeners = &mut config.subsystems[subsystem].listeners;
        if listeners.contains(&index) {
            return Err(RpcError::invalid_params(format!(
                "subsystem {} is on that listener already",
                request.nqn
            )));
        }
        listeners.push(index);
        listeners.sort_unstable();
        Ok(())
    });
    let config = match config {
        Ok(config) => config,
        Err(refused) => {
            if opened {
                close_if_unused(m, index);
            }
            return Err(refused);
        }
    };
    registry.change_access(|access| {
        access.listeners.push(index);
        access.listeners.sort_unstable();
    });
    m.subsystems().discovery_changed();
    m.config = config;
    Ok(Value::Bool(true))
}

/// Binds a listener at `address` and hands it to the acceptor; returns its index. Only the
/// discovery subsystem is reachable on it until a subsystem is added.
fn open_listener(
    m: &mut Management,
    address: SocketAddr,
    tls: bool,
    discovery_only: bool,
) -> Result<usize, RpcError> {
    let socket = listen(address).map_err(|error| {
        RpcError::invalid_params(format!("cannot listen on {address}: {error}"))
    })?;
    let bound = socket
        .local_addr()
        .map_err(|error| RpcError::invalid_params(format!("{address}: {error}")))?;
    let secure_channel = if tls {
        SecureChannel::Tls
    } else {
        SecureChannel::None
    };
    let mut config = m.config.clone();
    config.listeners.push(ListenerConfig {
        address: bound,
        discovery_only,
        secure_channel,
    });
    m.checked(&config)?;
    let index = m.shared.listeners().push(ListenerInfo {
        address: bound,
        secure_channel,
        open: true,
    });
    debug_assert_eq!(index, config.listeners.len() - 1, "config and table agree");
    m.subsystems()
        .discovery()
        .change_access(|access| access.listeners.push(index));
    m.listeners.open(index, socket);
    m.config = config;
    log::info!(
        "management: listening on {bound} ({})",
        secure_channel.name()
    );
    if discovery_only {
        m.subsystems().discovery_changed();
    }
    Ok(index)
}

/// `nvmf_subsystem_remove_listener`: hosts may no longer reach subsystem `nqn` on a listener;
/// the controllers whose admin queue arrived there are disconnected, and the listener closes
/// if no subsystem is on it any more.
pub fn remove_listener(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let request: SubsystemListener = parse(params_value)?;
    let address = socket_address(&request.listen_address)?;
    let index = m.shared.listeners().find_open(address).ok_or_else(|| {
        let open: Vec<String> = m
            .shared
            .listeners()
            .all()
            .iter()
            .filter(|listener| listener.open)
            .map(|listener| listener.address.to_string())
            .collect();
        RpcError::invalid_params(format!(
            "the target does not listen on {address}; its listeners are {}",
            open.join(", ")
        ))
    })?;
    if request.nqn == DISCOVERY_NQN {
        if !m.config.listeners[index].discovery_only {
            return Err(RpcError::invalid_params(format!(
                "the discovery subsystem is on every listener; {address} closes with the last \
                 subsystem removed from it"
            )));
        }
        close_if_unused(m, index);
        m.subsystems().discovery_changed();
        return Ok(Value::Bool(true));
    }
    let registry = m.registry(&request.nqn)?;
    let config = m.changed_config(&request.nqn, |config, subsystem| {
        let listeners = &mut config.subsystems[subsystem].listeners;
        let position = listeners.iter().position(|&l| l == index).ok_or_else(|| {
            RpcError::invalid_params(format!("subsystem {} is not on that listener", request.nqn))
        })?;
        listeners.remove(position);
        Ok(())
    })?;
    registry.change_access(|access| access.listeners.retain(|&l| l != index));
    let controllers = registry.disconnect(|controller| controller.arrival().listener == index);
    m.wait_until_gone(&registry, &controllers);
    m.config = config;
    close_if_unused(m, index);
    m.subsystems().discovery_changed();
    Ok(Value::Bool(true))
}

/// Closes listener `index` if no subsystem is on it (a discovery-only listener never has
/// one): the acceptor closes its socket, and the discovery controllers that came through it
/// are ended. The caller tells discovery controllers of the change.
fn close_if_unused(m: &Management, index: usize) {
    let in_use = m
        .config
        .subsystems
        .iter()
        .any(|subsystem| subsystem.listeners.contains(&index));
    if in_use {
        return;
    }
    let address = m.shared.listeners().get(index).address;
    m.shared.listeners().mark_closed(index);
    m.listeners.close(index);
    let discovery = m.subsystems().discovery();
    discovery.change_access(|access| access.listeners.retain(|&l| l != index));
    let controllers = discovery.disconnect(|controller| controller.arrival().listener == index);
    m.wait_until_gone(discovery, &controllers);
    log::info!("management: closed listener {address}: no subsystem is on it");
}
