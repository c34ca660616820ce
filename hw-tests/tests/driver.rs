//! The `vfnvme` binary against QEMU's emulated NVMe drives bound to vfio-pci: identify, perf
//! with data verification on two drives at once, and its error paths.
//!
//! One guest boot runs every command; each `#[test]` checks one part of what it printed, so a
//! failure names the behaviour that broke while the suite boots only once.

use std::sync::OnceLock;

use serde_json::Value;
use vfnvme_hw_tests::{Capture, Drive, Outcome, Scenario};

const DRIVE0_SERIAL: &str = "VFNVMEDRV0";
/// Small drives, so that a verify pass over the whole namespace takes seconds under TCG.
const DRIVE0_BYTES: u64 = 32 << 20;
const DRIVE1_SERIAL: &str = "VFNVMEDRV1";
const DRIVE1_BYTES: u64 = 48 << 20;
/// QEMU's emulated NVMe namespaces default to 512-byte logical blocks.
const QEMU_BLOCK_SIZE: u64 = 512;
/// A PCI address no drive has.
const MISSING_BDF: &str = "0000:00:1f.7";

// Drives 0 and 1 go to vfio-pci; drive 2 stays on the kernel's nvme driver.
const SCRIPT: &str = r#"
B0=$DRIVE0_BDF; B1=$DRIVE1_BDF; B2=$DRIVE2_BDF

step "setup.sh config (drive 2 blocked)"
run env PCI_BLOCKED="$B2" HUGEMEM=256 setup.sh config
expect_driver "$B0" vfio-pci
expect_driver "$B1" vfio-pci
expect_driver "$B2" nvme

step "identify"
capture identify0 vfnvme identify "$B0" --json
capture identify1 vfnvme identify "$B1" --json
capture identify0_text vfnvme identify "$B0"

# Each verify run makes one whole pass over its namespace (-t is only a safety net); the two
# rounds cover QD1 and QD32 with one and two queue pairs, two processes on two drives at once.
step "perf verify on two drives in parallel: QD1 x 1 qpair, QD32 x 2 qpairs"
capture_silent perf_q1_p1 vfnvme perf --device "$B0" -q 1 -o 4096 -w verify -t 120 --json &
pid_a=$!
capture_silent perf_q32_p2 vfnvme perf --device "$B1" -q 32 --qpairs 2 -o 4096 -w verify -t 120 --seed 7 --json &
pid_b=$!
wait "$pid_a" || true
wait "$pid_b" || true
emit_capture perf_q1_p1
emit_capture perf_q32_p2

step "perf verify on two drives in parallel: QD32 x 1 qpair, QD1 x 2 qpairs"
capture_silent perf_q32_p1 vfnvme perf --device "$B0" -q 32 -o 4096 -w verify -t 120 --seed 3 --json &
pid_a=$!
capture_silent perf_q1_p2 vfnvme perf --device "$B1" -q 1 --qpairs 2 -o 4096 -w verify -t 120 --seed 5 --json &
pid_b=$!
wait "$pid_a" || true
wait "$pid_b" || true
emit_capture perf_q32_p1
emit_capture perf_q1_p2

step "error paths"
capture identify_kernel_bound vfnvme identify "$B2" --json
capture identify_missing vfnvme identify "MISSING_BDF" --json
echo 0 >/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
expect_eq "$(hugepages_total)" 0 "hugepages after releasing them all"
capture identify_no_hugepages vfnvme identify "$B0" --json
"#;

fn boot() -> &'static Outcome {
    static BOOT: OnceLock<Result<Outcome, String>> = OnceLock::new();
    let outcome = BOOT
        .get_or_init(|| {
            Scenario::new("driver", &SCRIPT.replace("MISSING_BDF", MISSING_BDF))
                .drive(Drive::new(DRIVE0_SERIAL, DRIVE0_BYTES))
                .drive(Drive::new(DRIVE1_SERIAL, DRIVE1_BYTES))
                .drive(Drive::new("VFNVMEDRV2", 32 << 20))
                .memory_mib(2048)
                .needs_vfnvme()
                .run()
                .map_err(|error| format!("scenario driver: cannot run: {error}"))
        })
        .as_ref()
        .unwrap_or_else(|error| panic!("{error}"));
    outcome.assert_passed();
    outcome
}

