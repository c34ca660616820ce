//! Asynchronous events as a host sees them: the notices it enables (Set Features, Asynchronous
//! Event Configuration), an Asynchronous Event Request armed on its admin queue, and the DW0
//! it completes with.

use vfnvme_host::Host;
use vfnvme_spec::{admin_opcode, feature, Command};

/// Enables the notices `aec` (AEC bits, e.g. 8: Namespace Attribute, 31: Discovery Log
/// Page Change) on `host`'s controller.
pub fn enable_events(host: &mut Host, aec: u32) {
    let enable = Command {
        cdw10: u32::from(feature::ASYNC_EVENT_CONFIG),
        cdw11: aec,
        ..Command::new(admin_opcode::SET_FEATURES, 0)
    };
    host.admin_queue()
        .execute(enable, &[], 0, "Set Features")
        .unwrap();
}

/// Sends an Asynchronous Event Request; returns its command id.
pub fn arm_event(host: &mut Host) -> u16 {
    host.admin_queue()
        .submit(
            Command::new(admin_opcode::ASYNC_EVENT_REQUEST, 0),
            &[],
            0,
            1,
        )
        .unwrap()
}

/// Waits for the completion of AER `cid`: its DW0.
pub fn event(host: &mut Host, cid: u16) -> u32 {
    let mut result = None;
    while result.is_none() {
        host.admin_queue()
            .poll(true, |done, _| {
                if done.cid == cid {
                    assert!(done.status.is_success(), "AER: {}", done.status);
                    result = Some(done.result);
                }
            })
            .unwrap();
    }
    result.unwrap()
}
