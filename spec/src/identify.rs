//! Identify data structures (NVMe Base Specification 2.0, "Identify command"): Identify
//! Controller (CNS 01h), Identify Namespace (CNS 00h, NVM Command Set), the Active Namespace ID
//! list (CNS 02h) and the Namespace Identification Descriptor list (CNS 03h).
//!
//! Every structure is decoded from and encoded to a little-endian byte buffer; reserved and
//! unmodelled bytes are zero when encoding.

use thiserror::Error;

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

/// Fails with [`SpecError::TooShort`] unless `data` holds at least `need` bytes.
pub(super) fn check_len(what: &'static str, data: &[u8], need: usize) -> Result<(), SpecError> {
    if data.len() < need {
        return Err(SpecError::TooShort {
            what,
            got: data.len(),
            need,
        });
    }
    Ok(())
}

/// Little-endian field reads at byte offsets of a buffer whose length the caller checked.
pub(super) struct LeReader<'a>(pub(super) &'a [u8]);

impl LeReader<'_> {
    pub(super) fn array<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[off..off + N]);
        out
    }

    pub(super) fn u8(&self, off: usize) -> u8 {
        self.0[off]
    }

    pub(super) fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.array(off))
    }

    pub(super) fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.array(off))
    }

    pub(super) fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.array(off))
    }

    pub(super) fn u128(&self, off: usize) -> u128 {
        u128::from_le_bytes(self.array(off))
    }

    /// An ASCII/UTF-8 string field with trailing space and NUL padding removed.
    pub(super) fn string(&self, off: usize, len: usize) -> String {
        let raw = &self.0[off..off + len];
        let end = raw
            .iter()
            .rposition(|&b| b != b' ' && b != 0)
            .map_or(0, |i| i + 1);
        String::from_utf8_lossy(&raw[..end]).into_owned()
    }
}

/// Little-endian field writes at byte offsets of a buffer of the structure's full size.
pub(super) struct LeWriter<'a>(pub(super) &'a mut [u8]);

impl LeWriter<'_> {
    pub(super) fn bytes(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }

    pub(super) fn u8(&mut self, off: usize, v: u8) {
        self.0[off] = v;
    }

    pub(super) fn u16(&mut self, off: usize, v: u16) {
        self.bytes(off, &v.to_le_bytes());
    }

    pub(super) fn u32(&mut self, off: usize, v: u32) {
        self.bytes(off, &v.to_le_bytes());
    }

    pub(super) fn u64(&mut self, off: usize, v: u64) {
        self.bytes(off, &v.to_le_bytes());
    }

    pub(super) fn u128(&mut self, off: usize, v: u128) {
        self.bytes(off, &v.to_le_bytes());
    }

    /// A string field of `len` bytes, truncated to fit and filled up with `pad`.
    pub(super) fn string(&mut self, off: usize, len: usize, s: &str, pad: u8) {
        let field = &mut self.0[off..off + len];
        field.fill(pad);
        let n = s.len().min(len);
        field[..n].copy_from_slice(&s.as_bytes()[..n]);
    }
}

