//! Keys over the management socket, as SPDK's nvmf_tgt takes them: key files named in the
//! keyring (`keyring_file_add_key`), given to a host by name (`nvmf_subsystem_add_host`
//! `dhchap_key`, `dhchap_ctrlr_key`, `psk`). A host given DH-HMAC-CHAP keys authenticates on
//! its admin and I/O queues and moves data, with a wrong key it is refused; a subsystem that
//! requires authentication refuses a host without one; a host given a TLS PSK connects over
//! a TLS listener (of a target that started with no PSK at all) and is refused on the plain
//! one; a removed host's keys go with it; `nvmf_subsystem_set_keys` changes a connected
//! host's keys (its queues go on, its next queue and re-authentication need the new ones) or
//! clears them; `save_config` names the key files and writes the keyring, and the restarted
//! target admits the host with the same keys and knows the same key names. Bad params name
//! the field and the fix.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use vfnvme_auth::{DhGroupId, HashId, HostAuth, HostAuthError, PskHash, TlsPsk};
use vfnvme_host::{authenticate, Host, HostError};
use vfnvme_target::config::Config;

mod common;

use common::auth::{
    host_auth, host_options, key_file, psk_file, secret, target_with, HOST_A, HOST_B,
};
use common::rpc::{socket_path, Client};
use common::tls::tls_options;
use common::{failed_status, options, write_read_compare, RunningTarget, NQN};
use vfnvme_host::HostOptions;
use vfnvme_test_support::ConfigText;

const HOST_C: &str = "nqn.2014-08.org.nvmexpress:uuid:host-c";

/// The target of `common::auth::target` (hosts A and B keyed in the file), managed at
/// `socket`.
fn managed(dir: &std::path::Path, socket: &std::path::Path, require: bool) -> RunningTarget {
    target_with(
        dir,
        require,
        &format!("rpc_socket = \"{}\"", socket.display()),
    )
}

/// A Connect (of a controller or a queue) whose authentication the controller refused
/// (AUTH_Failure1, "authentication failed").
fn refused_by_key<T>(result: Result<T, HostError>) {
    assert!(
        matches!(
            result,
            Err(HostError::Authentication {
                source: HostAuthError::Refused { explanation: 1 },
                ..
            })
        ),
        "{:?}",
        result.err()
    );
}

#[test]
fn a_host_given_keyring_keys_authenticates_and_save_config_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_path();
    let target = managed(dir.path(), &socket, true);
    let mut client = Client::open(&socket);
    let host_key = key_file(dir.path(), "host-c", &secret(5));
    let ctrl_key = key_file(dir.path(), "ctrl-c", &secret(6));
    for (name, path) in [("key0", &host_key), ("ckey0", &ctrl_key)] {
        let added = client.call("keyring_file_add_key", json!({"name": name, "path": path}));
        assert_eq!(added, json!(true));
    }
    assert_eq!(
        client.call("keyring_get_keys", json!({})),
        json!([
            {"name": "key0", "path": host_key, "removed": false, "probed": false},
            {"name": "ckey0", "path": ctrl_key, "removed": false, "probed": false},
        ])
    );
    // Before it is added, host C is refused as any host not on the list.
    assert!(Host::connect(
        target.address,
        NQN,
        host_options(HOST_C, Some(secret(5)), None)
    )
    .is_err());
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_C, "dhchap_key": "key0", "dhchap_ctrlr_key": "ckey0"}),
    );
    // Bidirectional: host C checks the controller's key too.
    let mut host = target.host_with(host_options(HOST_C, Some(secret(5)), Some(secret(6))));
    let mut queue = host
        .connect_io_queue(1, 8)
        .expect("I/O queue authenticates");
    write_read_compare(&mut queue, 32, 8, 5);
    refused_by_key(Host::connect(
        target.address,
        NQN,
        host_options(HOST_C, Some(secret(9)), None),
    ));
    // The controller's key checked by the host: a host expecting another gives up.
    let wrong_ctrl = Host::connect(
        target.address,
        NQN,
        host_options(HOST_C, Some(secret(5)), Some(secret(9))),
    );
    assert!(
        matches!(wrong_ctrl, Err(HostError::Authentication { .. })),
        "{:?}",
        wrong_ctrl.err()
    );
    // A name removed from the keyring is gone for new hosts; host C keeps its key.
    client.call("keyring_file_remove_key", json!({"name": "ckey0"}));
    assert_eq!(
        client.call("keyring_get_keys", json!({})),
        json!([{"name": "key0", "path": host_key, "removed": false, "probed": false}])
    );
    let (_, message) = client.error(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": "nqn.2014-08.org.nvmexpress:uuid:host-d",
               "dhchap_key": "key0", "dhchap_ctrlr_key": "ckey0"}),
    );
    assert!(
        message.starts_with("params.dhchap_ctrlr_key: no key ckey0 in the keyring; add it with keyring_file_add_key"),
        "{message}"
    );

    let file = socket.with_extension("toml");
    let saved = client.call("save_config", json!({"file": file}));
    let reread = Config::parse(saved.as_str().unwrap(), "saved.toml").expect("saved config loads");
    let key = reread.subsystems[0]
        .auth
        .key_of(HOST_C)
        .expect("host C keyed");
    assert_eq!(key.secret_file.display().to_string(), host_key);
    assert_eq!(
        key.ctrl_secret_file.as_ref().unwrap().display().to_string(),
        ctrl_key
    );
    drop(client);
    drop(queue);
    drop(host);
    drop(target);

    let restarted = RunningTarget::with_config(&fs::read_to_string(&file).unwrap());
    let mut host = restarted.host_with(host_options(HOST_C, Some(secret(5)), Some(secret(6))));
    write_read_compare(&mut host.connect_io_queue(1, 8).unwrap(), 40, 8, 6);
    refused_by_key(Host::connect(
        restarted.address,
        NQN,
        host_options(HOST_C, Some(secret(9)), None),
    ));
    // The keyring came back with the file ([[keyring]]): its names work as before.
    let mut client = Client::open(&socket);
    assert_eq!(
        client.call("keyring_get_keys", json!({})),
        json!([{"name": "key0", "path": host_key, "removed": false, "probed": false}])
    );
    client.call(
        "nvmf_subsystem_set_keys",
        json!({"nqn": NQN, "host": HOST_A, "dhchap_key": "key0"}),
    );
    let mut host_a = restarted.host_with(host_options(HOST_A, Some(secret(5)), None));
    write_read_compare(&mut host_a.connect_io_queue(1, 8).unwrap(), 48, 8, 7);
}

