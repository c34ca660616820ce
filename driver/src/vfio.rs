//! A PCIe NVMe function bound to `vfio-pci`: container, group, device, BAR0, bus mastering, and
//! the IOVA ranges the IOMMU accepts. The only module that talks to /dev/vfio.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vfio_ioctls::{VfioContainer, VfioDevice, VfioOps};

use crate::device::RemovalEvent;
use crate::dma::{DmaMapper, DmaMemory, DmaSpace, MemoryKind};
use crate::error::{DmaError, Result, VfioError};
use crate::mmio::Mmio;
use crate::NvmeDevice;

use vfio_bindings::bindings::vfio::{
    vfio_info_cap_header, vfio_iommu_type1_info, vfio_iommu_type1_info_cap_iova_range,
    vfio_iova_range, VFIO_BASE, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_REQ_IRQ_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_TYPE,
};

/// PCI configuration space: the Command register and its bits (PCI spec, not VFIO).
const PCI_COMMAND: u64 = 0x04;
const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const NVME_CLASS: &str = "0x010802";
/// DMA memory a controller needs at least (queues and a buffer pool), for the memlock check.
const MIN_LOCKED_KIB: u64 = 64 * 1024;

/// Drivers that may share an IOMMU group with a device we take.
const HARMLESS_GROUP_DRIVERS: &[&str] = &["vfio-pci", "pci-stub", "pcieport"];

/// A PCI function's address, `dddd:bb:dd.f`: domain, bus, device (0 to 0x1f) and function (0 to
/// 7), in hexadecimal. `FromStr` takes the full form only (what configuration files name);
/// [`PciAddress::parse_short`] also takes `bb:dd.f` in domain 0 (what an operator types).
/// `Display` writes the canonical lowercase full form sysfs uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    /// The full form, or `bb:dd.f` meaning domain 0.
    pub fn parse_short(text: &str) -> Result<Self, VfioError> {
        if text.matches(':').count() == 1 {
            format!("0000:{text}")
                .parse()
                .map_err(|_| bad_address(text))
        } else {
            text.parse()
        }
    }
}

fn bad_address(text: &str) -> VfioError {
    VfioError::BadAddress {
        address: text.to_owned(),
    }
}

impl std::str::FromStr for PciAddress {
    type Err = VfioError;

