//! The admin commands a fabric controller answers itself (as Linux nvmet's admin-cmd.c):
//! Identify, one function per CNS, and Get/Set Features, with the volatile write cache
//! forwarded to the backing drives. Keep Alive and Abort need no more than their line in
//! the dispatch ([`FabricController::execute_admin`]); log pages have their own file.

use vfnvme_spec::identify::{
    build_active_namespace_list, IdentifyController, IdentifyNamespace, IDENTIFY_DATA_SIZE,
    VWC_PRESENT,
};
use vfnvme_spec::padded::PaddedString;
use vfnvme_spec::status::command_specific;
use vfnvme_spec::{cns, feature, Command, Status, PAGE_SIZE};
use zerocopy::little_endian::{U16, U32, U64};

use super::aer::{AEC_DISCOVERY_LOG_CHANGE_NOTICES, AEC_NAMESPACE_ATTRIBUTE_NOTICES};
use std::sync::MutexGuard;

use super::controller::{
    keep_alive_from_ms, lock, AdminState, FabricController, Role, AER_LIMIT, KEEP_ALIVE_SUPPORT,
    NVME_VERSION,
};
use super::response::AdminResponse;

/// Identify Controller fields.
const CMIC_MULTI_CONTROLLER: u8 = 1 << 1;
const CTRATT_128_BIT_HOST_ID: u32 = 1 << 0;
const CNTRLTYPE_IO: u8 = 1;
const CNTRLTYPE_DISCOVERY: u8 = 2;
const LPA_EXTENDED_DATA: u8 = 1 << 2;
/// SGLs supported without alignment requirements, with in-capsule data at an offset: what
/// Linux nvmet reports for TCP, and what the Linux host requires (bit 0 or 1).
const SGLS_SUPPORTED: u32 = (1 << 0) | (1 << 20);
const NMIC_SHARED: u8 = 1 << 0;
/// Get Features SEL 3 result bit: the feature is changeable.
const FEATURE_CHANGEABLE: u32 = 1 << 2;

impl FabricController {
    /// Identify: a discovery controller answers only Identify Controller.
    pub(super) fn execute_identify(&self, command: &Command) -> Result<AdminResponse, Status> {
        let cns = command.cdw10 as u8;
        let data = match (cns, self.is_discovery()) {
            (cns::CONTROLLER, _) => self.execute_identify_controller().to_bytes(),
            (cns::NAMESPACE, false) => self.execute_identify_namespace(command.nsid)?,
            (cns::ACTIVE_NAMESPACE_LIST, false) => {
                self.execute_identify_active_namespaces(command.nsid)?
            }
            (cns::NAMESPACE_ID_DESCRIPTORS, false) => {
                self.execute_identify_namespace_descriptors(command.nsid)?
            }
            _ => return Err(Status::invalid_field()),
        };
        Ok(AdminResponse::with_data(data))
    }

    fn execute_identify_controller(&self) -> IdentifyController {
        let subsystem = self.subsystem();
        let settings = &self.registry.settings;
        let common = IdentifyController {
            serial: PaddedString::space_padded(&subsystem.serial),
            model: PaddedString::space_padded(&subsystem.model),
            firmware: PaddedString::space_padded(&subsystem.firmware),
            cntlid: U16::new(self.cntlid),
            ver: U32::new(NVME_VERSION.into_bits()),
            ctratt: U32::new(CTRATT_128_BIT_HOST_ID),
            aerl: (AER_LIMIT - 1) as u8,
            lpa: LPA_EXTENDED_DATA,
            kas: U16::new(KEEP_ALIVE_SUPPORT),
            sqes: 0x66,
            cqes: 0x44,
            maxcmd: U16::new(settings.max_queue_depth),
            sgls: U32::new(SGLS_SUPPORTED),
            subnqn: PaddedString::nul_padded(&subsystem.nqn),
            ioccsz: U32::new((64 + settings.in_capsule_data_size) / 16),
            iorcsz: U32::new(1),
            msdbd: 1,
            ..IdentifyController::default()
        };
        if self.is_discovery() {
            return IdentifyController {
                cntrltype: CNTRLTYPE_DISCOVERY,
                // As nvmet's discovery controllers: Discovery Log Page Change notices.
                oaes: U32::new(AEC_DISCOVERY_LOG_CHANGE_NOTICES),
                ..common
            };
        }
        let pages = subsystem.max_io_size / PAGE_SIZE as u32;
        IdentifyController {
            rab: 6,
            cmic: CMIC_MULTI_CONTROLLER,
            mdts: pages.trailing_zeros() as u8,
            oaes: U32::new(AEC_NAMESPACE_ATTRIBUTE_NOTICES),
            cntrltype: CNTRLTYPE_IO,
            acl: 3,
            // One read-only firmware slot.
            frmw: (1 << 1) | 1,
            nn: U32::new(subsystem.max_nsid()),
            oncs: U16::new(subsystem.oncs),
            vwc: if subsystem.volatile_write_cache {
                VWC_PRESENT
            } else {
                0
            },
            ..common
        }
    }

