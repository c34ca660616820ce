//! Random input on a live target's TLS listener, from several threads: before the handshake
//! (random bytes, a plain ICReq, real ClientHellos with flipped, cut or added bytes, which
//! also reach the PSK callback with garbled identities); inside an established TLS session
//! (an ICReq, then valid, mutated and random PDU bytes as plaintext); and under it (random
//! bytes written to the TCP stream after the handshake, which no record can decrypt).
//!
//! Invariants: the target closes every such connection within a bound once the host has
//! stopped sending (no hang, no spin); once all are closed its file descriptors and threads
//! are back to where they started; a TLS host then still writes and reads back its data.
//!
//! Deterministic input: a fixed-seed generator per connection (`VFNVME_FUZZ_SEED` explores
//! others). One test in this binary: the fd and thread counts are the process's.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::auth::HOST_A;
use common::tls::{host_a_context, psk_a, target, tls_options};
use common::*;
use openssl::ssl::{Ssl, SslContext};
use vfnvme_spec::fabrics::{ConnectCommand, ConnectData, FabricsCommand, CNTLID_DYNAMIC};
use vfnvme_spec::sgl::SglDescriptor;
use vfnvme_spec::{nvm_opcode, Command};
use vfnvme_tcp::{pdu, EncodeConfig};

const THREADS: u64 = 3;
const CONNECTIONS_PER_THREAD: u64 = 40;
/// How long the target may take to close a connection after the host's last byte and EOF.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// The first flight of a real client: a ClientHello offering host A's PSK identity.
fn client_hello(context: &SslContext) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let context = context.clone();
    let client = std::thread::Builder::new()
        .name(HELLO_THREAD.into())
        .spawn(move || {
            let stream = TcpStream::connect(address).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            // The handshake fails when the listener closes; the hello is what it sent first.
            drop(Ssl::new(&context).unwrap().connect(stream));
        })
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).unwrap();
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut hello = header.to_vec();
    hello.resize(5 + len, 0);
    stream.read_exact(&mut hello[5..]).unwrap();
    drop(stream);
    client.join().unwrap();
    // A joined thread can still be listed in /proc/self/task for a moment: the fuzzing's
    // baseline of threads is taken after it has gone.
    vfnvme_test_support::poll_until(
        PATIENCE,
        std::time::Duration::from_millis(1),
        || (!hello_thread_listed()).then_some(()),
        || format!("thread {HELLO_THREAD} is still listed after it was joined"),
    );
    hello
}

const HELLO_THREAD: &str = "tls-hello";

fn hello_thread_listed() -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .any(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == HELLO_THREAD)
        })
}

/// Flips a few bytes, or cuts or extends `bytes`.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    match rng.below(3) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        1 => bytes.truncate(rng.below(bytes.len())),
        _ => {
            let extra = rng.size(256);
            bytes.extend(rng.bytes(extra));
        }
    }
    bytes
}

/// A CapsuleCmd PDU (no digests) of `command` with `data` in the capsule.
fn capsule(command: &Command, data: &[u8]) -> Vec<u8> {
    let mut buffer = vec![0u8; 8192 + 128];
    let len = pdu::encode_capsule_cmd(&EncodeConfig::default(), command, data, &mut buffer)
        .expect("capsule encodes");
    buffer.truncate(len);
    buffer
}

/// Plaintext a host might send inside the session: an ICReq, then PDUs of a Connect (as host
/// A, so it may succeed), reads and writes, some mutated, some random bytes.
fn session_plaintext(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = RawClient::ic_req_bytes(false, false);
    if rng.chance(4) {
        bytes = mutate(rng, bytes);
    }
    for _ in 0..rng.size(6) {
        let pdu = match rng.below(4) {
            0 => {
                let mut command = FabricsCommand::Connect(ConnectCommand {
                    recfmt: 0,
                    qid: rng.below(3) as u16,
                    sqsize: 31,
                    cattr: 0,
                    kato_ms: 0,
                })
                .to_command(rng.below(8) as u16);
                let data = ConnectData {
                    host_id: *b"tls-fuzz-host-01",
                    cntlid: CNTLID_DYNAMIC,
                    subsystem_nqn: NQN.into(),
                    host_nqn: HOST_A.into(),
                }
                .to_bytes();
                SglDescriptor::in_capsule(data.len() as u32).store_in(&mut command);
                capsule(&command, &data)
            }
            1 => {
                let read = Command::nvm_rw(nvm_opcode::READ, 1, rng.below(64) as u64, 8);
                capsule(&with_transport_sgl(read, rng.below(8) as u16, 4096), &[])
            }
            2 => {
                let data = rng.bytes(BLOCK);
                let write = Command::nvm_rw(nvm_opcode::WRITE, 1, rng.below(64) as u64, 1);
                capsule(
                    &with_in_capsule_sgl(write, rng.below(8) as u16, BLOCK),
                    &data,
                )
            }
            _ => {
                let len = rng.size(300);
                rng.bytes(len)
            }
        };
        bytes.extend(if rng.chance(3) { mutate(rng, pdu) } else { pdu });
    }
    bytes
}

