//! The management socket of a running target: JSON-RPC framing and errors, two clients at
//! once, the socket's mode, and every method's effect on hosts (vfnvme-host) connected at the
//! time: a host removed is disconnected while another keeps its I/O, a deleted subsystem's
//! hosts see EOF and their reconnect is refused as to an unknown subsystem, a discovery
//! controller gets the Discovery Log Page Change event, and `save_config` starts the same
//! target again.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vfnvme_host::{Host, HostOptions};
use vfnvme_spec::fabrics::{connect_status, DISCOVERY_NQN};
use vfnvme_target::config::Config;
use vfnvme_target::tgt::{Target, TargetError};
use vfnvme_test_support::poll_until;

mod common;

use common::events::{arm_event, enable_events, event};
use common::rpc::{socket_path, stable_view, Client};
use common::{
    failed_status, loopback_config, options, wait_for_eof, write_read_compare, RawClient,
    RunningTarget, NQN, PATIENCE,
};

const HOST_A: &str = "nqn.2014-08.org.nvmexpress:uuid:rpc-host-a";
const HOST_B: &str = "nqn.2014-08.org.nvmexpress:uuid:rpc-host-b";
const CREATED: &str = "nqn.2026-11.io.vfnvme:created";

/// A target with subsystem `NQN` (a RAM namespace) admitting `hosts`, managed at `socket`.
fn managed(socket: &Path, hosts: &str) -> String {
    loopback_config(&format!("cores = 2\nrpc_socket = \"{}\"", socket.display()))
        .subsystem(NQN, hosts)
        .namespace(1, "ram_mib = 16")
        .text()
}

fn host_options(host_nqn: &str) -> HostOptions {
    HostOptions {
        host_nqn: host_nqn.into(),
        ..options()
    }
}

/// Subsystem NQNs `nvmf_get_subsystems` lists.
fn listed(client: &mut Client) -> Vec<String> {
    client
        .call("nvmf_get_subsystems", json!({}))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["nqn"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn errors_name_the_method_the_field_or_the_problem() {
    let socket = socket_path();
    let _target = RunningTarget::with_config(&managed(&socket, "allow_any_host = true"));
    let mut client = Client::open(&socket);
    let methods = client.call("rpc_get_methods", json!({}));
    for method in [
        "rpc_get_methods",
        "nvmf_get_subsystems",
        "nvmf_create_subsystem",
        "nvmf_delete_subsystem",
        "nvmf_subsystem_add_host",
        "nvmf_subsystem_remove_host",
        "nvmf_subsystem_allow_any_host",
        "nvmf_subsystem_set_keys",
        "nvmf_subsystem_get_controllers",
        "nvmf_subsystem_add_listener",
        "nvmf_subsystem_remove_listener",
        "save_config",
    ] {
        assert!(
            methods.as_array().unwrap().contains(&json!(method)),
            "{methods}"
        );
    }

    let (code, message) = client.error("nvmf_bogus", json!({}));
    assert_eq!(code, -32601);
    assert!(message.contains("nvmf_bogus"), "{message}");
    let (code, message) = client.error("nvmf_delete_subsystem", json!({}));
    assert_eq!(
        (code, message.as_str()),
        (-32602, "params: missing field `nqn`")
    );
    let (code, message) = client.error("nvmf_subsystem_add_host", json!({"nqn": NQN, "host": 7}));
    assert_eq!(code, -32602);
    assert!(
        message.starts_with("params.host: invalid type"),
        "{message}"
    );
    let (_, message) = client.error("nvmf_create_subsystem", json!({"nqn": CREATED, "bogus": 1}));
    assert!(message.contains("unknown field `bogus`"), "{message}");
    let (code, message) = client.error("nvmf_delete_subsystem", json!({"nqn": "nqn.absent"}));
    assert_eq!(code, -32602);
    assert!(message.contains("no subsystem nqn.absent"), "{message}");
    // Changes are checked as the configuration file is, with its messages.
    let (code, message) = client.error("nvmf_create_subsystem", json!({"nqn": "not-an-nqn"}));
    assert_eq!(code, -32602);
    assert!(message.contains("is not an NQN"), "{message}");
    let (_, message) = client.error("nvmf_create_subsystem", json!({"nqn": NQN}));
    assert!(message.contains("exists already"), "{message}");
    let (_, message) = client.error(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_A}),
    );
    assert!(
        message.contains("both allow_any_host = true and a hosts list"),
        "{message}"
    );
    let (_, message) = client.error(
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_A}),
    );
    assert!(message.contains("is not in the hosts of"), "{message}");

    // Not a request object, no "jsonrpc", a notification (no answer), then bad JSON: a parse
    // error, after which the connection closes.
    client.send("[1]\n{\"id\": 5, \"method\": \"rpc_get_methods\"}\n");
    assert_eq!(client.answer().unwrap()["error"]["code"], -32600);
    let answer = client.answer().unwrap();
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (json!(5), json!(-32600))
    );
    client.send("{\"jsonrpc\": \"2.0\", \"method\": \"rpc_get_methods\"}");
    client.send("{\"jsonrpc\": \"2.0\", \"id\": 6, \"method\": \"rpc_get_methods\"}");
    assert_eq!(
        client.answer().unwrap()["id"],
        6,
        "the notification got no answer"
    );
    client.send("{\"jsonrpc\": nope}\n");
    let answer = client.answer().unwrap();
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    assert!(client.answer().is_none(), "closed after a parse error");
}