    fn execute_identify_namespace(&self, nsid: u32) -> Result<Vec<u8>, Status> {
        let subsystem = self.subsystem();
        if nsid == 0 || nsid > subsystem.max_nsid() {
            return Err(Status::invalid_namespace());
        }
        // An inactive NSID within NN gets a zero filled structure.
        Ok(match subsystem.namespace(nsid) {
            Some(namespace) => {
                let mut identify = IdentifyNamespace {
                    nsze: U64::new(namespace.blocks),
                    ncap: U64::new(namespace.blocks),
                    nuse: U64::new(namespace.blocks),
                    nmic: NMIC_SHARED,
                    ..IdentifyNamespace::default()
                };
                namespace.ids.fill(&mut identify);
                identify.lbaf[0].lbads = namespace.block_size.trailing_zeros() as u8;
                identify.to_bytes()
            }
            None => vec![0; IDENTIFY_DATA_SIZE],
        })
    }

    /// The active NSIDs greater than `nsid`.
    fn execute_identify_active_namespaces(&self, nsid: u32) -> Result<Vec<u8>, Status> {
        if nsid >= 0xffff_fffe {
            return Err(Status::invalid_namespace());
        }
        let nsids: Vec<u32> = self
            .subsystem()
            .namespaces
            .get()
            .iter()
            .map(|n| n.nsid)
            .collect();
        Ok(build_active_namespace_list(&nsids, nsid))
    }

    fn execute_identify_namespace_descriptors(&self, nsid: u32) -> Result<Vec<u8>, Status> {
        let namespace = self
            .subsystem()
            .namespace(nsid)
            .ok_or_else(Status::invalid_namespace)?;
        Ok(namespace.ids.descriptor_list(0))
    }

