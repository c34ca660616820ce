//! The host and controller state machines against each other, in memory: what a queue's
//! Authentication Send / Receive commands would carry.

use std::time::{Duration, Instant};

use vfnvme_auth::{
    ControllerAuth, ControllerPolicy, DhGroupId, DhchapSecret, HashId, HostAuth, HostAuthError,
};
use vfnvme_spec::auth::{Failure, FailureReason, Message};

const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
const SUBSYSTEM: &str = "nqn.2024-01.io.vfnvme:ram";
const AL: u32 = 4096;

fn secret(byte: u8, transform: Option<HashId>) -> DhchapSecret {
    DhchapSecret::new(&[byte; 32], transform).unwrap()
}

fn controller(host_secret: &DhchapSecret, ctrl: Option<&DhchapSecret>) -> ControllerAuth {
    ControllerAuth::new(
        HOST,
        SUBSYSTEM,
        host_secret,
        ctrl,
        ControllerPolicy::default(),
    )
}

fn host(host_secret: &DhchapSecret, ctrl: Option<&DhchapSecret>, groups: &[DhGroupId]) -> HostAuth {
    HostAuth::new(
        HOST,
        SUBSYSTEM,
        host_secret,
        ctrl,
        &[HashId::Sha256, HashId::Sha384],
        groups,
        7,
    )
}

/// Runs the exchange as the Linux host would; the host's result, and what the controller says.
fn exchange(host: &mut HostAuth, ctrl: &mut ControllerAuth) -> Result<(), HostAuthError> {
    ctrl.send(&host.negotiate());
    let challenge = ctrl.receive(AL).unwrap();
    let reply = match host.challenge(&challenge.data) {
        Ok(reply) => reply,
        Err(e) => {
            if let HostAuthError::Refusing { failure2, .. } = &e {
                ctrl.send(failure2);
            }
            return Err(e);
        }
    };
    ctrl.send(&reply);
    let success1 = ctrl.receive(AL).unwrap();
    match host.success1(&success1.data) {
        Ok(Some(success2)) => {
            ctrl.send(&success2);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            if let HostAuthError::Refusing { failure2, .. } = &e {
                ctrl.send(failure2);
            }
            Err(e)
        }
    }
}

#[test]
fn the_right_key_authenticates_with_every_dh_group() {
    for group in DhGroupId::ALL {
        let key = secret(1, Some(HashId::Sha256));
        let mut ctrl = controller(&key, None);
        let mut h = host(&key, None, &[group]);
        exchange(&mut h, &mut ctrl).unwrap();
        assert!(ctrl.is_authenticated(), "{group}");
        assert!(ctrl.failure().is_none());
    }
}

#[test]
fn bidirectional_authentication_succeeds_with_both_keys() {
    let (key, ctrl_key) = (secret(1, None), secret(2, Some(HashId::Sha384)));
    let mut ctrl = controller(&key, Some(&ctrl_key));
    let mut h = host(
        &key,
        Some(&ctrl_key),
        &[DhGroupId::Ffdhe2048, DhGroupId::Null],
    );
    exchange(&mut h, &mut ctrl).unwrap();
    assert!(ctrl.is_authenticated());
}

#[test]
fn a_wrong_host_key_is_refused_with_failure1_failed() {
    let mut ctrl = controller(&secret(1, None), None);
    let mut h = host(&secret(9, None), None, &[DhGroupId::Null]);
    ctrl.send(&h.negotiate());
    let challenge = ctrl.receive(AL).unwrap();
    ctrl.send(&h.challenge(&challenge.data).unwrap());
    let answer = ctrl.receive(AL).unwrap();
    assert!(answer.close);
    assert_eq!(
        Message::decode(&answer.data).unwrap(),
        Message::Failure1(Failure::new(7, FailureReason::Failed))
    );
    assert_eq!(
        h.success1(&answer.data).unwrap_err(),
        HostAuthError::Refused { explanation: 1 }
    );
    assert!(!ctrl.is_authenticated());
    assert_eq!(
        ctrl.failure().unwrap().what,
        "the host's response does not match its key"
    );
}

#[test]
fn a_wrong_controller_key_makes_the_host_give_up() {
    let key = secret(1, None);
    let mut ctrl = controller(&key, Some(&secret(2, None)));
    let mut h = host(&key, Some(&secret(3, None)), &[DhGroupId::Null]);
    let err = exchange(&mut h, &mut ctrl).unwrap_err();
    let HostAuthError::Refusing { error, failure2 } = err else {
        panic!("the host should refuse")
    };
    assert_eq!(error.reason, FailureReason::Failed);
    assert_eq!(failure2, [0, 0xf0, 0, 0, 7, 0, 1, 1]);
    assert!(!ctrl.is_authenticated());
    assert_eq!(ctrl.failure().unwrap().reason, FailureReason::Failed);
}

#[test]
fn a_host_asking_for_a_controller_key_the_target_lacks_is_refused() {
    let key = secret(1, None);
    let mut ctrl = controller(&key, None);
    let mut h = host(&key, Some(&secret(2, None)), &[DhGroupId::Null]);
    assert_eq!(
        exchange(&mut h, &mut ctrl).unwrap_err(),
        HostAuthError::Refused { explanation: 1 }
    );
}