#[test]
fn back_to_back_requests_and_two_clients_at_once() {
    let socket = socket_path();
    let _target = RunningTarget::with_config(&managed(&socket, "allow_any_host = true"));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner may connect");

    // As SPDK's rpc.py: objects without newlines, here two in one write and one split.
    let mut first = Client::open(&socket);
    first.send(
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rpc_get_methods\"}\
         {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nvmf_get_subsystems\"}{\"jsonrpc\":\"2.0\",",
    );
    assert_eq!(first.answer().unwrap()["id"], 1);
    let second_answer = first.answer().unwrap();
    assert_eq!(second_answer["id"], 2);
    assert_eq!(second_answer["result"][1]["nqn"], NQN);

    // The first client's third request is half sent; a second client is served meanwhile.
    let mut second = Client::open(&socket);
    assert_eq!(
        listed(&mut second),
        vec![DISCOVERY_NQN.to_owned(), NQN.to_owned()]
    );
    first.send("\"id\":3,\"method\":\"rpc_get_methods\"}");
    assert_eq!(first.answer().unwrap()["id"], 3);

    // A second target on the same socket is refused while this one answers.
    let config = Config::parse(&managed(&socket, "allow_any_host = true"), "t.toml").unwrap();
    let refused = Target::start(config)
        .err()
        .expect("a live socket is not taken over");
    assert!(matches!(refused, TargetError::Management(_)), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("another vfnvme serve answers there"),
        "{refused}"
    );
    drop(_target);
    assert!(!socket.exists(), "the socket file goes with the target");
}

