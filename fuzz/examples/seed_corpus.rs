//! Writes the seed corpus, `fuzz/corpus/<target>/seed-*`: valid PDUs of each type for both
//! receivers and digest settings, whole host sessions (admin, I/O, discovery), valid and
//! boundary Connect commands and data, admin command sequences, and real configuration files.
//! Run from fuzz/: `cargo run --example seed_corpus`. Deterministic: rerunning it changes
//! nothing. Inputs libFuzzer adds to these directories are not committed (fuzz/.gitignore).

use std::fs;
use std::path::{Path, PathBuf};

use vfnvme_fuzz::controllers::SUBSYSTEM_NQN;
use vfnvme_fuzz::host_stream::{connect_data, HostStream};
use vfnvme_fuzz::live::{BLOCK, NS_BLOCKS, PERSISTENT_CNTLID, SEED_IO_QID};
use vfnvme_fuzz::pdu_input::{settings_byte, PduInput};
use vfnvme_spec::fabrics::{
    fctype, ConnectCommand, FabricsCommand, PropertyGet, PropertySet, PropertySize, CNTLID_DYNAMIC,
    DISCOVERY_NQN,
};
use vfnvme_spec::log_page::log_id;
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::{admin_opcode, cns, feature, nvm_opcode, Command, Completion, DsmRange};
use vfnvme_tcp::pdu::{C2HData, H2CData, ICReq, ICResp, TermReq, PFV_1_0, R2T};
use vfnvme_tcp::{PduHeader, Role};

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut written = 0;
    for (target, seeds) in [
        ("pdu", pdu_seeds()),
        ("connection", connection_seeds()),
        ("connect_data", connect_data_seeds()),
        ("admin", admin_seeds()),
        ("config", config_seeds()),
    ] {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        for old in fs::read_dir(&dir).expect("corpus directory") {
            let path = old.expect("directory entry").path();
            if is_seed(&path) {
                fs::remove_file(&path).expect("old seed removed");
            }
        }
        for (name, bytes) in seeds {
            let path: PathBuf = dir.join(format!("seed-{name}"));
            fs::write(&path, bytes).expect("seed written");
            written += 1;
        }
    }
    println!("{written} seeds written under {}", corpus.display());
}

fn is_seed(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("seed-"))
}

type Seeds = Vec<(String, Vec<u8>)>;

fn sample_command() -> Command {
    let mut command = Command::nvm_rw(nvm_opcode::WRITE, 1, 8, 1);
    command.set_cid(7);
    command
}

/// One PDU of each type each receiver accepts, framed with and without digests, aligned or
/// not; then whole streams that negotiate first, read in small chunks.
fn pdu_seeds() -> Seeds {
    let data: Vec<u8> = (0..512u32).map(|i| (i * 13) as u8).collect();
    let from_host: [(&str, PduHeader, &[u8]); 5] = [
        ("icreq", PduHeader::ICReq(ic_req()), &[]),
        ("capsule", PduHeader::CapsuleCmd(sample_command()), &[]),
        (
            "capsule-data",
            PduHeader::CapsuleCmd(sample_command()),
            &data,
        ),
        ("h2cdata", PduHeader::H2CData(h2c(data.len())), &data),
        ("h2ctermreq", PduHeader::H2CTermReq(term()), &data[..24]),
    ];
    let from_controller: [(&str, PduHeader, &[u8]); 5] = [
        ("icresp", PduHeader::ICResp(ic_resp()), &[]),
        ("capsuleresp", PduHeader::CapsuleResp(completion()), &[]),
        ("c2hdata", PduHeader::C2HData(c2h(data.len())), &data),
        ("r2t", PduHeader::R2T(r2t()), &[]),
        ("c2htermreq", PduHeader::C2HTermReq(term()), &data[..72]),
    ];
    let mut seeds = Vec::new();
    for (receiver, pdus) in [(Role::Controller, from_host), (Role::Host, from_controller)] {
        for (digests, pda_choice) in [(false, 0), (true, 0), (false, 1), (true, 3)] {
            for (name, header, data) in &pdus {
                let settings =
                    settings_byte(receiver, digests, digests, false, pda_choice, false, false);
                let input = [settings, 0];
                let parsed = PduInput::parse(&input).expect("two bytes parse");
                let mut out = vec![0u8; 1024];
                let len = header
                    .encode(&parsed.encode_config(), &[data], &mut out)
                    .expect("seed PDU encodes");
                let mut bytes = input.to_vec();
                bytes.extend_from_slice(&out[..len]);
                let framing = if digests { "digests" } else { "plain" };
                seeds.push((format!("{name}-{framing}-pda{pda_choice}"), bytes));
            }
        }
    }
    for (digests, small_buffer, direct) in [(false, false, false), (true, true, true)] {
        let settings = settings_byte(
            Role::Controller,
            digests,
            digests,
            true,
            0,
            small_buffer,
            direct,
        );
        let stream = HostStream::new()
            .ic_req(digests, digests, 0)
            .command(sample_command(), 7, &data[..256], 0)
            .command(Command::nvm_rw(nvm_opcode::WRITE, 1, 0, 1), 8, &[], 512)
            .h2c_data(8, 0, 0, &data, true)
            .into_bytes();
        let mut bytes = vec![settings, 0x2a];
        bytes.extend_from_slice(&stream);
        let name = if digests {
            "session-digests"
        } else {
            "session-plain"
        };
        seeds.push((name.to_owned(), bytes));
    }
    seeds
}

