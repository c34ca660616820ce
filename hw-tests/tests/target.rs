//! `vfnvme serve` exporting two vfio-bound emulated drives over NVMe/TCP to the Linux kernel's
//! initiator (nvme-tcp, nvme-cli) and fio, in one guest boot:
//!
//! 1. `setup.sh config`; serve refuses a configuration naming a drive the kernel still owns;
//!    then both drives go to vfio-pci and serve exports them (one subsystem each) on
//!    127.0.0.1:4420, with a discovery listener on 127.0.0.1:8009, and prints its ready line.
//! 2. `nvme discover` (8009) lists both subsystems; `nvme connect` (4420) gives block devices;
//!    `nvme list`, `id-ctrl` and `id-ns` show each drive's serial, model and capacity.
//! 3. fio random writes with crc32c verification at QD1 and QD32, 4 KiB and 128 KiB, on one
//!    drive and on both at once.
//! 4. `vfnvme pattern` written over the fabric reads back over the fabric and, after
//!    disconnect, SIGTERM (exit 0) and `setup.sh reset`, through the kernel nvme driver.
//!
//! Each `#[test]` checks one part of what the boot printed.

use std::sync::OnceLock;

use serde_json::Value;
use vfnvme_hw_tests::{Capture, Drive, Outcome, Scenario};

const DRIVE0_SERIAL: &str = "VFNVMETGT0";
const DRIVE1_SERIAL: &str = "VFNVMETGT1";
const DRIVE_BYTES: u64 = 64 << 20;
const NQN0: &str = "nqn.2026-11.io.vfnvme:tgt0";
const NQN1: &str = "nqn.2026-11.io.vfnvme:tgt1";
const QEMU_MODEL: &str = "QEMU NVMe Ctrl";
const PATTERN_SEED: u64 = 41;

