//! Identify data structures (NVMe Base Specification 2.0, "Identify command"): Identify
//! Controller (CNS 01h), Identify Namespace (CNS 00h, NVM Command Set), the Active Namespace ID
//! list (CNS 02h) and the Namespace Identification Descriptor list (CNS 03h).
//!
//! The fixed structures are wire layouts: fields little-endian, reserved and unmodelled bytes
//! kept as byte arrays, read with `from_bytes` and written with `as_bytes`.

use std::mem::size_of;

use thiserror::Error;
use zerocopy::little_endian::{U128, U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::padded::PaddedString;

/// Size of every Identify data structure.
pub const IDENTIFY_DATA_SIZE: usize = 4096;
/// Entries in a Namespace List (active namespace list, changed namespace list log page).
pub const NSID_LIST_ENTRIES: usize = 1024;
/// Entries in the LBA Format list of Identify Namespace.
pub const MAX_LBA_FORMATS: usize = 64;

/// Malformed data handed to a decoder in this crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("{what} is {got} bytes, expected at least {need}")]
    TooShort {
        what: &'static str,
        got: usize,
        need: usize,
    },
    #[error(
        "namespace identification descriptor type {nidt} has length {nidl}, expected {expected}"
    )]
    BadDescriptor { nidt: u8, nidl: u8, expected: u8 },
}

/// The layout `T` at the start of `data`, or [`SpecError::TooShort`] naming it `what`.
pub(crate) fn read_prefix<T: FromBytes>(what: &'static str, data: &[u8]) -> Result<T, SpecError> {
    T::read_from_prefix(data)
        .map(|(value, _)| value)
        .map_err(|_| SpecError::TooShort {
            what,
            got: data.len(),
            need: size_of::<T>(),
        })
}

