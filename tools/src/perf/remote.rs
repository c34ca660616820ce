//! The remote backend: I/O queues of an NVMe/TCP target, through our initiator
//! (`vfnvme_host`). Each queue pair is one TCP connection with its own queue id
//! (1..=N), of `-q + 1` entries. The host copies write data into the capsule or its own slot,
//! and hands read data over from its receive buffers; a read that brought less data than asked
//! for counts as a data transfer error.
//!
//! The loop busy-polls: a round's submissions are enqueued and leave in one write when the
//! next reap polls the connection, which never blocks (a non-blocking socket, every completion
//! in the bytes one read brought).
//!
//! Keep-alive: the admin queue connects with KATO 0, so the controller never expects one.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use vfnvme_driver::Namespace;
use vfnvme_host::{Host, HostError, HostOptions, HostQueue};
use vfnvme_spec::regs::{self, Cap};
use vfnvme_spec::status::generic;
use vfnvme_spec::{admin_opcode, feature, nvm_opcode, Command, Status};

use super::args::PerfArgs;
use super::engine::{run_plan, Backend};
use super::plan::{Limits, Plan};
use super::workload::Extent;
use crate::error::{Error, Result};

/// The NVMe/TCP port (IANA), when the URL names none.
const DEFAULT_PORT: u16 = 4420;

/// `vfnvme perf --connect tcp://HOST:PORT/NQN`.
pub fn run(args: &PerfArgs, url: &str) -> Result<()> {
    let endpoint = Endpoint::parse(url)?;
    let options = HostOptions {
        header_digest: args.header_digest,
        data_digest: args.data_digest,
        max_data_len: args.io_size,
        dhchap_secret: args.dhchap_secret.clone(),
        dhchap_ctrl_secret: args.dhchap_ctrl_secret.clone(),
        tls_psk: args.tls_key.clone(),
        ..HostOptions::default()
    };
    let options = match &args.hostnqn {
        Some(host_nqn) => HostOptions {
            host_nqn: host_nqn.clone(),
            ..options
        },
        None => options,
    };
    let timeout = options.timeout;
    let mut host = Host::connect(endpoint.address, &endpoint.nqn, options)?;
    host.enable()?;
    let controller = host.identify_controller()?;
    let cap = Cap::from_bits(host.property_get(regs::CAP as u32, true)?);
    let identify = host.identify_namespace(args.nsid)?;
    if identify.nsze.get() == 0 {
        return Err(Error::Invalid(format!(
            "namespace {} of {} is not active",
            args.nsid, endpoint.nqn
        )));
    }
    let limits = Limits {
        namespace: Namespace {
            nsid: args.nsid,
            block_size: identify.block_size(),
            blocks: identify.nsze.get(),
            identify,
        },
        // MDTS is a power of two in units of the minimum page size; 0 means no limit.
        max_transfer: match controller.mdts {
            0 => usize::MAX,
            mdts => cap.mpsmin_bytes() << mdts,
        },
        max_queue_entries: cap.max_queue_entries(),
        io_queues: request_io_queues(&mut host, args.qpairs)?,
    };
    let plan = Plan::new(args, limits)?;
    let queues = (1..=plan.qpairs)
        .map(|qid| RemoteQueue::connect(&mut host, qid, &plan, timeout))
        .collect::<Result<Vec<_>>>()?;
    run_plan(args, &plan, url, queues)
}

/// Set Features (Number of Queues) for `wanted` I/O queues; returns how many were granted.
fn request_io_queues(host: &mut Host, wanted: u16) -> Result<u16> {
    let count = u32::from(wanted - 1);
    let command = Command {
        cdw10: u32::from(feature::NUMBER_OF_QUEUES),
        cdw11: count << 16 | count,
        ..Command::new(admin_opcode::SET_FEATURES, 0)
    };
    let (result, _) =
        host.admin_queue()
            .execute(command, &[], 0, "Set Features (Number of Queues)")?;
    let granted = (result & 0xffff).min(result >> 16) + 1;
    Ok(u16::try_from(granted).unwrap_or(u16::MAX))
}

/// Where `--connect` points: `tcp://HOST[:PORT]/NQN`.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    address: SocketAddr,
    nqn: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid(format!("--connect {url}: {reason}"));
        let rest = url
            .strip_prefix("tcp://")
            .ok_or_else(|| invalid("expected tcp://HOST:PORT/NQN".into()))?;
        let (authority, nqn) = rest
            .split_once('/')
            .filter(|(authority, nqn)| !authority.is_empty() && !nqn.is_empty())
            .ok_or_else(|| invalid("expected tcp://HOST:PORT/NQN".into()))?;
        // A port is there when a colon follows the host (IPv6 addresses come in brackets).
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, _)| !host.contains(':') || host.ends_with(']'));
        let address = if has_port {
            authority.to_socket_addrs()
        } else {
            (
                authority.trim_start_matches('[').trim_end_matches(']'),
                DEFAULT_PORT,
            )
                .to_socket_addrs()
        }
        .map_err(|error| invalid(format!("cannot resolve `{authority}`: {error}")))?
        .next()
        .ok_or_else(|| invalid(format!("`{authority}` has no address")))?;
        Ok(Self {
            address,
            nqn: nqn.to_owned(),
        })
    }
}