fn ic_req() -> ICReq {
    ICReq {
        pfv: PFV_1_0,
        hpda: 0,
        header_digest: true,
        data_digest: true,
        maxr2t: 0,
    }
}

fn ic_resp() -> ICResp {
    ICResp {
        pfv: PFV_1_0,
        cpda: 0,
        header_digest: true,
        data_digest: false,
        maxh2cdata: 16384,
    }
}

fn term() -> TermReq {
    TermReq { fes: 1, fei: 4 }
}

fn completion() -> Completion {
    Completion {
        result: 1,
        sq_head: 3,
        cid: 7,
        ..Completion::default()
    }
}

fn h2c(len: usize) -> H2CData {
    H2CData {
        cccid: 7,
        ttag: 1,
        datao: 0,
        datal: len as u32,
        last: true,
    }
}

fn c2h(len: usize) -> C2HData {
    C2HData {
        cccid: 7,
        datao: 0,
        datal: len as u32,
        last: true,
        success: true,
    }
}

fn r2t() -> R2T {
    R2T {
        cccid: 7,
        ttag: 1,
        r2to: 0,
        r2tl: 8192,
    }
}

fn property_get(offset: usize, size: PropertySize) -> Command {
    FabricsCommand::PropertyGet(PropertyGet {
        size,
        offset: offset as u32,
    })
    .to_command(0)
}

fn property_set_cc(cc: Cc) -> Command {
    FabricsCommand::PropertySet(PropertySet {
        size: PropertySize::Four,
        offset: regs::CC as u32,
        value: u64::from(cc.into_bits()),
    })
    .to_command(0)
}

fn admin(opcode: u8, nsid: u32, cdw10: u32, cdw11: u32) -> Command {
    Command {
        cdw10,
        cdw11,
        ..Command::new(opcode, nsid)
    }
}

/// Get Log Page `lid`, `len` bytes (a multiple of 4) from `offset`.
fn get_log(lid: u8, len: u32, offset: u64) -> Command {
    let numd = len / 4 - 1;
    Command {
        cdw12: offset as u32,
        cdw13: (offset >> 32) as u32,
        ..admin(
            admin_opcode::GET_LOG_PAGE,
            0xffff_ffff,
            u32::from(lid) | (numd & 0xffff) << 16,
            numd >> 16,
        )
    }
}

