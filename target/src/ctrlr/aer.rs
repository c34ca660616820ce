//! Asynchronous events (as Linux nvmet's `nvmet_add_async_event`): Asynchronous Event
//! Requests held in at most [`AER_LIMIT`] slots, the Namespace Attribute Changed event that
//! completes one when a drive goes away, and the Discovery Log Page Change event of discovery
//! controllers when subsystems, their hosts or listeners change. Its own file because events
//! arrive from another thread (the drive's removal, the management socket) and complete
//! commands the admin queue's connection sends.

use vfnvme_spec::log_page::log_id;
use vfnvme_spec::status::command_specific;
use vfnvme_spec::{Command, Status};

use super::controller::{lock, AdminState, FabricController, AER_LIMIT};
use super::response::{AdminOutcome, AdminResponse, AerCompletion};

/// Events kept for Asynchronous Event Requests the host has not sent yet.
const MAX_QUEUED_EVENTS: usize = 16;

/// Asynchronous event (CQE DW0): type Notice (bits 2:0), information Namespace Attribute
/// Changed (bits 15:8, code 0), log page Changed Namespace List (bits 23:16).
const EVENT_NAMESPACE_ATTRIBUTE_CHANGED: u32 =
    0x02 | ((log_id::CHANGED_NAMESPACE_LIST as u32) << 16);
/// Asynchronous Event Configuration bit enabling Namespace Attribute Notices.
pub(super) const AEC_NAMESPACE_ATTRIBUTE_NOTICES: u32 = 1 << 8;
/// Asynchronous event (CQE DW0): type Notice, information Discovery Log Page Change (F0h),
/// log page Discovery (70h).
const EVENT_DISCOVERY_LOG_CHANGED: u32 = 0x02 | (0xf0 << 8) | ((log_id::DISCOVERY as u32) << 16);
/// Asynchronous Event Configuration bit enabling Discovery Log Page Change Notices.
pub(super) const AEC_DISCOVERY_LOG_CHANGE_NOTICES: u32 = 1 << 31;

/// Which notice an event is, for its enable bit and its mask.
#[derive(Clone, Copy)]
enum Notice {
    NamespaceAttribute,
    DiscoveryLog,
}

impl FabricController {
    /// An Asynchronous Event Request: completed at once by a queued event, else held.
    pub(super) fn execute_async_event_request(
        &self,
        state: &mut AdminState,
        command: &Command,
    ) -> AdminOutcome {
        if let Some(event) = state.queued_events.pop_front() {
            return AdminOutcome::Respond(AdminResponse::success(event));
        }
        if state.held_aers.len() >= AER_LIMIT {
            return AdminOutcome::Respond(AdminResponse::failure(
                Status::command_specific(command_specific::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED)
                    .do_not_retry(),
            ));
        }
        state.held_aers.push(command.cid());
        AdminOutcome::Held
    }

    /// Command IDs of the held Asynchronous Event Requests, which the caller completes (or
    /// drops with the connection) at teardown or after the host disabled the controller.
    pub fn take_pending_aers(&self) -> Vec<u16> {
        std::mem::take(&mut lock(&self.state).held_aers)
    }

    /// Namespace `nsid` changed (its drive went away): notes it, and completes a held AER for
    /// the admin queue's connection to send (see [`take_completed_aers`](Self::take_completed_aers)).
    pub fn post_namespace_changed(&self, nsid: u32) {
        if let Some(completion) = self.notify_namespace_changed(nsid) {
            lock(&self.state).completed_aers.push(completion);
        }
    }

    /// What the discovery log lists changed (a discovery controller): completes a held AER
    /// with the Discovery Log Page Change event, for the admin queue's connection to send at
    /// its next tick, if the host enabled those notices and has read the log since the last.
    pub fn post_discovery_changed(&self) {
        let mut state = lock(&self.state);
        if let Some(completion) = raise(&mut state, Notice::DiscoveryLog) {
            state.completed_aers.push(completion);
        }
    }

