//! [`Host`]: a fabric controller reached through its admin queue. Connect, properties (CC.EN,
//! CSTS.RDY), Identify, log pages, Keep Alive, and opening I/O queues; the admin-level API on
//! top of [`HostQueue`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vfnvme_spec::fabrics::{
    FabricsCommand, PropertyGet, PropertySet, PropertySize, CNTLID_DYNAMIC,
};
use vfnvme_spec::identify::{IdentifyController, IdentifyNamespace, IDENTIFY_DATA_SIZE};
use vfnvme_spec::regs::{self, Cc, Csts};
use vfnvme_spec::{admin_opcode, cns, Command};
use vfnvme_tcp::PduError;

use crate::auth::authenticate_if_required;
use crate::error::HostError;
use crate::options::HostOptions;
use crate::queue::HostQueue;

/// Entries of the admin queue, as the Linux host (`NVME_AQ_DEPTH`).
const ADMIN_QUEUE_ENTRIES: u16 = 32;

/// A fabric controller, reached through its admin queue.
pub struct Host {
    admin: HostQueue,
    address: SocketAddr,
    subsystem_nqn: String,
    cntlid: u16,
    options: HostOptions,
    /// In-capsule data the controller takes on I/O queues (IOCCSZ), once identified.
    io_in_capsule: Option<usize>,
}

impl Host {
    /// Connects the admin queue to `subsystem_nqn` at `address`.
    pub fn connect(
        address: SocketAddr,
        subsystem_nqn: &str,
        options: HostOptions,
    ) -> Result<Self, HostError> {
        let mut admin = HostQueue::open(address, subsystem_nqn, ADMIN_QUEUE_ENTRIES, &options)?;
        admin.in_capsule_max = 8192;
        let result = admin.connect(0, CNTLID_DYNAMIC, subsystem_nqn, &options)?;
        authenticate_if_required(&mut admin, result, subsystem_nqn, &options)?;
        let cntlid = result as u16;
        Ok(Self {
            admin,
            address,
            subsystem_nqn: subsystem_nqn.to_owned(),
            cntlid,
            options,
            io_in_capsule: None,
        })
    }

    pub fn cntlid(&self) -> u16 {
        self.cntlid
    }

    pub fn admin_queue(&mut self) -> &mut HostQueue {
        &mut self.admin
    }

    pub fn property_get(&mut self, offset: u32, eight_bytes: bool) -> Result<u64, HostError> {
        let size = if eight_bytes {
            PropertySize::Eight
        } else {
            PropertySize::Four
        };
        let command = FabricsCommand::PropertyGet(PropertyGet { size, offset }).to_command(0);
        let (done, _) = self
            .admin
            .execute_completion(command, &[], 0, "Property Get")?;
        Ok(u64::from(done.result) | (u64::from(done.dw1) << 32))
    }

    pub fn property_set(&mut self, offset: u32, value: u32) -> Result<(), HostError> {
        let command = FabricsCommand::PropertySet(PropertySet {
            size: PropertySize::Four,
            offset,
            value: u64::from(value),
        })
        .to_command(0);
        self.admin
            .execute(command, &[], 0, "Property Set")
            .map(|_| ())
    }

    /// CC.EN = 1 and wait for CSTS.RDY, as a host does after connecting.
    pub fn enable(&mut self) -> Result<(), HostError> {
        self.property_set(regs::CC as u32, Cc::nvm_enabled().into_bits())?;
        let deadline = Instant::now() + self.options.timeout;
        while !Csts::from_bits(self.property_get(regs::CSTS as u32, false)? as u32).rdy() {
            if Instant::now() > deadline {
                return Err(HostError::Timeout {
                    address: self.address,
                    what: "CSTS.RDY",
                    timeout: self.options.timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    pub fn identify_controller(&mut self) -> Result<IdentifyController, HostError> {
        let command = Command {
            cdw10: u32::from(cns::CONTROLLER),
            ..Command::new(admin_opcode::IDENTIFY, 0)
        };
        let (_, data) = self
            .admin
            .execute(command, &[], IDENTIFY_DATA_SIZE, "Identify")?;
        let identify = IdentifyController::from_bytes(&data).map_err(|_| HostError::Protocol {
            address: self.address,
            error: PduError::DataOutOfRange("short Identify data"),
        })?;
        // IOCCSZ counts 16-byte units of the whole capsule: the 64-byte command and its data.
        self.io_in_capsule = Some((identify.ioccsz.get() as usize * 16).saturating_sub(64));
        Ok(identify)
    }

    pub fn identify_namespace(&mut self, nsid: u32) -> Result<IdentifyNamespace, HostError> {
        let command = Command {
            cdw10: u32::from(cns::NAMESPACE),
            ..Command::new(admin_opcode::IDENTIFY, nsid)
        };
        let (_, data) =
            self.admin
                .execute(command, &[], IDENTIFY_DATA_SIZE, "Identify Namespace")?;
        IdentifyNamespace::from_bytes(&data).map_err(|_| HostError::Protocol {
            address: self.address,
            error: PduError::DataOutOfRange("short Identify data"),
        })
    }

    /// Get Log Page `lid`, `len` bytes (a multiple of 4).
    pub fn log_page(&mut self, lid: u8, len: usize) -> Result<Vec<u8>, HostError> {
        let dwords = (len / 4) as u32 - 1;
        let command = Command {
            cdw10: u32::from(lid) | ((dwords & 0xffff) << 16),
            cdw11: dwords >> 16,
            ..Command::new(admin_opcode::GET_LOG_PAGE, 0)
        };
        self.admin
            .execute(command, &[], len, "Get Log Page")
            .map(|(_, data)| data)
    }

    pub fn keep_alive(&mut self) -> Result<(), HostError> {
        let command = Command::new(admin_opcode::KEEP_ALIVE, 0);
        self.admin
            .execute(command, &[], 0, "Keep Alive")
            .map(|_| ())
    }

    /// Opens I/O queue `qid` with `entries` entries.
    pub fn connect_io_queue(&mut self, qid: u16, entries: u16) -> Result<HostQueue, HostError> {
        let in_capsule = match self.io_in_capsule {
            Some(size) => size,
            None => {
                self.identify_controller()?;
                self.io_in_capsule.unwrap_or(0)
            }
        };
        let mut queue = HostQueue::open(self.address, &self.subsystem_nqn, entries, &self.options)?;
        let result = queue.connect(qid, self.cntlid, &self.subsystem_nqn, &self.options)?;
        authenticate_if_required(&mut queue, result, &self.subsystem_nqn, &self.options)?;
        queue.in_capsule_max = in_capsule;
        Ok(queue)
    }
}