/// The admin queue a host sets up and uses: Connect, enable, registers, Identify, log pages,
/// features, Keep Alive, an AER, and a shutdown.
fn admin_session(digests: bool) -> Vec<u8> {
    let commands = [
        (property_get(regs::CAP, PropertySize::Eight), 0),
        (property_set_cc(Cc::nvm_enabled()), 0),
        (property_get(regs::CSTS, PropertySize::Four), 0),
        (property_get(regs::VS, PropertySize::Four), 0),
        (
            admin(admin_opcode::IDENTIFY, 0, u32::from(cns::CONTROLLER), 0),
            4096,
        ),
        (
            admin(admin_opcode::IDENTIFY, 1, u32::from(cns::NAMESPACE), 0),
            4096,
        ),
        (
            admin(
                admin_opcode::IDENTIFY,
                0,
                u32::from(cns::ACTIVE_NAMESPACE_LIST),
                0,
            ),
            4096,
        ),
        (
            admin(
                admin_opcode::IDENTIFY,
                1,
                u32::from(cns::NAMESPACE_ID_DESCRIPTORS),
                0,
            ),
            4096,
        ),
        (get_log(log_id::SMART_HEALTH, 512, 0), 512),
        (get_log(log_id::ERROR, 64, 0), 64),
        (get_log(log_id::FIRMWARE_SLOT, 512, 0), 512),
        (get_log(log_id::CHANGED_NAMESPACE_LIST, 4096, 0), 4096),
        (
            admin(
                admin_opcode::SET_FEATURES,
                0,
                u32::from(feature::NUMBER_OF_QUEUES),
                0x0003_0003,
            ),
            0,
        ),
        (
            admin(
                admin_opcode::GET_FEATURES,
                0,
                u32::from(feature::VOLATILE_WRITE_CACHE),
                0,
            ),
            0,
        ),
        (
            admin(
                admin_opcode::SET_FEATURES,
                0,
                u32::from(feature::ASYNC_EVENT_CONFIG),
                1 << 8,
            ),
            0,
        ),
        (admin(admin_opcode::KEEP_ALIVE, 0, 0, 0), 0),
        (admin(admin_opcode::ASYNC_EVENT_REQUEST, 0, 0, 0), 0),
        (
            property_set_cc(Cc::nvm_enabled().with_shn(regs::ShutdownNotification::Normal)),
            0,
        ),
    ];
    let mut stream =
        HostStream::new()
            .ic_req(digests, digests, 0)
            .connect(SUBSYSTEM_NQN, 0, CNTLID_DYNAMIC);
    for (cid, (command, transfer)) in commands.into_iter().enumerate() {
        stream = stream.command(command, cid as u16, &[], transfer);
    }
    stream.into_bytes()
}

/// An I/O queue of the live target's persistent controller: writes in the capsule and after
/// an R2T, a read, Flush, Write Zeroes, Dataset Management, at the end of the namespace. (No
/// Disconnect: the target closes right after answering it, whatever is still running.)
fn io_session(digests: bool) -> Vec<u8> {
    let lba = NS_BLOCKS - 8;
    let block: Vec<u8> = (0..BLOCK).map(|i| (i * 3) as u8).collect();
    let two_blocks = [block.as_slice(), block.as_slice()].concat();
    let range = DsmRange {
        attributes: 0,
        blocks: 2,
        slba: lba,
    };
    HostStream::new()
        .ic_req(digests, digests, 0)
        .connect(SUBSYSTEM_NQN, SEED_IO_QID, PERSISTENT_CNTLID)
        .command(Command::nvm_rw(nvm_opcode::WRITE, 1, lba, 1), 1, &block, 0)
        .command(
            Command::nvm_rw(nvm_opcode::READ, 1, lba, 2),
            2,
            &[],
            2 * BLOCK as u32,
        )
        // The R2T's transfer tag is the command's slot: the fourth taken on this connection
        // (Connect, the two commands before and this one arrive together).
        .command(
            Command::nvm_rw(nvm_opcode::WRITE, 1, lba + 2, 2),
            3,
            &[],
            2 * BLOCK as u32,
        )
        .h2c_data(3, 3, 0, &two_blocks, true)
        .command(Command::new(nvm_opcode::FLUSH, 1), 4, &[], 0)
        .command(
            Command::nvm_rw(nvm_opcode::WRITE_ZEROES, 1, lba + 4, 4),
            5,
            &[],
            0,
        )
        .command(
            admin(nvm_opcode::DATASET_MANAGEMENT, 1, 0, 1 << 2),
            6,
            &range.to_bytes(),
            0,
        )
        .into_bytes()
}

