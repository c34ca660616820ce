//! Listeners over the management socket: a subsystem added to and removed from a configured
//! listener (its hosts there disconnected, those elsewhere going on); a listener opened at a
//! new address (port 0: the system's choice, listed), served, discovered, closed with its last
//! subsystem (its connections, discovery ones included, ended; new ones refused by the
//! kernel) and opened again; a discovery-only listener added and removed by the discovery
//! NQN; the errors of each.

mod common;

use std::net::{SocketAddr, TcpStream};

use common::rpc::{socket_path, Client};
use common::{options, wait_for_eof, write_read_compare, RawClient, RunningTarget, NQN, PATIENCE};
use serde_json::{json, Value};
use vfnvme_host::Host;
use vfnvme_spec::fabrics::DISCOVERY_NQN;
use vfnvme_test_support::ConfigText;

fn listen_address(address: SocketAddr) -> Value {
    json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": address.ip().to_string(),
           "trsvcid": address.port().to_string()})
}

/// A managed target at `socket` with `listeners` (addresses) and subsystem `NQN` on the first.
fn target(socket: &std::path::Path, listeners: &[&str]) -> RunningTarget {
    let mut text = ConfigText::new(&format!("cores = 2\nrpc_socket = \"{}\"", socket.display()));
    for listener in listeners {
        text = text.listener(listener);
    }
    let text = text
        .subsystem(
            NQN,
            &format!("allow_any_host = true\nlisteners = [\"{}\"]", listeners[0]),
        )
        .namespace(1, "ram_mib = 16")
        .text();
    RunningTarget::with_config(&text)
}

/// The Connect status DW0 a raw admin Connect to `NQN` at `address` gets.
fn connect_result(address: SocketAddr) -> u32 {
    let mut raw = RawClient::established(address, false, false);
    let connect = raw.connect_bytes(NQN, 0, 0xffff, 32);
    raw.send(&connect);
    raw.expect_response().result
}

/// Where `nqn` is listed as reachable (`nvmf_get_subsystems`).
fn listed_addresses(client: &mut Client, nqn: &str) -> Vec<SocketAddr> {
    client.call("nvmf_get_subsystems", json!({"nqn": nqn}))[0]["listen_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["traddr"].as_str().unwrap(),
                a["trsvcid"].as_str().unwrap()
            )
            .parse()
            .unwrap()
        })
        .collect()
}

/// A discovery controller at `address` and the NQNs with port IDs its log lists.
fn discover(address: SocketAddr) -> (Host, Vec<(String, u16)>) {
    let mut discovery = Host::connect(address, DISCOVERY_NQN, options()).unwrap();
    discovery.enable().unwrap();
    let log = discovery.log_page(0x70, 8 * 1024).unwrap();
    let records = u64::from_le_bytes(log[8..16].try_into().unwrap()) as usize;
    let entries = log[1024..]
        .chunks(1024)
        .take(records)
        .map(|entry| {
            let nqn = String::from_utf8_lossy(&entry[256..512])
                .trim_end_matches('\0')
                .to_owned();
            (nqn, u16::from_le_bytes([entry[4], entry[5]]))
        })
        .collect();
    (discovery, entries)
}

