//! `make bench-hw`: 4 KiB random reads at QD1 and QD16 on QEMU's emulated NVMe drives, in one
//! guest boot, comparisons on two drives of the same model and size (drive 0 stays on the
//! kernel nvme driver, drive 1 goes to vfio-pci):
//!
//! - local: fio (libaio, O_DIRECT) on the kernel nvme driver's block device (drive 0) vs
//!   `vfnvme perf` on drive 1;
//! - fabric (NVMe/TCP on 127.0.0.1, read by the kernel initiator nvme-tcp with the same fio
//!   job): the Linux kernel target nvmet-tcp exporting drive 0's block device (port 4421) vs
//!   `vfnvme serve` exporting drive 1 (port 4420, one poll group);
//! - fabric-floor: the same without a drive, nvmet-tcp on null_blk (port 4423) vs `vfnvme
//!   serve` on a RAM namespace: the fabric path's own cost, which no drive can make shorter;
//! - with `SPDK_DIR` (an SPDK the user built, see [`spdk_programs`]): spdk-local,
//!   `spdk_nvme_perf` vs `vfnvme perf` on drive 1, and spdk-fabric, SPDK's `nvmf_tgt` vs
//!   `vfnvme serve` exporting drive 1, one target at a time, each alone on vCPU 0 with fio on
//!   vCPU 1. SPDK's tools come into the guest with their libraries; the boot then uses QEMU's
//!   `max` CPU model (SPDK is built for x86-64-v2) and more hugepage memory.
//!
//! Each measurement runs REPEATS times, interleaved (peer, vfnvme, peer, ...) so drift of the
//! emulator hits both sides alike; the medians and the ratio vfnvme/peer are printed as
//! Markdown tables for BENCHMARKS.md.
//!
//! `vfnvme-hw-bench [local|fabric|fabric-floor|spdk-local|spdk-fabric|spdk|all]` (default
//! all: every comparison, the SPDK ones when `SPDK_DIR` is set; several with commas) picks the
//! comparisons. `BENCH_HW_KERNEL_ARGS` adds guest kernel arguments for an experiment (e.g.
//! `idle=poll`, BENCHMARKS.md); `BENCH_HW_PROFILE=QD` profiles one more run of each side at
//! queue depth QD (1 or 16) with the host's perf (linux-perf) on both vCPUs and prints the
//! reports after the tables;
//! `BENCH_HW_SERVE_TARGET` adds lines to every vfnvme serve's `[target]` (e.g.
//! `c2h_success = true`).
//!
//! Under TCG the absolute numbers say little about hardware (the emulated device and the
//! guest's CPU share the host's two cores); the ratio is a smoke signal for gross regressions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use vfnvme_hw_tests::{Drive, Outcome, Scenario};

mod guest_scripts;
use guest_scripts::{
    FABRIC_SETUP, FABRIC_TEARDOWN, FLOOR_SETUP, FLOOR_TEARDOWN, SETUP, SPDK_ENV, SPDK_FABRIC_SETUP,
};

const SECONDS: u32 = 5;
const REPEATS: u32 = 3;
const QUEUE_DEPTHS: [u32; 2] = [1, 16];
const DRIVE_BYTES: u64 = 256 << 20;
/// Poll groups of `vfnvme serve` in the fabric comparison: one, so that a vCPU stays for fio
/// (nvmet runs on kernel workqueues wherever it likes).
const SERVE_CORES: u32 = 1;
const NQN_NVMET: &str = "nqn.2026-11.io.vfnvme:bench-nvmet";
const NQN_VFNVME: &str = "nqn.2026-11.io.vfnvme:bench-vfnvme";
const NQN_NVMET_NULL: &str = "nqn.2026-11.io.vfnvme:bench-nvmet-null";
const NQN_VFNVME_RAM: &str = "nqn.2026-11.io.vfnvme:bench-vfnvme-ram";
const NQN_SPDK: &str = "nqn.2026-11.io.vfnvme:bench-spdk";

