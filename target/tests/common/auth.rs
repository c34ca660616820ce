//! DH-HMAC-CHAP and TLS fixtures of the authentication tests: key files, a target whose
//! subsystem admits two hosts with keys, and a raw client's side of the exchange.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use vfnvme_auth::{DhGroupId, DhchapSecret, HashId, HostAuth, HostAuthError, TlsPsk};
use vfnvme_host::HostOptions;
use vfnvme_spec::auth::{AuthCommand, AuthDirection};
use vfnvme_spec::Status;
use vfnvme_tcp::PduHeader;

use super::{
    loopback_config, options, with_in_capsule_sgl, with_transport_sgl, RawClient, Received,
    RunningTarget, NQN,
};

pub const HOST_A: &str = "nqn.2014-08.org.nvmexpress:uuid:host-a";
pub const HOST_B: &str = "nqn.2014-08.org.nvmexpress:uuid:host-b";

pub fn secret(fill: u8) -> DhchapSecret {
    DhchapSecret::new(&[fill; 32], Some(HashId::Sha256)).unwrap()
}

/// Writes `secret` to `dir/name`, readable by its owner only.
pub fn key_file(dir: &Path, name: &str, secret: &DhchapSecret) -> String {
    secret_file(dir, name, &secret.representation())
}

/// Writes the TLS PSK `psk` in its interchange format to `dir/name`, owner only.
pub fn psk_file(dir: &Path, name: &str, psk: &TlsPsk) -> String {
    secret_file(dir, name, &psk.representation())
}

fn secret_file(dir: &Path, name: &str, representation: &str) -> String {
    let path = dir.join(name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{representation}").unwrap();
    path.display().to_string()
}

/// A target whose subsystem `NQN` admits host A with key 1 (controller key 2) and host B with
/// key 3; `require` sets `require_authentication`.
pub fn target(dir: &Path, require: bool) -> RunningTarget {
    target_with(dir, require, "")
}

/// [`target`] with more `[target]` lines.
pub fn target_with(dir: &Path, require: bool, target_lines: &str) -> RunningTarget {
    let host_a = key_file(dir, "host-a", &secret(1));
    let ctrl = key_file(dir, "ctrl", &secret(2));
    let host_b = key_file(dir, "host-b", &secret(3));
    let subsystem = format!(
        "require_authentication = {require}\n\
         [[subsystem.host]]\nnqn = \"{HOST_A}\"\ndhchap_secret_file = \"{host_a}\"\n\
         dhchap_ctrl_secret_file = \"{ctrl}\"\n\
         [[subsystem.host]]\nnqn = \"{HOST_B}\"\ndhchap_secret_file = \"{host_b}\"\n"
    );
    let text = loopback_config(&format!("cores = 2\n{target_lines}"))
        .subsystem(NQN, &subsystem)
        .namespace(1, "ram_mib = 16")
        .text();
    RunningTarget::with_config(&text)
}

/// Host options of `host_nqn` with `secret` and `ctrl_secret`, offering ffdhe2048 and null
/// (the DH work of ffdhe8192 is slow in a debug build).
pub fn host_options(
    host_nqn: &str,
    secret: Option<DhchapSecret>,
    ctrl_secret: Option<DhchapSecret>,
) -> HostOptions {
    HostOptions {
        host_nqn: host_nqn.into(),
        dhchap_secret: secret.map(Arc::new),
        dhchap_ctrl_secret: ctrl_secret.map(Arc::new),
        dhchap_dh_groups: vec![DhGroupId::Ffdhe2048, DhGroupId::Null],
        ..options()
    }
}

/// A raw client's Authentication Send of `message`; returns the status.
pub fn raw_send(client: &mut RawClient, message: &[u8]) -> Status {
    let command = AuthCommand {
        direction: AuthDirection::Send,
        length: message.len() as u32,
    }
    .to_command(0);
    client.send_capsule(&with_in_capsule_sgl(command, 5, message.len()), message);
    client.expect_response().status()
}

/// A raw client's Authentication Receive: the message, or `None` if the target closed.
pub fn raw_receive(client: &mut RawClient) -> Option<Vec<u8>> {
    let command = AuthCommand {
        direction: AuthDirection::Receive,
        length: 4096,
    }
    .to_command(0);
    client.send_capsule(&with_transport_sgl(command, 6, 4096), &[]);
    let data = match client.receive() {
        Received::Pdu(PduHeader::C2HData(_), data) => data,
        Received::Closed => return None,
        other => panic!("expected C2HData, got {other:?}"),
    };
    assert!(client.expect_response().status().is_success());
    Some(data)
}

/// The whole exchange over a raw client.
pub fn raw_exchange(client: &mut RawClient, auth: &mut HostAuth) -> Result<(), HostAuthError> {
    assert!(raw_send(client, &auth.negotiate()).is_success());
    let challenge = raw_receive(client).expect("a Challenge");
    let reply = auth.challenge(&challenge)?;
    assert!(raw_send(client, &reply).is_success());
    let success1 = raw_receive(client).expect("Success1 or Failure1");
    if let Some(success2) = auth.success1(&success1)? {
        assert!(raw_send(client, &success2).is_success());
    }
    Ok(())
}

pub fn host_auth(host_nqn: &str, key: &DhchapSecret) -> HostAuth {
    HostAuth::new(
        host_nqn,
        NQN,
        key,
        None,
        &HashId::ALL,
        &[DhGroupId::Null, DhGroupId::Ffdhe2048],
        7,
    )
}

pub fn raw_admin(target: &RunningTarget, host_nqn: &str) -> (RawClient, u32) {
    let mut client = RawClient::established(target.address, false, false);
    client.host_nqn = host_nqn.into();
    let result = client.connect_admin().result;
    (client, result)
}
