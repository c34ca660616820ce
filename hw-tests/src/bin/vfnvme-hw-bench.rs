//! `make bench-hw`: 4 KiB random reads at QD1 and QD16 on QEMU's emulated NVMe drives, in one
//! guest boot, two comparisons on two drives of the same model and size (drive 0 stays on the
//! kernel nvme driver, drive 1 goes to vfio-pci):
//!
//! - local: fio (libaio, O_DIRECT) on the kernel nvme driver's block device (drive 0) vs
//!   `vfnvme perf` on drive 1;
//! - fabric (NVMe/TCP on 127.0.0.1, read by the kernel initiator nvme-tcp with the same fio
//!   job): the Linux kernel target nvmet-tcp exporting drive 0's block device (port 4421) vs
//!   `vfnvme serve` exporting drive 1 (port 4420, one poll group).
//!
//! Each measurement runs REPEATS times, interleaved (peer, vfnvme, peer, ...) so drift of the
//! emulator hits both sides alike; the medians and the ratio vfnvme/peer are printed as
//! Markdown tables for BENCHMARKS.md.
//!
//! `vfnvme-hw-bench [local|fabric|all]` (default all) picks the comparisons.
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
/// Poll groups of `vfnvme serve` in the fabric comparison: one, so that a vCPU stays for fio
/// (nvmet runs on kernel workqueues wherever it likes).
const SERVE_CORES: u32 = 1;
const NQN_NVMET: &str = "nqn.2026-11.io.vfnvme:bench-nvmet";
const NQN_VFNVME: &str = "nqn.2026-11.io.vfnvme:bench-vfnvme";

/// One side of a comparison: the capture-name prefix, how the table names it, and the guest
/// command for one run at queue depth QD (`{QD}` replaced).
struct Side {
    prefix: &'static str,
    title: &'static str,
    /// For the ratio column.
    short: &'static str,
    command: &'static str,
    /// JSON pointer to the IOPS in the command's output.
    iops: &'static str,
    /// JSON pointer to the mean latency in µs, or in ns when `latency_ns`.
    latency: &'static str,
    latency_ns: bool,
}

struct Comparison {
    name: &'static str,
    heading: &'static str,
    peer: Side,
    vfnvme: Side,
}

const FIO: &str = "fio --name=bench --direct=1 --ioengine=libaio --rw=randread --bs=4k \
                   --iodepth={QD} --time_based --runtime={SECONDS} --output-format=json";

fn comparisons() -> [Comparison; 2] {
    [
        Comparison {
            name: "local",
            heading: "local: kernel nvme driver + fio vs vfnvme perf",
            peer: Side {
                prefix: "fio",
                title: "kernel nvme + fio",
                short: "kernel",
                command: "{FIO} --filename=/dev/$BLOCK",
                iops: "/jobs/0/read/iops",
                latency: "/jobs/0/read/lat_ns/mean",
                latency_ns: true,
            },
            vfnvme: Side {
                prefix: "vfnvme",
                title: "vfnvme perf",
                short: "vfnvme",
                command: "vfnvme perf --device \"$VFIO_BDF\" -q {QD} -o 4096 -w randread \
                          -t {SECONDS} --json",
                iops: "/iops",
                latency: "/lat_us/mean",
                latency_ns: false,
            },
        },
        Comparison {
            name: "fabric",
            heading: "NVMe/TCP on 127.0.0.1, kernel initiator + fio: nvmet-tcp vs vfnvme serve",
            peer: Side {
                prefix: "nvmet",
                title: "nvmet-tcp",
                short: "nvmet",
                command: "{FIO} --filename=/dev/$FABRIC_NVMET",
                iops: "/jobs/0/read/iops",
                latency: "/jobs/0/read/lat_ns/mean",
                latency_ns: true,
            },
            vfnvme: Side {
                prefix: "serve",
                title: "vfnvme serve",
                short: "vfnvme",
                command: "{FIO} --filename=/dev/$FABRIC_VFNVME",
                iops: "/jobs/0/read/iops",
                latency: "/jobs/0/read/lat_ns/mean",
                latency_ns: true,
            },
        },
    ]
}

const SETUP: &str = r#"
KERNEL_BDF=$DRIVE0_BDF; VFIO_BDF=$DRIVE1_BDF
step 'setup.sh config (drive 0 stays on the kernel nvme driver)'
run env PCI_BLOCKED="$KERNEL_BDF" HUGEMEM=256 setup.sh config
expect_driver "$KERNEL_BDF" nvme
expect_driver "$VFIO_BDF" vfio-pci
BLOCK=$(block_of "$KERNEL_BDF")
[ -b "/dev/$BLOCK" ] || fail "no block device for $KERNEL_BDF"
"#;

const FABRIC_SETUP: &str = r#"
step 'nvmet-tcp exports drive 0 (127.0.0.1:4421); vfnvme serve exports drive 1 (127.0.0.1:4420)'
nvmet_export NQN_NVMET "$BLOCK" 4421
write_serve_config /tmp/bench-serve.toml SERVE_CORES "NQN_VFNVME=$VFIO_BDF"
SERVE_RUST_LOG=warn serve_start bench_serve /tmp/bench-serve.toml
connect_tcp NQN_NVMET 4421
connect_tcp NQN_VFNVME 4420
FABRIC_NVMET=$(fabric_block NQN_NVMET)
FABRIC_VFNVME=$(fabric_block NQN_VFNVME)
run nvme list
"#;