/// One side of a comparison: the capture-name prefix, how the table names it, the guest
/// command for one run at queue depth QD (`{QD}` replaced), and what it prints.
struct Side {
    prefix: &'static str,
    title: &'static str,
    /// For the ratio column.
    short: &'static str,
    /// Guest commands before and after this side's runs of one repeat (`{R}`: the repeat),
    /// for a target that must be alone on the guest while it is measured.
    before: &'static str,
    after: &'static str,
    command: &'static str,
    report: Report,
}

/// Where a run's IOPS and mean latency are in what its command printed.
enum Report {
    /// A JSON object: pointers to the IOPS and to the mean latency (in µs, or in ns when
    /// `latency_ns`).
    Json {
        iops: &'static str,
        latency: &'static str,
        latency_ns: bool,
    },
    /// spdk_nvme_perf's table: the `Total` line's IOPS, MiB/s and average latency (µs).
    SpdkPerf,
}

struct Comparison {
    name: &'static str,
    heading: &'static str,
    /// Guest commands before the first run and after the last.
    setup: &'static str,
    teardown: &'static str,
    peer: Side,
    vfnvme: Side,
}

impl Comparison {
    /// Whether it runs SPDK's tools (which `SPDK_DIR` provides).
    fn needs_spdk(&self) -> bool {
        self.name.starts_with("spdk")
    }
}

/// The host's perf, which `BENCH_HW_PROFILE` puts into the guest (Debian's linux-perf, the
/// guest kernel's version).
const PERF: &str = "/usr/bin/perf";

/// The CPU model of a boot that runs SPDK's tools (built for x86-64-v2, which QEMU's default
/// qemu64 model is not).
const SPDK_CPU_MODEL: &str = "max";

const FIO_REPORT: Report = Report::Json {
    iops: "/jobs/0/read/iops",
    latency: "/jobs/0/read/lat_ns/mean",
    latency_ns: true,
};

const VFNVME_PERF_REPORT: Report = Report::Json {
    iops: "/iops",
    latency: "/lat_us/mean",
    latency_ns: false,
};

const FIO: &str = "fio --name=bench --direct=1 --ioengine=libaio --rw=randread --bs=4k \
                   --iodepth={QD} --time_based --runtime={SECONDS} --output-format=json";

/// The kernel initiator's fio on vCPU 1, so that the target measured has vCPU 0 to itself:
/// `--cpus_allowed` places its job, `taskset` its parent process too.
const FIO_ON_CPU1: &str = "taskset -c 1 {FIO} --cpus_allowed=1 --filename=/dev/$FABRIC_BLOCK";

