//! The state every thread of the target shares: settings, drives, the registry of subsystems
//! and controllers, the listen addresses and the shutdown deadline.
//!
//! Its own module so that the connections and poll groups that read it and the target that
//! builds it all import it downward: none of them has to import another to reach it.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use crate::admission::Admission;
use crate::config::{SecureChannel, TargetConfig};
use crate::drive_table::DriveTable;
use crate::listeners::ListenerTable;
use crate::session::Registry;
use crate::tls::TlsServer;

/// Everything the poll groups share, read-only on the I/O path.
pub struct TargetShared {
    config: TargetConfig,
    /// MAXH2CDATA, fixed at start: the largest buffer a drive may have, then or later.
    max_h2c_data: u32,
    registry: Registry,
    listeners: Arc<ListenerTable>,
    /// The TLS context of TLS listeners (opened at start or later), and the hosts' PSKs.
    tls: TlsServer,
    /// Set once when shutdown starts. A `OnceLock`, not a mutex: poll groups read it on every
    /// round of their loop, and the I/O path takes no lock (reading it is one atomic load).
    shutdown_deadline: OnceLock<Instant>,
    /// What hosts hold of the target, against `[limits]`.
    admission: Arc<Admission>,
    /// Dropped last: controllers shut down when the last poll group is gone. Drives opened
    /// while the target runs are appended.
    drives: Arc<DriveTable>,
}

impl TargetShared {
    pub(crate) fn new(
        config: TargetConfig,
        max_h2c_data: u32,
        registry: Registry,
        listeners: Arc<ListenerTable>,
        tls: TlsServer,
        drives: Arc<DriveTable>,
        admission: Arc<Admission>,
    ) -> Self {
        Self {
            config,
            max_h2c_data,
            registry,
            listeners,
            tls,
            shutdown_deadline: OnceLock::new(),
            admission,
            drives,
        }
    }

    pub fn settings(&self) -> &TargetConfig {
        &self.config
    }

    /// The most data one command to drive `drive` can carry (its buffer size). Two atomic
    /// loads, no lock: the I/O path asks.
    pub fn buffer_size(&self, drive: usize) -> usize {
        self.drives.get(drive).map_or(0, |slot| slot.buffer_size())
    }

    /// MAXH2CDATA: one H2CData PDU may carry a whole command's data (no drive's buffers, those
    /// opened later included, are larger).
    pub fn max_h2c_data(&self) -> u32 {
        self.max_h2c_data
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn drives(&self) -> &DriveTable {
        &self.drives
    }

    /// The drives, without keeping them alive (for handles that may outlive the target).
    pub(crate) fn drives_weak(&self) -> Weak<DriveTable> {
        Arc::downgrade(&self.drives)
    }

    /// Whether drive `index` is being given up (atomic loads, no lock).
    pub fn drive_removed(&self, index: usize) -> bool {
        self.drives.get(index).is_none_or(|slot| slot.is_removed())
    }

    /// Every listener the target has had (read at accept, Connect and discovery time).
    pub fn listeners(&self) -> &ListenerTable {
        &self.listeners
    }

    /// The TLS context, with the hosts' PSKs.
    pub fn tls(&self) -> &TlsServer {
        &self.tls
    }

    /// The TLS context if listener `listener` is TLS.
    pub fn tls_of(&self, listener: usize) -> Option<&TlsServer> {
        self.is_tls(listener).then_some(&self.tls)
    }

    /// Whether listener `listener` is TLS.
    pub fn is_tls(&self, listener: usize) -> bool {
        self.listeners.get(listener).secure_channel == SecureChannel::Tls
    }

    /// Starts the shutdown clock: poll groups give up waiting for their drives after the
    /// configured shutdown deadline from now.
    /// The first call sets the deadline; later ones keep it.
    pub(crate) fn start_shutdown(&self) {
        let _ = self
            .shutdown_deadline
            .set(Instant::now() + self.config.shutdown_deadline);
    }

    /// When a stopping poll group gives up waiting for its drives; `None` until the shutdown
    /// starts (a group whose acceptor went away without one waits for its drives unbounded).
    pub fn shutdown_deadline(&self) -> Option<Instant> {
        self.shutdown_deadline.get().copied()
    }
}
