//! `connection` seeds: whole host sessions on one connection to the live target.

use vfnvme_fuzz::controllers::{PERSISTENT_CNTLID, SUBSYSTEM_NQN};
use vfnvme_fuzz::host_stream::HostStream;
use vfnvme_fuzz::live::{BLOCK, NS_BLOCKS, SEED_IO_QID};
use vfnvme_spec::fabrics::{FabricsCommand, PropertySize, CNTLID_DYNAMIC, DISCOVERY_NQN};
use vfnvme_spec::log_page::log_id;
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::{admin_opcode, cns, feature, nvm_opcode, Command, DsmRange};

use crate::shared::{admin, get_log, property_get, property_set_cc, sample_command, Seeds};

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

pub fn seeds() -> Seeds {
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
