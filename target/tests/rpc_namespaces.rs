//! `nvmf_subsystem_add_ns` and `nvmf_subsystem_remove_ns` on a running target, seen by hosts
//! (vfnvme-host) connected before the change: the errors that name the problem, the Namespace
//! Attribute Changed event and the Changed Namespace List, data written and read back on an
//! added RAM and simulated namespace through an I/O queue connected before it existed, Invalid
//! Namespace (SCT 0, SC 0Bh, DNR) once it is removed, the drive released, a writer on
//! namespace 1 that never sees a failed or wrong command across many cycles, `pci` namespaces
//! opened by the opener the start uses (simulated controllers behind PCI addresses) and
//! released with their last namespace, and `save_config` starting the same target again with
//! the namespaces added.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vfnvme_driver::sim::{SimConfig, SimController, SimNamespace};
use vfnvme_driver::{Controller, ControllerOptions};
use vfnvme_host::{Host, HostOptions, HostQueue};
use vfnvme_spec::status::generic;
use vfnvme_spec::{admin_opcode, nvm_opcode, Command};
use vfnvme_target::backend::Drive;
use vfnvme_test_support::poll_until;

mod common;

use common::events::{arm_event, enable_events, event};
use common::rpc::{socket_path, stable_view, Client};
use common::{failed_status, loopback_config, options, pattern, RunningTarget, NQN, PATIENCE};

const CREATED: &str = "nqn.2026-11.io.vfnvme:created";

/// A target with subsystem `NQN` (RAM namespace 1), open to every host, managed at `socket`.
fn managed(socket: &Path) -> String {
    loopback_config(&format!("cores = 2\nrpc_socket = \"{}\"", socket.display()))
        .subsystem(NQN, "allow_any_host = true")
        .namespace(1, "ram_mib = 16")
        .text()
}

/// Writes 8 blocks of `block` bytes at `lba` of namespace `nsid` and reads them back.
fn write_read(queue: &mut HostQueue, nsid: u32, block: usize, lba: u64, seed: u64) {
    let data = pattern(8 * block, seed);
    queue
        .execute(
            Command::nvm_rw(nvm_opcode::WRITE, nsid, lba, 8),
            &data,
            0,
            "Write",
        )
        .expect("write");
    let (_, back) = queue
        .execute(
            Command::nvm_rw(nvm_opcode::READ, nsid, lba, 8),
            &[],
            data.len(),
            "Read",
        )
        .expect("read");
    assert_eq!(back, data, "namespace {nsid}: read back differs");
}

/// A Read of namespace `nsid` fails with Invalid Namespace or Format (SCT 0, SC 0Bh), DNR.
fn assert_invalid_namespace(queue: &mut HostQueue, nsid: u32) {
    let read = Command::nvm_rw(nvm_opcode::READ, nsid, 0, 1);
    let status = failed_status(queue.execute(read, &[], 512, "Read"));
    assert_eq!(
        (status.sct(), status.sc(), status.dnr()),
        (0, generic::INVALID_NAMESPACE_OR_FORMAT, true),
        "namespace {nsid}: {status}"
    );
}

/// A host of `NQN` that enabled Namespace Attribute Notices (AEC bit 8).
fn watching_host(target: &RunningTarget) -> Host {
    let mut host = Host::connect(
        target.address,
        NQN,
        HostOptions {
            keep_alive_timeout_ms: 30_000,
            ..options()
        },
    )
    .unwrap();
    host.enable().unwrap();
    enable_events(&mut host, 1 << 8);
    host
}

/// The Changed Namespace List (log 04h): the NSIDs before the first zero.
fn changed_namespaces(host: &mut Host) -> Vec<u32> {
    let log = host.log_page(0x04, 4096).unwrap();
    log.chunks(4)
        .map(|id| u32::from_le_bytes(id.try_into().unwrap()))
        .take_while(|&nsid| nsid != 0)
        .collect()
}

/// The active NSIDs (Identify CNS 02h).
fn active_namespaces(host: &mut Host) -> Vec<u32> {
    let command = Command {
        cdw10: 2,
        ..Command::new(admin_opcode::IDENTIFY, 0)
    };
    let (_, list) = host
        .admin_queue()
        .execute(command, &[], 4096, "Identify")
        .unwrap();
    list.chunks(4)
        .map(|id| u32::from_le_bytes(id.try_into().unwrap()))
        .take_while(|&nsid| nsid != 0)
        .collect()
}

