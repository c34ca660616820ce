//! DH-HMAC-CHAP on the target's queues, end to end with our initiator and with a raw client
//! that runs the exchange itself: the right keys connect and move data on the admin and I/O
//! queues; a wrong host key is refused with AUTH_Failure1 and the queue closed; a host without
//! a key is told authentication is required; a wrong controller key makes the host give up;
//! commands before authentication fail with Authentication Required; other hosts go on; a
//! queue re-authenticates.

mod common;

use common::auth::{
    host_auth, host_options, key_file, raw_admin, raw_exchange, raw_receive, raw_send, secret,
    target, target_with, HOST_A, HOST_B,
};
use common::{with_transport_sgl, write_read_compare, RawClient, Received, BLOCK, NQN};
use vfnvme_auth::{DhGroupId, HashId, HostAuth, HostAuthError};
use vfnvme_host::{authenticate, Host, HostError};
use vfnvme_spec::auth::{connect_authreq, Message};
use vfnvme_spec::fabrics::{FabricsCommand, PropertyGet, PropertySize};
use vfnvme_spec::{admin_opcode, cns, nvm_opcode, regs, Command};
use vfnvme_tcp::PduHeader;

use crate::common::RunningTarget;

fn identify(cid: u16) -> Command {
    let command = Command {
        cdw10: u32::from(cns::CONTROLLER),
        ..Command::new(admin_opcode::IDENTIFY, 0)
    };
    with_transport_sgl(command, cid, 4096)
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
    write_read_compare(&mut queue, 64, 8, 1);
    // One way: host B.
    let mut host = target.host_with(host_options(HOST_B, Some(secret(3)), None));
    let mut queue = host
        .connect_io_queue(1, 8)
        .expect("I/O queue authenticates");
    write_read_compare(&mut queue, 128, 8, 2);
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
    write_read_compare(&mut good_queue, 0, 8, 3);

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

    write_read_compare(&mut good_queue, 8, 8, 4);
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
    write_read_compare(&mut queue, 24, 8, 6);
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
    write_read_compare(&mut queue, 16, 8, 5);
}

/// `[target] dhchap_digests` / `dhchap_dhgroups` narrow what an exchange may use: the
/// Challenge names the strongest configured pair the host offers, and a host offering none of
/// the configured groups gets AUTH_Failure1 with "DH group unusable" (05h).
#[test]
fn configured_digests_and_dh_groups_are_the_only_ones_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let target = target_with(
        dir.path(),
        true,
        "dhchap_digests = [\"sha256\", \"sha384\"]\ndhchap_dhgroups = [\"ffdhe2048\"]",
    );
    // The host offers every hash, and null and ffdhe2048.
    let (mut client, _) = raw_admin(&target, HOST_A);
    let mut auth = host_auth(HOST_A, &secret(1));
    assert!(raw_send(&mut client, &auth.negotiate()).is_success());
    let challenge = raw_receive(&mut client).expect("a Challenge");
    match Message::decode(&challenge) {
        Ok(Message::Challenge(c)) => {
            assert_eq!((c.hash, c.dh_group), (HashId::Sha384, DhGroupId::Ffdhe2048))
        }
        other => panic!("expected a Challenge, got {other:?}"),
    }
    let reply = auth.challenge(&challenge).expect("the host answers");
    assert!(raw_send(&mut client, &reply).is_success());
    let success1 = raw_receive(&mut client).expect("Success1");
    assert_eq!(auth.success1(&success1), Ok(None), "authenticated");

    // Offering only the null group: refused, the queue closed.
    let (mut client, _) = raw_admin(&target, HOST_A);
    let null_only = HostAuth::new(
        HOST_A,
        NQN,
        &secret(1),
        None,
        &HashId::ALL,
        &[DhGroupId::Null],
        8,
    );
    assert!(raw_send(&mut client, &null_only.negotiate()).is_success());
    let failure = raw_receive(&mut client).expect("a Failure1");
    match Message::decode(&failure) {
        Ok(Message::Failure1(f)) => assert_eq!(f.explanation, 0x05, "DH group unusable"),
        other => panic!("expected a Failure1, got {other:?}"),
    }
    client.expect_closed();
}