/// Identify Controller data structure (CNS 01h), including the NVMe over Fabrics fields.
/// Power state descriptors and the vendor specific area are not modelled.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IdentifyController {
    /// PCI Vendor ID.
    pub vid: u16,
    /// PCI Subsystem Vendor ID.
    pub ssvid: u16,
    /// Serial Number (20 ASCII bytes, space padded).
    pub serial: String,
    /// Model Number (40 ASCII bytes, space padded).
    pub model: String,
    /// Firmware Revision (8 ASCII bytes, space padded).
    pub firmware: String,
    /// Recommended Arbitration Burst.
    pub rab: u8,
    /// IEEE OUI Identifier.
    pub ieee: [u8; 3],
    /// Controller Multi-Path I/O and Namespace Sharing Capabilities.
    pub cmic: u8,
    /// Maximum Data Transfer Size, as a power of two of CAP.MPSMIN pages (0: unlimited).
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version, in the VS register format.
    pub ver: u32,
    /// RTD3 Resume Latency (microseconds).
    pub rtd3r: u32,
    /// RTD3 Entry Latency (microseconds).
    pub rtd3e: u32,
    /// Optional Asynchronous Events Supported.
    pub oaes: u32,
    /// Controller Attributes.
    pub ctratt: u32,
    /// Read Recovery Levels Supported.
    pub rrls: u16,
    /// Controller Type (1: I/O, 2: discovery, 3: administrative).
    pub cntrltype: u8,
    /// FRU Globally Unique Identifier.
    pub fguid: [u8; 16],
    /// Command Retry Delay Times 1-3 (100 ms units), selected by a status's CRD field.
    pub crdt: [u16; 3],
    /// Optional Admin Command Support.
    pub oacs: u16,
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
    pub wctemp: u16,
    /// Critical Composite Temperature Threshold (kelvin).
    pub cctemp: u16,
    /// Maximum Time for Firmware Activation (100 ms units).
    pub mtfa: u16,
    /// Host Memory Buffer Preferred Size (4 KiB units).
    pub hmpre: u32,
    /// Host Memory Buffer Minimum Size (4 KiB units).
    pub hmmin: u32,
    /// Total NVM Capacity (bytes).
    pub tnvmcap: u128,
    /// Unallocated NVM Capacity (bytes).
    pub unvmcap: u128,
    /// Keep Alive Support: granularity of the keep alive timer (100 ms units; 0: unsupported).
    pub kas: u16,
    /// ANA Transition Time (seconds).
    pub anatt: u8,
    /// Asymmetric Namespace Access Capabilities.
    pub anacap: u8,
    /// ANA Group Identifier Maximum.
    pub anagrpmax: u32,
    /// Number of ANA Group Identifiers.
    pub nanagrpid: u32,
    /// Persistent Event Log Size (64 KiB units).
    pub pels: u32,
    /// Submission Queue Entry Size: required (bits 3:0) and maximum (7:4) as powers of two.
    pub sqes: u8,
    /// Completion Queue Entry Size: required (bits 3:0) and maximum (7:4) as powers of two.
    pub cqes: u8,
    /// Maximum Outstanding Commands (fabrics).
    pub maxcmd: u16,
    /// Number of Namespaces: the largest valid namespace ID.
    pub nn: u32,
    /// Optional NVM Command Support.
    pub oncs: u16,
    /// Fused Operation Support.
    pub fuses: u16,
    /// Format NVM Attributes.
    pub fna: u8,
    /// Volatile Write Cache (bit 0: present).
    pub vwc: u8,
    /// Atomic Write Unit Normal (logical blocks, 0's based).
    pub awun: u16,
    /// Atomic Write Unit Power Fail (logical blocks, 0's based).
    pub awupf: u16,
    /// I/O Command Set Vendor Specific Command Configuration.
    pub nvscc: u8,
    /// Namespace Write Protection Capabilities.
    pub nwpc: u8,
    /// Atomic Compare & Write Unit (logical blocks, 0's based).
    pub acwu: u16,
    /// Optional Copy Formats Supported.
    pub ocfs: u16,
    /// SGL Support.
    pub sgls: u32,
    /// Maximum Number of Allowed Namespaces.
    pub mnan: u32,
    /// NVM Subsystem NVMe Qualified Name (256 bytes, NUL padded).
    pub subnqn: String,
    /// I/O Queue Command Capsule Supported Size (16 byte units).
    pub ioccsz: u32,
    /// I/O Queue Response Capsule Supported Size (16 byte units).
    pub iorcsz: u32,
    /// In Capsule Data Offset (16 byte units).
    pub icdoff: u16,
    /// Fabrics Controller Attributes (bit 0: dynamic controller model).
    pub fcatt: u8,
    /// Maximum SGL Data Block Descriptors.
    pub msdbd: u8,
    /// Optional Fabrics Commands Support.
    pub ofcs: u16,
}