#[test]
fn a_removed_host_loses_its_key_and_a_required_subsystem_refuses_it_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_path();
    let target = managed(dir.path(), &socket, true);
    let mut client = Client::open(&socket);
    // Host A's key came from the file; removed, it goes with the host.
    client.call(
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_A}),
    );
    let (_, message) = client.error(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_A}),
    );
    assert!(
        message.contains(&format!(
            "subsystem {NQN} has require_authentication = true but host {HOST_A} has no key"
        )),
        "{message}"
    );
    // Nor may set_keys take host B's key away there.
    let (_, message) = client.error(
        "nvmf_subsystem_set_keys",
        json!({"nqn": NQN, "host": HOST_B}),
    );
    assert!(
        message.contains(&format!(
            "subsystem {NQN} has require_authentication = true but host {HOST_B} has no key"
        )),
        "{message}"
    );
    let mut host_b = target.host_with(host_options(HOST_B, Some(secret(3)), None));
    write_read_compare(&mut host_b.connect_io_queue(1, 8).unwrap(), 16, 8, 3);
    let path = key_file(dir.path(), "host-a-again", &secret(7));
    client.call("keyring_file_add_key", json!({"name": "a", "path": path}));
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_A, "dhchap_key": "a"}),
    );
    let mut host = target.host_with(host_options(HOST_A, Some(secret(7)), None));
    write_read_compare(&mut host.connect_io_queue(1, 8).unwrap(), 0, 8, 7);
    // Its old key no longer works.
    refused_by_key(Host::connect(
        target.address,
        NQN,
        host_options(HOST_A, Some(secret(1)), None),
    ));
}