/// Reads until the target closes (EOF, reset, or a TLS error ending the session); how many
/// bytes came before.
fn wait_for_close(stream: &mut impl Read, seed: u64) -> usize {
    let mut buffer = [0u8; 4096];
    let mut received = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received += n,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("stream {seed}: the target did not close within {CLOSE_BOUND:?}")
            }
            Err(_) => return received,
        }
    }
}

/// Sessions that got past the handshake, and those where the target answered inside one.
#[derive(Default)]
struct Seen {
    sessions: usize,
    answered: usize,
}

fn fuzz_connection(
    target: &RunningTarget,
    hello: &[u8],
    context: &SslContext,
    seed: u64,
    seen: &mut Seen,
) {
    let mut rng = Rng::new(seed);
    let tls_listener = target.addresses[0];
    let stream = TcpStream::connect_timeout(&tls_listener, PATIENCE).unwrap();
    stream.set_read_timeout(Some(CLOSE_BOUND)).unwrap();
    stream.set_nodelay(true).unwrap();
    match rng.below(4) {
        // Before the handshake.
        0 | 1 => {
            let bytes = match rng.below(3) {
                0 => {
                    let len = rng.size(2048);
                    rng.bytes(len)
                }
                1 => RawClient::ic_req_bytes(false, false),
                _ => mutate(&mut rng, hello.to_vec()),
            };
            let mut raw = &stream;
            // The target may close before all is written.
            drop(raw.write_all(&bytes));
            drop(stream.shutdown(Shutdown::Write));
            wait_for_close(&mut raw, seed);
        }
        // Inside the session.
        2 => {
            let plaintext = session_plaintext(&mut rng);
            let ssl = Ssl::new(context).unwrap();
            let mut session = ssl.connect(stream).expect("the right PSK handshakes");
            for chunk in plaintext.chunks(rng.size(512)) {
                if session.write_all(chunk).is_err() {
                    break;
                }
            }
            drop(session.get_ref().shutdown(Shutdown::Write));
            seen.sessions += 1;
            if wait_for_close(&mut session, seed) > 0 {
                seen.answered += 1;
            }
        }
        // Under it: bytes no record decrypts.
        _ => {
            let ssl = Ssl::new(context).unwrap();
            let session = ssl.connect(stream).expect("the right PSK handshakes");
            seen.sessions += 1;
            let mut raw = session.get_ref();
            let len = rng.size(1024);
            drop(raw.write_all(&rng.bytes(len)));
            drop(raw.shutdown(Shutdown::Write));
            wait_for_close(&mut raw, seed);
        }
    }
}

#[test]
fn random_input_on_a_tls_listener_is_closed_and_the_target_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let target = target(dir.path(), false);
    let context = host_a_context();
    let hello = client_hello(&context);
    let baseline = fds_and_threads();
    let base = fuzz_seed_base();
    let (target, hello, context) = (&target, &hello, &context);
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    let mut seen = Seen::default();
                    for n in 0..CONNECTIONS_PER_THREAD {
                        let seed = base + thread * 1_000_000 + n + 1;
                        fuzz_connection(target, hello, context, seed, &mut seen);
                    }
                    seen
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a fuzz thread panicked"))
            .collect()
    });
    let sessions: usize = seen.iter().map(|s| s.sessions).sum();
    let answered: usize = seen.iter().map(|s| s.answered).sum();
    assert!(
        sessions >= 30 && answered >= 10,
        "{sessions} sessions, {answered} answered inside TLS: the fuzzing is too tame"
    );
    wait_for_baseline(baseline);

    let mut host =
        vfnvme_host::Host::connect(target.addresses[0], NQN, tls_options(HOST_A, psk_a()))
            .expect("a TLS host connects after the fuzzing");
    host.enable().unwrap();
    let mut queue = host.connect_io_queue(1, 8).unwrap();
    write_read_compare(&mut queue, 32, 64, 7);
}
