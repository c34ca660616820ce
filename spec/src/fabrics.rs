//! The Fabrics command set (NVMe over Fabrics 1.1, "Fabrics Command Set"): Connect, Property
//! Get/Set and Disconnect, decoded from and encoded to submission queue entries, and the
//! Connect data.
//!
//! Fabrics commands use opcode 7Fh; the command type (FCTYPE) sits where other commands have
//! the low byte of the NSID (Linux `struct nvmf_common_command`). The entries and the Connect
//! data are wire layouts below; the decoded forms ([`FabricsCommand`], [`ConnectData`]) are
//! what the target and the host work with, checked once when decoded.

use std::fmt;
use std::mem::size_of;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::padded::PaddedString;
use crate::status::sct;
use crate::{Command, Status, SQE_SIZE};

/// Longest NVMe Qualified Name, in bytes (NVMe Base Specification, "NVMe Qualified Names").
pub const MAX_NQN_BYTES: usize = 223;
/// The well-known NQN of discovery subsystems (NVMe Base Specification, "Discovery Service").
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Opcode of every Fabrics command.
pub const FABRICS_OPCODE: u8 = 0x7f;

/// Fabrics command types.
pub mod fctype {
    pub const PROPERTY_SET: u8 = 0x00;
    pub const CONNECT: u8 = 0x01;
    pub const PROPERTY_GET: u8 = 0x04;
    pub const AUTHENTICATION_SEND: u8 = 0x05;
    pub const AUTHENTICATION_RECEIVE: u8 = 0x06;
    pub const DISCONNECT: u8 = 0x08;
}

/// Command specific status codes of Connect (SCT 1; Linux `NVME_SC_CONNECT_*`).
pub mod connect_status {
    pub const INCOMPATIBLE_FORMAT: u8 = 0x80;
    pub const CONTROLLER_BUSY: u8 = 0x81;
    pub const INVALID_PARAMETERS: u8 = 0x82;
    pub const RESTART_DISCOVERY: u8 = 0x83;
    pub const INVALID_HOST: u8 = 0x84;
}

/// Byte offsets of Connect fields, as reported in IPO when one of them is invalid.
pub mod connect_offset {
    use std::mem::offset_of;

    use super::{ConnectDataLayout, ConnectSqe};

    /// In the submission queue entry.
    pub const RECFMT: u16 = offset_of!(ConnectSqe, recfmt) as u16;
    pub const QID: u16 = offset_of!(ConnectSqe, qid) as u16;
    pub const SQSIZE: u16 = offset_of!(ConnectSqe, sqsize) as u16;
    pub const CATTR: u16 = offset_of!(ConnectSqe, cattr) as u16;
    pub const KATO: u16 = offset_of!(ConnectSqe, kato) as u16;
    /// In the 1024 bytes of Connect data.
    pub const HOSTID: u16 = offset_of!(ConnectDataLayout, hostid) as u16;
    pub const CNTLID: u16 = offset_of!(ConnectDataLayout, cntlid) as u16;
    pub const SUBNQN: u16 = offset_of!(ConnectDataLayout, subnqn) as u16;
    pub const HOSTNQN: u16 = offset_of!(ConnectDataLayout, hostnqn) as u16;
}

/// Size of the data of a Connect command.
pub const CONNECT_DATA_SIZE: usize = 1024;
/// Controller ID asking for (or advertising) the dynamic controller model.
pub const CNTLID_DYNAMIC: u16 = 0xffff;
/// Lowest controller ID a fabrics controller may have (0 is not valid on fabrics).
pub const CNTLID_MIN: u16 = 1;
/// Highest controller ID; FFF0h and above are reserved.
pub const CNTLID_MAX: u16 = 0xffef;
/// Entries of an admin queue the target accepts (Connect SQSIZE + 1 at most) and advertises as
/// ASQSZ, as SPDK's target (`max_aq_depth`): SPDK's `abort` sizes its admin queue to the aborts
/// it keeps in flight (72 entries for `-q 64`), beyond Linux's 32 (`NVME_AQ_DEPTH`).
pub const MAX_ADMIN_QUEUE_ENTRIES: u16 = 128;
/// Connect attribute: the host disables SQ flow control, so SQHD in completions is unused.
pub const CATTR_DISABLE_SQ_FLOW_CONTROL: u8 = 1 << 2;

