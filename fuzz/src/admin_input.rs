//! The `admin` target's input: a settings byte (bit 0 [`DISCOVERY`], bit 1 [`ENABLE`], bits
//! 2-3 the KATO of the Connect, from [`KATO_MS`]), then records of [`RECORD_LEN`] bytes: a kind
//! byte (an index into [`KINDS`], modulo its length), an opcode byte (for [`Kind::Raw`]), then
//! NSID and CDW10-15, little endian. The kinds steer the fuzzer towards whole commands; a
//! Fabrics command's FCTYPE is the first byte of the NSID field.

use vfnvme_spec::fabrics::{fctype, FABRICS_OPCODE};
use vfnvme_spec::{admin_opcode, Command};

/// Settings bit: a discovery controller instead of an NVM one.
pub const DISCOVERY: u8 = 1 << 0;
/// Settings bit: the controller is enabled (CC.EN) before the records run.
pub const ENABLE: u8 = 1 << 1;
pub const KATO_MS: [u32; 4] = [0, 1, 4500, u32::MAX];
pub const RECORD_LEN: usize = 30;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An admin command with this opcode.
    Opcode(u8),
    /// Opcode 7Fh with this FCTYPE.
    Fabrics(u8),
    /// Not a command: namespace NSID changed, as when a drive goes away.
    NamespaceChanged,
    /// The record's opcode byte as it is.
    Raw,
}

pub const KINDS: [Kind; 12] = [
    Kind::Opcode(admin_opcode::GET_LOG_PAGE),
    Kind::Opcode(admin_opcode::IDENTIFY),
    Kind::Fabrics(fctype::PROPERTY_GET),
    Kind::Fabrics(fctype::PROPERTY_SET),
    Kind::Opcode(admin_opcode::GET_FEATURES),
    Kind::Opcode(admin_opcode::SET_FEATURES),
    Kind::Opcode(admin_opcode::ASYNC_EVENT_REQUEST),
    Kind::Opcode(admin_opcode::KEEP_ALIVE),
    Kind::Opcode(admin_opcode::ABORT),
    Kind::Fabrics(fctype::CONNECT),
    Kind::NamespaceChanged,
    Kind::Raw,
];

/// A record's kind and its command, with command identifier `cid`.
pub fn parse_record(record: &[u8; RECORD_LEN], cid: u16) -> (Kind, Command) {
    let kind = KINDS[usize::from(record[0]) % KINDS.len()];
    let dword = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
    let mut command = Command {
        nsid: dword(2),
        cdw10: dword(6),
        cdw11: dword(10),
        cdw12: dword(14),
        cdw13: dword(18),
        cdw14: dword(22),
        cdw15: dword(26),
        ..Command::new(record[1], 0)
    };
    command.set_cid(cid);
    match kind {
        Kind::Opcode(opcode) => command.cdw0 = (command.cdw0 & !0xff) | u32::from(opcode),
        Kind::Fabrics(fctype) => {
            command.cdw0 = (command.cdw0 & !0xff) | u32::from(FABRICS_OPCODE);
            command.nsid = (command.nsid & !0xff) | u32::from(fctype);
        }
        Kind::NamespaceChanged | Kind::Raw => {}
    }
    (kind, command)
}

/// The record of `command` as `kind` (the inverse of [`parse_record`], but for the fields
/// the kind sets).
pub fn encode_record(kind: Kind, command: &Command) -> [u8; RECORD_LEN] {
    let index = KINDS
        .iter()
        .position(|&k| k == kind)
        .expect("a kind of the table");
    let mut record = [0u8; RECORD_LEN];
    record[0] = index as u8;
    record[1] = command.opcode();
    let dwords = [
        command.nsid,
        command.cdw10,
        command.cdw11,
        command.cdw12,
        command.cdw13,
        command.cdw14,
        command.cdw15,
    ];
    for (at, dword) in (2..).step_by(4).zip(dwords) {
        record[at..at + 4].copy_from_slice(&dword.to_le_bytes());
    }
    record
}
