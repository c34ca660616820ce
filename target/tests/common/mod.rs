//! Shared by the target's integration tests: a target running on loopback with RAM namespaces,
//! and a raw NVMe/TCP client built from the PDU encoders, for sending what a well-behaved host
//! never would and seeing exactly what comes back.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use std::os::fd::AsRawFd;
use vfnvme_host::{Host, HostError, HostOptions};
use vfnvme_spec::fabrics::{ConnectCommand, ConnectData, FabricsCommand, CNTLID_DYNAMIC};
use vfnvme_spec::sgl::SglDescriptor;
use vfnvme_spec::{Command, Completion, Status};
use vfnvme_target::backend::Drive;
use vfnvme_target::config::Config;
use vfnvme_target::tgt::{DriveControl, ShutdownReport, Target};
use vfnvme_tcp::pdu::{self, H2CData, ICReq, TermReq};
use vfnvme_tcp::{DecodeConfig, EncodeConfig, PduHeader, PduReader, ReadEvent, Role};
use vfnvme_test_support::ConfigText;

pub mod auth;
pub mod events;
pub mod rpc;
pub mod tls;

pub const NQN: &str = "nqn.2026-11.io.vfnvme:ram0";
/// The RAM namespace: 16 MiB of 512-byte blocks.
pub const NS_BYTES: u64 = 16 * 1024 * 1024;
pub const BLOCK: usize = 512;
pub const NS_BLOCKS: u64 = NS_BYTES / BLOCK as u64;
/// How long any test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A target on 127.0.0.1 with its acceptor on a thread; stopped (in order) when dropped.
pub struct RunningTarget {
    pub address: SocketAddr,
    /// Every listener's address, in configuration order (`address` is the first).
    pub addresses: Vec<SocketAddr>,
    /// The Prometheus endpoint's address, with `[metrics] address`.
    pub metrics: Option<SocketAddr>,
    /// Asks for drives to be given up (hot removal).
    pub drives: DriveControl,
    stop: Arc<EventFd>,
    thread: Option<std::thread::JoinHandle<ShutdownReport>>,
}

/// A configuration with `[target]` lines `target` and a listener on a free loopback port, for
/// the test to add its subsystems to.
pub fn loopback_config(target: &str) -> ConfigText {
    ConfigText::new(target).listener("127.0.0.1:0")
}

/// The configuration text of a target with `[target]` lines `target_extra` and one RAM
/// subsystem `NQN` (open to any host unless `subsystem_extra` says otherwise).
pub fn config_text(target_extra: &str, subsystem_extra: &str) -> String {
    let allow = if subsystem_extra.contains("allow_any_host") {
        ""
    } else {
        "allow_any_host = true\n"
    };
    loopback_config(target_extra)
        .subsystem(NQN, &format!("{allow}{subsystem_extra}"))
        .namespace(1, "ram_mib = 16")
        .text()
}

impl RunningTarget {
    /// Two poll groups and the defaults, plus `[target]` lines `extra`.
    pub fn start(extra: &str) -> Self {
        Self::with_config(&config_text(&format!("cores = 2\n{extra}"), ""))
    }

    pub fn with_config(text: &str) -> Self {
        Self::with_drives(text, Drive::open_pci)
    }

    /// As [`Self::with_config`], with `open_pci` opening the drive of each `pci` address.
    pub fn with_drives(
        text: &str,
        open_pci: impl FnMut(&str) -> vfnvme_driver::Result<Drive> + Send + 'static,
    ) -> Self {
        let config = Config::parse(text, "test.toml").expect("valid config");
        let mut target = Target::start_opening(config, open_pci).expect("target starts");
        let addresses = target.local_addresses().to_vec();
        let address = addresses[0];
        let drives = target.drive_control();
        let metrics = target.metrics_address();
        let stop = Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK).unwrap());
        let stop_for_thread = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            target.run_until(&*stop_for_thread).expect("acceptor runs");
            target.shut_down()
        });
        Self {
            address,
            addresses,
            metrics,
            drives,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the target (as SIGTERM does) and reports what its shutdown did.
    pub fn stop(mut self) -> ShutdownReport {
        self.stop_and_join()
            .expect("the target's thread did not panic")
    }

    fn stop_and_join(&mut self) -> std::thread::Result<ShutdownReport> {
        self.stop.write(1).unwrap();
        match self.thread.take() {
            Some(thread) => thread.join(),
            None => Ok(ShutdownReport::default()),
        }
    }

    /// A host with an enabled controller of `NQN`.
    pub fn host(&self) -> Host {
        self.host_with(options())
    }

    pub fn host_with(&self, options: HostOptions) -> Host {
        let mut host = Host::connect(self.address, NQN, options).expect("admin connect");
        host.enable().expect("enable");
        host
    }

    /// Proof the target still serves: a new host writes, reads back and compares.
    pub fn assert_serves(&self) {
        let mut host = self.host();
        let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
        let data = pattern(8 * BLOCK, 0x5a);
        let lba = NS_BLOCKS - 8;
        queue
            .execute(
                Command::nvm_rw(vfnvme_spec::nvm_opcode::WRITE, 1, lba, 8),
                &data,
                0,
                "Write",
            )
            .expect("write after the abuse");
        let (_, back) = queue
            .execute(
                Command::nvm_rw(vfnvme_spec::nvm_opcode::READ, 1, lba, 8),
                &[],
                data.len(),
                "Read",
            )
            .expect("read after the abuse");
        assert!(back == data, "data read back differs");
    }
}