impl IdentifyController {
    pub fn from_bytes(data: &[u8]) -> Result<Self, SpecError> {
        check_len("identify controller data", data, IDENTIFY_DATA_SIZE)?;
        let r = LeReader(data);
        Ok(Self {
            vid: r.u16(0),
            ssvid: r.u16(2),
            serial: r.string(4, 20),
            model: r.string(24, 40),
            firmware: r.string(64, 8),
            rab: r.u8(72),
            ieee: r.array(73),
            cmic: r.u8(76),
            mdts: r.u8(77),
            cntlid: r.u16(78),
            ver: r.u32(80),
            rtd3r: r.u32(84),
            rtd3e: r.u32(88),
            oaes: r.u32(92),
            ctratt: r.u32(96),
            rrls: r.u16(100),
            cntrltype: r.u8(111),
            fguid: r.array(112),
            crdt: [r.u16(128), r.u16(130), r.u16(132)],
            oacs: r.u16(256),
            acl: r.u8(258),
            aerl: r.u8(259),
            frmw: r.u8(260),
            lpa: r.u8(261),
            elpe: r.u8(262),
            npss: r.u8(263),
            avscc: r.u8(264),
            apsta: r.u8(265),
            wctemp: r.u16(266),
            cctemp: r.u16(268),
            mtfa: r.u16(270),
            hmpre: r.u32(272),
            hmmin: r.u32(276),
            tnvmcap: r.u128(280),
            unvmcap: r.u128(296),
            kas: r.u16(320),
            anatt: r.u8(342),
            anacap: r.u8(343),
            anagrpmax: r.u32(344),
            nanagrpid: r.u32(348),
            pels: r.u32(352),
            sqes: r.u8(512),
            cqes: r.u8(513),
            maxcmd: r.u16(514),
            nn: r.u32(516),
            oncs: r.u16(520),
            fuses: r.u16(522),
            fna: r.u8(524),
            vwc: r.u8(525),
            awun: r.u16(526),
            awupf: r.u16(528),
            nvscc: r.u8(530),
            nwpc: r.u8(531),
            acwu: r.u16(532),
            ocfs: r.u16(534),
            sgls: r.u32(536),
            mnan: r.u32(540),
            subnqn: r.string(768, 256),
            ioccsz: r.u32(1792),
            iorcsz: r.u32(1796),
            icdoff: r.u16(1800),
            fcatt: r.u8(1802),
            msdbd: r.u8(1803),
            ofcs: r.u16(1804),
        })
    }

