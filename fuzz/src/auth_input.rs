//! How an `auth` input is laid out: a settings byte, then records of one operation each on a
//! queue's `ControllerAuth`, so that the seed corpus writer and the target agree.
//!
//! Record: an operation byte (even: Authentication Send, odd: Authentication Receive), then a
//! little-endian u16: the length of the message that follows (Send) or the AL (Receive).

use vfnvme_auth::{ControllerPolicy, DhGroupId, DhchapSecret, HashId};

/// Settings bit: the controller holds a controller key (it can answer a host's challenge).
pub const CONTROLLER_KEY: u8 = 1 << 0;
/// Settings bit: the controller also offers ffdhe2048 (else the null group only, which keeps
/// executions fast).
pub const FFDHE2048: u8 = 1 << 1;

pub const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000f022";
pub const SUBSYSTEM_NQN: &str = "nqn.2024-01.io.vfnvme:fuzz";

/// One operation.
pub enum Op<'a> {
    Send(&'a [u8]),
    Receive(u32),
}

/// The next record of `input` and what follows it, if a whole one is there.
pub fn next_record(input: &[u8]) -> Option<(Op<'_>, &[u8])> {
    let (&op, rest) = input.split_first()?;
    let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
    let rest = &rest[2..];
    if op % 2 == 1 {
        return Some((Op::Receive(u32::from(len)), rest));
    }
    let len = usize::from(len).min(rest.len());
    Some((Op::Send(&rest[..len]), &rest[len..]))
}

/// A record.
pub fn encode_record(op: &Op<'_>) -> Vec<u8> {
    match op {
        Op::Send(bytes) => {
            let mut out = vec![0];
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
            out
        }
        Op::Receive(al) => {
            let mut out = vec![1];
            out.extend_from_slice(&(*al as u16).to_le_bytes());
            out
        }
    }
}

/// The host key the controller checks responses against (fixed: an input cannot know the
/// challenge it is answering, so no input can authenticate).
pub fn host_secret() -> DhchapSecret {
    DhchapSecret::new(&[0x5a; 32], Some(HashId::Sha256)).expect("a 32-byte key")
}

pub fn controller_secret() -> DhchapSecret {
    DhchapSecret::new(&[0xa5; 48], None).expect("a 48-byte key")
}

/// The controller's policy for `settings`.
pub fn policy(settings: u8) -> ControllerPolicy {
    let mut dh_groups = vec![DhGroupId::Null];
    if settings & FFDHE2048 != 0 {
        dh_groups.insert(0, DhGroupId::Ffdhe2048);
    }
    ControllerPolicy {
        hashes: vec![HashId::Sha384, HashId::Sha256],
        dh_groups,
        ..ControllerPolicy::default()
    }
}