#[test]
fn negotiation_failures_name_their_reason() {
    let key = secret(1, None);
    let policy = ControllerPolicy {
        hashes: vec![HashId::Sha512],
        dh_groups: vec![DhGroupId::Null],
        ..ControllerPolicy::default()
    };
    let mut ctrl = ControllerAuth::new(HOST, SUBSYSTEM, &key, None, policy.clone());
    let mut h = host(&key, None, &[DhGroupId::Null]);
    assert_eq!(
        exchange(&mut h, &mut ctrl).unwrap_err(),
        HostAuthError::Refused {
            explanation: FailureReason::HashUnusable as u8
        }
    );
    let mut ctrl = ControllerAuth::new(
        HOST,
        SUBSYSTEM,
        &key,
        None,
        ControllerPolicy {
            hashes: vec![HashId::Sha256],
            dh_groups: vec![DhGroupId::Ffdhe8192],
            ..ControllerPolicy::default()
        },
    );
    let mut h = host(&key, None, &[DhGroupId::Null]);
    assert_eq!(
        exchange(&mut h, &mut ctrl).unwrap_err(),
        HostAuthError::Refused {
            explanation: FailureReason::DhGroupUnusable as u8
        }
    );
    // Secure channel concatenation (SC_C 1) is refused with its own reason, naming the
    // Negotiate's transaction.
    let mut negotiate = host(&key, None, &[DhGroupId::Null]).negotiate();
    negotiate[6] = 1;
    let mut ctrl = controller(&key, None);
    ctrl.send(&negotiate);
    let answer = ctrl.receive(AL).unwrap();
    assert_eq!(
        Message::decode(&answer.data).unwrap(),
        Message::Failure1(Failure::new(7, FailureReason::SccMismatch))
    );
}

#[test]
fn messages_out_of_sequence_or_of_another_transaction_are_refused() {
    let key = secret(1, None);
    // A Reply before any Negotiate.
    let mut ctrl = controller(&key, None);
    let mut h = host(&key, None, &[DhGroupId::Null]);
    let mut other = controller(&key, None);
    other.send(&h.negotiate());
    let reply = h.challenge(&other.receive(AL).unwrap().data).unwrap();
    ctrl.send(&reply);
    let answer = ctrl.receive(AL).unwrap();
    assert!(answer.close);
    let Message::Failure1(f) = Message::decode(&answer.data).unwrap() else {
        panic!("a Failure1")
    };
    assert_eq!(f.reason(), Some(FailureReason::IncorrectProtocolMessage));

    // A Reply of another transaction ID.
    let mut ctrl = controller(&key, None);
    let mut h = host(&key, None, &[DhGroupId::Null]);
    ctrl.send(&h.negotiate());
    let mut reply = h.challenge(&ctrl.receive(AL).unwrap().data).unwrap();
    reply[4] ^= 1;
    ctrl.send(&reply);
    let Message::Failure1(f) = Message::decode(&ctrl.receive(AL).unwrap().data).unwrap() else {
        panic!("a Failure1")
    };
    assert_eq!(f.reason(), Some(FailureReason::IncorrectPayload));

    // A Receive before anything was negotiated.
    let mut ctrl = controller(&key, None);
    let answer = ctrl.receive(AL).unwrap();
    assert!(answer.close);
    // AL too short for any message is Invalid Field.
    let status = controller(&key, None).receive(4).unwrap_err();
    assert_eq!((status.sct(), status.sc()), (0, 0x02));
}

#[test]
fn a_challenge_that_does_not_fit_al_becomes_failure1() {
    let key = secret(1, None);
    let mut ctrl = controller(&key, None);
    ctrl.send(&host(&key, None, &[DhGroupId::Ffdhe2048]).negotiate());
    let answer = ctrl.receive(64).unwrap();
    assert!(answer.close);
    assert_eq!(
        Message::decode(&answer.data).unwrap(),
        Message::Failure1(Failure::new(7, FailureReason::IncorrectPayload))
    );
}

#[test]
fn a_new_negotiate_after_success_re_authenticates() {
    let key = secret(1, None);
    let mut ctrl = controller(&key, None);
    exchange(&mut host(&key, None, &[DhGroupId::Null]), &mut ctrl).unwrap();
    assert!(ctrl.is_authenticated());
    let mut again = host(&key, None, &[DhGroupId::Ffdhe3072]);
    ctrl.send(&again.negotiate());
    assert!(!ctrl.is_authenticated());
    let reply = again.challenge(&ctrl.receive(AL).unwrap().data).unwrap();
    ctrl.send(&reply);
    assert_eq!(again.success1(&ctrl.receive(AL).unwrap().data), Ok(None));
    assert!(ctrl.is_authenticated());
}

#[test]
fn an_exchange_waiting_past_its_step_timeout_expires_and_an_ended_one_never() {
    let key = secret(1, None);
    let policy = ControllerPolicy {
        step_timeout: Duration::from_secs(5),
        ..ControllerPolicy::default()
    };
    let mut ctrl = ControllerAuth::new(HOST, SUBSYSTEM, &key, None, policy);
    let later = |seconds| Instant::now() + Duration::from_secs(seconds);
    assert!(
        !ctrl.expired(later(3600)),
        "nothing under way before a Negotiate"
    );
    let mut h = host(&key, None, &[DhGroupId::Null]);
    ctrl.send(&h.negotiate());
    assert!(!ctrl.expired(Instant::now()));
    assert!(ctrl.expired(later(6)));
    let reply = h.challenge(&ctrl.receive(AL).unwrap().data).unwrap();
    // Each step restarts the wait.
    assert!(!ctrl.expired(Instant::now() + Duration::from_secs(4)));
    assert!(ctrl.expired(later(6)));
    ctrl.send(&reply);
    assert!(ctrl.expired(later(6)), "Success1 not read yet");
    h.success1(&ctrl.receive(AL).unwrap().data).unwrap();
    assert!(ctrl.is_authenticated());
    assert!(!ctrl.expired(later(3600)));
}
