//! Controller registers (NVMe Base Specification 2.0, section 3.1.4 "Controller Registers"):
//! the offsets of the register file, CAP / VS / CC / CSTS / AQA as bitfield types, and the
//! doorbell offsets. PCIe controllers have them in BAR0, fabric controllers serve the same
//! offsets and values as properties; every bit position of them is written here and nowhere else.

use bitfield_struct::bitfield;

use crate::{CQE_SIZE, PAGE_SIZE, SQE_SIZE};

/// Controller Capabilities ([`Cap`], 8 bytes).
pub const CAP: usize = 0x00;
/// Version ([`Vs`]).
pub const VS: usize = 0x08;
/// Interrupt Mask Set.
pub const INTMS: usize = 0x0c;
/// Interrupt Mask Clear.
pub const INTMC: usize = 0x10;
/// Controller Configuration ([`Cc`]).
pub const CC: usize = 0x14;
/// Controller Status ([`Csts`]).
pub const CSTS: usize = 0x1c;
/// NVM Subsystem Reset.
pub const NSSR: usize = 0x20;
/// Admin Queue Attributes ([`Aqa`]).
pub const AQA: usize = 0x24;
/// Admin Submission Queue Base Address (8 bytes).
pub const ASQ: usize = 0x28;
/// Admin Completion Queue Base Address (8 bytes).
pub const ACQ: usize = 0x30;
/// First doorbell register: queue `qid` has its SQ tail doorbell at index `2 * qid` and its CQ
/// head doorbell at `2 * qid + 1`, one doorbell stride ([`Cap::doorbell_stride`]) apart.
pub const DOORBELL_BASE: usize = 0x1000;

/// Offset of doorbell number `index` for a doorbell stride of `stride` bytes.
const fn doorbell(index: usize, stride: usize) -> usize {
    DOORBELL_BASE + index * stride
}

/// Offset of the SQ tail doorbell of queue `qid` for a doorbell stride of `stride` bytes.
pub const fn sq_tail_doorbell(qid: u16, stride: usize) -> usize {
    doorbell(2 * qid as usize, stride)
}

/// Offset of the CQ head doorbell of queue `qid`.
pub const fn cq_head_doorbell(qid: u16, stride: usize) -> usize {
    doorbell(2 * qid as usize + 1, stride)
}

/// CAP.MPSMIN / MPSMAX and CC.MPS are page sizes as `2 ^ (12 + value)`.
const MEMORY_PAGE_SHIFT: u32 = 12;

/// CC.IOSQES of the submission queue entries this crate defines (`2 ^ 6` = [`SQE_SIZE`]).
pub const IOSQES: u8 = SQE_SIZE.trailing_zeros() as u8;
/// CC.IOCQES of the completion queue entries this crate defines (`2 ^ 4` = [`CQE_SIZE`]).
pub const IOCQES: u8 = CQE_SIZE.trailing_zeros() as u8;
/// CC.MPS for [`PAGE_SIZE`] (0: 4 KiB).
pub const MPS: u8 = (PAGE_SIZE.trailing_zeros() - MEMORY_PAGE_SHIFT) as u8;

/// Controller Capabilities (CAP, offset 00h).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct Cap {
    /// Maximum Queue Entries Supported, 0's based.
    pub mqes: u16,
    /// Contiguous Queues Required.
    pub cqr: bool,
    /// Arbitration Mechanism Supported (bit 0: weighted round robin, bit 1: vendor specific).
    #[bits(2)]
    pub ams: u8,
    #[bits(5)]
    __: u8,
    /// Timeout: worst-case time to become ready, in 500 ms units.
    pub to: u8,
    /// Doorbell Stride: doorbells are `4 << DSTRD` bytes apart.
    #[bits(4)]
    pub dstrd: u8,
    /// NVM Subsystem Reset Supported.
    pub nssrs: bool,
    /// Command Sets Supported.
    #[bits(8)]
    pub css: CommandSets,
    /// Boot Partition Support.
    pub bps: bool,
    /// Controller Power Scope.
    #[bits(2)]
    pub cps: u8,
    /// Memory Page Size Minimum, as `2 ^ (12 + MPSMIN)` bytes.
    #[bits(4)]
    pub mpsmin: u8,
    /// Memory Page Size Maximum, as `2 ^ (12 + MPSMAX)` bytes.
    #[bits(4)]
    pub mpsmax: u8,
    /// Persistent Memory Region Supported.
    pub pmrs: bool,
    /// Controller Memory Buffer Supported.
    pub cmbs: bool,
    /// NVM Subsystem Shutdown Supported.
    pub nsss: bool,
    /// Controller Ready With Media Support.
    pub crwms: bool,
    /// Controller Ready Independent of Media Support.
    pub crims: bool,
    #[bits(3)]
    __: u8,
}

