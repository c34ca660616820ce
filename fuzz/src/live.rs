//! The `connection` target's target: a real [`Target`] (acceptor, poll group, RAM namespace)
//! started once per process on loopback. Each input is what a host writes on a fresh TCP
//! connection; the host then closes its sending side and reads until the target closes.
//! What came back must be well-formed, and every so often a well-behaved host proves the
//! target still serves.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::time::TimeSpec;
use vfnvme_host::{Host, HostOptions};
use vfnvme_spec::nvm_opcode;
use vfnvme_spec::tcp::fes;
use vfnvme_spec::Command;
use vfnvme_target::config::Config;
use vfnvme_target::tgt::Target;
use vfnvme_tcp::framing::MIN_RECV_BUFFER_LEN;
use vfnvme_tcp::pdu::{ICReq, IC_PDU_LEN};
use vfnvme_tcp::{DecodeConfig, PduHeader, PduReader, ReadEvent, Role};

use crate::controllers::{PERSISTENT_CNTLID, SUBSYSTEM_NQN};

/// The I/O queue the seeds connect to the persistent controller.
pub const SEED_IO_QID: u16 = 1;
/// The I/O queue of the health check: the last one a controller is granted by default, away
/// from the seeds' queue.
const HEALTH_QID: u16 = 64;
pub const BLOCK: usize = 512;
pub const NS_BLOCKS: u64 = (1 << 20) / BLOCK as u64;
/// How long the target may take to close a connection after the host's last byte and EOF.
/// Longer is a hang.
const CLOSE_BOUND: Duration = Duration::from_secs(5);
/// A host that waits for its answers closes once the target has been silent this long.
const QUIET: Duration = Duration::from_micros(500);
/// ... and at the latest this long after connecting.
const MAX_LINGER: Duration = Duration::from_secs(1);
/// Inputs between two health checks.
const HEALTH_EVERY: u64 = 512;

/// The target and the well-behaved host that keeps the persistent controller.
pub struct LiveTarget {
    address: SocketAddr,
    host: Mutex<Host>,
    inputs: AtomicU64,
    /// The acceptor runs until this end of the pair closes, which is never.
    _stop: UnixStream,
}

