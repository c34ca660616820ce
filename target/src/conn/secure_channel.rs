//! Who may Connect over which channel: on a TLS listener the Connect must name the host and
//! subsystem of the connection's PSK identity; on a plain listener a host with a TLS PSK for
//! the subsystem is refused (the PSK would protect nothing). Both answer Connect Invalid Host.

use vfnvme_spec::fabrics::ConnectData;

use super::connection::Connection;

impl Connection {
    /// Why the Connect with `data` may not go on over this connection's channel, if so.
    /// Malformed data passes: the Connect itself then answers for it.
    pub(super) fn secure_channel_refusal(&self, data: &[u8]) -> Option<String> {
        let data = ConnectData::from_bytes(data).ok()?;
        if self.shared.is_tls(self.listener) {
            let Some(peer) = self.socket.psk_peer() else {
                return Some("the TLS session has no PSK identity".into());
            };
            if peer.host_nqn != data.host_nqn || peer.subsystem_nqn != data.subsystem_nqn {
                return Some(format!(
                    "the Connect names host {} and subsystem {}, but the TLS PSK identity \
                     names host {} and subsystem {}",
                    data.host_nqn, data.subsystem_nqn, peer.host_nqn, peer.subsystem_nqn
                ));
            }
            return None;
        }
        let registry = self
            .shared
            .registry()
            .subsystems()
            .find(&data.subsystem_nqn)?;
        registry
            .read_access(|access| access.has_tls_psk(&data.host_nqn))
            .then(|| {
                format!(
                    "host {} has a TLS PSK for subsystem {} and must connect over a TLS \
                     listener, not this plain one",
                    data.host_nqn, data.subsystem_nqn
                )
            })
    }
}