fn comparisons() -> [Comparison; 5] {
    [
        Comparison {
            name: "local",
            heading: "local: kernel nvme driver + fio vs vfnvme perf",
            setup: "",
            teardown: "",
            peer: Side {
                prefix: "fio",
                title: "kernel nvme + fio",
                short: "kernel",
                before: "",
                after: "",
                command: "{FIO} --filename=/dev/$BLOCK",
                report: FIO_REPORT,
            },
            vfnvme: VFNVME_PERF,
        },
        Comparison {
            name: "fabric",
            heading: "NVMe/TCP on 127.0.0.1, kernel initiator + fio: nvmet-tcp vs vfnvme serve",
            setup: FABRIC_SETUP,
            teardown: FABRIC_TEARDOWN,
            peer: Side {
                prefix: "nvmet",
                title: "nvmet-tcp",
                short: "nvmet",
                before: "",
                after: "",
                command: "{FIO} --filename=/dev/$FABRIC_NVMET",
                report: FIO_REPORT,
            },
            vfnvme: Side {
                prefix: "serve",
                title: "vfnvme serve",
                short: "vfnvme",
                before: "",
                after: "",
                command: "{FIO} --filename=/dev/$FABRIC_VFNVME",
                report: FIO_REPORT,
            },
        },
        Comparison {
            name: "fabric-floor",
            heading: "NVMe/TCP on 127.0.0.1 without a drive (the fabric path's own cost), kernel \
                      initiator + fio: nvmet-tcp on null_blk vs vfnvme serve on a RAM namespace",
            setup: FLOOR_SETUP,
            teardown: FLOOR_TEARDOWN,
            peer: Side {
                prefix: "nvmetnull",
                title: "nvmet-tcp (null_blk)",
                short: "nvmet",
                before: "",
                after: "",
                command: "{FIO} --filename=/dev/$FLOOR_NVMET",
                report: FIO_REPORT,
            },
            vfnvme: Side {
                prefix: "serveram",
                title: "vfnvme serve (RAM)",
                short: "vfnvme",
                before: "",
                after: "",
                command: "{FIO} --filename=/dev/$FLOOR_VFNVME",
                report: FIO_REPORT,
            },
        },
        Comparison {
            name: "spdk-local",
            heading: "local, the same vfio drive: spdk_nvme_perf vs vfnvme perf",
            setup: "",
            teardown: "",
            peer: Side {
                prefix: "spdkperf",
                title: "spdk_nvme_perf",
                short: "SPDK",
                before: "",
                after: "",
                command: "spdk_nvme_perf -c 0x1 -r \"trtype:PCIe traddr:$VFIO_BDF\" -q {QD} \
                          -o 4096 -w randread -t {SECONDS}",
                report: Report::SpdkPerf,
            },
            vfnvme: VFNVME_PERF,
        },
        Comparison {
            name: "spdk-fabric",
            heading: "NVMe/TCP on 127.0.0.1, the same vfio drive, each target alone on vCPU 0, \
                      kernel initiator + fio on vCPU 1: nvmf_tgt vs vfnvme serve",
            setup: SPDK_FABRIC_SETUP,
            teardown: "",
            peer: Side {
                prefix: "nvmftgt",
                title: "SPDK nvmf_tgt",
                short: "SPDK",
                before: r#"
step 'run {R}: start nvmf_tgt (one reactor on vCPU 0) and connect'
spdk_tgt_start spdk_tgt_{R}
connect_tcp NQN_SPDK 4422
FABRIC_BLOCK=$(fabric_block NQN_SPDK)
"#,
                after: r#"
step 'run {R}: disconnect; SIGTERM nvmf_tgt'
disconnect_tcp NQN_SPDK
spdk_tgt_stop
"#,
                command: FIO_ON_CPU1,
                report: FIO_REPORT,
            },
            vfnvme: Side {
                prefix: "serve",
                title: "vfnvme serve",
                short: "vfnvme",
                before: r#"
step 'run {R}: start vfnvme serve (one poll group, its threads on vCPU 0) and connect'
SERVE_RUST_LOG=warn serve_start bench_serve_{R} /tmp/bench-serve.toml
for task in /proc/"$SERVE_PID"/task/*; do taskset -p 1 "${task##*/}" >/dev/null; done
connect_tcp NQN_VFNVME 4420
FABRIC_BLOCK=$(fabric_block NQN_VFNVME)
"#,
                after: r#"
step 'run {R}: disconnect; SIGTERM vfnvme serve'
disconnect_tcp NQN_VFNVME
serve_stop
expect_eq "$(capture_rc bench_serve_{R})" 0 "exit status of vfnvme serve after SIGTERM"
"#,
                command: FIO_ON_CPU1,
                report: FIO_REPORT,
            },
        },
    ]
}

const VFNVME_PERF: Side = Side {
    prefix: "vfnvme",
    title: "vfnvme perf",
    short: "vfnvme",
    before: "",
    after: "",
    command: "vfnvme perf --device \"$VFIO_BDF\" -q {QD} -o 4096 -w randread -t {SECONDS} --json",
    report: VFNVME_PERF_REPORT,
};

fn fill(command: &str, depth: u32) -> String {
    command
        .replace("{FIO}", FIO)
        .replace("{QD}", &depth.to_string())
        .replace("{SECONDS}", &SECONDS.to_string())
}