/// Identify Controller data structure (CNS 01h), including the NVMe over Fabrics fields.
/// Power state descriptors and the vendor specific area are kept as bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct IdentifyController {
    /// PCI Vendor ID.
    pub vid: U16,
    /// PCI Subsystem Vendor ID.
    pub ssvid: U16,
    /// Serial Number (ASCII, space padded).
    pub serial: PaddedString<20>,
    /// Model Number (ASCII, space padded).
    pub model: PaddedString<40>,
    /// Firmware Revision (ASCII, space padded).
    pub firmware: PaddedString<8>,
    /// Recommended Arbitration Burst.
    pub rab: u8,
    /// IEEE OUI Identifier.
    pub ieee: [u8; 3],
    /// Controller Multi-Path I/O and Namespace Sharing Capabilities.
    pub cmic: u8,
    /// Maximum Data Transfer Size, as a power of two of CAP.MPSMIN pages (0: unlimited).
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: U16,
    /// Version, in the VS register format.
    pub ver: U32,
    /// RTD3 Resume Latency (microseconds).
    pub rtd3r: U32,
    /// RTD3 Entry Latency (microseconds).
    pub rtd3e: U32,
    /// Optional Asynchronous Events Supported.
    pub oaes: U32,
    /// Controller Attributes.
    pub ctratt: U32,
    /// Read Recovery Levels Supported.
    pub rrls: U16,
    pub reserved0: [u8; 9],
    /// Controller Type (1: I/O, 2: discovery, 3: administrative).
    pub cntrltype: u8,
    /// FRU Globally Unique Identifier.
    pub fguid: [u8; 16],
    /// Command Retry Delay Times 1-3 (100 ms units), selected by a status's CRD field.
    pub crdt: [U16; 3],
    /// Reserved, and the NVMe Management Interface area.
    pub reserved1: [u8; 122],
    /// Optional Admin Command Support.
    pub oacs: U16,
    /// Abort Command Limit (0's based).
    pub acl: u8,
    /// Asynchronous Event Request Limit (0's based).
    pub aerl: u8,
    /// Firmware Updates.
    pub frmw: u8,
    /// Log Page Attributes.
    pub lpa: u8,
    /// Error Log Page Entries (0's based).
    pub elpe: u8,
    /// Number of Power States Support (0's based).
    pub npss: u8,
    /// Admin Vendor Specific Command Configuration.
    pub avscc: u8,
    /// Autonomous Power State Transition Attributes.
    pub apsta: u8,
    /// Warning Composite Temperature Threshold (kelvin).
    pub wctemp: U16,
    /// Critical Composite Temperature Threshold (kelvin).
    pub cctemp: U16,
    /// Maximum Time for Firmware Activation (100 ms units).
    pub mtfa: U16,
    /// Host Memory Buffer Preferred Size (4 KiB units).
    pub hmpre: U32,
    /// Host Memory Buffer Minimum Size (4 KiB units).
    pub hmmin: U32,
    /// Total NVM Capacity (bytes).
    pub tnvmcap: U128,
    /// Unallocated NVM Capacity (bytes).
    pub unvmcap: U128,
    /// RPMB support, self-test and firmware update granularity: not modelled.
    pub reserved2: [u8; 8],
    /// Keep Alive Support: granularity of the keep alive timer (100 ms units; 0: unsupported).
    pub kas: U16,
    /// Host controlled thermal management and sanitize fields: not modelled.
    pub reserved3: [u8; 20],
    /// ANA Transition Time (seconds).
    pub anatt: u8,
    /// Asymmetric Namespace Access Capabilities.
    pub anacap: u8,
    /// ANA Group Identifier Maximum.
    pub anagrpmax: U32,
    /// Number of ANA Group Identifiers.
    pub nanagrpid: U32,
    /// Persistent Event Log Size (64 KiB units).
    pub pels: U32,
    pub reserved4: [u8; 156],
    /// Submission Queue Entry Size: required (bits 3:0) and maximum (7:4) as powers of two.
    pub sqes: u8,
    /// Completion Queue Entry Size: required (bits 3:0) and maximum (7:4) as powers of two.
    pub cqes: u8,
    /// Maximum Outstanding Commands (fabrics).
    pub maxcmd: U16,
    /// Number of Namespaces: the largest valid namespace ID.
    pub nn: U32,
    /// Optional NVM Command Support.
    pub oncs: U16,
    /// Fused Operation Support.
    pub fuses: U16,
    /// Format NVM Attributes.
    pub fna: u8,
    /// Volatile Write Cache (bit 0: present).
    pub vwc: u8,
    /// Atomic Write Unit Normal (logical blocks, 0's based).
    pub awun: U16,
    /// Atomic Write Unit Power Fail (logical blocks, 0's based).
    pub awupf: U16,
    /// I/O Command Set Vendor Specific Command Configuration.
    pub nvscc: u8,
    /// Namespace Write Protection Capabilities.
    pub nwpc: u8,
    /// Atomic Compare & Write Unit (logical blocks, 0's based).
    pub acwu: U16,
    /// Optional Copy Formats Supported.
    pub ocfs: U16,
    /// SGL Support.
    pub sgls: U32,
    /// Maximum Number of Allowed Namespaces.
    pub mnan: U32,
    pub reserved5: [u8; 224],
    /// NVM Subsystem NVMe Qualified Name (NUL padded).
    pub subnqn: PaddedString<256>,
    pub reserved6: [u8; 768],
    /// I/O Queue Command Capsule Supported Size (16 byte units).
    pub ioccsz: U32,
    /// I/O Queue Response Capsule Supported Size (16 byte units).
    pub iorcsz: U32,
    /// In Capsule Data Offset (16 byte units).
    pub icdoff: U16,
    /// Fabrics Controller Attributes (bit 0: dynamic controller model).
    pub fcatt: u8,
    /// Maximum SGL Data Block Descriptors.
    pub msdbd: u8,
    /// Optional Fabrics Commands Support.
    pub ofcs: U16,
    pub reserved7: [u8; 242],
    /// Power State Descriptors 0-31: not modelled.
    pub psd: [u8; 1024],
    /// Vendor Specific.
    pub vs: [u8; 1024],
}
const _: () = assert!(size_of::<IdentifyController>() == IDENTIFY_DATA_SIZE);

/// All zeros: every field unset, every string empty.
impl Default for IdentifyController {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl IdentifyController {
    pub fn from_bytes(data: &[u8]) -> Result<Self, SpecError> {
        read_prefix("identify controller data", data)
    }

    /// The 4096-byte structure.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// Maximum data transfer size in bytes, given the controller's minimum memory page size
    /// (CAP.MPSMIN) in bytes. `None` when MDTS is 0 (no limit) or the limit exceeds `usize`.
    pub fn mdts_bytes(&self, min_page_size: usize) -> Option<usize> {
        if self.mdts == 0 {
            return None;
        }
        min_page_size.checked_mul(1usize.checked_shl(u32::from(self.mdts))?)
    }
}

/// An LBA Format entry of Identify Namespace.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct LbaFormat {
    /// Metadata Size in bytes per logical block.
    pub ms: U16,
    /// LBA Data Size as a power of two (0: format not available).
    pub lbads: u8,
    /// Relative Performance (bits 1:0, 0 is best).
    pub rp: u8,
}
const _: () = assert!(size_of::<LbaFormat>() == 4);

