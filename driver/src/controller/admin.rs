//! The admin queue: one command at a time under the controller's lock, its data through a
//! bounce buffer, completion polled with a timeout; and the admin commands the controller
//! itself issues during bring-up (Set Features Number of Queues). The `Controller` methods that
//! run a command under the lock (`admin`, `abort`) are in `handle`, over this.

use std::time::Instant;

use super::wait::pause;
use crate::dma::DmaRegion;
use crate::error::{Error, Result};
use crate::mmio::Mmio;
use crate::queue::{Completed, DataPointer, QueuePair};
use vfnvme_spec::{admin_opcode, feature, Command};

/// Data moved by an admin command, through the controller's bounce buffer.
pub enum AdminData<'a> {
    None,
    /// Controller to host (Identify, Get Log Page, ...).
    FromDevice(&'a mut [u8]),
    /// Host to controller (Set Features with a data buffer, ...).
    ToDevice(&'a [u8]),
}

/// The largest admin data transfer (Identify and log pages are 4 KiB; a few logs are longer).
pub(super) const ADMIN_BOUNCE_BYTES: usize = 64 * 1024;

pub(super) struct AdminQueue {
    pub(super) queue: QueuePair,
    pub(super) bounce: DmaRegion,
}

/// What an admin command needs besides the queue.
pub(super) struct AdminContext<'a> {
    pub(super) address: &'a str,
    pub(super) registers: &'a Mmio,
    pub(super) timeout: std::time::Duration,
}

impl AdminContext<'_> {
    pub(super) fn execute(
        &self,
        admin: &mut AdminQueue,
        command: Command,
        data: AdminData<'_>,
        name: &'static str,
    ) -> Result<u32> {
        let len = match &data {
            AdminData::None => 0,
            AdminData::FromDevice(buffer) => buffer.len(),
            AdminData::ToDevice(buffer) => buffer.len(),
        };
        if len > ADMIN_BOUNCE_BYTES {
            return Err(Error::Unsupported {
                address: self.address.to_owned(),
                what: format!(
                    "{name} moves {len} bytes; admin data is limited to {ADMIN_BOUNCE_BYTES}"
                ),
            });
        }
        if let AdminData::ToDevice(buffer) = &data {
            admin.bounce.memory().write(0, buffer);
        }
        let pointer = (len > 0).then(|| DataPointer {
            iova: admin.bounce.iova(),
            len,
        });
        admin
            .queue
            .submit(command, pointer, None, 0)
            .map_err(|rejected| Error::Unsupported {
                address: self.address.to_owned(),
                what: format!("{name}: {}", rejected.error),
            })?;
        let mut outcome = None;
        let deadline = Instant::now() + self.timeout;
        loop {
            admin.queue.poll(usize::MAX, |done| outcome = Some(done));
            if let Some(done) = outcome {
                return self.finish(admin, done, data, name);
            }
            if self.registers.csts().cfs() {
                return Err(Error::ControllerFatal {
                    address: self.address.to_owned(),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    address: self.address.to_owned(),
                    what: name,
                    timeout: self.timeout,
                });
            }
            pause();
        }
    }

    fn finish(
        &self,
        admin: &AdminQueue,
        done: Completed,
        data: AdminData<'_>,
        name: &'static str,
    ) -> Result<u32> {
        if !done.status.is_success() {
            return Err(Error::Command {
                address: self.address.to_owned(),
                command: name,
                status: done.status,
            });
        }
        if let AdminData::FromDevice(buffer) = data {
            admin.bounce.memory().read(0, buffer);
        }
        Ok(done.result)
    }
}

/// Set Features Number of Queues; returns how many I/O queue pairs the controller granted.
pub(super) fn negotiate_queues(
    context: &AdminContext<'_>,
    admin: &mut AdminQueue,
    wanted: u16,
) -> Result<u16> {
    let wanted = u32::from(wanted.max(1) - 1);
    let command = Command {
        cdw10: u32::from(feature::NUMBER_OF_QUEUES),
        cdw11: wanted | (wanted << 16),
        ..Command::new(admin_opcode::SET_FEATURES, 0)
    };
    let result = context.execute(
        admin,
        command,
        AdminData::None,
        "Set Features (Number of Queues)",
    )?;
    let submission = (result & 0xffff) as u16;
    let completion = (result >> 16) as u16;
    Ok(submission.min(completion).saturating_add(1))
}
