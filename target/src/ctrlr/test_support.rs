//! Test support shared by the controller's test modules: a subsystem with a drive namespace and
//! a RAM namespace, fake drives, and the Connect and admin commands hosts send. Its own file
//! because every concern's tests start from the same connected controller.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vfnvme_spec::fabrics::{
    ConnectCommand, ConnectData, ConnectRejection, FabricsCommand, PropertyGet, PropertySet,
    PropertySize, CNTLID_DYNAMIC,
};
use vfnvme_spec::identify::{oncs, NamespaceIds};
use vfnvme_spec::log_page::SmartLog;
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::status::sct;
use vfnvme_spec::{admin_opcode, Command, Status};

use super::{
    AdminForwarder, AdminOutcome, AdminResponse, Arrival, ControllerRegistry, ControllerSettings,
    FabricController,
};
use crate::admission::Admission;
use crate::config::TargetConfig;
use crate::subsystem::{HostAccess, NamespaceBacking, NamespaceInfo, Subsystem};

pub(super) const SUBSYSTEM_NQN: &str = "nqn.2026-11.io.vfnvme:test";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:host-a";
const HOST_ID: [u8; 16] = *b"host-a-id-16byte";
pub(super) const ENABLE: u32 = Cc::nvm_enabled().into_bits();

#[derive(Default)]
pub(super) struct FakeDrives {
    pub(super) smart_calls: AtomicUsize,
    pub(super) cache_enabled: AtomicBool,
}

impl AdminForwarder for FakeDrives {
    fn smart_log(&self, device_index: usize) -> Result<Vec<u8>, Status> {
        self.smart_calls.fetch_add(1, Ordering::Relaxed);
        Ok(SmartLog {
            temperature_kelvin: (300 + device_index as u16).into(),
            avail_spare: 90,
            host_reads: 10.into(),
            ..SmartLog::default()
        }
        .to_bytes())
    }

    fn volatile_write_cache(&self, _: usize, enable: Option<bool>) -> Result<bool, Status> {
        if let Some(enable) = enable {
            self.cache_enabled.store(enable, Ordering::Relaxed);
        }
        Ok(self.cache_enabled.load(Ordering::Relaxed))
    }
}

pub(super) fn subsystem() -> Subsystem {
    Subsystem {
        nqn: SUBSYSTEM_NQN.into(),
        serial: "SN-0042".into(),
        model: "QEMU NVMe Ctrl".into(),
        firmware: "8.2.0".into(),
        namespaces: crate::subsystem::NamespaceList::new(vec![
            NamespaceInfo {
                nsid: 1,
                block_size: 4096,
                blocks: 1000,
                ids: NamespaceIds {
                    nguid: Some([0x11; 16]),
                    eui64: Some([0x12; 8]),
                    uuid: None,
                },
                backend: NamespaceBacking::Passthrough {
                    device_index: 0,
                    device_nsid: 1,
                },
            },
            NamespaceInfo {
                nsid: 3,
                block_size: 512,
                blocks: 2048,
                ids: NamespaceIds {
                    nguid: Some([0x33; 16]),
                    ..NamespaceIds::default()
                },
                backend: NamespaceBacking::Ram { bytes: 2048 * 512 },
            },
        ]),
        max_io_size: 128 * 1024,
        volatile_write_cache: true,
        oncs: oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT,
    }
}

pub(super) fn settings() -> ControllerSettings {
    let target = TargetConfig::default();
    ControllerSettings::from_config(&target, Admission::new(target.limits.clone()))
}

pub(super) fn registry_with(drives: Arc<FakeDrives>) -> Arc<ControllerRegistry> {
    ControllerRegistry::for_subsystem(Arc::new(subsystem()), access(), settings(), drives)
}

/// The test host only.
pub(super) fn access() -> HostAccess {
    HostAccess {
        allow_any_host: false,
        hosts: vec![HOST_NQN.into()],
        listeners: vec![0],
        keys: Vec::new(),
        tls_psks: Vec::new(),
    }
}

