//! The state every thread of the target shares: settings, drives, the registry of subsystems
//! and controllers, the listen addresses and the shutdown deadline.
//!
//! Its own module so that the connections and poll groups that read it and the target that
//! builds it all import it downward: none of them has to import another to reach it.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use crate::admission::Admission;
use crate::backend::DriveSlot;
use crate::config::{SecureChannel, TargetConfig};
use crate::listeners::ListenerTable;
use crate::session::Registry;
use crate::tls::TlsServer;

/// Everything the poll groups share, read-only on the I/O path.
pub struct TargetShared {
    config: TargetConfig,
    /// Per drive: the size of its buffers, the most data one command to it can carry.
    buffer_sizes: Vec<usize>,
    registry: Registry,
    listeners: Arc<ListenerTable>,
    /// The TLS context, when a listener is TLS or a host has a PSK.
    tls: Option<TlsServer>,
    /// Set once when shutdown starts. A `OnceLock`, not a mutex: poll groups read it on every
    /// round of their loop, and the I/O path takes no lock (reading it is one atomic load).
    shutdown_deadline: OnceLock<Instant>,
    /// What hosts hold of the target, against `[limits]`.
    admission: Arc<Admission>,
    /// Dropped last: controllers shut down when the last poll group is gone.
    drives: Arc<[DriveSlot]>,
}

impl TargetShared {
    pub(crate) fn new(
        config: TargetConfig,
        buffer_sizes: Vec<usize>,
        registry: Registry,
        listeners: Arc<ListenerTable>,
        tls: Option<TlsServer>,
        drives: Arc<[DriveSlot]>,
        admission: Arc<Admission>,
    ) -> Self {
        Self {
            config,
            buffer_sizes,
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

    /// Per drive, the most data one command to it can carry (its buffer size).
    pub fn buffer_sizes(&self) -> &[usize] {
        &self.buffer_sizes
    }

    /// MAXH2CDATA: one H2CData PDU may carry a whole command's data.
    pub fn max_h2c_data(&self) -> u32 {
        self.buffer_sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(128 * 1024) as u32
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn drives(&self) -> &[DriveSlot] {
        &self.drives
    }

    /// The drives, without keeping them alive (for handles that may outlive the target).
    pub(crate) fn drives_weak(&self) -> Weak<[DriveSlot]> {
        Arc::downgrade(&self.drives)
    }

    /// Whether drive `index` is being given up (one atomic load).
    pub fn drive_removed(&self, index: usize) -> bool {
        self.drives[index].is_removed()
    }

    /// Every listener the target has had (read at accept, Connect and discovery time).
    pub fn listeners(&self) -> &ListenerTable {
        &self.listeners
    }

    /// The TLS context, if the target has one.
    pub fn tls(&self) -> Option<&TlsServer> {
        self.tls.as_ref()
    }

    /// The TLS context if listener `listener` is TLS.
    pub fn tls_of(&self, listener: usize) -> Option<&TlsServer> {
        if self.is_tls(listener) {
            self.tls.as_ref()
        } else {
            None
        }
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
