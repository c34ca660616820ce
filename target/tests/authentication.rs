//! DH-HMAC-CHAP on the target's queues, end to end with our initiator and with a raw client
//! that runs the exchange itself: the right keys connect and move data on the admin and I/O
//! queues; a wrong host key is refused with AUTH_Failure1 and the queue closed; a host without
//! a key is told authentication is required; a wrong controller key makes the host give up;
//! commands before authentication fail with Authentication Required; other hosts go on; a
//! queue re-authenticates.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{
    options, pattern, with_in_capsule_sgl, with_transport_sgl, RawClient, Received, BLOCK, NQN,
};
use vfnvme_auth::{DhGroupId, DhchapSecret, HashId, HostAuth, HostAuthError};
use vfnvme_host::{authenticate, Host, HostError, HostOptions, HostQueue};
use vfnvme_spec::auth::{connect_authreq, AuthCommand, AuthDirection};
use vfnvme_spec::fabrics::{FabricsCommand, PropertyGet, PropertySize};
use vfnvme_spec::{admin_opcode, cns, nvm_opcode, regs, Command, Status};
use vfnvme_tcp::PduHeader;

use crate::common::RunningTarget;

const HOST_A: &str = "nqn.2014-08.org.nvmexpress:uuid:host-a";
const HOST_B: &str = "nqn.2014-08.org.nvmexpress:uuid:host-b";

fn secret(fill: u8) -> DhchapSecret {
    DhchapSecret::new(&[fill; 32], Some(HashId::Sha256)).unwrap()
}

/// Writes `secret` to `dir/name`, readable by its owner only.
fn key_file(dir: &Path, name: &str, secret: &DhchapSecret) -> String {
    let path = dir.join(name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{}", &*secret.representation()).unwrap();
    path.display().to_string()
}

/// A target whose subsystem `NQN` admits host A with key 1 (controller key 2) and host B with
/// key 3; `require` sets `require_authentication`.
fn target(dir: &Path, require: bool) -> RunningTarget {
    let host_a = key_file(dir, "host-a", &secret(1));
    let ctrl = key_file(dir, "ctrl", &secret(2));
    let host_b = key_file(dir, "host-b", &secret(3));
    let subsystem = format!(
        "require_authentication = {require}\n\
         [[subsystem.host]]\nnqn = \"{HOST_A}\"\ndhchap_secret_file = \"{host_a}\"\n\
         dhchap_ctrl_secret_file = \"{ctrl}\"\n\
         [[subsystem.host]]\nnqn = \"{HOST_B}\"\ndhchap_secret_file = \"{host_b}\"\n"
    );
    let text = common::loopback_config("cores = 2")
        .subsystem(NQN, &subsystem)
        .namespace(1, "ram_mib = 16")
        .text();
    RunningTarget::with_config(&text)
}

/// Host options of `host_nqn` with `secret` and `ctrl_secret`, offering ffdhe2048 and null
/// (the DH work of ffdhe8192 is slow in a debug build).
fn host_options(
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

fn write_read_compare(queue: &mut HostQueue, lba: u64, seed: u64) {
    let data = pattern(8 * BLOCK, seed);
    let write = Command::nvm_rw(nvm_opcode::WRITE, 1, lba, 8);
    queue.execute(write, &data, 0, "Write").expect("write");
    let read = Command::nvm_rw(nvm_opcode::READ, 1, lba, 8);
    let (_, back) = queue.execute(read, &[], data.len(), "Read").expect("read");
    assert!(back == data, "data read back differs");
}

fn identify(cid: u16) -> Command {
    let command = Command {
        cdw10: u32::from(cns::CONTROLLER),
        ..Command::new(admin_opcode::IDENTIFY, 0)
    };
    with_transport_sgl(command, cid, 4096)
}

/// A raw client's Authentication Send of `message`; returns the status.
fn raw_send(client: &mut RawClient, message: &[u8]) -> Status {
    let command = AuthCommand {
        direction: AuthDirection::Send,
        length: message.len() as u32,
    }
    .to_command(0);
    client.send_capsule(&with_in_capsule_sgl(command, 5, message.len()), message);
    client.expect_response().status()
}

/// A raw client's Authentication Receive: the message, or `None` if the target closed.
fn raw_receive(client: &mut RawClient) -> Option<Vec<u8>> {
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
fn raw_exchange(client: &mut RawClient, auth: &mut HostAuth) -> Result<(), HostAuthError> {
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

fn host_auth(host_nqn: &str, key: &DhchapSecret) -> HostAuth {
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

fn raw_admin(target: &RunningTarget, host_nqn: &str) -> (RawClient, u32) {
    let mut client = RawClient::established(target.address, false, false);
    client.host_nqn = host_nqn.into();
    let result = client.connect_admin().result;
    (client, result)
}

#[test]
fn the_right_keys_authenticate_admin_and_io_queues_and_data_moves() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), true);
    // Bidirectional: host A checks the controller's key too.
    let mut host = target.host_with(host_options(HOST_A, Some(secret(1)), Some(secret(2))));
    host.identify_controller()
        .expect("admin commands after authentication");
    let mut queue = host
        .connect_io_queue(1, 8)
        .expect("I/O queue authenticates");
    write_read_compare(&mut queue, 64, 1);
    // One way: host B.
    let mut host = target.host_with(host_options(HOST_B, Some(secret(3)), None));
    let mut queue = host
        .connect_io_queue(1, 8)
        .expect("I/O queue authenticates");
    write_read_compare(&mut queue, 128, 2);
}

#[test]
fn connect_sets_atr_for_a_host_with_a_key_and_commands_before_authentication_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), false);
    let (mut client, result) = raw_admin(&target, HOST_A);
    assert_ne!(result & connect_authreq::ATR, 0, "ATR in Connect DW0");
    client.send_capsule(&identify(1), &[]);
    let status = client.expect_response().status();
    assert_eq!((status.sct(), status.sc(), status.dnr()), (1, 0x91, true));
    // Fabrics commands pass (nvmet): Property Get of CAP.
    let get = FabricsCommand::PropertyGet(PropertyGet {
        size: PropertySize::Eight,
        offset: regs::CAP as u32,
    })
    .to_command(2);
    client.send_capsule(&get, &[]);
    assert!(client.expect_response().status().is_success());

    // An I/O queue of an authenticated host must authenticate too.
    let mut host = target.host_with(host_options(HOST_A, Some(secret(1)), None));
    host.identify_controller().unwrap();
    let mut io = RawClient::established(target.address, false, false);
    io.host_nqn = HOST_A.into();
    let result = io.connect_io_of(&host, 1, 8).result;
    assert_ne!(result & connect_authreq::ATR, 0, "ATR on the I/O queue");
    let read = with_transport_sgl(Command::nvm_rw(nvm_opcode::READ, 1, 0, 1), 3, BLOCK);
    io.send_capsule(&read, &[]);
    let status = io.expect_response().status();
    assert_eq!((status.sct(), status.sc(), status.dnr()), (1, 0x91, true));
    // Authenticated, the same queue reads.
    raw_exchange(&mut io, &mut host_auth(HOST_A, &secret(1))).expect("authenticates");
    io.send_capsule(&read, &[]);
    assert!(matches!(
        io.receive(),
        Received::Pdu(PduHeader::C2HData(_), data) if data.len() == BLOCK
    ));
}

