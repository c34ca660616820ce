//! The management socket against the Linux kernel's NVMe/TCP initiator, in one guest boot:
//!
//! 1. `vfnvme serve` exports drive 0 as namespace 1 of one subsystem, for this host only; the
//!    host connects (`nvme connect`, a short `--ctrl-loss-tmo`).
//! 2. `nvmf_subsystem_add_ns` gives it drive 1 as namespace 2: the host shows the block
//!    device without reconnecting (Namespace Attribute Changed, Changed Namespace List) and
//!    fio's crc32c verify passes on it.
//! 3. fio writes and verifies namespace 1 while `nvmf_subsystem_remove_ns` takes namespace 2
//!    away: the host drops that block device, and namespace 1's fio passes.
//! 4. `vfnvme stats --json` counts namespace 1's writes as fio made them.
//! 5. `nvmf_subsystem_remove_host`: the host's controller is disconnected, its reconnects are
//!    refused, and the kernel deletes it; SIGTERM then ends serve with status 0.
//!
//! Each `#[test]` checks one part of what the boot printed.

use std::sync::OnceLock;

use serde_json::Value;
use vfnvme_hw_tests::{Drive, Outcome, Scenario};

const NQN: &str = "nqn.2026-11.io.vfnvme:managed";
const DRIVE_BYTES: u64 = 64 << 20;
/// What fio writes and verifies on namespace 1 while namespace 2 goes.
const NS1_FIO_BYTES: u64 = 24 << 20;
const NS2_FIO_BYTES: u64 = 16 << 20;

const SCRIPT: &str = r#"
B0=$DRIVE0_BDF; B1=$DRIVE1_BDF
SOCKET=/run/vfnvme/vfnvme.sock

step "setup.sh config: both drives to vfio-pci"
run env HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci

step "vfnvme serve: drive 0 as namespace 1 of @NQN@, for this host only"
ensure_hostnqn
HOSTNQN=$(cat /etc/nvme/hostnqn)
mkdir -p /run/vfnvme
cat >/tmp/serve.toml <<EOF
[target]
cores = 1
rpc_socket = "$SOCKET"

[[listener]]
address = "127.0.0.1:4420"

[[subsystem]]
nqn = "@NQN@"
hosts = ["$HOSTNQN"]

[[subsystem.namespace]]
nsid = 1
pci = "$B0"
EOF
cat /tmp/serve.toml
serve_start serve /tmp/serve.toml

step "nvme connect (ctrl-loss-tmo 3 s: the controller goes once the host may not reconnect)"
connect_tcp @NQN@ 4420 --ctrl-loss-tmo=3 --reconnect-delay=1
C=$(fabric_ctrl @NQN@); N1=$(fabric_block @NQN@ 1)
echo "VFNVME-MGMT-INFO: ctrl=$C ns1=$N1"

step "nvmf_subsystem_add_ns: drive 1 appears as namespace 2 without a reconnect"
capture add_ns vfnvme rpc nvmf_subsystem_add_ns --params "{\"nqn\": \"@NQN@\", \"namespace\": {\"pci\": \"$B1\"}}"
expect_eq "$(capture_rc add_ns)" 0 "exit status of nvmf_subsystem_add_ns"
wait_until 30 has_fabric_block @NQN@ 2
expect_eq "$(fabric_ctrl @NQN@)" "$C" "the host's controller (no reconnect)"
N2=$(fabric_block @NQN@ 2)
expect_eq "$(blockdev --getsize64 "/dev/$N2")" "$DRIVE1_NS1_BYTES" "size of /dev/$N2"
echo "VFNVME-MGMT-INFO: ns2=$N2"
echo "VFNVME-MGMT-CHECK: namespace 2 appeared"

step "fio randwrite + crc32c verify on namespace 2"
capture fio_ns2 fio --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
	--verify=crc32c --verify_fatal=1 --output-format=json --name=ns2 --filename="/dev/$N2" \
	--size=@NS2_BYTES@

step "nvmf_subsystem_remove_ns 2 while fio writes and verifies namespace 1"
capture_silent fio_ns1 fio --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
	--verify=crc32c --verify_fatal=1 --output-format=json --name=ns1 --filename="/dev/$N1" \
	--size=@NS1_BYTES@ &
FIO_PID=$!
# Remove once the target has served writes of namespace 1's fio, not before.
ns1_busy() {
	vfnvme stats --socket "$SOCKET" --json >/tmp/stats_now.json 2>/dev/null || return 1
	ns1_writes=$(awk '/"nsid": 1,/ { found = 1 } found && /"writes":/ { gsub(/[^0-9]/, ""); print; exit }' \
		/tmp/stats_now.json)
	[ "${ns1_writes:-0}" -gt 0 ]
}
wait_until 60 ns1_busy
capture remove_ns vfnvme rpc nvmf_subsystem_remove_ns --params '{"nqn": "@NQN@", "nsid": 2}'
if alive "$FIO_PID"; then echo "VFNVME-MGMT-INFO: removed_during_fio=yes"; fi
wait_until 30 no_fabric_block @NQN@ 2
wait_exit 300 "$FIO_PID"
emit_capture fio_ns1

step "vfnvme stats --json"
capture stats vfnvme stats --socket "$SOCKET" --json