/// CAP.CSS: the command sets a controller supports.
#[bitfield(u8)]
#[derive(PartialEq, Eq)]
pub struct CommandSets {
    /// NVM Command Set.
    pub nvm: bool,
    #[bits(5)]
    __: u8,
    /// One or more I/O Command Sets (CC.CSS = 110b).
    pub io_command_sets: bool,
    /// No I/O Command Set, admin only (CC.CSS = 111b).
    pub no_io_command_set: bool,
}

impl Cap {
    /// CAP of a controller that needs contiguous queues and runs the NVM command set with
    /// 4 KiB pages: `entries` per queue at most, ready within `timeout_ms`, doorbells
    /// `4 << dstrd` bytes apart.
    pub fn build(entries: u32, timeout_ms: u64, dstrd: u8) -> Cap {
        Cap::new()
            // MQES is 16 bits wide; the entry count is truncated to them as the register is.
            .with_mqes((entries - 1) as u16)
            .with_cqr(true)
            .with_to(timeout_ms.div_ceil(500).min(255) as u8)
            .with_dstrd(dstrd & 0xf)
            .with_css(CommandSets::new().with_nvm(true))
    }

    /// Maximum Queue Entries Supported, as an entry count (the register is 0's based).
    pub fn max_queue_entries(self) -> u32 {
        u32::from(self.mqes()) + 1
    }

    /// Worst-case time to become ready, in milliseconds (CAP.TO is in 500 ms units).
    pub fn timeout_ms(self) -> u64 {
        u64::from(self.to()) * 500
    }

    /// Doorbell stride in bytes (4 << DSTRD).
    pub fn doorbell_stride(self) -> usize {
        4 << self.dstrd()
    }

    /// The smallest memory page size in bytes.
    pub fn mpsmin_bytes(self) -> usize {
        1 << (MEMORY_PAGE_SHIFT + u32::from(self.mpsmin()))
    }
}

/// Version (VS, offset 08h).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Vs {
    /// Tertiary Version Number.
    pub ter: u8,
    /// Minor Version Number.
    pub mnr: u8,
    /// Major Version Number.
    pub mjr: u16,
}

impl Vs {
    /// Version `major.minor.0`.
    pub const fn of(major: u16, minor: u8) -> Vs {
        Vs::new().with_mjr(major).with_mnr(minor)
    }
}

/// Controller Configuration (CC, offset 14h).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Cc {
    /// Enable.
    pub en: bool,
    #[bits(3)]
    __: u8,
    /// I/O Command Set Selected (000b: NVM Command Set).
    #[bits(3)]
    pub css: u8,
    /// Memory Page Size, as `2 ^ (12 + MPS)` bytes.
    #[bits(4)]
    pub mps: u8,
    /// Arbitration Mechanism Selected (000b: round robin).
    #[bits(3)]
    pub ams: u8,
    /// Shutdown Notification.
    #[bits(2)]
    pub shn: ShutdownNotification,
    /// I/O Submission Queue Entry Size, as `2 ^ IOSQES` bytes.
    #[bits(4)]
    pub iosqes: u8,
    /// I/O Completion Queue Entry Size, as `2 ^ IOCQES` bytes.
    #[bits(4)]
    pub iocqes: u8,
    /// Controller Ready Independent of Media Enable.
    pub crime: bool,
    #[bits(7)]
    __: u8,
}

impl Cc {
    /// The configuration a host enables a controller with: EN, the NVM command set, 4 KiB
    /// pages, round-robin arbitration, 64-byte submission and 16-byte completion entries.
    pub const fn nvm_enabled() -> Cc {
        Cc::new()
            .with_en(true)
            .with_mps(MPS)
            .with_iosqes(IOSQES)
            .with_iocqes(IOCQES)
    }
}

/// CC.SHN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownNotification {
    None = 0,
    Normal = 1,
    Abrupt = 2,
    Reserved = 3,
}