/// One fio job: (device variable, offset, size).
type FioJob = (&'static str, u64, u64);
/// One fio run: (capture name, its jobs, run at once, block size, queue depth).
type FioRun = (&'static str, &'static [FioJob], &'static str, u32);

const FIO_RUNS: &[FioRun] = &[
    ("fio_4k_qd1", &[("F0", 0, 8 << 20)], "4k", 1),
    ("fio_4k_qd32", &[("F1", 0, 16 << 20)], "4k", 32),
    ("fio_128k_qd32", &[("F0", 16 << 20, 32 << 20)], "128k", 32),
    (
        "fio_4k_qd16_both",
        &[("F0", 48 << 20, 8 << 20), ("F1", 16 << 20, 8 << 20)],
        "4k",
        16,
    ),
];

const SCRIPT_HEAD: &str = r#"
B0=$DRIVE0_BDF; B1=$DRIVE1_BDF
BLOCKS0=$((DRIVE0_NS1_BYTES / 512))

step "setup.sh config: drive 0 to vfio-pci, drive 1 stays on nvme"
run env PCI_BLOCKED="$B1" HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" nvme

step "vfnvme serve refuses a drive the kernel nvme driver owns"
write_serve_config /tmp/serve.toml 1 "NQN0=$B0" "NQN1=$B1"
capture serve_kernel_bound timeout -s TERM 60 vfnvme serve --config /tmp/serve.toml
echo "VFNVME-TARGET-INFO: kernel_bound=$B1"

step "setup.sh config: drive 1 to vfio-pci too"
run env HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci

step "vfnvme serve (1 poll group): two drives, one subsystem each, on 127.0.0.1:4420 and :8009"
serve_start serve /tmp/serve.toml

step "nvme discover on the discovery listener (8009)"
ensure_hostnqn
capture discover nvme discover -t tcp -a 127.0.0.1 -s 8009 -o json
expect_eq "$(capture_rc discover)" 0 "exit status of nvme discover"
expect_grep "NQN0" /tmp/capture/discover.out "the discovery log"
expect_grep "NQN1" /tmp/capture/discover.out "the discovery log"

step "nvme connect to both subsystems (4420)"
connect_tcp NQN0 4420
connect_tcp NQN1 4420
C0=$(fabric_ctrl NQN0); F0=$(fabric_block NQN0)
C1=$(fabric_ctrl NQN1); F1=$(fabric_block NQN1)
echo "VFNVME-TARGET-INFO: F0=$F0 C0=$C0 F1=$F1 C1=$C1"

step "nvme list, id-ctrl, id-ns, capacity"
capture nvme_list nvme list -o json
run nvme list
capture id_ctrl0 nvme id-ctrl "/dev/$C0" -o json
capture id_ctrl1 nvme id-ctrl "/dev/$C1" -o json
capture id_ns0 nvme id-ns "/dev/$F0" -o json
capture id_ns1 nvme id-ns "/dev/$F1" -o json
run nvme id-ctrl "/dev/$F0"
expect_eq "$(blockdev --getsize64 "/dev/$F0")" "$DRIVE0_NS1_BYTES" "size of /dev/$F0"
expect_eq "$(blockdev --getsize64 "/dev/$F1")" "$DRIVE1_NS1_BYTES" "size of /dev/$F1"
"#;

const SCRIPT_TAIL: &str = r#"
step "write vfnvme pattern (seed SEED) over the fabric to drive 0, read it back over the fabric"
run sh -c "vfnvme pattern --block-size 512 --blocks $BLOCKS0 --start-lba 0 --seed SEED >/tmp/expected0"
run dd if=/tmp/expected0 of="/dev/$F0" bs=1M oflag=direct
run dd if="/dev/$F0" of=/tmp/fabric0 bs=1M iflag=direct
cmp_or_explain /tmp/expected0 /tmp/fabric0 "what the fabric read back"
rm -f /tmp/fabric0
echo "VFNVME-TARGET-CHECK: fabric readback ok"

step "nvme disconnect"
disconnect_tcp NQN0
disconnect_tcp NQN1

step "SIGTERM vfnvme serve"
serve_stop
expect_eq "$(capture_rc serve)" 0 "exit status of vfnvme serve after SIGTERM"

step "setup.sh reset: the kernel nvme driver reads what was written over the fabric"
run setup.sh reset
expect_driver "$B0" nvme
wait_until 30 has_block_device "$B0"
run dd if="/dev/$(block_of "$B0")" of=/tmp/kernel0 bs=1M iflag=direct
cmp_or_explain /tmp/expected0 /tmp/kernel0 "what the kernel nvme driver read"
echo "VFNVME-TARGET-CHECK: kernel readback ok"

# Last, so that a hang here (bounded: SIGKILL) leaves the checks above intact.
step "vfnvme serve with 2 poll groups: both drives, fio verify on both at once"
run env HUGEMEM=256 setup.sh config
write_serve_config /tmp/serve2.toml 2 "NQN0=$B0" "NQN1=$B1"
SERVE_READY_SECONDS=20 serve_try serve2 /tmp/serve2.toml
if [ "$(serve_try_result)" = ready ]; then
	connect_tcp NQN0 4420
	connect_tcp NQN1 4420
	capture fio_two_groups fio --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
		--verify=crc32c --verify_fatal=1 --output-format=json \
		--name=job0 --filename="/dev/$(fabric_block NQN0)" --size=8M \
		--name=job1 --filename="/dev/$(fabric_block NQN1)" --size=8M
	disconnect_tcp NQN0
	disconnect_tcp NQN1
	serve_stop
fi
"#;

fn script() -> String {
    let mut script = SCRIPT_HEAD.to_owned();
    script.push_str("\nstep \"fio randwrite + crc32c verify on the fabric block devices\"\n");
    for (name, jobs, block_size, depth) in FIO_RUNS {
        let mut command = format!(
            "capture {name} fio --direct=1 --ioengine=libaio --rw=randwrite --bs={block_size} \
             --iodepth={depth} --verify=crc32c --verify_fatal=1 --output-format=json"
        );
        for (index, (device, offset, size)) in jobs.iter().enumerate() {
            command.push_str(&format!(
                " --name=job{index} --filename=/dev/${device} --offset={offset} --size={size}"
            ));
        }
        script.push_str(&command);
        script.push_str(&format!(
            "\nexpect_eq \"$(capture_rc {name})\" 0 \"exit status of fio ({name})\"\n"
        ));
    }
    script.push_str(SCRIPT_TAIL);
    script
        .replace("NQN0", NQN0)
        .replace("NQN1", NQN1)
        .replace("SEED", &PATTERN_SEED.to_string())
}

fn boot() -> &'static Outcome {
    static BOOT: OnceLock<Result<Outcome, String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        Scenario::new("target", &script())
            .drive(Drive::new(DRIVE0_SERIAL, DRIVE_BYTES))
            .drive(Drive::new(DRIVE1_SERIAL, DRIVE_BYTES))
            .memory_mib(2048)
            .needs_vfnvme()
            .run()
            .map_err(|error| format!("scenario target: cannot run: {error}"))
    })
    .as_ref()
    .unwrap_or_else(|error| panic!("{error}"))
}