#[test]
fn listeners_are_added_and_removed_and_hosts_on_a_removed_one_disconnected() {
    let socket = socket_path();
    let target = target(&socket, &["127.0.0.1:0", "127.0.0.2:0"]);
    let [first, second] = [target.addresses[0], target.addresses[1]];
    // Connect Invalid Parameters at the SUBNQN: not reachable on the second listener.
    assert_eq!(
        connect_result(second),
        0x0001_0100,
        "not on the second listener"
    );

    let mut client = Client::open(&socket);
    let params = json!({"nqn": NQN, "listen_address": listen_address(second)});
    assert_eq!(
        client.call("nvmf_subsystem_add_listener", params.clone()),
        json!(true)
    );
    assert_eq!(listed_addresses(&mut client, NQN), [first, second]);
    let mut staying = Host::connect(first, NQN, options()).unwrap();
    staying.enable().unwrap();
    let mut staying_queue = staying.connect_io_queue(1, 8).unwrap();
    let mut leaving = Host::connect(second, NQN, options()).unwrap();
    leaving.enable().unwrap();
    let mut leaving_queue = leaving.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut leaving_queue, 0, 8, 5);
    let (_, message) = client.error("nvmf_subsystem_add_listener", params.clone());
    assert!(message.contains("already"), "{message}");

    assert_eq!(
        client.call("nvmf_subsystem_remove_listener", params),
        json!(true)
    );
    for socket in [leaving.admin_queue().socket(), leaving_queue.socket()] {
        wait_for_eof(socket, PATIENCE).expect("the controller that came through it is closed");
    }
    write_read_compare(&mut staying_queue, 8, 8, 6);
    // No subsystem is on the second listener any more: it is closed.
    let refused = TcpStream::connect_timeout(&second, PATIENCE).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let last = json!({"nqn": NQN, "listen_address": listen_address(first)});
    let (_, message) = client.error("nvmf_subsystem_remove_listener", last);
    assert!(message.contains("no host could reach it"), "{message}");
    let (code, message) = client.error(
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"traddr": "127.0.0.1", "trsvcid": 1}}),
    );
    assert_eq!(code, -32602);
    assert!(
        message.starts_with("params.listen_address.trsvcid: invalid type"),
        "{message}"
    );
}

#[test]
fn a_new_address_opens_a_listener_that_closes_with_its_last_subsystem() {
    let socket = socket_path();
    let target = target(&socket, &["127.0.0.1:0"]);
    let first = target.addresses[0];
    let mut client = Client::open(&socket);
    let new = json!({"nqn": NQN, "listen_address":
        {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.3", "trsvcid": "0"}});
    assert_eq!(client.call("nvmf_subsystem_add_listener", new), json!(true));
    let listed = listed_addresses(&mut client, NQN);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], first);
    let opened = listed[1];
    assert_eq!(opened.ip().to_string(), "127.0.0.3");
    assert_ne!(opened.port(), 0, "the bound port is listed");

    // Served and discovered there, with port ID 2 (its index plus one).
    let mut host = Host::connect(opened, NQN, options()).unwrap();
    host.enable().unwrap();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut queue, 16, 8, 7);
    let (mut discovery, entries) = discover(opened);
    assert_eq!(
        entries,
        [
            (DISCOVERY_NQN.to_owned(), 2),
            (NQN.to_owned(), 1),
            (NQN.to_owned(), 2)
        ]
    );
    let saved = client.call("save_config", json!({}));
    assert!(
        saved.as_str().unwrap().contains(&opened.to_string()),
        "{saved}"
    );

    // Its last subsystem leaves: every connection through it ends, discovery's too, and the
    // kernel refuses new ones; the file no longer names it.
    let params = json!({"nqn": NQN, "listen_address": listen_address(opened)});
    assert_eq!(
        client.call("nvmf_subsystem_remove_listener", params.clone()),
        json!(true)
    );
    for socket in [
        host.admin_queue().socket(),
        queue.socket(),
        discovery.admin_queue().socket(),
    ] {
        wait_for_eof(socket, PATIENCE).expect("connections through the closed listener end");
    }
    let refused = TcpStream::connect_timeout(&opened, PATIENCE).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(listed_addresses(&mut client, NQN), [first]);
    let saved = client.call("save_config", json!({}));
    assert!(!saved.as_str().unwrap().contains("127.0.0.3"), "{saved}");
    let (_, message) = client.error("nvmf_subsystem_remove_listener", params);
    assert!(message.contains("does not listen on"), "{message}");

    // Opened again at the same address: a new listener (port ID 3), serving at once.
    let again = json!({"nqn": NQN, "listen_address": listen_address(opened)});
    assert_eq!(
        client.call("nvmf_subsystem_add_listener", again),
        json!(true)
    );
    let mut host = Host::connect(opened, NQN, options()).unwrap();
    host.enable().unwrap();
    write_read_compare(&mut host.connect_io_queue(1, 8).unwrap(), 24, 8, 8);
    let (_, entries) = discover(first);
    assert_eq!(entries[2], (NQN.to_owned(), 3));
}