    fn from_str(text: &str) -> Result<Self, VfioError> {
        let bad = || bad_address(text);
        let hex = |part: &str, digits: usize| {
            (part.len() == digits && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u16::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        let mut parts = text.split(':');
        let (Some(domain), Some(bus), Some(device_function), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (device, function) = device_function.split_once('.').ok_or_else(bad)?;
        let (domain, bus, device, function) = (
            hex(domain, 4)?,
            hex(bus, 2)?,
            hex(device, 2)?,
            hex(function, 1)?,
        );
        if device > 0x1f || function > 7 {
            return Err(bad());
        }
        Ok(Self {
            domain,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl std::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

fn driver_of(device: &Path) -> Option<String> {
    let link = fs::read_link(device.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// The VFIO container as a [`DmaMapper`]. It holds the memory of every mapping it made, so
/// that memory cannot be freed while the device may still reach it.
struct ContainerMapper {
    address: String,
    container: Arc<VfioContainer>,
    mapped: Mutex<HashMap<u64, DmaMemory>>,
}

impl DmaMapper for ContainerMapper {
    fn map(&self, memory: &DmaMemory, iova: u64) -> Result<()> {
        let mut mapped = self.mapped.lock().map_err(|_| DmaError::Poisoned)?;
        let len = memory.len();
        // SAFETY: `memory` stays allocated until the mapping is gone: its clone is kept in
        // `mapped` until `unmap` succeeds (forever if it fails). It is only accessed through
        // raw pointers and volatile copies, never through references the device could break.
        unsafe {
            self.container
                .vfio_dma_map(iova, len, memory.host_address())
        }
        .map_err(|e| DmaError::Map {
            iova,
            len,
            reason: format!("{}: {e}", self.address),
        })?;
        mapped.insert(iova, memory.clone());
        Ok(())
    }

    fn unmap(&self, iova: u64, len: usize) -> Result<()> {
        let mut mapped = self.mapped.lock().map_err(|_| DmaError::Poisoned)?;
        self.container
            .vfio_dma_unmap(iova, len)
            .map_err(|e| DmaError::Unmap {
                iova,
                len,
                reason: format!("{}: {e}", self.address),
            })?;
        mapped.remove(&iova);
        Ok(())
    }
}

/// An NVMe controller bound to vfio-pci, with BAR0 mapped and bus mastering on.
pub struct VfioNvme {
    address: String,
    registers: Mmio,
    dma: DmaSpace,
    removal: RemovalEvent,
    /// The same eventfd as `removal`, in the type vfio-ioctls registers; kept while the device
    /// may signal it.
    _removal_for_vfio: Option<vmm_sys_util::eventfd::EventFd>,
    /// Set once the device is given up because the kernel wants it back.
    being_removed: AtomicBool,
    /// Kept open for as long as the registers and DMA space above may be used; `None` only
    /// while dropping.
    device: Option<VfioDevice>,
}

impl Drop for VfioNvme {
    fn drop(&mut self) {
        let Some(device) = self.device.take() else {
            return;
        };
        if !self.being_removed.load(Ordering::Acquire) {
            // Dropped as a field, after BAR0 is unmapped.
            self.device = Some(device);
            return;
        }
        // vfio-ioctls looks the device up in sysfs again after closing it, and panics when a
        // hot removal (which our close lets finish) has already taken it away. So close the
        // device ourselves and let its bookkeeping go: the group and container stay open until
        // the process ends, empty of devices and mappings.
        let _ = nix::unistd::close(device.as_raw_fd());
        std::mem::forget(device);
        log::info!("{}: closed for removal", self.address);
    }
}

impl VfioNvme {
    /// Opens the controller at `address` (e.g. `0000:01:00.0`), checking on the way everything
    /// an operator could have left undone.
    pub fn open(address: &str) -> Result<Arc<Self>> {
        let address = PciAddress::parse_short(address)?.to_string();
        let group = check_device(Path::new("/sys"), &address)?;
        check_memlock(&address)?;
        check_hugepages()?;
        let sysfs = PathBuf::from("/sys/bus/pci/devices").join(&address);

        let container = VfioContainer::new(None).map_err(|e| match e {
            vfio_ioctls::VfioError::OpenContainer(source) => VfioError::NoVfio { source },
            source => VfioError::Ioctl {
                address: address.clone(),
                operation: "opening the container",
                source,
            },
        })?;
        let container = Arc::new(container);
        let ops: Arc<dyn VfioOps> = container.clone();
        let device = VfioDevice::new(&sysfs, ops, false).map_err(|source| VfioError::Ioctl {
            address: address.clone(),
            operation: "opening the device",
            source,
        })?;
        let iova_ranges = iova_ranges(&address, container.as_raw_fd())?;
        enable_bus_master(&device);
        let registers = map_bar0(&address, &device)?;
        let removal = RemovalEvent::new().map_err(|source| VfioError::Io {
            address: address.clone(),
            operation: "creating the removal eventfd",
            source,
        })?;
        let removal_for_vfio = watch_device_requests(&address, &device, &removal);
        let mapper = Arc::new(ContainerMapper {
            address: address.clone(),
            container,
            mapped: Mutex::new(HashMap::new()),
        });
        log::debug!("{address}: IOMMU group {group}, IOVA ranges {iova_ranges:x?}");
        Ok(Arc::new(Self {
            address,
            registers,
            dma: DmaSpace::new(mapper, MemoryKind::Hugepages, iova_ranges),
            removal,
            _removal_for_vfio: removal_for_vfio,
            being_removed: AtomicBool::new(false),
            device: Some(device),
        }))
    }
}

impl NvmeDevice for VfioNvme {
    fn address(&self) -> &str {
        &self.address
    }

    fn removal_event(&self) -> BorrowedFd<'_> {
        self.removal.fd()
    }

    fn request_removal(&self) {
        self.removal.signal();
    }

    fn prepare_for_removal(&self) {
        self.being_removed.store(true, Ordering::Release);
    }

    fn registers(&self) -> &Mmio {
        &self.registers
    }

    fn dma(&self) -> &DmaSpace {
        &self.dma
    }
}

/// Everything an operator could have left undone, checked from sysfs (rooted at `sys` so that
/// tests can build one): the device exists, is an NVMe controller bound to vfio-pci, and sits in
/// a viable IOMMU group. Returns the group.
fn check_device(sys: &Path, address: &str) -> Result<u32, VfioError> {
    let device = sys.join("bus/pci/devices").join(address);
    check_bound_to_vfio(address, &device)?;
    let group = iommu_group(address, &device)?;
    check_group_viable(sys, address, group)?;
    Ok(group)
}

fn check_bound_to_vfio(address: &str, sysfs: &Path) -> Result<(), VfioError> {
    if !sysfs.exists() {
        return Err(VfioError::NoSuchDevice {
            address: address.to_owned(),
        });
    }
    let class = fs::read_to_string(sysfs.join("class")).unwrap_or_default();
    if class.trim() != NVME_CLASS {
        return Err(VfioError::NotNvme {
            address: address.to_owned(),
            class: class.trim().to_owned(),
        });
    }
    match driver_of(sysfs) {
        Some(driver) if driver == "vfio-pci" => Ok(()),
        Some(driver) => Err(VfioError::BoundToOtherDriver {
            address: address.to_owned(),
            driver,
        }),
        None => Err(VfioError::Unbound {
            address: address.to_owned(),
        }),
    }
}

fn iommu_group(address: &str, sysfs: &Path) -> Result<u32, VfioError> {
    fs::read_link(sysfs.join("iommu_group"))
        .ok()
        .and_then(|link| link.file_name()?.to_str()?.parse().ok())
        .ok_or_else(|| VfioError::NoIommuGroup {
            address: address.to_owned(),
        })
}

fn check_group_viable(sys: &Path, address: &str, group: u32) -> Result<(), VfioError> {
    let devices = sys.join(format!("kernel/iommu_groups/{group}/devices"));
    let others: Vec<String> = fs::read_dir(&devices)
        .map_err(|source| VfioError::Io {
            address: address.to_owned(),
            operation: "listing the IOMMU group",
            source,
        })?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let driver = driver_of(&entry.path())?;
            (name != address && !HARMLESS_GROUP_DRIVERS.contains(&driver.as_str()))
                .then(|| format!("{name} ({driver})"))
        })
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(VfioError::GroupNotViable {
            address: address.to_owned(),
            group,
            others: others.join(", "),
        })
    }
}

fn check_memlock(address: &str) -> Result<(), VfioError> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
        .unwrap_or((0, 0));
    memlock_sufficient(address, nix::unistd::geteuid().is_root(), soft)
}

fn memlock_sufficient(address: &str, root: bool, soft_limit: u64) -> Result<(), VfioError> {
    if root {
        // CAP_IPC_LOCK: VFIO does not charge root's pinned pages against the limit.
        return Ok(());
    }
    let limit_kib = soft_limit / 1024;
    if soft_limit != nix::sys::resource::RLIM_INFINITY && limit_kib < MIN_LOCKED_KIB {
        return Err(VfioError::MemlockTooLow {
            address: address.to_owned(),
            limit_kib,
            need_kib: MIN_LOCKED_KIB,
        });
    }
    Ok(())
}

fn check_hugepages() -> Result<(), DmaError> {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("HugePages_Free:"))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if free == 0 {
        return Err(DmaError::NoHugepages {
            len: crate::dma::HUGEPAGE_SIZE,
        });
    }
    Ok(())
}

/// Has the kernel signal `removal` when it wants the device back (the VFIO device request,
/// sent while a hot removal waits for us). Without it a removal would wait forever, so a device
/// that cannot do it still works, with a warning.
fn watch_device_requests(
    address: &str,
    device: &VfioDevice,
    removal: &RemovalEvent,
) -> Option<vmm_sys_util::eventfd::EventFd> {
    let duplicate = match removal.fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(error) => {
            log::warn!("{address}: cannot watch for removal requests: {error}");
            return None;
        }
    };
    // SAFETY: `duplicate` is an owned, open eventfd descriptor; its ownership moves into the
    // EventFd, which closes it once.
    let eventfd = unsafe { vmm_sys_util::eventfd::EventFd::from_raw_fd(duplicate.into_raw_fd()) };
    match device.enable_irq(VFIO_PCI_REQ_IRQ_INDEX, vec![&eventfd]) {
        Ok(()) => Some(eventfd),
        Err(error) => {
            log::warn!("{address}: the device cannot signal removal requests ({error}); a hot removal will wait until vfnvme stops");
            None
        }
    }
}

fn enable_bus_master(device: &VfioDevice) {
    let mut command = [0u8; 2];
    device.region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut command, PCI_COMMAND);
    let value = u16::from_le_bytes(command)
        | COMMAND_MEMORY_SPACE
        | COMMAND_BUS_MASTER
        | COMMAND_INTX_DISABLE;
    device.region_write(
        VFIO_PCI_CONFIG_REGION_INDEX,
        &value.to_le_bytes(),
        PCI_COMMAND,
    );
}

fn map_bar0(address: &str, device: &VfioDevice) -> Result<Mmio, VfioError> {
    let bad = |reason: String| VfioError::BadBar {
        address: address.to_owned(),
        reason,
    };
    let size = device.get_region_size(VFIO_PCI_BAR0_REGION_INDEX) as usize;
    if size < 0x2000 {
        return Err(bad(format!(
            "only {size} bytes; an NVMe BAR0 has at least 8 KiB"
        )));
    }
    if device.get_region_flags(VFIO_PCI_BAR0_REGION_INDEX) & VFIO_REGION_INFO_FLAG_MMAP == 0 {
        return Err(bad("not mappable through VFIO".into()));
    }
    let map = memmap2::MmapOptions::new()
        .offset(device.get_region_offset(VFIO_PCI_BAR0_REGION_INDEX))
        .len(size)
        .map_raw(device.as_raw_fd())
        .map_err(|e| bad(format!("not mappable: {e}")))?;
    let base = NonNull::new(map.as_mut_ptr()).ok_or_else(|| bad("mapped at null".into()))?;
    // SAFETY: `map` is `size` bytes of the device's BAR0, kept alive by the `Arc` handed over;
    // `Mmio` only does volatile word accesses.
    Ok(unsafe { Mmio::new(base, size, Arc::new(map)) })
}

/// IOVA ranges from VFIO_IOMMU_GET_INFO's IOVA range capability; without one, the 39-bit space
/// every Intel IOMMU accepts, minus the x86 MSI window.
fn iova_ranges(address: &str, container_fd: i32) -> Result<Vec<std::ops::Range<u64>>, VfioError> {
    // VFIO_IOMMU_GET_INFO is _IO(VFIO_TYPE, VFIO_BASE + 12), though it reads and writes its
    // argument.
    nix::ioctl_readwrite_bad!(
        vfio_iommu_get_info,
        nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 12),
        vfio_iommu_type1_info
    );