    /// AERs completed by [`post_namespace_changed`](Self::post_namespace_changed), to send now.
    pub fn take_completed_aers(&self) -> Vec<AerCompletion> {
        let mut state = lock(&self.state);
        if state.completed_aers.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut state.completed_aers)
    }

    /// Records that namespace `nsid` changed. If the host enabled Namespace Attribute Notices
    /// and has read the previous change, returns the held AER to complete with the event
    /// (or keeps the event for the next AER).
    pub fn notify_namespace_changed(&self, nsid: u32) -> Option<AerCompletion> {
        let mut state = lock(&self.state);
        if !state.changed_namespaces.contains(&nsid) && state.changed_namespaces.len() <= 1024 {
            state.changed_namespaces.push(nsid);
        }
        raise(&mut state, Notice::NamespaceAttribute)
    }
}

/// Raises `notice` if the host enabled it and it is not masked (the host has not read its log
/// since the last one): masks it, and returns the held AER to complete with it, or keeps the
/// event for the next AER.
fn raise(state: &mut AdminState, notice: Notice) -> Option<AerCompletion> {
    let (enable, masked, event) = match notice {
        Notice::NamespaceAttribute => (
            AEC_NAMESPACE_ATTRIBUTE_NOTICES,
            &mut state.namespace_notices_masked,
            EVENT_NAMESPACE_ATTRIBUTE_CHANGED,
        ),
        Notice::DiscoveryLog => (
            AEC_DISCOVERY_LOG_CHANGE_NOTICES,
            &mut state.discovery_notices_masked,
            EVENT_DISCOVERY_LOG_CHANGED,
        ),
    };
    if state.async_event_config & enable == 0 || *masked {
        return None;
    }
    *masked = true;
    if state.held_aers.is_empty() {
        if state.queued_events.len() < MAX_QUEUED_EVENTS {
            state.queued_events.push_back(event);
        }
        return None;
    }
    let cid = state.held_aers.remove(0);
    Some(AerCompletion {
        cid,
        response: AdminResponse::success(event),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::test_support::*;
    use super::*;
    use vfnvme_spec::status::sct;
    use vfnvme_spec::{admin_opcode, feature};

    fn aer(cid: u16) -> Command {
        let mut command = Command::new(admin_opcode::ASYNC_EVENT_REQUEST, 0);
        command.set_cid(cid);
        command
    }

    #[test]
    fn aers_are_held_up_to_the_limit_and_complete_on_namespace_change() {
        let controller = enabled(&registry());
        for cid in 10..14 {
            assert_eq!(
                controller.execute_admin(&aer(cid), Instant::now()),
                AdminOutcome::Held
            );
        }
        let over = respond(&controller, aer(14));
        assert_eq!(over.status.sct(), sct::COMMAND_SPECIFIC);
        assert_eq!(
            over.status.sc(),
            command_specific::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED
        );

        assert_eq!(
            controller.notify_namespace_changed(1),
            None,
            "notices not enabled yet"
        );
        let enable = features(
            admin_opcode::SET_FEATURES,
            feature::ASYNC_EVENT_CONFIG,
            1 << 8,
        );
        assert!(respond(&controller, enable).status.is_success());
        let completion = controller.notify_namespace_changed(3).unwrap();
        assert_eq!(completion.cid, 10);
        assert_eq!(completion.response.result, 0x0004_0002);
        assert_eq!(
            controller.notify_namespace_changed(1),
            None,
            "masked until the log is read"
        );

        let log = get_log(&controller, log_id::CHANGED_NAMESPACE_LIST, 4096, 0);
        assert_eq!(&log.data[..12], &[1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        let empty = get_log(&controller, log_id::CHANGED_NAMESPACE_LIST, 4096, 0);
        assert!(empty.data.iter().all(|&b| b == 0));
        assert_eq!(controller.notify_namespace_changed(3).unwrap().cid, 11);
        assert_eq!(controller.take_pending_aers(), vec![12, 13]);
        assert!(controller.take_pending_aers().is_empty());
    }

    #[test]
    fn events_wait_for_the_next_aer() {
        let controller = enabled(&registry());
        respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::ASYNC_EVENT_CONFIG,
                1 << 8,
            ),
        );
        assert_eq!(controller.notify_namespace_changed(1), None);
        assert_eq!(respond(&controller, aer(5)).result, 0x0004_0002);
    }
}