    /// The 4096-byte structure; strings longer than their field are truncated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; IDENTIFY_DATA_SIZE];
        let mut w = LeWriter(&mut out);
        w.u16(0, self.vid);
        w.u16(2, self.ssvid);
        w.string(4, 20, &self.serial, b' ');
        w.string(24, 40, &self.model, b' ');
        w.string(64, 8, &self.firmware, b' ');
        w.u8(72, self.rab);
        w.bytes(73, &self.ieee);
        w.u8(76, self.cmic);
        w.u8(77, self.mdts);
        w.u16(78, self.cntlid);
        w.u32(80, self.ver);
        w.u32(84, self.rtd3r);
        w.u32(88, self.rtd3e);
        w.u32(92, self.oaes);
        w.u32(96, self.ctratt);
        w.u16(100, self.rrls);
        w.u8(111, self.cntrltype);
        w.bytes(112, &self.fguid);
        for (i, crdt) in self.crdt.iter().enumerate() {
            w.u16(128 + 2 * i, *crdt);
        }
        w.u16(256, self.oacs);
        w.u8(258, self.acl);
        w.u8(259, self.aerl);
        w.u8(260, self.frmw);
        w.u8(261, self.lpa);
        w.u8(262, self.elpe);
        w.u8(263, self.npss);
        w.u8(264, self.avscc);
        w.u8(265, self.apsta);
        w.u16(266, self.wctemp);
        w.u16(268, self.cctemp);
        w.u16(270, self.mtfa);
        w.u32(272, self.hmpre);
        w.u32(276, self.hmmin);
        w.u128(280, self.tnvmcap);
        w.u128(296, self.unvmcap);
        w.u16(320, self.kas);
        w.u8(342, self.anatt);
        w.u8(343, self.anacap);
        w.u32(344, self.anagrpmax);
        w.u32(348, self.nanagrpid);
        w.u32(352, self.pels);
        w.u8(512, self.sqes);
        w.u8(513, self.cqes);
        w.u16(514, self.maxcmd);
        w.u32(516, self.nn);
        w.u16(520, self.oncs);
        w.u16(522, self.fuses);
        w.u8(524, self.fna);
        w.u8(525, self.vwc);
        w.u16(526, self.awun);
        w.u16(528, self.awupf);
        w.u8(530, self.nvscc);
        w.u8(531, self.nwpc);
        w.u16(532, self.acwu);
        w.u16(534, self.ocfs);
        w.u32(536, self.sgls);
        w.u32(540, self.mnan);
        w.string(768, 256, &self.subnqn, 0);
        w.u32(1792, self.ioccsz);
        w.u32(1796, self.iorcsz);
        w.u16(1800, self.icdoff);
        w.u8(1802, self.fcatt);
        w.u8(1803, self.msdbd);
        w.u16(1804, self.ofcs);
        out
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LbaFormat {
    /// Metadata Size in bytes per logical block.
    pub ms: u16,
    /// LBA Data Size as a power of two (0: format not available).
    pub lbads: u8,
    /// Relative Performance (bits 1:0, 0 is best).
    pub rp: u8,
}

/// Identify Namespace data structure for the NVM Command Set (CNS 00h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// Namespace Size (logical blocks).
    pub nsze: u64,
    /// Namespace Capacity (logical blocks).
    pub ncap: u64,
    /// Namespace Utilization (logical blocks).
    pub nuse: u64,
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
    pub nawun: u16,
    /// Namespace Atomic Write Unit Power Fail (0's based).
    pub nawupf: u16,
    /// Namespace Atomic Compare & Write Unit (0's based).
    pub nacwu: u16,
    /// Namespace Atomic Boundary Size Normal (0's based).
    pub nabsn: u16,
    /// Namespace Atomic Boundary Offset.
    pub nabo: u16,
    /// Namespace Atomic Boundary Size Power Fail (0's based).
    pub nabspf: u16,
    /// Namespace Optimal I/O Boundary (logical blocks).
    pub noiob: u16,
    /// NVM Capacity (bytes).
    pub nvmcap: u128,
    /// Namespace Preferred Write Granularity (0's based).
    pub npwg: u16,
    /// Namespace Preferred Write Alignment (0's based).
    pub npwa: u16,
    /// Namespace Preferred Deallocate Granularity (0's based).
    pub npdg: u16,
    /// Namespace Preferred Deallocate Alignment (0's based).
    pub npda: u16,
    /// Namespace Optimal Write Size (0's based).
    pub nows: u16,
    /// Maximum Single Source Range Length (Copy).
    pub mssrl: u16,
    /// Maximum Copy Length.
    pub mcl: u32,
    /// Maximum Source Range Count (0's based).
    pub msrc: u8,
    /// Number of Unique Attribute LBA Formats (formats NLBAF+1 ..= NLBAF+NULBAF).
    pub nulbaf: u8,
    /// ANA Group Identifier.
    pub anagrpid: u32,
    /// Namespace Attributes (bit 0: write protected).
    pub nsattr: u8,
    /// NVM Set Identifier.
    pub nvmsetid: u16,
    /// Endurance Group Identifier.
    pub endgid: u16,
    /// Namespace Globally Unique Identifier.
    pub nguid: [u8; 16],
    /// IEEE Extended Unique Identifier.
    pub eui64: [u8; 8],
    /// LBA Format list; entries past [`IdentifyNamespace::lba_formats`] are unused.
    pub lbaf: [LbaFormat; MAX_LBA_FORMATS],
}

