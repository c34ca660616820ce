//! The host's side of DH-HMAC-CHAP on one queue, independent of the transport: the messages
//! to send and the checks of what the controller returns, as the Linux host
//! (`nvme_queue_auth_work`) runs them: Negotiate, (Receive) Challenge, Reply, (Receive)
//! Success1, [Success2]. A refusal gives the AUTH_Failure2 to send, with its reason.

use vfnvme_spec::auth::{
    sc_c, DhGroupId, DhchapProtocol, Failure, FailureReason, HashId, Message, MessageError,
    Negotiate, Reply, Success2,
};

use zeroize::Zeroizing;

use crate::chap::Transaction;
use crate::dh::DhKeyPair;
use crate::hash::Digest;
use crate::nonce;
use crate::secret::DhchapSecret;

/// Why the host's side of an exchange ended without authentication.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostAuthError {
    /// The controller refused (AUTH_Failure1).
    #[error("the controller refused authentication: {}", describe(*.explanation))]
    Refused { explanation: u8 },
    /// The host refuses; `failure2` is the AUTH_Failure2 to send.
    #[error("{error}")]
    Refusing {
        error: MessageError,
        failure2: Vec<u8>,
    },
}

fn describe(explanation: u8) -> &'static str {
    FailureReason::from_code(explanation).map_or("unknown reason", FailureReason::describe)
}

/// What the host keeps to check the controller's response: C2, S2 and the session key.
struct ControllerChallenge {
    challenge: Vec<u8>,
    seqnum: u32,
    session_key: Option<Zeroizing<Vec<u8>>>,
}

/// What the host expects next.
enum State {
    Challenge,
    Success1 {
        hash: HashId,
        /// When the controller is to authenticate itself.
        controller: Option<ControllerChallenge>,
    },
    Done,
}

/// One queue's DH-HMAC-CHAP exchange, host side.
pub struct HostAuth {
    host_nqn: String,
    subsystem_nqn: String,
    host_key: Digest,
    ctrl_key: Option<Digest>,
    hashes: Vec<HashId>,
    dh_groups: Vec<DhGroupId>,
    t_id: u16,
    state: State,
}

impl HostAuth {
    /// An exchange of transaction `t_id` offering `hashes` and `dh_groups`; with
    /// `ctrl_secret`, the controller must prove it holds that secret too.
    pub fn new(
        host_nqn: &str,
        subsystem_nqn: &str,
        host_secret: &DhchapSecret,
        ctrl_secret: Option<&DhchapSecret>,
        hashes: &[HashId],
        dh_groups: &[DhGroupId],
        t_id: u16,
    ) -> Self {
        Self {
            host_nqn: host_nqn.to_owned(),
            subsystem_nqn: subsystem_nqn.to_owned(),
            host_key: host_secret.transformed(host_nqn),
            ctrl_key: ctrl_secret.map(|s| s.transformed(subsystem_nqn)),
            hashes: hashes.to_vec(),
            dh_groups: dh_groups.to_vec(),
            t_id,
            state: State::Challenge,
        }
    }

    /// The AUTH_Negotiate to send first.
    pub fn negotiate(&self) -> Vec<u8> {
        Negotiate {
            t_id: self.t_id,
            sc_c: sc_c::NONE,
            protocols: vec![DhchapProtocol::offering(&self.hashes, &self.dh_groups)],
        }
        .to_bytes()
    }

    /// The Challenge received: the Reply to send.
    pub fn challenge(&mut self, bytes: &[u8]) -> Result<Vec<u8>, HostAuthError> {
        let result = self.on_challenge(bytes);
        self.settle(result)
    }

    /// The Success1 received: the Success2 to send when the controller authenticated itself,
    /// nothing when it was not asked to. Either way the queue is authenticated.
    pub fn success1(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, HostAuthError> {
        let result = self.on_success1(bytes);
        self.settle(result)
    }

    fn settle<T>(&mut self, result: Result<T, HostAuthError>) -> Result<T, HostAuthError> {
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    fn refusing(&self, error: MessageError) -> HostAuthError {
        HostAuthError::Refusing {
            failure2: Message::Failure2(Failure::new(self.t_id, error.reason)).to_bytes(),
            error,
        }
    }

    /// The message `bytes`, refused if it is a Failure1, not `expected`, or of another
    /// transaction (incorrect protocol message, as the Linux host answers both).
    fn expect<'a>(&self, bytes: &'a [u8], expected: u8) -> Result<Message<'a>, HostAuthError> {
        let message = Message::decode(bytes).map_err(|e| self.refusing(e))?;
        let wrong = |what| {
            self.refusing(MessageError::new(
                FailureReason::IncorrectProtocolMessage,
                what,
            ))
        };
        match (&message, expected) {
            (Message::Failure1(f), _) => Err(HostAuthError::Refused {
                explanation: f.explanation,
            }),
            (Message::Challenge(_), vfnvme_spec::auth::auth_id::CHALLENGE)
            | (Message::Success1(_), vfnvme_spec::auth::auth_id::SUCCESS1) => {
                if message.t_id() == self.t_id {
                    Ok(message)
                } else {
                    Err(wrong("the controller's message is of another transaction"))
                }
            }
            _ => Err(wrong("the controller sent another message than expected")),
        }
    }

