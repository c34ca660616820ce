//! The initiator's side of the NVMe/TCP secure channel: a TLS 1.3 handshake with the PSK
//! identity and TLS PSK derived from the configured PSK, the host NQN and the subsystem NQN
//! (TP 8011, identity version 0 as the Linux host and SPDK's `--psk-identity` examples use).

use std::net::{SocketAddr, TcpStream};

use openssl::ssl::{Ssl, SslContextBuilder, SslMethod, SslStream};
use vfnvme_auth::{restrict_tls_context, IdentityVersion, TlsPsk};

use crate::error::HostError;

/// Handshakes over `stream` (blocking, bounded by its read timeout) as `host_nqn` for
/// `subsystem_nqn`.
pub(crate) fn connect(
    stream: TcpStream,
    address: SocketAddr,
    psk: &TlsPsk,
    host_nqn: &str,
    subsystem_nqn: &str,
) -> Result<SslStream<TcpStream>, HostError> {
    let credentials = psk.credentials(host_nqn, subsystem_nqn, IdentityVersion::V0);
    let shown_identity = credentials.identity.clone();
    let failed = |source: openssl::ssl::Error| HostError::Tls {
        address,
        identity: shown_identity.clone(),
        source,
    };
    let mut builder =
        SslContextBuilder::new(SslMethod::tls_client()).map_err(|e| failed(e.into()))?;
    restrict_tls_context(&mut builder).map_err(|e| failed(e.into()))?;
    // The callback owns the credentials (the key is wiped when the context goes).
    builder.set_psk_client_callback(move |_, _, identity_out, psk_out| {
        let identity = credentials.identity.as_bytes();
        let key = credentials.psk.as_bytes();
        // Both buffers have room for what NVMe/TCP derives (identities of two NQNs of at most
        // 223 bytes, keys of at most 48); OpenSSL refuses the handshake on an error here.
        if identity.len() >= identity_out.len() || key.len() > psk_out.len() {
            return Ok(0);
        }
        identity_out[..identity.len()].copy_from_slice(identity);
        identity_out[identity.len()] = 0;
        psk_out[..key.len()].copy_from_slice(key);
        Ok(key.len())
    });
    let ssl = Ssl::new(&builder.build()).map_err(|e| failed(e.into()))?;
    ssl.connect(stream).map_err(|error| match error {
        openssl::ssl::HandshakeError::SetupFailure(stack) => failed(stack.into()),
        openssl::ssl::HandshakeError::Failure(mid)
        | openssl::ssl::HandshakeError::WouldBlock(mid) => failed(mid.into_error()),
    })
}
