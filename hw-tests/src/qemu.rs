//! Starting QEMU with emulated NVMe drives behind an emulated IOMMU, and watching its console.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::host;

/// The line prefix the guest's init prints with the scenario's result.
pub const RESULT_MARKER: &str = "VFNVME-SCENARIO-RESULT: ";
/// How long QEMU may take to exit after the guest reported its result.
const POWEROFF_GRACE: Duration = Duration::from_secs(20);

/// One emulated NVMe controller and the backing files of its namespaces.
#[derive(Debug, Clone)]
pub struct NvmeDevice {
    /// `-device nvme,id=...`; also the QMP name for hot removal.
    pub id: String,
    /// The serial number the controller reports.
    pub serial: String,
    /// One raw image per namespace, nsid 1, 2, ...
    pub namespace_images: Vec<PathBuf>,
    /// Attach it behind its own PCIe root port (hot-removable through QMP).
    pub behind_root_port: bool,
    /// Extra `nvme-ns` properties of its namespaces (",eui64=...,uuid=..."); empty for none.
    pub namespace_properties: String,
}

/// Everything needed for one boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs (may be several concatenated archives).
    pub initramfs: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// QEMU's CPU model (`-cpu`), or QEMU's default (qemu64) when `None`.
    pub cpu_model: Option<String>,
    /// Kernel command-line arguments after the harness's own (an experiment's, e.g.
    /// `idle=poll`); empty for none.
    pub extra_kernel_args: String,
    /// Drives, attached in this order.
    pub drives: Vec<NvmeDevice>,
    /// QMP socket to create, if the test talks to QEMU while the guest runs.
    pub qmp_socket: Option<PathBuf>,
}

impl VmConfig {
    /// The QEMU command line.
    pub fn command(&self, qemu: &Path) -> Command {
        let mut command = Command::new(qemu);
        // TCG, not KVM: the stock kernel hangs under /dev/kvm on these machines. The split
        // irqchip is what intel-iommu's interrupt remapping needs, and caching-mode lets vfio
        // in the guest map DMA through the emulated IOMMU.
        command
            .args(["-accel", "tcg", "-machine", "q35,kernel-irqchip=split"])
            .args(["-device", "intel-iommu,intremap=on,caching-mode=on"])
            .args([
                "-m",
                &self.memory_mib.to_string(),
                "-smp",
                &self.cpus.to_string(),
            ])
            .args(
                self.cpu_model
                    .iter()
                    .flat_map(|model| ["-cpu", model.as_str()]),
            )
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initramfs)
            // tsc=reliable: the guest kernel's TSC synchronisation check fails under TCG (the
            // vCPUs are host threads) and falls back to the emulated HPET, which makes every
            // clock read a device-model access; with it the clocksource is the TSC, as on the
            // bare-metal machines this runs on.
            .arg("-append")
            .arg(
                format!(
                    "console=ttyS0 intel_iommu=on loglevel=4 panic=-1 rdinit=/init \
                     mitigations=off tsc=reliable {}",
                    self.extra_kernel_args
                )
                .trim_end(),
            );
        let mut root_ports = 0;
        for drive in &self.drives {
            let mut nvme = format!("nvme,id={},serial={}", drive.id, drive.serial);
            if drive.behind_root_port {
                root_ports += 1;
                let port = format!("rp{root_ports}");
                command.args([
                    "-device",
                    &format!("pcie-root-port,id={port},chassis={root_ports},slot={root_ports}"),
                ]);
                nvme.push_str(&format!(",bus={port}"));
            }
            match drive.namespace_images.as_slice() {
                [image] if drive.namespace_properties.is_empty() => {
                    let drive_id = format!("{}-ns1", drive.id);
                    command.arg("-drive").arg(drive_arg(image, &drive_id));
                    command.args(["-device", &format!("{nvme},drive={drive_id}")]);
                }
                images => {
                    command.args(["-device", &nvme]);
                    for (index, image) in images.iter().enumerate() {
                        let nsid = index + 1;
                        let drive_id = format!("{}-ns{nsid}", drive.id);
                        command.arg("-drive").arg(drive_arg(image, &drive_id));
                        command.args([
                            "-device",
                            &format!(
                                "nvme-ns,drive={drive_id},bus={},nsid={nsid}{}",
                                drive.id, drive.namespace_properties
                            ),
                        ]);
                    }
                }
            }
        }
        if let Some(socket) = &self.qmp_socket {
            command
                .arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", socket.display()));
        }
        command
    }
}

fn drive_arg(image: &Path, id: &str) -> String {
    format!("file={},if=none,id={id},format=raw", image.display())
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// The guest printed a result marker; the text after the marker.
    Reported(String),
    /// The deadline passed without a marker; QEMU was killed.
    TimedOut(Duration),
    /// QEMU exited without a marker (crash, kernel panic, bad arguments).
    ExitedWithoutResult(String),
}

/// The console of a finished boot and how it ended.
#[derive(Debug)]
pub struct Boot {
    /// How it ended.
    pub end: BootEnd,
    /// Every console line, without carriage returns.
    pub console: Vec<String>,
    /// Wall time from spawning QEMU to its exit.
    pub elapsed: Duration,
}

/// Boots the VM, streams its console into `console_log`, and returns when QEMU exits or the
/// deadline passes (QEMU is then killed). `on_line` sees every console line as it arrives,
/// so a test can act on the guest's requests (e.g. hot-remove a drive through QMP).
pub fn boot(
    config: &VmConfig,
    deadline: Duration,
    console_log: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<Boot> {
    let qemu = host::find_program(
        "qemu-system-x86_64",
        "apt-get install --no-install-recommends qemu-system-x86 (or run .ci/run)",
    )?;
    let started = Instant::now();
    let mut child = config
        .command(&qemu)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::Qemu(format!("cannot start {}: {e}", qemu.display())))?;
    let mut log = std::fs::File::create(console_log)
        .map_err(|e| HarnessError::io("creating", console_log, e))?;
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut raw = Vec::new();
        while matches!(stdout.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&raw).replace('\r', "");
            raw.clear();
            if lines_tx
                .send(line.trim_end_matches('\n').to_owned())
                .is_err()
            {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut console = Vec::new();
    let mut reported: Option<String> = None;
    let mut stop_at = started + deadline;
    let timed_out = loop {
        let now = Instant::now();
        if now >= stop_at {
            break reported.is_none();
        }
        match lines_rx.recv_timeout(stop_at - now) {
            Ok(line) => {
                use std::io::Write;
                let _ = writeln!(log, "{line}");
                on_line(&line);
                if reported.is_none() {
                    if let Some(at) = line.find(RESULT_MARKER) {
                        reported = Some(line[at + RESULT_MARKER.len()..].trim().to_owned());
                        stop_at = stop_at.min(Instant::now() + POWEROFF_GRACE);
                    }
                }
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break false,
        }
    };
    kill_and_reap(&mut child);
    let _ = reader.join();
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    let elapsed = started.elapsed();
    let end = match reported {
        Some(result) => BootEnd::Reported(result),
        None if timed_out => BootEnd::TimedOut(deadline),
        None => BootEnd::ExitedWithoutResult(format!(
            "QEMU exited ({}) without a result; its stderr: {}",
            child
                .try_wait()
                .ok()
                .flatten()
                .map_or_else(|| "unknown status".to_owned(), |s| s.to_string()),
            qemu_stderr.trim()
        )),
    };
    Ok(Boot {
        end,
        console,
        elapsed,
    })
}

/// Kills QEMU if it still runs (it normally exited on the guest's poweroff) and reaps it.
fn kill_and_reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}