/// The first 40 bytes of every Fabrics command: where a command has CDW0, the NSID and the
/// data pointer, a Fabrics command has the opcode, the command identifier, FCTYPE and the SGL
/// (Linux `struct nvmf_common_command`).
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
pub struct FabricsHeader {
    /// Always [`FABRICS_OPCODE`].
    pub opcode: u8,
    pub reserved0: u8,
    pub cid: U16,
    /// Fabrics command type, see [`fctype`].
    pub fctype: u8,
    pub reserved1: [u8; 19],
    /// The data pointer: an SGL descriptor.
    pub dptr: [u8; 16],
}
const _: () = assert!(size_of::<FabricsHeader>() == 40);

/// A Connect submission queue entry (Linux `struct nvmf_connect_command`).
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
pub struct ConnectSqe {
    pub header: FabricsHeader,
    pub recfmt: U16,
    pub qid: U16,
    pub sqsize: U16,
    pub cattr: u8,
    pub reserved0: u8,
    pub kato: U32,
    pub reserved1: [u8; 12],
}
const _: () = assert!(size_of::<ConnectSqe>() == SQE_SIZE);

/// A Property Get or Property Set submission queue entry (Linux
/// `struct nvmf_property_{get,set}_command`); Property Get has no value.
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
pub struct PropertySqe {
    pub header: FabricsHeader,
    /// Attributes: the access width in bits 2:0 (0: 4 bytes, 1: 8 bytes).
    pub attrib: u8,
    pub reserved0: [u8; 3],
    /// Offset of the property (the register).
    pub offset: U32,
    /// Property Set: the value written.
    pub value: U64,
    pub reserved1: [u8; 8],
}
const _: () = assert!(size_of::<PropertySqe>() == SQE_SIZE);

/// The 1024 bytes of data of a Connect command as they are on the wire (Linux
/// `struct nvmf_connect_data`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct ConnectDataLayout {
    pub hostid: [u8; 16],
    pub cntlid: U16,
    pub reserved0: [u8; 238],
    /// NUL terminated.
    pub subnqn: PaddedString<256>,
    /// NUL terminated.
    pub hostnqn: PaddedString<256>,
    pub reserved1: [u8; 256],
}
const _: () = assert!(size_of::<ConnectDataLayout>() == CONNECT_DATA_SIZE);

/// Connect (FCTYPE 01h): creates the admin queue (QID 0) and a controller, or an I/O queue of
/// an existing controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectCommand {
    /// Record Format; 0 is the only one defined.
    pub recfmt: u16,
    /// Queue ID: 0 for the admin queue.
    pub qid: u16,
    /// Submission queue size, 0's based.
    pub sqsize: u16,
    /// Connect Attributes.
    pub cattr: u8,
    /// Keep Alive Timeout in milliseconds (admin queue only; 0: none).
    pub kato_ms: u32,
}

impl ConnectCommand {
    /// Entries of the queue being connected.
    pub fn queue_entries(&self) -> u32 {
        u32::from(self.sqsize) + 1
    }

    pub fn sq_flow_control_disabled(&self) -> bool {
        self.cattr & CATTR_DISABLE_SQ_FLOW_CONTROL != 0
    }
}

/// The 1024 bytes of data of a Connect command (Linux `struct nvmf_connect_data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectData {
    pub host_id: [u8; 16],
    /// FFFFh for an admin queue (dynamic model); the controller's ID for an I/O queue.
    pub cntlid: u16,
    pub subsystem_nqn: String,
    pub host_nqn: String,
}

