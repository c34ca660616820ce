//! `make demo`: boots the QEMU appliance with two emulated NVMe drives behind an emulated
//! IOMMU, binds them to vfio-pci with setup.sh, runs `vfnvme identify` and `vfnvme perf` on
//! both, gives them back, and powers off. Prints the guest's console as it goes and a summary;
//! exits non-zero if any step failed.

use std::io::Write;
use std::process::ExitCode;

use vfnvme_hw_tests::demo::{self, DRIVE_BYTES, SERIALS};
use vfnvme_hw_tests::guest::GuestImage;
use vfnvme_hw_tests::host;
use vfnvme_hw_tests::kernel::GuestKernel;

fn main() -> ExitCode {
    let mut stdout = std::io::stdout();
    match host::cache_dir() {
        Ok(cache) if GuestKernel::is_cached(&cache) => {
            say(&format!(
                "guest kernel: cached in {}",
                cache.join("kernel").display()
            ));
        }
        Ok(cache) => say(&format!(
            "guest kernel: downloading Debian's linux-image-amd64 with apt-get (once; cached \
             in {})",
            cache.join("kernel").display()
        )),
        Err(error) => return failed(&error.to_string()),
    }
    say(
        "guest image: building vfnvme (cargo build --release) and packing busybox, fio, \
         nvme-cli, setup.sh and kernel modules into an initramfs",
    );
    let image = match GuestImage::shared() {
        Ok(image) => image,
        Err(error) => return failed(&error),
    };
    if let Err(reason) = &image.vfnvme {
        return failed(&format!("vfnvme is not in the guest image: {reason}"));
    }
    say(&format!(
        "booting QEMU (TCG, q35 with an emulated Intel IOMMU, {} emulated NVMe drives of {} MiB: \
         {}); the guest's console follows",
        SERIALS.len(),
        DRIVE_BYTES >> 20,
        SERIALS.join(", ")
    ));
    let report = match demo::run(&mut stdout) {
        Ok(report) => report,
        Err(error) => return failed(&error.to_string()),
    };
    let _ = writeln!(stdout);
    for failure in &report.failures {
        let _ = writeln!(stdout, "failed check: {failure}");
    }
    let _ = writeln!(stdout, "{}", report.summary_line());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn say(text: &str) {
    println!("vfnvme demo: {text}");
}

fn failed(error: &str) -> ExitCode {
    eprintln!("vfnvme demo: FAILED before the guest ran: {error}");
    ExitCode::FAILURE
}
