//! The guest kernel: Debian's `linux-image-amd64`, downloaded with apt and unpacked into the
//! cache directory once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{HarnessError, Result};
use crate::host;

/// Marker file written last, so a half-unpacked kernel is never used.
const COMPLETE_MARKER: &str = ".complete";
/// The meta package whose dependency names the current kernel image package.
const META_PACKAGE: &str = "linux-image-amd64";

/// An unpacked Debian kernel package.
#[derive(Debug, Clone)]
pub struct GuestKernel {
    /// The compressed kernel image to boot (`boot/vmlinuz-*`).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
    /// The kernel release, e.g. `6.1.0-26-amd64`.
    pub release: String,
}

impl GuestKernel {
    /// Returns the kernel cached under `cache_dir`, downloading and unpacking it first when the
    /// cache holds none. `$VFNVME_GUEST_KERNEL_PACKAGE` picks a package explicitly.
    pub fn obtain(cache_dir: &Path) -> Result<Self> {
        let kernels_dir = cache_dir.join("kernel");
        std::fs::create_dir_all(&kernels_dir)
            .map_err(|e| HarnessError::io("creating", &kernels_dir, e))?;
        let wanted = std::env::var("VFNVME_GUEST_KERNEL_PACKAGE").ok();
        if let Some(package) = &wanted {
            let dir = kernels_dir.join(package);
            if !dir.join(COMPLETE_MARKER).exists() {
                download_and_unpack(package, &kernels_dir)?;
            }
            return Self::from_unpacked(&dir);
        }
        // A cached kernel is used as it is, so the suite runs offline and does not change
        // under a kernel security update; delete the cache directory to move on.
        if let Some(dir) = newest_cached(&kernels_dir)? {
            return Self::from_unpacked(&dir);
        }
        let package = resolve_image_package()?;
        download_and_unpack(&package, &kernels_dir)?;
        Self::from_unpacked(&kernels_dir.join(package))
    }

    /// Whether [`GuestKernel::obtain`] would find a kernel in the cache without downloading.
    pub fn is_cached(cache_dir: &Path) -> bool {
        let kernels_dir = cache_dir.join("kernel");
        match std::env::var("VFNVME_GUEST_KERNEL_PACKAGE") {
            Ok(package) => kernels_dir.join(package).join(COMPLETE_MARKER).is_file(),
            Err(_) => matches!(newest_cached(&kernels_dir), Ok(Some(_))),
        }
    }

    fn from_unpacked(dir: &Path) -> Result<Self> {
        let modules_root = dir.join("lib/modules");
        let release = single_entry_name(&modules_root)?;
        let vmlinuz = dir.join("boot").join(format!("vmlinuz-{release}"));
        if !vmlinuz.is_file() {
            return Err(HarnessError::Kernel(format!(
                "{} is missing; delete {} to download it again",
                vmlinuz.display(),
                dir.display()
            )));
        }
        Ok(Self {
            vmlinuz,
            modules_dir: modules_root.join(&release),
            release,
        })
    }
}

fn newest_cached(kernels_dir: &Path) -> Result<Option<PathBuf>> {
    let entries =
        std::fs::read_dir(kernels_dir).map_err(|e| HarnessError::io("listing", kernels_dir, e))?;
    let mut complete: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|dir| dir.join(COMPLETE_MARKER).is_file())
        .collect();
    complete.sort();
    Ok(complete.pop())
}

fn single_entry_name(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| HarnessError::io("listing", dir, e))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.pop().ok_or_else(|| {
        HarnessError::Kernel(format!("{} is empty: no kernel release", dir.display()))
    })
}

/// Asks apt which `linux-image-*` package the meta package currently depends on.
fn resolve_image_package() -> Result<String> {
    let apt_cache = host::find_program("apt-cache", "the guest kernel comes from Debian's apt")?;
    let output = host::run(Command::new(apt_cache).args(["depends", META_PACKAGE]))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|package| package.starts_with("linux-image-"))
        .map(str::to_owned)
        .ok_or_else(|| {
            HarnessError::Kernel(format!(
                "apt-cache depends {META_PACKAGE} names no linux-image package: \
                 run `apt-get update` (the package lists may be empty)"
            ))
        })
}

/// Downloads `package` with `apt-get download` and unpacks it into `kernels_dir/package`,
/// via a temporary directory renamed into place, so concurrent runs never see half a kernel.
fn download_and_unpack(package: &str, kernels_dir: &Path) -> Result<()> {
    let apt_get = host::find_program("apt-get", "the guest kernel comes from Debian's apt")?;
    let dpkg_deb = host::find_program("dpkg-deb", "the guest kernel comes from Debian's apt")?;
    let work = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(kernels_dir)
        .map_err(|e| HarnessError::io("creating a temporary directory in", kernels_dir, e))?;
    host::run(
        Command::new(apt_get)
            .args(["download", package])
            .current_dir(work.path()),
    )
    .map_err(|error| {
        HarnessError::Kernel(format!(
            "cannot download {package} ({error}); run `apt-get update` and check that \
             Debian's package mirror is reachable"
        ))
    })?;
    let deb = std::fs::read_dir(work.path())
        .map_err(|e| HarnessError::io("listing", work.path(), e))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| HarnessError::Kernel(format!("apt-get download {package} left no .deb")))?;
    let unpacked = work.path().join("root");
    host::run(Command::new(dpkg_deb).arg("-x").arg(&deb).arg(&unpacked))?;
    std::fs::write(unpacked.join(COMPLETE_MARKER), package)
        .map_err(|e| HarnessError::io("writing", &unpacked, e))?;
    let destination = kernels_dir.join(package);
    if let Err(error) = std::fs::rename(&unpacked, &destination) {
        // Another test process may have won the race; its copy is as good as ours.
        if !destination.join(COMPLETE_MARKER).is_file() {
            return Err(HarnessError::io(
                "moving the kernel to",
                &destination,
                error,
            ));
        }
    }
    Ok(())
}
