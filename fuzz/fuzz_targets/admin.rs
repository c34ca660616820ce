//! Admin commands with arbitrary command dwords on a fabric controller, through the API the
//! connection code uses (`FabricController::execute_admin`): Get Log Page offsets and lengths,
//! Identify CNS values, Property Get/Set, Get/Set Features, Asynchronous Event Requests and
//! namespace change events, on an NVM or a discovery controller.
//!
//! Input: a settings byte (NVM or discovery, enabled first or not, KATO), then 30-byte
//! command records; see `vfnvme_fuzz::admin_input`.
//!
//! Invariants: a failed command carries no data; Identify gives 4096 bytes and Get Log Page
//! exactly the length asked for; the status type is generic or command specific; the I/O
//! path's `is_enabled` agrees with CC.EN and CSTS.RDY; commands other than Fabrics ones fail
//! with Command Sequence Error exactly when the controller is not ready; only an Asynchronous
//! Event Request is held, never more than AER_LIMIT at once, and an event completes a held
//! one; at the end the controller returns exactly the requests it still holds.

#![no_main]
#![forbid(unsafe_code)]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vfnvme_fuzz::admin_input::{parse_record, Kind, DISCOVERY, ENABLE, KATO_MS, RECORD_LEN};
use vfnvme_fuzz::controllers::{enable, Controllers};
use vfnvme_spec::fabrics::{FabricsCommand, PropertyGet, PropertySize, FABRICS_OPCODE};
use vfnvme_spec::regs::{self, Cc, Csts};
use vfnvme_spec::status::sct;
use vfnvme_spec::{admin_opcode, Status};
use vfnvme_target::ctrlr::{AdminOutcome, FabricController, AER_LIMIT};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, records)) = data.split_first() else {
        return;
    };
    let controllers = Controllers::get();
    let discovery = settings & DISCOVERY != 0;
    let kato = KATO_MS[usize::from(settings >> 2 & 3)];
    let controller = Controllers::admin_controller(&controllers.subsystems, discovery, kato);
    if settings & ENABLE != 0 {
        enable(&controller);
    }
    let mut held = Vec::new();
    for (index, record) in records.chunks_exact(RECORD_LEN).enumerate() {
        let cid = index as u16;
        let record = record.try_into().expect("chunks of RECORD_LEN");
        let (kind, command) = parse_record(record, cid);
        match kind {
            Kind::NamespaceChanged => {
                controller.post_namespace_changed(command.nsid);
                for completion in controller.take_completed_aers() {
                    let at = held.iter().position(|&cid| cid == completion.cid);
                    assert!(
                        at.is_some(),
                        "an event completed AER {} not held",
                        completion.cid
                    );
                    held.remove(at.unwrap());
                    assert!(completion.response.status.is_success());
                }
                continue;
            }
            Kind::Opcode(_) | Kind::Fabrics(_) | Kind::Raw => {}
        }
        let ready = is_ready(&controller);
        match controller.execute_admin(&command, Instant::now()) {
            AdminOutcome::Held => {
                assert_eq!(command.opcode(), admin_opcode::ASYNC_EVENT_REQUEST);
                assert!(ready, "AER held by a controller that is not ready");
                held.push(cid);
                assert!(held.len() <= AER_LIMIT, "more than {AER_LIMIT} AERs held");
            }
            AdminOutcome::Respond(response) => {
                let status = response.status;
                assert!(
                    matches!(status.sct(), sct::GENERIC | sct::COMMAND_SPECIFIC),
                    "{command:?}: {status}"
                );
                if command.opcode() != FABRICS_OPCODE {
                    assert_eq!(
                        status.same_code(Status::command_sequence_error()),
                        !ready,
                        "{command:?} on a controller {}: {status}",
                        if ready { "ready" } else { "not ready" }
                    );
                }
                if !status.is_success() {
                    assert!(response.data.is_empty(), "{command:?} failed with data");
                    continue;
                }
                match command.opcode() {
                    admin_opcode::IDENTIFY => assert_eq!(response.data.len(), 4096),
                    admin_opcode::GET_LOG_PAGE => {
                        let dwords = (u64::from(command.cdw11 & 0xffff) << 16
                            | u64::from(command.cdw10 >> 16))
                            + 1;
                        assert_eq!(response.data.len() as u64, dwords * 4);
                    }
                    _ => {}
                }
            }
        }
    }
    let mut pending = controller.take_pending_aers();
    pending.sort_unstable();
    held.sort_unstable();
    assert_eq!(pending, held, "the controller's held AERs");
    assert!(!controllers.persistent.is_terminated());
});

fn register(controller: &FabricController, offset: usize) -> u32 {
    let get = FabricsCommand::PropertyGet(PropertyGet {
        size: PropertySize::Four,
        offset: offset as u32,
    });
    match controller.execute_admin(&get.to_command(0xffff), Instant::now()) {
        AdminOutcome::Respond(response) if response.status.is_success() => response.result,
        other => panic!("Property Get {offset:#x}: {other:?}"),
    }
}

/// Whether the controller takes admin commands, by its registers, checked against what the
/// I/O path reads.
fn is_ready(controller: &FabricController) -> bool {
    let cc = Cc::from_bits(register(controller, regs::CC));
    let csts = Csts::from_bits(register(controller, regs::CSTS));
    let ready = cc.en() && csts.rdy();
    assert_eq!(
        controller.is_enabled(),
        ready,
        "is_enabled disagrees with CC {cc:?}, CSTS {csts:?}"
    );
    ready
}