impl ConnectData {
    /// Decodes Connect data; a malformed NQN is refused naming its offset.
    pub fn from_bytes(data: &[u8]) -> Result<ConnectData, ConnectRejection> {
        let Ok((layout, _)) = ConnectDataLayout::read_from_prefix(data) else {
            return Err(ConnectRejection::invalid_command_field(
                connect_offset::RECFMT,
                "the Connect data is shorter than 1024 bytes",
            ));
        };
        let subsystem_nqn = read_nqn(&layout.subnqn, connect_offset::SUBNQN)?;
        if subsystem_nqn.is_empty() {
            return Err(ConnectRejection::invalid_data_field(
                connect_offset::SUBNQN,
                "the subsystem NQN is empty",
            ));
        }
        Ok(ConnectData {
            host_id: layout.hostid,
            cntlid: layout.cntlid.get(),
            subsystem_nqn,
            // May be empty: SPDK's initiator sends none unless told one; whether such a host
            // may connect is the subsystem's allow list's to say (as nvmet and SPDK do).
            host_nqn: read_nqn(&layout.hostnqn, connect_offset::HOSTNQN)?,
        })
    }

    /// The 1024-byte Connect data; NQNs are NUL padded.
    pub fn to_bytes(&self) -> [u8; CONNECT_DATA_SIZE] {
        let mut layout = ConnectDataLayout::new_zeroed();
        layout.hostid = self.host_id;
        layout.cntlid = U16::new(self.cntlid);
        layout.subnqn = nqn_field(&self.subsystem_nqn);
        layout.hostnqn = nqn_field(&self.host_nqn);
        zerocopy::transmute!(layout)
    }
}

/// A NUL terminated NQN of at most 223 bytes (possibly empty) in `field`, the field at
/// `offset` of the data.
fn read_nqn(field: &PaddedString<256>, offset: u16) -> Result<String, ConnectRejection> {
    let invalid = |reason| ConnectRejection::invalid_data_field(offset, reason);
    let len = field
        .0
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| invalid("the NQN is not NUL terminated"))?;
    if len > MAX_NQN_BYTES {
        return Err(invalid("the NQN is longer than 223 bytes"));
    }
    std::str::from_utf8(&field.0[..len])
        .map(str::to_owned)
        .map_err(|_| invalid("the NQN is not UTF-8"))
}

fn nqn_field(nqn: &str) -> PaddedString<256> {
    let mut field = PaddedString::nul_padded(nqn);
    // One byte stays NUL, so that the field is always terminated.
    if let Some(last) = field.0.last_mut() {
        *last = 0;
    }
    field
}

/// Access width of a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertySize {
    Four,
    Eight,
}

impl PropertySize {
    /// ATTRIB bits 2:0: 0 for 4 bytes, 1 for 8 bytes.
    fn from_attrib(attrib: u8) -> Option<PropertySize> {
        match attrib & 0x7 {
            0 => Some(PropertySize::Four),
            1 => Some(PropertySize::Eight),
            _ => None,
        }
    }

    fn attrib(self) -> u8 {
        match self {
            PropertySize::Four => 0,
            PropertySize::Eight => 1,
        }
    }
}

/// Property Get (FCTYPE 04h): reads a controller register; the value is returned in CQE DW0
/// (and DW1 for 8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PropertyGet {
    pub size: PropertySize,
    pub offset: u32,
}

/// Property Set (FCTYPE 00h): writes a controller register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PropertySet {
    pub size: PropertySize,
    pub offset: u32,
    pub value: u64,
}

/// A decoded Fabrics command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FabricsCommand {
    Connect(ConnectCommand),
    PropertyGet(PropertyGet),
    PropertySet(PropertySet),
    /// Disconnect (FCTYPE 08h): deletes the I/O queue it is submitted on.
    Disconnect,
}

/// The Fabrics command type of a Fabrics command.
pub fn fctype_of(command: &Command) -> u8 {
    let sqe: ConnectSqe = zerocopy::transmute!(*command);
    sqe.header.fctype
}

fn property_size(attrib: u8) -> Result<PropertySize, Status> {
    PropertySize::from_attrib(attrib).ok_or(Status::invalid_field())
}