/// A guest line `VFNVME-TARGET-INFO: ... KEY=VALUE ...`.
fn info(outcome: &Outcome, key: &str) -> String {
    let prefix = format!("{key}=");
    outcome
        .console
        .iter()
        .filter_map(|line| line.strip_prefix("VFNVME-TARGET-INFO: "))
        .flat_map(str::split_whitespace)
        .find_map(|word| word.strip_prefix(&prefix))
        .map(str::to_owned)
        .unwrap_or_else(|| outcome.fail(&format!("the guest printed no {key}")))
}

fn trimmed(value: &Value) -> Option<&str> {
    value.as_str().map(str::trim)
}

#[test]
fn serve_refuses_a_drive_the_kernel_owns_and_points_to_setup_sh() {
    let outcome = boot();
    let capture: Capture = outcome.expect_capture("serve_kernel_bound");
    if capture.exit_code != 1 {
        outcome.fail(&format!(
            "vfnvme serve with a kernel-bound drive: exit {}, expected 1 (124/143: it did not \
             stop by itself)\nstderr:\n{}",
            capture.exit_code, capture.stderr
        ));
    }
    if !capture.stderr.contains("setup.sh") {
        outcome.fail(&format!(
            "vfnvme serve with a kernel-bound drive: stderr does not mention setup.sh:\n{}",
            capture.stderr
        ));
    }
    let bdf = info(outcome, "kernel_bound");
    if !capture.stderr.contains(&bdf) {
        outcome.fail(&format!(
            "vfnvme serve with a kernel-bound drive: stderr does not name the drive {bdf}:\n{}",
            capture.stderr
        ));
    }
}

#[test]
fn discovery_lists_both_subsystems() {
    let outcome = boot();
    let discovery = outcome.json("discover");
    let records = discovery["records"]
        .as_array()
        .unwrap_or_else(|| outcome.fail(&format!("no records in {discovery:#}")));
    for nqn in [NQN0, NQN1] {
        let entries: Vec<&Value> = records
            .iter()
            .filter(|record| record["subnqn"] == nqn)
            .collect();
        let on_4420 = entries.iter().any(|record| {
            [
                ("trtype", "tcp"),
                ("traddr", "127.0.0.1"),
                ("trsvcid", "4420"),
            ]
            .iter()
            .all(|(key, value)| trimmed(&record[*key]) == Some(value))
        });
        if !on_4420 {
            outcome.fail(&format!(
                "no discovery record for {nqn} on tcp 127.0.0.1:4420: {discovery:#}"
            ));
        }
    }
}

#[test]
fn id_ctrl_id_ns_and_nvme_list_show_the_emulated_drives() {
    let outcome = boot();
    let list = outcome.json("nvme_list");
    for (index, nqn, serial) in [(0, NQN0, DRIVE0_SERIAL), (1, NQN1, DRIVE1_SERIAL)] {
        let id_ctrl = outcome.json(&format!("id_ctrl{index}"));
        let mut problems = Vec::new();
        if trimmed(&id_ctrl["sn"]) != Some(serial) {
            problems.push(format!("sn is {}, expected {serial}", id_ctrl["sn"]));
        }
        if trimmed(&id_ctrl["mn"]) != Some(QEMU_MODEL) {
            problems.push(format!("mn is {}, expected {QEMU_MODEL}", id_ctrl["mn"]));
        }
        if trimmed(&id_ctrl["subnqn"]) != Some(nqn) {
            problems.push(format!("subnqn is {}, expected {nqn}", id_ctrl["subnqn"]));
        }
        let id_ns = outcome.json(&format!("id_ns{index}"));
        let blocks = DRIVE_BYTES / 512;
        if id_ns["nsze"].as_u64() != Some(blocks) {
            problems.push(format!("nsze is {}, expected {blocks}", id_ns["nsze"]));
        }
        let format = id_ns["flbas"].as_u64().unwrap_or(0) & 0xf;
        let lba_shift = id_ns["lbafs"][format as usize]["ds"].as_u64();
        if lba_shift != Some(9) {
            problems.push(format!(
                "LBA format {format} has ds {lba_shift:?}, expected 9 (512 B)"
            ));
        }
        let device = format!("/dev/{}", info(outcome, &format!("F{index}")));
        match list["Devices"]
            .as_array()
            .and_then(|devices| devices.iter().find(|d| d["DevicePath"] == device.as_str()))
        {
            None => problems.push(format!("nvme list has no {device}")),
            Some(listed) => {
                if trimmed(&listed["SerialNumber"]) != Some(serial)
                    || trimmed(&listed["ModelNumber"]) != Some(QEMU_MODEL)
                    || listed["PhysicalSize"].as_u64() != Some(DRIVE_BYTES)
                {
                    problems.push(format!("nvme list shows {listed}"));
                }
            }
        }
        if !problems.is_empty() {
            outcome.fail(&format!(
                "{nqn} ({serial}): {}\nid-ctrl: {id_ctrl}",
                problems.join("; ")
            ));
        }
    }
}