    pub(super) fn execute_get_features(
        &self,
        state: MutexGuard<'_, AdminState>,
        command: &Command,
    ) -> Result<AdminResponse, Status> {
        let fid = command.cdw10 as u8;
        let select = (command.cdw10 >> 8) & 0x7;
        let supported = if self.is_discovery() {
            matches!(fid, feature::KEEP_ALIVE_TIMER | feature::ASYNC_EVENT_CONFIG)
        } else {
            matches!(
                fid,
                feature::ARBITRATION
                    | feature::POWER_MANAGEMENT
                    | feature::TEMPERATURE_THRESHOLD
                    | feature::ERROR_RECOVERY
                    | feature::VOLATILE_WRITE_CACHE
                    | feature::NUMBER_OF_QUEUES
                    | feature::ASYNC_EVENT_CONFIG
                    | feature::KEEP_ALIVE_TIMER
            )
        };
        if !supported {
            return Err(Status::invalid_field());
        }
        const SELECT_SUPPORTED_CAPABILITIES: u32 = 3;
        if select == SELECT_SUPPORTED_CAPABILITIES {
            // The two answered without state cannot be set.
            let fixed = matches!(
                fid,
                feature::TEMPERATURE_THRESHOLD | feature::ERROR_RECOVERY
            );
            return Ok(AdminResponse::success(if fixed {
                0
            } else {
                FEATURE_CHANGEABLE
            }));
        }
        let value = match fid {
            feature::ARBITRATION => state.arbitration,
            feature::POWER_MANAGEMENT => state.power_management,
            feature::TEMPERATURE_THRESHOLD => temperature_threshold(command.cdw11),
            // No time-limited error recovery, no error on deallocated blocks.
            feature::ERROR_RECOVERY => 0,
            feature::VOLATILE_WRITE_CACHE => u32::from(self.volatile_write_cache(state, None)?),
            feature::NUMBER_OF_QUEUES => {
                let granted = u32::from(state.io_queues_granted - 1);
                granted << 16 | granted
            }
            feature::ASYNC_EVENT_CONFIG => state.async_event_config,
            _ => state.keep_alive.map_or(0, |timeout| {
                u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)
            }),
        };
        Ok(AdminResponse::success(value))
    }

    pub(super) fn execute_set_features(
        &self,
        mut state: MutexGuard<'_, AdminState>,
        command: &Command,
    ) -> Result<AdminResponse, Status> {
        let fid = command.cdw10 as u8;
        if command.cdw10 & (1 << 31) != 0 {
            return Err(
                Status::command_specific(command_specific::FEATURE_NOT_SAVEABLE).do_not_retry(),
            );
        }
        let value = command.cdw11;
        match (fid, self.is_discovery()) {
            (feature::KEEP_ALIVE_TIMER, discovery) => {
                state.keep_alive = match keep_alive_from_ms(value) {
                    None if discovery => Some(self.registry.settings.discovery_keep_alive),
                    requested => requested,
                };
            }
            (feature::ASYNC_EVENT_CONFIG, _) => state.async_event_config = value,
            (feature::ARBITRATION, false) => state.arbitration = value,
            (feature::POWER_MANAGEMENT, false) => state.power_management = value,
            (feature::VOLATILE_WRITE_CACHE, false) => {
                self.volatile_write_cache(state, Some(value & 1 != 0))?;
            }
            (feature::NUMBER_OF_QUEUES, false) => {
                let submission = value & 0xffff;
                let completion = value >> 16;
                if submission == 0xffff || completion == 0xffff {
                    return Err(Status::invalid_field());
                }
                if !state.io_queues.is_empty() {
                    return Err(Status::command_sequence_error());
                }
                let wanted = submission.min(completion) + 1;
                let granted = wanted.min(u32::from(self.registry.settings.max_io_queues));
                state.io_queues_granted = granted as u16;
                return Ok(AdminResponse::success((granted - 1) << 16 | (granted - 1)));
            }
            _ => return Err(Status::invalid_field()),
        }
        Ok(AdminResponse::success(0))
    }

    /// Reads or sets the volatile write cache: forwarded to every backing drive, kept here
    /// for memory. Reports the first drive's state (or the memory setting). The admin state
    /// is unlocked while the drives answer, which may take seconds: the poll group of the
    /// admin queue reads it on every tick.
    fn volatile_write_cache(
        &self,
        state: MutexGuard<'_, AdminState>,
        enable: Option<bool>,
    ) -> Result<bool, Status> {
        drop(state);
        let Role::Nvm { forwarder } = &self.registry.role else {
            return Err(Status::invalid_field());
        };
        if !self.subsystem().volatile_write_cache {
            return Err(Status::invalid_field());
        }
        let mut first = None;
        for device_index in self.backing_drives() {
            let state = forwarder.volatile_write_cache(device_index, enable)?;
            first.get_or_insert(state);
        }
        let mut state = lock(&self.state);
        if let Some(enable) = enable {
            state.ram_write_cache = enable;
        }
        Ok(first.unwrap_or(state.ram_write_cache))
    }
}

