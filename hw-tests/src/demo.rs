//! `make demo`: one boot of the appliance with two emulated NVMe drives, shown as it happens.
//!
//! The guest side is `guest/demo.sh` (phases as shell functions); this module turns its console
//! into something a person reads: step headings, the commands and their output, a summary.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::qemu::{BootEnd, RESULT_MARKER};
use crate::scenario::{Drive, Outcome, Scenario, DEVICE_DEL_REQUEST};

/// The guest script.
pub const SCRIPT: &str = include_str!("../guest/demo.sh");
/// Size of each demo drive: small, so a verify pass over it takes seconds under emulation.
pub const DRIVE_BYTES: u64 = 64 << 20;
/// Serial numbers of the two drives.
pub const SERIALS: [&str; 2] = ["VFNVMEDEMO0", "VFNVMEDEMO1"];

const STEP_MARKER: &str = "VFNVME-STEP: ";
const CHECK_FAILED_MARKER: &str = "VFNVME-CHECK-FAILED: ";
const GUEST_MARKER: &str = "VFNVME-GUEST: ";
/// Brackets of a captured command's output (`capture`, `serve_stop` in guest/lib.sh).
const CAPTURE_MARKER: &str = "VFNVME-CAPTURE-";

/// The demo scenario.
pub fn scenario() -> Scenario {
    let mut scenario = Scenario::new("demo", SCRIPT)
        .needs_vfnvme()
        .deadline(Duration::from_secs(600));
    for serial in SERIALS {
        scenario = scenario.drive(Drive::new(serial, DRIVE_BYTES));
    }
    scenario
}

/// How a console line is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// A step begins: a heading.
    Step(String),
    /// A check failed in the guest.
    Failed(String),
    /// Any other line, as it should be printed.
    Line(String),
    /// Harness plumbing nobody needs to see.
    Hidden,
}

/// What a console line means for the person watching.
pub fn classify(line: &str) -> Shown {
    if let Some(step) = line.strip_prefix(STEP_MARKER) {
        Shown::Step(step.to_owned())
    } else if let Some(failure) = line.strip_prefix(CHECK_FAILED_MARKER) {
        Shown::Failed(failure.to_owned())
    } else if let Some(note) = line.strip_prefix(GUEST_MARKER) {
        if note == "running scenario" {
            Shown::Hidden
        } else {
            Shown::Line(format!("guest: {note}"))
        }
    } else if line.contains(RESULT_MARKER)
        || line.contains(DEVICE_DEL_REQUEST)
        || line.starts_with(CAPTURE_MARKER)
    {
        Shown::Hidden
    } else if let Some(command) = line.strip_prefix("+ ") {
        Shown::Line(format!("  $ {command}"))
    } else {
        Shown::Line(format!("    {line}"))
    }
}

/// What happened in a demo boot.
#[derive(Debug)]
pub struct Report {
    /// Steps that started, in order.
    pub steps: Vec<String>,
    /// The guest's failed checks.
    pub failures: Vec<String>,
    /// The boot itself.
    pub outcome: Outcome,
}

impl Report {
    /// Whether every step passed.
    pub fn passed(&self) -> bool {
        self.outcome.passed()
    }

    /// One line saying how it went.
    pub fn summary_line(&self) -> String {
        let seconds = self.outcome.elapsed.as_secs_f64();
        if self.passed() {
            return format!(
                "vfnvme demo: PASS: all {} steps passed on {} emulated NVMe drives in {seconds:.0} s",
                self.steps.len(),
                SERIALS.len()
            );
        }
        let why = match &self.outcome.end {
            BootEnd::Reported(result) => result.clone(),
            BootEnd::TimedOut(after) => format!("no result within {after:?}"),
            BootEnd::ExitedWithoutResult(why) => why.clone(),
        };
        format!(
            "vfnvme demo: FAILED after {seconds:.0} s at step {} ({why}); whole console: {}",
            self.steps.last().map_or("<boot>", String::as_str),
            self.outcome.console_log.display()
        )
    }
}

/// Boots the demo and prints its console to `out` as it goes.
pub fn run(out: &mut dyn Write) -> Result<Report> {
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut failures = Vec::new();
    let mut show = |line: &str| {
        let text = match classify(line) {
            Shown::Step(step) => {
                let text = format!("\n==> [{:>5.1} s] {step}", started.elapsed().as_secs_f64());
                steps.push(step);
                text
            }
            Shown::Failed(failure) => {
                let text = format!("  FAILED: {failure}");
                failures.push(failure);
                text
            }
            Shown::Line(text) => text,
            Shown::Hidden => return,
        };
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    let outcome = scenario().run_with(&mut show)?;
    Ok(Report {
        steps,
        failures,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_become_headings_and_plumbing_is_hidden() {
        assert_eq!(
            classify("VFNVME-STEP: vfnvme identify x"),
            Shown::Step("vfnvme identify x".to_owned())
        );
        assert_eq!(classify("VFNVME-SCENARIO-RESULT: PASS"), Shown::Hidden);
        assert_eq!(classify("VFNVME-CAPTURE-END demo_serve"), Shown::Hidden);
        assert_eq!(
            classify("+ setup.sh status"),
            Shown::Line("  $ setup.sh status".to_owned())
        );
        assert_eq!(classify("IOPS: 1"), Shown::Line("    IOPS: 1".to_owned()));
        assert_eq!(
            classify("VFNVME-CHECK-FAILED: [x] y"),
            Shown::Failed("[x] y".to_owned())
        );
    }
}