impl ShutdownNotification {
    const fn into_bits(self) -> u8 {
        self as u8
    }

    const fn from_bits(value: u8) -> Self {
        match value {
            0 => Self::None,
            1 => Self::Normal,
            2 => Self::Abrupt,
            _ => Self::Reserved,
        }
    }
}

/// Controller Status (CSTS, offset 1Ch).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Csts {
    /// Ready.
    pub rdy: bool,
    /// Controller Fatal Status.
    pub cfs: bool,
    /// Shutdown Status.
    #[bits(2)]
    pub shst: ShutdownStatus,
    /// NVM Subsystem Reset Occurred.
    pub nssro: bool,
    /// Processing Paused.
    pub pp: bool,
    /// Shutdown Type (1: an NVM subsystem shutdown).
    pub st: bool,
    #[bits(25)]
    __: u32,
}

/// CSTS.SHST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownStatus {
    /// Normal operation, no shutdown requested.
    Normal = 0,
    Occurring = 1,
    Complete = 2,
    Reserved = 3,
}

impl ShutdownStatus {
    const fn into_bits(self) -> u8 {
        self as u8
    }

    const fn from_bits(value: u8) -> Self {
        match value {
            0 => Self::Normal,
            1 => Self::Occurring,
            2 => Self::Complete,
            _ => Self::Reserved,
        }
    }
}

/// Admin Queue Attributes (AQA, offset 24h).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Aqa {
    /// Admin Submission Queue Size, 0's based.
    #[bits(12)]
    pub asqs: u16,
    #[bits(4)]
    __: u8,
    /// Admin Completion Queue Size, 0's based.
    #[bits(12)]
    pub acqs: u16,
    #[bits(4)]
    __: u8,
}