impl LiveTarget {
    pub fn get() -> &'static LiveTarget {
        static LIVE: OnceLock<LiveTarget> = OnceLock::new();
        LIVE.get_or_init(LiveTarget::start)
    }

    fn start() -> LiveTarget {
        // The appliance ignores SIGPIPE (Rust's runtime does, in `vfnvme serve`); libFuzzer's
        // main does not. Blocked in this thread, it stays blocked in the target's threads.
        SigSet::from(Signal::SIGPIPE)
            .thread_block()
            .expect("SIGPIPE blocked");
        let text = format!(
            "[target]\ncores = 1\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n\
             [[subsystem]]\nnqn = \"{SUBSYSTEM_NQN}\"\nallow_any_host = true\n\n\
             [[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n"
        );
        let config = Config::parse(&text, "fuzz.toml").expect("the fuzz configuration is valid");
        let mut target = Target::start(config).expect("the target starts");
        let address = target.local_addresses()[0];
        let (stop, stop_for_acceptor) = UnixStream::pair().expect("a socket pair");
        std::thread::spawn(move || {
            target
                .run_until(stop_for_acceptor.as_fd())
                .expect("the acceptor runs")
        });
        let mut host = Host::connect(address, SUBSYSTEM_NQN, host_options()).expect("Connect");
        host.enable().expect("enable");
        assert_eq!(host.cntlid(), PERSISTENT_CNTLID);
        LiveTarget {
            address,
            host: Mutex::new(host),
            inputs: AtomicU64::new(0),
            _stop: stop,
        }
    }

    /// Writes `input` on a new connection, closes the sending side and returns all the target
    /// sent until it closed. With `wait_for_quiet`, the host closes only once the target has
    /// sent nothing for [`QUIET`] (so that commands completing after the input was read are
    /// answered); else right after its last byte, as a host that goes away. Panics if the
    /// target neither takes the input nor closes within [`CLOSE_BOUND`], or does not close
    /// within it after the host's EOF: a hang.
    pub fn exchange(&self, input: &[u8], wait_for_quiet: bool) -> Vec<u8> {
        let mut socket = TcpStream::connect(self.address).expect("connect to the target");
        socket.set_nodelay(true).expect("TCP_NODELAY");
        socket.set_nonblocking(true).expect("non-blocking");
        let started = Instant::now();
        let mut deadline = started + CLOSE_BOUND;
        let mut sent = 0;
        let mut write_open = true;
        let mut last_activity = started;
        let mut received = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let now = Instant::now();
            if write_open && sent == input.len() {
                let lingered =
                    !wait_for_quiet || now >= last_activity + QUIET || now >= started + MAX_LINGER;
                if lingered {
                    let _ = socket.shutdown(Shutdown::Write);
                    write_open = false;
                    deadline = now + CLOSE_BOUND;
                }
            }
            assert!(
                now < deadline,
                "hang: the target kept the connection open {CLOSE_BOUND:?} {} ({sent} of {} \
                 bytes taken, {} sent back)",
                if write_open {
                    "without reading"
                } else {
                    "after the host's EOF"
                },
                input.len(),
                received.len()
            );
            let (events, wake) = match (write_open, sent == input.len()) {
                (true, false) => (PollFlags::POLLIN | PollFlags::POLLOUT, deadline),
                (true, true) => (PollFlags::POLLIN, last_activity + QUIET),
                (false, _) => (PollFlags::POLLIN, deadline),
            };
            let mut fds = [PollFd::new(socket.as_fd(), events)];
            let timeout = TimeSpec::from_duration(wake.saturating_duration_since(now));
            match ppoll(&mut fds, Some(timeout), None) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => panic!("poll: {e}"),
            }
            let ready = fds[0].revents().unwrap_or(PollFlags::empty());
            if write_open && sent < input.len() && !ready.is_empty() {
                match socket.write(&input[sent..]) {
                    Ok(n) => {
                        sent += n;
                        last_activity = Instant::now();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The target closed: the rest of the input is not read by anyone.
                    Err(_) => sent = input.len(),
                }
            }
            if ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                loop {
                    match socket.read(&mut buf) {
                        Ok(0) => return received,
                        Ok(n) => {
                            received.extend_from_slice(&buf[..n]);
                            last_activity = Instant::now();
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return received,
                    }
                }
            }
        }
    }

    /// Counts an input; every [`HEALTH_EVERY`] inputs, proves the target still serves.
    pub fn after_input(&self) {
        if self.inputs.fetch_add(1, Ordering::Relaxed) % HEALTH_EVERY == HEALTH_EVERY - 1 {
            self.assert_serves();
        }
    }

    /// The persistent controller still answers, and a new I/O queue of it writes, reads back
    /// and compares.
    pub fn assert_serves(&self) {
        let mut host = self.host.lock().unwrap_or_else(|e| e.into_inner());
        host.keep_alive()
            .expect("the persistent controller answers Keep Alive");
        // A fuzz input may have used the same QID: its connection is closed, but its queue is
        // detached by the target's thread just after the socket closes. A few attempts.
        let mut attempts = 0;
        let mut queue = loop {
            attempts += 1;
            match host.connect_io_queue(HEALTH_QID, 8) {
                Ok(queue) => break queue,
                Err(e) if attempts < 5 => drop(e),
                Err(e) => panic!("the target no longer connects an I/O queue: {e}"),
            }
        };
        let lba = NS_BLOCKS - 8;
        let data: Vec<u8> = (0..8 * BLOCK).map(|i| (i * 7 + 3) as u8).collect();
        queue
            .execute(
                Command::nvm_rw(nvm_opcode::WRITE, 1, lba, 8),
                &data,
                0,
                "Write",
            )
            .expect("a well-behaved host's write");
        let (_, back) = queue
            .execute(
                Command::nvm_rw(nvm_opcode::READ, 1, lba, 8),
                &[],
                data.len(),
                "Read",
            )
            .expect("a well-behaved host's read");
        assert!(back == data, "data read back differs from what was written");
        queue.disconnect().expect("Disconnect");
    }
}