/// The NSIDs `nvmf_get_subsystems` lists for subsystem `nqn`.
fn listed_nsids(client: &mut Client, nqn: &str) -> Vec<u64> {
    let listed = client.call("nvmf_get_subsystems", json!({ "nqn": nqn }));
    listed[0]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|namespace| namespace["nsid"].as_u64().unwrap())
        .collect()
}

#[test]
fn errors_name_the_problem() {
    let socket = socket_path();
    let target = RunningTarget::with_config(&managed(&socket));
    let mut client = Client::open(&socket);
    let methods = client.call("rpc_get_methods", json!({}));
    for method in ["nvmf_subsystem_add_ns", "nvmf_subsystem_remove_ns"] {
        assert!(
            methods.as_array().unwrap().contains(&json!(method)),
            "{methods}"
        );
    }
    let add = |client: &mut Client, namespace: Value| {
        client.error(
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": namespace}),
        )
    };
    let expect = |(code, message): (i64, String), part: &str| {
        assert_eq!(code, -32602, "{message}");
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    };
    expect(
        client.error(
            "nvmf_subsystem_add_ns",
            json!({"nqn": "nqn.absent", "namespace": {"ram_mib": 1}}),
        ),
        "no subsystem nqn.absent",
    );
    expect(
        add(&mut client, json!({"nsid": 1, "ram_mib": 1})),
        "namespace 1 of subsystem nqn.2026-11.io.vfnvme:ram0 exists already",
    );
    for nsid in [0u64, 0xffff_ffff] {
        expect(
            add(&mut client, json!({"nsid": nsid, "ram_mib": 1})),
            &format!("nsid = {nsid} is out of range; give 1 to 4294967294"),
        );
    }
    // The rules of `[[subsystem.namespace]]`, with its messages.
    expect(
        add(&mut client, json!({"nsid": 2})),
        "namespace 2 has no backing",
    );
    expect(
        add(&mut client, json!({"ram_mib": 1, "sim_mib": 1})),
        "sim_mib stands alone",
    );
    expect(
        add(&mut client, json!({"ram_mib": 1, "block_size": 1000})),
        "block_size",
    );
    expect(
        add(&mut client, json!({"pci": "01:00"})),
        "is not a PCI address",
    );
    expect(
        add(&mut client, json!({"bdev_name": "ram:x:1"})),
        "params.namespace.bdev_name: \"ram:x:1\" is not a drive namespace",
    );
    expect(
        add(&mut client, json!({"ram_mib": 1, "uuid": "x"})),
        "params.namespace.uuid: a namespace's identifiers are its drive's",
    );
    expect(
        add(&mut client, json!({"ram_mib": 1, "ptpl_file": "/tmp/p"})),
        "params.namespace.ptpl_file",
    );
    expect(
        add(&mut client, json!({"ram_mib": 1, "bogus": 1})),
        "`bogus`",
    );
    // Opened, then refused as at start (metadata): nothing is left of it.
    let drives_before = target.drives.names().len();
    expect(
        add(
            &mut client,
            json!({"nsid": 5, "sim_mib": 1, "sim_metadata_bytes": 8}),
        ),
        "metadata",
    );
    let names = target.drives.names();
    assert_eq!(names.len(), drives_before + 1);
    assert!(
        target.drives.is_released(&format!("sim:{NQN}:5")),
        "{names:?}"
    );

    for (nsid, part) in [
        (0u64, "params.nsid: 0 is not a namespace ID"),
        (0xffff_ffff, "params.nsid: 4294967295 is not a namespace ID"),
        (9, "subsystem nqn.2026-11.io.vfnvme:ram0 has no namespace 9"),
    ] {
        expect(
            client.error(
                "nvmf_subsystem_remove_ns",
                json!({"nqn": NQN, "nsid": nsid}),
            ),
            part,
        );
    }
    expect(
        client.error(
            "nvmf_subsystem_remove_ns",
            json!({"nqn": "nqn.absent", "nsid": 1}),
        ),
        "no subsystem nqn.absent",
    );

    // Without an nsid, the lowest free one; with one, that one.
    let add_ok = |client: &mut Client, namespace: Value| {
        client.call(
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": namespace}),
        )
    };
    assert_eq!(
        add_ok(&mut client, json!({"nsid": 3, "ram_mib": 1})),
        json!(3)
    );
    assert_eq!(add_ok(&mut client, json!({"ram_mib": 2})), json!(2));
    assert_eq!(add_ok(&mut client, json!({"sim_mib": 1})), json!(4));
    assert_eq!(listed_nsids(&mut client, NQN), [1, 2, 3, 4]);
    let listed = client.call("nvmf_get_subsystems", json!({ "nqn": NQN }));
    let second = &listed[0]["namespaces"][1];
    assert_eq!(second["name"], format!("ram:{NQN}:2"));
    assert_eq!(second["size"], 2 << 20);
    assert_eq!(listed[0]["namespaces"][3]["name"], format!("sim:{NQN}:4"));
    assert_eq!(
        client.call("nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 3})),
        json!(true)
    );
    assert_eq!(listed_nsids(&mut client, NQN), [1, 2, 4]);
    assert_eq!(add_ok(&mut client, json!({"ram_mib": 1})), json!(3));
}

#[test]
fn hosts_see_an_added_namespace_and_lose_a_removed_one() {
    let _ = env_logger::builder().is_test(true).try_init();
    let socket = socket_path();
    let target = RunningTarget::with_config(&managed(&socket));
    let mut host = watching_host(&target);
    // Connected before the namespaces exist: the queue gets their routes from its poll group.
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    let mut client = Client::open(&socket);

    for (nsid, namespace, block) in [
        (2u32, json!({"ram_mib": 8}), 512usize),
        (3, json!({"sim_mib": 8, "block_size": 4096}), 4096),
    ] {
        let aer = arm_event(&mut host);
        let answer = client.call(
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": namespace}),
        );
        assert_eq!(answer, json!(nsid));
        // Notice (type 2), Namespace Attribute Changed (info 0), log page 04h.
        assert_eq!(event(&mut host, aer), 0x0004_0002);
        assert_eq!(changed_namespaces(&mut host), [nsid]);
        assert!(changed_namespaces(&mut host).is_empty(), "cleared on read");
        assert_eq!(*active_namespaces(&mut host).last().unwrap(), nsid);
        let identify = host.identify_namespace(nsid).unwrap();
        assert_eq!(identify.nsze.get(), (8 << 20) / block as u64);
        assert_eq!(1usize << identify.lbaf[0].lbads, block);
        write_read(&mut queue, nsid, block, 0, u64::from(nsid));
        write_read(&mut queue, nsid, block, 64, u64::from(nsid) + 10);
        // A queue connected after the change has the namespace too.
        let mut later = host.connect_io_queue(2, 8).unwrap();
        write_read(&mut later, nsid, block, 64, u64::from(nsid) + 20);
        write_read(&mut later, 1, 512, 0, 1);
        later.disconnect().unwrap();
    }
    // The queue connected before counts the added namespaces' commands under their NSIDs
    // (published at the poll groups' next tick).
    let served = |client: &mut Client, nsid: u32| {
        let stats = client.call("vfnvme_get_stats", json!({}));
        stats["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["subsystem_nqn"] == NQN && n["nsid"] == nsid)
            .map(|n| (n["writes"].as_u64().unwrap(), n["reads"].as_u64().unwrap()))
            .next()
    };
    // Three writes and reads each: two on the queue connected before, one on the later one.
    let mut last = (None, None);
    poll_until(
        PATIENCE,
        Duration::from_millis(10),
        || {
            last = (served(&mut client, 2), served(&mut client, 3));
            (last == (Some((3, 3)), Some((3, 3)))).then_some(())
        },
        || "namespaces 2 and 3 were not counted under their NSIDs".to_owned(),
    );

    let aer = arm_event(&mut host);
    assert_eq!(
        client.call("nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 3})),
        json!(true)
    );
    assert_eq!(event(&mut host, aer), 0x0004_0002);
    assert_eq!(changed_namespaces(&mut host), [3]);
    assert_invalid_namespace(&mut queue, 3);
    // The answer came after the simulated controller was released.
    assert!(target.drives.is_released(&format!("sim:{NQN}:3")));
    assert_eq!(active_namespaces(&mut host), [1, 2]);
    client.call("nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 2}));
    assert_invalid_namespace(&mut queue, 2);
    write_read(&mut queue, 1, 512, 0, 7);
    assert_eq!(active_namespaces(&mut host), [1]);
    let identify = host.identify_controller().unwrap();
    assert_eq!(identify.nn.get(), 1);

    // A created subsystem, empty at first, takes namespaces too.
    client.call(
        "nvmf_create_subsystem",
        json!({"nqn": CREATED, "allow_any_host": true}),
    );
    assert_eq!(
        client.call(
            "nvmf_subsystem_add_ns",
            json!({"nqn": CREATED, "namespace": {"sim_mib": 4}}),
        ),
        json!(1)
    );
    let mut other = Host::connect(target.address, CREATED, options()).unwrap();
    other.enable().unwrap();
    write_read(&mut other.connect_io_queue(1, 8).unwrap(), 1, 512, 8, 9);
    // Deleted, with a host connected: the host goes, then its drive.
    client.call("nvmf_delete_subsystem", json!({ "nqn": CREATED }));
    assert!(target.drives.is_released(&format!("sim:{CREATED}:1")));
    write_read(&mut queue, 1, 512, 16, 10);
}

#[test]
fn a_writer_on_namespace_1_never_fails_across_add_remove_cycles() {
    let socket = socket_path();
    let target = RunningTarget::with_config(&managed(&socket));
    let address = target.address;
    let running = Arc::new(AtomicBool::new(true));
    let verified = Arc::new(AtomicU64::new(0));
    // Two writers, one per poll group (connections are handed out in turn), on their own LBAs.
    let writers: Vec<_> = (0..2u64)
        .map(|writer| {
            let (running, verified) = (Arc::clone(&running), Arc::clone(&verified));
            std::thread::spawn(move || {
                let mut host = Host::connect(address, NQN, options()).unwrap();
                host.enable().unwrap();
                let mut queue = host.connect_io_queue(1, 32).unwrap();
                let mut round = 0u64;
                while running.load(Ordering::Relaxed) {
                    // A panic here (a failed command, other data) fails the test at join.
                    let lba = writer * 4096 + round % 256 * 8;
                    write_read(&mut queue, 1, 512, lba, round * 2 + writer);
                    verified.fetch_add(1, Ordering::Relaxed);
                    round += 1;
                }
            })
        })
        .collect();
    let rounds_past = |at_least: u64| {
        poll_until(
            PATIENCE,
            Duration::from_millis(1),
            || (verified.load(Ordering::Relaxed) >= at_least).then_some(()),
            || format!("the writer verified {}", verified.load(Ordering::Relaxed)),
        )
    };
    rounds_past(20);

    let mut host = Host::connect(address, NQN, options()).unwrap();
    host.enable().unwrap();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    let mut client = Client::open(&socket);
    for cycle in 0..24u64 {
        let namespace = if cycle % 2 == 0 {
            json!({"ram_mib": 4})
        } else {
            json!({"sim_mib": 4})
        };
        let nsid = client.call(
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": namespace}),
        );
        assert_eq!(nsid, json!(2), "cycle {cycle}");
        write_read(&mut queue, 2, 512, cycle * 8, cycle + 100);
        let before = verified.load(Ordering::Relaxed);
        client.call("nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 2}));
        assert_invalid_namespace(&mut queue, 2);
        rounds_past(before + 2);
    }
    running.store(false, Ordering::Relaxed);
    for writer in writers {
        writer
            .join()
            .expect("the writers saw no failed or wrong command");
    }
    assert!(verified.load(Ordering::Relaxed) > 48);
    let released = target
        .drives
        .names()
        .iter()
        .filter(|name| target.drives.is_released(name))
        .count();
    assert_eq!(released, 24, "every drive added was released");
    let report = target.stop();
    assert_eq!(report.abandoned_commands, 0);
}

#[test]
fn save_config_writes_the_added_namespaces() {
    let socket = socket_path();
    let target = RunningTarget::with_config(&managed(&socket));
    let mut client = Client::open(&socket);
    client.call(
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"nsid": 4, "ram_mib": 2, "block_size": 4096}}),
    );
    client.call(
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"nsid": 2, "sim_mib": 2, "sim_latency_us": 5}}),
    );
    client.call(
        "nvmf_create_subsystem",
        json!({"nqn": CREATED, "allow_any_host": true}),
    );
    client.call(
        "nvmf_subsystem_add_ns",
        json!({"nqn": CREATED, "namespace": {"sim_mib": 2}}),
    );
    // A namespace added and removed again is not saved.
    client.call(
        "nvmf_subsystem_add_ns",
        json!({"nqn": CREATED, "namespace": {"ram_mib": 1}}),
    );
    client.call(
        "nvmf_subsystem_remove_ns",
        json!({"nqn": CREATED, "nsid": 2}),
    );
    let running = stable_view(&mut client);
    let file = socket.with_extension("toml");
    let saved = client.call("save_config", json!({"file": file}));
    let saved = saved.as_str().unwrap();
    assert!(saved.contains("sim_latency_us = 5"), "{saved}");
    assert!(saved.contains("block_size = 4096"), "{saved}");
    drop(client);
    drop(target);

    let restarted = RunningTarget::with_config(&std::fs::read_to_string(&file).unwrap());
    let mut client = Client::open(&socket);
    assert_eq!(
        stable_view(&mut client),
        running,
        "the same namespaces, and the identity the subsystems had"
    );
    let mut host = restarted.host();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    write_read(&mut queue, 2, 512, 0, 11);
    write_read(&mut queue, 4, 4096, 0, 12);
}

