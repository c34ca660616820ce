//! The controller's registers as hosts reach them over a fabric: Property Get and Set of CAP,
//! VS, CC and CSTS, and what a CC write does (enable, reset, shutdown). As Linux nvmet's
//! `nvmet_execute_prop_get/set` and `nvmet_update_cc`; its own file because register state
//! changes (CSTS.RDY gates the I/O path) are apart from the admin commands.

use std::sync::atomic::Ordering;

use vfnvme_spec::fabrics::{FabricsCommand, PropertyGet, PropertySet, PropertySize};
use vfnvme_spec::regs::{self, Cap, Cc, ShutdownNotification, ShutdownStatus};
use vfnvme_spec::{Command, Status};

use super::controller::{AdminState, FabricController, NVME_VERSION};
use super::response::AdminResponse;

/// CAP.TO: enabling is immediate, but hosts wait this long at most (Linux nvmet uses 7.5 s).
const READY_TIMEOUT_MS: u64 = 7500;

impl FabricController {
    /// A Fabrics command on the admin queue: Property Get or Set.
    pub(super) fn execute_fabrics(
        &self,
        state: &mut AdminState,
        command: &Command,
    ) -> Result<AdminResponse, Status> {
        match FabricsCommand::parse(command)? {
            FabricsCommand::PropertyGet(get) => self.execute_property_get(state, get),
            FabricsCommand::PropertySet(set) => self.execute_property_set(state, set),
            // The admin queue is connected already; Disconnect applies to I/O queues.
            FabricsCommand::Connect(_) => Err(Status::command_sequence_error()),
            FabricsCommand::Disconnect => Err(Status::invalid_field()),
        }
    }

    fn capabilities(&self) -> u64 {
        Cap::build(
            u32::from(self.registry.settings.max_queue_depth),
            READY_TIMEOUT_MS,
            0,
        )
        .into_bits()
    }

    fn execute_property_get(
        &self,
        state: &AdminState,
        get: PropertyGet,
    ) -> Result<AdminResponse, Status> {
        let offset = usize::try_from(get.offset).map_err(|_| Status::invalid_field())?;
        let value = match (offset, get.size) {
            (regs::CAP, PropertySize::Eight) => self.capabilities(),
            (regs::CAP, PropertySize::Four) => self.capabilities() & 0xffff_ffff,
            (o, PropertySize::Four) if o == regs::CAP + 4 => self.capabilities() >> 32,
            (regs::VS, PropertySize::Four) => u64::from(NVME_VERSION.into_bits()),
            (regs::CC, PropertySize::Four) => u64::from(state.cc.into_bits()),
            (regs::CSTS, PropertySize::Four) => u64::from(state.csts.into_bits()),
            _ => return Err(Status::invalid_field()),
        };
        Ok(AdminResponse {
            dw1: (value >> 32) as u32,
            ..AdminResponse::success(value as u32)
        })
    }

    fn execute_property_set(
        &self,
        state: &mut AdminState,
        set: PropertySet,
    ) -> Result<AdminResponse, Status> {
        if set.offset != regs::CC as u32 || set.size != PropertySize::Four {
            return Err(Status::invalid_field());
        }
        self.write_cc(state, Cc::from_bits(set.value as u32));
        Ok(AdminResponse::success(0))
    }

    /// CC write side effects, as Linux nvmet `nvmet_update_cc`: enabling sets CSTS.RDY (or
    /// CSTS.CFS for an unusable configuration), disabling resets, a shutdown notification
    /// completes at once.
    fn write_cc(&self, state: &mut AdminState, new: Cc) {
        let old = std::mem::replace(&mut state.cc, new);
        let shutdown = |value: Cc| value.shn() != ShutdownNotification::None;
        if new.en() && !old.en() {
            if cc_is_supported(new) {
                state.csts.set_rdy(true);
                self.enabled.store(!self.is_terminated(), Ordering::Release);
            } else {
                state.csts.set_cfs(true);
            }
        }
        if !new.en() && old.en() {
            state.csts = state.csts.with_rdy(false).with_cfs(false);
            self.enabled.store(false, Ordering::Release);
        }
        if shutdown(new) && !shutdown(old) {
            state.csts = state
                .csts
                .with_rdy(false)
                .with_shst(ShutdownStatus::Complete);
            self.enabled.store(false, Ordering::Release);
        }
        if !shutdown(new) && shutdown(old) {
            state.csts.set_shst(ShutdownStatus::Normal);
        }
    }
}