impl Default for IdentifyNamespace {
    fn default() -> Self {
        Self::decode(&LeReader(&[0; IDENTIFY_DATA_SIZE]))
    }
}

impl IdentifyNamespace {
    pub fn from_bytes(data: &[u8]) -> Result<Self, SpecError> {
        check_len("identify namespace data", data, IDENTIFY_DATA_SIZE)?;
        Ok(Self::decode(&LeReader(data)))
    }

    fn decode(r: &LeReader<'_>) -> Self {
        Self {
            nsze: r.u64(0),
            ncap: r.u64(8),
            nuse: r.u64(16),
            nsfeat: r.u8(24),
            nlbaf: r.u8(25),
            flbas: r.u8(26),
            mc: r.u8(27),
            dpc: r.u8(28),
            dps: r.u8(29),
            nmic: r.u8(30),
            rescap: r.u8(31),
            fpi: r.u8(32),
            dlfeat: r.u8(33),
            nawun: r.u16(34),
            nawupf: r.u16(36),
            nacwu: r.u16(38),
            nabsn: r.u16(40),
            nabo: r.u16(42),
            nabspf: r.u16(44),
            noiob: r.u16(46),
            nvmcap: r.u128(48),
            npwg: r.u16(64),
            npwa: r.u16(66),
            npdg: r.u16(68),
            npda: r.u16(70),
            nows: r.u16(72),
            mssrl: r.u16(74),
            mcl: r.u32(76),
            msrc: r.u8(80),
            nulbaf: r.u8(82),
            anagrpid: r.u32(92),
            nsattr: r.u8(99),
            nvmsetid: r.u16(100),
            endgid: r.u16(102),
            nguid: r.array(104),
            eui64: r.array(120),
            lbaf: std::array::from_fn(|i| {
                let off = 128 + 4 * i;
                LbaFormat {
                    ms: r.u16(off),
                    lbads: r.u8(off + 2),
                    rp: r.u8(off + 3),
                }
            }),
        }
    }