/// One I/O connection and the data buffers of its command slots.
pub struct RemoteQueue {
    queue: HostQueue,
    nsid: u32,
    block_size: usize,
    /// Slot buffers: what a write sends.
    buffers: Vec<Vec<u8>>,
    /// Bytes the read in flight in each slot asked for (0 for a write).
    read_lens: Vec<usize>,
    /// How long commands may be outstanding without any completing.
    timeout: Duration,
    /// The last completion, or the moment nothing was outstanding.
    progress: Instant,
}

impl RemoteQueue {
    fn connect(host: &mut Host, qid: u16, plan: &Plan, timeout: Duration) -> Result<Self> {
        let depth = usize::from(plan.queue_depth);
        let queue = host.connect_io_queue(qid, plan.queue_depth + 1)?;
        Ok(Self {
            queue,
            nsid: plan.namespace.nsid,
            block_size: plan.block_size(),
            buffers: vec![vec![0; plan.io_bytes]; depth],
            read_lens: vec![0; depth],
            timeout,
            progress: Instant::now(),
        })
    }
}

impl Backend for RemoteQueue {
    fn yields_when_idle(&self) -> bool {
        false
    }

    fn buffer(&mut self, tag: u16) -> Option<&mut [u8]> {
        self.buffers
            .get_mut(usize::from(tag))
            .map(Vec::as_mut_slice)
    }

    fn submit(&mut self, tag: u16, write: bool, extent: Extent) -> Result<bool> {
        let len = extent.blocks as usize * self.block_size;
        let slot = usize::from(tag);
        let (opcode, data, read_len) = if write {
            (nvm_opcode::WRITE, &self.buffers[slot][..len], 0)
        } else {
            (nvm_opcode::READ, &[][..], len)
        };
        let command = Command::nvm_rw(opcode, self.nsid, extent.lba, extent.blocks);
        self.read_lens[slot] = read_len;
        match self.queue.enqueue(command, data, read_len, tag.into()) {
            Ok(_) => Ok(true),
            Err(HostError::QueueFull { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Sends what was enqueued and reaps what has arrived, without blocking.
    fn reap(&mut self, mut done: impl FnMut(u16, Status, &[u8])) -> Result<usize> {
        if self.queue.outstanding() == 0 {
            self.progress = Instant::now();
            return Ok(0);
        }
        let read_lens = &self.read_lens;
        let reaped = self.queue.poll(false, |completion, data| {
            let tag = completion.tag as u16;
            let asked = read_lens.get(usize::from(tag)).copied().unwrap_or(0);
            let status = if completion.status.is_success() && data.len() < asked {
                Status::generic(generic::DATA_TRANSFER_ERROR)
            } else {
                completion.status
            };
            done(tag, status, data);
        })?;
        if reaped > 0 {
            self.progress = Instant::now();
        }
        Ok(reaped)
    }

    fn outstanding(&self) -> usize {
        self.queue.outstanding()
    }

    /// Fails the run when commands are outstanding and none completed for the host's timeout.
    fn check_timeouts(&mut self) -> Result<()> {
        if self.queue.outstanding() > 0 && self.progress.elapsed() > self.timeout {
            return Err(HostError::Timeout {
                address: self.queue.address(),
                what: "a completion",
                timeout: self.timeout,
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_address_port_and_nqn() {
        let endpoint = Endpoint::parse("tcp://127.0.0.1:4421/nqn.2026-11.io.vfnvme:ram0").unwrap();
        assert_eq!(endpoint.address, "127.0.0.1:4421".parse().unwrap());
        assert_eq!(endpoint.nqn, "nqn.2026-11.io.vfnvme:ram0");
        let endpoint = Endpoint::parse("tcp://[::1]:4422/nqn.x").unwrap();
        assert_eq!(endpoint.address, "[::1]:4422".parse().unwrap());
    }

    #[test]
    fn the_port_defaults_to_4420() {
        let endpoint = Endpoint::parse("tcp://127.0.0.1/nqn.x").unwrap();
        assert_eq!(endpoint.address, "127.0.0.1:4420".parse().unwrap());
        let endpoint = Endpoint::parse("tcp://[::1]/nqn.x").unwrap();
        assert_eq!(endpoint.address, "[::1]:4420".parse().unwrap());
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "127.0.0.1:4420/nqn.x",
            "tcp://127.0.0.1:4420",
            "tcp://127.0.0.1:4420/",
            "tcp:///nqn.x",
            "rdma://127.0.0.1:4420/nqn.x",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
    }
}