impl Drop for RunningTarget {
    fn drop(&mut self) {
        let result = self.stop_and_join();
        if !std::thread::panicking() {
            result.expect("the target's thread did not panic");
        }
    }
}

pub fn options() -> HostOptions {
    HostOptions {
        timeout: PATIENCE,
        ..HostOptions::default()
    }
}

/// Deterministic test data: `len` bytes depending on `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes `blocks` blocks of namespace 1 at `lba` through `queue`, reads them back and
/// compares.
pub fn write_read_compare(queue: &mut vfnvme_host::HostQueue, lba: u64, blocks: u32, seed: u64) {
    let data = pattern(blocks as usize * BLOCK, seed);
    let write = Command::nvm_rw(vfnvme_spec::nvm_opcode::WRITE, 1, lba, blocks);
    queue.execute(write, &data, 0, "Write").expect("write");
    let read = Command::nvm_rw(vfnvme_spec::nvm_opcode::READ, 1, lba, blocks);
    let (_, back) = queue.execute(read, &[], data.len(), "Read").expect("read");
    assert!(back == data, "data read back differs");
}

/// The status a host-side command failure carries.
pub fn failed_status<T: std::fmt::Debug>(result: Result<T, HostError>) -> Status {
    match result {
        Err(HostError::Command { status, .. }) => status,
        other => panic!("expected a command failure, got {other:?}"),
    }
}

