//! Get Log Page (as Linux nvmet's admin-cmd.c and discovery.c): the command's length and
//! offset, then one function per log page — error, SMART / Health (from the drives),
//! firmware slot, changed namespace list, and the discovery log of discovery controllers.

use vfnvme_spec::log_page::{
    log_id, ChangedNamespaceList, FirmwareSlotLog, SmartLog, ERROR_LOG_ENTRY_SIZE,
};
use vfnvme_spec::status::{command_specific, generic};
use vfnvme_spec::{Command, Status};
use zerocopy::little_endian::U128;

use std::sync::MutexGuard;

use super::controller::{AdminForwarder, AdminState, FabricController, Role};
use super::response::AdminResponse;
use crate::subsystem::discovery_log_page;

/// Largest admin data transfer the target builds (the discovery log page is the long one).
const MAX_ADMIN_DATA: u64 = 4 << 20;

impl FabricController {
    /// Get Log Page: the log page `lid` from byte `offset`, cut or zero-padded to the length
    /// asked for.
    /// The admin state is unlocked while drives answer for the SMART log (see
    /// `volatile_write_cache`).
    pub(super) fn execute_get_log_page(
        &self,
        mut state: MutexGuard<'_, AdminState>,
        command: &Command,
    ) -> Result<AdminResponse, Status> {
        let lid = command.cdw10 as u8;
        let retain_event = command.cdw10 & (1 << 15) != 0;
        let dwords = (u64::from(command.cdw11 & 0xffff) << 16 | u64::from(command.cdw10 >> 16)) + 1;
        let len = dwords * 4;
        let offset = u64::from(command.cdw12) | (u64::from(command.cdw13) << 32);
        if offset % 4 != 0 || len > MAX_ADMIN_DATA {
            return Err(Status::invalid_field());
        }
        let log = match (&self.registry.role, lid) {
            (Role::Discovery { catalog, listeners }, log_id::DISCOVERY) => {
                // Read: the next change raises an event again.
                if !retain_event {
                    state.discovery_notices_masked = false;
                }
                discovery_log_page(
                    &catalog.visible_to(&self.host_nqn),
                    &listeners.all(),
                    self.arrival.listener,
                    self.arrival.local_address.ip(),
                    catalog.generation(),
                )
            }
            (Role::Nvm { .. }, log_id::ERROR) => error_log(),
            (Role::Nvm { forwarder }, log_id::SMART_HEALTH) => {
                drop(state);
                self.smart_log(forwarder.as_ref())?
            }
            (Role::Nvm { .. }, log_id::FIRMWARE_SLOT) => self.firmware_slot_log(),
            (Role::Nvm { .. }, log_id::CHANGED_NAMESPACE_LIST) => {
                changed_namespace_list(&mut state, retain_event)
            }
            _ => {
                return Err(
                    Status::command_specific(command_specific::INVALID_LOG_PAGE).do_not_retry()
                );
            }
        };
        let start = usize::try_from(offset).map_err(|_| Status::invalid_field())?;
        if start > log.len() {
            return Err(Status::invalid_field());
        }
        let mut data: Vec<u8> = log[start..].iter().copied().take(len as usize).collect();
        data.resize(len as usize, 0);
        Ok(AdminResponse::with_data(data))
    }

    /// The subsystem's SMART log: the drive's when one backs it, counters summed and the worst
    /// condition reported when several do, zeros for memory (nothing is measured there).
    fn smart_log(&self, forwarder: &dyn AdminForwarder) -> Result<Vec<u8>, Status> {
        let mut merged: Option<SmartLog> = None;
        for device_index in self.backing_drives() {
            let page = forwarder.smart_log(device_index)?;
            let log = SmartLog::from_bytes(&page)
                .map_err(|_| Status::generic(generic::INTERNAL_ERROR))?;
            merged = Some(match merged {
                None => log,
                Some(sum) => merge_smart(sum, log),
            });
        }
        Ok(merged.unwrap_or_default().to_bytes())
    }

    /// One read-only slot, active, holding the subsystem's firmware revision.
    fn firmware_slot_log(&self) -> Vec<u8> {
        let mut slots = FirmwareSlotLog {
            afi: 1,
            ..FirmwareSlotLog::default()
        };
        slots.set_revision(1, &self.subsystem().firmware);
        slots.to_bytes()
    }
}

/// No error is ever logged: one empty entry.
fn error_log() -> Vec<u8> {
    vec![0; ERROR_LOG_ENTRY_SIZE]
}