#[test]
fn a_removed_host_is_disconnected_while_another_keeps_its_io() {
    let socket = socket_path();
    let hosts = format!("hosts = [\"{HOST_A}\", \"{HOST_B}\"]");
    let target = RunningTarget::with_config(&managed(&socket, &hosts));
    let mut removed = target.host_with(host_options(HOST_A));
    let mut removed_queue = removed.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut removed_queue, 0, 8, 1);

    let address = target.address;
    let running = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicU64::new(0));
    let other = {
        let (running, served) = (Arc::clone(&running), Arc::clone(&served));
        std::thread::spawn(move || {
            let mut host = Host::connect(address, NQN, host_options(HOST_B)).unwrap();
            host.enable().unwrap();
            let mut queue = host.connect_io_queue(1, 8).unwrap();
            let mut round = 0;
            while running.load(Ordering::Relaxed) {
                write_read_compare(&mut queue, 64 + round % 64 * 8, 8, round);
                served.fetch_add(1, Ordering::Relaxed);
                round += 1;
            }
        })
    };
    let busy = |at_least: u64| {
        poll_until(
            PATIENCE,
            Duration::from_millis(1),
            || (served.load(Ordering::Relaxed) >= at_least).then_some(()),
            || format!("host B served {} rounds", served.load(Ordering::Relaxed)),
        )
    };
    busy(20);

    let mut client = Client::open(&socket);
    let controllers = client.call("nvmf_subsystem_get_controllers", json!({"nqn": NQN}));
    assert_eq!(controllers.as_array().unwrap().len(), 2, "{controllers}");
    let done = client.call(
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_A}),
    );
    assert_eq!(done, json!(true));
    // The answer comes once the controller is gone: both its queues were closed.
    for socket in [removed.admin_queue().socket(), removed_queue.socket()] {
        wait_for_eof(socket, PATIENCE).expect("host A's queues are closed");
    }
    let controllers = client.call("nvmf_subsystem_get_controllers", json!({"nqn": NQN}));
    assert_eq!(controllers[0]["hostnqn"], HOST_B, "{controllers}");
    let at_removal = served.load(Ordering::Relaxed);
    busy(at_removal + 20);
    running.store(false, Ordering::Relaxed);
    other.join().expect("host B saw no error");

    let status = failed_status(Host::connect(address, NQN, host_options(HOST_A)).map(|_| ()));
    assert_eq!(
        (status.sct(), status.sc()),
        (1, connect_status::INVALID_HOST),
        "host A is refused: {status}"
    );
    // Added again, it connects again.
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_A}),
    );
    let mut back = target.host_with(host_options(HOST_A));
    write_read_compare(&mut back.connect_io_queue(1, 8).unwrap(), 0, 8, 2);
    // Removing host B leaves host A connected.
    client.call(
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_B}),
    );
    let status = failed_status(Host::connect(address, NQN, host_options(HOST_B)).map(|_| ()));
    assert_eq!(status.sc(), connect_status::INVALID_HOST);
    back.keep_alive().expect("host A stays connected");
}

#[test]
fn a_deleted_subsystem_closes_its_hosts_then_is_unknown() {
    let socket = socket_path();
    let target = RunningTarget::with_config(&managed(&socket, "allow_any_host = true"));
    let mut host = target.host();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut queue, 0, 8, 3);
    let mut discovery = Host::connect(target.address, DISCOVERY_NQN, options()).unwrap();
    discovery.enable().unwrap();

    let mut client = Client::open(&socket);
    assert_eq!(
        client.call("nvmf_delete_subsystem", json!({"nqn": NQN})),
        json!(true)
    );
    for socket in [host.admin_queue().socket(), queue.socket()] {
        wait_for_eof(socket, PATIENCE).expect("the host's queues are closed");
    }
    assert_eq!(listed(&mut client), vec![DISCOVERY_NQN.to_owned()]);
    // A new Connect is refused as one to an unknown subsystem: Connect Invalid Parameters,
    // attribute of the Connect data (IATTR 1), at the SUBNQN (offset 256).
    let mut raw = RawClient::established(target.address, false, false);
    let connect = raw.connect_bytes(NQN, 0, 0xffff, 32);
    raw.send(&connect);
    let refused = raw.expect_response();
    assert_eq!(refused.status().sc(), connect_status::INVALID_PARAMETERS);
    assert_eq!(refused.result, 0x0001_0100);
    let log = discovery.log_page(0x70, 2 * 1024).unwrap();
    assert_eq!(
        u64::from_le_bytes(log[8..16].try_into().unwrap()),
        1,
        "itself only"
    );

    // Created again, it has no namespace and admits no one until told.
    client.call("nvmf_create_subsystem", json!({"nqn": NQN}));
    let status = failed_status(Host::connect(target.address, NQN, options()).map(|_| ()));
    assert_eq!(status.sc(), connect_status::INVALID_HOST);
    client.call(
        "nvmf_subsystem_allow_any_host",
        json!({"nqn": NQN, "allow_any_host": true}),
    );
    let mut again = target.host();
    let identify = again.identify_controller().unwrap();
    assert_eq!(identify.nn.get(), 0, "no namespace");
}

fn generation(log: &[u8]) -> u64 {
    u64::from_le_bytes(log[0..8].try_into().unwrap())
}