/// The capture, after checking that the binary did not panic.
fn capture(outcome: &Outcome, name: &str) -> Capture {
    let capture = outcome.expect_capture(name);
    if capture.stderr.contains("panicked") {
        outcome.fail(&format!("vfnvme panicked in {name}: {}", capture.stderr));
    }
    capture
}

/// Parses `--json` output: the whole stdout, or failing that its last JSON object (live
/// progress lines may precede it).
fn json(outcome: &Outcome, name: &str, capture: &Capture) -> Value {
    let stdout = capture.stdout.trim();
    if let Ok(value) = serde_json::from_str(stdout) {
        return value;
    }
    stdout
        .match_indices('{')
        .map(|(at, _)| at)
        .filter(|&at| at == 0 || stdout[..at].ends_with('\n'))
        .rev()
        .find_map(|at| serde_json::from_str(&stdout[at..]).ok())
        .unwrap_or_else(|| {
            outcome.fail(&format!(
                "{name}: stdout is not JSON (exit {}):\n{}\nstderr:\n{}",
                capture.exit_code, capture.stdout, capture.stderr
            ))
        })
}

fn check_identify(outcome: &Outcome, name: &str, serial: &str, bytes: u64) {
    let capture = capture(outcome, name);
    if capture.exit_code != 0 {
        outcome.fail(&format!(
            "{name}: exit {}: {}",
            capture.exit_code, capture.stderr
        ));
    }
    let identify = json(outcome, name, &capture);
    let problems = identify_problems(&identify, serial, bytes);
    if !problems.is_empty() {
        outcome.fail(&format!(
            "{name}: {}\nJSON: {identify:#}",
            problems.join("; ")
        ));
    }
}

fn identify_problems(identify: &Value, serial: &str, bytes: u64) -> Vec<String> {
    let mut problems = Vec::new();
    if identify["serial"].as_str().map(str::trim) != Some(serial) {
        problems.push(format!(
            "serial is {}, expected {serial}",
            identify["serial"]
        ));
    }
    if identify["model"].as_str().map(str::trim) != Some("QEMU NVMe Ctrl") {
        problems.push(format!(
            "model is {}, expected QEMU NVMe Ctrl",
            identify["model"]
        ));
    }
    for key in ["firmware", "mdts_bytes"] {
        if identify[key].is_null() {
            problems.push(format!("{key} is missing"));
        }
    }
    let namespace = identify["namespaces"]
        .as_array()
        .and_then(|namespaces| namespaces.iter().find(|ns| ns["nsid"] == 1));
    match namespace {
        None => problems.push("no namespace with nsid 1".to_owned()),
        Some(namespace) => {
            if namespace["block_size"].as_u64() != Some(QEMU_BLOCK_SIZE) {
                problems.push(format!(
                    "block_size is {}, expected {QEMU_BLOCK_SIZE}",
                    namespace["block_size"]
                ));
            }
            let expected_blocks = bytes / QEMU_BLOCK_SIZE;
            if namespace["blocks"].as_u64() != Some(expected_blocks) {
                problems.push(format!(
                    "blocks is {}, expected {expected_blocks} ({bytes} bytes)",
                    namespace["blocks"]
                ));
            }
        }
    }
    problems
}

#[test]
fn identify_reports_what_qemu_was_given() {
    let outcome = boot();
    check_identify(outcome, "identify0", DRIVE0_SERIAL, DRIVE0_BYTES);
    check_identify(outcome, "identify1", DRIVE1_SERIAL, DRIVE1_BYTES);
    let text = capture(outcome, "identify0_text");
    if text.exit_code != 0 || !text.stdout.contains(DRIVE0_SERIAL) {
        outcome.fail(&format!(
            "identify without --json: exit {}, stdout does not show the serial:\n{}",
            text.exit_code, text.stdout
        ));
    }
}