/// The namespaces changed since the last read, which clears them; reading without Retain
/// Asynchronous Event unmasks the next Namespace Attribute Changed event.
fn changed_namespace_list(state: &mut AdminState, retain_event: bool) -> Vec<u8> {
    let changed = std::mem::take(&mut state.changed_namespaces);
    if !retain_event {
        state.namespace_notices_masked = false;
    }
    ChangedNamespaceList::from_nsids(&changed).to_bytes()
}

/// Two drives' SMART logs as one: counters summed, the worst of each condition kept.
fn merge_smart(a: SmartLog, b: SmartLog) -> SmartLog {
    let sum = |x: U128, y: U128| U128::new(x.get().saturating_add(y.get()));
    let max = |x: U128, y: U128| x.max(y);
    SmartLog {
        critical_warning: a.critical_warning | b.critical_warning,
        temperature_kelvin: a.temperature_kelvin.max(b.temperature_kelvin),
        avail_spare: a.avail_spare.min(b.avail_spare),
        spare_thresh: a.spare_thresh.max(b.spare_thresh),
        percent_used: a.percent_used.max(b.percent_used),
        data_units_read: sum(a.data_units_read, b.data_units_read),
        data_units_written: sum(a.data_units_written, b.data_units_written),
        host_reads: sum(a.host_reads, b.host_reads),
        host_writes: sum(a.host_writes, b.host_writes),
        ctrl_busy_time: sum(a.ctrl_busy_time, b.ctrl_busy_time),
        power_cycles: max(a.power_cycles, b.power_cycles),
        power_on_hours: max(a.power_on_hours, b.power_on_hours),
        unsafe_shutdowns: max(a.unsafe_shutdowns, b.unsafe_shutdowns),
        media_errors: sum(a.media_errors, b.media_errors),
        num_err_log_entries: sum(a.num_err_log_entries, b.num_err_log_entries),
        ..a
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::super::test_support::*;
    use super::super::{AdminOutcome, Association, TargetSubsystems};
    use super::*;
    use crate::listeners::{ListenerInfo, ListenerTable};
    use crate::subsystem::HostAccess;
    use vfnvme_spec::fabrics::{connect_status, ConnectData, DISCOVERY_NQN};
    use vfnvme_spec::identify::IdentifyController;
    use vfnvme_spec::{admin_opcode, cns, feature, regs};

    #[test]
    fn log_pages_have_the_requested_length() {
        let drives = Arc::new(FakeDrives::default());
        let controller = enabled(&registry_with(Arc::clone(&drives)));
        let smart = get_log(&controller, log_id::SMART_HEALTH, 512, 0);
        let smart = SmartLog::from_bytes(&smart.data).unwrap();
        assert_eq!(
            (
                smart.temperature_kelvin.get(),
                smart.avail_spare,
                smart.host_reads.get()
            ),
            (300, 90, 10)
        );
        assert_eq!(
            drives.smart_calls.load(Ordering::Relaxed),
            1,
            "the RAM namespace adds no drive"
        );
        let error = get_log(&controller, log_id::ERROR, 64, 0);
        assert_eq!(error.data, vec![0; 64]);
        let firmware = get_log(&controller, log_id::FIRMWARE_SLOT, 64, 0);
        assert_eq!(firmware.data.len(), 64);
        assert_eq!(
            (firmware.data[0], &firmware.data[8..16]),
            (1, &b"8.2.0   "[..])
        );
        let partial = get_log(&controller, log_id::FIRMWARE_SLOT, 8, 8);
        assert_eq!(partial.data, b"8.2.0   ");
        let beyond = get_log(&controller, log_id::FIRMWARE_SLOT, 8, 1024);
        assert_eq!(beyond.status.sc(), generic::INVALID_FIELD);
        let discovery = get_log(&controller, log_id::DISCOVERY, 1024, 0);
        assert_eq!(discovery.status.sc(), command_specific::INVALID_LOG_PAGE);
    }

    #[test]
    fn discovery_controllers_serve_the_discovery_log() {
        let target = TargetSubsystems::new(
            vec![(Arc::new(subsystem()), HostAccess::discovery(1))],
            Arc::new(ListenerTable::new(vec![ListenerInfo::plain(
                "0.0.0.0:4420".parse().unwrap(),
            )])),
            settings(),
            Arc::new(FakeDrives::default()),
        );
        assert_eq!(target.registries().len(), 1);
        let discovery_data = ConnectData {
            subsystem_nqn: DISCOVERY_NQN.into(),
            ..data(0xffff)
        };
        let now = Instant::now();
        let Ok(Association::Admin(controller)) =
            target.connect(&admin_connect(0), &discovery_data, local(), now)
        else {
            panic!("discovery connect refused");
        };
        assert!(controller.is_discovery());
        assert_eq!(
            controller.keep_alive_timeout(),
            Some(Duration::from_secs(120))
        );
        property_set(&controller, regs::CC, ENABLE);
        let id = IdentifyController::from_bytes(&identify(&controller, cns::CONTROLLER, 0).data)
            .unwrap();
        assert_eq!((id.cntrltype, id.nn.get(), id.mdts), (2, 0, 0));
        assert_eq!(id.subnqn, DISCOVERY_NQN);
        assert_eq!(
            identify(&controller, cns::NAMESPACE, 1).status.sc(),
            generic::INVALID_FIELD
        );

        let header = get_log(&controller, log_id::DISCOVERY, 1024, 0);
        assert_eq!(
            u64::from_le_bytes(header.data[8..16].try_into().unwrap()),
            2
        );
        let entries = get_log(&controller, log_id::DISCOVERY, 2048, 1024).data;
        assert_eq!(entries[2], 3);
        assert_eq!(entries[1024 + 2], 2);
        assert_eq!(&entries[1024 + 512..1024 + 522], b"192.0.2.1 ");
        assert_eq!(
            get_log(&controller, log_id::SMART_HEALTH, 512, 0)
                .status
                .sc(),
            command_specific::INVALID_LOG_PAGE
        );
        assert_eq!(
            respond(&controller, Command::new(admin_opcode::ABORT, 0))
                .status
                .sc(),
            generic::INVALID_OPCODE
        );
        let queues = respond(
            &controller,
            features(admin_opcode::SET_FEATURES, feature::NUMBER_OF_QUEUES, 0),
        );
        assert_eq!(queues.status.sc(), generic::INVALID_FIELD);

        let io = ConnectData {
            cntlid: controller.cntlid(),
            ..discovery_data
        };
        let refused = target
            .connect(&io_connect(1), &io, local(), now)
            .map(|_| ());
        assert_rejection(refused, connect_status::INVALID_PARAMETERS, 42);
    }

    #[test]
    fn discovery_log_changes_move_genctr_and_raise_one_event_until_the_log_is_read() {
        let target = TargetSubsystems::new(
            vec![(Arc::new(subsystem()), HostAccess::discovery(1))],
            Arc::new(ListenerTable::new(vec![ListenerInfo::plain(
                "0.0.0.0:4420".parse().unwrap(),
            )])),
            settings(),
            Arc::new(FakeDrives::default()),
        );
        let discovery_data = ConnectData {
            subsystem_nqn: DISCOVERY_NQN.into(),
            ..data(0xffff)
        };
        let Ok(Association::Admin(controller)) =
            target.connect(&admin_connect(0), &discovery_data, local(), Instant::now())
        else {
            panic!("discovery connect refused");
        };
        property_set(&controller, regs::CC, ENABLE);
        let generation = |controller: &FabricController| {
            let header = get_log(controller, log_id::DISCOVERY, 1024, 0).data;
            u64::from_le_bytes(header[0..8].try_into().unwrap())
        };
        assert_eq!(generation(&controller), 1);
        target.discovery_changed();
        assert!(
            controller.take_completed_aers().is_empty(),
            "no event before the host enables it"
        );
        let enable = features(
            admin_opcode::SET_FEATURES,
            feature::ASYNC_EVENT_CONFIG,
            1 << 31,
        );
        assert!(respond(&controller, enable).status.is_success());
        let mut aer = Command::new(admin_opcode::ASYNC_EVENT_REQUEST, 0);
        aer.set_cid(9);
        assert_eq!(
            controller.execute_admin(&aer, Instant::now()),
            AdminOutcome::Held
        );
        target.discovery_changed();
        let completed = controller.take_completed_aers();
        assert_eq!(completed.len(), 1);
        assert_eq!(
            (completed[0].cid, completed[0].response.result),
            (9, 0x0070_f002)
        );
        aer.set_cid(10);
        assert_eq!(
            controller.execute_admin(&aer, Instant::now()),
            AdminOutcome::Held
        );
        target.discovery_changed();
        assert!(
            controller.take_completed_aers().is_empty(),
            "masked until the log is read"
        );
        assert_eq!(generation(&controller), 4, "one more per change");
        target.discovery_changed();
        assert_eq!(
            controller.take_completed_aers()[0].cid,
            10,
            "read: raised again"
        );
    }
}
