//! The guest image: a Debian kernel plus an initramfs with busybox, fio, nvme-cli, the
//! project's binaries and `tools/setup.sh`, built once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::cpio::CpioArchive;
use crate::error::{HarnessError, Result};
use crate::host::{self, INSTALL_HINT};
use crate::kernel::GuestKernel;
use crate::kmod;

/// Modules loaded at boot, in this order unless dependencies say otherwise. `vfio_iommu_type1`
/// comes before `vfio-pci` because nothing pulls it in and vfio cannot attach groups without
/// it; `crc64_rocksoft_generic` and `crc32c_generic` are what nvme-core's T10-PI and ext4 ask
/// the crypto API for, which would otherwise need a working modprobe in the guest; `null_blk`
/// (/dev/nullb0) is the drive-less block device of the benchmark's fabric floor.
pub const GUEST_MODULES: &[&str] = &[
    "configfs",
    "irqbypass",
    "vfio",
    "vfio_iommu_type1",
    "vfio-pci",
    "crc64_rocksoft_generic",
    "crc64-rocksoft",
    "t10-pi",
    "nvme-core",
    "nvme",
    "nvme-fabrics",
    "nvme-tcp",
    "nvmet",
    "nvmet-tcp",
    "crc32c_generic",
    "ext4",
    "null_blk",
];

/// Where the guest finds its modules and the list saying in which order to load them.
const GUEST_MODULE_DIR: &str = "lib/modules/vfnvme";
const GUEST_INIT: &str = include_str!("../guest/init.sh");
const GUEST_LIBRARY: &str = include_str!("../guest/lib.sh");

/// A bootable guest: kernel image and the base initramfs every scenario starts from.
#[derive(Debug)]
pub struct GuestImage {
    /// The kernel image QEMU boots.
    pub vmlinuz: PathBuf,
    /// The base initramfs (uncompressed newc cpio).
    pub base_initramfs: PathBuf,
    /// Whether `/usr/bin/vfnvme` is in the image, or why not.
    pub vfnvme: std::result::Result<(), String>,
}

impl GuestImage {
    /// The image shared by all scenarios of this test process, built on first use.
    ///
    /// Returns the build error as a string on every call if building failed, so each test
    /// fails with the reason instead of one test failing and the rest panicking on a poisoned
    /// lock.
    pub fn shared() -> std::result::Result<&'static GuestImage, String> {
        static IMAGE: OnceLock<std::result::Result<GuestImage, String>> = OnceLock::new();
        IMAGE
            .get_or_init(|| GuestImage::build().map_err(|error| error.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn build() -> Result<Self> {
        let cache = host::cache_dir()?;
        let kernel = GuestKernel::obtain(&cache)?;
        let vfnvme = crate::binaries::vfnvme_release_binary();
        let mut archive = CpioArchive::new();
        add_skeleton(&mut archive);
        add_busybox(&mut archive)?;
        let mut programs: Vec<(PathBuf, &str)> = vec![
            (host::find_program("fio", INSTALL_HINT)?, "usr/bin/fio"),
            (host::find_program("nvme", INSTALL_HINT)?, "usr/sbin/nvme"),
        ];
        if let Ok(binary) = &vfnvme {
            programs.push((binary.clone(), "usr/bin/vfnvme"));
        }
        for (host_path, guest_path) in &programs {
            add_program(&mut archive, host_path, guest_path)?;
        }
        let setup_sh = host::workspace_root().join("tools/setup.sh");
        archive.file("usr/bin/setup.sh", 0o755, &read(&setup_sh)?);
        add_modules(&mut archive, &kernel)?;
        archive.file("init", 0o755, GUEST_INIT.as_bytes());
        archive.file("harness/lib.sh", 0o644, GUEST_LIBRARY.as_bytes());

        let images_dir = cache.join("images");
        std::fs::create_dir_all(&images_dir)
            .map_err(|e| HarnessError::io("creating", &images_dir, e))?;
        remove_stale_images(&images_dir);
        let base_initramfs = images_dir.join(format!("base-{}.cpio", std::process::id()));
        std::fs::write(&base_initramfs, archive.finish())
            .map_err(|e| HarnessError::io("writing", &base_initramfs, e))?;
        Ok(Self {
            vmlinuz: kernel.vmlinuz,
            base_initramfs,
            vfnvme: vfnvme.map(|_| ()),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| HarnessError::io("reading", path, e))
}

fn add_skeleton(archive: &mut CpioArchive) {
    for dir in [
        "proc", "sys", "dev", "run", "tmp", "mnt", "root", "etc", "var/tmp",
    ] {
        archive.directory(dir);
    }
    // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    archive.file("etc/group", 0o644, b"root:x:0:\n");
}

fn add_busybox(archive: &mut CpioArchive) -> Result<()> {
    let hint = "apt-get install --no-install-recommends busybox-static (or run .ci/run)";
    let busybox = host::find_program("busybox", hint)?;
    add_program(archive, &busybox, "bin/busybox")?;
    let applets = host::run(Command::new(&busybox).arg("--list-full"))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if !applet.is_empty() && applet != "bin/busybox" {
            archive.symlink(applet, "/bin/busybox");
        }
    }
    Ok(())
}

/// Copies a program and, for a dynamic one, every shared library `ldd` resolves plus the
/// loader, each at the path ldd reports (the loader and RUNPATHs look there).
pub(crate) fn add_program(
    archive: &mut CpioArchive,
    host_path: &Path,
    guest_path: &str,
) -> Result<()> {
    archive.file(guest_path, 0o755, &read(host_path)?);
    let ldd = host::find_program("ldd", "apt-get install libc-bin")?;
    let output = Command::new(ldd)
        .arg(host_path)
        .output()
        .map_err(|e| HarnessError::io("running ldd on", host_path, e))?;
    // ldd exits non-zero for static executables ("not a dynamic executable").
    if !output.status.success() {
        return Ok(());
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            return Err(HarnessError::MissingFile {
                what: "shared library",
                path: host_path.to_path_buf(),
                hint: format!("ldd says `{line}`: install the package providing it"),
            });
        }
        let library = match line.split_once("=>") {
            Some((_, resolved)) => resolved.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|path| path.starts_with('/')),
        };
        if let Some(library) = library.filter(|path| path.starts_with('/')) {
            // Reading follows symlinks, so the guest gets a plain file at the reported path.
            archive.file(library, 0o755, &read(Path::new(library))?);
        }
    }
    Ok(())
}

fn add_modules(archive: &mut CpioArchive, kernel: &GuestKernel) -> Result<()> {
    let modules = kmod::resolve_load_order(&kernel.modules_dir, GUEST_MODULES)?;
    let mut load_order = String::new();
    for module in &modules {
        archive.file(
            &format!("{GUEST_MODULE_DIR}/{}", module.file_name),
            0o644,
            &module.contents,
        );
        load_order.push_str(&module.file_name);
        load_order.push('\n');
    }
    archive.file("harness/modules.order", 0o644, load_order.as_bytes());
    Ok(())
}

/// Deletes base images of test processes that no longer run.
fn remove_stale_images(images_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(images_dir) else {
        return;
    };
    for path in entries.filter_map(|entry| entry.ok().map(|entry| entry.path())) {
        let owner = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("base-"))
            .and_then(|name| name.strip_suffix(".cpio"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
