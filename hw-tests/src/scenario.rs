//! A scenario: a shell script run inside a freshly booted guest, plus the drives it gets.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::cpio::CpioArchive;
use crate::error::{HarnessError, Result};
use crate::guest::GuestImage;
use crate::host;
use crate::qemu::{self, BootEnd, NvmeDevice, VmConfig};
use crate::qmp::Qmp;

/// A guest line asking the host to hot-remove a device: `VFNVME-HOST-REQUEST: device_del ID`
/// (printed by `request_device_del` in guest/lib.sh).
pub const DEVICE_DEL_REQUEST: &str = "VFNVME-HOST-REQUEST: device_del ";

/// `run_phase` in guest/lib.sh prints these around a phase.
pub const PHASE_BEGIN: &str = "VFNVME-PHASE-BEGIN ";
/// See [`PHASE_BEGIN`]; followed by the phase's name and `PASS` or `FAIL step=... exit=...`.
pub const PHASE_RESULT: &str = "VFNVME-PHASE-RESULT: ";

/// Console lines shown when a scenario fails.
pub const FAILURE_TAIL_LINES: usize = 150;

/// One boot at a time: the machine has two cores, and a TCG guest uses both.
static BOOT_LOCK: Mutex<()> = Mutex::new(());

/// An emulated NVMe drive as the scenario sees it. In the guest its address is
/// `$DRIVE<k>_BDF`, its serial `$DRIVE<k>_SERIAL`, and namespace `n`'s size in bytes
/// `$DRIVE<k>_NS<n>_BYTES`.
#[derive(Debug, Clone)]
pub struct Drive {
    serial: String,
    namespace_bytes: Vec<u64>,
    behind_root_port: bool,
    namespace_properties: String,
}

impl Drive {
    /// A drive with one namespace of `bytes` (QEMU's 512-byte blocks).
    pub fn new(serial: &str, bytes: u64) -> Self {
        Self {
            serial: serial.to_owned(),
            namespace_bytes: vec![bytes],
            behind_root_port: false,
            namespace_properties: String::new(),
        }
    }

    /// Sets a QEMU `nvme-ns` property (e.g. `eui64=0x0011223344556677`, `uuid=...`) of the
    /// drive's namespace: what the drive then reports in Identify Namespace.
    pub fn namespace_property(mut self, property: &str) -> Self {
        self.namespace_properties.push(',');
        self.namespace_properties.push_str(property);
        self
    }

    /// Puts the drive behind its own PCIe root port, so QMP `device_del` can remove it.
    pub fn behind_root_port(mut self) -> Self {
        self.behind_root_port = true;
        self
    }
}

/// A script to run in the guest, with its drives.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    script: String,
    drives: Vec<Drive>,
    memory_mib: u32,
    cpus: u32,
    cpu_model: Option<String>,
    extra_kernel_args: String,
    deadline: Duration,
    needs_vfnvme: bool,
    files: Vec<(String, String)>,
    programs: Vec<(PathBuf, String)>,
}

impl Scenario {
    /// A scenario named `name` (used for the console log file) running `script` under
    /// `sh -e` after the helpers of `guest/lib.sh`.
    pub fn new(name: &str, script: &str) -> Self {
        Self {
            name: name.to_owned(),
            script: script.to_owned(),
            drives: Vec::new(),
            memory_mib: 2048,
            cpus: 2,
            cpu_model: None,
            extra_kernel_args: String::new(),
            deadline: Duration::from_secs(300),
            needs_vfnvme: false,
            files: Vec::new(),
            programs: Vec::new(),
        }
    }

    /// Attaches a drive; drive k is `$DRIVE<k>_*` in the guest.
    pub fn drive(mut self, drive: Drive) -> Self {
        self.drives.push(drive);
        self
    }

    /// Kills the guest after this long (boot included).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Guest memory in MiB.
    pub fn memory_mib(mut self, memory_mib: u32) -> Self {
        self.memory_mib = memory_mib;
        self
    }

    /// Puts `contents` at `/harness/NAME` in the guest (e.g. a phase script for `run_phase`
    /// in guest/lib.sh).
    pub fn guest_file(mut self, name: &str, contents: &str) -> Self {
        self.files.push((name.to_owned(), contents.to_owned()));
        self
    }

