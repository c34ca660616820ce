//! NVMe/TCP TLS 1.3 with an external PSK (TP 8011): the server context a TLS listener's
//! connections handshake with, and the table of PSK identities its PSK callback looks up.
//!
//! OpenSSL through the `openssl` crate (rustls has no external PSKs). The crate binds only
//! the legacy PSK callbacks, which OpenSSL serves in TLS 1.3 with TLS_AES_128_GCM_SHA256
//! alone: so TLS 1.3 only, that one suite, no certificate, no session tickets, and only
//! SHA-256 PSKs (the configuration refuses others). The identities and TLS PSKs are derived
//! when the configuration is read or a host is added over the management socket: the
//! callback, which runs on the poll group during a handshake (never on the I/O path), only
//! looks up, under the table's read lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslRef};
use vfnvme_auth::restrict_tls_context;

use crate::config::SubsystemConfig;
use crate::config::{HostPsk, PskIdentity};

/// Who a connection's PSK identity names: the Fabrics Connect on it must name the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PskPeer {
    pub host_nqn: String,
    pub subsystem_nqn: String,
}

/// Every configured PSK identity, by its text; the management socket adds and removes hosts'.
#[derive(Default)]
pub struct PskTable {
    identities: RwLock<HashMap<String, PskIdentity>>,
}

impl PskTable {
    /// The identities of every host PSK of `subsystems`.
    pub fn new(subsystems: &[SubsystemConfig]) -> PskTable {
        PskTable::from_identities(
            subsystems
                .iter()
                .flat_map(|subsystem| &subsystem.tls_psks)
                .flat_map(|psk| psk.identities.iter().cloned()),
        )
    }

    pub fn from_identities(identities: impl IntoIterator<Item = PskIdentity>) -> PskTable {
        PskTable {
            identities: RwLock::new(
                identities
                    .into_iter()
                    .map(|identity| (identity.identity.clone(), identity))
                    .collect(),
            ),
        }
    }

    /// The identity a host presented, if configured.
    pub fn find(&self, identity: &[u8]) -> Option<PskIdentity> {
        let text = std::str::from_utf8(identity).ok()?;
        self.read().get(text).cloned()
    }

    /// A host's PSK added at runtime: its identities complete handshakes from now on.
    pub fn add(&self, psk: &HostPsk) {
        let mut identities = self.write();
        for identity in &psk.identities {
            identities.insert(identity.identity.clone(), identity.clone());
        }
    }

