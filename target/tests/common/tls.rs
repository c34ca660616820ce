//! TLS fixtures: host A's PSK, a target with a TLS and a plain listener, host options that
//! connect over TLS, and a raw TLS client context for streams our initiator never sends.

use std::path::Path;
use std::sync::Arc;

use openssl::ssl::{SslContext, SslContextBuilder, SslMethod};
use vfnvme_auth::{restrict_tls_context, IdentityVersion, PskHash, TlsPsk};
use vfnvme_host::HostOptions;
use vfnvme_test_support::ConfigText;

use super::auth::{key_file, psk_file, secret, HOST_A, HOST_B};
use super::{options, RunningTarget, NQN};

/// Host A's configured PSK (SHA-256, as `nvme gen-tls-key --hmac 1`).
pub fn psk_a() -> TlsPsk {
    TlsPsk::new(&[0x5a; 32], Some(PskHash::Sha256)).unwrap()
}

/// A target with a TLS listener (`addresses[0]`) and a plain one (`addresses[1]`); its
/// subsystem admits host A with a TLS PSK (and, with `dhchap`, DH-HMAC-CHAP secret 1) and
/// host B with nothing.
pub fn target(dir: &Path, dhchap: bool) -> RunningTarget {
    let psk = psk_file(dir, "host-a.psk", &psk_a());
    let dhchap = if dhchap {
        format!(
            "dhchap_secret_file = \"{}\"\n",
            key_file(dir, "host-a", &secret(1))
        )
    } else {
        String::new()
    };
    let text = ConfigText::new("cores = 2")
        .tls_listener("127.0.0.1:0")
        .listener("127.0.0.2:0")
        .subsystem(
            NQN,
            &format!(
                "[[subsystem.host]]\nnqn = \"{HOST_A}\"\ntls_psk_file = \"{psk}\"\n{dhchap}\
                 [[subsystem.host]]\nnqn = \"{HOST_B}\"\n"
            ),
        )
        .namespace(1, "ram_mib = 16")
        .text();
    RunningTarget::with_config(&text)
}

pub fn tls_options(host_nqn: &str, psk: TlsPsk) -> HostOptions {
    HostOptions {
        host_nqn: host_nqn.into(),
        tls_psk: Some(Arc::new(psk)),
        ..options()
    }
}

/// A client context presenting host A's identity (version 0) for `NQN` with `psk` derived
/// from host A's configured PSK, or anything else `identity` and `psk` say.
pub fn client_context(identity: String, psk: Vec<u8>) -> SslContext {
    let mut builder = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
    restrict_tls_context(&mut builder).unwrap();
    builder.set_psk_client_callback(move |_, _, identity_out, psk_out| {
        let len = identity.len().min(identity_out.len() - 1);
        identity_out[..len].copy_from_slice(&identity.as_bytes()[..len]);
        identity_out[len] = 0;
        psk_out[..psk.len()].copy_from_slice(&psk);
        Ok(psk.len())
    });
    builder.build()
}

/// Host A's client context, with the right TLS PSK.
pub fn host_a_context() -> SslContext {
    let credentials = psk_a().credentials(HOST_A, NQN, IdentityVersion::V0);
    client_context(credentials.identity, credentials.psk.as_bytes().to_vec())
}