    /// QEMU's CPU model for this boot (e.g. `max`, for programs built for x86-64-v2, which
    /// QEMU's default qemu64 model is not).
    pub fn cpu_model(mut self, model: &str) -> Self {
        self.cpu_model = Some(model.to_owned());
        self
    }

    /// Kernel command-line arguments for this boot after the harness's own (a benchmark's
    /// experiment, e.g. `idle=poll`).
    pub fn extra_kernel_args(mut self, args: &str) -> Self {
        self.extra_kernel_args = args.to_owned();
        self
    }

    /// Puts the host's program `host_path`, with the shared libraries it loads, at
    /// `guest_path` in the guest (e.g. a peer's tool the user built, for a benchmark).
    pub fn guest_program(mut self, host_path: &Path, guest_path: &str) -> Self {
        self.programs
            .push((host_path.to_path_buf(), guest_path.to_owned()));
        self
    }

    /// Fails the scenario up front unless `vfnvme` could be built into the guest.
    pub fn needs_vfnvme(mut self) -> Self {
        self.needs_vfnvme = true;
        self
    }

    /// Boots the guest and runs the scenario. An `Err` means the boot could not be prepared;
    /// a failing scenario is an `Ok` outcome whose `passed()` is false.
    pub fn run(&self) -> Result<Outcome> {
        self.run_with(&mut |_| {})
    }

    /// Like [`Scenario::run`], with a callback for every console line as it arrives.
    pub fn run_with(&self, on_line: &mut dyn FnMut(&str)) -> Result<Outcome> {
        let image = GuestImage::shared().map_err(HarnessError::Qemu)?;
        if self.needs_vfnvme {
            if let Err(reason) = &image.vfnvme {
                return Err(HarnessError::MissingFile {
                    what: "the vfnvme binary",
                    path: host::build_dir().join("release/vfnvme"),
                    hint: reason.clone(),
                });
            }
        }
        let work = tempfile::Builder::new()
            .prefix("vfnvme-hw-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temporary directory in", "/tmp", e))?;
        let drives = self.create_drive_images(work.path())?;
        let initramfs = work.path().join("initramfs.cpio");
        self.write_initramfs(&image.base_initramfs, &initramfs)?;
        let config = VmConfig {
            kernel: image.vmlinuz.clone(),
            initramfs,
            memory_mib: self.memory_mib,
            cpus: self.cpus,
            cpu_model: self.cpu_model.clone(),
            extra_kernel_args: self.extra_kernel_args.clone(),
            drives,
            qmp_socket: Some(work.path().join("qmp.sock")),
        };
        let logs = host::cache_dir()?.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| HarnessError::io("creating", &logs, e))?;
        let console_log = logs.join(format!("{}.log", self.name));
        let _one_boot_at_a_time = BOOT_LOCK
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let qmp_socket = config
            .qmp_socket
            .clone()
            .expect("every boot has a QMP socket");
        let mut serve_guest_requests = |line: &str| {
            if let Some(at) = line.find(DEVICE_DEL_REQUEST) {
                let id = line[at + DEVICE_DEL_REQUEST.len()..].trim();
                // The guest waits for the device to vanish; a failure shows up there.
                let result = Qmp::connect(&qmp_socket).and_then(|mut qmp| qmp.device_del(id));
                if let Err(error) = result {
                    eprintln!("scenario {}: device_del {id} failed: {error}", self.name);
                }
            }
            on_line(line);
        };
        let boot = qemu::boot(
            &config,
            self.deadline,
            &console_log,
            &mut serve_guest_requests,
        )?;
        Ok(Outcome {
            name: self.name.clone(),
            end: boot.end,
            console: boot.console,
            console_log,
            elapsed: boot.elapsed,
        })
    }

    /// Runs the scenario and panics, with the failing step and the console's tail, unless it
    /// passed. For `#[test]` functions.
    pub fn run_expecting_pass(&self) -> Outcome {
        let outcome = self
            .run()
            .unwrap_or_else(|error| panic!("scenario {}: cannot run: {error}", self.name));
        outcome.assert_passed();
        outcome
    }

    fn create_drive_images(&self, dir: &std::path::Path) -> Result<Vec<NvmeDevice>> {
        let mut devices = Vec::new();
        for (index, drive) in self.drives.iter().enumerate() {
            let mut images = Vec::new();
            for (ns_index, bytes) in drive.namespace_bytes.iter().enumerate() {
                let image = dir.join(format!("drive{index}-ns{}.img", ns_index + 1));
                let file = std::fs::File::create(&image)
                    .map_err(|e| HarnessError::io("creating", &image, e))?;
                // Sparse: costs no disk until the guest writes.
                file.set_len(*bytes)
                    .map_err(|e| HarnessError::io("sizing", &image, e))?;
                images.push(image);
            }
            devices.push(NvmeDevice {
                id: format!("nvme{index}"),
                serial: drive.serial.clone(),
                namespace_images: images,
                behind_root_port: drive.behind_root_port,
                namespace_properties: drive.namespace_properties.clone(),
            });
        }
        Ok(devices)
    }

    /// The base image followed by a second archive with this scenario's script and drives.
    fn write_initramfs(&self, base: &std::path::Path, to: &std::path::Path) -> Result<()> {
        let mut env = format!("DRIVE_COUNT={}\n", self.drives.len());
        for (index, drive) in self.drives.iter().enumerate() {
            let _ = writeln!(env, "DRIVE{index}_SERIAL='{}'", drive.serial);
            let _ = writeln!(env, "DRIVE{index}_QEMU_ID=nvme{index}");
            for (ns_index, bytes) in drive.namespace_bytes.iter().enumerate() {
                let _ = writeln!(env, "DRIVE{index}_NS{}_BYTES={bytes}", ns_index + 1);
            }
        }
        let mut archive = CpioArchive::new();
        archive.file("harness/env.sh", 0o644, env.as_bytes());
        archive.file("harness/scenario.sh", 0o644, self.script.as_bytes());
        for (name, contents) in &self.files {
            archive.file(&format!("harness/{name}"), 0o644, contents.as_bytes());
        }
        for (host_path, guest_path) in &self.programs {
            crate::guest::add_program(&mut archive, host_path, guest_path)?;
        }
        let mut bytes = std::fs::read(base).map_err(|e| HarnessError::io("reading", base, e))?;
        bytes.extend_from_slice(&archive.finish());
        std::fs::write(to, bytes).map_err(|e| HarnessError::io("writing", to, e))
    }
}