#[test]
fn perf_verify_on_two_drives_at_once_finds_no_mismatch() {
    let outcome = boot();
    for (name, drive_bytes) in [
        ("perf_q1_p1", DRIVE0_BYTES),
        ("perf_q32_p2", DRIVE1_BYTES),
        ("perf_q32_p1", DRIVE0_BYTES),
        ("perf_q1_p2", DRIVE1_BYTES),
    ] {
        let capture = capture(outcome, name);
        if capture.exit_code != 0 {
            outcome.fail(&format!(
                "{name}: exit {}\nstdout:\n{}\nstderr:\n{}",
                capture.exit_code, capture.stdout, capture.stderr
            ));
        }
        let summary = json(outcome, name, &capture);
        for (key, expected) in [("verify_mismatches", 0), ("errors", 0)] {
            if summary[key].as_u64() != Some(expected) {
                outcome.fail(&format!(
                    "{name}: {key} is {}, expected {expected}",
                    summary[key]
                ));
            }
        }
        if summary["verified_bytes"].as_u64() != Some(drive_bytes)
            || summary["verify_complete"].as_bool() != Some(true)
        {
            outcome.fail(&format!(
                "{name}: verified_bytes is {} (verify_complete {}), expected the whole \
                 {drive_bytes}-byte namespace",
                summary["verified_bytes"], summary["verify_complete"]
            ));
        }
        if summary["iops"].as_f64().is_none_or(|iops| iops <= 0.0) {
            outcome.fail(&format!(
                "{name}: iops is {}, expected > 0",
                summary["iops"]
            ));
        }
        for key in ["mean", "p50", "p99", "p999", "max"] {
            if summary["lat_us"][key].as_f64().is_none() {
                outcome.fail(&format!("{name}: lat_us.{key} is missing: {summary}"));
            }
        }
    }
}

fn expect_clean_failure(outcome: &Outcome, name: &str, message_must_mention: &[&str]) {
    let capture = capture(outcome, name);
    if capture.exit_code == 0 {
        outcome.fail(&format!(
            "{name}: exit 0, expected a failure; stdout:\n{}",
            capture.stdout
        ));
    }
    let stderr = capture.stderr.to_lowercase();
    if stderr.trim().is_empty() {
        outcome.fail(&format!(
            "{name}: exit {} but nothing on stderr",
            capture.exit_code
        ));
    }
    if !message_must_mention
        .iter()
        .any(|word| stderr.contains(word))
    {
        outcome.fail(&format!(
            "{name}: stderr does not mention any of {message_must_mention:?}:\n{}",
            capture.stderr
        ));
    }
}

#[test]
fn identify_on_a_drive_the_kernel_owns_points_to_setup_sh() {
    expect_clean_failure(boot(), "identify_kernel_bound", &["setup.sh"]);
}

#[test]
fn identify_on_a_missing_address_fails() {
    expect_clean_failure(
        boot(),
        "identify_missing",
        &[MISSING_BDF, "not found", "no such"],
    );
}

#[test]
fn identify_without_hugepages_says_so() {
    expect_clean_failure(boot(), "identify_no_hugepages", &["hugepage"]);
}

/// Every vfnvme command in this boot, with what it printed on stderr.
const VFNVME_CAPTURES: &[&str] = &[
    "identify0",
    "identify1",
    "identify0_text",
    "perf_q1_p1",
    "perf_q32_p2",
    "perf_q32_p1",
    "perf_q1_p2",
];

/// A successful run logs no error: in particular the driver must not report (and leak) DMA
/// buffer pools dropped with buffers "still out" when perf exits normally.
#[test]
fn successful_commands_log_no_errors_and_leak_no_dma_buffer_pools() {
    let outcome = boot();
    let mut problems = Vec::new();
    for name in VFNVME_CAPTURES {
        let capture = capture(outcome, name);
        for line in capture.stderr.lines() {
            if line.contains("ERROR") || line.contains("buffer pool dropped") {
                problems.push(format!("{name}: {line}"));
            }
        }
    }
    if !problems.is_empty() {
        outcome.fail(&format!(
            "successful commands logged errors:\n{}",
            problems.join("\n")
        ));
    }
}