step "nvmf_subsystem_remove_host: the host's controller goes away"
capture remove_host vfnvme rpc nvmf_subsystem_remove_host --params "{\"nqn\": \"@NQN@\", \"host\": \"$HOSTNQN\"}"
wait_until 60 no_fabric_ctrl @NQN@
echo "VFNVME-MGMT-CHECK: controller gone"

step "SIGTERM vfnvme serve"
serve_stop
"#;

fn boot() -> &'static Outcome {
    static BOOT: OnceLock<Result<Outcome, String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        let script = SCRIPT
            .replace("@NQN@", NQN)
            .replace("@NS1_BYTES@", &NS1_FIO_BYTES.to_string())
            .replace("@NS2_BYTES@", &NS2_FIO_BYTES.to_string());
        Scenario::new("management", &script)
            .drive(Drive::new("VFNVMEMGMT0", DRIVE_BYTES))
            .drive(Drive::new("VFNVMEMGMT1", DRIVE_BYTES))
            .memory_mib(2048)
            .needs_vfnvme()
            .run()
            .map_err(|error| format!("scenario management: cannot run: {error}"))
    })
    .as_ref()
    .unwrap_or_else(|error| panic!("{error}"))
}

/// The guest got as far as `VFNVME-MGMT-CHECK: {check}`.
fn expect_check(outcome: &Outcome, check: &str) {
    let line = format!("VFNVME-MGMT-CHECK: {check}");
    if !outcome.console.contains(&line) {
        outcome.assert_passed();
        outcome.fail(&format!("the guest did not get to `{check}`"));
    }
}

/// fio's job 0 of capture `name`: it must have written and verified `bytes` without error.
fn fio_passed(outcome: &Outcome, name: &str, bytes: u64) -> Value {
    let result = outcome.json(name);
    let job = &result["jobs"][0];
    let (error, written, read) = (
        job["error"].as_u64(),
        job["write"]["io_bytes"].as_u64(),
        job["read"]["io_bytes"].as_u64(),
    );
    if error != Some(0) || written != Some(bytes) || read != Some(bytes) {
        outcome.fail(&format!(
            "{name}: error {error:?}, wrote {written:?} and verified {read:?} bytes, expected 0 \
             errors and {bytes} bytes each"
        ));
    }
    job.clone()
}

#[test]
fn an_added_namespace_appears_on_the_connected_host_and_verifies() {
    let outcome = boot();
    let answer = outcome.expect_capture("add_ns");
    if answer.exit_code != 0 || answer.stdout.trim() != "2" {
        outcome.fail(&format!(
            "nvmf_subsystem_add_ns: exit {}, answered {:?}; expected NSID 2",
            answer.exit_code, answer.stdout
        ));
    }
    expect_check(outcome, "namespace 2 appeared");
    fio_passed(outcome, "fio_ns2", NS2_FIO_BYTES);
}

#[test]
fn a_namespace_removed_under_io_on_another_leaves_that_io_intact() {
    let outcome = boot();
    let removal = outcome.expect_capture("remove_ns");
    if removal.exit_code != 0 {
        outcome.fail(&format!(
            "nvmf_subsystem_remove_ns: exit {}: {}",
            removal.exit_code, removal.stderr
        ));
    }
    if !outcome
        .console
        .iter()
        .any(|line| line == "VFNVME-MGMT-INFO: removed_during_fio=yes")
    {
        outcome.fail("namespace 2 was removed after namespace 1's fio had ended");
    }
    fio_passed(outcome, "fio_ns1", NS1_FIO_BYTES);
}

#[test]
fn stats_count_namespace_1s_writes_as_fio_made_them() {
    let outcome = boot();
    let fio = fio_passed(outcome, "fio_ns1", NS1_FIO_BYTES);
    let stats = outcome.json("stats");
    let namespace = stats["namespaces"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|n| n["subsystem_nqn"] == NQN && n["nsid"] == 1)
        })
        .unwrap_or_else(|| outcome.fail(&format!("no namespace 1 of {NQN} in {stats}")));
    // Nothing but fio writes to namespace 1; the kernel also reads it (partition scan).
    let fio_writes = fio["write"]["total_ios"].as_u64();
    let fio_reads = fio["read"]["total_ios"].as_u64().unwrap_or(0);
    if namespace["writes"].as_u64() != fio_writes
        || namespace["bytes_written"].as_u64() != Some(NS1_FIO_BYTES)
        || namespace["reads"].as_u64().unwrap_or(0) < fio_reads
    {
        outcome.fail(&format!(
            "namespace 1: stats {namespace}; fio wrote {fio_writes:?} commands \
             ({NS1_FIO_BYTES} bytes) and read {fio_reads}"
        ));
    }
}

#[test]
fn a_removed_host_loses_its_controller_and_serve_stops_cleanly() {
    let outcome = boot();
    let removal = outcome.expect_capture("remove_host");
    if removal.exit_code != 0 {
        outcome.fail(&format!(
            "nvmf_subsystem_remove_host: exit {}: {}",
            removal.exit_code, removal.stderr
        ));
    }
    expect_check(outcome, "controller gone");
    outcome.assert_passed();
    let serve = outcome.expect_capture("serve");
    if serve.exit_code != 0 || serve.stderr.contains("panicked") {
        outcome.fail(&format!(
            "vfnvme serve: exit {}, stderr:\n{}",
            serve.exit_code, serve.stderr
        ));
    }
}