    /// The 4096-byte structure.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; IDENTIFY_DATA_SIZE];
        let mut w = LeWriter(&mut out);
        w.u64(0, self.nsze);
        w.u64(8, self.ncap);
        w.u64(16, self.nuse);
        w.u8(24, self.nsfeat);
        w.u8(25, self.nlbaf);
        w.u8(26, self.flbas);
        w.u8(27, self.mc);
        w.u8(28, self.dpc);
        w.u8(29, self.dps);
        w.u8(30, self.nmic);
        w.u8(31, self.rescap);
        w.u8(32, self.fpi);
        w.u8(33, self.dlfeat);
        w.u16(34, self.nawun);
        w.u16(36, self.nawupf);
        w.u16(38, self.nacwu);
        w.u16(40, self.nabsn);
        w.u16(42, self.nabo);
        w.u16(44, self.nabspf);
        w.u16(46, self.noiob);
        w.u128(48, self.nvmcap);
        w.u16(64, self.npwg);
        w.u16(66, self.npwa);
        w.u16(68, self.npdg);
        w.u16(70, self.npda);
        w.u16(72, self.nows);
        w.u16(74, self.mssrl);
        w.u32(76, self.mcl);
        w.u8(80, self.msrc);
        w.u8(82, self.nulbaf);
        w.u32(92, self.anagrpid);
        w.u8(99, self.nsattr);
        w.u16(100, self.nvmsetid);
        w.u16(102, self.endgid);
        w.bytes(104, &self.nguid);
        w.bytes(120, &self.eui64);
        for (i, f) in self.lbaf.iter().enumerate() {
            let off = 128 + 4 * i;
            w.u16(off, f.ms);
            w.u8(off + 2, f.lbads);
            w.u8(off + 3, f.rp);
        }
        out
    }

    /// A namespace of `blocks` logical blocks of `block_size` bytes with a single LBA format
    /// and no metadata. Panics unless `block_size` is a power of two of at least 512.
    pub fn simple(blocks: u64, block_size: u32) -> Self {
        assert!(
            block_size.is_power_of_two() && block_size >= 512,
            "block size {block_size} is not a power of two >= 512"
        );
        let mut ns = Self {
            nsze: blocks,
            ncap: blocks,
            nuse: blocks,
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

/// Namespace IDs of an Active Namespace ID list (CNS 02h): up to 1024 entries, ending at the
/// first zero entry.
pub fn parse_active_namespace_list(data: &[u8]) -> Vec<u32> {
    read_nsid_list(data)
}

/// An Active Namespace ID list (CNS 02h) of the namespace IDs greater than `after` (the NSID
/// of the command), ascending, without duplicates, at most 1024.
pub fn build_active_namespace_list(nsids: &[u32], after: u32) -> Vec<u8> {
    let mut listed: Vec<u32> = nsids.iter().copied().filter(|&id| id > after).collect();
    listed.sort_unstable();
    listed.dedup();
    write_nsid_list(&listed)
}

/// Entries of a Namespace List up to the first zero entry.
pub(super) fn read_nsid_list(data: &[u8]) -> Vec<u32> {
    data.chunks_exact(4)
        .take(NSID_LIST_ENTRIES)
        .map(|c| LeReader(c).u32(0))
        .take_while(|&id| id != 0)
        .collect()
}

/// A 4096-byte Namespace List holding the first 1024 of `nsids`, zero filled.
pub(super) fn write_nsid_list(nsids: &[u32]) -> Vec<u8> {
    let mut out = vec![0u8; NSID_LIST_ENTRIES * 4];
    let mut w = LeWriter(&mut out);
    for (i, &id) in nsids.iter().take(NSID_LIST_ENTRIES).enumerate() {
        w.u32(4 * i, id);
    }
    out
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

/// Size of a descriptor header: NIDT, NIDL and two reserved bytes.
const NID_HEADER: usize = 4;

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
}

/// Decodes a Namespace Identification Descriptor list. The list ends at a descriptor with
/// NIDL 0 or at the end of `data`; descriptors of unknown types are skipped.
pub fn parse_namespace_id_descriptors(data: &[u8]) -> Result<Vec<NamespaceId>, SpecError> {
    let mut ids = Vec::new();
    let mut off = 0;
    while off + NID_HEADER <= data.len() {
        let (nidt, nidl) = (data[off], data[off + 1]);
        if nidl == 0 {
            break;
        }
        let start = off + NID_HEADER;
        let nid = data
            .get(start..start + usize::from(nidl))
            .ok_or(SpecError::TooShort {
                what: "namespace identification descriptor",
                got: data.len() - off,
                need: NID_HEADER + usize::from(nidl),
            })?;
        off = start + nid.len();
        let expected = match nidt {
            1 => 8,
            2 | 3 => 16,
            4 => 1,
            _ => continue,
        };
        if nidl != expected {
            return Err(SpecError::BadDescriptor {
                nidt,
                nidl,
                expected,
            });
        }
        let r = LeReader(nid);
        ids.push(match nidt {
            1 => NamespaceId::Eui64(r.array(0)),
            2 => NamespaceId::Nguid(r.array(0)),
            3 => NamespaceId::Uuid(r.array(0)),
            _ => NamespaceId::Csi(r.u8(0)),
        });
    }
    Ok(ids)
}

/// A 4096-byte Namespace Identification Descriptor list, zero terminated. Descriptors that
/// would not fit are left out.
pub fn build_namespace_id_descriptors(ids: &[NamespaceId]) -> Vec<u8> {
    let mut out = vec![0u8; IDENTIFY_DATA_SIZE];
    let mut w = LeWriter(&mut out);
    let mut off = 0;
    for id in ids {
        let (nidt, nid) = id.encode();
        if off + NID_HEADER + nid.len() > IDENTIFY_DATA_SIZE {
            break;
        }
        w.u8(off, nidt);
        w.u8(off + 1, nid.len() as u8);
        w.bytes(off + NID_HEADER, nid);
        off += NID_HEADER + nid.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_controller() -> IdentifyController {
        IdentifyController {
            vid: 0x1b36,
            ssvid: 0x1af4,
            serial: "SN-0001".into(),
            model: "vfnvme simulated controller".into(),
            firmware: "1.0".into(),
            rab: 6,
            ieee: [0x52, 0x54, 0x00],
            cmic: 0x0b,
            mdts: 5,
            cntlid: 0x1234,
            ver: 0x0002_0000,
            rtd3r: 1_000_000,
            rtd3e: 2_000_000,
            oaes: 0x100,
            ctratt: 0x8000_0001,
            rrls: 0x0003,
            cntrltype: 1,
            fguid: [0xf0; 16],
            crdt: [1, 20, 300],
            oacs: 0x000a,
            acl: 3,
            aerl: 3,
            frmw: 0x03,
            lpa: 0x07,
            elpe: 63,
            npss: 0,
            avscc: 1,
            apsta: 1,
            wctemp: 343,
            cctemp: 373,
            mtfa: 50,
            hmpre: 0x100,
            hmmin: 0x80,
            tnvmcap: 1 << 40,
            unvmcap: 1 << 20,
            kas: 100,
            anatt: 10,
            anacap: 0x47,
            anagrpmax: 128,
            nanagrpid: 64,
            pels: 2,
            sqes: 0x66,
            cqes: 0x44,
            maxcmd: 128,
            nn: 1024,
            oncs: 0x004e,
            fuses: 1,
            fna: 0x04,
            vwc: 0x07,
            awun: 7,
            awupf: 3,
            nvscc: 1,
            nwpc: 0x03,
            acwu: 1,
            ocfs: 0x0001,
            sgls: 0x0010_0005,
            mnan: 1024,
            subnqn: "nqn.2024-01.io.vfnvme:subsys0".into(),
            ioccsz: 4,
            iorcsz: 1,
            icdoff: 0,
            fcatt: 1,
            msdbd: 1,
            ofcs: 0x0001,
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
        assert_eq!(id.serial, "  S123");
        assert_eq!(id.model, "Model");
        assert_eq!(id.firmware, "");
        assert_eq!(id.mdts, 9);
        assert_eq!(id.nn, 0xdead_beef);
        assert_eq!(id.subnqn, "nqn.");
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
        ns.nuse = 0x8000;
        ns.nsfeat = 0x1f;
        ns.nlbaf = 1;
        ns.flbas = 1;
        ns.dlfeat = 0x09;
        ns.nawun = 7;
        ns.noiob = 256;
        ns.nvmcap = 0x1_0000_0000_0000;
        ns.npwg = 7;
        ns.nows = 31;
        ns.mcl = 1024;
        ns.anagrpid = 2;
        ns.nsattr = 1;
        ns.endgid = 1;
        ns.nguid = *b"0123456789abcdef";
        ns.eui64 = [1, 2, 3, 4, 5, 6, 7, 8];
        ns.lbaf[0] = LbaFormat {
            ms: 0,
            lbads: 9,
            rp: 2,
        };
        ns.lbaf[1] = LbaFormat {
            ms: 8,
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
        assert_eq!((ns.nsze, ns.ncap, ns.nuse), (1000, 1000, 1000));
        assert_eq!(ns.block_size(), 512);
        assert_eq!(
            ns.lba_formats(),
            &[LbaFormat {
                ms: 0,
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
}