/// Identify Namespace data structure for the NVM Command Set (CNS 00h).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct IdentifyNamespace {
    /// Namespace Size (logical blocks).
    pub nsze: U64,
    /// Namespace Capacity (logical blocks).
    pub ncap: U64,
    /// Namespace Utilization (logical blocks).
    pub nuse: U64,
    /// Namespace Features.
    pub nsfeat: u8,
    /// Number of LBA Formats (0's based).
    pub nlbaf: u8,
    /// Formatted LBA Size: format index (bits 3:0 and 6:5), extended metadata (bit 4).
    pub flbas: u8,
    /// Metadata Capabilities.
    pub mc: u8,
    /// End-to-end Data Protection Capabilities.
    pub dpc: u8,
    /// End-to-end Data Protection Type Settings.
    pub dps: u8,
    /// Namespace Multi-path I/O and Namespace Sharing Capabilities.
    pub nmic: u8,
    /// Reservation Capabilities.
    pub rescap: u8,
    /// Format Progress Indicator.
    pub fpi: u8,
    /// Deallocate Logical Block Features.
    pub dlfeat: u8,
    /// Namespace Atomic Write Unit Normal (0's based).
    pub nawun: U16,
    /// Namespace Atomic Write Unit Power Fail (0's based).
    pub nawupf: U16,
    /// Namespace Atomic Compare & Write Unit (0's based).
    pub nacwu: U16,
    /// Namespace Atomic Boundary Size Normal (0's based).
    pub nabsn: U16,
    /// Namespace Atomic Boundary Offset.
    pub nabo: U16,
    /// Namespace Atomic Boundary Size Power Fail (0's based).
    pub nabspf: U16,
    /// Namespace Optimal I/O Boundary (logical blocks).
    pub noiob: U16,
    /// NVM Capacity (bytes).
    pub nvmcap: U128,
    /// Namespace Preferred Write Granularity (0's based).
    pub npwg: U16,
    /// Namespace Preferred Write Alignment (0's based).
    pub npwa: U16,
    /// Namespace Preferred Deallocate Granularity (0's based).
    pub npdg: U16,
    /// Namespace Preferred Deallocate Alignment (0's based).
    pub npda: U16,
    /// Namespace Optimal Write Size (0's based).
    pub nows: U16,
    /// Maximum Single Source Range Length (Copy).
    pub mssrl: U16,
    /// Maximum Copy Length.
    pub mcl: U32,
    /// Maximum Source Range Count (0's based).
    pub msrc: u8,
    pub reserved0: u8,
    /// Number of Unique Attribute LBA Formats (formats NLBAF+1 ..= NLBAF+NULBAF).
    pub nulbaf: u8,
    pub reserved1: [u8; 9],
    /// ANA Group Identifier.
    pub anagrpid: U32,
    pub reserved2: [u8; 3],
    /// Namespace Attributes (bit 0: write protected).
    pub nsattr: u8,
    /// NVM Set Identifier.
    pub nvmsetid: U16,
    /// Endurance Group Identifier.
    pub endgid: U16,
    /// Namespace Globally Unique Identifier.
    pub nguid: [u8; 16],
    /// IEEE Extended Unique Identifier.
    pub eui64: [u8; 8],
    /// LBA Format list; entries past [`IdentifyNamespace::lba_formats`] are unused.
    pub lbaf: [LbaFormat; MAX_LBA_FORMATS],
    /// Reserved and vendor specific.
    pub reserved3: [u8; 3712],
}
const _: () = assert!(size_of::<IdentifyNamespace>() == IDENTIFY_DATA_SIZE);

/// All zeros: an inactive namespace.
impl Default for IdentifyNamespace {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl IdentifyNamespace {
    pub fn from_bytes(data: &[u8]) -> Result<Self, SpecError> {
        read_prefix("identify namespace data", data)
    }

    /// The 4096-byte structure.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// A namespace of `blocks` logical blocks of `block_size` bytes with a single LBA format
    /// and no metadata. Panics unless `block_size` is a power of two of at least 512.
    pub fn simple(blocks: u64, block_size: u32) -> Self {
        assert!(
            block_size.is_power_of_two() && block_size >= 512,
            "block size {block_size} is not a power of two >= 512"
        );
        let mut ns = Self {
            nsze: U64::new(blocks),
            ncap: U64::new(blocks),
            nuse: U64::new(blocks),
            ..Self::default()
        };
        ns.lbaf[0].lbads = block_size.trailing_zeros() as u8;
        ns
    }

    /// The supported LBA formats: NLBAF + 1 formats plus NULBAF unique attribute formats.
    pub fn lba_formats(&self) -> &[LbaFormat] {
        let count = usize::from(self.nlbaf) + usize::from(self.nulbaf) + 1;
        &self.lbaf[..count.min(MAX_LBA_FORMATS)]
    }

    /// Index of the LBA format the namespace is formatted with: FLBAS bits 3:0 are the low
    /// and bits 6:5 the high bits.
    pub fn formatted_lba_index(&self) -> usize {
        usize::from(self.flbas & 0xf) | (usize::from((self.flbas >> 5) & 0x3) << 4)
    }

    /// Logical block size in bytes of the formatted LBA format.
    pub fn block_size(&self) -> u32 {
        1 << self.lbaf[self.formatted_lba_index()].lbads
    }
}

/// A Namespace List (Identify CNS 02h, the Changed Namespace List log page): namespace IDs,
/// ending at the first zero entry.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct NamespaceList {
    pub nsids: [U32; NSID_LIST_ENTRIES],
}
const _: () = assert!(size_of::<NamespaceList>() == IDENTIFY_DATA_SIZE);

