//! Random DH-HMAC-CHAP exchanges against a live target that requires authentication: queues
//! (admin and I/O) of a host with a key send Authentication Send messages that are valid,
//! mutated or random, Receives of random allocation and transfer lengths, Sends whose TL is not
//! their data's length, and commands that need an authenticated queue, in random order. The
//! keys the fuzz host uses are wrong, so no queue may ever authenticate.
//!
//! Invariants: every command gets one response (the queue may close only after a Receive
//! returned an AUTH_Failure1); a Receive's data decodes as a Challenge, Success1 or Failure1
//! and is never longer than the command's transfer length; a Send or Receive whose TL or AL
//! differs from the transfer length is Invalid Field; a command other than a Fabrics one is
//! Authentication Required; once every fuzz queue is closed the target's file descriptors and
//! threads are back to where they started and a host with the right key still moves data.
//!
//! Deterministic input: a fixed-seed generator per connection (`VFNVME_FUZZ_SEED` explores
//! others), so a failure names the stream that reproduces it. One test in this binary: the fd
//! and thread counts are the process's.

mod common;

use common::auth::{host_auth, host_options, raw_admin, secret, target, HOST_A};
use common::*;
use vfnvme_auth::HostAuth;
use vfnvme_spec::auth::{AuthCommand, AuthDirection, FailureReason, Message};
use vfnvme_spec::auth::{Failure, Success2};
use vfnvme_spec::{admin_opcode, cns, nvm_opcode, Command, Completion};
use vfnvme_tcp::PduHeader;

const THREADS: u64 = 3;
const CONNECTIONS_PER_THREAD: u64 = 40;

/// What a fuzz connection saw, for the check that the fuzzing reached the exchange.
#[derive(Default)]
struct Seen {
    challenges: usize,
    failures: usize,
}

