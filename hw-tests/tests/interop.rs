//! `nvme connect-all` from the guest's nvme-cli (libnvme 1.3, as Debian 12's) against
//! `vfnvme serve` with two RAM subsystems on 127.0.0.1:4420 and a discovery-only listener on
//! 127.0.0.1:8009, in one guest boot:
//!
//! 1. `nvme discover -s 8009` (JSON): what the discovery log says (TREQ, ports).
//! 2. `nvme connect-all -s 8009`, then what the host really has: every NVMe/TCP controller in
//!    /sys/class/nvme and every subsystem in /sys/class/nvme-subsystem (not connect-all's exit
//!    status, which is 0 even when every connect failed), and `nvme list-subsys`.
//! 3. A pattern written to one namespace over the fabric reads back.
//!
//! libnvme before 1.4 adds `tls` to the connect options of an entry whose TREQ says "not
//! required", which a kernel without NVMe/TCP TLS refuses; and a subsystem listed on both
//! listeners would get two paths. Each `#[test]` checks one part of what the boot printed.

use std::sync::OnceLock;

use serde_json::Value;
use vfnvme_hw_tests::{Outcome, Scenario};

const NQN_A: &str = "nqn.2026-11.io.vfnvme:interop-a";
const NQN_B: &str = "nqn.2026-11.io.vfnvme:interop-b";

const SCRIPT: &str = r#"
step "vfnvme serve: two RAM subsystems on 127.0.0.1:4420, discovery only on 127.0.0.1:8009"
{
	printf '[target]\ncores = 1\n\n[[listener]]\naddress = "127.0.0.1:4420"\n\n'
	printf '[[listener]]\naddress = "127.0.0.1:8009"\ndiscovery_only = true\n'
	for nqn in NQN_A NQN_B; do
		printf '\n[[subsystem]]\nnqn = "%s"\nallow_any_host = true\n' "$nqn"
		printf '\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 16\n'
	done
} >/tmp/interop.toml
run cat /tmp/interop.toml
serve_start serve /tmp/interop.toml
ensure_hostnqn

step "nvme discover on the discovery-only listener"
capture discover nvme discover -t tcp -a 127.0.0.1 -s 8009 -o json

step "nvme connect-all through the discovery-only listener"
capture connect_all nvme connect-all -t tcp -a 127.0.0.1 -s 8009
# Bounded wait for both namespaces; what the host ended up with is checked on the host side.
for i in $(seq 1 60); do
	has_fabric_block NQN_A && has_fabric_block NQN_B && break
	sleep 0.5
done
sleep 1
for ctrl in /sys/class/nvme/nvme*; do
	[ -e "$ctrl/transport" ] || continue
	echo "VFNVME-INTEROP-CTRL: ctrl=$(basename "$ctrl") transport=$(cat "$ctrl/transport") subsysnqn=$(cat "$ctrl/subsysnqn") address=$(cat "$ctrl/address" | tr -d ' ') state=$(cat "$ctrl/state")"
done
for subsys in /sys/class/nvme-subsystem/nvme-subsys*; do
	[ -e "$subsys/subsysnqn" ] || continue
	paths=0
	for path in "$subsys"/nvme*; do
		case "$(basename "$path")" in nvme[0-9]*n*|nvme-subsys*) continue ;; esac
		[ -e "$path/address" ] && paths=$((paths + 1))
	done
	echo "VFNVME-INTEROP-SUBSYS: subsys=$(basename "$subsys") nqn=$(cat "$subsys/subsysnqn") paths=$paths"
done
capture list_subsys nvme list-subsys -o json

step "a pattern written to NQN_A over the fabric reads back"
A=$(fabric_block NQN_A)
[ -n "$A" ] || fail "connect-all gave no block device for NQN_A"
run sh -c "vfnvme pattern --block-size 512 --blocks 2048 --start-lba 0 --seed 9 >/tmp/expected"
run dd if=/tmp/expected of="/dev/$A" bs=64k oflag=direct
run dd if="/dev/$A" of=/tmp/back bs=64k count=16 iflag=direct
cmp_or_explain /tmp/expected /tmp/back "what the fabric read back"
echo "VFNVME-INTEROP-CHECK: readback ok"

step "disconnect, SIGTERM vfnvme serve"
disconnect_tcp NQN_A
disconnect_tcp NQN_B
serve_stop
"#;

fn boot() -> &'static Outcome {
    static BOOT: OnceLock<Result<Outcome, String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        let script = SCRIPT.replace("NQN_A", NQN_A).replace("NQN_B", NQN_B);
        Scenario::new("interop", &script)
            .memory_mib(1024)
            .needs_vfnvme()
            .run()
            .map_err(|error| format!("scenario interop: cannot run: {error}"))
    })
    .as_ref()
    .unwrap_or_else(|error| panic!("{error}"))
}

/// The `KEY=VALUE` words of every guest line starting with `prefix`.
fn records(outcome: &Outcome, prefix: &str) -> Vec<Vec<(String, String)>> {
    outcome
        .console
        .iter()
        .filter_map(|line| line.strip_prefix(prefix))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|word| word.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect()
        })
        .collect()
}