impl FabricsCommand {
    /// Decodes a command with opcode 7Fh. Unknown or unsupported command types (including
    /// authentication) give Invalid Command Opcode, as Linux nvmet does.
    pub fn parse(command: &Command) -> Result<FabricsCommand, Status> {
        if command.opcode() != FABRICS_OPCODE {
            return Err(Status::invalid_opcode());
        }
        let connect: ConnectSqe = zerocopy::transmute!(*command);
        let property: PropertySqe = zerocopy::transmute!(*command);
        match connect.header.fctype {
            fctype::CONNECT => Ok(FabricsCommand::Connect(ConnectCommand {
                recfmt: connect.recfmt.get(),
                qid: connect.qid.get(),
                sqsize: connect.sqsize.get(),
                cattr: connect.cattr,
                kato_ms: connect.kato.get(),
            })),
            fctype::PROPERTY_GET => Ok(FabricsCommand::PropertyGet(PropertyGet {
                size: property_size(property.attrib)?,
                offset: property.offset.get(),
            })),
            fctype::PROPERTY_SET => Ok(FabricsCommand::PropertySet(PropertySet {
                size: property_size(property.attrib)?,
                offset: property.offset.get(),
                value: property.value.get(),
            })),
            fctype::DISCONNECT => Ok(FabricsCommand::Disconnect),
            _ => Err(Status::invalid_opcode()),
        }
    }

    /// The submission queue entry of this command with command identifier `cid`. The data
    /// pointer (the SGL of Connect's data) is the transport's to fill in.
    pub fn to_command(&self, cid: u16) -> Command {
        let header = |fctype| FabricsHeader {
            opcode: FABRICS_OPCODE,
            cid: U16::new(cid),
            fctype,
            ..FabricsHeader::default()
        };
        let property = |fctype, size: PropertySize, offset, value| PropertySqe {
            header: header(fctype),
            attrib: size.attrib(),
            offset: U32::new(offset),
            value: U64::new(value),
            ..PropertySqe::default()
        };
        match *self {
            FabricsCommand::Connect(c) => zerocopy::transmute!(ConnectSqe {
                header: header(fctype::CONNECT),
                recfmt: U16::new(c.recfmt),
                qid: U16::new(c.qid),
                sqsize: U16::new(c.sqsize),
                cattr: c.cattr,
                kato: U32::new(c.kato_ms),
                ..ConnectSqe::default()
            }),
            FabricsCommand::PropertyGet(p) => {
                zerocopy::transmute!(property(fctype::PROPERTY_GET, p.size, p.offset, 0))
            }
            FabricsCommand::PropertySet(p) => {
                zerocopy::transmute!(property(fctype::PROPERTY_SET, p.size, p.offset, p.value))
            }
            FabricsCommand::Disconnect => zerocopy::transmute!(ConnectSqe {
                header: header(fctype::DISCONNECT),
                ..ConnectSqe::default()
            }),
        }
    }
}

/// A refused Connect: the status, and the completion's DW0, which for Connect Invalid
/// Parameters names the offending field (IATTR in bits 23:16: 0 for the entry, 1 for the
/// data; IPO in bits 15:0: its byte offset); and why, for the target's log (never sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRejection {
    pub status: Status,
    pub result: u32,
    pub reason: &'static str,
}

fn connect_failure(sc: u8) -> Status {
    Status::command_specific(sc).do_not_retry()
}

const IATTR_DATA: u32 = 1 << 16;

impl ConnectRejection {
    /// Connect Invalid Parameters for the field at byte `offset` of the command.
    pub fn invalid_command_field(offset: u16, reason: &'static str) -> Self {
        Self {
            status: connect_failure(connect_status::INVALID_PARAMETERS),
            result: u32::from(offset),
            reason,
        }
    }

    /// Connect Invalid Parameters for the field at byte `offset` of the Connect data.
    pub fn invalid_data_field(offset: u16, reason: &'static str) -> Self {
        Self {
            status: connect_failure(connect_status::INVALID_PARAMETERS),
            result: IATTR_DATA | u32::from(offset),
            reason,
        }
    }

