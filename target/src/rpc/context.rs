//! What the management thread works on: the target's shared state and the running
//! configuration, which every change goes through first. A change is applied to a copy of the
//! configuration, written as TOML and read back by the same checks as a file at start; only if
//! that passes does the target change. So the messages of a refused change are those of the
//! configuration file, and what `save_config` writes always loads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attach::PciOpener;
use crate::config::{Config, ConfigError};
use crate::ctrlr::{ControllerRegistry, FabricController, TargetSubsystems};
use crate::group_control::GroupLink;
use crate::listeners::{ListenerControl, ListenerTable};
use crate::shared::TargetShared;
use crate::stats::StatsBoard;

use super::protocol::RpcError;

/// The management thread's state; only that thread changes the target's subsystems.
pub struct Management {
    pub shared: Arc<TargetShared>,
    /// The configuration the target runs with now: as loaded, with the listeners' bound
    /// addresses, and every change made since. Its listeners are the target's listener
    /// table, index for index, closed ones included ([`Self::file_config`] leaves them out).
    pub config: Config,
    /// Every poll group's published statistics.
    pub stats: Arc<StatsBoard>,
    /// Each poll group's ring for changes (a drive's queue, a namespace table).
    pub groups: Vec<GroupLink>,
    /// Opens a `pci` namespace's drive, as the target's start did.
    pub open_pci: PciOpener,
    /// Hands listeners opened here to the acceptor, and asks it to close them.
    pub listeners: ListenerControl,
}

impl Management {
    pub fn subsystems(&self) -> &TargetSubsystems {
        self.shared.registry().subsystems()
    }

    /// The registry of subsystem `nqn`, or an error naming it.
    pub fn registry(&self, nqn: &str) -> Result<Arc<ControllerRegistry>, RpcError> {
        self.subsystems().find(nqn).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "no subsystem {nqn}; nvmf_get_subsystems lists them"
            ))
        })
    }

    /// The configuration with `change` applied, once checked as a file is, without changing
    /// anything yet. `change` gets the configuration and the index of subsystem `nqn` in it.
    pub fn changed_config(
        &self,
        nqn: &str,
        change: impl FnOnce(&mut Config, usize) -> Result<(), RpcError>,
    ) -> Result<Config, RpcError> {
        let mut config = self.config.clone();
        let index = config
            .subsystems
            .iter()
            .position(|subsystem| subsystem.nqn == nqn)
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "no subsystem {nqn}; nvmf_get_subsystems lists them"
                ))
            })?;
        change(&mut config, index)?;
        self.checked(&config)?;
        Ok(config)
    }

    /// `config` (a changed copy of [`Self::config`]) as the file checks see it, or their
    /// message. The caller keeps `config` itself: what the file would not say (closed
    /// listeners) stays with it.
    pub fn checked(&self, config: &Config) -> Result<Config, RpcError> {
        checked(&file_view(config, self.shared.listeners()))
    }

    /// The running configuration as a file holds it: without the listeners closed since.
    pub fn file_config(&self) -> Config {
        file_view(&self.config, self.shared.listeners())
    }

    /// Waits until `controllers` of `registry` are gone (their hosts' queues closed), at most
    /// the shutdown deadline; logs those that stayed.
    pub fn wait_until_gone(
        &self,
        registry: &ControllerRegistry,
        controllers: &[std::sync::Weak<FabricController>],
    ) {
        self.wait_until_gone_within(registry, controllers, None);
    }

    /// As [`Self::wait_until_gone`], waiting at most `within` if given.
    pub fn wait_until_gone_within(
        &self,
        registry: &ControllerRegistry,
        controllers: &[std::sync::Weak<FabricController>],
        within: Option<Duration>,
    ) {
        let within = within.unwrap_or(self.shared.settings().shutdown_deadline);
        let left = registry.wait_until_gone(controllers, Instant::now() + within);
        if left > 0 {
            log::warn!(
                "{}: {left} controllers still have queues after {within:?}; their connections \
                 close when their commands complete",
                registry.subsystem().nqn
            );
        }
    }
}

/// `config` without the listeners `table` has closed, the subsystems' listener indices
/// renumbered to match (no subsystem is on a closed listener).
fn file_view(config: &Config, table: &ListenerTable) -> Config {
    // A listener beyond the table is one being opened.
    let table = table.all();
    let open: Vec<bool> = (0..config.listeners.len())
        .map(|index| table.get(index).is_none_or(|listener| listener.open))
        .collect();
    let mut renumbered = Vec::with_capacity(open.len());
    let mut next = 0;
    for &is_open in &open {
        renumbered.push(next);
        next += usize::from(is_open);
    }
    let mut view = config.clone();
    view.listeners = config
        .listeners
        .iter()
        .zip(&open)
        .filter(|(_, &is_open)| is_open)
        .map(|(listener, _)| listener.clone())
        .collect();
    for subsystem in &mut view.subsystems {
        for listener in &mut subsystem.listeners {
            *listener = renumbered[*listener];
        }
    }
    view
}

/// `config` as the file checks see it, or their message.
fn checked(config: &Config) -> Result<Config, RpcError> {
    Config::parse(&config.to_toml(), "the running configuration").map_err(config_error)
}

/// A refusal of the file's checks, as an error of the params: its reason, without the line of
/// a file the client never wrote.
pub fn config_error(error: ConfigError) -> RpcError {
    match error {
        ConfigError::Invalid { reason, .. } | ConfigError::Incomplete { reason, .. } => {
            RpcError::invalid_params(reason)
        }
        ConfigError::Read { .. } => RpcError::invalid_params(error.to_string()),
    }
}