/// Flips a few bytes, or cuts or extends the message.
fn mutate(rng: &mut Rng, mut message: Vec<u8>) -> Vec<u8> {
    match rng.below(3) {
        0 => {
            for _ in 0..1 + rng.below(3) {
                if !message.is_empty() {
                    let at = rng.below(message.len());
                    message[at] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let keep = rng.below(message.len() + 1);
            message.truncate(keep);
        }
        _ => {
            let extra = 1 + rng.below(64);
            message.extend(rng.bytes(extra));
        }
    }
    message
}

/// The message of the next Authentication Send.
fn random_message(rng: &mut Rng, auth: &mut HostAuth, challenge: Option<&[u8]>) -> Vec<u8> {
    let t_id = if rng.chance(2) {
        7
    } else {
        rng.below(4) as u16
    };
    let message = match rng.below(5) {
        0 => auth.negotiate(),
        // The Reply of a host with the wrong key, when there is a challenge to answer.
        1 => challenge
            .and_then(|challenge| auth.challenge(challenge).ok())
            .unwrap_or_else(|| {
                let len = 16 + rng.below(100);
                rng.bytes(len)
            }),
        2 => Success2 { t_id }.to_bytes(),
        3 => Message::Failure2(Failure::new(t_id, FailureReason::Failed)).to_bytes(),
        _ => {
            let len = rng.below(300);
            rng.bytes(len)
        }
    };
    if rng.chance(3) {
        mutate(rng, message)
    } else {
        message
    }
}

/// Sends `command` with `data` in the capsule; the response, or `None` if the queue closed.
fn exchange(client: &mut RawClient, command: Command, data: &[u8]) -> Option<Completion> {
    let bytes = client.capsule_bytes(&command, data);
    client.send_lenient(&bytes);
    match client.receive() {
        Received::Closed => None,
        Received::Pdu(PduHeader::CapsuleResp(completion), _) => Some(completion),
        other => panic!("expected a CapsuleResp, got {other:?}"),
    }
}

/// One fuzz queue. Returns what it saw.
fn fuzz_connection(target: &RunningTarget, seed: u64, cntlid: u16) -> Seen {
    let mut rng = Rng::new(seed);
    let mut seen = Seen::default();
    let mut client = if rng.chance(2) {
        raw_admin(target, HOST_A).0
    } else {
        let mut client = RawClient::established(target.address, false, false);
        client.host_nqn = HOST_A.into();
        client.connect(NQN, 1 + rng.below(2) as u16, cntlid, 8);
        client
    };
    // A host key other than the one the target has for host A (1).
    let mut auth = host_auth(HOST_A, &secret(9));
    let mut challenge: Option<Vec<u8>> = None;
    let mut failure1_received = false;
    // Most streams start as a host would, to get past the Negotiate.
    let opening = rng.chance(2);
    for step in 0..1 + rng.below(16) {
        let cid = step as u16;
        let action = match (opening, step) {
            (true, 0) => 0,
            (true, 1) => 2,
            _ => rng.below(4),
        };
        let outcome = match action {
            0 | 1 => {
                let host_like = opening && step == 0;
                let message = if host_like {
                    auth.negotiate()
                } else {
                    random_message(&mut rng, &mut auth, challenge.as_deref())
                };
                let tl_differs = !host_like && rng.chance(6);
                let tl = message.len() as u32 + u32::from(tl_differs) * (1 + rng.below(8) as u32);
                let command = AuthCommand {
                    direction: AuthDirection::Send,
                    length: tl,
                }
                .to_command(cid);
                let command = with_in_capsule_sgl(command, cid, message.len());
                exchange(&mut client, command, &message).map(|completion| {
                    let status = completion.status();
                    if tl_differs {
                        assert_eq!(
                            (status.sct(), status.sc()),
                            (0, 0x02),
                            "seed {seed}: a Send whose TL is not its length: {status}"
                        );
                    }
                })
            }
            2 => {
                let transfer = if rng.chance(3) {
                    1 + rng.below(1024)
                } else {
                    4096
                };
                let al = if rng.chance(4) {
                    rng.below(2048) as u32
                } else {
                    transfer as u32
                };
                let command = AuthCommand {
                    direction: AuthDirection::Receive,
                    length: al,
                }
                .to_command(cid);
                let bytes = client.capsule_bytes(&with_transport_sgl(command, cid, transfer), &[]);
                client.send_lenient(&bytes);
                let mut data = None;
                loop {
                    match client.receive() {
                        Received::Closed => break None,
                        Received::Pdu(PduHeader::C2HData(_), received) => {
                            assert!(data.is_none(), "seed {seed}: two C2HData for one Receive");
                            data = Some(received);
                        }
                        Received::Pdu(PduHeader::CapsuleResp(completion), _) => {
                            break Some(completion)
                        }
                        other => panic!("seed {seed}: {other:?} in answer to a Receive"),
                    }
                }
                .map(|completion| {
                    let status = completion.status();
                    if al as usize != transfer {
                        assert_eq!(
                            (status.sct(), status.sc()),
                            (0, 0x02),
                            "seed {seed}: a Receive whose AL {al} is not its length {transfer}: {status}"
                        );
                    }
                    let Some(data) = data else { return };
                    assert!(status.is_success(), "seed {seed}: data with {status}");
                    assert!(
                        data.len() <= transfer,
                        "seed {seed}: {} bytes for a transfer of {transfer}",
                        data.len()
                    );
                    match Message::decode(&data) {
                        Ok(Message::Challenge(_)) => {
                            seen.challenges += 1;
                            challenge = Some(data.clone());
                        }
                        Ok(Message::Failure1(_)) => {
                            seen.failures += 1;
                            failure1_received = true;
                        }
                        Ok(Message::Success1(_)) => {
                            panic!("seed {seed}: Success1 for a host with the wrong key")
                        }
                        other => panic!("seed {seed}: a Receive returned {other:?}"),
                    }
                })
            }
            _ => {
                let command = if rng.chance(2) {
                    let command = Command {
                        cdw10: u32::from(cns::CONTROLLER),
                        ..Command::new(admin_opcode::IDENTIFY, 0)
                    };
                    with_transport_sgl(command, cid, 4096)
                } else {
                    with_transport_sgl(Command::nvm_rw(nvm_opcode::READ, 1, 0, 1), cid, BLOCK)
                };
                exchange(&mut client, command, &[]).map(|completion| {
                    let status = completion.status();
                    assert_eq!(
                        (status.sct(), status.sc(), status.dnr()),
                        (1, 0x91, true),
                        "seed {seed}: a command before authentication: {status}"
                    );
                })
            }
        };
        if outcome.is_none() {
            assert!(
                failure1_received,
                "seed {seed}: the queue closed without an AUTH_Failure1"
            );
            return seen;
        }
    }
    seen
}

#[test]
fn random_authentication_exchanges_never_authenticate_or_break_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), true);
    // The controller the fuzz streams' I/O queues attach to, authenticated with the right key.
    let mut host = target.host_with(host_options(HOST_A, Some(secret(1)), None));
    host.identify_controller().unwrap();
    let cntlid = host.cntlid();
    let baseline = fds_and_threads();
    let base = fuzz_seed_base();
    let target = &target;
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    (0..CONNECTIONS_PER_THREAD)
                        .map(|n| fuzz_connection(target, base + thread * 1_000_000 + n + 1, cntlid))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a fuzz thread panicked"))
            .collect()
    });
    let challenges: usize = seen.iter().map(|s| s.challenges).sum();
    let failures: usize = seen.iter().map(|s| s.failures).sum();
    assert!(
        challenges >= 20 && failures >= 10,
        "{challenges} challenges and {failures} failures in {} streams: the fuzzing is too tame",
        THREADS * CONNECTIONS_PER_THREAD
    );

    // The authenticated host goes on, and a new one authenticates and moves data.
    host.identify_controller()
        .expect("the fuzz host's controller");
    let mut fresh = target.host_with(host_options(HOST_A, Some(secret(1)), None));
    let mut queue = fresh
        .connect_io_queue(1, 8)
        .expect("I/O queue authenticates");
    let data = pattern(8 * BLOCK, 11);
    queue
        .execute(
            Command::nvm_rw(nvm_opcode::WRITE, 1, 40, 8),
            &data,
            0,
            "Write",
        )
        .expect("write");
    let (_, back) = queue
        .execute(
            Command::nvm_rw(nvm_opcode::READ, 1, 40, 8),
            &[],
            data.len(),
            "Read",
        )
        .expect("read");
    assert!(back == data, "data read back differs");
    drop(queue);
    drop(fresh);
    wait_for_baseline(baseline);
}
