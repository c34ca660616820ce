//! What the controller answers: the completion of an admin command ([`AdminResponse`]), whether
//! to send it now or hold the command ([`AdminOutcome`]), and a held Asynchronous Event Request
//! completed later ([`AerCompletion`]). A leaf of its own: every command file returns these,
//! and the connection code reads them.

use vfnvme_spec::fabrics::ConnectRejection;
use vfnvme_spec::Status;

/// The completion of an admin command: status, CQE DW0 and DW1, and the data to send to the
/// host (Identify: 4096 bytes; Get Log Page: exactly the length asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: Status,
    pub result: u32,
    pub dw1: u32,
    pub data: Vec<u8>,
}

impl AdminResponse {
    pub fn success(result: u32) -> Self {
        Self {
            status: Status::SUCCESS,
            result,
            dw1: 0,
            data: Vec::new(),
        }
    }

    pub fn failure(status: Status) -> Self {
        Self {
            status,
            ..Self::success(0)
        }
    }

    pub(super) fn with_data(data: Vec<u8>) -> Self {
        Self {
            data,
            ..Self::success(0)
        }
    }
}

impl From<ConnectRejection> for AdminResponse {
    fn from(rejection: ConnectRejection) -> Self {
        Self {
            status: rejection.status,
            result: rejection.result,
            dw1: 0,
            data: Vec::new(),
        }
    }
}

impl From<Result<AdminResponse, Status>> for AdminResponse {
    fn from(result: Result<AdminResponse, Status>) -> Self {
        result.unwrap_or_else(AdminResponse::failure)
    }
}

/// What to do with an admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    /// Send this completion now.
    Respond(AdminResponse),
    /// An Asynchronous Event Request the controller keeps until an event: its completion comes
    /// from `FabricController::notify_namespace_changed` or, at teardown,
    /// `FabricController::take_pending_aers`.
    Held,
}

/// A held Asynchronous Event Request completed by an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AerCompletion {
    pub cid: u16,
    pub response: AdminResponse,
}
