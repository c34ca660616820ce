//! Controller register layout (NVMe base spec, "Controller Registers").

pub const CAP: usize = 0x00;
pub const VS: usize = 0x08;
pub const INTMS: usize = 0x0c;
pub const INTMC: usize = 0x10;
pub const CC: usize = 0x14;
pub const CSTS: usize = 0x1c;
pub const NSSR: usize = 0x20;
pub const AQA: usize = 0x24;
pub const ASQ: usize = 0x28;
pub const ACQ: usize = 0x30;
/// First doorbell register; each queue's pair is at `DOORBELL_BASE + (2 * qid + {0,1}) * stride`.
pub const DOORBELL_BASE: usize = 0x1000;

/// Offset of the SQ tail doorbell of queue `qid` for a doorbell stride of `stride` bytes.
pub const fn sq_tail_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELL_BASE + (2 * qid as usize) * stride
}

/// Offset of the CQ head doorbell of queue `qid`.
pub const fn cq_head_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELL_BASE + (2 * qid as usize + 1) * stride
}

/// Controller Capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Maximum Queue Entries Supported, as an entry count (the register is 0's based).
    pub fn max_queue_entries(self) -> u32 {
        (self.0 & 0xffff) as u32 + 1
    }
    pub fn contiguous_queues_required(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// Worst-case time to become ready, in milliseconds (CAP.TO is in 500 ms units).
    pub fn timeout_ms(self) -> u64 {
        ((self.0 >> 24) & 0xff) * 500
    }
    /// Doorbell stride in bytes (4 << DSTRD).
    pub fn doorbell_stride(self) -> usize {
        4 << ((self.0 >> 32) & 0xf)
    }
    pub fn nvm_command_set(self) -> bool {
        (self.0 >> 37) & 1 != 0
    }
    pub fn mpsmin_bytes(self) -> usize {
        1 << (12 + ((self.0 >> 48) & 0xf))
    }

    pub fn build(mqes_entries: u32, timeout_ms: u64, dstrd: u8) -> Cap {
        let to = timeout_ms.div_ceil(500).min(255);
        Cap(u64::from(mqes_entries - 1) & 0xffff
            | 1 << 16
            | to << 24
            | u64::from(dstrd & 0xf) << 32
            | 1 << 37)
    }
}

/// Controller Configuration fields.
pub mod cc {
    pub const EN: u32 = 1 << 0;
    pub const CSS_SHIFT: u32 = 4;
    pub const MPS_SHIFT: u32 = 7;
    pub const SHN_SHIFT: u32 = 14;
    pub const SHN_MASK: u32 = 0x3 << SHN_SHIFT;
    pub const SHN_NORMAL: u32 = 1 << SHN_SHIFT;
    pub const SHN_ABRUPT: u32 = 2 << SHN_SHIFT;
    pub const IOSQES_SHIFT: u32 = 16;
    pub const IOCQES_SHIFT: u32 = 20;
}

/// Controller Status fields.
pub mod csts {
    pub const RDY: u32 = 1 << 0;
    pub const CFS: u32 = 1 << 1;
    pub const SHST_SHIFT: u32 = 2;
    pub const SHST_MASK: u32 = 0x3 << SHST_SHIFT;
    pub const SHST_NORMAL: u32 = 0;
    pub const SHST_OCCURRING: u32 = 1 << SHST_SHIFT;
    pub const SHST_COMPLETE: u32 = 2 << SHST_SHIFT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_fields_round_trip() {
        let cap = Cap::build(2048, 7500, 0);
        assert_eq!(cap.max_queue_entries(), 2048);
        assert_eq!(cap.timeout_ms(), 7500);
        assert_eq!(cap.doorbell_stride(), 4);
        assert!(cap.nvm_command_set());
        assert!(cap.contiguous_queues_required());
        assert_eq!(cap.mpsmin_bytes(), 4096);
        assert_eq!(sq_tail_doorbell(1, 4), 0x1008);
        assert_eq!(cq_head_doorbell(1, 4), 0x100c);
        assert_eq!(cq_head_doorbell(2, 16), 0x1000 + 5 * 16);
    }
}