impl NamespaceList {
    /// The list holding the first 1024 of `nsids`, zero filled.
    pub fn new(nsids: &[u32]) -> Self {
        let mut list = Self::new_zeroed();
        for (entry, &id) in list.nsids.iter_mut().zip(nsids) {
            *entry = U32::new(id);
        }
        list
    }

    /// The entries of a list of up to 1024 entries at the start of `data`, up to the first
    /// zero; a short page is a short list.
    pub fn parse(data: &[u8]) -> Vec<u32> {
        let entries = (data.len() / size_of::<U32>()).min(NSID_LIST_ENTRIES);
        let Ok((nsids, _)) = <[U32]>::ref_from_prefix_with_elems(data, entries) else {
            unreachable!("{entries} entries fit in {} bytes", data.len());
        };
        nsids
            .iter()
            .map(|id| id.get())
            .take_while(|&id| id != 0)
            .collect()
    }
}

/// Namespace IDs of an Active Namespace ID list (CNS 02h): up to 1024 entries, ending at the
/// first zero entry.
pub fn parse_active_namespace_list(data: &[u8]) -> Vec<u32> {
    NamespaceList::parse(data)
}

/// An Active Namespace ID list (CNS 02h) of the namespace IDs greater than `after` (the NSID
/// of the command), ascending, without duplicates, at most 1024.
pub fn build_active_namespace_list(nsids: &[u32], after: u32) -> Vec<u8> {
    let mut listed: Vec<u32> = nsids.iter().copied().filter(|&id| id > after).collect();
    listed.sort_unstable();
    listed.dedup();
    NamespaceList::new(&listed).as_bytes().to_vec()
}

/// A Namespace Identification Descriptor (CNS 03h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NamespaceId {
    /// IEEE Extended Unique Identifier (NIDT 1).
    Eui64([u8; 8]),
    /// Namespace Globally Unique Identifier (NIDT 2).
    Nguid([u8; 16]),
    /// Namespace UUID (NIDT 3).
    Uuid([u8; 16]),
    /// Command Set Identifier (NIDT 4; 0 is the NVM Command Set).
    Csi(u8),
}

/// The header of a Namespace Identification Descriptor; NIDL bytes of identifier follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct NamespaceIdHeader {
    /// Namespace Identifier Type.
    pub nidt: u8,
    /// Namespace Identifier Length.
    pub nidl: u8,
    pub reserved: [u8; 2],
}
const _: () = assert!(size_of::<NamespaceIdHeader>() == 4);

impl NamespaceId {
    /// Namespace Identifier Type and the identifier bytes.
    fn encode(&self) -> (u8, &[u8]) {
        match self {
            Self::Eui64(id) => (1, id),
            Self::Nguid(id) => (2, id),
            Self::Uuid(id) => (3, id),
            Self::Csi(csi) => (4, std::slice::from_ref(csi)),
        }
    }

    /// The identifier of type `nidt` in `nid`, whose length the caller checked.
    fn decode(nidt: u8, nid: &[u8]) -> Self {
        match nidt {
            1 => Self::Eui64(nid.try_into().expect("NIDL checked")),
            2 => Self::Nguid(nid.try_into().expect("NIDL checked")),
            3 => Self::Uuid(nid.try_into().expect("NIDL checked")),
            _ => Self::Csi(nid[0]),
        }
    }
}

/// Decodes a Namespace Identification Descriptor list. The list ends at a descriptor with
/// NIDL 0 or at the end of `data`; descriptors of unknown types are skipped.
pub fn parse_namespace_id_descriptors(data: &[u8]) -> Result<Vec<NamespaceId>, SpecError> {
    let mut ids = Vec::new();
    let mut rest = data;
    while let Ok((header, after)) = NamespaceIdHeader::read_from_prefix(rest) {
        let nidl = usize::from(header.nidl);
        if nidl == 0 {
            break;
        }
        let nid = after.get(..nidl).ok_or(SpecError::TooShort {
            what: "namespace identification descriptor",
            got: rest.len(),
            need: size_of::<NamespaceIdHeader>() + nidl,
        })?;
        rest = &after[nidl..];
        let expected = match header.nidt {
            1 => 8,
            2 | 3 => 16,
            4 => 1,
            _ => continue,
        };
        if header.nidl != expected {
            return Err(SpecError::BadDescriptor {
                nidt: header.nidt,
                nidl: header.nidl,
                expected,
            });
        }
        ids.push(NamespaceId::decode(header.nidt, nid));
    }
    Ok(ids)
}