#[test]
fn set_keys_re_keys_a_host_whose_connected_queues_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_path();
    let target = managed(dir.path(), &socket, false);
    let mut client = Client::open(&socket);
    let mut files = std::collections::HashMap::new();
    for (name, fill) in [("key0", 5), ("key1", 7), ("ckey1", 8)] {
        let path = key_file(dir.path(), name, &secret(fill));
        client.call("keyring_file_add_key", json!({"name": name, "path": path}));
        files.insert(name, path);
    }
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_C, "dhchap_key": "key0"}),
    );
    let mut host = target.host_with(host_options(HOST_C, Some(secret(5)), None));
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    let set = client.call(
        "nvmf_subsystem_set_keys",
        json!({"nqn": NQN, "host": HOST_C, "dhchap_key": "key1", "dhchap_ctrlr_key": "ckey1"}),
    );
    assert_eq!(set, json!(true));
    // Queues already authenticated go on.
    write_read_compare(&mut queue, 32, 8, 5);
    host.identify_controller().expect("admin commands go on");
    // The next queue of the same controller authenticates with the new key: the old one is
    // refused there, and for a new controller.
    refused_by_key(host.connect_io_queue(2, 8));
    refused_by_key(Host::connect(
        target.address,
        NQN,
        host_options(HOST_C, Some(secret(5)), None),
    ));
    // A re-authentication takes the new keys, the controller's included.
    let new_keys = |qid| {
        HostAuth::new(
            HOST_C,
            NQN,
            &secret(7),
            Some(&secret(8)),
            &HashId::ALL,
            &[DhGroupId::Null],
            qid,
        )
    };
    authenticate(host.admin_queue(), &mut new_keys(0)).expect("re-authenticated with key1");
    host.identify_controller()
        .expect("admin commands after re-authentication");
    let mut old_key = host_auth(HOST_C, &secret(5));
    assert!(authenticate(&mut queue, &mut old_key).is_err());
    let mut rekeyed = target.host_with(host_options(HOST_C, Some(secret(7)), Some(secret(8))));
    write_read_compare(&mut rekeyed.connect_io_queue(1, 8).unwrap(), 40, 8, 6);
    // save_config names the new key files.
    let saved = client.call(
        "save_config",
        json!({"file": socket.with_extension("toml")}),
    );
    let reread = Config::parse(saved.as_str().unwrap(), "saved.toml").expect("saved config loads");
    let key = reread.subsystems[0]
        .auth
        .key_of(HOST_C)
        .expect("host C keyed");
    assert_eq!(key.secret_file.display().to_string(), files["key1"]);
    assert_eq!(
        key.ctrl_secret_file.as_ref().unwrap().display().to_string(),
        files["ckey1"]
    );
    // Without keys the host connects without authenticating, as SPDK's set_keys clears them.
    client.call(
        "nvmf_subsystem_set_keys",
        json!({"nqn": NQN, "host": HOST_C}),
    );
    let mut keyless = target.host_with(host_options(HOST_C, None, None));
    write_read_compare(&mut keyless.connect_io_queue(1, 8).unwrap(), 48, 8, 7);
}

#[test]
fn bad_keys_and_key_names_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_path();
    let target = managed(dir.path(), &socket, false);
    let mut client = Client::open(&socket);
    let good = key_file(dir.path(), "good", &secret(5));
    let open = key_file(dir.path(), "open", &secret(5));
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    let garbage = dir.path().join("garbage");
    fs::write(&garbage, "not a key\n").unwrap();
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();
    let psk = TlsPsk::new(&[3; 32], Some(PskHash::Sha256)).unwrap();
    let tls = psk_file(dir.path(), "tls", &psk);
    client.call(
        "keyring_file_add_key",
        json!({"name": "good", "path": good}),
    );
    client.call("keyring_file_add_key", json!({"name": "tls", "path": tls}));

    let cases = [
        (
            "keyring_file_add_key",
            json!({"name": "good", "path": good}),
            "key good exists already; keyring_file_remove_key it first".to_owned(),
        ),
        (
            "keyring_file_add_key",
            json!({"name": "rel", "path": "relative/key"}),
            "params.path: relative/key is not an absolute path".to_owned(),
        ),
        (
            "keyring_file_add_key",
            json!({"name": "open", "path": open}),
            "params.path: ".to_owned(),
        ),
        (
            "keyring_file_add_key",
            json!({"name": "garbage", "path": garbage}),
            format!(
                "params.path: {} holds neither a DH-HMAC-CHAP secret",
                garbage.display()
            ),
        ),
        (
            "keyring_file_remove_key",
            json!({"name": "nothing"}),
            "no key nothing in the keyring".to_owned(),
        ),
        (
            "nvmf_subsystem_add_host",
            json!({"nqn": NQN, "host": HOST_C, "dhchap_key": "nothing"}),
            "params.dhchap_key: no key nothing in the keyring; add it with keyring_file_add_key"
                .to_owned(),
        ),
        (
            "nvmf_subsystem_add_host",
            json!({"nqn": NQN, "host": HOST_C, "dhchap_ctrlr_key": "good"}),
            "params.dhchap_ctrlr_key: needs a dhchap_key".to_owned(),
        ),
        (
            "nvmf_subsystem_add_host",
            json!({"nqn": NQN, "host": HOST_C, "dhchap_key": "tls"}),
            "params.dhchap_key: key tls is not a DH-HMAC-CHAP secret".to_owned(),
        ),
        (
            "nvmf_subsystem_add_host",
            json!({"nqn": NQN, "host": HOST_C, "psk": "good"}),
            "params.psk: key good is not a TLS PSK".to_owned(),
        ),
        (
            "nvmf_subsystem_set_keys",
            json!({"nqn": NQN, "host": HOST_C, "dhchap_key": "good"}),
            format!(
                "host {HOST_C} is not in the hosts of {NQN}; add it with nvmf_subsystem_add_host"
            ),
        ),
        (
            "nvmf_subsystem_set_keys",
            json!({"nqn": NQN, "host": HOST_A, "dhchap_key": "nothing"}),
            "params.dhchap_key: no key nothing in the keyring; add it with keyring_file_add_key"
                .to_owned(),
        ),
        (
            "nvmf_subsystem_set_keys",
            json!({"nqn": NQN, "host": HOST_A, "dhchap_ctrlr_key": "good"}),
            "params.dhchap_ctrlr_key: needs a dhchap_key".to_owned(),
        ),
        (
            "nvmf_subsystem_set_keys",
            json!({"nqn": "nqn.2026-12.io.vfnvme:none", "host": HOST_A}),
            "no subsystem nqn.2026-12.io.vfnvme:none; nvmf_get_subsystems lists them".to_owned(),
        ),
    ];
    for (method, params, expected) in cases {
        let (code, message) = client.error(method, params.clone());
        assert_eq!(code, -32602, "{method} {params}: {message}");
        assert!(
            message.starts_with(&expected),
            "{method} {params}: {message}"
        );
    }
    // The group-readable file's refusal says what is wrong with it.
    let (_, message) = client.error(
        "keyring_file_add_key",
        json!({"name": "open", "path": open}),
    );
    assert!(message.contains("chmod"), "{message}");
    // Nothing refused was added: host C is not admitted, the keyring has the two keys.
    let keys = client.call("keyring_get_keys", json!({}));
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert!(Host::connect(target.address, NQN, host_options(HOST_C, None, None)).is_err());
}

