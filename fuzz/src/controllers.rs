//! The fabric controllers the `admin` and `connect_data` targets drive through the controller
//! API the connection code uses (no sockets): one NVM subsystem with a drive namespace and a
//! RAM namespace, the discovery subsystem listing it, and fake drives answering what is
//! forwarded to them. Built once per process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vfnvme_host::HostOptions;
use vfnvme_spec::fabrics::CNTLID_DYNAMIC;
use vfnvme_spec::fabrics::{ConnectCommand, FabricsCommand, PropertySet, PropertySize};
use vfnvme_spec::log_page::SmartLog;
use vfnvme_spec::regs::{self, Cc};
use vfnvme_spec::Status;
use vfnvme_target::config::TargetConfig;
use vfnvme_target::ctrlr::{
    AdminForwarder, AdminOutcome, ControllerSettings, FabricController, TargetSubsystems,
};
use vfnvme_target::subsystem::{NamespaceBacking, NamespaceInfo, Subsystem};

use crate::host_stream::connect_data;

pub const SUBSYSTEM_NQN: &str = "nqn.2026-11.io.vfnvme:fuzz";

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

fn subsystem() -> Subsystem {
    Subsystem {
        nqn: SUBSYSTEM_NQN.into(),
        serial: "SN-FUZZ".into(),
        model: "vfnvme fuzz".into(),
        firmware: "0.1.0".into(),
        allow_any_host: false,
        hosts: vec![HostOptions::default().host_nqn],
        namespaces: vec![
            NamespaceInfo {
                nsid: 1,
                block_size: 4096,
                blocks: 1000,
                nguid: [0x11; 16],
                backend: NamespaceBacking::Passthrough {
                    device_index: 0,
                    device_nsid: 1,
                },
            },
            NamespaceInfo {
                nsid: 3,
                block_size: 512,
                blocks: 2048,
                nguid: [0x33; 16],
                backend: NamespaceBacking::Ram { bytes: 2048 * 512 },
            },
        ],
        max_io_size: 128 * 1024,
        volatile_write_cache: true,
    }
}

/// Where the hosts of these controllers reached the target.
pub fn local_address() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 4420))
}

/// The controllers of the process.
pub struct Controllers {
    pub subsystems: TargetSubsystems,
    /// An enabled controller that lives as long as the process, so that an I/O queue Connect
    /// has one to attach to: controller ID [`Controllers::PERSISTENT_CNTLID`].
    pub persistent: Arc<FabricController>,
}

impl Controllers {
    /// The first controller ID of a subsystem, taken by [`Controllers::persistent`].
    pub const PERSISTENT_CNTLID: u16 = 1;

    pub fn get() -> &'static Controllers {
        static CONTROLLERS: OnceLock<Controllers> = OnceLock::new();
        CONTROLLERS.get_or_init(|| {
            let subsystem = Arc::new(subsystem());
            let subsystems = TargetSubsystems::new(
                vec![subsystem],
                vec![local_address()],
                ControllerSettings::from_config(&TargetConfig::default()),
                Arc::new(FakeDrive::default()),
            );
            let persistent = Controllers::admin_controller(&subsystems, false, 0);
            assert_eq!(persistent.cntlid(), Self::PERSISTENT_CNTLID);
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
            vfnvme_spec::fabrics::DISCOVERY_NQN
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
        match subsystems.connect(&connect, &data, local_address(), Instant::now()) {
            Ok(vfnvme_target::ctrlr::Association::Admin(controller)) => controller,
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