const _: () = assert!(std::mem::size_of::<Cap>() == 8);
const _: () = assert!(std::mem::size_of::<Vs>() == 4);
const _: () = assert!(std::mem::size_of::<Cc>() == 4);
const _: () = assert!(std::mem::size_of::<Csts>() == 4);
const _: () = assert!(std::mem::size_of::<Aqa>() == 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_fields_sit_where_the_spec_puts_them() {
        assert_eq!((Cap::MQES_OFFSET, Cap::MQES_BITS), (0, 16));
        assert_eq!((Cap::CQR_OFFSET, Cap::CQR_BITS), (16, 1));
        assert_eq!((Cap::AMS_OFFSET, Cap::AMS_BITS), (17, 2));
        assert_eq!((Cap::TO_OFFSET, Cap::TO_BITS), (24, 8));
        assert_eq!((Cap::DSTRD_OFFSET, Cap::DSTRD_BITS), (32, 4));
        assert_eq!((Cap::NSSRS_OFFSET, Cap::NSSRS_BITS), (36, 1));
        assert_eq!((Cap::CSS_OFFSET, Cap::CSS_BITS), (37, 8));
        assert_eq!((Cap::BPS_OFFSET, Cap::BPS_BITS), (45, 1));
        assert_eq!((Cap::CPS_OFFSET, Cap::CPS_BITS), (46, 2));
        assert_eq!((Cap::MPSMIN_OFFSET, Cap::MPSMIN_BITS), (48, 4));
        assert_eq!((Cap::MPSMAX_OFFSET, Cap::MPSMAX_BITS), (52, 4));
        assert_eq!((Cap::PMRS_OFFSET, Cap::PMRS_BITS), (56, 1));
        assert_eq!((Cap::CMBS_OFFSET, Cap::CMBS_BITS), (57, 1));
        assert_eq!((Cap::NSSS_OFFSET, Cap::NSSS_BITS), (58, 1));
        assert_eq!((Cap::CRWMS_OFFSET, Cap::CRWMS_BITS), (59, 1));
        assert_eq!((Cap::CRIMS_OFFSET, Cap::CRIMS_BITS), (60, 1));
        // CAP.CSS bit 0 (CAP bit 37) is the NVM command set, bits 6 and 7 (43, 44) the others.
        assert_eq!(CommandSets::new().with_nvm(true).into_bits(), 1 << 0);
        assert_eq!(
            CommandSets::new().with_io_command_sets(true).into_bits(),
            1 << 6
        );
        assert_eq!(
            CommandSets::new().with_no_io_command_set(true).into_bits(),
            1 << 7
        );
        assert_eq!(
            Cap::new()
                .with_css(CommandSets::new().with_nvm(true))
                .into_bits(),
            1 << 37
        );
    }

    #[test]
    fn vs_aqa_fields_sit_where_the_spec_puts_them() {
        assert_eq!((Vs::TER_OFFSET, Vs::TER_BITS), (0, 8));
        assert_eq!((Vs::MNR_OFFSET, Vs::MNR_BITS), (8, 8));
        assert_eq!((Vs::MJR_OFFSET, Vs::MJR_BITS), (16, 16));
        assert_eq!(Vs::of(1, 4).into_bits(), 0x0001_0400);
        assert_eq!((Aqa::ASQS_OFFSET, Aqa::ASQS_BITS), (0, 12));
        assert_eq!((Aqa::ACQS_OFFSET, Aqa::ACQS_BITS), (16, 12));
    }

    #[test]
    fn cc_fields_sit_where_the_spec_puts_them() {
        assert_eq!((Cc::EN_OFFSET, Cc::EN_BITS), (0, 1));
        assert_eq!((Cc::CSS_OFFSET, Cc::CSS_BITS), (4, 3));
        assert_eq!((Cc::MPS_OFFSET, Cc::MPS_BITS), (7, 4));
        assert_eq!((Cc::AMS_OFFSET, Cc::AMS_BITS), (11, 3));
        assert_eq!((Cc::SHN_OFFSET, Cc::SHN_BITS), (14, 2));
        assert_eq!((Cc::IOSQES_OFFSET, Cc::IOSQES_BITS), (16, 4));
        assert_eq!((Cc::IOCQES_OFFSET, Cc::IOCQES_BITS), (20, 4));
        assert_eq!((Cc::CRIME_OFFSET, Cc::CRIME_BITS), (24, 1));
        assert_eq!(
            Cc::new().with_shn(ShutdownNotification::Normal).into_bits(),
            1 << 14
        );
        assert_eq!(
            Cc::new().with_shn(ShutdownNotification::Abrupt).into_bits(),
            2 << 14
        );
        // EN, IOSQES = 6, IOCQES = 4, MPS = CSS = AMS = 0.
        assert_eq!(Cc::nvm_enabled().into_bits(), 0x0046_0001);
    }

    #[test]
    fn csts_fields_sit_where_the_spec_puts_them() {
        assert_eq!((Csts::RDY_OFFSET, Csts::RDY_BITS), (0, 1));
        assert_eq!((Csts::CFS_OFFSET, Csts::CFS_BITS), (1, 1));
        assert_eq!((Csts::SHST_OFFSET, Csts::SHST_BITS), (2, 2));
        assert_eq!((Csts::NSSRO_OFFSET, Csts::NSSRO_BITS), (4, 1));
        assert_eq!((Csts::PP_OFFSET, Csts::PP_BITS), (5, 1));
        assert_eq!((Csts::ST_OFFSET, Csts::ST_BITS), (6, 1));
        assert_eq!(
            Csts::new().with_shst(ShutdownStatus::Occurring).into_bits(),
            1 << 2
        );
        assert_eq!(
            Csts::new().with_shst(ShutdownStatus::Complete).into_bits(),
            2 << 2
        );
        assert_eq!(Csts::from_bits(0xc).shst(), ShutdownStatus::Reserved);
    }

    #[test]
    fn cap_fields_round_trip() {
        let cap = Cap::build(2048, 7500, 0);
        assert_eq!(cap.max_queue_entries(), 2048);
        assert_eq!(cap.timeout_ms(), 7500);
        assert_eq!(cap.doorbell_stride(), 4);
        assert!(cap.css().nvm());
        assert!(cap.cqr());
        assert_eq!(cap.mpsmin_bytes(), 4096);
        assert_eq!(cap.into_bits(), 2047 | 1 << 16 | 15 << 24 | 1 << 37);
        assert_eq!(Cap::build(16, 0, 2).doorbell_stride(), 16);
    }

    #[test]
    fn doorbells_are_one_stride_apart() {
        assert_eq!(sq_tail_doorbell(0, 4), 0x1000);
        assert_eq!(sq_tail_doorbell(1, 4), 0x1008);
        assert_eq!(cq_head_doorbell(1, 4), 0x100c);
        assert_eq!(cq_head_doorbell(2, 16), 0x1000 + 5 * 16);
    }
}
