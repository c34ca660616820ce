//! `make bench-hw`: 4 KiB random reads at QD1 and QD16 through the kernel's nvme driver (fio)
//! and through vfnvme (`vfnvme perf`), on the same emulated drive in one guest boot.
//!
//! Ignored by default: under TCG emulation the absolute numbers say little about hardware, and
//! the run takes a minute. The ratio is a smoke signal for gross regressions only.

use serde_json::Value;
use vfnvme_hw_tests::{Drive, Outcome, Scenario};

const SECONDS: u32 = 5;
const QUEUE_DEPTHS: [u32; 2] = [1, 16];

fn script() -> String {
    let mut script = String::from("B0=$DRIVE0_BDF\nBLOCK0=$(block_of \"$B0\")\n");
    for depth in QUEUE_DEPTHS {
        script.push_str(&format!(
            "step 'fio randread QD{depth} on the kernel driver'\n\
             capture fio_qd{depth} fio --name=kernel --filename=/dev/$BLOCK0 --direct=1 \
             --ioengine=libaio --rw=randread --bs=4k --iodepth={depth} --time_based \
             --runtime={SECONDS} --output-format=json\n"
        ));
    }
    script.push_str("step 'setup.sh config'\nrun env HUGEMEM=256 setup.sh config\n");
    for depth in QUEUE_DEPTHS {
        script.push_str(&format!(
            "step 'vfnvme perf randread QD{depth}'\n\
             capture vfnvme_qd{depth} vfnvme perf --device \"$B0\" -q {depth} -o 4096 \
             -w randread -t {SECONDS} --json\n"
        ));
    }
    script
}

fn iops(outcome: &Outcome, name: &str, pointer: &str) -> f64 {
    let capture = outcome.expect_capture(name);
    let stdout = capture.stdout.trim();
    // Anything before the JSON object (fio notes, live progress) is skipped.
    let json: Value = stdout
        .find('{')
        .and_then(|at| serde_json::from_str(&stdout[at..]).ok())
        .unwrap_or_else(|| {
            outcome.fail(&format!(
                "{name}: exit {}, no JSON:\n{stdout}\n{}",
                capture.exit_code, capture.stderr
            ))
        });
    json.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| outcome.fail(&format!("{name}: no {pointer} in {json}")))
}

#[test]
#[ignore = "benchmark: run with make bench-hw"]
fn kernel_nvme_versus_vfnvme_randread_4k() {
    let outcome = Scenario::new("bench", &script())
        .drive(Drive::new("VFNVMEBENCH0", 256 << 20))
        .needs_vfnvme()
        .run_expecting_pass();
    println!("randread 4 KiB, {SECONDS} s each, TCG-emulated NVMe (relative numbers only)");
    println!(
        "{:>6} {:>12} {:>12} {:>8}",
        "QD", "kernel IOPS", "vfnvme IOPS", "ratio"
    );
    for depth in QUEUE_DEPTHS {
        let kernel = iops(&outcome, &format!("fio_qd{depth}"), "/jobs/0/read/iops");
        let vfnvme = iops(&outcome, &format!("vfnvme_qd{depth}"), "/iops");
        println!(
            "{depth:>6} {kernel:>12.0} {vfnvme:>12.0} {:>8.2}",
            vfnvme / kernel
        );
    }
}