/// Capture name of one run: unique per comparison, side, depth and repeat.
fn capture_name(comparison: &Comparison, side: &Side, depth: u32, repeat: u32) -> String {
    format!(
        "{}_{}_qd{depth}_{repeat}",
        comparison.name.replace('-', "_"),
        side.prefix
    )
}

/// Capture name of a side's profile report.
fn profile_name(comparison: &Comparison, side: &Side) -> String {
    format!(
        "profile_{}_{}",
        comparison.name.replace('-', "_"),
        side.prefix
    )
}

/// One more run of `side` at queue depth `depth`, not measured, under `perf record -g` on both
/// vCPUs (software clock: TCG has no hardware counters). Its capture holds two reports: time by vCPU and
/// program (idle included), then by function with callees included (`--children`), which
/// says how much of the round trip is the target's and how much the initiator's.
fn profile_script(comparison: &Comparison, side: &Side, depth: u32) -> String {
    let data = format!("/tmp/{}.data", profile_name(comparison, side));
    let report = format!("perf report -i {data} --stdio");
    let reports = format!(
        "{{ {report} --no-children --sort cpu,comm --percent-limit 0.5; \
         {report} --children -g none --sort sym --percent-limit 1.5; }}"
    );
    format!(
        "step 'profile: {title} randread QD{depth} under perf record'\n\
         run perf record -a -g -e cpu-clock -F 1999 -o {data} -- {command} >/dev/null\n\
         capture {name} sh -c '{reports} | grep -v \"^#\" | grep . | sed \"s/  *$//\"'\n",
        title = side.title,
        command = fill(side.command, depth),
        name = profile_name(comparison, side),
    )
}

fn runs_script(comparison: &Comparison, profile: Option<u32>) -> String {
    let mut script = comparison.setup.to_owned();
    for repeat in 1..=REPEATS {
        for side in [&comparison.peer, &comparison.vfnvme] {
            script.push_str(&side.before.replace("{R}", &repeat.to_string()));
            for depth in QUEUE_DEPTHS {
                script.push_str(&format!(
                    "step 'run {repeat}: {} randread QD{depth}'\ncapture {} {}\n",
                    side.title,
                    capture_name(comparison, side, depth, repeat),
                    fill(side.command, depth)
                ));
            }
            if let Some(depth) = profile.filter(|_| repeat == REPEATS) {
                script.push_str(&profile_script(comparison, side, depth));
            }
            script.push_str(&side.after.replace("{R}", &repeat.to_string()));
        }
    }
    script.push_str(comparison.teardown);
    script
}

/// The guest script of the `selected` comparisons; `with_spdk` when one of them needs SPDK,
/// `profile` the queue depth of a profiled run of each side.
fn script(selected: &[&Comparison], with_spdk: bool, profile: Option<u32>) -> String {
    // nvmf_tgt's buffer pools need more hugepage memory than vfnvme's.
    let hugemem_mib = if with_spdk { 1024 } else { 256 };
    let mut script = SETUP.to_owned();
    if with_spdk {
        script.push_str(SPDK_ENV);
    }
    if profile.is_some() {
        // perf report names kernel functions only when kallsyms shows their addresses.
        script.push_str("echo 0 >/proc/sys/kernel/kptr_restrict\n");
    }
    for comparison in selected {
        script.push_str(&runs_script(comparison, profile));
    }
    script
        .replace("NQN_NVMET_NULL", NQN_NVMET_NULL)
        .replace("NQN_VFNVME_RAM", NQN_VFNVME_RAM)
        .replace("NQN_NVMET", NQN_NVMET)
        .replace("NQN_VFNVME", NQN_VFNVME)
        .replace("NQN_SPDK", NQN_SPDK)
        .replace("SERVE_CORES", &SERVE_CORES.to_string())
        .replace("HUGEMEM_MIB", &hugemem_mib.to_string())
}

