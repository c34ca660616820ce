//! `auth` seeds: the Linux host's Negotiate followed by Receives and well-formed (but wrongly
//! keyed) Replies, Success2 and Failure2 messages, out-of-sequence messages.

use vfnvme_fuzz::auth_input::{encode_record, Op, CONTROLLER_KEY, FFDHE2048};
use vfnvme_spec::auth::{
    sc_c, DhGroupId, DhchapProtocol, Failure, FailureReason, HashId, Message, Negotiate, Reply,
    Success2,
};

use crate::shared::Seeds;

const T_ID: u16 = 1;

fn negotiate(groups: &[DhGroupId]) -> Vec<u8> {
    Message::Negotiate(Negotiate {
        t_id: T_ID,
        sc_c: sc_c::NONE,
        protocols: vec![DhchapProtocol::offering(&HashId::ALL, groups)],
    })
    .to_bytes()
}

fn reply(hl: usize, challenge: bool, dh_value: &[u8]) -> Vec<u8> {
    let response = vec![0x11; hl];
    let c2 = vec![0x22; hl];
    Message::Reply(Reply {
        t_id: T_ID,
        seqnum: u32::from(challenge),
        response: &response,
        challenge: challenge.then_some(c2.as_slice()),
        dh_value,
    })
    .to_bytes()
}

fn input(settings: u8, ops: &[Op<'_>]) -> Vec<u8> {
    let mut bytes = vec![settings];
    for op in ops {
        bytes.extend(encode_record(op));
    }
    bytes
}

pub fn seeds() -> Seeds {
    let null_only = negotiate(&[DhGroupId::Null]);
    let all_groups = negotiate(&DhGroupId::ALL);
    let reply48 = reply(48, false, &[]);
    let reply48_c2 = reply(48, true, &[]);
    let dh_value = vec![0x33; 256];
    let reply48_dh = reply(48, true, &dh_value);
    let success2 = Message::Success2(Success2 { t_id: T_ID }).to_bytes();
    let failure2 = Message::Failure2(Failure::new(T_ID, FailureReason::Failed)).to_bytes();
    vec![
        (
            "negotiate-reply".into(),
            input(
                0,
                &[
                    Op::Send(&null_only),
                    Op::Receive(4096),
                    Op::Send(&reply48),
                    Op::Receive(4096),
                ],
            ),
        ),
        (
            "bidirectional".into(),
            input(
                CONTROLLER_KEY,
                &[
                    Op::Send(&null_only),
                    Op::Receive(4096),
                    Op::Send(&reply48_c2),
                    Op::Receive(4096),
                    Op::Send(&success2),
                    Op::Receive(4096),
                ],
            ),
        ),
        (
            "ffdhe2048".into(),
            input(
                CONTROLLER_KEY | FFDHE2048,
                &[
                    Op::Send(&all_groups),
                    Op::Receive(4096),
                    Op::Send(&reply48_dh),
                    Op::Receive(64),
                ],
            ),
        ),
        (
            "out-of-sequence".into(),
            input(
                0,
                &[
                    Op::Receive(4096),
                    Op::Send(&failure2),
                    Op::Send(&null_only),
                    Op::Receive(7),
                ],
            ),
        ),
    ]
}