    let fallback = vec![0..0xfee0_0000, 0xfef0_0000..1 << 39];
    // Room for the info and its capability chain; u64 words keep the structs aligned.
    let mut buffer = vec![0u64; 512];
    let argsz = std::mem::size_of_val(buffer.as_slice());
    let info = buffer.as_mut_ptr().cast::<vfio_iommu_type1_info>();
    // SAFETY: the buffer is larger than and as aligned as `vfio_iommu_type1_info`, and is only
    // accessed through `info` until the ioctl returns.
    unsafe {
        info.write(vfio_iommu_type1_info {
            argsz: argsz as u32,
            ..Default::default()
        })
    };
    // SAFETY: `info` leads a buffer of `argsz` bytes; the kernel writes at most `argsz`.
    unsafe { vfio_iommu_get_info(container_fd, info) }.map_err(|e| VfioError::Io {
        address: address.to_owned(),
        operation: "VFIO_IOMMU_GET_INFO",
        source: e.into(),
    })?;
    let bytes: Vec<u8> = buffer.iter().flat_map(|w| w.to_le_bytes()).collect();
    let Some(info) = read_struct::<vfio_iommu_type1_info>(&bytes, 0) else {
        return Ok(fallback);
    };
    if info.flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return Ok(fallback);
    }
    let mut offset = info.cap_offset as usize;
    while offset != 0 {
        let Some(header) = read_struct::<vfio_info_cap_header>(&bytes, offset) else {
            break;
        };
        if u32::from(header.id) == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let count_at =
                offset + std::mem::offset_of!(vfio_iommu_type1_info_cap_iova_range, nr_iovas);
            let ranges_at =
                offset + std::mem::offset_of!(vfio_iommu_type1_info_cap_iova_range, iova_ranges);
            let count = read_struct::<u32>(&bytes, count_at).unwrap_or(0) as usize;
            let ranges = (0..count)
                .map_while(|i| {
                    let at = ranges_at + i * std::mem::size_of::<vfio_iova_range>();
                    read_struct::<vfio_iova_range>(&bytes, at)
                })
                .map(|range| range.start..range.end.saturating_add(1))
                .collect();
            return Ok(ranges);
        }
        offset = header.next as usize;
    }
    Ok(fallback)
}