/// Waits until `socket` reads EOF (or the connection is reset), within `within`. Bytes that
/// arrive before are returned.
pub fn wait_for_eof(socket: &TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + within;
    let mut socket = socket.try_clone().map_err(|e| e.to_string())?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open after {within:?}"));
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(received),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// What the target sent, as the raw client sees it.
#[derive(Debug)]
pub enum Received {
    Pdu(PduHeader, Vec<u8>),
    /// The target closed the connection (EOF or reset).
    Closed,
}

/// A connection that speaks NVMe/TCP byte by byte, as the test wants it.
pub struct RawClient {
    pub socket: TcpStream,
    reader: PduReader,
    pub encode: EncodeConfig,
    buf: Vec<u8>,
    pub host_nqn: String,
    pub host_id: [u8; 16],
}

impl RawClient {
    pub fn open(address: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect_timeout(&address, PATIENCE).expect("connect"))
    }

    /// A client on a socket the test connected itself (from another source address, say).
    pub fn from_stream(socket: TcpStream) -> Self {
        socket.set_nodelay(true).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let defaults = HostOptions::default();
        Self {
            socket,
            reader: PduReader::new(DecodeConfig::initial(Role::Host), 64 * 1024),
            encode: EncodeConfig::default(),
            buf: vec![0; 1 << 20],
            host_nqn: defaults.host_nqn,
            host_id: defaults.host_id,
        }
    }

    /// Opened and past ICReq/ICResp with the given digests.
    pub fn established(address: SocketAddr, header_digest: bool, data_digest: bool) -> Self {
        let mut client = Self::open(address);
        client.ic(header_digest, data_digest);
        client
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).expect("send");
    }

    /// Sends and tolerates the target having closed already (for bytes it may not wait for).
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.socket.write_all(bytes);
    }

    pub fn ic_req_bytes(header_digest: bool, data_digest: bool) -> Vec<u8> {
        let mut out = vec![0u8; pdu::IC_PDU_LEN];
        let request = ICReq {
            pfv: pdu::PFV_1_0,
            hpda: 0,
            header_digest,
            data_digest,
            maxr2t: 0,
        };
        pdu::encode_ic_req(&request, &mut out).unwrap();
        out
    }

    /// ICReq, ICResp; the client then frames PDUs as negotiated.
    pub fn ic(&mut self, header_digest: bool, data_digest: bool) -> pdu::ICResp {
        self.send(&Self::ic_req_bytes(header_digest, data_digest));
        let response = match self.receive() {
            Received::Pdu(PduHeader::ICResp(response), _) => response,
            other => panic!("expected ICResp, got {other:?}"),
        };
        self.encode = EncodeConfig {
            header_digest: response.header_digest,
            data_digest: response.data_digest,
            pda: response.cpda,
        };
        self.reader.set_config(DecodeConfig {
            local_role: Role::Host,
            header_digest: response.header_digest,
            data_digest: response.data_digest,
            pda: 0,
            max_in_capsule_data: 0,
            max_data_pdu_len: 4 << 20,
        });
        response
    }

    /// A CapsuleCmd as bytes, `data` in the capsule.
    pub fn capsule_bytes(&mut self, command: &Command, data: &[u8]) -> Vec<u8> {
        let len = pdu::encode_capsule_cmd(&self.encode, command, data, &mut self.buf)
            .expect("capsule encodes");
        self.buf[..len].to_vec()
    }

    pub fn send_capsule(&mut self, command: &Command, data: &[u8]) {
        let bytes = self.capsule_bytes(command, data);
        self.send(&bytes);
    }

    /// An H2CData PDU as bytes.
    pub fn h2c_bytes(&mut self, header: H2CData, data: &[u8]) -> Vec<u8> {
        let len = PduHeader::H2CData(header)
            .encode(&self.encode, &[data], &mut self.buf)
            .expect("H2CData encodes");
        self.buf[..len].to_vec()
    }

    /// A Connect command and its data for queue `qid` of controller `cntlid`.
    pub fn connect_bytes(&mut self, subnqn: &str, qid: u16, cntlid: u16, entries: u16) -> Vec<u8> {
        let mut command = FabricsCommand::Connect(ConnectCommand {
            recfmt: 0,
            qid,
            sqsize: entries - 1,
            cattr: 0,
            kato_ms: 0,
        })
        .to_command(0x77);
        let data = ConnectData {
            host_id: self.host_id,
            cntlid,
            subsystem_nqn: subnqn.to_owned(),
            host_nqn: self.host_nqn.clone(),
        }
        .to_bytes();
        SglDescriptor::in_capsule(data.len() as u32).store_in(&mut command);
        self.capsule_bytes(&command, &data)
    }

    /// Connects queue `qid` (0: a new controller of `subnqn`); returns DW0 of the response.
    pub fn connect(&mut self, subnqn: &str, qid: u16, cntlid: u16, entries: u16) -> Completion {
        let bytes = self.connect_bytes(subnqn, qid, cntlid, entries);
        self.send(&bytes);
        let response = self.expect_response();
        assert!(
            response.status().is_success(),
            "Connect failed: {}",
            response.status()
        );
        response
    }

    /// Connects I/O queue `qid` of the controller `host` created (same host NQN and ID).
    pub fn connect_io_of(&mut self, host: &Host, qid: u16, entries: u16) -> Completion {
        self.connect(NQN, qid, host.cntlid(), entries)
    }

    /// Connects a new admin queue of `NQN`.
    pub fn connect_admin(&mut self) -> Completion {
        self.connect(NQN, 0, CNTLID_DYNAMIC, 32)
    }

    /// The next PDU with its data, or `Closed`.
    pub fn receive(&mut self) -> Received {
        let mut pending: Option<(PduHeader, Vec<u8>)> = None;
        loop {
            match self.reader.poll() {
                Err(error) => panic!("the target sent a malformed PDU: {error}"),
                Ok(ReadEvent::NeedMoreBytes) => match self.socket.read(self.reader.recv_buffer()) {
                    Ok(0) => return Received::Closed,
                    Ok(n) => self.reader.commit_received(n),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        return Received::Closed
                    }
                    Err(e) => panic!("receive: {e} (nothing from the target in time?)"),
                },
                Ok(ReadEvent::Header { header, layout }) => {
                    if layout.data_len == 0 {
                        return Received::Pdu(header, Vec::new());
                    }
                    pending = Some((header, Vec::with_capacity(layout.data_len)));
                }
                Ok(ReadEvent::Data { remaining }) => {
                    let (_, data) = pending.as_mut().expect("data after a header");
                    let start = data.len();
                    data.resize(start + remaining, 0);
                    let copied = self.reader.copy_buffered_data(&mut data[start..]);
                    data.truncate(start + copied);
                    if copied == 0 {
                        let mut chunk = vec![0u8; remaining];
                        match self.socket.read(&mut chunk) {
                            Ok(0) => return Received::Closed,
                            Ok(n) => {
                                self.reader.data_received_directly(&chunk[..n]);
                                data.extend_from_slice(&chunk[..n]);
                            }
                            Err(e) => panic!("receive: {e}"),
                        }
                    }
                }
                Ok(ReadEvent::DataComplete(digest)) => {
                    digest.expect("the target's data digest is right");
                    let (header, data) = pending.take().expect("data after a header");
                    return Received::Pdu(header, data);
                }
            }
        }
    }

    /// The next PDU, which must be a CapsuleResp.
    pub fn expect_response(&mut self) -> Completion {
        match self.receive() {
            Received::Pdu(PduHeader::CapsuleResp(completion), _) => completion,
            other => panic!("expected a CapsuleResp, got {other:?}"),
        }
    }

    /// The next PDU, which must be an R2T.
    pub fn expect_r2t(&mut self) -> pdu::R2T {
        match self.receive() {
            Received::Pdu(PduHeader::R2T(r2t), _) => r2t,
            other => panic!("expected an R2T, got {other:?}"),
        }
    }

    /// The target must send a C2HTermReq and then close. Returns it with the offending header
    /// it carried.
    pub fn expect_termination(&mut self) -> (TermReq, Vec<u8>) {
        let terminated = loop {
            match self.receive() {
                Received::Pdu(PduHeader::C2HTermReq(term), data) => break (term, data),
                Received::Pdu(PduHeader::CapsuleResp(_) | PduHeader::R2T(_), _) => continue,
                other => panic!("expected a C2HTermReq, got {other:?}"),
            }
        };
        self.expect_closed();
        terminated
    }

    /// The target must close the connection without sending anything more.
    pub fn expect_closed(&mut self) {
        match self.receive() {
            Received::Closed => {}
            other => panic!("expected the target to close, got {other:?}"),
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.socket.shutdown(Shutdown::Write);
    }
}

