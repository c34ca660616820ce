//! The Discovery Log Page (NVMe over Fabrics 1.1, "Discovery Log Page", log 70h): a header
//! and one entry per way to reach a subsystem, as wire layouts. Their own file because the
//! page is the discovery service's alone; the target fills it, a host reads it.

use std::mem::size_of;

use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::padded::PaddedString;

/// Size of the Discovery Log Page header; entries follow it.
pub const DISCOVERY_LOG_HEADER_SIZE: usize = 1024;
/// Size of one Discovery Log Page entry (Linux `struct nvmf_disc_rsp_page_entry`).
pub const DISCOVERY_LOG_ENTRY_SIZE: usize = 1024;

/// Transport Type: TCP.
pub const TRTYPE_TCP: u8 = 3;
/// Address Family: IPv4.
pub const ADRFAM_IPV4: u8 = 1;
/// Address Family: IPv6.
pub const ADRFAM_IPV6: u8 = 2;
/// Subsystem Type: an NVM subsystem.
pub const SUBTYPE_NVME: u8 = 2;
/// Subsystem Type: the discovery subsystem that returned the log page.
pub const SUBTYPE_CURRENT_DISCOVERY: u8 = 3;
/// Transport Requirements, bits 1:0: secure channel requirements not specified. What nvmet
/// reports for a port without TLS; "not required" (2) would make libnvme before 1.4 add `tls`
/// to the connect options, which kernels without TLS refuse.
pub const TREQ_SECURE_CHANNEL_NOT_SPECIFIED: u8 = 0;
/// Transport Requirements, bits 1:0: a secure channel is required (Linux
/// `NVMF_TREQ_REQUIRED`): a TLS listener.
pub const TREQ_SECURE_CHANNEL_REQUIRED: u8 = 1;

/// TSAS byte 0 of an NVMe/TCP entry: the Security Type (Linux `NVMF_TCP_SECTYPE_*`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpSecurityType {
    /// No security (what a plain listener reports).
    None = 0,
    /// TLS 1.2 (NVMe/TCP 3.6.1.1); not offered.
    Tls12 = 1,
    /// TLS 1.3: a TLS listener.
    Tls13 = 2,
}
/// Transport Requirements, bit 2: the host may disable SQ flow control (Connect CATTR).
pub const TREQ_SQ_FLOW_CONTROL_DISABLE_SUPPORTED: u8 = 1 << 2;
/// Entry Flags: every listener returns the same log page (Duplicate Returned Information).
pub const EFLAGS_DUPRETINFO: u16 = 1 << 0;
/// Entry Flags: explicit persistent connections (keep-alive, AER) are supported.
pub const EFLAGS_EPCSD: u16 = 1 << 1;

/// The header of the Discovery Log Page (Linux `struct nvmf_disc_rsp_page_hdr`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct DiscoveryLogHeader {
    /// Generation Counter: changes whenever the entries do.
    pub genctr: U64,
    /// Number of Records: entries following the header.
    pub numrec: U64,
    /// Record Format; 0 is the only one defined.
    pub recfmt: U16,
    pub reserved: [u8; 1006],
}
const _: () = assert!(size_of::<DiscoveryLogHeader>() == DISCOVERY_LOG_HEADER_SIZE);

/// All zeros: generation 0, no records, record format 0.
impl Default for DiscoveryLogHeader {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// One Discovery Log Page entry: a subsystem, and the transport address it is reached at.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct DiscoveryLogEntry {
    /// Transport Type, e.g. [`TRTYPE_TCP`].
    pub trtype: u8,
    /// Address Family, [`ADRFAM_IPV4`] or [`ADRFAM_IPV6`].
    pub adrfam: u8,
    /// Subsystem Type, e.g. [`SUBTYPE_NVME`].
    pub subtype: u8,
    /// Transport Requirements.
    pub treq: u8,
    /// Port ID.
    pub portid: U16,
    /// Controller ID (FFFFh: the dynamic controller model).
    pub cntlid: U16,
    /// Admin Max SQ Size.
    pub asqsz: U16,
    /// Entry Flags, see `EFLAGS_*`.
    pub eflags: U16,
    pub reserved0: [u8; 20],
    /// Transport Service Identifier: for TCP the port number (ASCII, space padded).
    pub trsvcid: PaddedString<32>,
    pub reserved1: [u8; 192],
    /// Subsystem NQN (NUL padded).
    pub subnqn: PaddedString<256>,
    /// Transport Address: for TCP the IP address (ASCII, space padded).
    pub traddr: PaddedString<256>,
    /// Transport Specific Address Subtype; for TCP the first byte is the Security Type
    /// (0: none).
    pub tsas: [u8; 256],
}
const _: () = assert!(size_of::<DiscoveryLogEntry>() == DISCOVERY_LOG_ENTRY_SIZE);

/// All zeros.
impl Default for DiscoveryLogEntry {
    fn default() -> Self {
        Self::new_zeroed()
    }
}
