//! Statistics of a running target, read over the management socket while vfnvme-host does
//! known I/O: commands, bytes and errors by status per namespace and per host counted exactly,
//! the latency histograms holding one value per command, the connections with their queue ids
//! and digests, and the totals kept once a host has gone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use vfnvme_host::HostOptions;
use vfnvme_spec::status::generic;
use vfnvme_spec::{nvm_opcode, Command};
use vfnvme_test_support::poll_until;

mod common;

use common::{
    failed_status, loopback_config, options, pattern, RunningTarget, BLOCK, NQN, NS_BLOCKS,
    PATIENCE,
};

const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:stats-host";
const WRITES: usize = 5;
const WRITE_BLOCKS: u32 = 8;
const READS: usize = 3;
const READ_BLOCKS: u32 = 16;

fn socket_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stats-{}-{name}.sock", std::process::id()))
}

/// The answer to `method` with `params` over a fresh connection to the management socket.
fn request(socket: &Path, method: &str, params: Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("the management socket answers");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("an answer");
    serde_json::from_str(&line).expect("JSON")
}

/// `method`'s result, which must succeed.
fn call(socket: &Path, method: &str) -> Value {
    let answer = request(socket, method, json!({}));
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

/// The statistics once the poll groups have published `commands` I/O commands of the host.
fn stats_with(socket: &Path, commands: u64) -> Value {
    poll_until(
        PATIENCE,
        Duration::from_millis(20),
        || {
            let stats = call(socket, "vfnvme_get_stats");
            let host = stats["hosts"].as_array()?.first()?.clone();
            let seen = ["reads", "writes", "others"]
                .iter()
                .map(|k| host[k].as_u64().unwrap())
                .sum::<u64>();
            (seen == commands).then_some(stats)
        },
        || format!("the statistics never showed {commands} commands"),
    )
}

fn managed(socket: &Path) -> String {
    loopback_config(&format!("cores = 2\nrpc_socket = \"{}\"", socket.display()))
        .subsystem(NQN, "allow_any_host = true")
        .namespace(1, "ram_mib = 16")
        .text()
}

#[test]
fn commands_bytes_errors_and_latencies_are_counted_exactly() {
    let socket = socket_path("counted");
    let target = RunningTarget::with_config(&managed(&socket));
    let mut host = target.host_with(HostOptions {
        host_nqn: HOST.into(),
        header_digest: true,
        data_digest: true,
        ..options()
    });
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    for write in 0..WRITES {
        let data = pattern((WRITE_BLOCKS as usize) * BLOCK, write as u64);
        let lba = write as u64 * u64::from(WRITE_BLOCKS);
        let command = Command::nvm_rw(nvm_opcode::WRITE, 1, lba, WRITE_BLOCKS);
        queue.execute(command, &data, 0, "Write").expect("write");
    }
    let read_len = (READ_BLOCKS as usize) * BLOCK;
    for read in 0..READS {
        let command = Command::nvm_rw(nvm_opcode::READ, 1, read as u64 * 16, READ_BLOCKS);
        let (_, data) = queue.execute(command, &[], read_len, "Read").expect("read");
        let expected: Vec<u8> = (0..2)
            .flat_map(|half| pattern((WRITE_BLOCKS as usize) * BLOCK, (read * 2 + half) as u64))
            .collect();
        assert!(
            read * 2 + 1 >= WRITES || data == expected,
            "read {read} differs"
        );
    }
    // Past the namespace's end: LBA Out of Range (SCT 0, SC 80h).
    let beyond = Command::nvm_rw(nvm_opcode::READ, 1, NS_BLOCKS, 1);
    let status = failed_status(queue.execute(beyond, &[], BLOCK, "Read"));
    assert_eq!((status.sct(), status.sc()), (0, generic::LBA_OUT_OF_RANGE));
    // A namespace the subsystem does not have: Invalid Namespace (SC 0Bh), the host's only.
    let absent = Command::nvm_rw(nvm_opcode::READ, 7, 0, 1);
    let status = failed_status(queue.execute(absent, &[], BLOCK, "Read"));
    assert_eq!(
        (status.sct(), status.sc()),
        (0, generic::INVALID_NAMESPACE_OR_FORMAT)
    );

    let total = (WRITES + READS + 2) as u64;
    let stats = stats_with(&socket, total);

    let namespaces = stats["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 1, "{stats}");
    let ns = &namespaces[0];
    assert_eq!(
        (ns["subsystem_nqn"].as_str(), ns["nsid"].as_u64()),
        (Some(NQN), Some(1))
    );
    assert_eq!(ns["writes"], json!(WRITES));
    assert_eq!(ns["reads"], json!(READS + 1));
    assert_eq!(ns["others"], json!(0));
    assert_eq!(
        ns["bytes_written"],
        json!(WRITES * (WRITE_BLOCKS as usize) * BLOCK)
    );
    assert_eq!(ns["bytes_read"], json!(READS * read_len));
    let out_of_range = json!({"sct": 0, "sc": generic::LBA_OUT_OF_RANGE, "count": 1});
    let errors = ns["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{ns}");
    for key in ["sct", "sc", "count"] {
        assert_eq!(errors[0][key], out_of_range[key], "{ns}");
    }
    assert_eq!(ns["other_errors"], json!(0));
    assert_eq!(ns["latency"]["count"], json!(WRITES + READS + 1));
    let latency = &ns["latency"];
    let p50 = latency["p50_ns"].as_u64().unwrap();
    let p99 = latency["p99_ns"].as_u64().unwrap();
    let max = latency["max_ns"].as_u64().unwrap();
    // Each command took some time: its answer reads the clock.
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{latency}");

    let hosts = stats["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{stats}");
    let by_host = &hosts[0];
    assert_eq!(by_host["host_nqn"], json!(HOST));
    assert_eq!(by_host["reads"], json!(READS + 2));
    assert_eq!(by_host["writes"], json!(WRITES));
    assert_eq!(by_host["latency"]["count"], json!(total));
    let mut statuses: Vec<(u64, u64, u64)> = by_host["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["sct"].as_u64().unwrap(),
                e["sc"].as_u64().unwrap(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            (0, u64::from(generic::INVALID_NAMESPACE_OR_FORMAT), 1),
            (0, u64::from(generic::LBA_OUT_OF_RANGE), 1)
        ]
    );

    let connections = stats["connections"].as_array().unwrap();
    let mut queues: Vec<u64> = connections
        .iter()
        .map(|c| c["qid"].as_u64().unwrap())
        .collect();
    queues.sort();
    assert_eq!(queues, [0, 1], "{stats}");
    for connection in connections {
        assert_eq!(connection["host_nqn"], json!(HOST));
        assert_eq!(connection["subsystem_nqn"], json!(NQN));
        assert_eq!(connection["header_digest"], json!(true));
        assert_eq!(connection["data_digest"], json!(true));
        if connection["qid"] == json!(1) {
            assert_eq!(connection["sq_entries"], json!(8));
            assert_eq!(connection["depth_in_use"], json!(0));
        }
    }

    let groups = stats["poll_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let sum = |key: &str| groups.iter().map(|g| g[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("current_admin_qpairs"), 1);
    assert_eq!(sum("current_io_qpairs"), 1);
    assert_eq!(sum("connections"), 2);
    assert_eq!(sum("completed_nvme_io"), total);
    assert_eq!(sum("outstanding_commands"), 0);

    let spdk = call(&socket, "nvmf_get_stats");
    assert_eq!(spdk["tick_rate"], json!(1_000_000_000u64));
    assert_eq!(spdk["poll_groups"].as_array().unwrap().len(), 2);
    assert_eq!(spdk["poll_groups"][0]["name"], json!("poll-group-0"));
    assert_eq!(
        spdk["poll_groups"][0]["transports"][0]["trtype"],
        json!("TCP")
    );
}

#[test]
fn totals_stay_once_the_host_has_gone() {
    let socket = socket_path("gone");
    let target = RunningTarget::with_config(&managed(&socket));
    {
        let mut host = target.host_with(HostOptions {
            host_nqn: HOST.into(),
            ..options()
        });
        let mut queue = host.connect_io_queue(1, 4).expect("I/O queue");
        let data = pattern(BLOCK, 1);
        for lba in 0..4 {
            let command = Command::nvm_rw(nvm_opcode::WRITE, 1, lba, 1);
            queue.execute(command, &data, 0, "Write").expect("write");
        }
        queue
            .execute(Command::new(nvm_opcode::FLUSH, 1), &[], 0, "Flush")
            .expect("flush");
    }
    let stats = poll_until(
        PATIENCE,
        Duration::from_millis(20),
        || {
            let stats = stats_with(&socket, 5);
            stats["connections"].as_array()?.is_empty().then_some(stats)
        },
        || "the connections never went".into(),
    );
    let ns = &stats["namespaces"][0];
    assert_eq!(
        (ns["writes"].as_u64(), ns["others"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(ns["bytes_written"], json!(4 * BLOCK));
    assert_eq!(ns["latency"]["count"], json!(5));
    assert!(ns["errors"].as_array().unwrap().is_empty());
    let groups = stats["poll_groups"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| g["current_io_qpairs"].as_u64().unwrap())
            .sum::<u64>(),
        0
    );
}

/// The samples of an OpenMetrics text: (name, labels) and value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            let value = match value {
                "+Inf" => f64::INFINITY,
                number => number.parse().expect("a number"),
            };
            (name.to_owned(), labels, value)
        })
        .collect()
}

fn scrape(address: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("the metrics endpoint answers");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers, then a body");
    (head.to_owned(), body.to_owned())
}

#[test]
fn the_prometheus_endpoint_serves_the_same_numbers() {
    let socket = socket_path("metrics");
    let config = format!(
        "{}\n[metrics]\naddress = \"127.0.0.1:0\"\n",
        managed(&socket)
    );
    let target = RunningTarget::with_config(&config);
    let metrics = target.metrics.expect("the endpoint listens");
    let mut host = target.host_with(HostOptions {
        host_nqn: HOST.into(),
        ..options()
    });
    let mut queue = host.connect_io_queue(1, 4).expect("I/O queue");
    let data = pattern(2 * BLOCK, 3);
    for lba in 0..3 {
        let command = Command::nvm_rw(nvm_opcode::WRITE, 1, lba * 2, 2);
        queue.execute(command, &data, 0, "Write").expect("write");
    }
    let command = Command::nvm_rw(nvm_opcode::READ, 1, 0, 2);
    queue
        .execute(command, &[], data.len(), "Read")
        .expect("read");
    let beyond = Command::nvm_rw(nvm_opcode::READ, 1, NS_BLOCKS, 1);
    failed_status(queue.execute(beyond, &[], BLOCK, "Read"));
    let stats = stats_with(&socket, 5);
    let ns = &stats["namespaces"][0];

    let (head, body) = scrape(metrics, "/metrics");
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    let samples = samples(&body);
    let value = |name: &str, wanted: &[(&str, &str)]| -> f64 {
        let found: Vec<f64> = samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && wanted
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(found.len(), 1, "{name} {wanted:?} in\n{body}");
        found[0]
    };
    let of_ns = [("subsystem", NQN), ("nsid", "1"), ("host", HOST)];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = of_ns.to_vec();
        labels.push(extra);
        labels
    };
    let number = |key: &str| ns[key].as_u64().unwrap() as f64;
    assert_eq!(
        value("vfnvme_commands_total", &with(("kind", "write"))),
        number("writes")
    );
    assert_eq!(
        value("vfnvme_commands_total", &with(("kind", "write"))),
        3.0
    );
    assert_eq!(value("vfnvme_commands_total", &with(("kind", "read"))), 2.0);
    assert_eq!(
        value("vfnvme_commands_total", &with(("kind", "other"))),
        0.0
    );
    assert_eq!(
        value("vfnvme_bytes_total", &with(("direction", "write"))),
        number("bytes_written")
    );
    assert_eq!(
        value("vfnvme_bytes_total", &with(("direction", "read"))),
        (2 * BLOCK) as f64
    );
    let mut error = with(("sct", "0"));
    error.push(("sc", "128"));
    assert_eq!(value("vfnvme_errors_total", &error), 1.0);
    assert_eq!(value("vfnvme_command_latency_seconds_count", &of_ns), 5.0);
    assert_eq!(
        value(
            "vfnvme_command_latency_seconds_bucket",
            &with(("le", "+Inf"))
        ),
        5.0
    );
    // Cumulative buckets: none of these commands took 34 s.
    let last_bound = with(("le", "34.359738367"));
    assert_eq!(
        value("vfnvme_command_latency_seconds_bucket", &last_bound),
        5.0
    );
    let sum = value("vfnvme_command_latency_seconds_sum", &of_ns);
    let mean = ns["latency"]["mean_ns"].as_u64().unwrap() as f64 / 1e9;
    assert!(sum > 0.0 && (sum / 5.0 - mean).abs() < 1e-8, "{sum} {mean}");
    let sum: f64 = (0..2)
        .map(|g| {
            let group = g.to_string();
            value(
                "vfnvme_poll_group_io_queue_pairs",
                &[("poll_group", group.as_str())],
            )
        })
        .sum();
    assert_eq!(sum, 1.0);

    let (head, _) = scrape(metrics, "/other");
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");
}

#[test]
fn the_methods_are_listed_and_refuse_params_by_name() {
    let socket = socket_path("params");
    let _target = RunningTarget::with_config(&managed(&socket));
    let methods = call(&socket, "rpc_get_methods");
    for method in ["nvmf_get_stats", "vfnvme_get_stats"] {
        assert!(
            methods.as_array().unwrap().contains(&json!(method)),
            "{methods}"
        );
        let refused = request(&socket, method, json!({"tgt_name": "nvmf_tgt"}));
        assert_eq!(refused["error"]["code"], json!(-32602), "{refused}");
        assert_eq!(
            refused["error"]["message"],
            json!("params.tgt_name: vfnvme runs one target per process; leave it out")
        );
        let unknown = request(&socket, method, json!({"bogus": 1}));
        let message = unknown["error"]["message"].as_str().unwrap();
        assert!(message.contains("unknown field `bogus`"), "{unknown}");
    }
    // Before any host: the groups, and nothing counted.
    let stats = call(&socket, "vfnvme_get_stats");
    assert_eq!(stats["poll_groups"].as_array().unwrap().len(), 2);
    for list in ["namespaces", "hosts", "connections"] {
        assert_eq!(stats[list], json!([]), "{stats}");
    }
}
