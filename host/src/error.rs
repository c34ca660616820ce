//! What can go wrong talking to a target: its own file because both the queue and the admin
//! API return it.

use std::net::SocketAddr;
use std::time::Duration;

use vfnvme_spec::Status;
use vfnvme_tcp::PduError;

/// A failed connection, command or wait; every variant names the target's address.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{address}: {operation}: {source}")]
    Io {
        address: SocketAddr,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{address}: protocol error from the target: {error}")]
    Protocol {
        address: SocketAddr,
        error: PduError,
    },
    #[error("{address}: the target terminated the connection (FES {fes:#x}, FEI {fei:#x})")]
    Terminated {
        address: SocketAddr,
        fes: u16,
        fei: u32,
    },
    #[error("{address}: {what} failed: {status}")]
    Command {
        address: SocketAddr,
        what: &'static str,
        status: Status,
    },
    #[error("{address}: {what} did not complete within {timeout:?}")]
    Timeout {
        address: SocketAddr,
        what: &'static str,
        timeout: Duration,
    },
    #[error(
        "{address}: TLS handshake with PSK identity \"{identity}\" failed: {source}; check \
         that the PSK (vfnvme perf --tls-key) is the one the target has for this host and \
         subsystem, and that the port is a TLS listener"
    )]
    Tls {
        address: SocketAddr,
        identity: String,
        #[source]
        source: openssl::ssl::Error,
    },
    #[error("{address}: the target closed the connection")]
    Closed { address: SocketAddr },
    #[error("{address}: no free command slot (queue of {entries} entries)")]
    QueueFull { address: SocketAddr, entries: u16 },
    #[error(
        "{address}: queue {qid}: the target requires DH-HMAC-CHAP authentication and no \
         secret is set; give the host's DHHC-1 secret (vfnvme perf --dhchap-secret)"
    )]
    AuthenticationRequired { address: SocketAddr, qid: u16 },
    #[error("{address}: queue {qid}: DH-HMAC-CHAP authentication failed: {source}")]
    Authentication {
        address: SocketAddr,
        qid: u16,
        #[source]
        source: vfnvme_auth::HostAuthError,
    },
}
