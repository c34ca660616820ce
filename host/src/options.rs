//! How a host connects: what it asks for in ICReq and Connect, and how long it waits. Its own
//! file because the queue and the admin API both read it.

use std::sync::Arc;
use std::time::Duration;

use vfnvme_auth::{DhGroupId, DhchapSecret, TlsPsk};

/// How a host connects.
#[derive(Clone, Debug)]
pub struct HostOptions {
    pub host_nqn: String,
    pub host_id: [u8; 16],
    pub header_digest: bool,
    pub data_digest: bool,
    pub keep_alive_timeout_ms: u32,
    /// Lets the target answer reads with C2HData alone (SUCCESS flag).
    pub disable_sq_flow_control: bool,
    /// Largest data of one command this host will submit.
    pub max_data_len: usize,
    /// How long a blocking wait may take.
    pub timeout: Duration,
    /// The host's DH-HMAC-CHAP secret: queues whose Connect response asks for authentication
    /// (ATR) authenticate with it (`nvme connect --dhchap-secret`).
    pub dhchap_secret: Option<Arc<DhchapSecret>>,
    /// The controller's secret: with it the host also checks the controller's response
    /// (bidirectional authentication, `--dhchap-ctrl-secret`).
    pub dhchap_ctrl_secret: Option<Arc<DhchapSecret>>,
    /// The DH groups offered, as the Linux host all of them by default; the controller picks.
    pub dhchap_dh_groups: Vec<DhGroupId>,
    /// The configured TLS PSK: every queue then connects over TLS 1.3 with the identity and
    /// TLS PSK derived from it for this host and subsystem (`nvme connect --tls`).
    pub tls_psk: Option<Arc<TlsPsk>>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            host_nqn: "nqn.2014-08.org.nvmexpress:uuid:5f0c3a36-7a5e-4b8a-9d6e-vfnvme-host".into(),
            host_id: *b"vfnvme-host-0001",
            header_digest: false,
            data_digest: false,
            keep_alive_timeout_ms: 0,
            disable_sq_flow_control: false,
            max_data_len: 128 * 1024,
            timeout: Duration::from_secs(10),
            dhchap_secret: None,
            dhchap_ctrl_secret: None,
            dhchap_dh_groups: DhGroupId::ALL.to_vec(),
            tls_psk: None,
        }
    }
}