fn connection_seeds() -> Seeds {
    let discovery = HostStream::new()
        .ic_req(false, false, 0)
        .connect(DISCOVERY_NQN, 0, CNTLID_DYNAMIC)
        .command(property_set_cc(Cc::nvm_enabled()), 1, &[], 0)
        .command(
            admin(admin_opcode::IDENTIFY, 0, u32::from(cns::CONTROLLER), 0),
            2,
            &[],
            4096,
        )
        .command(get_log(log_id::DISCOVERY, 1024, 0), 3, &[], 1024)
        .into_bytes();
    let disconnect = HostStream::new()
        .ic_req(false, false, 0)
        .connect(SUBSYSTEM_NQN, SEED_IO_QID, PERSISTENT_CNTLID)
        .command(FabricsCommand::Disconnect.to_command(0), 1, &[], 0)
        .into_bytes();
    let before_ic = HostStream::new()
        .command(sample_command(), 1, &[], 512)
        .into_bytes();
    let wait = |stream: Vec<u8>| [vec![WAIT_FOR_QUIET], stream].concat();
    vec![
        (
            "icreq".into(),
            wait(HostStream::new().ic_req(false, false, 0).into_bytes()),
        ),
        (
            "icreq-hpda".into(),
            wait(HostStream::new().ic_req(true, true, 3).into_bytes()),
        ),
        ("admin-plain".into(), wait(admin_session(false))),
        ("admin-digests".into(), wait(admin_session(true))),
        ("io-plain".into(), wait(io_session(false))),
        ("io-digests".into(), wait(io_session(true))),
        (
            "io-then-leave".into(),
            [vec![0], io_session(false)].concat(),
        ),
        ("io-disconnect".into(), wait(disconnect)),
        ("discovery".into(), wait(discovery)),
        ("capsule-before-icreq".into(), wait(before_ic)),
    ]
}

/// The `connection` target's settings bit: the host reads until the target is quiet.
const WAIT_FOR_QUIET: u8 = 1;

