//! Connect: the Fabrics command (`FabricsCommand::parse`) and the 1024 bytes of Connect data
//! (`ConnectData::from_bytes`) decoded from arbitrary bytes, then the Connect taken by the
//! target's subsystems (`TargetSubsystems::connect`), as the connection code does.
//!
//! Input: a settings byte (bit 0: make the entry a Connect, opcode 7Fh FCTYPE 01h), the
//! 64-byte submission queue entry, then the Connect data.
//!
//! Invariants: a decoded command encodes and decodes back to itself, a refused one is Invalid
//! Opcode or Invalid Field; decoded data encodes and decodes back to itself, with NQNs of 1 to
//! 223 bytes; every refusal is a Connect status with DNR naming a field where it should; an
//! accepted Connect is bound to what was asked (controller ID range, host, QID, queue size).

#![no_main]
#![forbid(unsafe_code)]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vfnvme_fuzz::controllers::{arrival, Controllers, PERSISTENT_CNTLID, SUBSYSTEM_NQN};
use vfnvme_spec::fabrics::{
    connect_offset, connect_status, fctype, ConnectData, ConnectRejection, FabricsCommand,
    CNTLID_MAX, CNTLID_MIN, FABRICS_OPCODE, MAX_NQN_BYTES,
};
use vfnvme_spec::status::sct;
use vfnvme_spec::{Command, Status, SQE_SIZE};
use vfnvme_target::ctrlr::Association;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let Some((sqe, connect_data)) = rest.split_first_chunk::<SQE_SIZE>() else {
        return;
    };
    let mut command = Command::from_bytes(sqe);
    if settings & 1 != 0 {
        command.cdw0 = (command.cdw0 & !0xff) | u32::from(FABRICS_OPCODE);
        command.nsid = (command.nsid & !0xff) | u32::from(fctype::CONNECT);
    }
    let parsed = match FabricsCommand::parse(&command) {
        Ok(parsed) => parsed,
        Err(status) => {
            assert!(
                status.same_code(Status::invalid_opcode())
                    || status.same_code(Status::invalid_field()),
                "{command:?} refused with {status}"
            );
            return;
        }
    };
    let again = FabricsCommand::parse(&parsed.to_command(command.cid()));
    assert_eq!(again, Ok(parsed), "Fabrics command round trip");

    let decoded = ConnectData::from_bytes(connect_data);
    match &decoded {
        Ok(data) => {
            // An empty host NQN decodes (the allow list judges it, as nvmet and SPDK do); an
            // empty subsystem NQN does not.
            assert!(!data.subsystem_nqn.is_empty());
            for nqn in [&data.subsystem_nqn, &data.host_nqn] {
                assert!(nqn.len() <= MAX_NQN_BYTES, "NQN {nqn:?}");
                assert!(!nqn.contains('\0'));
            }
            let again = ConnectData::from_bytes(&data.to_bytes());
            assert_eq!(again.as_ref(), Ok(data), "Connect data round trip");
        }
        Err(rejection) => {
            check_rejection(rejection);
            let expected = if connect_data.len() < 1024 {
                ConnectRejection::invalid_command_field(connect_offset::RECFMT, "short")
            } else {
                assert!(rejection.in_data());
                *rejection
            };
            // What the host is told (the reason is for the log).
            assert_eq!(
                (rejection.status, rejection.result),
                (expected.status, expected.result)
            );
            assert!(matches!(
                rejection.parameter_offset(),
                connect_offset::RECFMT | connect_offset::SUBNQN | connect_offset::HOSTNQN
            ));
        }
    }
    let (FabricsCommand::Connect(connect), Ok(data)) = (parsed, decoded) else {
        return;
    };
    let controllers = Controllers::get();
    match controllers
        .subsystems
        .connect(&connect, &data, arrival(), Instant::now())
    {
        Ok(Association::Admin(controller)) => {
            assert_eq!(connect.qid, 0);
            assert!((CNTLID_MIN..=CNTLID_MAX).contains(&controller.cntlid()));
            if controller.subsystem().nqn == SUBSYSTEM_NQN {
                assert_ne!(controller.cntlid(), PERSISTENT_CNTLID);
            }
            assert_eq!(controller.host_nqn(), data.host_nqn);
            assert_eq!(controller.host_id(), data.host_id);
            assert_eq!(controller.subsystem().nqn, data.subsystem_nqn);
            assert!(controller.connect_response().status.is_success());
        }
        Ok(Association::Io(queue)) => {
            assert_ne!(connect.qid, 0);
            assert_eq!(queue.qid(), connect.qid);
            assert_eq!(queue.entries(), connect.queue_entries());
            assert_eq!(queue.controller().cntlid(), data.cntlid);
            assert_eq!(queue.controller().host_nqn(), data.host_nqn);
        }
        Err(rejection) => {
            check_rejection(&rejection);
            let _ = rejection.to_string();
        }
    }
    assert!(!controllers.persistent.is_terminated());
});

fn check_rejection(rejection: &ConnectRejection) {
    let status = rejection.status;
    assert_eq!(status.sct(), sct::COMMAND_SPECIFIC, "{status}");
    assert!(status.dnr(), "{status} without DNR");
    assert!(
        matches!(
            status.sc(),
            connect_status::INCOMPATIBLE_FORMAT
                | connect_status::CONTROLLER_BUSY
                | connect_status::INVALID_PARAMETERS
                | connect_status::INVALID_HOST
        ),
        "{status}"
    );
    if status.sc() != connect_status::INVALID_PARAMETERS
        && status.sc() != connect_status::INVALID_HOST
    {
        assert_eq!(rejection.result, 0);
    }
}
