//! Get Log Page data (NVMe Base Specification 2.0, "Log Page Identifiers"): Error Information,
//! SMART / Health Information, Firmware Slot Information and Changed Namespace List.
//!
//! The pages are wire layouts (little-endian fields, reserved bytes kept), read with
//! `from_bytes` and written with `as_bytes`; the Changed Namespace List is decoded into what it
//! reports, a list or an overflow.

use std::mem::size_of;

use zerocopy::little_endian::{U128, U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::identify::{read_prefix, NamespaceList, SpecError, NSID_LIST_ENTRIES};
use super::padded::PaddedString;
use super::status::Status;

/// Log page identifiers (Get Log Page CDW10 bits 7:0).
pub mod log_id {
    pub const ERROR: u8 = 0x01;
    pub const SMART_HEALTH: u8 = 0x02;
    pub const FIRMWARE_SLOT: u8 = 0x03;
    pub const CHANGED_NAMESPACE_LIST: u8 = 0x04;
    pub const DISCOVERY: u8 = 0x70;
}

/// Size of one Error Information Log Entry.
pub const ERROR_LOG_ENTRY_SIZE: usize = 64;
/// Size of the SMART / Health Information log page.
pub const SMART_LOG_SIZE: usize = 512;
/// Size of the Firmware Slot Information log page.
pub const FIRMWARE_SLOT_LOG_SIZE: usize = 512;
/// Size of the Changed Namespace List log page.
pub const CHANGED_NAMESPACE_LIST_SIZE: usize = 4096;

/// An Error Information Log Entry (log 01h); the page is an array of these, newest first.
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
pub struct ErrorLogEntry {
    /// Unique, incrementing error count; 0 marks an unused entry.
    pub error_count: U64,
    /// Submission Queue ID of the failed command (0xffff: not command specific).
    pub sqid: U16,
    /// Command ID of the failed command.
    pub cid: U16,
    /// Status Field (bits 15:1) and Phase Tag (bit 0), as posted in the completion.
    pub status: U16,
    /// Parameter Error Location: byte (bits 7:0) and bit (10:8) of the offending field.
    pub parameter_error_location: U16,
    /// First LBA that experienced the error.
    pub lba: U64,
    /// Namespace of the error.
    pub nsid: U32,
    /// Vendor Specific Information Available: log page ID of vendor details (0: none).
    pub vendor_specific: u8,
    /// Transport Type of the transport specific information.
    pub trtype: u8,
    pub reserved0: [u8; 2],
    /// Command Specific Information.
    pub command_specific: U64,
    /// Transport Type Specific Information.
    pub trtype_specific: U16,
    pub reserved1: [u8; 22],
}
const _: () = assert!(size_of::<ErrorLogEntry>() == ERROR_LOG_ENTRY_SIZE);

impl ErrorLogEntry {
    pub fn from_bytes(bytes: &[u8; ERROR_LOG_ENTRY_SIZE]) -> Self {
        zerocopy::transmute!(*bytes)
    }

    pub fn to_bytes(&self) -> [u8; ERROR_LOG_ENTRY_SIZE] {
        zerocopy::transmute!(*self)
    }

    /// The status of the failed command, without the phase tag.
    pub fn completion_status(&self) -> Status {
        Status::from_raw(self.status.get() >> 1)
    }
}

/// The used entries of an Error Information log page (entries with error count 0 dropped).
pub fn parse_error_log(data: &[u8]) -> Vec<ErrorLogEntry> {
    let entries = data.len() / ERROR_LOG_ENTRY_SIZE;
    let Ok((page, _)) = <[ErrorLogEntry]>::ref_from_prefix_with_elems(data, entries) else {
        unreachable!("{entries} entries fit in {} bytes", data.len());
    };
    page.iter()
        .copied()
        .filter(|e| e.error_count.get() != 0)
        .collect()
}

/// Critical Warning bits of the SMART / Health Information log page.
pub mod critical_warning {
    pub const AVAILABLE_SPARE: u8 = 1 << 0;
    pub const TEMPERATURE: u8 = 1 << 1;
    pub const RELIABILITY_DEGRADED: u8 = 1 << 2;
    pub const READ_ONLY: u8 = 1 << 3;
    pub const VOLATILE_BACKUP_FAILED: u8 = 1 << 4;
    pub const PMR_READ_ONLY: u8 = 1 << 5;
}

/// SMART / Health Information log page (log 02h). Counters are 128-bit; data units are
/// thousands of 512-byte units, temperatures are in kelvin.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct SmartLog {
    /// Critical Warning, see [`critical_warning`].
    pub critical_warning: u8,
    /// Composite Temperature.
    pub temperature_kelvin: U16,
    /// Available Spare (percent).
    pub avail_spare: u8,
    /// Available Spare Threshold (percent).
    pub spare_thresh: u8,
    /// Percentage Used of the rated endurance.
    pub percent_used: u8,
    /// Endurance Group Critical Warning Summary.
    pub endu_grp_crit_warn_sumry: u8,
    pub reserved0: [u8; 25],
    pub data_units_read: U128,
    pub data_units_written: U128,
    /// Host Read Commands completed.
    pub host_reads: U128,
    /// Host Write Commands completed.
    pub host_writes: U128,
    /// Controller Busy Time (minutes).
    pub ctrl_busy_time: U128,
    pub power_cycles: U128,
    pub power_on_hours: U128,
    pub unsafe_shutdowns: U128,
    /// Media and Data Integrity Errors.
    pub media_errors: U128,
    /// Number of Error Information Log Entries over the controller's life.
    pub num_err_log_entries: U128,
    /// Warning Composite Temperature Time (minutes).
    pub warning_temp_time: U32,
    /// Critical Composite Temperature Time (minutes).
    pub critical_comp_time: U32,
    /// Temperature Sensors 1-8 (0: not implemented).
    pub temp_sensor: [U16; 8],
    /// Thermal Management Temperature 1 Transition Count.
    pub thm_temp1_trans_count: U32,
    /// Thermal Management Temperature 2 Transition Count.
    pub thm_temp2_trans_count: U32,
    /// Total Time For Thermal Management Temperature 1 (seconds).
    pub thm_temp1_total_time: U32,
    /// Total Time For Thermal Management Temperature 2 (seconds).
    pub thm_temp2_total_time: U32,
    pub reserved1: [u8; 280],
}
const _: () = assert!(size_of::<SmartLog>() == SMART_LOG_SIZE);