/// What one captured command printed (see `capture` in guest/lib.sh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Its exit code.
    pub exit_code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// The result of one scenario boot.
#[derive(Debug)]
pub struct Outcome {
    name: String,
    /// How the boot ended.
    pub end: BootEnd,
    /// The whole console.
    pub console: Vec<String>,
    /// Where the console was saved.
    pub console_log: PathBuf,
    /// Wall time of the boot.
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether the guest reported PASS.
    pub fn passed(&self) -> bool {
        self.end == BootEnd::Reported("PASS".to_owned())
    }

    /// Panics with the reason and the console's tail unless the scenario passed.
    pub fn assert_passed(&self) {
        if !self.passed() {
            self.fail(&match &self.end {
                BootEnd::Reported(result) => result.clone(),
                BootEnd::TimedOut(after) => format!("no result within {after:?}; QEMU killed"),
                BootEnd::ExitedWithoutResult(why) => why.clone(),
            });
        }
    }

    /// Panics with `reason`, the guest's failed checks and the console's tail.
    pub fn fail(&self, reason: &str) -> ! {
        let checks: Vec<&str> = self
            .console
            .iter()
            .filter(|line| line.contains("VFNVME-CHECK-FAILED"))
            .map(String::as_str)
            .collect();
        panic!(
            "scenario {} FAILED: {reason}\n{}\n--- last {FAILURE_TAIL_LINES} console lines \
             (whole log: {}) ---\n{}",
            self.name,
            checks.join("\n"),
            self.console_log.display(),
            self.tail(FAILURE_TAIL_LINES)
        );
    }

    /// The console lines of phase `name` (`run_phase` in guest/lib.sh): from its begin marker
    /// to its result line, or to the end of the console if it never finished.
    pub fn phase_console(&self, name: &str) -> Option<&[String]> {
        let begin_marker = format!("{PHASE_BEGIN}{name}");
        let result_prefix = format!("{PHASE_RESULT}{name} ");
        let begin = self
            .console
            .iter()
            .rposition(|line| *line == begin_marker)?;
        let end = self.console[begin..]
            .iter()
            .position(|line| line.starts_with(&result_prefix))
            .map_or(self.console.len(), |at| begin + at + 1);
        Some(&self.console[begin..end])
    }