    /// Connect Invalid Host: the host is not on the subsystem's allow list (DW0 points at the
    /// host NQN, as Linux nvmet does).
    pub fn invalid_host() -> Self {
        Self {
            status: connect_failure(connect_status::INVALID_HOST),
            result: IATTR_DATA | u32::from(connect_offset::HOSTNQN),
            reason: "the host NQN is not on the subsystem's allow list",
        }
    }

    /// Connect Incompatible Format: a record format other than 0.
    pub fn incompatible_format() -> Self {
        Self {
            status: connect_failure(connect_status::INCOMPATIBLE_FORMAT),
            result: 0,
            reason: "the record format is not 0",
        }
    }

    /// Connect Controller Busy: no controller ID is free.
    pub fn controller_busy() -> Self {
        Self {
            status: connect_failure(connect_status::CONTROLLER_BUSY),
            result: 0,
            reason: "every controller ID is in use",
        }
    }

    /// Connect Controller Busy: the host has as many controllers as the target allows one
    /// host (the count changes as its controllers go, so a later retry may succeed).
    pub fn controller_limit() -> Self {
        Self {
            status: Status::command_specific(connect_status::CONTROLLER_BUSY),
            result: 0,
            reason: "the host has as many controllers as the target allows one host",
        }
    }

    /// Whether the offending field is in the Connect data rather than the command.
    pub fn in_data(&self) -> bool {
        self.result & IATTR_DATA != 0
    }

    /// Byte offset of the offending field (IPO).
    pub fn parameter_offset(&self) -> u16 {
        self.result as u16
    }

    /// The name of the field DW0 points at, when it points at one.
    pub fn field(&self) -> Option<&'static str> {
        let points = is_connect_status(self.status, connect_status::INVALID_PARAMETERS)
            || is_connect_status(self.status, connect_status::INVALID_HOST);
        if !points {
            return None;
        }
        let offset = self.parameter_offset();
        let name = if self.in_data() {
            match offset {
                connect_offset::HOSTID => "host ID",
                connect_offset::CNTLID => "controller ID",
                connect_offset::SUBNQN => "subsystem NQN",
                connect_offset::HOSTNQN => "host NQN",
                _ => "Connect data",
            }
        } else {
            match offset {
                connect_offset::RECFMT => "RECFMT",
                connect_offset::QID => "QID",
                connect_offset::SQSIZE => "SQSIZE",
                connect_offset::CATTR => "CATTR",
                connect_offset::KATO => "KATO",
                _ => "Connect command",
            }
        };
        Some(name)
    }

    /// The status by its Connect name (these command specific codes mean other things for
    /// other commands, so `Status` alone cannot name them).
    fn status_name(&self) -> Option<&'static str> {
        if self.status.sct() != sct::COMMAND_SPECIFIC {
            return None;
        }
        Some(match self.status.sc() {
            connect_status::INCOMPATIBLE_FORMAT => "Connect Incompatible Format",
            connect_status::CONTROLLER_BUSY => "Connect Controller Busy",
            connect_status::INVALID_PARAMETERS => "Connect Invalid Parameters",
            connect_status::RESTART_DISCOVERY => "Connect Restart Discovery",
            connect_status::INVALID_HOST => "Connect Invalid Host",
            _ => return None,
        })
    }
}