fn host_options() -> HostOptions {
    HostOptions {
        timeout: CLOSE_BOUND,
        ..HostOptions::default()
    }
}

/// The HPDA a stream that starts with a valid ICReq asks for.
fn requested_hpda(input: &[u8]) -> u8 {
    let mut reader = PduReader::new(DecodeConfig::initial(Role::Controller), MIN_RECV_BUFFER_LEN);
    let len = input.len().min(IC_PDU_LEN);
    reader.recv_buffer()[..len].copy_from_slice(&input[..len]);
    reader.commit_received(len);
    match reader.poll() {
        Ok(ReadEvent::Header {
            header: PduHeader::ICReq(ICReq { hpda, .. }),
            ..
        }) => hpda,
        _ => 0,
    }
}

/// What the target sent in answer to `input`: well-formed PDUs only (framing, digests, the
/// data alignment the host asked for), ICResp or a C2HTermReq first, a C2HTermReq with a
/// defined FES and nothing after it. A PDU cut short at the end is allowed: the target drops
/// what it has not sent when it closes.
pub fn check_responses(input: &[u8], received: &[u8]) {
    const FES: [u16; 6] = [
        fes::INVALID_HEADER_FIELD,
        fes::PDU_SEQUENCE_ERROR,
        fes::HEADER_DIGEST_ERROR,
        fes::DATA_OUT_OF_RANGE,
        fes::DATA_LIMIT_EXCEEDED,
        fes::UNSUPPORTED_PARAMETER,
    ];
    let mut reader = PduReader::new(DecodeConfig::initial(Role::Host), 8 * 1024);
    let mut scratch = [0u8; 8 * 1024];
    let mut rest = received;
    let mut pdus = 0;
    let mut terminated = false;
    loop {
        match reader.poll() {
            Err(error) => panic!("the target sent a malformed PDU (PDU {pdus}): {error}"),
            Ok(ReadEvent::NeedMoreBytes) => {
                if rest.is_empty() {
                    return;
                }
                let buffer = reader.recv_buffer();
                let len = buffer.len().min(rest.len());
                buffer[..len].copy_from_slice(&rest[..len]);
                reader.commit_received(len);
                rest = &rest[len..];
            }
            Ok(ReadEvent::Header { header, .. }) => {
                assert!(
                    !terminated,
                    "the target sent {header:?} after its C2HTermReq"
                );
                match header {
                    PduHeader::ICResp(response) => {
                        assert_eq!(pdus, 0, "ICResp after the first PDU");
                        reader.set_config(DecodeConfig {
                            local_role: Role::Host,
                            header_digest: response.header_digest,
                            data_digest: response.data_digest,
                            pda: requested_hpda(input),
                            max_in_capsule_data: 0,
                            max_data_pdu_len: u32::MAX,
                        });
                    }
                    PduHeader::C2HTermReq(term) => {
                        assert!(FES.contains(&term.fes), "C2HTermReq with FES {}", term.fes);
                        terminated = true;
                    }
                    other => assert!(pdus > 0, "the target's first PDU is {other:?}"),
                }
                pdus += 1;
            }
            Ok(ReadEvent::Data { remaining }) => {
                if reader.copy_buffered_data(&mut scratch) == 0 {
                    if rest.is_empty() {
                        return;
                    }
                    let len = remaining.min(rest.len());
                    reader.data_received_directly(&rest[..len]);
                    rest = &rest[len..];
                }
            }
            Ok(ReadEvent::DataComplete(digest)) => {
                digest.expect("the target's data digest is right");
            }
        }
    }
}
