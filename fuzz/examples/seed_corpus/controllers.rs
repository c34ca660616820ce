//! `connect_data` and `admin` seeds: Connects valid and at the boundaries, and admin command
//! sequences for NVM, discovery and disabled controllers.

use vfnvme_fuzz::admin_input::{encode_record, Kind, DISCOVERY, ENABLE};
use vfnvme_fuzz::controllers::{PERSISTENT_CNTLID, SUBSYSTEM_NQN};
use vfnvme_fuzz::host_stream::connect_data;
use vfnvme_spec::fabrics::{
    fctype, ConnectCommand, FabricsCommand, PropertyGet, PropertySize, CNTLID_DYNAMIC,
    DISCOVERY_NQN,
};
use vfnvme_spec::log_page::log_id;
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::{admin_opcode, cns, feature, Command};

use crate::shared::{admin, get_log, Seeds};

/// Settings byte 0 (the entry as it is), the entry, the data.
fn connect_input(connect: ConnectCommand, data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&FabricsCommand::Connect(connect).to_command(1).to_bytes());
    bytes.extend_from_slice(data);
    bytes
}

pub fn connect_data_seeds() -> Seeds {
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

/// The kinds of admin record the seeds use.
mod kind {
    use vfnvme_fuzz::admin_input::Kind;
    use vfnvme_spec::admin_opcode;
    use vfnvme_spec::fabrics::fctype;

    pub const GET_LOG_PAGE: Kind = Kind::Opcode(admin_opcode::GET_LOG_PAGE);
    pub const IDENTIFY: Kind = Kind::Opcode(admin_opcode::IDENTIFY);
    pub const PROPERTY_GET: Kind = Kind::Fabrics(fctype::PROPERTY_GET);
    pub const PROPERTY_SET: Kind = Kind::Fabrics(fctype::PROPERTY_SET);
    pub const GET_FEATURES: Kind = Kind::Opcode(admin_opcode::GET_FEATURES);
    pub const SET_FEATURES: Kind = Kind::Opcode(admin_opcode::SET_FEATURES);
    pub const AER: Kind = Kind::Opcode(admin_opcode::ASYNC_EVENT_REQUEST);
    pub const KEEP_ALIVE: Kind = Kind::Opcode(admin_opcode::KEEP_ALIVE);
    pub const ABORT: Kind = Kind::Opcode(admin_opcode::ABORT);
    pub const CONNECT: Kind = Kind::Fabrics(fctype::CONNECT);
    pub const NAMESPACE_CHANGED: Kind = Kind::NamespaceChanged;
    pub const RAW: Kind = Kind::Raw;
}

pub fn admin_seeds() -> Seeds {
    let enabled_nvm = ENABLE;
    let enabled_discovery = ENABLE | DISCOVERY;
    let property = |offset: usize, attrib: u32, value: u32| Command {
        nsid: 0,
        cdw10: attrib,
        cdw11: offset as u32,
        cdw12: value,
        ..Command::new(0x7f, 0)
    };
    let identify = |cns: u8, nsid: u32| admin(admin_opcode::IDENTIFY, nsid, u32::from(cns), 0);
    let nvm: Vec<(Kind, Command)> = vec![
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
    let discovery: Vec<(Kind, Command)> = vec![
        (kind::IDENTIFY, identify(cns::CONTROLLER, 0)),
        (kind::GET_LOG_PAGE, get_log(log_id::DISCOVERY, 1024, 0)),
        (kind::GET_LOG_PAGE, get_log(log_id::DISCOVERY, 4096, 1024)),
        (kind::GET_LOG_PAGE, get_log(log_id::SMART_HEALTH, 512, 0)),
        (kind::AER, admin(admin_opcode::ASYNC_EVENT_REQUEST, 0, 0, 0)),
    ];
    let not_enabled: Vec<(Kind, Command)> = vec![
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
            bytes.extend(encode_record(*kind, command));
        }
        (name.to_owned(), bytes)
    })
    .collect()
}