    fn on_challenge(&mut self, bytes: &[u8]) -> Result<Vec<u8>, HostAuthError> {
        if !matches!(self.state, State::Challenge) {
            return Err(self.refusing(MessageError::new(
                FailureReason::IncorrectProtocolMessage,
                "a Challenge out of sequence",
            )));
        }
        let Message::Challenge(c) = self.expect(bytes, vfnvme_spec::auth::auth_id::CHALLENGE)?
        else {
            unreachable!("expect returns the expected message")
        };
        if !self.hashes.contains(&c.hash) {
            return Err(self.refusing(MessageError::new(
                FailureReason::HashUnusable,
                "the controller chose a hash function the host did not offer",
            )));
        }
        if !self.dh_groups.contains(&c.dh_group) {
            return Err(self.refusing(MessageError::new(
                FailureReason::DhGroupUnusable,
                "the controller chose a DH group the host did not offer",
            )));
        }
        let unusable = |_| {
            self.refusing(MessageError::incorrect_payload(
                "the controller's DH value is not usable",
            ))
        };
        let (key_pair, session_key) = match c.dh_group {
            DhGroupId::Null => (None, None),
            group => {
                let pair = DhKeyPair::generate(group).map_err(unusable)?;
                let shared = pair.shared_secret(c.dh_value).map_err(unusable)?;
                (Some(pair), Some(shared))
            }
        };
        let transaction = Transaction {
            hash: c.hash,
            t_id: self.t_id,
            sc_c: sc_c::NONE,
            host_nqn: &self.host_nqn,
            subsystem_nqn: &self.subsystem_nqn,
            session_key: session_key.as_deref().map(Vec::as_slice),
        };
        let response = transaction.host_response(&self.host_key, c.challenge, c.seqnum);
        let controller = match self.ctrl_key {
            None => None,
            Some(_) => {
                let c2 = nonce::challenge(c.hash.digest_len()).map_err(|_| {
                    self.refusing(MessageError::new(
                        FailureReason::Failed,
                        "no random numbers",
                    ))
                })?;
                Some(ControllerChallenge {
                    challenge: c2,
                    seqnum: nonce::sequence_number(),
                    session_key,
                })
            }
        };
        let reply = Message::Reply(Reply {
            t_id: self.t_id,
            seqnum: controller.as_ref().map_or(0, |c| c.seqnum),
            response: response.as_bytes(),
            challenge: controller.as_ref().map(|c| c.challenge.as_slice()),
            dh_value: key_pair.as_ref().map_or(&[], DhKeyPair::public_value),
        })
        .to_bytes();
        self.state = State::Success1 {
            hash: c.hash,
            controller,
        };
        Ok(reply)
    }

    fn on_success1(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, HostAuthError> {
        let State::Success1 { hash, controller } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(self.refusing(MessageError::new(
                FailureReason::IncorrectProtocolMessage,
                "a Success1 out of sequence",
            )));
        };
        let Message::Success1(s) = self.expect(bytes, vfnvme_spec::auth::auth_id::SUCCESS1)? else {
            unreachable!("expect returns the expected message")
        };
        if usize::from(s.hl) != hash.digest_len() {
            return Err(self.refusing(MessageError::new(
                FailureReason::HashUnusable,
                "the Success1's HL is not the negotiated hash's length",
            )));
        }
        let Some(controller) = controller else {
            return Ok(None);
        };
        let ctrl_key = self
            .ctrl_key
            .as_ref()
            .expect("a challenge only with a controller key");
        let transaction = Transaction {
            hash,
            t_id: self.t_id,
            sc_c: sc_c::NONE,
            host_nqn: &self.host_nqn,
            subsystem_nqn: &self.subsystem_nqn,
            session_key: controller.session_key.as_deref().map(Vec::as_slice),
        };
        let expected =
            transaction.controller_response(ctrl_key, &controller.challenge, controller.seqnum);
        // Unlike the Linux host, a Success1 without the response asked for is a failure.
        if !s.response.is_some_and(|r2| expected.matches(r2)) {
            return Err(self.refusing(MessageError::new(
                FailureReason::Failed,
                "the controller's response does not match the controller key",
            )));
        }
        Ok(Some(
            Message::Success2(Success2 { t_id: self.t_id }).to_bytes(),
        ))
    }
}