#[test]
fn a_discovery_listener_is_added_and_removed_by_the_discovery_nqn() {
    let socket = socket_path();
    let target = target(&socket, &["127.0.0.1:0"]);
    let mut client = Client::open(&socket);
    let add = json!({"nqn": DISCOVERY_NQN, "listen_address":
        {"traddr": "127.0.0.4", "trsvcid": "0"}});
    assert_eq!(client.call("nvmf_subsystem_add_listener", add), json!(true));
    let discovery_addresses = listed_addresses(&mut client, DISCOVERY_NQN);
    assert_eq!(discovery_addresses.len(), 2);
    let port = discovery_addresses[1];
    // Discovery answers there and lists the subsystem on its own listener only.
    let (mut discovery, entries) = discover(port);
    assert_eq!(
        entries,
        [(DISCOVERY_NQN.to_owned(), 2), (NQN.to_owned(), 1)]
    );
    assert_eq!(
        connect_result(port),
        0x0001_0100,
        "NQN is not reachable there"
    );
    let (_, message) = client.error(
        "nvmf_subsystem_add_listener",
        json!({"nqn": DISCOVERY_NQN, "listen_address": listen_address(target.addresses[0])}),
    );
    assert!(message.contains("already"), "{message}");
    let (_, message) = client.error(
        "nvmf_subsystem_remove_listener",
        json!({"nqn": DISCOVERY_NQN, "listen_address": listen_address(target.addresses[0])}),
    );
    assert!(message.contains("on every listener"), "{message}");

    let remove = json!({"nqn": DISCOVERY_NQN, "listen_address": listen_address(port)});
    assert_eq!(
        client.call("nvmf_subsystem_remove_listener", remove),
        json!(true)
    );
    wait_for_eof(discovery.admin_queue().socket(), PATIENCE)
        .expect("its discovery controller ends");
    let refused = TcpStream::connect_timeout(&port, PATIENCE).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn listener_errors_name_the_problem() {
    let socket = socket_path();
    let _target = target(&socket, &["127.0.0.1:0"]);
    let mut client = Client::open(&socket);
    for (listen_address, expected) in [
        (
            json!({"traddr": "192.0.2.1", "trsvcid": "4420"}),
            "cannot listen on 192.0.2.1:4420",
        ),
        (
            json!({"traddr": "target.example", "trsvcid": "4420"}),
            "params.listen_address.traddr: target.example is not an IP address",
        ),
        (
            json!({"traddr": "127.0.0.1", "trsvcid": "port"}),
            "params.listen_address.trsvcid: port is not a port number",
        ),
        (
            json!({"traddr": "127.0.0.1", "trsvcid": "4420", "adrfam": "IPv6"}),
            "params.listen_address.adrfam: IPv6 does not match traddr 127.0.0.1",
        ),
        (
            json!({"trtype": "RDMA", "traddr": "127.0.0.1", "trsvcid": "4420"}),
            "params.listen_address.trtype: RDMA is not served; vfnvme speaks TCP",
        ),
    ] {
        let (code, message) = client.error(
            "nvmf_subsystem_add_listener",
            json!({"nqn": NQN, "listen_address": listen_address}),
        );
        assert_eq!(code, -32602);
        assert!(message.starts_with(expected), "{message}");
    }
    // Nothing was opened by the refusals.
    assert_eq!(listed_addresses(&mut client, DISCOVERY_NQN).len(), 1);
}