pub(super) fn registry() -> Arc<ControllerRegistry> {
    registry_with(Arc::default())
}

/// Listener 0, at 192.0.2.1:4420.
pub(super) fn local() -> Arrival {
    Arrival {
        listener: 0,
        local_address: "192.0.2.1:4420".parse().unwrap(),
    }
}

pub(super) fn admin_connect(kato_ms: u32) -> ConnectCommand {
    ConnectCommand {
        recfmt: 0,
        qid: 0,
        sqsize: 31,
        cattr: 0,
        kato_ms,
    }
}

pub(super) fn io_connect(qid: u16) -> ConnectCommand {
    ConnectCommand {
        qid,
        sqsize: 127,
        kato_ms: 0,
        ..admin_connect(0)
    }
}

pub(super) fn data(cntlid: u16) -> ConnectData {
    ConnectData {
        host_id: HOST_ID,
        cntlid,
        subsystem_nqn: SUBSYSTEM_NQN.into(),
        host_nqn: HOST_NQN.into(),
    }
}

pub(super) fn connect(registry: &Arc<ControllerRegistry>) -> Arc<FabricController> {
    registry
        .connect_admin(
            &admin_connect(0),
            &data(CNTLID_DYNAMIC),
            local(),
            Instant::now(),
        )
        .unwrap()
}

pub(super) fn respond(controller: &FabricController, command: Command) -> AdminResponse {
    match controller.execute_admin(&command, Instant::now()) {
        AdminOutcome::Respond(response) => response,
        AdminOutcome::Held => panic!("command held"),
    }
}

pub(super) fn property_set(
    controller: &FabricController,
    offset: usize,
    value: u32,
) -> AdminResponse {
    let set = FabricsCommand::PropertySet(PropertySet {
        size: PropertySize::Four,
        offset: offset as u32,
        value: u64::from(value),
    });
    respond(controller, set.to_command(1))
}

pub(super) fn property_get(
    controller: &FabricController,
    offset: usize,
    size: PropertySize,
) -> AdminResponse {
    let get = FabricsCommand::PropertyGet(PropertyGet {
        size,
        offset: offset as u32,
    });
    respond(controller, get.to_command(1))
}

pub(super) fn enabled(registry: &Arc<ControllerRegistry>) -> Arc<FabricController> {
    let controller = connect(registry);
    assert!(property_set(&controller, regs::CC, ENABLE)
        .status
        .is_success());
    controller
}

pub(super) fn identify(controller: &FabricController, cns: u8, nsid: u32) -> AdminResponse {
    let command = Command {
        cdw10: u32::from(cns),
        ..Command::new(admin_opcode::IDENTIFY, nsid)
    };
    respond(controller, command)
}

pub(super) fn get_log(
    controller: &FabricController,
    lid: u8,
    len: u32,
    offset: u64,
) -> AdminResponse {
    let numd = len / 4 - 1;
    let command = Command {
        cdw10: u32::from(lid) | (numd & 0xffff) << 16,
        cdw11: numd >> 16,
        cdw12: offset as u32,
        cdw13: (offset >> 32) as u32,
        ..Command::new(admin_opcode::GET_LOG_PAGE, 0xffff_ffff)
    };
    respond(controller, command)
}

pub(super) fn features(opcode: u8, fid: u8, cdw11: u32) -> Command {
    Command {
        cdw10: u32::from(fid),
        cdw11,
        ..Command::new(opcode, 0)
    }
}

pub(super) fn assert_rejection(result: Result<impl Sized, ConnectRejection>, sc: u8, dw0: u32) {
    let Err(rejection) = result.map(|_| ()) else {
        panic!("connect accepted");
    };
    assert_eq!(rejection.status.sct(), sct::COMMAND_SPECIFIC);
    assert_eq!(rejection.status.sc(), sc);
    assert!(rejection.status.dnr());
    assert_eq!(rejection.result, dw0);
}