    /// A host's PSK taken away: new handshakes with its identities fail. (An identity of the
    /// discovery subsystem that another of the host's PSKs also gives stays if that PSK is
    /// the one the table holds.)
    pub fn remove(&self, psk: &HostPsk) {
        let mut identities = self.write();
        for identity in &psk.identities {
            if identities
                .get(&identity.identity)
                .is_some_and(|held| held.psk.matches(identity.psk.as_bytes()))
            {
                identities.remove(&identity.identity);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PskIdentity>> {
        self.identities
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, PskIdentity>> {
        self.identities
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The server side of TLS listeners: one context for the target, an `Ssl` per connection.
pub struct TlsServer {
    context: SslContext,
    peer: Index<Ssl, PskPeer>,
    /// The host's address, for the callback's log line.
    address: Index<Ssl, String>,
    /// The identities the callback looks up.
    psks: Arc<PskTable>,
}

impl TlsServer {
    pub fn new(table: Arc<PskTable>) -> Result<TlsServer, ErrorStack> {
        let peer = Ssl::new_ex_index::<PskPeer>()?;
        let address = Ssl::new_ex_index::<String>()?;
        let mut builder = SslContextBuilder::new(SslMethod::tls_server())?;
        restrict_tls_context(&mut builder)?;
        let psks = Arc::clone(&table);
        builder.set_psk_server_callback(move |ssl: &mut SslRef, identity, psk: &mut [u8]| {
            let Some(found) = identity.and_then(|identity| table.find(identity)) else {
                let shown = identity.map(String::from_utf8_lossy).unwrap_or_default();
                let from = ssl.ex_data(address).map_or("?", String::as_str);
                log::warn!(
                    "{from}: TLS handshake refused: PSK identity \"{shown}\" (host {}) is not \
                     configured; give the host a tls_psk_file for that subsystem",
                    shown.split(' ').nth(1).unwrap_or("?")
                );
                return Ok(0);
            };
            let key = found.psk.as_bytes();
            if key.len() > psk.len() {
                return Ok(0);
            }
            psk[..key.len()].copy_from_slice(key);
            ssl.set_ex_data(
                peer,
                PskPeer {
                    host_nqn: found.host_nqn.clone(),
                    subsystem_nqn: found.subsystem_nqn.clone(),
                },
            );
            Ok(key.len())
        });
        Ok(TlsServer {
            context: builder.build(),
            peer,
            address,
            psks,
        })
    }

    /// The PSK identities handshakes are checked against.
    pub fn psks(&self) -> &PskTable {
        &self.psks
    }

    /// A fresh session for a connection from `peer_address`.
    pub fn session(&self, peer_address: &str) -> Result<Ssl, ErrorStack> {
        let mut ssl = Ssl::new(&self.context)?;
        ssl.set_ex_data(self.address, peer_address.to_owned());
        Ok(ssl)
    }

    /// Where a session records who its PSK identity names (set by the PSK callback).
    pub fn psk_peer_index(&self) -> Index<Ssl, PskPeer> {
        self.peer
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use openssl::ssl::{SslContextBuilder, SslMethod};
    use vfnvme_auth::{IdentityVersion, TlsPsk};

    use super::*;

    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
    const SUBSYSTEM: &str = "nqn.2026-11.io.vfnvme:ssd0";
    // A key of auth/tests/known_answers.rs (`nvme gen-tls-key` format, SHA-256).
    const KEY: &str = "NVMeTLSkey-1:01:LFKHx3GLh/WxQ3Qix/hiXhgJO/Ixkvwbye6I1Ys3uH5JBiAx:";

    fn client(identity: String, psk: Vec<u8>) -> SslContext {
        let mut builder = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
        restrict_tls_context(&mut builder).unwrap();
        builder.set_psk_client_callback(move |_, _, identity_out, psk_out| {
            identity_out[..identity.len()].copy_from_slice(identity.as_bytes());
            identity_out[identity.len()] = 0;
            psk_out[..psk.len()].copy_from_slice(&psk);
            Ok(psk.len())
        });
        builder.build()
    }

    /// Handshakes a client presenting `identity` with `psk`; the server's peer on success.
    fn handshake(identity: String, psk: Vec<u8>) -> Result<PskPeer, String> {
        let configured = TlsPsk::parse(KEY).unwrap();
        let table =
            PskTable::from_identities(crate::config::psk_identities(&configured, HOST, SUBSYSTEM));
        let server = TlsServer::new(Arc::new(table)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let context = client(identity, psk);
        let client = std::thread::spawn(move || {
            let stream = TcpStream::connect(address).unwrap();
            let ssl = Ssl::new(&context).unwrap();
            match ssl.connect(stream) {
                Ok(mut stream) => {
                    stream.write_all(b"ping").unwrap();
                    let mut answer = [0u8; 4];
                    stream.read_exact(&mut answer).unwrap();
                    assert_eq!(&answer, b"pong");
                    assert_eq!(
                        stream.ssl().current_cipher().unwrap().standard_name(),
                        Some(vfnvme_auth::TLS_CIPHER_SUITE)
                    );
                }
                Err(error) => drop(error),
            }
        });
        let (stream, _) = listener.accept().unwrap();
        let result = server.session("test").unwrap().accept(stream);
        let outcome = match result {
            Ok(mut stream) => {
                let mut ping = [0u8; 4];
                stream.read_exact(&mut ping).unwrap();
                assert_eq!(&ping, b"ping");
                stream.write_all(b"pong").unwrap();
                assert_eq!(stream.ssl().version_str(), "TLSv1.3");
                Ok(stream
                    .ssl()
                    .ex_data(server.psk_peer_index())
                    .cloned()
                    .expect("a PSK handshake names its peer"))
            }
            Err(error) => Err(error.to_string()),
        };
        client.join().unwrap();
        outcome
    }

    #[test]
    fn the_configured_psk_completes_the_handshake_with_identity_v0_and_v1() {
        let configured = TlsPsk::parse(KEY).unwrap();
        for version in [IdentityVersion::V0, IdentityVersion::V1] {
            let credentials = configured.credentials(HOST, SUBSYSTEM, version);
            let peer = handshake(credentials.identity, credentials.psk.as_bytes().to_vec());
            assert_eq!(
                peer,
                Ok(PskPeer {
                    host_nqn: HOST.into(),
                    subsystem_nqn: SUBSYSTEM.into()
                })
            );
        }
    }

    #[test]
    fn a_wrong_psk_under_a_known_identity_fails_the_handshake() {
        let configured = TlsPsk::parse(KEY).unwrap();
        let credentials = configured.credentials(HOST, SUBSYSTEM, IdentityVersion::V0);
        let mut wrong = credentials.psk.as_bytes().to_vec();
        wrong[0] ^= 1;
        assert!(handshake(credentials.identity, wrong).is_err());
    }

    #[test]
    fn an_unknown_identity_fails_the_handshake() {
        let configured = TlsPsk::parse(KEY).unwrap();
        let credentials = configured.credentials("nqn.other:host", SUBSYSTEM, IdentityVersion::V0);
        assert!(handshake(credentials.identity, credentials.psk.as_bytes().to_vec()).is_err());
    }
}
