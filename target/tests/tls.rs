//! NVMe/TCP over TLS 1.3 with a PSK, end to end with our initiator: the configured PSK
//! connects admin and I/O queues over the TLS listener and data written is read back equal
//! (beyond one TLS record, with digests, with DH-HMAC-CHAP on top); a wrong PSK, a host the
//! PSK is not for and a host without TLS are refused, and other hosts go on; a host with a PSK
//! is refused on the plain listener (Connect Invalid Host); the discovery log says the TLS
//! listener requires TLS 1.3.

mod common;

use std::sync::Arc;

use common::auth::{secret, HOST_A, HOST_B};
use common::tls::{psk_a, target, tls_options};
use common::{failed_status, options, write_read_compare, RunningTarget, NQN};
use vfnvme_auth::{PskHash, TlsPsk};
use vfnvme_host::{Host, HostError, HostOptions};
use vfnvme_spec::fabrics::DISCOVERY_NQN;

fn connect(
    target: &RunningTarget,
    listener: usize,
    options: HostOptions,
) -> Result<Host, HostError> {
    let mut host = Host::connect(target.addresses[listener], NQN, options)?;
    host.enable()?;
    Ok(host)
}

/// Why a connection that should be refused was.
fn refusal(result: Result<Host, HostError>) -> HostError {
    match result {
        Ok(_) => panic!("the host connected"),
        Err(error) => error,
    }
}

#[test]
fn the_configured_psk_connects_admin_and_io_queues_and_data_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), false);
    for digests in [false, true] {
        let options = HostOptions {
            header_digest: digests,
            data_digest: digests,
            ..tls_options(HOST_A, psk_a())
        };
        let mut host = connect(&target, 0, options).expect("admin queue over TLS");
        assert_eq!(host.identify_controller().unwrap().subnqn, NQN);
        let mut queue = host.connect_io_queue(1, 8).expect("I/O queue over TLS");
        // 4 KiB fits one record and the capsule; 128 KiB spans records, R2T and H2CData.
        write_read_compare(&mut queue, 0, 8, 1);
        write_read_compare(&mut queue, 64, 256, 2);
    }
}

#[test]
fn dh_hmac_chap_runs_inside_the_tls_channel() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), true);
    let options = HostOptions {
        dhchap_secret: Some(Arc::new(secret(1))),
        ..tls_options(HOST_A, psk_a())
    };
    let mut host = connect(&target, 0, options).expect("TLS, then DH-HMAC-CHAP");
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    write_read_compare(&mut queue, 8, 16, 3);
    // The same TLS host without its DH-HMAC-CHAP secret is told to authenticate.
    let refused = refusal(connect(&target, 0, tls_options(HOST_A, psk_a())));
    assert!(
        matches!(refused, HostError::AuthenticationRequired { .. }),
        "{refused:?}"
    );
}

#[test]
fn wrong_psks_other_hosts_and_plain_hosts_are_refused_and_the_right_host_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), false);
    let mut host = connect(&target, 0, tls_options(HOST_A, psk_a())).unwrap();
    let mut queue = host.connect_io_queue(1, 8).unwrap();

    let wrong = TlsPsk::new(&[0xa5; 32], Some(PskHash::Sha256)).unwrap();
    let refused = refusal(connect(&target, 0, tls_options(HOST_A, wrong)));
    assert!(matches!(refused, HostError::Tls { .. }), "{refused:?}");
    // Host B has no PSK: the identity derived for it is not configured.
    let refused = refusal(connect(&target, 0, tls_options(HOST_B, psk_a())));
    assert!(matches!(refused, HostError::Tls { .. }), "{refused:?}");
    // No TLS at all: the ICReq is no ClientHello, and the connection closes.
    let plain = HostOptions {
        host_nqn: HOST_B.into(),
        ..options()
    };
    let refused = refusal(connect(&target, 0, plain.clone()));
    assert!(
        matches!(refused, HostError::Closed { .. } | HostError::Io { .. }),
        "{refused:?}"
    );

    // Host A still moves data, and host B connects on the plain listener.
    write_read_compare(&mut queue, 128, 8, 4);
    let mut other = connect(&target, 1, plain).expect("plain host on the plain listener");
    let mut other_queue = other.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut other_queue, 256, 8, 5);
}

#[test]
fn a_host_with_a_psk_is_refused_on_the_plain_listener_with_invalid_host() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), false);
    let without_tls = HostOptions {
        host_nqn: HOST_A.into(),
        ..options()
    };
    let status = failed_status(connect(&target, 1, without_tls).map(drop));
    // Connect Invalid Host: command-specific (1h), 84h.
    assert_eq!((status.sct(), status.sc()), (1, 0x84));
}

#[test]
fn the_discovery_log_says_the_tls_listener_requires_tls_1_3() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), false);
    let mut discovery = Host::connect(
        target.addresses[1],
        DISCOVERY_NQN,
        HostOptions {
            host_nqn: HOST_B.into(),
            ..options()
        },
    )
    .unwrap();
    discovery.enable().unwrap();
    let log = discovery.log_page(0x70, 4 * 1024).unwrap();
    assert_eq!(u64::from_le_bytes(log[8..16].try_into().unwrap()), 3);
    let entries: Vec<&[u8]> = log[1024..].chunks(1024).collect();
    let port_of = |entry: &[u8]| {
        let trsvcid = String::from_utf8_lossy(&entry[32..64]).trim().to_owned();
        trsvcid.parse::<u16>().unwrap()
    };
    for entry in &entries[1..] {
        // TREQ bits 1:0 and TSAS byte 0 (Security Type): 01b and TLS 1.3 (2) on the TLS
        // listener; 00b and none (0) on the plain one.
        let expected = if port_of(entry) == target.addresses[0].port() {
            (0x01, 2)
        } else {
            assert_eq!(port_of(entry), target.addresses[1].port());
            (0x00, 0)
        };
        assert_eq!((entry[3] & 0x03, entry[768]), expected);
    }
}
