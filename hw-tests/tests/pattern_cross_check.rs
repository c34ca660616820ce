//! `vfnvme perf -w verify` checked by an independent reader and writer: the Linux kernel's nvme
//! driver and `dd`, against the bytes `vfnvme pattern` documents.
//!
//! (a) vfnvme writes the pattern through vfio; the drive goes back to the kernel; `dd` reads the
//!     whole namespace and `cmp` compares it with `vfnvme pattern`.
//! (b) `dd` writes `vfnvme pattern` (another seed) through the kernel; the drive goes to vfio;
//!     `vfnvme perf -w verify --verify-existing` (read-only) must find no mismatch, and must
//!     find mismatches when told the wrong seed.
//!
//! One boot; each `#[test]` checks one direction.

use std::sync::OnceLock;

use serde_json::Value;
use vfnvme_hw_tests::{Drive, Outcome, Scenario};

const DRIVE_BYTES: u64 = 32 << 20;
const SEED_VFNVME_WRITES: u64 = 11;
const SEED_KERNEL_WRITES: u64 = 23;

const SCRIPT: &str = r#"
B0=$DRIVE0_BDF
BLOCKS=$((DRIVE0_NS1_BYTES / 512))
has_block_device() { [ -n "$(block_of "$1")" ] && [ -b "/dev/$(block_of "$1")" ]; }
# cmp_or_explain EXPECTED ACTUAL WHAT: cmp, showing the first differing bytes on failure.
cmp_or_explain() {
	if ! cmp "$1" "$2"; then
		echo "first differing bytes (offset, expected, actual; octal):"
		cmp -l "$1" "$2" 2>&1 | head -n 16
		fail "$3 differs from vfnvme pattern"
	fi
}

step "a: vfnvme perf -w verify writes the pattern (seed SEED_A) through vfio"
run env HUGEMEM=128 setup.sh config
expect_driver "$B0" vfio-pci
capture write_a vfnvme perf --device "$B0" -q 8 -o 4096 -w verify -t 120 --seed SEED_A --json
expect_eq "$(capture_rc write_a)" 0 "exit code of vfnvme perf -w verify"

step "a: the kernel nvme driver reads back what vfnvme wrote"
run setup.sh reset
expect_driver "$B0" nvme
wait_until 30 has_block_device "$B0"
BLOCK0=$(block_of "$B0")
run sh -c "vfnvme pattern --block-size 512 --blocks $BLOCKS --start-lba 0 --seed SEED_A >/tmp/expected_a"
run dd if="/dev/$BLOCK0" of=/tmp/actual_a bs=1M iflag=direct
cmp_or_explain /tmp/expected_a /tmp/actual_a "what the kernel read"
rm -f /tmp/expected_a /tmp/actual_a
echo "VFNVME-CROSS-CHECK: a ok"

step "b: the kernel nvme driver writes vfnvme pattern (seed SEED_B)"
run sh -c "vfnvme pattern --block-size 512 --blocks $BLOCKS --start-lba 0 --seed SEED_B >/tmp/expected_b"
run dd if=/tmp/expected_b of="/dev/$BLOCK0" bs=1M oflag=direct conv=fsync
run sync
# What the kernel wrote is what it reads back (so a failure below is vfnvme's reading).
run dd if="/dev/$BLOCK0" of=/tmp/actual_b bs=1M iflag=direct
cmp_or_explain /tmp/expected_b /tmp/actual_b "what the kernel wrote"
rm -f /tmp/expected_b /tmp/actual_b

step "b: vfnvme perf -w verify --verify-existing reads it through vfio"
run env HUGEMEM=128 setup.sh config
expect_driver "$B0" vfio-pci
capture check_b vfnvme perf --device "$B0" -q 8 -o 4096 -w verify --verify-existing -t 120 --seed SEED_B --json
capture check_b_wrong_seed vfnvme perf --device "$B0" -q 8 -o 4096 -w verify --verify-existing -t 120 --seed SEED_A --json
# Read-only: the right seed still matches after the wrong-seed pass.
capture check_b_again vfnvme perf --device "$B0" -q 1 -o 4096 -w verify --verify-existing -t 120 --seed SEED_B --json
"#;

fn boot() -> &'static Outcome {
    static BOOT: OnceLock<Result<Outcome, String>> = OnceLock::new();
    let outcome = BOOT
        .get_or_init(|| {
            let script = SCRIPT
                .replace("SEED_A", &SEED_VFNVME_WRITES.to_string())
                .replace("SEED_B", &SEED_KERNEL_WRITES.to_string());
            Scenario::new("pattern-cross-check", &script)
                .drive(Drive::new("VFNVMEXCHK0", DRIVE_BYTES))
                .needs_vfnvme()
                .run()
                .map_err(|error| format!("scenario pattern-cross-check: cannot run: {error}"))
        })
        .as_ref()
        .unwrap_or_else(|error| panic!("{error}"));
    outcome
}

/// The summary JSON of a `vfnvme perf --json` capture.
fn summary(outcome: &Outcome, name: &str) -> (i32, Value) {
    let capture = outcome.expect_capture(name);
    let stdout = capture.stdout.trim();
    let json = stdout
        .find('{')
        .and_then(|at| serde_json::from_str(&stdout[at..]).ok())
        .unwrap_or_else(|| {
            outcome.fail(&format!(
                "{name}: exit {}, stdout is not JSON:\n{stdout}\nstderr:\n{}",
                capture.exit_code, capture.stderr
            ))
        });
    (capture.exit_code, json)
}

fn expect_verified(outcome: &Outcome, name: &str, mismatches_wanted: bool) {
    let (exit_code, json) = summary(outcome, name);
    let mismatches = json["verify_mismatches"].as_u64();
    if mismatches_wanted {
        // Whether perf goes on after the first bad block is its own business.
        if mismatches.unwrap_or(0) == 0 || exit_code == 0 {
            outcome.fail(&format!(
                "{name}: the wrong seed must give mismatches and a non-zero exit; exit \
                 {exit_code}: {json}"
            ));
        }
        return;
    }
    if json["verified_bytes"].as_u64() != Some(DRIVE_BYTES)
        || json["verify_complete"].as_bool() != Some(true)
    {
        outcome.fail(&format!(
            "{name}: verified_bytes {} verify_complete {}, expected the whole {DRIVE_BYTES}-byte \
             namespace: {json}",
            json["verified_bytes"], json["verify_complete"]
        ));
    }
    if mismatches != Some(0) || json["errors"].as_u64() != Some(0) || exit_code != 0 {
        outcome.fail(&format!(
            "{name}: exit {exit_code}, expected 0 mismatches and 0 errors: {json}"
        ));
    }
}

#[test]
fn kernel_reads_exactly_the_pattern_vfnvme_wrote() {
    let outcome = boot();
    if !outcome
        .console
        .iter()
        .any(|line| line == "VFNVME-CROSS-CHECK: a ok")
    {
        outcome.fail("direction a (vfnvme writes, kernel reads) did not complete");
    }
    expect_verified(outcome, "write_a", false);
}

#[test]
fn vfnvme_verifies_the_pattern_the_kernel_wrote() {
    let outcome = boot();
    outcome.assert_passed();
    expect_verified(outcome, "check_b", false);
    expect_verified(outcome, "check_b_wrong_seed", true);
    expect_verified(outcome, "check_b_again", false);
}
