//! The `vfnvme` binary against the simulated controller (`sim`, default configuration).
//!
//! perf runs are serialised: the simulator and the perf loop both busy-poll, and several pairs
//! of them on a small machine starve each other. Verify runs get a generous `-t` because it
//! only caps them: a pass over the 8 MiB namespace ends on its own well before.

mod common;

use std::process::Output;
use std::sync::Mutex;

use common::{
    assert_clean_failure, assert_success, json_stdout, stderr, vfnvme, ONE_SECOND_OF_READS,
};

const SIM_BLOCKS: u64 = 16384;
const SIM_BLOCK_SIZE: u64 = 512;
const VERIFY_TIME_CAP: &str = "60";

static PERF_RUNS: Mutex<()> = Mutex::new(());

fn perf(args: &[&str]) -> Output {
    let _serial = PERF_RUNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    vfnvme(&[&["perf", "--device", "sim"], args].concat())
}

#[test]
fn identify_json_describes_the_simulator() {
    let output = vfnvme(&["identify", "sim", "--json"]);
    assert_success(&output);
    let identify = json_stdout(&output);
    assert_eq!(identify["serial"], "VFNVME-SIM-0001");
    assert_eq!(identify["model"], "vfnvme simulated controller");
    assert_eq!(identify["firmware"], "1.0");
    assert_eq!(identify["mdts_bytes"], 32 * 4096);
    assert!(identify["vid"].is_u64());
    assert_eq!(identify["io_queues"], 16);
    let namespaces = identify["namespaces"]
        .as_array()
        .expect("namespaces is a list");
    assert_eq!(namespaces.len(), 1);
    assert_eq!(namespaces[0]["nsid"], 1);
    assert_eq!(namespaces[0]["block_size"], SIM_BLOCK_SIZE);
    assert_eq!(namespaces[0]["blocks"], SIM_BLOCKS);
}

#[test]
fn identify_text_shows_controller_and_namespace() {
    let output = vfnvme(&["identify", "sim"]);
    assert_success(&output);
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "VFNVME-SIM-0001",
        "vfnvme simulated controller",
        "Namespace 1",
        "16384",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
}

fn check_verify_pass(output: &Output) {
    assert_success(output);
    let summary = json_stdout(output);
    assert_eq!(summary["verify_mismatches"], 0, "{summary:#}");
    assert_eq!(summary["errors"], 0, "{summary:#}");
    assert_eq!(
        summary["verified_bytes"],
        SIM_BLOCKS * SIM_BLOCK_SIZE,
        "{summary:#}"
    );
    assert!(summary["iops"].as_f64().unwrap() > 0.0);
    for key in ["mean", "p50", "p99", "p999", "max"] {
        assert!(
            summary["lat_us"][key].is_f64(),
            "lat_us.{key} in {summary:#}"
        );
    }
}

/// A verify run with `args` (queue depth, I/O size...) must cover the namespace.
fn verify_passes(args: &[&str]) {
    let verify = ["-w", "verify", "-t", VERIFY_TIME_CAP, "--json"];
    check_verify_pass(&perf(&[args, &verify[..]].concat()));
}

#[test]
fn verify_at_queue_depth_1_covers_the_namespace() {
    verify_passes(&["-q", "1", "-o", "4096"]);
}

#[test]
fn verify_at_queue_depth_32_on_two_queue_pairs_covers_the_namespace() {
    verify_passes(&["-q", "32", "--qpairs", "2", "-o", "4096"]);
}

#[test]
fn verify_with_a_cut_short_last_chunk_and_another_seed() {
    // 16384 blocks are not a whole number of 24 KiB chunks: the last one is shorter.
    verify_passes(&["-q", "8", "-o", "24k", "--seed", "77"]);
}

#[test]
fn verify_existing_finds_data_that_is_not_there() {
    // A fresh simulator's namespace reads as zeros, which is not the pattern.
    let args = [
        "-q",
        "4",
        "-o",
        "4096",
        "-w",
        "verify",
        "--verify-existing",
        "-t",
        "2",
        "--json",
    ];
    let output = perf(&args);
    assert_clean_failure(&output, "differ from the pattern");
    let summary = json_stdout(&output);
    assert_eq!(summary["verify_mismatches"], SIM_BLOCKS);
}

#[test]
fn randread_does_io_and_reports_progress_on_stderr_only() {
    let output = perf(&[
        "-q", "32", "-o", "4096", "-w", "randread", "-t", "2", "--json",
    ]);
    assert_success(&output);
    let summary = json_stdout(&output);
    assert!(summary["ios"].as_u64().unwrap() > 0, "{summary:#}");
    assert_eq!(summary["errors"], 0);
    assert!(summary.get("verified_bytes").is_none());
    assert!(
        stderr(&output).contains("IOPS"),
        "no progress line: {}",
        stderr(&output)
    );
}

#[test]
fn sequential_write_and_human_summary() {
    let output = perf(&["-q", "4", "-o", "8k", "-w", "write", "-t", "1"]);
    assert_success(&output);
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in ["IOPS:", "MiB/s:", "p99.9", "Errors:     0"] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
}

#[test]
fn io_size_not_a_multiple_of_the_block_size_fails_cleanly() {
    let output = perf(&["-q", "1", "-o", "1000", "-w", "read", "-t", "1"]);
    assert_clean_failure(&output, "multiple of");
}

#[test]
fn io_size_above_max_transfer_fails_cleanly() {
    let output = perf(&["-q", "1", "-o", "1m", "-w", "read", "-t", "1"]);
    assert_clean_failure(&output, "maximum transfer");
}

#[test]
fn missing_namespace_fails_cleanly() {
    let output = perf(&[
        "--nsid", "2", "-q", "1", "-o", "4096", "-w", "read", "-t", "1",
    ]);
    assert_clean_failure(&output, "namespace 2");
}

#[test]
fn missing_pci_device_points_to_setup_sh() {
    assert_clean_failure(&vfnvme(&["identify", "0000:ff:1f.7"]), "setup.sh");
}

#[test]
fn verify_existing_without_verify_is_a_usage_error() {
    let args = [
        &["perf", "--device", "sim"],
        ONE_SECOND_OF_READS,
        &["--verify-existing"],
    ];
    let output = vfnvme(&args.concat());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn pattern_prints_the_documented_words() {
    let output = vfnvme(&[
        "pattern",
        "--block-size",
        "512",
        "--blocks",
        "2",
        "--start-lba",
        "3",
    ]);
    assert_success(&output);
    assert_eq!(output.stdout.len(), 1024);
    let word =
        |index: usize| u64::from_le_bytes(output.stdout[index * 8..][..8].try_into().unwrap());
    assert_eq!(word(2), 0x7777_905C_B16E_8F19);
    // Block 4 word 0: 4 * 0x9E37_79B9_7F4A_7C15 ^ 1.rotate_left(17).
    assert_eq!(
        word(64),
        4u64.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (1 << 17)
    );
}

#[test]
fn pattern_rejects_a_block_size_of_partial_words() {
    assert_clean_failure(
        &vfnvme(&["pattern", "--block-size", "12", "--blocks", "1"]),
        "multiple of 8",
    );
}
