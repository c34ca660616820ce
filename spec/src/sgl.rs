//! SGL data block descriptors (NVMe Base Specification 2.0, "Scatter Gather List"): the data
//! pointer of a command on a fabric, where PRPs do not exist.
//!
//! NVMe/TCP uses two descriptors only, both as the command's DPTR (bytes 24..40 of the SQE): a
//! Data Block with an offset into the capsule (in-capsule data), and a Transport SGL Data Block
//! (data moved by C2HData, or by H2CData after R2T). Their own file because the host builds them
//! and the target checks them: one definition for both.

use std::mem::size_of;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::Command;

/// SGL descriptor types (identifier bits 7:4).
pub mod descriptor_type {
    pub const DATA_BLOCK: u8 = 0x0;
    pub const BIT_BUCKET: u8 = 0x1;
    pub const SEGMENT: u8 = 0x2;
    pub const LAST_SEGMENT: u8 = 0x3;
    pub const KEYED_DATA_BLOCK: u8 = 0x4;
    pub const TRANSPORT_DATA_BLOCK: u8 = 0x5;
}

/// SGL descriptor subtypes (identifier bits 3:0).
pub mod subtype {
    pub const ADDRESS: u8 = 0x0;
    pub const OFFSET: u8 = 0x1;
    pub const TRANSPORT_SPECIFIC: u8 = 0xa;
}

/// The identifier byte of a descriptor of `descriptor_type` and `subtype`.
pub const fn identifier(descriptor_type: u8, subtype: u8) -> u8 {
    (descriptor_type << 4) | (subtype & 0x0f)
}

/// In-capsule data: a Data Block whose address is an offset into the capsule's data.
pub const IN_CAPSULE: u8 = identifier(descriptor_type::DATA_BLOCK, subtype::OFFSET);
/// Data the transport moves: a Transport SGL Data Block, transport specific.
pub const TRANSPORT: u8 = identifier(
    descriptor_type::TRANSPORT_DATA_BLOCK,
    subtype::TRANSPORT_SPECIFIC,
);

/// CDW0 PSDT (bits 15:14) and its value 01b: the data pointer is an SGL (metadata pointer
/// unused), the only form a fabric command takes.
const PSDT_MASK: u32 = 0b11 << 14;
const PSDT_SGL: u32 = 0b01 << 14;

/// One 16-byte SGL data block descriptor.
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
pub struct SglDescriptor {
    /// Address, or offset into the capsule for [`IN_CAPSULE`]; 0 for [`TRANSPORT`].
    pub address: U64,
    /// Bytes of data described.
    pub length: U32,
    pub reserved: [u8; 3],
    /// Type (bits 7:4) and subtype (bits 3:0), e.g. [`IN_CAPSULE`] or [`TRANSPORT`].
    pub identifier: u8,
}
const _: () = assert!(size_of::<SglDescriptor>() == 16);

impl SglDescriptor {
    /// `length` bytes of in-capsule data, from the start of the capsule's data.
    pub fn in_capsule(length: u32) -> Self {
        Self {
            length: U32::new(length),
            identifier: IN_CAPSULE,
            ..Self::default()
        }
    }

    /// `length` bytes the transport moves.
    pub fn transport(length: u32) -> Self {
        Self {
            length: U32::new(length),
            identifier: TRANSPORT,
            ..Self::default()
        }
    }

    /// The descriptor in `command`'s data pointer.
    pub fn of(command: &Command) -> Self {
        let dptr = [U64::new(command.prp1), U64::new(command.prp2)];
        zerocopy::transmute!(dptr)
    }

    /// Makes this descriptor `command`'s data pointer (PSDT set to SGL).
    pub fn store_in(self, command: &mut Command) {
        let [prp1, prp2]: [U64; 2] = zerocopy::transmute!(self);
        command.cdw0 = (command.cdw0 & !PSDT_MASK) | PSDT_SGL;
        command.prp1 = prp1.get();
        command.prp2 = prp2.get();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_the_nvme_tcp_values() {
        assert_eq!(IN_CAPSULE, 0x01);
        assert_eq!(TRANSPORT, 0x5a);
    }

    #[test]
    fn descriptor_is_dptr_bytes_24_to_40() {
        let mut command = Command::new(0x01, 1);
        command.cdw0 |= 0b11 << 14;
        SglDescriptor::transport(4096).store_in(&mut command);
        assert_eq!((command.cdw0 >> 14) & 0b11, 0b01, "PSDT: SGL");
        assert_eq!(command.prp1, 0);
        assert_eq!(command.prp2, (0x5a << 56) | 4096);
        let bytes = command.to_bytes();
        assert_eq!(bytes[32..40], [0, 0x10, 0, 0, 0, 0, 0, 0x5a]);
        assert_eq!(SglDescriptor::of(&command), SglDescriptor::transport(4096));
        SglDescriptor::in_capsule(512).store_in(&mut command);
        assert_eq!(command.prp2, (0x01 << 56) | 512);
        assert_eq!(SglDescriptor::of(&command).length.get(), 512);
    }
}