/// Temperature Threshold (mandatory, so hosts such as SPDK's identify ask for it; nvmet answers
/// it too): the controller reports no temperature of its own, so the thresholds are the usual
/// defaults: over-temperature 343 K (70 °C, as QEMU's and many drives'), under-temperature 0.
fn temperature_threshold(cdw11: u32) -> u32 {
    const OVER_TEMPERATURE_KELVIN: u32 = 343;
    const THSEL_UNDER: u32 = 1;
    if (cdw11 >> 20) & 0x3 == THSEL_UNDER {
        0
    } else {
        OVER_TEMPERATURE_KELVIN
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::test_support::*;
    use super::*;
    use vfnvme_spec::admin_opcode;
    use vfnvme_spec::fabrics::connect_status;
    use vfnvme_spec::status::generic;

    #[test]
    fn identify_controller_describes_the_subsystem() {
        let registry = registry();
        let _first = connect(&registry);
        let controller = enabled(&registry);
        let response = identify(&controller, cns::CONTROLLER, 0);
        assert_eq!(response.data.len(), IDENTIFY_DATA_SIZE);
        let id = IdentifyController::from_bytes(&response.data).unwrap();
        assert_eq!(id.serial, "SN-0042");
        assert_eq!(id.model, "QEMU NVMe Ctrl");
        assert_eq!(id.firmware, "8.2.0");
        assert_eq!(id.subnqn, SUBSYSTEM_NQN);
        assert_eq!(id.cntlid, 2);
        assert_eq!(id.ver, 0x0001_0300);
        assert_eq!(id.mdts, 5, "128 KiB is 2^5 pages of 4 KiB");
        assert_eq!(id.ioccsz, (64 + 8192) / 16);
        assert_eq!(id.iorcsz, 1);
        assert_eq!(id.icdoff, 0);
        assert_eq!(id.msdbd, 1);
        assert_eq!(id.sgls & 1, 1, "the Linux host requires SGL support");
        assert_eq!((id.sqes, id.cqes), (0x66, 0x44));
        assert_eq!(id.nn, 3);
        assert_eq!(id.oncs, 0b1100);
        assert_eq!(id.vwc, 1);
        assert_eq!(id.kas, 10);
        assert_eq!(id.aerl, 3);
        assert_eq!(id.maxcmd, 128);
        assert_eq!(id.cntrltype, 1);
        assert_eq!(id.oaes, 1 << 8);
        assert_eq!(id.ctratt & 1, 1);
    }

    #[test]
    fn identify_namespace_lists_and_descriptors() {
        let controller = enabled(&registry());
        let ns =
            IdentifyNamespace::from_bytes(&identify(&controller, cns::NAMESPACE, 1).data).unwrap();
        assert_eq!(
            (ns.nsze.get(), ns.ncap.get(), ns.nuse.get()),
            (1000, 1000, 1000)
        );
        assert_eq!(ns.block_size(), 4096);
        assert_eq!((ns.nguid, ns.eui64), ([0x11; 16], [0x12; 8]));
        assert_eq!(ns.nmic, 1);
        let ram =
            IdentifyNamespace::from_bytes(&identify(&controller, cns::NAMESPACE, 3).data).unwrap();
        assert_eq!((ram.nsze.get(), ram.block_size()), (2048, 512));
        let inactive = identify(&controller, cns::NAMESPACE, 2);
        assert!(inactive.status.is_success());
        assert!(inactive.data.iter().all(|&b| b == 0));
        for nsid in [0, 4, 0xffff_ffff] {
            let out_of_range = identify(&controller, cns::NAMESPACE, nsid);
            assert_eq!(
                out_of_range.status.sc(),
                generic::INVALID_NAMESPACE_OR_FORMAT
            );
        }

        let list = identify(&controller, cns::ACTIVE_NAMESPACE_LIST, 0).data;
        assert_eq!(&list[..12], &[1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        let after_one = identify(&controller, cns::ACTIVE_NAMESPACE_LIST, 1).data;
        assert_eq!(&after_one[..8], &[3, 0, 0, 0, 0, 0, 0, 0]);

        let descriptors = identify(&controller, cns::NAMESPACE_ID_DESCRIPTORS, 3).data;
        assert_eq!(
            vfnvme_spec::identify::parse_namespace_id_descriptors(&descriptors).unwrap(),
            vec![
                vfnvme_spec::identify::NamespaceId::Nguid([0x33; 16]),
                vfnvme_spec::identify::NamespaceId::Csi(0)
            ]
        );
        let missing = identify(&controller, cns::NAMESPACE_ID_DESCRIPTORS, 2);
        assert_eq!(missing.status.sc(), generic::INVALID_NAMESPACE_OR_FORMAT);
        assert_eq!(
            identify(&controller, 0x10, 0).status.sc(),
            generic::INVALID_FIELD
        );
    }

    #[test]
    fn keep_alive_timer_feature_changes_the_timeout() {
        let controller = enabled(&registry());
        let set = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::KEEP_ALIVE_TIMER,
                15_000,
            ),
        );
        assert!(set.status.is_success());
        assert_eq!(
            controller.keep_alive_timeout(),
            Some(Duration::from_secs(15))
        );
        let get = respond(
            &controller,
            features(admin_opcode::GET_FEATURES, feature::KEEP_ALIVE_TIMER, 0),
        );
        assert_eq!(get.result, 15_000);
    }

    #[test]
    fn mandatory_features_without_state_are_answered() {
        let registry = registry();
        let controller = enabled(&registry);
        let over = respond(
            &controller,
            features(
                admin_opcode::GET_FEATURES,
                feature::TEMPERATURE_THRESHOLD,
                0,
            ),
        );
        assert!(over.status.is_success());
        assert_eq!(over.result, 343, "over-temperature threshold, kelvin");
        let under = respond(
            &controller,
            features(
                admin_opcode::GET_FEATURES,
                feature::TEMPERATURE_THRESHOLD,
                1 << 20,
            ),
        );
        assert!(under.status.is_success());
        assert_eq!(under.result, 0);
        let recovery = respond(
            &controller,
            features(admin_opcode::GET_FEATURES, feature::ERROR_RECOVERY, 0),
        );
        assert!(recovery.status.is_success());
        assert_eq!(recovery.result, 0);
    }

    #[test]
    fn features_are_granted_stored_and_forwarded() {
        let drives = Arc::new(FakeDrives::default());
        let registry = registry_with(Arc::clone(&drives));
        let controller = enabled(&registry);
        let queues = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::NUMBER_OF_QUEUES,
                0x0007_0007,
            ),
        );
        assert_eq!(queues.result, 0x0007_0007);
        let get = respond(
            &controller,
            features(admin_opcode::GET_FEATURES, feature::NUMBER_OF_QUEUES, 0),
        );
        assert_eq!(get.result, 0x0007_0007);
        assert_rejection(
            registry.connect_io(&io_connect(9), &data(1)),
            connect_status::INVALID_PARAMETERS,
            42,
        );
        let many = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::NUMBER_OF_QUEUES,
                0x00ff_00ff,
            ),
        );
        assert_eq!(many.result, 0x003f_003f, "capped at max_io_queues");
        let _queue = registry.connect_io(&io_connect(1), &data(1)).unwrap();
        let late = respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::NUMBER_OF_QUEUES, 0),
        );
        assert_eq!(late.status.sc(), generic::COMMAND_SEQUENCE_ERROR);
        let all_ones = respond(
            &controller,
            features(
                admin_opcode::SET_FEATURES,
                feature::NUMBER_OF_QUEUES,
                0xffff,
            ),
        );
        assert_eq!(all_ones.status.sc(), generic::INVALID_FIELD);

        let cache_on = respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::VOLATILE_WRITE_CACHE, 1),
        );
        assert!(cache_on.status.is_success());
        assert!(drives.cache_enabled.load(Ordering::Relaxed));
        let cache = respond(
            &controller,
            features(admin_opcode::GET_FEATURES, feature::VOLATILE_WRITE_CACHE, 0),
        );
        assert_eq!(cache.result, 1);

        respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::ARBITRATION, 0x0303),
        );
        assert_eq!(
            respond(
                &controller,
                features(admin_opcode::GET_FEATURES, feature::ARBITRATION, 0)
            )
            .result,
            0x0303
        );
        respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::POWER_MANAGEMENT, 0),
        );
        let saved = Command {
            cdw10: u32::from(feature::ARBITRATION) | 1 << 31,
            ..Command::new(admin_opcode::SET_FEATURES, 0)
        };
        assert_eq!(
            respond(&controller, saved).status.sc(),
            command_specific::FEATURE_NOT_SAVEABLE
        );
        let unknown = respond(&controller, features(admin_opcode::GET_FEATURES, 0x0e, 0));
        assert_eq!(unknown.status.sc(), generic::INVALID_FIELD);
    }
}