#[test]
fn a_host_given_a_keyring_psk_connects_over_tls_until_it_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_path();
    // No host has a PSK at start: TLS hosts may all come over the socket.
    let text = ConfigText::new(&format!("cores = 2\nrpc_socket = \"{}\"", socket.display()))
        .tls_listener("127.0.0.1:0")
        .listener("127.0.0.2:0")
        .subsystem(NQN, &format!("hosts = [\"{HOST_B}\"]"))
        .namespace(1, "ram_mib = 16")
        .text();
    let target = RunningTarget::with_config(&text);
    let (tls, plain) = (target.addresses[0], target.addresses[1]);
    let connect = |address, options: HostOptions| {
        Host::connect(address, NQN, options).and_then(|mut host| host.enable().map(|()| host))
    };
    let psk_c = || TlsPsk::new(&[0x77; 32], Some(PskHash::Sha256)).unwrap();
    // Host C's handshake with `psk` on the TLS listener fails.
    let handshake_fails = |psk| {
        matches!(
            connect(tls, tls_options(HOST_C, psk)),
            Err(HostError::Tls { .. })
        )
    };
    let path = psk_file(dir.path(), "host-c.psk", &psk_c());
    let long = psk_file(
        dir.path(),
        "sha384.psk",
        &TlsPsk::new(&[0x78; 48], Some(PskHash::Sha384)).unwrap(),
    );
    let mut client = Client::open(&socket);
    client.call(
        "keyring_file_add_key",
        json!({"name": "psk-c", "path": path}),
    );
    client.call(
        "keyring_file_add_key",
        json!({"name": "long", "path": long}),
    );
    let (_, message) = client.error(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_C, "psk": "long"}),
    );
    assert!(
        message.starts_with("params.psk: ") && message.contains("TLS_AES_256_GCM_SHA384"),
        "{message}"
    );
    assert!(handshake_fails(psk_c()));

    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_C, "psk": "psk-c"}),
    );
    let mut host = connect(tls, tls_options(HOST_C, psk_c())).expect("admin queue over TLS");
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue over TLS");
    write_read_compare(&mut queue, 0, 8, 11);
    write_read_compare(&mut queue, 64, 256, 12);
    let wrong = TlsPsk::new(&[0x79; 32], Some(PskHash::Sha256)).unwrap();
    assert!(handshake_fails(wrong));
    // A host with a PSK is refused on the plain listener: Connect Invalid Host (1h, 84h).
    let without_tls = HostOptions {
        host_nqn: HOST_C.into(),
        ..options()
    };
    let status = failed_status(connect(plain, without_tls).map(drop));
    assert_eq!((status.sct(), status.sc()), (1, 0x84));
    // save_config names the PSK's file.
    let saved = client.call("save_config", json!({}));
    let reread = Config::parse(saved.as_str().unwrap(), "saved.toml").expect("saved config loads");
    let saved_psk = reread.subsystems[0]
        .tls_psks
        .iter()
        .find(|psk| psk.host_nqn == HOST_C)
        .expect("host C's PSK saved");
    assert_eq!(saved_psk.file.display().to_string(), path);

    // Removed, its PSK no longer completes a handshake; added again, it does.
    client.call(
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_C}),
    );
    assert!(handshake_fails(psk_c()));
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_C, "psk": "psk-c"}),
    );
    let mut again = connect(tls, tls_options(HOST_C, psk_c())).expect("host C again");
    write_read_compare(&mut again.connect_io_queue(1, 8).unwrap(), 8, 8, 13);
}