/// Settings byte 0 (the entry as it is), the entry, the data.
fn connect_input(connect: ConnectCommand, data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&FabricsCommand::Connect(connect).to_command(1).to_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn connect_data_seeds() -> Seeds {
    let admin_queue = ConnectCommand {
        recfmt: 0,
        qid: 0,
        sqsize: 31,
        cattr: 0,
        kato_ms: 120_000,
    };
    let io_queue = ConnectCommand {
        qid: 1,
        sqsize: 127,
        kato_ms: 0,
        ..admin_queue
    };
    let valid = connect_data(SUBSYSTEM_NQN, CNTLID_DYNAMIC).to_bytes();
    let io = connect_data(SUBSYSTEM_NQN, PERSISTENT_CNTLID).to_bytes();
    let discovery = connect_data(DISCOVERY_NQN, CNTLID_DYNAMIC).to_bytes();
    let mut longest_nqn = valid;
    longest_nqn[256..256 + 223].fill(b'a');
    longest_nqn[256..260].copy_from_slice(b"nqn.");
    let mut unterminated = valid;
    unterminated[256..512].fill(b'n');
    let mut stranger = connect_data(SUBSYSTEM_NQN, CNTLID_DYNAMIC);
    stranger.host_nqn = "nqn.2014-08.org.nvmexpress:uuid:stranger".into();
    let property = FabricsCommand::PropertyGet(PropertyGet {
        size: PropertySize::Eight,
        offset: 0,
    });
    let mut property_input = vec![0];
    property_input.extend_from_slice(&property.to_command(1).to_bytes());
    vec![
        ("admin".into(), connect_input(admin_queue, &valid)),
        ("io".into(), connect_input(io_queue, &io)),
        ("discovery".into(), connect_input(admin_queue, &discovery)),
        (
            "nqn-223-bytes".into(),
            connect_input(admin_queue, &longest_nqn),
        ),
        (
            "nqn-unterminated".into(),
            connect_input(admin_queue, &unterminated),
        ),
        (
            "unknown-host".into(),
            connect_input(admin_queue, &stranger.to_bytes()),
        ),
        (
            "short-data".into(),
            connect_input(admin_queue, &valid[..100]),
        ),
        (
            "recfmt-1".into(),
            connect_input(
                ConnectCommand {
                    recfmt: 1,
                    ..admin_queue
                },
                &valid,
            ),
        ),
        (
            "sqsize-32".into(),
            connect_input(
                ConnectCommand {
                    sqsize: 32,
                    ..admin_queue
                },
                &valid,
            ),
        ),
        (
            "io-qid-65".into(),
            connect_input(
                ConnectCommand {
                    qid: 65,
                    ..io_queue
                },
                &io,
            ),
        ),
        ("property-get".into(), property_input),
    ]
}

/// One record of the admin target: kind index, opcode, NSID, CDW10-15.
fn record(kind: u8, command: &Command) -> Vec<u8> {
    let mut bytes = vec![kind, command.opcode()];
    for dword in [
        command.nsid,
        command.cdw10,
        command.cdw11,
        command.cdw12,
        command.cdw13,
        command.cdw14,
        command.cdw15,
    ] {
        bytes.extend_from_slice(&dword.to_le_bytes());
    }
    bytes
}

/// The admin target's kinds, by their index in its table.
mod kind {
    pub const GET_LOG_PAGE: u8 = 0;
    pub const IDENTIFY: u8 = 1;
    pub const PROPERTY_GET: u8 = 2;
    pub const PROPERTY_SET: u8 = 3;
    pub const GET_FEATURES: u8 = 4;
    pub const SET_FEATURES: u8 = 5;
    pub const AER: u8 = 6;
    pub const KEEP_ALIVE: u8 = 7;
    pub const ABORT: u8 = 8;
    pub const CONNECT: u8 = 9;
    pub const NAMESPACE_CHANGED: u8 = 10;
    pub const RAW: u8 = 11;
}

fn admin_seeds() -> Seeds {
    let enabled_nvm = 0b10;
    let enabled_discovery = 0b11;
    let property = |offset: usize, attrib: u32, value: u32| Command {
        nsid: 0,
        cdw10: attrib,
        cdw11: offset as u32,
        cdw12: value,
        ..Command::new(0x7f, 0)
    };
    let identify = |cns: u8, nsid: u32| admin(admin_opcode::IDENTIFY, nsid, u32::from(cns), 0);
    let nvm: Vec<(u8, Command)> = vec![
        (kind::PROPERTY_GET, property(regs::CAP, 1, 0)),
        (kind::PROPERTY_GET, property(regs::CAP + 4, 0, 0)),
        (kind::PROPERTY_GET, property(regs::VS, 0, 0)),
        (kind::IDENTIFY, identify(cns::CONTROLLER, 0)),
        (kind::IDENTIFY, identify(cns::NAMESPACE, 1)),
        (kind::IDENTIFY, identify(cns::NAMESPACE, 3)),
        (kind::IDENTIFY, identify(cns::NAMESPACE, 0xffff_ffff)),
        (kind::IDENTIFY, identify(cns::ACTIVE_NAMESPACE_LIST, 1)),
        (kind::IDENTIFY, identify(cns::NAMESPACE_ID_DESCRIPTORS, 3)),
        (kind::GET_LOG_PAGE, get_log(log_id::SMART_HEALTH, 512, 0)),
        (kind::GET_LOG_PAGE, get_log(log_id::SMART_HEALTH, 8, 508)),
        (kind::GET_LOG_PAGE, get_log(log_id::SMART_HEALTH, 4, 512)),
        (kind::GET_LOG_PAGE, get_log(log_id::ERROR, 64, 0)),
        (kind::GET_LOG_PAGE, get_log(log_id::FIRMWARE_SLOT, 512, 0)),
        (
            kind::SET_FEATURES,
            admin(
                admin_opcode::SET_FEATURES,
                0,
                u32::from(feature::ASYNC_EVENT_CONFIG),
                1 << 8,
            ),
        ),
        (kind::AER, admin(admin_opcode::ASYNC_EVENT_REQUEST, 0, 0, 0)),
        (kind::AER, admin(admin_opcode::ASYNC_EVENT_REQUEST, 0, 0, 0)),
        (kind::NAMESPACE_CHANGED, admin(0, 3, 0, 0)),
        (
            kind::GET_LOG_PAGE,
            get_log(log_id::CHANGED_NAMESPACE_LIST, 4096, 0),
        ),
        (
            kind::SET_FEATURES,
            admin(
                admin_opcode::SET_FEATURES,
                0,
                u32::from(feature::NUMBER_OF_QUEUES),
                0x0007_0007,
            ),
        ),
        (
            kind::GET_FEATURES,
            admin(
                admin_opcode::GET_FEATURES,
                1,
                u32::from(feature::VOLATILE_WRITE_CACHE),
                0,
            ),
        ),
        (
            kind::SET_FEATURES,
            admin(
                admin_opcode::SET_FEATURES,
                1,
                u32::from(feature::VOLATILE_WRITE_CACHE),
                0,
            ),
        ),
        (
            kind::GET_FEATURES,
            admin(
                admin_opcode::GET_FEATURES,
                0,
                u32::from(feature::KEEP_ALIVE_TIMER),
                0,
            ),
        ),
        (kind::KEEP_ALIVE, admin(admin_opcode::KEEP_ALIVE, 0, 0, 0)),
        (kind::ABORT, admin(admin_opcode::ABORT, 0, 0x0001_0000, 0)),
        (kind::CONNECT, admin(0x7f, u32::from(fctype::CONNECT), 0, 0)),
        (kind::RAW, admin(admin_opcode::CREATE_IO_SQ, 0, 0, 0)),
        (kind::PROPERTY_SET, property(regs::CC, 0, 0)),
        (kind::PROPERTY_GET, property(regs::CSTS, 0, 0)),
        (
            kind::PROPERTY_SET,
            property(regs::CC, 0, Cc::nvm_enabled().into_bits()),
        ),
    ];
    let discovery: Vec<(u8, Command)> = vec![
        (kind::IDENTIFY, identify(cns::CONTROLLER, 0)),
        (kind::GET_LOG_PAGE, get_log(log_id::DISCOVERY, 1024, 0)),
        (kind::GET_LOG_PAGE, get_log(log_id::DISCOVERY, 4096, 1024)),
        (kind::GET_LOG_PAGE, get_log(log_id::SMART_HEALTH, 512, 0)),
        (kind::AER, admin(admin_opcode::ASYNC_EVENT_REQUEST, 0, 0, 0)),
    ];
    let not_enabled: Vec<(u8, Command)> = vec![
        (kind::IDENTIFY, identify(cns::CONTROLLER, 0)),
        (
            kind::PROPERTY_SET,
            property(regs::CC, 0, Cc::nvm_enabled().into_bits()),
        ),
        (kind::IDENTIFY, identify(cns::CONTROLLER, 0)),
    ];
    [
        ("nvm", enabled_nvm, nvm),
        ("discovery", enabled_discovery, discovery),
        ("not-enabled", 0, not_enabled),
    ]
    .into_iter()
    .map(|(name, settings, commands)| {
        let mut bytes = vec![settings];
        for (kind, command) in &commands {
            bytes.extend(record(*kind, command));
        }
        (name.to_owned(), bytes)
    })
    .collect()
}

fn config_seeds() -> Seeds {
    let texts: [(&str, &str); 8] = [
        ("deploy", include_str!("../../deploy/vfnvme.toml")),
        (
            "ram",
            "[target]\ncores = 2\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[subsystem]]\n\
             nqn = \"nqn.2026-11.io.vfnvme:ram0\"\nallow_any_host = true\n\n\
             [[subsystem.namespace]]\nnsid = 1\nram_mib = 16\n",
        ),
        (
            "sim-two-namespaces",
            "[target]\ncores = 1\nshutdown_deadline_ms = 500\n\n[[listener]]\n\
             address = \"127.0.0.1:0\"\n\n[[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:sim\"\n\
             hosts = [\"nqn.2014-08.org.nvmexpress:uuid:host-a\"]\nserial = \"SIM0001\"\n\
             model = \"vfnvme sim\"\n\n[[subsystem.namespace]]\nnsid = 1\nsim_mib = 8\n\
             sim_latency_us = 20\n\n[[subsystem.namespace]]\nnsid = 2\nram_mib = 4\n\
             block_size = 4096\n",
        ),
        (
            "ipv6-limits",
            "[target]\nin_capsule_data_size = 0\nmax_queue_depth = 1024\nmax_io_queues = 1\n\
             max_io_size = 0\nkeep_alive_timeout_ms = 1\n\n[[listener]]\naddress = \"[::1]:4420\"\n\
             \n[[subsystem]]\nnqn = \"nqn.x\"\nallow_any_host = true\n\n[[subsystem.namespace]]\n\
             nsid = 4294967294\npci = \"0000:01:00.0\"\ndevice_nsid = 2\n",
        ),
        (
            "duplicate-nqn",
            "[[listener]]\naddress = \"0.0.0.0:4420\"\n\n[[subsystem]]\nnqn = \"nqn.a\"\n\
             allow_any_host = true\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n\n\
             [[subsystem]]\nnqn = \"nqn.a\"\nallow_any_host = true\n[[subsystem.namespace]]\n\
             nsid = 1\nram_mib = 1\n",
        ),
        (
            "bad-listener",
            "[[listener]]\naddress = \"localhost:4420\"\n\n[[subsystem]]\nnqn = \"nqn.a\"\n\
             allow_any_host = true\n[[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n",
        ),
        (
            "out-of-range",
            "[target]\ncores = 0\nmax_queue_depth = 70000\nin_capsule_data_size = 7\n\n\
             [[listener]]\naddress = \"0.0.0.0:4420\"\n",
        ),
        ("not-toml", "[target\ncores = = 2\n"),
    ];
    texts
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.as_bytes().to_vec()))
        .collect()
}
