//! What several kinds of seed are built with: the seed list, and the commands hosts send.

use vfnvme_spec::fabrics::{FabricsCommand, PropertyGet, PropertySet, PropertySize};
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::{admin_opcode, nvm_opcode, Command};

/// Seeds of one target: file name (after `seed-`) and contents.
pub type Seeds = Vec<(String, Vec<u8>)>;

pub fn sample_command() -> Command {
    let mut command = Command::nvm_rw(nvm_opcode::WRITE, 1, 8, 1);
    command.set_cid(7);
    command
}

pub fn property_get(offset: usize, size: PropertySize) -> Command {
    FabricsCommand::PropertyGet(PropertyGet {
        size,
        offset: offset as u32,
    })
    .to_command(0)
}

pub fn property_set_cc(cc: Cc) -> Command {
    FabricsCommand::PropertySet(PropertySet {
        size: PropertySize::Four,
        offset: regs::CC as u32,
        value: u64::from(cc.into_bits()),
    })
    .to_command(0)
}

pub fn admin(opcode: u8, nsid: u32, cdw10: u32, cdw11: u32) -> Command {
    Command {
        cdw10,
        cdw11,
        ..Command::new(opcode, nsid)
    }
}

/// Get Log Page `lid`, `len` bytes (a multiple of 4) from `offset`.
pub fn get_log(lid: u8, len: u32, offset: u64) -> Command {
    let numd = len / 4 - 1;
    Command {
        cdw12: offset as u32,
        cdw13: (offset >> 32) as u32,
        ..admin(
            admin_opcode::GET_LOG_PAGE,
            0xffff_ffff,
            u32::from(lid) | (numd & 0xffff) << 16,
            numd >> 16,
        )
    }
}