/// A command with a transport SGL (data moved by C2HData, or H2CData after R2T) of `len`.
pub fn with_transport_sgl(mut command: Command, cid: u16, len: usize) -> Command {
    command.set_cid(cid);
    let sgl = if len == 0 {
        SglDescriptor::default()
    } else {
        SglDescriptor::transport(len as u32)
    };
    sgl.store_in(&mut command);
    command
}

/// A command with `len` bytes of in-capsule data.
pub fn with_in_capsule_sgl(mut command: Command, cid: u16, len: usize) -> Command {
    command.set_cid(cid);
    SglDescriptor::in_capsule(len as u32).store_in(&mut command);
    command
}

/// A connection to `target` from source address `source` (any 127.0.0.0/8 address reaches
/// loopback): another host as the target counts them.
pub fn connect_from(source: [u8; 4], target: SocketAddr) -> TcpStream {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let [a, b, c, d] = source;
    bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0)).expect("bind the source address");
    let SocketAddr::V4(target) = target else {
        panic!("an IPv4 listener")
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(target)).expect("connect");
    TcpStream::from(fd)
}

/// Makes room for `fds` open files (the soft limit up to the hard one); fails the test if
/// the hard limit is below it, rather than letting it fail later for a reason it hides.
pub fn raise_fd_limit(fds: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= fds,
        "this test needs {fds} open files; the hard limit is {hard} (raise it: ulimit -Hn)"
    );
    if soft < fds {
        setrlimit(Resource::RLIMIT_NOFILE, fds, hard).expect("setrlimit");
    }
}

fn entries_of(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    entries_of("/proc/self/fd")
}

/// Open file descriptors and threads of this process.
pub fn fds_and_threads() -> (usize, usize) {
    (open_fds(), entries_of("/proc/self/task"))
}

/// Waits until the process's fds and threads are back to `baseline` (what a test's
/// connections took is given back).
pub fn wait_for_baseline(baseline: (usize, usize)) {
    vfnvme_test_support::poll_until(
        PATIENCE,
        Duration::from_millis(10),
        || (fds_and_threads() == baseline).then_some(()),
        || {
            let now = fds_and_threads();
            format!("fds and threads {now:?} did not return to {baseline:?}")
        },
    );
}

/// The first seed of a randomized test's streams: `VFNVME_FUZZ_SEED` explores others, the
/// default is fixed.
pub fn fuzz_seed_base() -> u64 {
    std::env::var("VFNVME_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0)
}

/// xorshift64*: small, fast and good enough to explore input space (no crate needed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// Uniform in `1..=max`.
    pub fn size(&mut self, max: usize) -> usize {
        1 + self.below(max)
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// Below `rare` one time in `one_in`, else below `usual`.
    pub fn below_mostly(&mut self, one_in: usize, rare: usize, usual: usize) -> usize {
        let bound = if self.chance(one_in) { rare } else { usual };
        self.below(bound)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