const FABRIC_TEARDOWN: &str = r#"
step 'disconnect; SIGTERM vfnvme serve'
disconnect_tcp NQN_NVMET
disconnect_tcp NQN_VFNVME
serve_stop
expect_eq "$(capture_rc bench_serve)" 0 "exit status of vfnvme serve after SIGTERM"
"#;

fn fill(command: &str, depth: u32) -> String {
    command
        .replace("{FIO}", FIO)
        .replace("{QD}", &depth.to_string())
        .replace("{SECONDS}", &SECONDS.to_string())
}

fn runs_script(comparison: &Comparison) -> String {
    let mut script = String::new();
    for repeat in 1..=REPEATS {
        for depth in QUEUE_DEPTHS {
            for side in [&comparison.peer, &comparison.vfnvme] {
                script.push_str(&format!(
                    "step 'run {repeat}: {} randread QD{depth}'\ncapture {}_qd{depth}_{repeat} {}\n",
                    side.title,
                    side.prefix,
                    fill(side.command, depth)
                ));
            }
        }
    }
    script
}

fn script(selected: &[&Comparison]) -> String {
    let mut script = SETUP.to_owned();
    for comparison in selected {
        if comparison.name == "fabric" {
            script.push_str(FABRIC_SETUP);
            script.push_str(&runs_script(comparison));
            script.push_str(FABRIC_TEARDOWN);
        } else {
            script.push_str(&runs_script(comparison));
        }
    }
    script
        .replace("NQN_NVMET", NQN_NVMET)
        .replace("NQN_VFNVME", NQN_VFNVME)
        .replace("SERVE_CORES", &SERVE_CORES.to_string())
}

/// (IOPS, mean latency in µs) of one run.
fn measure(outcome: &Outcome, name: &str, side: &Side) -> Result<(f64, f64), String> {
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
    let iops = json
        .pointer(side.iops)
        .and_then(Value::as_f64)
        .filter(|iops| *iops > 0.0)
        .ok_or_else(|| format!("{name}: no positive {} in {json}", side.iops))?;
    let latency = json
        .pointer(side.latency)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{name}: no {} in {json}", side.latency))?;
    Ok((
        iops,
        if side.latency_ns {
            latency / 1000.0
        } else {
            latency
        },
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn runs(outcome: &Outcome, side: &Side, depth: u32) -> Result<Vec<(f64, f64)>, String> {
    (1..=REPEATS)
        .map(|repeat| {
            measure(
                outcome,
                &format!("{}_qd{depth}_{repeat}", side.prefix),
                side,
            )
        })
        .collect()
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn table(outcome: &Outcome, comparison: &Comparison) -> Result<(), String> {
    let (peer, vfnvme) = (&comparison.peer, &comparison.vfnvme);
    println!("### {}", comparison.heading);
    println!();
    println!(
        "| QD | {p} (IOPS) | {v} (IOPS) | {vs} / {ps} | mean lat µs: {p} | mean lat µs: {v} | runs: {p} | runs: {v} |",
        p = peer.title,
        v = vfnvme.title,
        ps = peer.short,
        vs = vfnvme.short
    );
    println!("|---:|---:|---:|---:|---:|---:|---|---|");
    for depth in QUEUE_DEPTHS {
        let peer_runs = runs(outcome, peer, depth)?;
        let vfnvme_runs = runs(outcome, vfnvme, depth)?;
        let iops = |runs: &[(f64, f64)]| runs.iter().map(|r| r.0).collect::<Vec<_>>();
        let latency = |runs: &[(f64, f64)]| median(runs.iter().map(|r| r.1).collect());
        let (p, v) = (median(iops(&peer_runs)), median(iops(&vfnvme_runs)));
        println!(
            "| {depth} | {p:.0} | {v:.0} | **{:.2}** | {:.1} | {:.1} | {} | {} |",
            v / p,
            latency(&peer_runs),
            latency(&vfnvme_runs),
            list(&iops(&peer_runs)),
            list(&iops(&vfnvme_runs))
        );
    }
    println!();
    Ok(())
}

fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    let all = comparisons();
    let selected: Vec<&Comparison> = all
        .iter()
        .filter(|c| which == "all" || which == c.name)
        .collect();
    if selected.is_empty() {
        eprintln!("usage: vfnvme-hw-bench [local|fabric|all]");
        return ExitCode::from(2);
    }
    let measurements = 2 * QUEUE_DEPTHS.len() as u32 * REPEATS * selected.len() as u32;
    eprintln!(
        "bench-hw: booting one guest; {measurements} measurements of {SECONDS} s follow (about {} s)",
        measurements * (SECONDS + 2) + 30
    );
    let outcome = match Scenario::new("bench", &script(&selected))
        .drive(Drive::new("VFNVMEBENCH0", DRIVE_BYTES))
        .drive(Drive::new("VFNVMEBENCH1", DRIVE_BYTES))
        .needs_vfnvme()
        .deadline(Duration::from_secs(900))
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
         QEMU 7.2 TCG-emulated NVMe ({} MiB, 2 vCPUs), one guest boot ({:.0} s): relative \
         numbers only",
        DRIVE_BYTES >> 20,
        outcome.elapsed.as_secs_f64()
    );
    println!();
    for comparison in selected {
        if let Err(error) = table(&outcome, comparison) {
            eprintln!("bench-hw: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