/// (IOPS, mean latency in µs) of one run.
fn measure(outcome: &Outcome, name: &str, side: &Side) -> Result<(f64, f64), String> {
    let capture = outcome
        .capture(name)
        .ok_or_else(|| format!("the guest printed no capture named {name}"))?;
    if capture.exit_code != 0 {
        return Err(format!(
            "{name}: exit {}:\n{}\n{}",
            capture.exit_code, capture.stdout, capture.stderr
        ));
    }
    let stdout = capture.stdout.trim();
    let (iops, latency_us) = match side.report {
        Report::Json {
            iops,
            latency,
            latency_ns,
        } => {
            // Anything before the JSON object (fio notes) is skipped.
            let json: Value = stdout
                .find('{')
                .and_then(|at| serde_json::from_str(&stdout[at..]).ok())
                .ok_or_else(|| format!("{name}: no JSON:\n{stdout}\n{}", capture.stderr))?;
            let number = |pointer: &str| {
                json.pointer(pointer)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("{name}: no {pointer} in {json}"))
            };
            let scale = if latency_ns { 1000.0 } else { 1.0 };
            (number(iops)?, number(latency)? / scale)
        }
        Report::SpdkPerf => spdk_perf_total(stdout)
            .ok_or_else(|| format!("{name}: no `Total : IOPS MiB/s average` line:\n{stdout}"))?,
    };
    if iops > 0.0 {
        Ok((iops, latency_us))
    } else {
        Err(format!("{name}: {iops} IOPS:\n{stdout}"))
    }
}