/// All zeros: nothing measured.
impl Default for SmartLog {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl SmartLog {
    pub fn from_bytes(data: &[u8]) -> Result<Self, SpecError> {
        read_prefix("SMART / health information log", data)
    }

    /// The 512-byte log page.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

/// Firmware Slot Information log page (log 03h).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct FirmwareSlotLog {
    /// Active Firmware Info: active slot (bits 2:0), slot activated at next reset (6:4).
    pub afi: u8,
    pub reserved0: [u8; 7],
    /// Firmware Revision for slots 1-7 (ASCII, space padded; zeros: no firmware in the slot).
    pub frs: [PaddedString<8>; 7],
    pub reserved1: [u8; 448],
}
const _: () = assert!(size_of::<FirmwareSlotLog>() == FIRMWARE_SLOT_LOG_SIZE);

/// All zeros: no firmware in any slot.
impl Default for FirmwareSlotLog {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl FirmwareSlotLog {
    pub fn from_bytes(data: &[u8]) -> Result<Self, SpecError> {
        read_prefix("firmware slot information log", data)
    }

    /// The 512-byte log page.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// Puts firmware `revision` in slot `slot` (1-7); an empty revision empties the slot.
    pub fn set_revision(&mut self, slot: usize, revision: &str) {
        self.frs[slot - 1] = if revision.is_empty() {
            PaddedString::default()
        } else {
            PaddedString::space_padded(revision)
        };
    }

    /// The slot (1-7) the running firmware was loaded from.
    pub fn active_slot(&self) -> u8 {
        self.afi & 0x7
    }

    /// The slot to be activated at the next controller reset, if one is pending.
    pub fn next_reset_slot(&self) -> Option<u8> {
        match (self.afi >> 4) & 0x7 {
            0 => None,
            slot => Some(slot),
        }
    }
}

/// Changed Namespace List log page (log 04h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangedNamespaceList {
    /// The namespaces that changed, at most 1024.
    List(Vec<u32>),
    /// More than 1024 namespaces changed (first entry FFFFFFFFh): rescan all of them.
    Overflow,
}

const CHANGED_NAMESPACE_OVERFLOW: u32 = 0xffff_ffff;
const _: () = assert!(size_of::<NamespaceList>() == CHANGED_NAMESPACE_LIST_SIZE);

impl ChangedNamespaceList {
    /// The list reporting `nsids` (sorted, deduplicated, zero dropped), or
    /// [`ChangedNamespaceList::Overflow`] when more than 1024 remain.
    pub fn from_nsids(nsids: &[u32]) -> Self {
        let mut list: Vec<u32> = nsids.iter().copied().filter(|&id| id != 0).collect();
        list.sort_unstable();
        list.dedup();
        if list.len() > NSID_LIST_ENTRIES {
            Self::Overflow
        } else {
            Self::List(list)
        }
    }

