//! The controller's side of DH-HMAC-CHAP on one queue, independent of the transport: what to
//! do with each Authentication Send's message, what each Authentication Receive returns.
//!
//! The sequence is SPDK's target's (`lib/nvmf/auth.c`): Negotiate → (Receive) Challenge →
//! Reply → (Receive) Success1 → [Success2 when the host asked the controller to authenticate
//! itself]. Any message refused turns the exchange into Failure1: the Send still completes
//! successfully and the next Receive returns the AUTH_Failure1 with its reason, after which the
//! queue is to be closed. A Negotiate on a queue that authenticated starts over
//! (re-authentication), as nvmet does.

use std::time::{Duration, Instant};

use vfnvme_spec::auth::{
    sc_c, Challenge, DhGroupId, Failure, FailureReason, HashId, Message, MessageError, Reply,
    Success1,
};
use vfnvme_spec::Status;

use crate::chap::Transaction;
use crate::dh::DhKeyPair;
use crate::hash::Digest;
use crate::nonce;
use crate::secret::DhchapSecret;

/// What the controller accepts, strongest first (the host's preference is not consulted: the
/// strongest hash and group both sides support are chosen, as SPDK's target does), and how
/// long the host may take for each step.
#[derive(Clone, Debug)]
pub struct ControllerPolicy {
    pub hashes: Vec<HashId>,
    pub dh_groups: Vec<DhGroupId>,
    /// Longest wait for the host's next command of an exchange under way (SPDK: the keep-alive
    /// timeout, 120 s without one; nvmet: the keep-alive timeout).
    pub step_timeout: Duration,
}

impl Default for ControllerPolicy {
    fn default() -> Self {
        Self {
            hashes: vec![HashId::Sha512, HashId::Sha384, HashId::Sha256],
            dh_groups: vec![
                DhGroupId::Ffdhe8192,
                DhGroupId::Ffdhe6144,
                DhGroupId::Ffdhe4096,
                DhGroupId::Ffdhe3072,
                DhGroupId::Ffdhe2048,
                DhGroupId::Null,
            ],
            step_timeout: Duration::from_secs(120),
        }
    }
}

/// What the host's Authentication Receive gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// The message (at most AL bytes).
    pub data: Vec<u8>,
    /// The exchange failed: close the queue once this is sent.
    pub close: bool,
}

enum State {
    /// Waiting for a Negotiate.
    Negotiate,
    /// Negotiated; the host is to receive the Challenge.
    Challenge {
        t_id: u16,
        hash: HashId,
        group: DhGroupId,
    },
    /// Challenge sent; waiting for the Reply.
    Reply {
        t_id: u16,
        hash: HashId,
        challenge: Vec<u8>,
        seqnum: u32,
        key_pair: Option<DhKeyPair>,
    },
    /// Host authenticated; the host is to receive Success1 (with R2 if it asked).
    Success1 {
        t_id: u16,
        hash: HashId,
        response: Option<Digest>,
    },
    /// Success1 with R2 sent; waiting for Success2 (or Failure2).
    Success2 { t_id: u16 },
    /// Refused; the host is to receive Failure1.
    Failure1 { t_id: u16, reason: FailureReason },
    /// The host authenticated (and accepted the controller's response if it asked).
    Authenticated,
    /// Failed: Failure1 sent, or the host sent Failure2.
    Failed,
}

/// One queue's DH-HMAC-CHAP exchange, controller side.
pub struct ControllerAuth {
    host_nqn: String,
    subsystem_nqn: String,
    host_key: Digest,
    ctrl_key: Option<Digest>,
    policy: ControllerPolicy,
    state: State,
    /// Why the exchange failed, for the log.
    failure: Option<MessageError>,
    /// When an exchange under way has waited too long for the host.
    deadline: Option<Instant>,
}

impl ControllerAuth {
    /// An exchange with the host `host_nqn` holding `host_secret`; with `ctrl_secret`, the
    /// controller can answer a host that asks it to authenticate itself.
    pub fn new(
        host_nqn: &str,
        subsystem_nqn: &str,
        host_secret: &DhchapSecret,
        ctrl_secret: Option<&DhchapSecret>,
        policy: ControllerPolicy,
    ) -> Self {
        Self {
            host_nqn: host_nqn.to_owned(),
            subsystem_nqn: subsystem_nqn.to_owned(),
            host_key: host_secret.transformed(host_nqn),
            ctrl_key: ctrl_secret.map(|s| s.transformed(subsystem_nqn)),
            policy,
            state: State::Negotiate,
            failure: None,
            deadline: None,
        }
    }