fn value<'a>(record: &'a [(String, String)], key: &str) -> &'a str {
    record
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Connect-all made exactly one controller per subsystem, bound to the I/O listener, and none
/// through the discovery-only port: counted in sysfs, whatever connect-all's exit status.
#[test]
fn connect_all_through_the_discovery_port_makes_one_path_per_subsystem() {
    let outcome = boot();
    let controllers: Vec<Vec<(String, String)>> = records(outcome, "VFNVME-INTEROP-CTRL: ")
        .into_iter()
        .filter(|record| value(record, "transport") == "tcp")
        .collect();
    let subsystems = records(outcome, "VFNVME-INTEROP-SUBSYS: ");
    let connect_all = outcome.expect_capture("connect_all");
    let seen = format!(
        "controllers: {controllers:?}\nsubsystems: {subsystems:?}\nconnect-all (exit {}): \
         {}{}",
        connect_all.exit_code, connect_all.stdout, connect_all.stderr
    );
    for nqn in [NQN_A, NQN_B] {
        let paths: Vec<&Vec<(String, String)>> = controllers
            .iter()
            .filter(|record| value(record, "subsysnqn") == nqn)
            .collect();
        if paths.len() != 1 {
            outcome.fail(&format!(
                "{nqn}: {} NVMe/TCP controllers, expected exactly 1\n{seen}",
                paths.len()
            ));
        }
        let address = value(paths[0], "address");
        if !address.contains("traddr=127.0.0.1") || !address.contains("trsvcid=4420") {
            outcome.fail(&format!(
                "{nqn}: connected at {address}, expected 127.0.0.1:4420\n{seen}"
            ));
        }
        if value(paths[0], "state") != "live" {
            outcome.fail(&format!("{nqn}: controller not live\n{seen}"));
        }
        let listed: Vec<&Vec<(String, String)>> = subsystems
            .iter()
            .filter(|record| value(record, "nqn") == nqn)
            .collect();
        if listed.len() != 1 || value(listed[0], "paths") != "1" {
            outcome.fail(&format!(
                "{nqn}: expected one subsystem with one path in /sys/class/nvme-subsystem\n{seen}"
            ));
        }
    }
    let stray: Vec<&Vec<(String, String)>> = controllers
        .iter()
        .filter(|record| ![NQN_A, NQN_B].contains(&value(record, "subsysnqn")))
        .collect();
    if !stray.is_empty() {
        outcome.fail(&format!(
            "controllers of other subsystems are left (the discovery controller should be \
             gone): {stray:?}\n{seen}"
        ));
    }
}

/// The discovery log as nvme-cli decodes it: TREQ as nvmet reports a port without TLS, each
/// subsystem once on 4420 with port ID 1, and the discovery subsystem on 8009 with port ID 2.
#[test]
fn discover_shows_treq_not_specified_and_one_entry_per_subsystem_listener() {
    let outcome = boot();
    let capture = outcome.expect_capture("discover");
    let stdout = capture.stdout.trim();
    let log: Value = stdout
        .find('{')
        .and_then(|at| serde_json::from_str(&stdout[at..]).ok())
        .unwrap_or_else(|| {
            outcome.fail(&format!(
                "nvme discover (exit {}) printed no JSON:\n{stdout}\n{}",
                capture.exit_code, capture.stderr
            ))
        });
    let entries = log["records"]
        .as_array()
        .unwrap_or_else(|| outcome.fail(&format!("no records in {log:#}")));
    let summary: Vec<(String, String, String, u64, String)> = entries
        .iter()
        .map(|entry| {
            let text = |key: &str| entry[key].as_str().unwrap_or("").trim().to_owned();
            (
                text("subtype"),
                text("subnqn"),
                text("trsvcid"),
                entry["portid"].as_u64().unwrap_or(u64::MAX),
                text("treq"),
            )
        })
        .collect();
    let treq = "not specified, sq flow control disable supported";
    let expected = vec![
        (
            "current discovery subsystem".to_owned(),
            "nqn.2014-08.org.nvmexpress.discovery".to_owned(),
            "8009".to_owned(),
            2,
            treq.to_owned(),
        ),
        (
            "nvme subsystem".to_owned(),
            NQN_A.to_owned(),
            "4420".to_owned(),
            1,
            treq.to_owned(),
        ),
        (
            "nvme subsystem".to_owned(),
            NQN_B.to_owned(),
            "4420".to_owned(),
            1,
            treq.to_owned(),
        ),
    ];
    if summary != expected {
        outcome.fail(&format!(
            "discovery log (subtype, subnqn, trsvcid, portid, treq):\n{summary:#?}\nexpected:\n\
             {expected:#?}"
        ));
    }
}

#[test]
fn data_written_through_a_connect_all_path_reads_back_and_serve_stops_cleanly() {
    let outcome = boot();
    outcome.assert_passed();
    if !outcome
        .console
        .iter()
        .any(|line| line == "VFNVME-INTEROP-CHECK: readback ok")
    {
        outcome.fail("the guest did not get to the readback check");
    }
    let serve = outcome.expect_capture("serve");
    if serve.exit_code != 0 {
        outcome.fail(&format!(
            "vfnvme serve exited {} after SIGTERM:\n{}",
            serve.exit_code, serve.stderr
        ));
    }
}