/// E.g. `Connect Invalid Host (host NQN, data byte 512): the host NQN is not on the
/// subsystem's allow list`.
impl fmt::Display for ConnectRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status_name() {
            Some(name) => write!(f, "{name}")?,
            None => write!(f, "{}", self.status)?,
        }
        if let Some(field) = self.field() {
            let place = if self.in_data() { "data" } else { "command" };
            write!(f, " ({field}, {place} byte {})", self.parameter_offset())?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Whether `status` is one of the Connect command specific codes with code `sc`.
pub fn is_connect_status(status: Status, sc: u8) -> bool {
    status.sct() == sct::COMMAND_SPECIFIC && status.sc() == sc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::generic;

    #[test]
    fn connect_round_trips_at_linux_offsets() {
        let connect = FabricsCommand::Connect(ConnectCommand {
            recfmt: 0,
            qid: 3,
            sqsize: 127,
            cattr: CATTR_DISABLE_SQ_FLOW_CONTROL,
            kato_ms: 0,
        });
        let command = connect.to_command(0x1234);
        let bytes = command.to_bytes();
        assert_eq!(bytes[0], 0x7f);
        assert_eq!(&bytes[2..4], &[0x34, 0x12]);
        assert_eq!(bytes[4], fctype::CONNECT);
        assert_eq!(&bytes[40..42], &[0, 0], "recfmt");
        assert_eq!(&bytes[42..44], &[3, 0], "qid");
        assert_eq!(&bytes[44..46], &[127, 0], "sqsize");
        assert_eq!(bytes[46], 4, "cattr");
        assert_eq!(&bytes[48..52], &[0, 0, 0, 0], "kato");
        let parsed = FabricsCommand::parse(&Command::from_bytes(&bytes)).unwrap();
        assert_eq!(parsed, connect);

        let admin = ConnectCommand {
            recfmt: 0,
            qid: 0,
            sqsize: 31,
            cattr: 0,
            kato_ms: 120_000,
        };
        let bytes = FabricsCommand::Connect(admin).to_command(1).to_bytes();
        assert_eq!(&bytes[48..52], &120_000u32.to_le_bytes());
        let FabricsCommand::Connect(back) =
            FabricsCommand::parse(&Command::from_bytes(&bytes)).unwrap()
        else {
            panic!("not a connect");
        };
        assert_eq!(back, admin);
        assert_eq!(back.queue_entries(), 32);
        assert!(!back.sq_flow_control_disabled());
    }

    #[test]
    fn connect_data_round_trips_at_linux_offsets() {
        let data = ConnectData {
            host_id: *b"0123456789abcdef",
            cntlid: 0xffff,
            subsystem_nqn: "nqn.2026-11.io.vfnvme:ssd0".into(),
            host_nqn: "nqn.2014-08.org.nvmexpress:uuid:1".into(),
        };
        let bytes = data.to_bytes();
        assert_eq!(&bytes[0..16], b"0123456789abcdef");
        assert_eq!(&bytes[16..18], &[0xff, 0xff]);
        assert!(bytes[18..256].iter().all(|&b| b == 0));
        assert_eq!(&bytes[256..282], b"nqn.2026-11.io.vfnvme:ssd0");
        assert_eq!(bytes[282], 0);
        assert_eq!(&bytes[512..545], b"nqn.2014-08.org.nvmexpress:uuid:1");
        assert!(bytes[545..].iter().all(|&b| b == 0));
        assert_eq!(ConnectData::from_bytes(&bytes).unwrap(), data);
    }

    #[test]
    fn malformed_connect_data_names_the_field() {
        let good = ConnectData {
            host_id: [1; 16],
            cntlid: 1,
            subsystem_nqn: "nqn.s".into(),
            host_nqn: "nqn.h".into(),
        }
        .to_bytes();
        let mut unterminated = good;
        unterminated[512..768].fill(b'a');
        let rejection = ConnectData::from_bytes(&unterminated).unwrap_err();
        assert!(is_connect_status(
            rejection.status,
            connect_status::INVALID_PARAMETERS
        ));
        assert!(rejection.status.dnr());
        assert!(rejection.in_data());
        assert_eq!(rejection.parameter_offset(), 512);
        assert_eq!(rejection.result, 0x0001_0200);

        let mut empty_subnqn = good;
        empty_subnqn[256..512].fill(0);
        assert_eq!(
            ConnectData::from_bytes(&empty_subnqn).unwrap_err().result,
            0x0001_0100
        );
        let mut too_long = good;
        too_long[512..512 + 224].fill(b'a');
        assert_eq!(
            ConnectData::from_bytes(&too_long).unwrap_err().result,
            0x0001_0200
        );
        let mut not_utf8 = good;
        not_utf8[256] = 0xff;
        assert_eq!(
            ConnectData::from_bytes(&not_utf8)
                .unwrap_err()
                .parameter_offset(),
            256
        );
        assert!(ConnectData::from_bytes(&good[..1000]).is_err());
    }

    #[test]
    fn an_empty_host_nqn_is_decoded_for_the_allow_list_to_judge() {
        let data = ConnectData {
            host_id: [1; 16],
            cntlid: CNTLID_DYNAMIC,
            subsystem_nqn: "nqn.s".into(),
            host_nqn: String::new(),
        };
        assert_eq!(ConnectData::from_bytes(&data.to_bytes()).unwrap(), data);
    }

    #[test]
    fn properties_round_trip() {
        let get = FabricsCommand::PropertyGet(PropertyGet {
            size: PropertySize::Eight,
            offset: 0,
        });
        let bytes = get.to_command(7).to_bytes();
        assert_eq!((bytes[0], bytes[4], bytes[40]), (0x7f, 0x04, 1));
        assert_eq!(&bytes[44..48], &[0, 0, 0, 0]);
        assert_eq!(
            FabricsCommand::parse(&Command::from_bytes(&bytes)).unwrap(),
            get
        );

        let set = FabricsCommand::PropertySet(PropertySet {
            size: PropertySize::Four,
            offset: 0x14,
            value: 0x0046_0001,
        });
        let bytes = set.to_command(8).to_bytes();
        assert_eq!((bytes[4], bytes[40]), (0x00, 0));
        assert_eq!(&bytes[44..48], &[0x14, 0, 0, 0]);
        assert_eq!(&bytes[48..56], &[1, 0, 0x46, 0, 0, 0, 0, 0]);
        assert_eq!(
            FabricsCommand::parse(&Command::from_bytes(&bytes)).unwrap(),
            set
        );

        let disconnect = FabricsCommand::Disconnect.to_command(9);
        assert_eq!(disconnect.to_bytes()[4], 0x08);
        assert_eq!(
            FabricsCommand::parse(&disconnect).unwrap(),
            FabricsCommand::Disconnect
        );
    }

    #[test]
    fn unknown_commands_are_refused() {
        let mut auth = Command::new(FABRICS_OPCODE, u32::from(fctype::AUTHENTICATION_SEND));
        assert_eq!(
            FabricsCommand::parse(&auth).unwrap_err().sc(),
            generic::INVALID_OPCODE
        );
        auth.nsid = u32::from(fctype::PROPERTY_GET);
        auth.cdw10 = 2;
        assert_eq!(
            FabricsCommand::parse(&auth).unwrap_err().sc(),
            generic::INVALID_FIELD
        );
        let identify = Command::new(0x06, 0);
        assert_eq!(
            FabricsCommand::parse(&identify).unwrap_err().sc(),
            generic::INVALID_OPCODE
        );
    }

    #[test]
    fn connect_status_values_match_the_spec() {
        let codes = [
            (ConnectRejection::incompatible_format(), 0x180),
            (ConnectRejection::controller_busy(), 0x181),
            (
                ConnectRejection::invalid_command_field(connect_offset::QID, "r"),
                0x182,
            ),
            (ConnectRejection::invalid_host(), 0x184),
        ];
        for (rejection, raw) in codes {
            assert_eq!(rejection.status.raw() & 0x7ff, raw);
            assert!(rejection.status.dnr());
        }
        assert_eq!(ConnectRejection::invalid_command_field(42, "r").result, 42);
        assert_eq!(connect_status::RESTART_DISCOVERY, 0x83);
    }

    #[test]
    fn rejections_say_the_status_the_field_and_why() {
        assert_eq!(
            ConnectRejection::invalid_data_field(connect_offset::HOSTID, "another host ID")
                .to_string(),
            "Connect Invalid Parameters (host ID, data byte 0): another host ID"
        );
        assert_eq!(
            ConnectRejection::invalid_command_field(connect_offset::SQSIZE, "too deep").to_string(),
            "Connect Invalid Parameters (SQSIZE, command byte 44): too deep"
        );
        assert_eq!(
            ConnectRejection::invalid_host().to_string(),
            "Connect Invalid Host (host NQN, data byte 512): the host NQN is not on the \
             subsystem's allow list"
        );
        assert_eq!(
            ConnectRejection::controller_busy().to_string(),
            "Connect Controller Busy: every controller ID is in use"
        );
    }
}