#[test]
fn discovery_controllers_hear_of_created_subsystems_and_hosts() {
    let socket = socket_path();
    let target = RunningTarget::with_config(&managed(&socket, "allow_any_host = true"));
    let mut discovery = Host::connect(
        target.address,
        DISCOVERY_NQN,
        HostOptions {
            keep_alive_timeout_ms: 30_000,
            ..host_options(HOST_A)
        },
    )
    .unwrap();
    discovery.enable().unwrap();
    let identify = discovery.identify_controller().unwrap();
    assert_eq!(
        identify.oaes.get(),
        1 << 31,
        "Discovery Log Page Change notices"
    );
    let before = discovery.log_page(0x70, 1024).unwrap();
    enable_events(&mut discovery, 1 << 31);
    let aer = arm_event(&mut discovery);

    let mut client = Client::open(&socket);
    client.call(
        "nvmf_create_subsystem",
        json!({"nqn": CREATED, "allow_any_host": true}),
    );
    // Notice (type 2), Discovery Log Page Change (F0h), log page 70h.
    assert_eq!(event(&mut discovery, aer), 0x0070_f002);
    let after = discovery.log_page(0x70, 4 * 1024).unwrap();
    assert_eq!(generation(&after), generation(&before) + 1);
    assert_eq!(u64::from_le_bytes(after[8..16].try_into().unwrap()), 3);
    let last = &after[3 * 1024..4 * 1024];
    assert_eq!(&last[256..256 + CREATED.len()], CREATED.as_bytes());

    // Read since: the next change (a host no longer admitted) raises the event again, and the
    // log no longer lists the subsystem for that host.
    enable_events(&mut discovery, 1 << 31);
    let aer = arm_event(&mut discovery);
    client.call(
        "nvmf_subsystem_allow_any_host",
        json!({"nqn": CREATED, "allow_any_host": false}),
    );
    assert_eq!(event(&mut discovery, aer), 0x0070_f002);
    let closed = discovery.log_page(0x70, 1024).unwrap();
    assert_eq!(generation(&closed), generation(&before) + 2);
    assert_eq!(u64::from_le_bytes(closed[8..16].try_into().unwrap()), 2);
    enable_events(&mut discovery, 1 << 31);
    let aer = arm_event(&mut discovery);
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": CREATED, "host": HOST_A}),
    );
    assert_eq!(event(&mut discovery, aer), 0x0070_f002);
    let listed_again = discovery.log_page(0x70, 1024).unwrap();
    assert_eq!(
        u64::from_le_bytes(listed_again[8..16].try_into().unwrap()),
        3
    );
}

#[test]
fn save_config_starts_the_same_target_again() {
    let socket = socket_path();
    let text = managed(&socket, &format!("hosts = [\"{HOST_A}\"]"));
    let target = RunningTarget::with_config(&text);
    let mut client = Client::open(&socket);
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": NQN, "host": HOST_B}),
    );
    client.call(
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": HOST_A}),
    );
    client.call(
        "nvmf_create_subsystem",
        json!({"nqn": CREATED, "serial_number": "CREATED-1", "model_number": "made live"}),
    );
    client.call(
        "nvmf_subsystem_add_host",
        json!({"nqn": CREATED, "host": HOST_A}),
    );
    let running = stable_view(&mut client);
    let file = socket.with_extension("toml");
    let saved = client.call("save_config", json!({"file": file}));
    assert_eq!(
        saved.as_str().unwrap(),
        std::fs::read_to_string(&file).unwrap()
    );
    assert_eq!(running[2]["serial_number"], "CREATED-1");
    drop(client);
    drop(target);

    let restarted = RunningTarget::with_config(&std::fs::read_to_string(&file).unwrap());
    let mut client = Client::open(&socket);
    assert_eq!(
        stable_view(&mut client),
        running,
        "the same subsystems, hosts, listeners"
    );
    // And hosts see the same: B is admitted, A is not.
    let mut host = restarted.host_with(host_options(HOST_B));
    write_read_compare(&mut host.connect_io_queue(1, 8).unwrap(), 0, 8, 4);
    let status =
        failed_status(Host::connect(restarted.address, NQN, host_options(HOST_A)).map(|_| ()));
    assert_eq!(status.sc(), connect_status::INVALID_HOST);
}
