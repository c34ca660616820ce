//! NVMe wire formats (NVMe Base Specification 2.0): queue entries, opcodes, status codes,
//! register layout, Identify data and log pages. Pure data: nothing here touches hardware.

#![forbid(unsafe_code)]

pub mod auth;
pub mod discovery;
pub mod fabrics;
pub mod identify;
pub mod log_page;
pub mod padded;
pub mod regs;
pub mod sgl;
pub mod status;
pub mod tcp;

use std::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use status::Status;

// The queue entries below hold native integers, so that the I/O path reads and sets fields
// without conversions; their bytes are the little-endian wire format only on a little-endian
// machine, the only kind this crate is built for.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "queue entries are native integers laid out as the little-endian wire format"
);

/// Size of a submission queue entry (CC.IOSQES = 6).
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry (CC.IOCQES = 4).
pub const CQE_SIZE: usize = 16;
/// The memory page size the driver programs into CC.MPS (4 KiB, MPS = 0).
pub const PAGE_SIZE: usize = 4096;

/// A submission queue entry (NVMe base spec, figure "Common Command Format").
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct Command {
    /// CDW0: opcode (bits 7:0), fused (9:8), PSDT (15:14), command identifier (31:16).
    pub cdw0: u32,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub mptr: u64,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}
const _: () = assert!(size_of::<Command>() == SQE_SIZE);

impl Command {
    /// A command with only the opcode and namespace set.
    pub fn new(opcode: u8, nsid: u32) -> Self {
        Self {
            cdw0: u32::from(opcode),
            nsid,
            ..Self::default()
        }
    }

    pub fn opcode(&self) -> u8 {
        self.cdw0 as u8
    }

    pub fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }

    pub fn set_cid(&mut self, cid: u16) {
        self.cdw0 = (self.cdw0 & 0xffff) | (u32::from(cid) << 16);
    }

    /// Starting LBA of an NVM command (CDW10-11).
    pub fn slba(&self) -> u64 {
        u64::from(self.cdw10) | (u64::from(self.cdw11) << 32)
    }

    /// Number of logical blocks of an NVM command, from the 0's based NLB in CDW12.
    pub fn nlb(&self) -> u32 {
        (self.cdw12 & 0xffff) + 1
    }

    /// Read/Write/Write Zeroes/Compare: `blocks` logical blocks from `slba`.
    pub fn nvm_rw(opcode: u8, nsid: u32, slba: u64, blocks: u32) -> Self {
        debug_assert!((1..=0x1_0000).contains(&blocks));
        Self {
            cdw10: slba as u32,
            cdw11: (slba >> 32) as u32,
            cdw12: blocks - 1,
            ..Self::new(opcode, nsid)
        }
    }

    /// The entry as the 64 bytes the controller reads.
    pub fn to_bytes(&self) -> [u8; SQE_SIZE] {
        zerocopy::transmute!(*self)
    }

    pub fn from_bytes(bytes: &[u8; SQE_SIZE]) -> Self {
        zerocopy::transmute!(*bytes)
    }
}

/// A completion queue entry.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct Completion {
    /// Command specific result (DW0).
    pub result: u32,
    pub dw1: u32,
    /// SQ head pointer the controller has consumed up to.
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    /// Phase tag (bit 0) and status field (bits 15:1).
    pub status_phase: u16,
}
const _: () = assert!(size_of::<Completion>() == CQE_SIZE);

impl Completion {
    pub fn phase(&self) -> bool {
        self.status_phase & 1 != 0
    }

    pub fn status(&self) -> Status {
        Status::from_raw(self.status_phase >> 1)
    }

    pub fn to_bytes(&self) -> [u8; CQE_SIZE] {
        zerocopy::transmute!(*self)
    }

    pub fn from_bytes(bytes: &[u8; CQE_SIZE]) -> Self {
        zerocopy::transmute!(*bytes)
    }
}

/// Admin command opcodes.
pub mod admin_opcode {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    pub const KEEP_ALIVE: u8 = 0x18;
}

/// NVM command set I/O opcodes.
pub mod nvm_opcode {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE_ZEROES: u8 = 0x08;
    pub const DATASET_MANAGEMENT: u8 = 0x09;
}

/// Feature identifiers (Get/Set Features CDW10 bits 7:0).
pub mod feature {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MANAGEMENT: u8 = 0x02;
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
    pub const KEEP_ALIVE_TIMER: u8 = 0x0f;
}

/// Identify CNS values (CDW10 bits 7:0).
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NAMESPACE_LIST: u8 = 0x02;
    pub const NAMESPACE_ID_DESCRIPTORS: u8 = 0x03;
}

/// A Dataset Management range (16 bytes each, up to 256 per command).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct DsmRange {
    pub attributes: u32,
    pub blocks: u32,
    pub slba: u64,
}
const _: () = assert!(size_of::<DsmRange>() == 16);

impl DsmRange {
    pub fn to_bytes(&self) -> [u8; 16] {
        zerocopy::transmute!(*self)
    }

    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        zerocopy::transmute!(*bytes)
    }
}

/// Dataset Management CDW11 attribute: deallocate.
pub const DSM_ATTR_DEALLOCATE: u32 = 1 << 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trips_through_bytes() {
        let mut cmd = Command::nvm_rw(nvm_opcode::READ, 1, 0x1_2345_6789, 8);
        cmd.set_cid(0xbeef);
        cmd.prp1 = 0xdead_b000;
        cmd.prp2 = 0x1000_2000;
        let bytes = cmd.to_bytes();
        assert_eq!(bytes[0], nvm_opcode::READ);
        assert_eq!(u16::from_le_bytes([bytes[2], bytes[3]]), 0xbeef);
        assert_eq!(Command::from_bytes(&bytes), cmd);
        assert_eq!(cmd.slba(), 0x1_2345_6789);
        assert_eq!(cmd.nlb(), 8);
        assert_eq!(cmd.cid(), 0xbeef);
    }

    #[test]
    fn completion_round_trips_through_bytes() {
        let cqe = Completion {
            result: 7,
            dw1: 0,
            sq_head: 12,
            sq_id: 3,
            cid: 99,
            status_phase: (0x0281 << 1) | 1,
        };
        let back = Completion::from_bytes(&cqe.to_bytes());
        assert_eq!(back, cqe);
        assert!(back.phase());
        assert_eq!(back.status().raw(), 0x0281);
    }
}