/// CC values the controller can run with: NVM command set, 4 KiB pages, round robin,
/// 64-byte submission and 16-byte completion entries.
fn cc_is_supported(value: Cc) -> bool {
    value.css() == 0
        && value.mps() == regs::MPS
        && value.ams() == 0
        && value.iosqes() == regs::IOSQES
        && value.iocqes() == regs::IOCQES
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use vfnvme_spec::cns;
    use vfnvme_spec::regs::Csts;
    use vfnvme_spec::status::generic;

    #[test]
    fn enabling_through_cc_sets_csts_ready() {
        let registry = registry();
        let controller = connect(&registry);
        assert_eq!(controller.connect_response(), AdminResponse::success(1));
        assert!(!controller.is_enabled());
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            0
        );
        let early = identify(&controller, cns::CONTROLLER, 0);
        assert_eq!(early.status.sc(), generic::COMMAND_SEQUENCE_ERROR);

        let cap = property_get(&controller, regs::CAP, PropertySize::Eight);
        let cap = Cap::from_bits(u64::from(cap.result) | u64::from(cap.dw1) << 32);
        assert_eq!(cap.max_queue_entries(), 128);
        assert!(cap.cqr());
        assert!(cap.css().nvm());
        assert_eq!(cap.timeout_ms(), 7500);
        let high = property_get(&controller, regs::CAP + 4, PropertySize::Four);
        assert_eq!(u64::from(high.result), cap.into_bits() >> 32);
        assert_eq!(
            property_get(&controller, regs::VS, PropertySize::Four).result,
            0x0001_0300
        );

        assert!(property_set(&controller, regs::CC, ENABLE)
            .status
            .is_success());
        assert_eq!(
            property_get(&controller, regs::CC, PropertySize::Four).result,
            ENABLE
        );
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            Csts::new().with_rdy(true).into_bits()
        );
        assert!(controller.is_enabled());
        assert!(identify(&controller, cns::CONTROLLER, 0)
            .status
            .is_success());

        let shutdown = Cc::from_bits(ENABLE).with_shn(ShutdownNotification::Normal);
        assert!(property_set(&controller, regs::CC, shutdown.into_bits())
            .status
            .is_success());
        let status =
            Csts::from_bits(property_get(&controller, regs::CSTS, PropertySize::Four).result);
        assert_eq!(status.shst(), ShutdownStatus::Complete);
        assert!(!status.rdy());
        assert!(!controller.is_enabled());

        for bad in [
            property_get(&controller, regs::NSSR, PropertySize::Four),
            property_get(&controller, regs::CC, PropertySize::Eight),
            property_set(&controller, regs::CSTS, 1),
        ] {
            assert_eq!(bad.status.sc(), generic::INVALID_FIELD);
        }
    }

    #[test]
    fn unusable_cc_reports_fatal_status() {
        let controller = connect(&registry());
        property_set(&controller, regs::CC, Cc::new().with_en(true).into_bits());
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            Csts::new().with_cfs(true).into_bits()
        );
        assert!(!controller.is_enabled());
        property_set(&controller, regs::CC, 0);
        property_set(&controller, regs::CC, ENABLE);
        assert_eq!(
            property_get(&controller, regs::CSTS, PropertySize::Four).result,
            Csts::new().with_rdy(true).into_bits()
        );
    }
}