#[test]
fn a_wrong_host_key_is_refused_and_the_queue_closed_while_other_hosts_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), true);
    let mut good = target.host_with(host_options(HOST_B, Some(secret(3)), None));
    let mut good_queue = good.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut good_queue, 0, 3);

    // Our initiator reports the refusal.
    let refused = Host::connect(
        target.address,
        NQN,
        host_options(HOST_A, Some(secret(9)), None),
    );
    assert!(
        matches!(
            refused,
            Err(HostError::Authentication {
                source: HostAuthError::Refused { explanation: 1 },
                ..
            })
        ),
        "{:?}",
        refused.err()
    );
    // On the wire: Failure1, then the queue closes; nothing more gets through.
    let (mut client, _) = raw_admin(&target, HOST_A);
    let result = raw_exchange(&mut client, &mut host_auth(HOST_A, &secret(9)));
    assert_eq!(result, Err(HostAuthError::Refused { explanation: 1 }));
    let identify = client.capsule_bytes(&identify(9), &[]);
    client.send_lenient(&identify);
    client.expect_closed();

    write_read_compare(&mut good_queue, 8, 4);
    good.identify_controller()
        .expect("the other host's admin queue");
}

#[test]
fn without_a_key_a_host_is_told_authentication_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), true);
    let refused = Host::connect(target.address, NQN, host_options(HOST_A, None, None));
    assert!(
        matches!(
            refused,
            Err(HostError::AuthenticationRequired { qid: 0, .. })
        ),
        "{:?}",
        refused.err()
    );
}

#[test]
fn a_wrong_controller_key_makes_the_host_give_up() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), true);
    let refused = Host::connect(
        target.address,
        NQN,
        host_options(HOST_A, Some(secret(1)), Some(secret(8))),
    );
    assert!(
        matches!(
            refused,
            Err(HostError::Authentication {
                source: HostAuthError::Refusing { .. },
                ..
            })
        ),
        "{:?}",
        refused.err()
    );
}

#[test]
fn an_authenticated_queue_re_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), true);
    let mut host = target.host_with(host_options(HOST_B, Some(secret(3)), None));
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    // A new Negotiate on authenticated queues starts over (nvmet); I/O goes on after.
    authenticate(host.admin_queue(), &mut host_auth(HOST_B, &secret(3))).expect("admin queue");
    authenticate(&mut queue, &mut host_auth(HOST_B, &secret(3))).expect("I/O queue");
    host.identify_controller()
        .expect("admin commands after re-authentication");
    write_read_compare(&mut queue, 24, 6);
}

#[test]
fn hosts_without_keys_connect_without_authentication_unless_required() {
    let dir = tempfile::tempdir().unwrap();
    let host_a = key_file(dir.path(), "host-a", &secret(1));
    let subsystem = format!(
        "hosts = [\"{HOST_B}\"]\n\
         [[subsystem.host]]\nnqn = \"{HOST_A}\"\ndhchap_secret_file = \"{host_a}\"\n"
    );
    let text = common::loopback_config("cores = 1")
        .subsystem(NQN, &subsystem)
        .namespace(1, "ram_mib = 16")
        .text();
    let target = RunningTarget::with_config(&text);
    let (_, result) = raw_admin(&target, HOST_B);
    assert_eq!(
        result & connect_authreq::ATR,
        0,
        "no ATR for a host without a key"
    );
    let mut host = target.host_with(host_options(HOST_B, None, None));
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut queue, 16, 5);
}
