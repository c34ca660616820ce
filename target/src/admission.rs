//! Admission: how many connections the target holds (in all, and per host address) and how
//! many controllers each host NQN has, against `[limits]`. A connection or controller let in
//! holds a ticket; dropping it (the connection's or controller's own `Drop`) gives its place
//! back, so no path of teardown can leak one.
//!
//! Its counts are touched when a connection is accepted or closed and when a controller is
//! created or goes away, never per command: the lock here is off the I/O path.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Limits;

/// The target's counts of what hosts hold, and its limits.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    per_address: HashMap<IpAddr, usize>,
    controllers_per_host: HashMap<String, usize>,
}

/// Why a connection or controller was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Connections { limit: usize },
    ConnectionsPerAddress { address: IpAddr, limit: usize },
    ControllersPerHost { host_nqn: String, limit: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connections { limit } => write!(
                f,
                "the target holds {limit} connections (limits.connections); closed a new one"
            ),
            Self::ConnectionsPerAddress { address, limit } => write!(
                f,
                "{address} holds {limit} connections (limits.connections_per_address); closed a \
                 new one"
            ),
            Self::ControllersPerHost { host_nqn, limit } => write!(
                f,
                "host {host_nqn} has {limit} controllers (limits.controllers_per_host); refused \
                 its Connect"
            ),
        }
    }
}

/// Raises the process's soft limit of open files to what `limits.connections` needs (a
/// socket each, and room for drives, epoll and eventfds), as far as the hard limit allows;
/// warns with what to do when that is not enough, as accepts would then fail first.
pub fn ensure_fd_room(limits: &Limits) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed = limits.connections as u64 + FDS_BESIDE_CONNECTIONS;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= needed {
        return;
    }
    let raised = needed.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_err() || raised < needed {
        log::warn!(
            "limits.connections = {} needs {needed} open files but this process may have {}; \
             connections beyond that fail at accept: raise the limit (LimitNOFILE in \
             deploy/vfnvme.service, ulimit -n) or lower limits.connections",
            limits.connections,
            raised.max(soft)
        );
    }
}

/// File descriptors the target needs beside its connections: listeners, epoll instances,
/// eventfds, VFIO devices and groups, log files.
const FDS_BESIDE_CONNECTIONS: u64 = 256;

/// The acceptor's log of refused connections: a reconnect storm or a port scan would
/// otherwise write a line per attempt. The first refusal is logged at once, the rest at most
/// once a second with how many there were.
#[derive(Default)]
pub struct RefusalLog {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    pub fn note(&mut self, peer: SocketAddr, refusal: &Refusal) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        match std::mem::take(&mut self.unlogged) {
            0 => log::warn!("{peer}: {refusal}"),
            more => log::warn!("{peer}: {refusal} ({more} more refused since the last report)"),
        }
        self.last_logged = Some(now);
    }

    /// Reports refusals not yet logged once their second is over (a storm that ended).
    pub fn report_unlogged(&mut self) {
        let due = self
            .last_logged
            .is_some_and(|last| last.elapsed() >= Duration::from_secs(1));
        if due && self.unlogged > 0 {
            log::warn!(
                "{} more connections refused by [limits] since the last report",
                std::mem::take(&mut self.unlogged)
            );
            self.last_logged = Some(Instant::now());
        }
    }
}

/// A connection's place in the counts, given back when dropped.
pub struct ConnectionTicket {
    admission: Arc<Admission>,
    address: IpAddr,
}

/// A controller's place in its host's count, given back when dropped.
pub struct ControllerTicket {
    admission: Arc<Admission>,
    host_nqn: String,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Every update is a single step on plain counters: they stay consistent across a panic.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection from `address`, unless the target or that address holds its limit.
    pub fn admit_connection(
        self: &Arc<Self>,
        address: IpAddr,
    ) -> Result<ConnectionTicket, Refusal> {
        let mut counts = self.counts();
        if counts.connections >= self.limits.connections {
            return Err(Refusal::Connections {
                limit: self.limits.connections,
            });
        }
        let from_address = counts.per_address.entry(address).or_default();
        if *from_address >= self.limits.connections_per_address {
            return Err(Refusal::ConnectionsPerAddress {
                address,
                limit: self.limits.connections_per_address,
            });
        }
        *from_address += 1;
        counts.connections += 1;
        Ok(ConnectionTicket {
            admission: Arc::clone(self),
            address,
        })
    }

    /// A controller of `host_nqn`, unless that host has its limit of them.
    pub fn admit_controller(self: &Arc<Self>, host_nqn: &str) -> Result<ControllerTicket, Refusal> {
        let mut counts = self.counts();
        let limit = self.limits.controllers_per_host;
        let held = counts
            .controllers_per_host
            .entry(host_nqn.to_owned())
            .or_default();
        if *held >= limit {
            return Err(Refusal::ControllersPerHost {
                host_nqn: host_nqn.to_owned(),
                limit,
            });
        }
        *held += 1;
        Ok(ControllerTicket {
            admission: Arc::clone(self),
            host_nqn: host_nqn.to_owned(),
        })
    }

    /// Connections open now (accepted and not yet closed).
    pub fn open_connections(&self) -> usize {
        self.counts().connections
    }
}

/// Takes one from the count under `key`, dropping the entry at zero so that the map does not
/// grow with every address or host ever seen.
fn give_back<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Drop for ConnectionTicket {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        counts.connections -= 1;
        give_back(&mut counts.per_address, &self.address);
    }
}

impl Drop for ControllerTicket {
    fn drop(&mut self) {
        give_back(
            &mut self.admission.counts().controllers_per_host,
            &self.host_nqn,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(connections: usize, per_address: usize, controllers: usize) -> Arc<Admission> {
        Admission::new(Limits {
            connections,
            connections_per_address: per_address,
            controllers_per_host: controllers,
            ..Limits::default()
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_at_its_limit_is_refused_and_others_are_not() {
        let admission = admission(10, 2, 1);
        let first = admission.admit_connection(A).unwrap();
        let _second = admission.admit_connection(A).unwrap();
        assert_eq!(
            admission.admit_connection(A).err(),
            Some(Refusal::ConnectionsPerAddress {
                address: A,
                limit: 2
            })
        );
        let _other = admission.admit_connection(B).expect("another address");
        drop(first);
        admission.admit_connection(A).expect("a place came back");
    }

    #[test]
    fn the_target_at_its_limit_refuses_every_address() {
        let admission = admission(2, 5, 1);
        let _a = admission.admit_connection(A).unwrap();
        let b = admission.admit_connection(B).unwrap();
        assert_eq!(
            admission.admit_connection(B).err(),
            Some(Refusal::Connections { limit: 2 })
        );
        assert_eq!(admission.open_connections(), 2);
        drop(b);
        assert_eq!(admission.open_connections(), 1);
        admission.admit_connection(B).expect("room again");
    }

    #[test]
    fn controllers_are_counted_per_host_and_forgotten_at_zero() {
        let admission = admission(1, 1, 2);
        let one = admission.admit_controller("nqn.h1").unwrap();
        let two = admission.admit_controller("nqn.h1").unwrap();
        let refusal = admission.admit_controller("nqn.h1").err().unwrap();
        assert_eq!(
            refusal.to_string(),
            "host nqn.h1 has 2 controllers (limits.controllers_per_host); refused its Connect"
        );
        let _other = admission.admit_controller("nqn.h2").expect("another host");
        drop((one, two));
        assert!(!admission
            .counts()
            .controllers_per_host
            .contains_key("nqn.h1"));
    }
}