#[test]
fn fio_randwrite_with_crc32c_verify_passes_at_qd1_and_qd32() {
    let outcome = boot();
    for (name, jobs, _, _) in FIO_RUNS {
        let result = outcome.json(name);
        for (index, (_, _, size)) in jobs.iter().enumerate() {
            let job = &result["jobs"][index];
            let (error, written, read) = (
                job["error"].as_u64(),
                job["write"]["io_bytes"].as_u64(),
                job["read"]["io_bytes"].as_u64(),
            );
            if error != Some(0) || written != Some(*size) || read != Some(*size) {
                outcome.fail(&format!(
                    "{name} job{index}: error {error:?}, wrote {written:?} and verified \
                     {read:?} bytes, expected 0 errors and {size} bytes each"
                ));
            }
        }
    }
}

#[test]
fn data_written_over_the_fabric_reads_back_over_the_fabric_and_through_the_kernel() {
    let outcome = boot();
    for check in ["fabric readback ok", "kernel readback ok"] {
        let line = format!("VFNVME-TARGET-CHECK: {check}");
        if !outcome.console.contains(&line) {
            outcome.assert_passed();
            outcome.fail(&format!("the guest did not get to `{check}`"));
        }
    }
}

#[test]
fn serve_exits_0_on_sigterm_and_logs_no_errors() {
    let outcome = boot();
    outcome.assert_passed();
    let serve = outcome.expect_capture("serve");
    if serve.exit_code != 0 {
        outcome.fail(&format!(
            "vfnvme serve exited {} after SIGTERM:\n{}",
            serve.exit_code, serve.stderr
        ));
    }
    let bad: Vec<&str> = serve
        .stderr
        .lines()
        .filter(|line| line.contains("ERROR") || line.contains("panicked"))
        .collect();
    if !bad.is_empty() {
        outcome.fail(&format!("vfnvme serve logged errors:\n{}", bad.join("\n")));
    }
}

#[test]
fn serve_with_two_poll_groups_starts_serves_both_drives_and_stops() {
    let outcome = boot();
    let result = outcome
        .console
        .iter()
        .find_map(|line| line.strip_prefix("VFNVME-SERVE-TRY: serve2 "))
        .unwrap_or_else(|| outcome.fail("the guest did not get to serve with 2 poll groups"));
    if result != "ready" {
        let serve = outcome.expect_capture("serve2");
        outcome.fail(&format!(
            "vfnvme serve with cores = 2: {result} (killed after 20 s without its ready line; \
             exit {})\nstderr:\n{}",
            serve.exit_code, serve.stderr
        ));
    }
    let result = outcome.json("fio_two_groups");
    for index in 0..2 {
        let job = &result["jobs"][index];
        if job["error"].as_u64() != Some(0) || job["read"]["io_bytes"].as_u64() != Some(8 << 20) {
            outcome.fail(&format!("fio with 2 poll groups, job{index}: {job}"));
        }
    }
    let serve = outcome.expect_capture("serve2");
    if serve.exit_code != 0 {
        outcome.fail(&format!(
            "vfnvme serve (cores = 2) exited {} after SIGTERM:\n{}",
            serve.exit_code, serve.stderr
        ));
    }
}