    /// Decodes the entries up to the first zero; never fails (a short page is a short list).
    pub fn from_bytes(data: &[u8]) -> Self {
        let list = NamespaceList::parse(data);
        if list.first() == Some(&CHANGED_NAMESPACE_OVERFLOW) {
            Self::Overflow
        } else {
            Self::List(list)
        }
    }

    /// The 4096-byte log page; a list longer than 1024 entries is reported as overflow.
    pub fn to_bytes(&self) -> Vec<u8> {
        let page = match self {
            Self::List(list) if list.len() <= NSID_LIST_ENTRIES => NamespaceList::new(list),
            _ => NamespaceList::new(&[CHANGED_NAMESPACE_OVERFLOW]),
        };
        page.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::generic;

    fn sample_error() -> ErrorLogEntry {
        ErrorLogEntry {
            error_count: U64::new(0x1_0000_0002),
            sqid: U16::new(3),
            cid: U16::new(0xbeef),
            status: U16::new(
                (Status::generic(generic::LBA_OUT_OF_RANGE)
                    .do_not_retry()
                    .raw()
                    << 1)
                    | 1,
            ),
            parameter_error_location: U16::new(0x0228),
            lba: U64::new(0x0123_4567_89ab_cdef),
            nsid: U32::new(7),
            vendor_specific: 0xc0,
            trtype: 3,
            command_specific: U64::new(0xfeed),
            trtype_specific: U16::new(0x4242),
            ..ErrorLogEntry::default()
        }
    }

    #[test]
    fn error_entry_round_trips_at_spec_offsets() {
        let e = sample_error();
        let b = e.to_bytes();
        assert_eq!(&b[0..8], &[2, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[8..10], &[3, 0]);
        assert_eq!(&b[10..12], &[0xef, 0xbe]);
        assert_eq!(&b[12..14], &[0x01, 0x81]);
        assert_eq!(&b[14..16], &[0x28, 0x02]);
        assert_eq!(
            &b[16..24],
            &[0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]
        );
        assert_eq!(&b[24..28], &[7, 0, 0, 0]);
        assert_eq!((b[28], b[29]), (0xc0, 3));
        assert_eq!(&b[32..40], &[0xed, 0xfe, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[40..42], &[0x42, 0x42]);
        assert!(b[42..].iter().all(|&x| x == 0));
        assert_eq!(ErrorLogEntry::from_bytes(&b), e);
        let status = e.completion_status();
        assert_eq!(status.sc(), generic::LBA_OUT_OF_RANGE);
        assert!(status.dnr());
    }

    #[test]
    fn error_log_drops_unused_entries() {
        let mut page = vec![0u8; 4 * ERROR_LOG_ENTRY_SIZE];
        let e = sample_error();
        page[64..128].copy_from_slice(&e.to_bytes());
        page[192..256].copy_from_slice(
            &ErrorLogEntry {
                error_count: U64::new(1),
                ..e
            }
            .to_bytes(),
        );
        let parsed = parse_error_log(&page);
        assert_eq!(
            parsed,
            vec![
                e,
                ErrorLogEntry {
                    error_count: U64::new(1),
                    ..e
                }
            ]
        );
    }

    fn sample_smart() -> SmartLog {
        SmartLog {
            critical_warning: critical_warning::TEMPERATURE | critical_warning::READ_ONLY,
            temperature_kelvin: U16::new(0x0136),
            avail_spare: 100,
            spare_thresh: 10,
            percent_used: 3,
            endu_grp_crit_warn_sumry: 1,
            data_units_read: U128::new(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            data_units_written: U128::new(2),
            host_reads: U128::new(3),
            host_writes: U128::new(4),
            ctrl_busy_time: U128::new(5),
            power_cycles: U128::new(6),
            power_on_hours: U128::new(7),
            unsafe_shutdowns: U128::new(8),
            media_errors: U128::new(9),
            num_err_log_entries: U128::new(10),
            warning_temp_time: U32::new(11),
            critical_comp_time: U32::new(12),
            temp_sensor: [300, 301, 302, 0, 0, 0, 0, 310].map(U16::new),
            thm_temp1_trans_count: U32::new(13),
            thm_temp2_trans_count: U32::new(14),
            thm_temp1_total_time: U32::new(15),
            thm_temp2_total_time: U32::new(16),
            ..SmartLog::default()
        }
    }

    #[test]
    fn smart_log_round_trips_at_spec_offsets() {
        let s = sample_smart();
        let b = s.to_bytes();
        assert_eq!(b.len(), SMART_LOG_SIZE);
        assert_eq!(b[0], 0x0a);
        assert_eq!(&b[1..3], &[0x36, 0x01]);
        assert_eq!(&b[3..7], &[100, 10, 3, 1]);
        assert!(b[7..32].iter().all(|&x| x == 0));
        assert_eq!(b[32], 0x10);
        assert_eq!(b[47], 0x01);
        assert_eq!(b[48], 2);
        assert_eq!(b[128], 7);
        assert_eq!(b[176], 10);
        assert_eq!(&b[192..200], &[11, 0, 0, 0, 12, 0, 0, 0]);
        assert_eq!(&b[200..202], &300u16.to_le_bytes());
        assert_eq!(&b[214..216], &310u16.to_le_bytes());
        assert_eq!(&b[216..220], &[13, 0, 0, 0]);
        assert_eq!(&b[228..232], &[16, 0, 0, 0]);
        assert!(b[232..].iter().all(|&x| x == 0));
        assert_eq!(SmartLog::from_bytes(&b).unwrap(), s);
        assert!(SmartLog::from_bytes(&b[..511]).is_err());
    }

    #[test]
    fn firmware_slot_log_round_trips_at_spec_offsets() {
        let mut log = FirmwareSlotLog {
            afi: 0x21,
            ..FirmwareSlotLog::default()
        };
        log.set_revision(1, "1.0.0");
        log.set_revision(2, "2.0.0-rc");
        log.set_revision(7, "7");
        let b = log.to_bytes();
        assert_eq!(b.len(), FIRMWARE_SLOT_LOG_SIZE);
        assert_eq!(b[0], 0x21);
        assert_eq!(&b[8..16], b"1.0.0   ");
        assert_eq!(&b[16..24], b"2.0.0-rc");
        assert!(b[24..56].iter().all(|&x| x == 0));
        assert_eq!(&b[56..64], b"7       ");
        assert_eq!(FirmwareSlotLog::from_bytes(&b).unwrap(), log);
        assert_eq!(log.active_slot(), 1);
        assert_eq!(log.next_reset_slot(), Some(2));
        assert_eq!(FirmwareSlotLog::default().next_reset_slot(), None);
    }

    #[test]
    fn changed_namespace_list_round_trips() {
        let list = ChangedNamespaceList::from_nsids(&[4, 0, 2, 4]);
        assert_eq!(list, ChangedNamespaceList::List(vec![2, 4]));
        let b = list.to_bytes();
        assert_eq!(b.len(), CHANGED_NAMESPACE_LIST_SIZE);
        assert_eq!(&b[0..12], &[2, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ChangedNamespaceList::from_bytes(&b), list);
        assert_eq!(
            ChangedNamespaceList::from_bytes(&[0; 4096]),
            ChangedNamespaceList::List(vec![])
        );
    }

    #[test]
    fn changed_namespace_list_overflows_past_1024() {
        let nsids: Vec<u32> = (1..=1024).collect();
        let full = ChangedNamespaceList::from_nsids(&nsids);
        assert_eq!(full, ChangedNamespaceList::List(nsids.clone()));
        assert_eq!(ChangedNamespaceList::from_bytes(&full.to_bytes()), full);

        let over = ChangedNamespaceList::from_nsids(&(1..=1025).collect::<Vec<_>>());
        assert_eq!(over, ChangedNamespaceList::Overflow);
        let b = over.to_bytes();
        assert_eq!(&b[0..8], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(ChangedNamespaceList::from_bytes(&b), over);
        let long = ChangedNamespaceList::List((1..=2000).collect());
        assert_eq!(long.to_bytes(), b);
    }
}
