//! The fabric controllers the `admin` and `connect_data` targets drive through the controller
//! API the connection code uses (no sockets): one NVM subsystem with a drive namespace and a
//! RAM namespace, built from a configuration as the target builds it, the discovery subsystem
//! listing it, and a fake drive answering what is forwarded to it. Built once per process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vfnvme_host::HostOptions;
use vfnvme_spec::fabrics::{
    ConnectCommand, FabricsCommand, PropertySet, PropertySize, CNTLID_DYNAMIC, CNTLID_MIN,
    DISCOVERY_NQN,
};
use vfnvme_spec::identify::{oncs, NamespaceIds};
use vfnvme_spec::log_page::SmartLog;
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::Status;
use vfnvme_target::admission::Admission;
use vfnvme_target::config::{Config, TargetConfig};
use vfnvme_target::ctrlr::{
    AdminForwarder, AdminOutcome, Arrival, Association, ControllerSettings, FabricController,
    TargetSubsystems,
};
use vfnvme_target::listeners::{ListenerInfo, ListenerTable};
use vfnvme_target::subsystem::{DriveNamespace, HostAccess, Subsystem};

use crate::host_stream::connect_data;

pub const SUBSYSTEM_NQN: &str = "nqn.2026-11.io.vfnvme:fuzz";
/// The controller a process creates first and keeps, so that I/O queue Connects in the inputs
/// have one to attach to: the lowest controller ID, which a subsystem gives first.
pub const PERSISTENT_CNTLID: u16 = CNTLID_MIN;

/// The drive behind the drive namespace: a SMART log, and a write cache that remembers.
#[derive(Default)]
struct FakeDrive {
    write_cache: AtomicBool,
}

impl AdminForwarder for FakeDrive {
    fn smart_log(&self, device_index: usize) -> Result<Vec<u8>, Status> {
        Ok(SmartLog {
            temperature_kelvin: (300 + device_index as u16).into(),
            avail_spare: 90,
            ..SmartLog::default()
        }
        .to_bytes())
    }

    fn volatile_write_cache(&self, _: usize, enable: Option<bool>) -> Result<bool, Status> {
        if let Some(enable) = enable {
            self.write_cache.store(enable, Ordering::Relaxed);
        }
        Ok(self.write_cache.load(Ordering::Relaxed))
    }
}

/// The subsystem as the target builds it from its configuration: namespace 1 on the fake
/// drive, namespace 3 in memory, one host allowed.
fn subsystem() -> (Subsystem, HostAccess) {
    let text = format!(
        "[[listener]]\naddress = \"{}\"\n\n[[subsystem]]\nnqn = \"{SUBSYSTEM_NQN}\"\n\
         hosts = [\"{}\"]\n\n[[subsystem.namespace]]\nnsid = 1\npci = \"0000:01:00.0\"\n\n\
         [[subsystem.namespace]]\nnsid = 3\nram_mib = 1\n",
        local_address(),
        HostOptions::default().host_nqn
    );
    let config = Config::parse(&text, "fuzz.toml").expect("the fixture's configuration is valid");
    let drive = |_: &str, _: u32| {
        Ok::<_, String>(DriveNamespace {
            device_index: 0,
            block_size: 4096,
            blocks: 1000,
            vid: 0x1b36,
            serial: "SN-FUZZ".into(),
            model: "vfnvme fuzz drive".into(),
            firmware: "0.1.0".into(),
            ids: NamespaceIds::default(),
            oncs: oncs::WRITE_ZEROES | oncs::DATASET_MANAGEMENT,
            volatile_write_cache: true,
            max_transfer: 128 * 1024,
        })
    };
    let subsystem = Subsystem::from_config(&config.subsystems[0], &config.target, drive)
        .expect("the fixture's subsystem is valid");
    (subsystem, HostAccess::of(&config.subsystems[0]))
}

/// Where the hosts of these controllers reached the target.
pub fn local_address() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 4420))
}

/// Where a Connect of these controllers arrived: the fixture's one listener.
pub fn arrival() -> Arrival {
    Arrival {
        listener: 0,
        local_address: local_address(),
    }
}

/// The controllers of the process.
pub struct Controllers {
    pub subsystems: TargetSubsystems,
    /// An enabled controller that lives as long as the process: [`PERSISTENT_CNTLID`].
    pub persistent: Arc<FabricController>,
}

impl Controllers {
    pub fn get() -> &'static Controllers {
        static CONTROLLERS: OnceLock<Controllers> = OnceLock::new();
        CONTROLLERS.get_or_init(|| {
            let (subsystem, access) = subsystem();
            let target = TargetConfig::default();
            let admission = Admission::new(target.limits.clone());
            let subsystems = TargetSubsystems::new(
                vec![(Arc::new(subsystem), access)],
                Arc::new(ListenerTable::new(vec![ListenerInfo::plain(
                    local_address(),
                )])),
                ControllerSettings::from_config(&target, admission),
                Arc::new(FakeDrive::default()),
            );
            let persistent = Controllers::admin_controller(&subsystems, false, 0);
            assert_eq!(persistent.cntlid(), PERSISTENT_CNTLID);
            enable(&persistent);
            Controllers {
                subsystems,
                persistent,
            }
        })
    }

    /// A new controller of the NVM subsystem (or of the discovery subsystem) for the host
    /// [`HostOptions::default`] names, with keep-alive timeout `kato_ms`.
    pub fn admin_controller(
        subsystems: &TargetSubsystems,
        discovery: bool,
        kato_ms: u32,
    ) -> Arc<FabricController> {
        let nqn = if discovery {
            DISCOVERY_NQN
        } else {
            SUBSYSTEM_NQN
        };
        let connect = ConnectCommand {
            recfmt: 0,
            qid: 0,
            sqsize: 31,
            cattr: 0,
            kato_ms,
        };
        let data = connect_data(nqn, CNTLID_DYNAMIC);
        match subsystems.connect(&connect, &data, arrival(), Instant::now()) {
            Ok(Association::Admin(controller)) => controller,
            Ok(_) => unreachable!("a QID 0 Connect creates a controller"),
            Err(rejection) => panic!("the fixture's admin Connect was refused: {rejection}"),
        }
    }
}

/// Sets CC.EN as a host does after Connect; the controller is then ready.
pub fn enable(controller: &FabricController) {
    let set = FabricsCommand::PropertySet(PropertySet {
        size: PropertySize::Four,
        offset: regs::CC as u32,
        value: u64::from(Cc::nvm_enabled().into_bits()),
    });
    match controller.execute_admin(&set.to_command(1), Instant::now()) {
        AdminOutcome::Respond(response) => assert!(response.status.is_success()),
        AdminOutcome::Held => unreachable!("Property Set is answered at once"),
    }
}
