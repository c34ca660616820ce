//! `make bench-hw`: 4 KiB random reads at QD1 and QD16 through the kernel's nvme driver (fio,
//! libaio, O_DIRECT) and through vfnvme (`vfnvme perf`), in one guest boot, on two emulated
//! drives of the same model and size: one stays on the kernel nvme driver (PCI_BLOCKED), the
//! other goes to vfio-pci. Each measurement runs REPEATS times, interleaved (kernel, vfnvme,
//! kernel, ...) so drift of the emulator hits both sides alike; the medians and the ratio
//! vfnvme/kernel are printed as a Markdown table for BENCHMARKS.md.
//!
//! Under TCG the absolute numbers say little about hardware (the emulated device and the
//! guest's CPU share the host's two cores); the ratio is a smoke signal for gross regressions.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use vfnvme_hw_tests::{Drive, Outcome, Scenario};

const SECONDS: u32 = 5;
const REPEATS: u32 = 3;
const QUEUE_DEPTHS: [u32; 2] = [1, 16];
const DRIVE_BYTES: u64 = 256 << 20;

fn script() -> String {
    let mut script = String::from(
        "KERNEL_BDF=$DRIVE0_BDF; VFIO_BDF=$DRIVE1_BDF\n\
         step 'setup.sh config (drive 0 stays on the kernel nvme driver)'\n\
         run env PCI_BLOCKED=\"$KERNEL_BDF\" HUGEMEM=256 setup.sh config\n\
         expect_driver \"$KERNEL_BDF\" nvme\n\
         expect_driver \"$VFIO_BDF\" vfio-pci\n\
         BLOCK=$(block_of \"$KERNEL_BDF\")\n\
         [ -b \"/dev/$BLOCK\" ] || fail \"no block device for $KERNEL_BDF\"\n",
    );
    for repeat in 1..=REPEATS {
        for depth in QUEUE_DEPTHS {
            script.push_str(&format!(
                "step 'run {repeat}: fio randread QD{depth} on the kernel driver'\n\
                 capture fio_qd{depth}_{repeat} fio --name=kernel --filename=/dev/$BLOCK \
                 --direct=1 --ioengine=libaio --rw=randread --bs=4k --iodepth={depth} \
                 --time_based --runtime={SECONDS} --output-format=json\n\
                 step 'run {repeat}: vfnvme perf randread QD{depth}'\n\
                 capture vfnvme_qd{depth}_{repeat} vfnvme perf --device \"$VFIO_BDF\" \
                 -q {depth} -o 4096 -w randread -t {SECONDS} --json\n"
            ));
        }
    }
    script
}

fn iops(outcome: &Outcome, name: &str, pointer: &str) -> Result<f64, String> {
    let capture = outcome
        .capture(name)
        .ok_or_else(|| format!("the guest printed no capture named {name}"))?;
    let stdout = capture.stdout.trim();
    // Anything before the JSON object (fio notes) is skipped.
    let json: Value = stdout
        .find('{')
        .and_then(|at| serde_json::from_str(&stdout[at..]).ok())
        .ok_or_else(|| {
            format!(
                "{name}: exit {}, no JSON:\n{stdout}\n{}",
                capture.exit_code, capture.stderr
            )
        })?;
    if capture.exit_code != 0 {
        return Err(format!(
            "{name}: exit {}: {}",
            capture.exit_code, capture.stderr
        ));
    }
    json.pointer(pointer)
        .and_then(Value::as_f64)
        .filter(|iops| *iops > 0.0)
        .ok_or_else(|| format!("{name}: no positive {pointer} in {json}"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn runs(outcome: &Outcome, prefix: &str, depth: u32, pointer: &str) -> Result<Vec<f64>, String> {
    (1..=REPEATS)
        .map(|repeat| iops(outcome, &format!("{prefix}_qd{depth}_{repeat}"), pointer))
        .collect()
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn main() -> ExitCode {
    eprintln!(
        "bench-hw: booting one guest; {} measurements of {SECONDS} s follow (about {} s)",
        2 * QUEUE_DEPTHS.len() as u32 * REPEATS,
        2 * QUEUE_DEPTHS.len() as u32 * REPEATS * (SECONDS + 2) + 20
    );
    let outcome = match Scenario::new("bench", &script())
        .drive(Drive::new("VFNVMEBENCH0", DRIVE_BYTES))
        .drive(Drive::new("VFNVMEBENCH1", DRIVE_BYTES))
        .needs_vfnvme()
        .deadline(Duration::from_secs(600))
        .run_with(&mut |line| {
            if let Some(step) = line.strip_prefix("VFNVME-STEP: ") {
                eprintln!("bench-hw: {step}");
            }
        }) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("bench-hw: cannot run: {error}");
            return ExitCode::FAILURE;
        }
    };
    if !outcome.passed() {
        eprintln!(
            "bench-hw: the guest failed ({:?}); last console lines:\n{}",
            outcome.end,
            outcome.tail(60)
        );
        return ExitCode::FAILURE;
    }
    println!(
        "4 KiB random reads, {SECONDS} s per run, median of {REPEATS} interleaved runs; \
         QEMU 7.2 TCG-emulated NVMe ({} MiB, 2 vCPUs): relative numbers only",
        DRIVE_BYTES >> 20
    );
    println!();
    println!("| QD | kernel nvme + fio (IOPS) | vfnvme perf (IOPS) | vfnvme / kernel | runs: kernel | runs: vfnvme |");
    println!("|---:|---:|---:|---:|---|---|");
    for depth in QUEUE_DEPTHS {
        let kernel = runs(&outcome, "fio", depth, "/jobs/0/read/iops");
        let vfnvme = runs(&outcome, "vfnvme", depth, "/iops");
        match (kernel, vfnvme) {
            (Ok(kernel), Ok(vfnvme)) => {
                let (k, v) = (median(kernel.clone()), median(vfnvme.clone()));
                println!(
                    "| {depth} | {k:.0} | {v:.0} | {:.2} | {} | {} |",
                    v / k,
                    list(&kernel),
                    list(&vfnvme)
                );
            }
            (kernel, vfnvme) => {
                for error in [kernel.err(), vfnvme.err()].into_iter().flatten() {
                    eprintln!("bench-hw: {error}");
                }
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
