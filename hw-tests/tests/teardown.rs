//! Teardown of `vfnvme serve` in the QEMU guest, under load (issue "Poll-group lifecycle",
//! hardware-in-the-loop part). One boot, two phases (`run_phase` in guest/lib.sh), each its
//! own `#[test]`:
//!
//! 1. `sigterm` (guest/teardown_sigterm.sh): two drives exported by serve with 2 poll groups;
//!    the kernel initiator writes to both (4 `pattern_writer` loops logging every acknowledged
//!    chunk, plus fio randwrite at QD16); SIGTERM with writes in flight: serve exits 0 within
//!    the drain deadline (5 s) plus 5 s; after `setup.sh reset` every acknowledged chunk reads
//!    back through the kernel nvme driver; `setup.sh config`, serve again, `nvme connect`
//!    works at once and reads the data back.
//! 2. `sigterm-cycles` (guest/teardown_sigterm_cycles.sh): six times serve, connect, fio
//!    randwrite QD32 on both drives, SIGTERM after a second: exit 0 within the limit each time.
//!    The host's kernel log of both SIGTERM phases must show no I/O failed by the target with a
//!    status other than Namespace Not Ready (a race between poll groups; see the last test).
//! 3. `hot-removal` (guest/teardown_hot_removal.sh): drive 1 sits behind a PCIe root port;
//!    fio with crc32c verification on both drives; QMP `device_del` of drive 1: serve gives
//!    it back (VFIO device request) so it leaves the PCI bus, keeps running and serving drive
//!    0 (fio's verify passes), drive 1's fio fails with I/O errors, and SIGTERM still exits 0.

use std::sync::OnceLock;
use std::time::Duration;

use vfnvme_hw_tests::{Drive, Outcome, Scenario};

const DRIVE_BYTES: u64 = 64 << 20;
const SIGTERM_PHASE: &str = "sigterm";
const SIGTERM_CYCLES_PHASE: &str = "sigterm-cycles";
const HOT_REMOVAL_PHASE: &str = "hot-removal";

const SCRIPT: &str = r#"
export DRIVE0_BDF DRIVE1_BDF
run_phase sigterm /harness/teardown_sigterm.sh
run_phase sigterm-cycles /harness/teardown_sigterm_cycles.sh
run_phase hot-removal /harness/teardown_hot_removal.sh
step "teardown: every phase passed"
phases_passed
"#;

fn boot() -> &'static Outcome {
    static BOOT: OnceLock<Result<Outcome, String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        Scenario::new("teardown", SCRIPT)
            .guest_file(
                "teardown_sigterm.sh",
                include_str!("../guest/teardown_sigterm.sh"),
            )
            .guest_file(
                "teardown_sigterm_cycles.sh",
                include_str!("../guest/teardown_sigterm_cycles.sh"),
            )
            .guest_file(
                "teardown_hot_removal.sh",
                include_str!("../guest/teardown_hot_removal.sh"),
            )
            .drive(Drive::new("VFNVMETD0", DRIVE_BYTES))
            .drive(Drive::new("VFNVMETD1", DRIVE_BYTES).behind_root_port())
            .memory_mib(2048)
            .deadline(Duration::from_secs(480))
            .needs_vfnvme()
            .run()
            .map_err(|error| format!("scenario teardown: cannot run: {error}"))
    })
    .as_ref()
    .unwrap_or_else(|error| panic!("{error}"))
}

/// `VFNVME-TEARDOWN: KEY=VALUE ...` printed within phase `phase`.
fn info(outcome: &Outcome, phase: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    outcome
        .phase_console(phase)?
        .iter()
        .filter_map(|line| line.strip_prefix("VFNVME-TEARDOWN: "))
        .flat_map(str::split_whitespace)
        .find_map(|word| word.strip_prefix(&prefix))
        .map(str::to_owned)
}

fn report(outcome: &Outcome, phase: &str, keys: &[&str]) {
    let values: Vec<String> = keys
        .iter()
        .map(|key| format!("{key}={}", info(outcome, phase, key).unwrap_or("?".into())))
        .collect();
    eprintln!(
        "teardown {phase}: {} (boot {:.0?})",
        values.join(" "),
        outcome.elapsed
    );
}

#[test]
fn sigterm_under_write_load_exits_0_in_time_and_keeps_every_acknowledged_write() {
    let outcome = boot();
    report(
        outcome,
        SIGTERM_PHASE,
        &[
            "sigterm_exit_status",
            "sigterm_exit_ms",
            "acked_before_sigterm",
            "acked_after_sigterm",
            "acked_total",
            "reconnect_ms",
        ],
    );
    outcome.assert_phase_passed(SIGTERM_PHASE);
}

#[test]
fn sigterm_under_qd32_load_six_times_exits_0_in_time_every_time() {
    let outcome = boot();
    let cycles: Vec<&str> = outcome
        .phase_console(SIGTERM_CYCLES_PHASE)
        .unwrap_or_default()
        .iter()
        .filter_map(|line| line.strip_prefix("VFNVME-CYCLE: "))
        .collect();
    eprintln!("teardown {SIGTERM_CYCLES_PHASE}: {}", cycles.join("; "));
    outcome.assert_phase_passed(SIGTERM_CYCLES_PHASE);
}

#[test]
fn hot_removal_under_load_releases_the_drive_and_keeps_serving_the_other() {
    let outcome = boot();
    report(
        outcome,
        HOT_REMOVAL_PHASE,
        &["removal_ms", "removed_drive_fio_exit"],
    );
    outcome.assert_phase_passed(HOT_REMOVAL_PHASE);
}

/// The kernel initiator's log lines, within phase `phase`, of I/O commands the target failed
/// with a generic status other than Namespace Not Ready (`sct 0x0 / sc 0x82`).
fn target_errors_other_than_not_ready<'a>(outcome: &'a Outcome, phase: &str) -> Vec<&'a str> {
    outcome
        .phase_console(phase)
        .unwrap_or_default()
        .iter()
        .filter(|line| line.contains("I/O Error (sct 0x0 / sc 0x") && !line.contains("sc 0x82)"))
        .map(String::as_str)
        .collect()
}

/// docs/lifecycle.md, teardown step 1: a stopping poll group answers new commands with
/// Namespace Not Ready. Poll groups are stopped one after the other, though
/// (`Target::shut_down` joins each before stopping the next): once the first group closed a
/// controller's admin queue, that controller is terminated (`enabled` false) while its I/O
/// queues on the second group still take commands, and `check_io` fails them with Command
/// Sequence Error and DNR, which the host cannot retry: the application gets EIO from a
/// daemon that is shutting down cleanly.
#[test]
fn sigterm_drain_answers_new_commands_with_namespace_not_ready_not_command_sequence_error() {
    let outcome = boot();
    for phase in [SIGTERM_PHASE, SIGTERM_CYCLES_PHASE] {
        if outcome.phase_console(phase).is_none() {
            outcome.assert_phase_passed(phase);
        }
        let errors = target_errors_other_than_not_ready(outcome, phase);
        if errors.is_empty() {
            continue;
        }
        outcome.fail_phase(
            phase,
            &format!(
                "during SIGTERM under load the host got I/O errors with a status other than \
                 Namespace Not Ready (sc 0xc: Command Sequence Error, from check_io once the \
                 controller's admin queue on an already stopped poll group terminated it):\n{}",
                errors.join("\n")
            ),
        );
    }
}