/// IOPS and average latency (µs) from spdk_nvme_perf's `Total : IOPS MiB/s Average min max`.
fn spdk_perf_total(stdout: &str) -> Option<(f64, f64)> {
    let line = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("Total"))?;
    let mut numbers = line
        .split_once(':')?
        .1
        .split_whitespace()
        .map(str::parse::<f64>);
    let iops = numbers.next()?.ok()?;
    let _mib_per_second = numbers.next()?.ok()?;
    let average_us = numbers.next()?.ok()?;
    Some((iops, average_us))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn runs(
    outcome: &Outcome,
    comparison: &Comparison,
    side: &Side,
    depth: u32,
) -> Result<Vec<(f64, f64)>, String> {
    (1..=REPEATS)
        .map(|repeat| {
            measure(
                outcome,
                &capture_name(comparison, side, depth, repeat),
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
        let peer_runs = runs(outcome, comparison, peer, depth)?;
        let vfnvme_runs = runs(outcome, comparison, vfnvme, depth)?;
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

/// The shell line that gives guest/lib.sh's `write_serve_config` the `[target]` lines
/// `lines` (`SERVE_TARGET_EXTRA`), quoted for the shell whatever they hold.
fn export_serve_target(lines: &str) -> String {
    format!(
        "export SERVE_TARGET_EXTRA='{}'",
        lines.replace('\'', r"'\''")
    )
}

/// Where the SPDK comparisons find SPDK's tools: `$SPDK_DIR/build/bin`, an SPDK the user
/// built (built for x86-64-v2 at most, as QEMU's `max` CPU model under TCG has no AVX-512).
fn spdk_programs() -> Result<[(PathBuf, &'static str); 2], String> {
    let dir = std::env::var_os("SPDK_DIR").ok_or(
        "SPDK_DIR is not set: the SPDK comparisons run SPDK's spdk_nvme_perf and nvmf_tgt \
         from $SPDK_DIR/build/bin, an SPDK you built (configure --target-arch=x86-64-v2)",
    )?;
    let bin = PathBuf::from(dir).join("build/bin");
    let programs = [
        (bin.join("spdk_nvme_perf"), "usr/bin/spdk_nvme_perf"),
        (bin.join("nvmf_tgt"), "usr/bin/nvmf_tgt"),
    ];
    match programs.iter().find(|(path, _)| !path.is_file()) {
        Some((missing, _)) => Err(format!(
            "{} does not exist: build SPDK in SPDK_DIR first",
            missing.display()
        )),
        None => Ok(programs),
    }
}

/// The queue depth `BENCH_HW_PROFILE` asks a profiled run at: one the comparisons measure.
fn profile_depth(value: Option<&str>) -> Result<Option<u32>, String> {
    let Some(value) = value else { return Ok(None) };
    match value.parse::<u32>() {
        Ok(depth) if QUEUE_DEPTHS.contains(&depth) => Ok(Some(depth)),
        _ => Err(format!(
            "BENCH_HW_PROFILE={value}: give the queue depth of the profiled run, one of {QUEUE_DEPTHS:?}"
        )),
    }
}

fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    let spdk = spdk_programs();
    let all = comparisons();
    let selected: Vec<&Comparison> = all
        .iter()
        .filter(|c| {
            which.split(',').any(|wanted| match wanted {
                "all" => !c.needs_spdk() || spdk.is_ok(),
                "spdk" => c.needs_spdk(),
                name => name == c.name,
            })
        })
        .collect();
    if selected.is_empty() {
        eprintln!(
            "usage: vfnvme-hw-bench [local|fabric|fabric-floor|spdk-local|spdk-fabric|spdk|all],..."
        );
        return ExitCode::from(2);
    }
    let with_spdk = selected.iter().any(|c| c.needs_spdk());
    // An experiment's guest kernel arguments (e.g. `idle=poll`), named in the table header.
    let kernel_args = std::env::var("BENCH_HW_KERNEL_ARGS").unwrap_or_default();
    let profile = match profile_depth(std::env::var("BENCH_HW_PROFILE").ok().as_deref()) {
        Ok(depth) => depth,
        Err(why) => {
            eprintln!("bench-hw: {why}");
            return ExitCode::from(2);
        }
    };
    // Lines for every vfnvme serve's [target] (guest/lib.sh `write_serve_config`), e.g.
    // `c2h_success = true`.
    let serve_extra = std::env::var("BENCH_HW_SERVE_TARGET").unwrap_or_default();
    let mut guest_script = script(&selected, with_spdk, profile);
    if !serve_extra.is_empty() {
        guest_script = format!("{}\n{guest_script}", export_serve_target(&serve_extra));
    }
    let mut scenario = Scenario::new("bench", &guest_script).extra_kernel_args(&kernel_args);
    if profile.is_some() {
        scenario = scenario.guest_program(Path::new(PERF), "usr/bin/perf");
    }
    if with_spdk {
        let programs = match &spdk {
            Ok(programs) => programs,
            Err(why) => {
                eprintln!("bench-hw: {why}");
                return ExitCode::FAILURE;
            }
        };
        // The guest memory holds the larger hugepage reserve (see `script`).
        scenario = scenario.cpu_model(SPDK_CPU_MODEL).memory_mib(3072);
        for (host_path, guest_path) in programs {
            scenario = scenario.guest_program(host_path, guest_path);
        }
    } else if let Err(why) = &spdk {
        eprintln!("bench-hw: the SPDK comparisons are left out: {why}");
    }
    let measurements = 2 * QUEUE_DEPTHS.len() as u32 * REPEATS * selected.len() as u32;
    let expected_seconds = measurements * (SECONDS + 2) + 30;
    eprintln!(
        "bench-hw: booting one guest; {measurements} measurements of {SECONDS} s follow (about {expected_seconds} s)",
    );
    let outcome = match scenario
        .drive(Drive::new("VFNVMEBENCH0", DRIVE_BYTES))
        .drive(Drive::new("VFNVMEBENCH1", DRIVE_BYTES))
        .needs_vfnvme()
        .deadline(Duration::from_secs(u64::from(expected_seconds) * 2 + 300))
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
    // What this boot changed from the defaults, for the table's header.
    let mut settings = String::new();
    if !kernel_args.is_empty() {
        settings.push_str(&format!(", guest kernel arguments `{kernel_args}`"));
    }
    if !serve_extra.is_empty() {
        settings.push_str(&format!(", vfnvme serve's [target] adds `{serve_extra}`"));
    }
    println!(
        "4 KiB random reads, {SECONDS} s per run, median of {REPEATS} interleaved runs; \
         QEMU 7.2 TCG-emulated NVMe ({} MiB, 2 vCPUs, CPU model {}{settings}), one guest boot \
         ({:.0} s): relative numbers only",
        DRIVE_BYTES >> 20,
        if with_spdk { SPDK_CPU_MODEL } else { "qemu64" },
        outcome.elapsed.as_secs_f64()
    );
    println!();
    for comparison in &selected {
        if let Err(error) = table(&outcome, comparison) {
            eprintln!("bench-hw: {error}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(depth) = profile {
        for comparison in &selected {
            for side in [&comparison.peer, &comparison.vfnvme] {
                let name = profile_name(comparison, side);
                match outcome.capture(&name) {
                    Some(report) if report.exit_code == 0 => {
                        println!(
                            "### Profile: {}, QD{depth}\n\n```\n{}\n```\n",
                            side.title,
                            report.stdout.trim()
                        );
                    }
                    _ => {
                        eprintln!("bench-hw: no profile report {name} (see the console log)");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What spdk_nvme_perf v24.01 printed in the guest (one run).
    const SPDK_PERF_OUTPUT: &str = "\
Initializing NVMe Controllers
Attached to NVMe Controller at 0000:00:02.0 [1b36:0010]
Associating PCIE (0000:00:02.0) NSID 1 with lcore 0
Initialization complete. Launching workers.
========================================================
                                                                           Latency(us)
Device Information                     :       IOPS      MiB/s    Average        min        max
PCIE (0000:00:02.0) NSID 1 from core  0:   11149.60      43.55      89.34      19.29   28061.29
========================================================
Total                                  :   11149.60      43.55      89.34      19.29   28061.29
";

    #[test]
    fn spdk_perf_total_takes_iops_and_average_latency() {
        assert_eq!(spdk_perf_total(SPDK_PERF_OUTPUT), Some((11149.60, 89.34)));
        assert_eq!(spdk_perf_total("Unable to initialize SPDK env"), None);
    }

    #[test]
    fn a_profiled_script_captures_one_report_per_side_and_only_then() {
        let all = comparisons();
        let selected: Vec<&Comparison> = all.iter().collect();
        let profiled = script(&selected, true, Some(16));
        for comparison in &all {
            for side in [&comparison.peer, &comparison.vfnvme] {
                let capture = format!("capture {} ", profile_name(comparison, side));
                assert_eq!(profiled.matches(&capture).count(), 1, "{capture}");
            }
        }
        assert!(profiled.contains("profile: vfnvme serve randread QD16 under perf record"));
        assert!(!script(&selected, true, None).contains("perf record"));
    }

    #[test]
    fn the_profiled_depth_is_one_the_comparisons_measure() {
        assert_eq!(profile_depth(None), Ok(None));
        assert_eq!(profile_depth(Some("1")), Ok(Some(1)));
        assert_eq!(profile_depth(Some("16")), Ok(Some(16)));
        for wrong in ["", "yes", "4", "0"] {
            let why = profile_depth(Some(wrong)).unwrap_err();
            assert!(why.contains("one of [1, 16]"), "{why}");
        }
    }

    #[test]
    fn serve_target_lines_reach_the_guest_shell_as_written() {
        let lines = "c2h_success = true\nrpc_socket = '/tmp/it''s.sock'";
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{}\nprintf %s \"$SERVE_TARGET_EXTRA\"",
                export_serve_target(lines)
            ))
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), lines);
    }

    #[test]
    fn every_comparison_names_distinct_captures() {
        let all = comparisons();
        let mut names: Vec<String> = all
            .iter()
            .flat_map(|c| {
                [&c.peer, &c.vfnvme].into_iter().flat_map(move |side| {
                    QUEUE_DEPTHS.into_iter().flat_map(move |depth| {
                        (1..=REPEATS).map(move |repeat| capture_name(c, side, depth, repeat))
                    })
                })
            })
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
