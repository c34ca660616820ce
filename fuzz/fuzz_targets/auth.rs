//! DH-HMAC-CHAP on one queue: arbitrary Authentication Send messages and Receive allocation
//! lengths against a fresh `ControllerAuth` per input (the API the connection code is to
//! call), and `Message::decode` on every message sent.
//!
//! Input: a settings byte (controller key or not, ffdhe2048 offered or not), then records;
//! see `vfnvme_fuzz::auth_input`.
//!
//! Invariants: a message that decodes encodes to bytes that decode to the same message; a
//! Receive fails (Invalid Field) exactly when AL < 8, else returns at most AL bytes that decode
//! to a Challenge, Success1 or Failure1, and asks to close the queue exactly for a Failure1;
//! after a close every Receive is a Failure1 again; no input ever authenticates (none can know
//! the random challenge it would have to answer).

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use vfnvme_auth::ControllerAuth;
use vfnvme_fuzz::auth_input::{
    controller_secret, host_secret, next_record, policy, Op, CONTROLLER_KEY, HOST_NQN,
    SUBSYSTEM_NQN,
};
use vfnvme_spec::auth::Message;
use vfnvme_spec::status::generic;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut records)) = data.split_first() else {
        return;
    };
    let host = host_secret();
    let ctrl_key = controller_secret();
    let mut ctrl = ControllerAuth::new(
        HOST_NQN,
        SUBSYSTEM_NQN,
        &host,
        (settings & CONTROLLER_KEY != 0).then_some(&ctrl_key),
        policy(settings),
    );
    let mut closed = false;
    while let Some((op, rest)) = next_record(records) {
        records = rest;
        match op {
            Op::Send(bytes) => {
                if let Ok(message) = Message::decode(bytes) {
                    let again = message.to_bytes();
                    assert_eq!(Message::decode(&again).as_ref(), Ok(&message));
                }
                ctrl.send(bytes);
            }
            Op::Receive(al) => match ctrl.receive(al) {
                Err(status) => {
                    assert!(al < 8);
                    assert_eq!((status.sct(), status.sc()), (0, generic::INVALID_FIELD));
                }
                Ok(received) => {
                    assert!(al >= 8 && received.data.len() <= al as usize);
                    let message = Message::decode(&received.data).expect("a valid message");
                    let failure = matches!(message, Message::Failure1(_));
                    assert!(matches!(
                        message,
                        Message::Challenge(_) | Message::Success1(_) | Message::Failure1(_)
                    ));
                    assert_eq!(received.close, failure);
                    assert!(!closed || failure, "a closed exchange answered again");
                    closed |= received.close;
                }
            },
        }
        assert!(!ctrl.is_authenticated(), "an input authenticated");
    }
});