    /// What phase `name` reported (`PASS`, or `FAIL step=... exit=...`), if it finished.
    pub fn phase_result(&self, name: &str) -> Option<String> {
        let result_prefix = format!("{PHASE_RESULT}{name} ");
        self.phase_console(name)?
            .iter()
            .find_map(|line| line.strip_prefix(&result_prefix))
            .map(|result| result.trim().to_owned())
    }

    /// Panics, with the phase's failed checks and the tail of its console, unless phase
    /// `name` reported PASS.
    pub fn assert_phase_passed(&self, name: &str) {
        match self.phase_result(name) {
            Some(result) if result == "PASS" => {}
            Some(result) => self.fail_phase(name, &result),
            None if self.phase_console(name).is_some() => {
                let why = match &self.end {
                    BootEnd::Reported(result) => format!("the scenario reported {result}"),
                    BootEnd::TimedOut(after) => format!("no result within {after:?}; QEMU killed"),
                    BootEnd::ExitedWithoutResult(why) => why.clone(),
                };
                self.fail_phase(name, &format!("the phase did not finish: {why}"))
            }
            None => {
                self.assert_passed();
                self.fail(&format!("phase {name} never started"))
            }
        }
    }

    /// Panics with `reason`, the failed checks of phase `name` and the tail of its console.
    pub fn fail_phase(&self, name: &str, reason: &str) -> ! {
        let lines = self.phase_console(name).unwrap_or(&self.console);
        let checks: Vec<&str> = lines
            .iter()
            .filter(|line| line.contains("VFNVME-CHECK-FAILED"))
            .map(String::as_str)
            .collect();
        let start = lines.len().saturating_sub(FAILURE_TAIL_LINES);
        panic!(
            "scenario {} phase {name} FAILED: {reason}\n{}\n--- last {FAILURE_TAIL_LINES} \
             console lines of the phase (whole log: {}) ---\n{}",
            self.name,
            checks.join("\n"),
            self.console_log.display(),
            lines[start..].join("\n")
        );
    }

    /// The last `lines` console lines.
    pub fn tail(&self, lines: usize) -> String {
        let start = self.console.len().saturating_sub(lines);
        self.console[start..].join("\n")
    }

    /// The output of `capture NAME ...` in the guest, if it ran.
    pub fn capture(&self, name: &str) -> Option<Capture> {
        let begin_prefix = format!("VFNVME-CAPTURE-BEGIN {name} rc=");
        let stderr_marker = format!("VFNVME-CAPTURE-STDERR {name}");
        let end_marker = format!("VFNVME-CAPTURE-END {name}");
        let begin = self
            .console
            .iter()
            .rposition(|line| line.starts_with(&begin_prefix))?;
        let exit_code = self.console[begin][begin_prefix.len()..]
            .trim()
            .parse()
            .ok()?;
        let rest = &self.console[begin + 1..];
        let stderr_at = rest.iter().position(|line| *line == stderr_marker)?;
        let end_at = rest.iter().position(|line| *line == end_marker)?;
        let join = |lines: &[String]| lines.join("\n").trim_end().to_owned();
        Some(Capture {
            exit_code,
            stdout: join(&rest[..stderr_at]),
            stderr: join(&rest[stderr_at + 1..end_at]),
        })
    }

    /// Like [`Outcome::capture`], failing the test with the console's tail when missing.
    pub fn expect_capture(&self, name: &str) -> Capture {
        self.capture(name)
            .unwrap_or_else(|| self.fail(&format!("the guest printed no capture named {name}")))
    }

    /// A capture that must have exited 0, and its stdout as JSON (anything before the first
    /// line starting with `{` is skipped).
    pub fn json(&self, name: &str) -> serde_json::Value {
        let capture = self.expect_capture(name);
        if capture.exit_code != 0 {
            self.fail(&format!(
                "{name}: exit {}\nstdout:\n{}\nstderr:\n{}",
                capture.exit_code, capture.stdout, capture.stderr
            ));
        }
        let stdout = capture.stdout.trim();
        stdout
            .match_indices('{')
            .map(|(at, _)| at)
            .filter(|&at| at == 0 || stdout[..at].ends_with('\n'))
            .find_map(|at| serde_json::from_str(&stdout[at..]).ok())
            .unwrap_or_else(|| self.fail(&format!("{name}: stdout is not JSON:\n{stdout}")))
    }
}
