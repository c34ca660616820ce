//! The completion status field (NVMe base spec, "Status Field Definition").

use std::fmt;

/// Status field of a completion, without the phase tag: SC (7:0), SCT (10:8), CRD (12:11),
/// More (13), DNR (14).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(u16);

/// Status code types.
pub mod sct {
    pub const GENERIC: u8 = 0;
    pub const COMMAND_SPECIFIC: u8 = 1;
    pub const MEDIA: u8 = 2;
    pub const PATH: u8 = 3;
    pub const VENDOR: u8 = 7;
}

/// Generic command status codes (SCT 0).
pub mod generic {
    pub const SUCCESS: u8 = 0x00;
    pub const INVALID_OPCODE: u8 = 0x01;
    pub const INVALID_FIELD: u8 = 0x02;
    pub const COMMAND_ID_CONFLICT: u8 = 0x03;
    pub const DATA_TRANSFER_ERROR: u8 = 0x04;
    pub const POWER_LOSS_ABORT: u8 = 0x05;
    pub const INTERNAL_ERROR: u8 = 0x06;
    pub const ABORT_REQUESTED: u8 = 0x07;
    pub const SQ_DELETION_ABORT: u8 = 0x08;
    pub const FUSED_FAIL: u8 = 0x09;
    pub const FUSED_MISSING: u8 = 0x0a;
    pub const INVALID_NAMESPACE_OR_FORMAT: u8 = 0x0b;
    pub const COMMAND_SEQUENCE_ERROR: u8 = 0x0c;
    pub const INVALID_SGL_DESCRIPTOR: u8 = 0x0d;
    pub const DATA_SGL_LENGTH_INVALID: u8 = 0x0f;
    pub const INVALID_PRP_OFFSET: u8 = 0x13;
    /// The status of a command whose data digest did not match (NVMe/TCP).
    pub const TRANSIENT_TRANSPORT_ERROR: u8 = 0x22;
    pub const LBA_OUT_OF_RANGE: u8 = 0x80;
    pub const CAPACITY_EXCEEDED: u8 = 0x81;
    pub const NAMESPACE_NOT_READY: u8 = 0x82;
}

/// Command specific status codes (SCT 1).
pub mod command_specific {
    pub const COMPLETION_QUEUE_INVALID: u8 = 0x00;
    pub const INVALID_QUEUE_IDENTIFIER: u8 = 0x01;
    pub const INVALID_QUEUE_SIZE: u8 = 0x02;
    pub const ABORT_COMMAND_LIMIT_EXCEEDED: u8 = 0x03;
    pub const ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED: u8 = 0x05;
    pub const INVALID_LOG_PAGE: u8 = 0x09;
    pub const INVALID_QUEUE_DELETION: u8 = 0x0c;
    pub const FEATURE_NOT_SAVEABLE: u8 = 0x0d;
    pub const CONFLICTING_ATTRIBUTES: u8 = 0x80;
    /// A command on a queue that has not authenticated yet (Linux `NVME_SC_AUTH_REQUIRED`
    /// 191h, SPDK `SPDK_NVMF_FABRIC_SC_AUTH_REQUIRED`).
    pub const AUTHENTICATION_REQUIRED: u8 = 0x91;
}

/// Media and data integrity errors (SCT 2).
pub mod media {
    pub const WRITE_FAULT: u8 = 0x80;
    pub const UNRECOVERED_READ_ERROR: u8 = 0x81;
    pub const END_TO_END_GUARD_CHECK_ERROR: u8 = 0x82;
    pub const COMPARE_FAILURE: u8 = 0x85;
    pub const ACCESS_DENIED: u8 = 0x86;
    pub const DEALLOCATED_OR_UNWRITTEN_BLOCK: u8 = 0x87;
}

const DNR: u16 = 1 << 14;

impl Status {
    pub const SUCCESS: Status = Status(0);

    pub const fn from_raw(raw: u16) -> Self {
        Self(raw & 0x7fff)
    }

    pub const fn new(sct: u8, sc: u8) -> Self {
        Self(((sct as u16 & 0x7) << 8) | sc as u16)
    }

    pub const fn generic(sc: u8) -> Self {
        Self::new(sct::GENERIC, sc)
    }

    pub const fn command_specific(sc: u8) -> Self {
        Self::new(sct::COMMAND_SPECIFIC, sc)
    }

    // The statuses several places report. The errors below carry Do Not Retry: the same
    // command fails the same way again.

    /// Invalid Field in Command, with DNR.
    pub const fn invalid_field() -> Self {
        Self::generic(generic::INVALID_FIELD).do_not_retry()
    }

    /// Invalid Command Opcode, with DNR.
    pub const fn invalid_opcode() -> Self {
        Self::generic(generic::INVALID_OPCODE).do_not_retry()
    }

    /// Command Sequence Error (e.g. I/O before the controller is ready), with DNR.
    pub const fn command_sequence_error() -> Self {
        Self::generic(generic::COMMAND_SEQUENCE_ERROR).do_not_retry()
    }

    /// Invalid Namespace or Format, with DNR.
    pub const fn invalid_namespace() -> Self {
        Self::generic(generic::INVALID_NAMESPACE_OR_FORMAT).do_not_retry()
    }