/// Plain-data kernel structures of the VFIO info: only integers, so any bytes are a valid value.
trait PlainData: Copy {}
impl PlainData for u32 {}
impl PlainData for vfio_iommu_type1_info {}
impl PlainData for vfio_info_cap_header {}
impl PlainData for vfio_iova_range {}

/// The `T` at `offset` of what the kernel wrote, if it lies inside `bytes`.
fn read_struct<T: PlainData>(bytes: &[u8], offset: usize) -> Option<T> {
    let end = offset.checked_add(std::mem::size_of::<T>())?;
    let source = bytes.get(offset..end)?;
    // SAFETY: `source` holds `size_of::<T>()` bytes; `T` is plain integers (`PlainData`), valid
    // for any bit pattern; `read_unaligned` copes with any alignment.
    Some(unsafe { source.as_ptr().cast::<T>().read_unaligned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake /sys with one PCI device: its class, driver and IOMMU group (with `others` in the
    /// same group, each with its driver).
    struct FakeSys {
        root: PathBuf,
    }

    impl FakeSys {
        fn new(name: &str) -> Self {
            let root =
                std::env::temp_dir().join(format!("vfnvme-sys-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
            fs::create_dir_all(root.join("bus/pci/drivers")).unwrap();
            Self { root }
        }

        fn device(&self, address: &str, class: &str, driver: Option<&str>, group: Option<u32>) {
            let device = self.root.join("sys-devices").join(address);
            fs::create_dir_all(&device).unwrap();
            fs::write(device.join("class"), format!("{class}\n")).unwrap();
            if let Some(driver) = driver {
                let path = self.root.join("bus/pci/drivers").join(driver);
                fs::create_dir_all(&path).unwrap();
                symlink(&path, device.join("driver")).unwrap();
            }
            if let Some(group) = group {
                let members = self
                    .root
                    .join(format!("kernel/iommu_groups/{group}/devices"));
                fs::create_dir_all(&members).unwrap();
                symlink(&device, members.join(address)).unwrap();
                symlink(
                    self.root.join(format!("kernel/iommu_groups/{group}")),
                    device.join("iommu_group"),
                )
                .unwrap();
            }
            symlink(&device, self.root.join("bus/pci/devices").join(address)).unwrap();
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    const DRIVE: &str = "0000:01:00.0";

    #[test]
    fn a_ready_drive_passes_and_reports_its_group() {
        let sys = FakeSys::new("ready");
        sys.device(DRIVE, NVME_CLASS, Some("vfio-pci"), Some(7));
        sys.device("0000:00:1c.0", "0x060400", Some("pcieport"), Some(7));
        assert_eq!(check_device(&sys.root, DRIVE).unwrap(), 7);
    }

    #[test]
    fn each_operator_mistake_gets_its_own_error() {
        let sys = FakeSys::new("mistakes");
        assert!(matches!(
            check_device(&sys.root, DRIVE),
            Err(VfioError::NoSuchDevice { .. })
        ));

        sys.device("0000:02:00.0", NVME_CLASS, Some("nvme"), Some(2));
        let error = check_device(&sys.root, "0000:02:00.0").unwrap_err();
        assert!(matches!(&error, VfioError::BoundToOtherDriver { driver, .. } if driver == "nvme"));
        assert!(error.to_string().contains("tools/setup.sh"), "{error}");

        sys.device("0000:03:00.0", NVME_CLASS, None, Some(3));
        assert!(matches!(
            check_device(&sys.root, "0000:03:00.0"),
            Err(VfioError::Unbound { .. })
        ));

        sys.device("0000:04:00.0", "0x020000", Some("vfio-pci"), Some(4));
        assert!(matches!(
            check_device(&sys.root, "0000:04:00.0"),
            Err(VfioError::NotNvme { .. })
        ));

        sys.device("0000:05:00.0", NVME_CLASS, Some("vfio-pci"), None);
        let error = check_device(&sys.root, "0000:05:00.0").unwrap_err();
        assert!(matches!(error, VfioError::NoIommuGroup { .. }));
        assert!(error.to_string().contains("intel_iommu=on"));

        sys.device("0000:06:00.0", NVME_CLASS, Some("vfio-pci"), Some(6));
        sys.device("0000:06:00.1", "0x020000", Some("e1000e"), Some(6));
        let error = check_device(&sys.root, "0000:06:00.0").unwrap_err();
        assert!(
            matches!(&error, VfioError::GroupNotViable { group: 6, others, .. } if others == "0000:06:00.1 (e1000e)"),
            "{error}"
        );
    }

    #[test]
    fn memlock_limit_matters_only_without_root() {
        assert!(memlock_sufficient(DRIVE, true, 64 * 1024).is_ok());
        assert!(memlock_sufficient(DRIVE, false, nix::sys::resource::RLIM_INFINITY).is_ok());
        let error = memlock_sufficient(DRIVE, false, 8192 * 1024).unwrap_err();
        assert!(matches!(
            error,
            VfioError::MemlockTooLow {
                limit_kib: 8192,
                ..
            }
        ));
        assert!(error.to_string().contains("ulimit -l unlimited"));
    }

    #[test]
    fn addresses_are_normalised_or_refused() {
        let normalised = |text: &str| PciAddress::parse_short(text).map(|a| a.to_string());
        assert_eq!(normalised("01:00.0").unwrap(), DRIVE);
        assert_eq!(normalised("0000:AB:1f.7").unwrap(), "0000:ab:1f.7");
        for bad in ["sim", "0000:01:00", "1:00.0", "0000:01:00.00", "zz:00.0"] {
            assert!(
                matches!(normalised(bad), Err(VfioError::BadAddress { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn full_addresses_parse_strictly_and_print_canonically() {
        let address: PciAddress = "10de:AF:1f.7".parse().unwrap();
        assert_eq!(
            address,
            PciAddress {
                domain: 0x10de,
                bus: 0xaf,
                device: 0x1f,
                function: 7
            }
        );
        assert_eq!(address.to_string(), "10de:af:1f.7");
        assert_eq!(DRIVE.parse::<PciAddress>().unwrap().to_string(), DRIVE);
        for bad in [
            "01:00.0",
            "0000:01:00.8",
            "0000:01:20.0",
            "0000:01:00",
            "0000:01:00.0:1",
            "000g:01:00.0",
            "0000:01:00.",
            "+000:01:00.0",
            "",
        ] {
            assert!(
                matches!(bad.parse::<PciAddress>(), Err(VfioError::BadAddress { .. })),
                "{bad}"
            );
        }
    }
}