/// A namespace's globally unique identifiers, each absent or not: as a drive reports them
/// (Identify Namespace NGUID and EUI64, the descriptor list's NGUID, EUI-64 and UUID) and as a
/// target reports them again. An all-zero value means "none" (NVMe Base Specification: the
/// field is cleared when not supported), so it is never reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NamespaceIds {
    pub nguid: Option<[u8; 16]>,
    pub eui64: Option<[u8; 8]>,
    pub uuid: Option<[u8; 16]>,
}

fn nonzero<const N: usize>(id: [u8; N]) -> Option<[u8; N]> {
    id.iter().any(|&b| b != 0).then_some(id)
}

impl NamespaceIds {
    /// The identifiers in a drive's Identify Namespace data and descriptor list (`descriptors`
    /// empty if it has none); where both carry one, the descriptor list's wins.
    pub fn reported(identify: &IdentifyNamespace, descriptors: &[NamespaceId]) -> Self {
        let mut ids = Self {
            nguid: nonzero(identify.nguid),
            eui64: nonzero(identify.eui64),
            uuid: None,
        };
        for descriptor in descriptors {
            match *descriptor {
                NamespaceId::Nguid(id) => ids.nguid = nonzero(id).or(ids.nguid),
                NamespaceId::Eui64(id) => ids.eui64 = nonzero(id).or(ids.eui64),
                NamespaceId::Uuid(id) => ids.uuid = nonzero(id).or(ids.uuid),
                NamespaceId::Csi(_) => {}
            }
        }
        ids
    }

    pub fn is_empty(&self) -> bool {
        self.nguid.is_none() && self.eui64.is_none() && self.uuid.is_none()
    }

    /// Writes the NGUID and EUI64 fields of Identify Namespace (zero where absent).
    pub fn fill(&self, identify: &mut IdentifyNamespace) {
        identify.nguid = self.nguid.unwrap_or_default();
        identify.eui64 = self.eui64.unwrap_or_default();
    }

    /// The descriptor list (CNS 03h) of a namespace of command set `csi` with these ids.
    pub fn descriptor_list(&self, csi: u8) -> Vec<u8> {
        let ids: Vec<NamespaceId> = [
            self.eui64.map(NamespaceId::Eui64),
            self.nguid.map(NamespaceId::Nguid),
            self.uuid.map(NamespaceId::Uuid),
            Some(NamespaceId::Csi(csi)),
        ]
        .into_iter()
        .flatten()
        .collect();
        build_namespace_id_descriptors(&ids)
    }
}

/// Optional NVM Command Support (Identify Controller ONCS) bits.
pub mod oncs {
    pub const COMPARE: u16 = 1 << 0;
    pub const WRITE_UNCORRECTABLE: u16 = 1 << 1;
    pub const DATASET_MANAGEMENT: u16 = 1 << 2;
    pub const WRITE_ZEROES: u16 = 1 << 3;
    pub const SAVE_SELECT: u16 = 1 << 4;
    pub const RESERVATIONS: u16 = 1 << 5;
    pub const TIMESTAMP: u16 = 1 << 6;
    pub const VERIFY: u16 = 1 << 7;
    pub const COPY: u16 = 1 << 8;
}

/// Identify Controller VWC bit 0: a volatile write cache is present.
pub const VWC_PRESENT: u8 = 1 << 0;