    /// LBA Out of Range, with DNR.
    pub const fn lba_out_of_range() -> Self {
        Self::generic(generic::LBA_OUT_OF_RANGE).do_not_retry()
    }

    /// Namespace Not Ready, retryable: the namespace may be back soon. Add
    /// [`do_not_retry`](Self::do_not_retry) where it will not (a removed drive).
    pub const fn namespace_not_ready() -> Self {
        Self::generic(generic::NAMESPACE_NOT_READY)
    }

    /// Authentication Required (SCT 1h, SC 91h), with DNR: a command other than the Fabrics
    /// ones on a queue that has not completed its DH-HMAC-CHAP exchange (nvmet
    /// `nvmet_check_auth_status`: `NVME_SC_AUTH_REQUIRED | NVME_SC_DNR`).
    pub const fn authentication_required() -> Self {
        Self::command_specific(command_specific::AUTHENTICATION_REQUIRED).do_not_retry()
    }

    /// The same status with Do Not Retry set.
    pub const fn do_not_retry(self) -> Self {
        Self(self.0 | DNR)
    }

    pub const fn raw(self) -> u16 {
        self.0
    }

    pub const fn sct(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }

    pub const fn sc(self) -> u8 {
        self.0 as u8
    }

    pub const fn dnr(self) -> bool {
        self.0 & DNR != 0
    }

    pub const fn is_success(self) -> bool {
        self.sct() == sct::GENERIC && self.sc() == generic::SUCCESS
    }

    /// Whether two statuses have the same type and code, ignoring DNR/More/CRD.
    pub const fn same_code(self, other: Status) -> bool {
        self.sct() == other.sct() && self.sc() == other.sc()
    }

    fn description(self) -> &'static str {
        match (self.sct(), self.sc()) {
            (sct::GENERIC, generic::SUCCESS) => "success",
            (sct::GENERIC, generic::INVALID_OPCODE) => "invalid command opcode",
            (sct::GENERIC, generic::INVALID_FIELD) => "invalid field in command",
            (sct::GENERIC, generic::COMMAND_ID_CONFLICT) => "command id conflict",
            (sct::GENERIC, generic::DATA_TRANSFER_ERROR) => "data transfer error",
            (sct::GENERIC, generic::INTERNAL_ERROR) => "internal error",
            (sct::GENERIC, generic::ABORT_REQUESTED) => "command abort requested",
            (sct::GENERIC, generic::SQ_DELETION_ABORT) => "command aborted due to SQ deletion",
            (sct::GENERIC, generic::INVALID_NAMESPACE_OR_FORMAT) => "invalid namespace or format",
            (sct::GENERIC, generic::COMMAND_SEQUENCE_ERROR) => "command sequence error",
            (sct::GENERIC, generic::INVALID_PRP_OFFSET) => "invalid PRP offset",
            (sct::GENERIC, generic::LBA_OUT_OF_RANGE) => "LBA out of range",
            (sct::GENERIC, generic::CAPACITY_EXCEEDED) => "capacity exceeded",
            (sct::GENERIC, generic::NAMESPACE_NOT_READY) => "namespace not ready",
            (sct::COMMAND_SPECIFIC, command_specific::COMPLETION_QUEUE_INVALID) => {
                "completion queue invalid"
            }
            (sct::COMMAND_SPECIFIC, command_specific::INVALID_QUEUE_IDENTIFIER) => {
                "invalid queue identifier"
            }
            (sct::COMMAND_SPECIFIC, command_specific::INVALID_QUEUE_SIZE) => "invalid queue size",
            (sct::COMMAND_SPECIFIC, command_specific::ABORT_COMMAND_LIMIT_EXCEEDED) => {
                "abort command limit exceeded"
            }
            (sct::COMMAND_SPECIFIC, command_specific::INVALID_LOG_PAGE) => "invalid log page",
            (sct::COMMAND_SPECIFIC, command_specific::INVALID_QUEUE_DELETION) => {
                "invalid queue deletion"
            }
            (sct::MEDIA, media::WRITE_FAULT) => "write fault",
            (sct::MEDIA, media::UNRECOVERED_READ_ERROR) => "unrecovered read error",
            (sct::MEDIA, media::COMPARE_FAILURE) => "compare failure",
            (sct::MEDIA, media::ACCESS_DENIED) => "access denied",
            _ => "unknown status",
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (sct {:#x}, sc {:#04x}{})",
            self.description(),
            self.sct(),
            self.sc(),
            if self.dnr() { ", dnr" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_per_spec() {
        // LBA out of range with DNR, as a controller reports it.
        let status = Status::from_raw(0x4080);
        assert_eq!(status.sct(), sct::GENERIC);
        assert_eq!(status.sc(), generic::LBA_OUT_OF_RANGE);
        assert!(status.dnr());
        assert!(status.same_code(Status::generic(generic::LBA_OUT_OF_RANGE)));
        assert!(!status.is_success());
        assert_eq!(status, Status::lba_out_of_range());
        assert_eq!(Status::invalid_field().raw(), 0x4002);
        assert!(!Status::namespace_not_ready().dnr());
        let cs = Status::command_specific(command_specific::INVALID_QUEUE_IDENTIFIER);
        assert_eq!(cs.raw(), 0x0101);
        assert_eq!(
            cs.to_string(),
            "invalid queue identifier (sct 0x1, sc 0x01)"
        );
    }
}