    /// Whether the queue may carry commands now.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Why the exchange failed, once it has.
    pub fn failure(&self) -> Option<&MessageError> {
        self.failure.as_ref()
    }

    /// Whether an exchange under way has waited for the host past its step timeout at `now`
    /// (each Send and Receive restarts the wait): the queue is then to be closed, as SPDK's
    /// target and nvmet do. Never before the first Negotiate, nor once the exchange ended.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    fn rearm(&mut self) {
        self.deadline = match self.state {
            State::Negotiate | State::Authenticated | State::Failed => None,
            _ => Some(Instant::now() + self.policy.step_timeout),
        };
    }

    /// Authentication Send with the message `bytes` (its TL bytes). The command completes
    /// successfully whatever the message: a refusal is the next Receive's Failure1.
    pub fn send(&mut self, bytes: &[u8]) {
        // A Failure1 names the exchange's transaction, or the refused Negotiate's.
        let t_id = match (&self.state, Message::decode(bytes)) {
            (State::Negotiate | State::Authenticated, Ok(message)) => message.t_id(),
            _ => self.transaction(),
        };
        let state = std::mem::replace(&mut self.state, State::Failed);
        self.state = match self.on_message(state, bytes) {
            Ok(next) => next,
            Err(error) => self.refuse(t_id, error),
        };
        self.rearm();
    }

    /// Authentication Receive with allocation length `al`. An AL too short for even a
    /// Failure1 is Invalid Field.
    pub fn receive(&mut self, al: u32) -> Result<Received, Status> {
        let al = al as usize;
        if al < 8 {
            return Err(Status::invalid_field().do_not_retry());
        }
        let t_id = self.transaction();
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (data, next) = match self.on_receive(state) {
            Ok(sent) => sent,
            Err(error) => {
                let reason = error.reason;
                self.failure = Some(error);
                (
                    Message::Failure1(Failure::new(t_id, reason)).to_bytes(),
                    State::Failed,
                )
            }
        };
        if data.len() > al {
            let error = MessageError::incorrect_payload(
                "the Authentication Receive's AL is shorter than the message",
            );
            let reason = error.reason;
            self.failure = Some(error);
            self.state = State::Failed;
            self.rearm();
            return Ok(Received {
                data: Message::Failure1(Failure::new(t_id, reason)).to_bytes(),
                close: true,
            });
        }
        self.state = next;
        self.rearm();
        Ok(Received {
            data,
            close: matches!(self.state, State::Failed),
        })
    }

    fn transaction(&self) -> u16 {
        match self.state {
            State::Challenge { t_id, .. }
            | State::Reply { t_id, .. }
            | State::Success1 { t_id, .. }
            | State::Success2 { t_id }
            | State::Failure1 { t_id, .. } => t_id,
            State::Negotiate | State::Authenticated | State::Failed => 0,
        }
    }

    fn refuse(&mut self, t_id: u16, error: MessageError) -> State {
        let reason = error.reason;
        self.failure = Some(error);
        State::Failure1 { t_id, reason }
    }

    fn on_message(&mut self, state: State, bytes: &[u8]) -> Result<State, MessageError> {
        let message = Message::decode(bytes)?;
        let out_of_sequence = MessageError::new(
            FailureReason::IncorrectProtocolMessage,
            "the message is not the one the exchange expects next",
        );
        match (state, message) {
            (State::Negotiate | State::Authenticated, Message::Negotiate(n)) => {
                self.failure = None;
                self.negotiate(&n)
            }
            (
                State::Reply {
                    t_id,
                    hash,
                    challenge,
                    seqnum,
                    key_pair,
                },
                Message::Reply(reply),
            ) => {
                check_t_id(t_id, reply.t_id)?;
                self.reply(t_id, hash, &challenge, seqnum, key_pair.as_ref(), &reply)
            }
            (State::Success2 { t_id }, Message::Success2(s)) => {
                check_t_id(t_id, s.t_id)?;
                Ok(State::Authenticated)
            }
            (State::Success2 { t_id }, Message::Failure2(f)) => {
                check_t_id(t_id, f.t_id)?;
                self.failure = Some(MessageError::new(
                    f.reason().unwrap_or(FailureReason::Failed),
                    "the host refused the controller's response (AUTH_Failure2)",
                ));
                Ok(State::Failed)
            }
            _ => Err(out_of_sequence),
        }
    }

    fn negotiate(&self, n: &vfnvme_spec::auth::Negotiate) -> Result<State, MessageError> {
        if n.sc_c != sc_c::NONE {
            return Err(MessageError::new(
                FailureReason::SccMismatch,
                "the host asks for secure channel concatenation, which this target does not do",
            ));
        }
        let protocol = n.dhchap().ok_or(MessageError::new(
            FailureReason::ProtocolUnusable,
            "the Negotiate offers no DH-HMAC-CHAP protocol descriptor",
        ))?;
        let hash = self
            .policy
            .hashes
            .iter()
            .copied()
            .find(|h| protocol.hashes().any(|offered| offered == *h))
            .ok_or(MessageError::new(
                FailureReason::HashUnusable,
                "the host offers no hash function the target accepts",
            ))?;
        let group = self
            .policy
            .dh_groups
            .iter()
            .copied()
            .find(|g| protocol.dh_groups().any(|offered| offered == *g))
            .ok_or(MessageError::new(
                FailureReason::DhGroupUnusable,
                "the host offers no DH group the target accepts",
            ))?;
        Ok(State::Challenge {
            t_id: n.t_id,
            hash,
            group,
        })
    }

    fn reply(
        &self,
        t_id: u16,
        hash: HashId,
        challenge: &[u8],
        seqnum: u32,
        key_pair: Option<&DhKeyPair>,
        reply: &Reply<'_>,
    ) -> Result<State, MessageError> {
        if reply.response.len() != hash.digest_len() {
            return Err(MessageError::incorrect_payload(
                "the Reply's HL is not the negotiated hash's length",
            ));
        }
        let session_key = match key_pair {
            None if !reply.dh_value.is_empty() => {
                return Err(MessageError::incorrect_payload(
                    "the Reply carries a DH value for the null DH group",
                ))
            }
            None => None,
            Some(pair) => Some(pair.shared_secret(reply.dh_value).map_err(|_| {
                MessageError::new(FailureReason::Failed, "the host's DH value is not usable")
            })?),
        };
        let transaction = Transaction {
            hash,
            t_id,
            sc_c: sc_c::NONE,
            host_nqn: &self.host_nqn,
            subsystem_nqn: &self.subsystem_nqn,
            session_key: session_key.as_deref().map(Vec::as_slice),
        };
        let expected = transaction.host_response(&self.host_key, challenge, seqnum);
        if !expected.matches(reply.response) {
            return Err(MessageError::new(
                FailureReason::Failed,
                "the host's response does not match its key",
            ));
        }
        let response = match reply.challenge {
            None => None,
            Some(c2) => {
                let ctrl_key = self.ctrl_key.as_ref().ok_or(MessageError::new(
                    FailureReason::Failed,
                    "the host asks the controller to authenticate, but it has no controller key",
                ))?;
                Some(transaction.controller_response(ctrl_key, c2, reply.seqnum))
            }
        };
        Ok(State::Success1 {
            t_id,
            hash,
            response,
        })
    }

    fn on_receive(&mut self, state: State) -> Result<(Vec<u8>, State), MessageError> {
        match state {
            State::Challenge { t_id, hash, group } => {
                let failed = |_| MessageError::new(FailureReason::Failed, "no random numbers");
                let challenge = nonce::challenge(hash.digest_len()).map_err(failed)?;
                let seqnum = nonce::sequence_number();
                let key_pair =
                    match group {
                        DhGroupId::Null => None,
                        group => Some(DhKeyPair::generate(group).map_err(|_| {
                            MessageError::new(FailureReason::Failed, "no DH key pair")
                        })?),
                    };
                let data = Message::Challenge(Challenge {
                    t_id,
                    hash,
                    dh_group: group,
                    seqnum,
                    challenge: &challenge,
                    dh_value: key_pair.as_ref().map_or(&[], DhKeyPair::public_value),
                })
                .to_bytes();
                Ok((
                    data,
                    State::Reply {
                        t_id,
                        hash,
                        challenge,
                        seqnum,
                        key_pair,
                    },
                ))
            }
            State::Success1 {
                t_id,
                hash,
                response,
            } => {
                let data = Message::Success1(Success1 {
                    t_id,
                    hl: hash.digest_len() as u8,
                    response: response.as_ref().map(Digest::as_bytes),
                })
                .to_bytes();
                let next = if response.is_some() {
                    State::Success2 { t_id }
                } else {
                    State::Authenticated
                };
                Ok((data, next))
            }
            State::Failure1 { t_id, reason } => Ok((
                Message::Failure1(Failure::new(t_id, reason)).to_bytes(),
                State::Failed,
            )),
            _ => Err(MessageError::new(
                FailureReason::IncorrectProtocolMessage,
                "the host reads a message the exchange has not produced",
            )),
        }
    }
}

fn check_t_id(expected: u16, found: u16) -> Result<(), MessageError> {
    if expected == found {
        Ok(())
    } else {
        Err(MessageError::incorrect_payload(
            "the message's transaction ID is not the Negotiate's",
        ))
    }
}