/// A simulated drive with namespaces 1 and 2 (8 MiB of 512-byte blocks each) and `mdts`.
fn two_namespace_drive(mdts: u8) -> SimConfig {
    let namespace = |nsid| SimNamespace {
        nsid,
        blocks: (8 << 20) / 512,
        block_size: 512,
        ..SimNamespace::default()
    };
    SimConfig {
        namespaces: vec![namespace(1), namespace(2)],
        io_queues: 64,
        mdts,
        ..SimConfig::default()
    }
}

#[test]
fn pci_namespaces_are_opened_as_at_start_and_released_with_their_last_namespace() {
    const DRIVE: &str = "0000:01:00.0";
    const SMALL: &str = "0000:02:00.0";
    let socket = socket_path();
    let opened = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&opened);
    // The opener the target's start uses, here handing out simulated controllers.
    let target = RunningTarget::with_drives(&managed(&socket), move |pci| {
        let config = match pci {
            DRIVE => two_namespace_drive(5),
            // 32 KiB per command, less than the subsystem's 128 KiB.
            SMALL => two_namespace_drive(3),
            other => {
                return Err(vfnvme_driver::Error::Unsupported {
                    address: other.into(),
                    what: "not bound to vfio-pci".into(),
                })
            }
        };
        counted.fetch_add(1, Ordering::Relaxed);
        let device = SimController::new(config).expect("simulated controller");
        Ok(Drive::Nvme(Controller::new(
            device,
            ControllerOptions::default(),
        )?))
    });
    let mut host = watching_host(&target);
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    let mut client = Client::open(&socket);
    let add = |client: &mut Client, namespace: Value| {
        client.request(
            "nvmf_subsystem_add_ns",
            json!({"nqn": NQN, "namespace": namespace}),
        )
    };

    let aer = arm_event(&mut host);
    let first = add(&mut client, json!({"pci": DRIVE, "device_nsid": 1}));
    assert_eq!(first["result"], 2, "{first}");
    assert_eq!(event(&mut host, aer), 0x0004_0002);
    assert_eq!(changed_namespaces(&mut host), [2]);
    // SPDK's bdev_name, as nvmf_get_subsystems prints a drive's namespace: the open drive.
    let second = add(&mut client, json!({"bdev_name": format!("{DRIVE}n2")}));
    assert_eq!(second["result"], 3, "{second}");
    assert_eq!(opened.load(Ordering::Relaxed), 1, "one drive, opened once");
    write_read(&mut queue, 2, 512, 0, 21);
    write_read(&mut queue, 3, 512, 0, 22);
    let listed = client.call("nvmf_get_subsystems", json!({ "nqn": NQN }));
    assert_eq!(listed[0]["namespaces"][2]["name"], format!("{DRIVE}n2"));

    let again = add(&mut client, json!({"pci": DRIVE, "device_nsid": 1}));
    assert_eq!(again["error"]["code"], -32602, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("namespace 1 of drive 0000:01:00.0 is already exported by subsystem"),
        "{again}"
    );
    let small = add(&mut client, json!({"pci": SMALL}));
    assert_eq!(small["error"]["code"], -32602, "{small}");
    assert!(
        small["error"]["message"].as_str().unwrap().contains(
            "0000:02:00.0 carries at most 32768 bytes per command, less than the 131072 bytes"
        ),
        "{small}"
    );
    assert!(
        target.drives.is_released(SMALL),
        "the refused drive was let go"
    );
    let absent = add(&mut client, json!({"pci": "0000:03:00.0"}));
    assert_eq!(absent["error"]["code"], -32603, "{absent}");
    assert!(
        absent["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not bound to vfio-pci"),
        "{absent}"
    );

    // The drive stays while a namespace uses it, and goes with the last.
    client.call("nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 2}));
    assert_invalid_namespace(&mut queue, 2);
    assert!(!target.drives.is_released(DRIVE));
    write_read(&mut queue, 3, 512, 8, 23);
    client.call("nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 3}));
    assert_invalid_namespace(&mut queue, 3);
    assert!(target.drives.is_released(DRIVE));
    // Added again, it is opened again.
    let back = add(&mut client, json!({"pci": DRIVE, "device_nsid": 2}));
    assert_eq!(back["result"], 2, "{back}");
    assert_eq!(opened.load(Ordering::Relaxed), 3);
    write_read(&mut queue, 2, 512, 0, 24);
}