/// A 4096-byte Namespace Identification Descriptor list, zero terminated. Descriptors that
/// would not fit are left out.
pub fn build_namespace_id_descriptors(ids: &[NamespaceId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(IDENTIFY_DATA_SIZE);
    for id in ids {
        let (nidt, nid) = id.encode();
        if out.len() + size_of::<NamespaceIdHeader>() + nid.len() > IDENTIFY_DATA_SIZE {
            break;
        }
        let header = NamespaceIdHeader {
            nidt,
            nidl: nid.len() as u8,
            ..NamespaceIdHeader::default()
        };
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(nid);
    }
    out.resize(IDENTIFY_DATA_SIZE, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_controller() -> IdentifyController {
        IdentifyController {
            vid: U16::new(0x1b36),
            ssvid: U16::new(0x1af4),
            serial: PaddedString::space_padded("SN-0001"),
            model: PaddedString::space_padded("vfnvme simulated controller"),
            firmware: PaddedString::space_padded("1.0"),
            rab: 6,
            ieee: [0x52, 0x54, 0x00],
            cmic: 0x0b,
            mdts: 5,
            cntlid: U16::new(0x1234),
            ver: U32::new(0x0002_0000),
            rtd3r: U32::new(1_000_000),
            rtd3e: U32::new(2_000_000),
            oaes: U32::new(0x100),
            ctratt: U32::new(0x8000_0001),
            rrls: U16::new(0x0003),
            cntrltype: 1,
            fguid: [0xf0; 16],
            crdt: [1, 20, 300].map(U16::new),
            oacs: U16::new(0x000a),
            acl: 3,
            aerl: 3,
            frmw: 0x03,
            lpa: 0x07,
            elpe: 63,
            npss: 0,
            avscc: 1,
            apsta: 1,
            wctemp: U16::new(343),
            cctemp: U16::new(373),
            mtfa: U16::new(50),
            hmpre: U32::new(0x100),
            hmmin: U32::new(0x80),
            tnvmcap: U128::new(1 << 40),
            unvmcap: U128::new(1 << 20),
            kas: U16::new(100),
            anatt: 10,
            anacap: 0x47,
            anagrpmax: U32::new(128),
            nanagrpid: U32::new(64),
            pels: U32::new(2),
            sqes: 0x66,
            cqes: 0x44,
            maxcmd: U16::new(128),
            nn: U32::new(1024),
            oncs: U16::new(0x004e),
            fuses: U16::new(1),
            fna: 0x04,
            vwc: 0x07,
            awun: U16::new(7),
            awupf: U16::new(3),
            nvscc: 1,
            nwpc: 0x03,
            acwu: U16::new(1),
            ocfs: U16::new(0x0001),
            sgls: U32::new(0x0010_0005),
            mnan: U32::new(1024),
            subnqn: PaddedString::nul_padded("nqn.2024-01.io.vfnvme:subsys0"),
            ioccsz: U32::new(4),
            iorcsz: U32::new(1),
            icdoff: U16::new(0),
            fcatt: 1,
            msdbd: 1,
            ofcs: U16::new(0x0001),
            ..IdentifyController::default()
        }
    }

    #[test]
    fn controller_round_trips_through_bytes() {
        let id = sample_controller();
        let bytes = id.to_bytes();
        assert_eq!(bytes.len(), IDENTIFY_DATA_SIZE);
        assert_eq!(IdentifyController::from_bytes(&bytes).unwrap(), id);
        let empty = IdentifyController::default();
        assert_eq!(
            IdentifyController::from_bytes(&empty.to_bytes()).unwrap(),
            empty
        );
    }

    #[test]
    fn controller_fields_sit_at_spec_offsets() {
        let b = sample_controller().to_bytes();
        assert_eq!(&b[0..4], &[0x36, 0x1b, 0xf4, 0x1a]);
        assert_eq!(&b[4..24], b"SN-0001             ");
        assert_eq!(&b[24..64], b"vfnvme simulated controller             ");
        assert_eq!(&b[64..72], b"1.0     ");
        assert_eq!(b[72], 6);
        assert_eq!(&b[73..76], &[0x52, 0x54, 0x00]);
        assert_eq!(b[77], 5);
        assert_eq!(&b[78..80], &[0x34, 0x12]);
        assert_eq!(&b[80..84], &[0x00, 0x00, 0x02, 0x00]);
        assert_eq!(b[111], 1);
        assert_eq!(&b[128..134], &[1, 0, 20, 0, 44, 1]);
        assert_eq!(&b[256..258], &[0x0a, 0x00]);
        assert_eq!(b[262], 63);
        assert_eq!(&b[266..268], &343u16.to_le_bytes());
        assert_eq!(b[280 + 5], 1, "tnvmcap = 2^40");
        assert_eq!(&b[320..322], &[100, 0]);
        assert_eq!(b[512], 0x66);
        assert_eq!(b[513], 0x44);
        assert_eq!(&b[514..516], &[128, 0]);
        assert_eq!(&b[516..520], &[0x00, 0x04, 0x00, 0x00]);
        assert_eq!(&b[520..522], &[0x4e, 0x00]);
        assert_eq!(b[525], 0x07);
        assert_eq!(&b[536..540], &[0x05, 0x00, 0x10, 0x00]);
        let nqn = b"nqn.2024-01.io.vfnvme:subsys0";
        assert_eq!(&b[768..768 + nqn.len()], nqn);
        assert!(b[768 + nqn.len()..1024].iter().all(|&x| x == 0));
        assert_eq!(&b[1792..1796], &[4, 0, 0, 0]);
        assert_eq!(&b[1796..1800], &[1, 0, 0, 0]);
        assert_eq!(b[1802], 1);
        assert_eq!(b[1803], 1);
    }

    #[test]
    fn controller_parses_raw_bytes() {
        let mut b = vec![0u8; IDENTIFY_DATA_SIZE];
        b[4..24].copy_from_slice(b"  S123  \0\0\0\0\0\0\0\0\0\0\0\0");
        b[24..29].copy_from_slice(b"Model");
        b[29..64].fill(b' ');
        b[77] = 9;
        b[516..520].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        b[768..772].copy_from_slice(b"nqn.");
        let id = IdentifyController::from_bytes(&b).unwrap();
        assert_eq!(id.serial.to_string(), "  S123");
        assert_eq!(id.model.to_string(), "Model");
        assert_eq!(id.firmware.to_string(), "");
        assert_eq!(id.mdts, 9);
        assert_eq!(id.nn.get(), 0xdead_beef);
        assert_eq!(id.subnqn.to_string(), "nqn.");
    }

    #[test]
    fn short_identify_data_is_rejected() {
        let err = IdentifyController::from_bytes(&[0; 4095]).unwrap_err();
        assert_eq!(
            err,
            SpecError::TooShort {
                what: "identify controller data",
                got: 4095,
                need: 4096
            }
        );
        assert!(IdentifyNamespace::from_bytes(&[0; 128]).is_err());
    }

    #[test]
    fn mdts_scales_the_minimum_page_size() {
        let mut id = IdentifyController::default();
        assert_eq!(id.mdts_bytes(4096), None);
        id.mdts = 5;
        assert_eq!(id.mdts_bytes(4096), Some(128 * 1024));
        id.mdts = 1;
        assert_eq!(id.mdts_bytes(8192), Some(16384));
        id.mdts = 200;
        assert_eq!(id.mdts_bytes(4096), None);
    }

    fn sample_namespace() -> IdentifyNamespace {
        let mut ns = IdentifyNamespace::simple(0x1_0000_0000, 4096);
        ns.nuse = U64::new(0x8000);
        ns.nsfeat = 0x1f;
        ns.nlbaf = 1;
        ns.flbas = 1;
        ns.dlfeat = 0x09;
        ns.nawun = U16::new(7);
        ns.noiob = U16::new(256);
        ns.nvmcap = U128::new(0x1_0000_0000_0000);
        ns.npwg = U16::new(7);
        ns.nows = U16::new(31);
        ns.mcl = U32::new(1024);
        ns.anagrpid = U32::new(2);
        ns.nsattr = 1;
        ns.endgid = U16::new(1);
        ns.nguid = *b"0123456789abcdef";
        ns.eui64 = [1, 2, 3, 4, 5, 6, 7, 8];
        ns.lbaf[0] = LbaFormat {
            ms: U16::new(0),
            lbads: 9,
            rp: 2,
        };
        ns.lbaf[1] = LbaFormat {
            ms: U16::new(8),
            lbads: 12,
            rp: 0,
        };
        ns
    }

    #[test]
    fn namespace_round_trips_through_bytes() {
        let ns = sample_namespace();
        let bytes = ns.to_bytes();
        assert_eq!(bytes.len(), IDENTIFY_DATA_SIZE);
        assert_eq!(IdentifyNamespace::from_bytes(&bytes).unwrap(), ns);
    }

    #[test]
    fn namespace_fields_sit_at_spec_offsets() {
        let b = sample_namespace().to_bytes();
        assert_eq!(&b[0..8], &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[8..16], &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[16..24], &[0, 0x80, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[24], 0x1f);
        assert_eq!(b[25], 1);
        assert_eq!(b[26], 1);
        assert_eq!(b[33], 0x09);
        assert_eq!(&b[46..48], &[0, 1]);
        assert_eq!(b[48 + 6], 1, "nvmcap = 2^48");
        assert_eq!(&b[72..74], &[31, 0]);
        assert_eq!(&b[92..96], &[2, 0, 0, 0]);
        assert_eq!(b[99], 1);
        assert_eq!(&b[104..120], b"0123456789abcdef");
        assert_eq!(&b[120..128], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[128..132], &[0, 0, 9, 2]);
        assert_eq!(&b[132..136], &[8, 0, 12, 0]);
        assert!(b[136..].iter().all(|&x| x == 0));
    }

    #[test]
    fn formatted_lba_index_combines_both_flbas_fields() {
        let mut ns = IdentifyNamespace {
            flbas: 0x13,
            ..IdentifyNamespace::default()
        };
        assert_eq!(ns.formatted_lba_index(), 3, "bit 4 is extended metadata");
        ns.flbas = 0x62;
        assert_eq!(ns.formatted_lba_index(), 0x32);
        ns.lbaf[0x32].lbads = 13;
        assert_eq!(ns.block_size(), 8192);
        ns.nlbaf = 0x31;
        ns.nulbaf = 2;
        assert_eq!(ns.lba_formats().len(), 0x34);
    }

    #[test]
    fn simple_namespace_has_one_format() {
        let ns = IdentifyNamespace::simple(1000, 512);
        assert_eq!(
            (ns.nsze.get(), ns.ncap.get(), ns.nuse.get()),
            (1000, 1000, 1000)
        );
        assert_eq!(ns.block_size(), 512);
        assert_eq!(
            ns.lba_formats(),
            &[LbaFormat {
                ms: U16::new(0),
                lbads: 9,
                rp: 0
            }]
        );
        let b = IdentifyNamespace::simple(8, 4096).to_bytes();
        assert_eq!((b[25], b[26], b[130]), (0, 0, 12));
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn simple_namespace_rejects_odd_block_sizes() {
        IdentifyNamespace::simple(1, 520);
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn simple_namespace_rejects_small_block_sizes() {
        IdentifyNamespace::simple(1, 256);
    }

    #[test]
    fn active_namespace_list_is_sorted_and_starts_after_nsid() {
        let b = build_active_namespace_list(&[9, 1, 5, 3, 5, 2], 2);
        assert_eq!(b.len(), IDENTIFY_DATA_SIZE);
        assert_eq!(&b[0..16], &[3, 0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_active_namespace_list(&b), vec![3, 5, 9]);
        assert!(parse_active_namespace_list(&[0; 4096]).is_empty());
    }

    #[test]
    fn active_namespace_list_holds_at_most_1024_entries() {
        let nsids: Vec<u32> = (1..=2000).collect();
        let b = build_active_namespace_list(&nsids, 0);
        assert_eq!(&b[4092..4096], &1024u32.to_le_bytes());
        let parsed = parse_active_namespace_list(&b);
        assert_eq!(parsed.len(), 1024);
        assert_eq!(parsed[1023], 1024);
        let next = build_active_namespace_list(&nsids, 1024);
        assert_eq!(parse_active_namespace_list(&next)[0], 1025);
    }

    #[test]
    fn namespace_id_descriptors_round_trip() {
        let ids = [
            NamespaceId::Eui64([1, 2, 3, 4, 5, 6, 7, 8]),
            NamespaceId::Nguid([0xaa; 16]),
            NamespaceId::Uuid([0x55; 16]),
            NamespaceId::Csi(0),
        ];
        let b = build_namespace_id_descriptors(&ids);
        assert_eq!(b.len(), IDENTIFY_DATA_SIZE);
        assert_eq!(&b[0..12], &[1, 8, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[12..16], &[2, 16, 0, 0]);
        assert_eq!(b[16], 0xaa);
        assert_eq!(&b[32..36], &[3, 16, 0, 0]);
        assert_eq!(b[36], 0x55);
        assert_eq!(&b[52..57], &[4, 1, 0, 0, 0]);
        assert!(b[57..].iter().all(|&x| x == 0));
        assert_eq!(parse_namespace_id_descriptors(&b).unwrap(), ids);
    }

    #[test]
    fn namespace_id_descriptors_skip_unknown_and_reject_malformed() {
        let mut b = vec![0u8; 64];
        b[0..6].copy_from_slice(&[0x7f, 2, 0, 0, 0xee, 0xee]);
        b[6..11].copy_from_slice(&[4, 1, 0, 0, 2]);
        assert_eq!(
            parse_namespace_id_descriptors(&b).unwrap(),
            vec![NamespaceId::Csi(2)]
        );

        let bad = [
            1u8, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(
            parse_namespace_id_descriptors(&bad),
            Err(SpecError::BadDescriptor {
                nidt: 1,
                nidl: 16,
                expected: 8
            })
        );

        let truncated = [2u8, 16, 0, 0, 1, 2, 3];
        assert!(matches!(
            parse_namespace_id_descriptors(&truncated),
            Err(SpecError::TooShort {
                got: 7,
                need: 20,
                ..
            })
        ));
    }

    #[test]
    fn namespace_ids_read_both_structures_and_skip_zeroes() {
        let mut identify = IdentifyNamespace::simple(8, 512);
        identify.nguid = [0x11; 16];
        identify.eui64 = [0x22; 8];
        let from_identify = NamespaceIds::reported(&identify, &[]);
        assert_eq!(from_identify.nguid, Some([0x11; 16]));
        assert_eq!(from_identify.eui64, Some([0x22; 8]));
        assert_eq!(from_identify.uuid, None);
        let descriptors = [
            NamespaceId::Nguid([0x33; 16]),
            NamespaceId::Eui64([0; 8]),
            NamespaceId::Uuid([0x44; 16]),
            NamespaceId::Csi(0),
        ];
        let both = NamespaceIds::reported(&identify, &descriptors);
        assert_eq!(
            both,
            NamespaceIds {
                nguid: Some([0x33; 16]),
                eui64: Some([0x22; 8]),
                uuid: Some([0x44; 16]),
            }
        );
        assert!(NamespaceIds::reported(&IdentifyNamespace::default(), &[]).is_empty());

        let mut written = IdentifyNamespace::default();
        both.fill(&mut written);
        assert_eq!((written.nguid, written.eui64), ([0x33; 16], [0x22; 8]));
        assert_eq!(
            parse_namespace_id_descriptors(&both.descriptor_list(0)).unwrap(),
            vec![
                NamespaceId::Eui64([0x22; 8]),
                NamespaceId::Nguid([0x33; 16]),
                NamespaceId::Uuid([0x44; 16]),
                NamespaceId::Csi(0)
            ]
        );
        assert_eq!(
            parse_namespace_id_descriptors(&NamespaceIds::default().descriptor_list(0)).unwrap(),
            vec![NamespaceId::Csi(0)]
        );
    }
}
