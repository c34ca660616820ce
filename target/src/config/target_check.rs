//! Checking `[target]`: the whole target's settings, their ranges and the combinations the
//! rest of the configuration relies on. Beside `check`, whose `Checker` this extends: the
//! target's keys grow on their own, apart from listeners, subsystems and namespaces.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use vfnvme_spec::fabrics::{CNTLID_MAX, CNTLID_MIN};

use super::check::Checker;
use super::raw::RawTarget;
use super::types::{
    ConfigError, Limits, TargetConfig, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, DEFAULT_MAX_IO_SIZE,
    DEFAULT_PARK_AFTER_US, DEFAULT_RPC_SOCKET, DEFAULT_SHUTDOWN_DEADLINE_MS,
};

/// Poll groups at most, and the CPU numbers `cpus` may name (the kernel's CPU_SETSIZE).
const MAX_CPUS: usize = 1024;
/// In-capsule data beyond this is pointless: the host then sends the data in H2CData PDUs.
const MAX_IN_CAPSULE_DATA_SIZE: u32 = 128 * 1024;
/// Connect data must fit in the capsule.
const CONNECT_DATA_LEN: u64 = vfnvme_spec::fabrics::CONNECT_DATA_SIZE as u64;

impl Checker<'_> {
    pub(super) fn target(
        &self,
        raw: RawTarget,
        limits: Limits,
    ) -> Result<TargetConfig, ConfigError> {
        let defaults = TargetConfig::default();
        let max_io_size = match raw.max_io_size {
            None => Some(DEFAULT_MAX_IO_SIZE),
            Some(size) if *size.get_ref() == 0 => None,
            Some(size) => {
                let bytes = *size.get_ref();
                if !bytes.is_power_of_two() || !(8192..=1 << 30).contains(&bytes) {
                    return self.source.invalid(
                        size.span(),
                        format!(
                            "max_io_size = {bytes} cannot be reported to hosts (MDTS is a power \
                             of two of 4 KiB pages, at least 2); give 0 for the drives' limit \
                             or a power of two from 8192"
                        ),
                    );
                }
                Some(bytes as u32)
            }
        };
        let cntlids = self.cntlid_range(raw.cntlid_min, raw.cntlid_max)?;
        let rpc_socket = self.rpc_socket(raw.rpc_socket)?;
        let cpus = self.cpus(raw.cpus)?;
        let cores_given = raw.cores.as_ref().map(Spanned::span);
        let cores = self.source.integer(
            raw.cores,
            "cores",
            1..=MAX_CPUS as u64,
            cpus.as_ref().map_or(defaults.cores, Vec::len),
        )?;
        if let (Some(cpus), Some(span)) = (&cpus, cores_given) {
            if cpus.len() != cores {
                return self.source.invalid(
                    span,
                    format!(
                        "cores = {cores} but cpus lists {} CPUs; each poll group needs one CPU \
                         of its own: list {cores}, or leave cores out",
                        cpus.len()
                    ),
                );
            }
        }
        Ok(TargetConfig {
            cores,
            cpus,
            c2h_success: raw.c2h_success.unwrap_or(defaults.c2h_success),
            in_capsule_data_size: self.in_capsule_data_size(raw.in_capsule_data_size)?,
            max_queue_depth: self.source.integer(
                raw.max_queue_depth,
                "max_queue_depth",
                2..=u64::from(u16::MAX),
                defaults.max_queue_depth,
            )?,
            max_io_queues: self.source.integer(
                raw.max_io_queues,
                "max_io_queues",
                1..=u64::from(u16::MAX - 1),
                defaults.max_io_queues,
            )?,
            max_io_size,
            keep_alive_timeout: Duration::from_millis(self.source.integer(
                raw.keep_alive_timeout_ms,
                "keep_alive_timeout_ms",
                1000..=3_600_000,
                DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
            )?),
            shutdown_deadline: Duration::from_millis(self.source.integer(
                raw.shutdown_deadline_ms,
                "shutdown_deadline_ms",
                1..=3_600_000,
                DEFAULT_SHUTDOWN_DEADLINE_MS,
            )?),
            park_after: Duration::from_micros(self.source.integer(
                raw.park_after_us,
                "park_after_us",
                0..=60_000_000,
                DEFAULT_PARK_AFTER_US,
            )?),
            cntlids,
            limits,
            rpc_socket,
            dhchap: super::auth::dhchap_algorithms(
                self.source,
                raw.dhchap_digests,
                raw.dhchap_dhgroups,
            )?,
        })
    }

    /// `cpus`: distinct CPU numbers, at least one.
    fn cpus(
        &self,
        raw: Option<Spanned<Vec<Spanned<u64>>>>,
    ) -> Result<Option<Vec<usize>>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let span = raw.span();
        let mut cpus = Vec::new();
        for cpu in raw.into_inner() {
            let cpu_span = cpu.span();
            let number = *cpu.get_ref();
            if number >= MAX_CPUS as u64 {
                return self.source.invalid(
                    cpu_span,
                    format!(
                        "cpus: CPU {number} is out of range; give 0 to {}",
                        MAX_CPUS - 1
                    ),
                );
            }
            let number = number as usize;
            if cpus.contains(&number) {
                return self.source.invalid(
                    cpu_span,
                    format!("cpus names CPU {number} twice; each poll group needs one of its own"),
                );
            }
            cpus.push(number);
        }
        if cpus.is_empty() {
            return self.source.invalid(
                span,
                "cpus = [] names no CPU; list one per poll group, or leave cpus out to let the \
                 scheduler place them",
            );
        }
        Ok(Some(cpus))
    }

    /// `rpc_socket`: an absolute path short enough for a Unix socket address.
    fn rpc_socket(&self, raw: Option<Spanned<String>>) -> Result<Option<PathBuf>, ConfigError> {
        /// `sun_path` holds 108 bytes, the terminating NUL included.
        const MAX_SOCKET_PATH: usize = 107;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let span = raw.span();
        let path = raw.into_inner();
        if !path.starts_with('/') {
            return self.source.invalid(
                span,
                format!("rpc_socket = \"{path}\" is not an absolute path; write e.g. \"{DEFAULT_RPC_SOCKET}\""),
            );
        }
        if path.len() > MAX_SOCKET_PATH {
            return self.source.invalid(
                span,
                format!(
                    "rpc_socket is {} bytes long; a Unix socket path has at most {MAX_SOCKET_PATH}",
                    path.len()
                ),
            );
        }
        Ok(Some(PathBuf::from(path)))
    }

    /// `cntlid_min` and `cntlid_max` (as nvmet's attr_cntlid_min/max and SPDK's
    /// min_cntlid/max_cntlid): valid fabrics controller IDs, the lower one first.
    fn cntlid_range(
        &self,
        min: Option<Spanned<u64>>,
        max: Option<Spanned<u64>>,
    ) -> Result<std::ops::RangeInclusive<u16>, ConfigError> {
        let valid = u64::from(CNTLID_MIN)..=u64::from(CNTLID_MAX);
        let span = min.as_ref().or(max.as_ref()).map(Spanned::span);
        let low: u16 = self
            .source
            .integer(min, "cntlid_min", valid.clone(), CNTLID_MIN)?;
        let high: u16 = self.source.integer(max, "cntlid_max", valid, CNTLID_MAX)?;
        match span {
            Some(span) if low > high => self.source.invalid(
                span,
                format!(
                    "cntlid_min = {low} is above cntlid_max = {high}; controller IDs are given \
                     from cntlid_min to cntlid_max"
                ),
            ),
            _ => Ok(low..=high),
        }
    }

    /// In-capsule data: a multiple of 16 (hosts are told it in 16-byte units), and room for the
    /// 1024 bytes of Connect data. Below that, Linux hosts send an I/O queue's Connect data by
    /// R2T (they size it by IOCCSZ), which the target does not take for Connect; as every
    /// connection always has 8 KiB for admin and Connect data anyway, a smaller value would
    /// save nothing (docs/target.md).
    fn in_capsule_data_size(&self, raw: Option<Spanned<u64>>) -> Result<u32, ConfigError> {
        if let Some(size) = &raw {
            let bytes = *size.get_ref();
            if bytes % 16 != 0 {
                return self.source.invalid(
                    size.span(),
                    format!(
                        "in_capsule_data_size = {bytes} is not a multiple of 16 bytes, \
                         the unit hosts are told capsule sizes in"
                    ),
                );
            }
            if bytes < CONNECT_DATA_LEN {
                return self.source.invalid(
                    size.span(),
                    format!(
                        "in_capsule_data_size = {bytes} leaves no room for the 1024 bytes of \
                         Connect data, which Linux hosts then send by R2T, and every I/O queue \
                         Connect would fail; give at least 1024 (8192, the default, is what \
                         Linux and SPDK targets use)"
                    ),
                );
            }
        }
        self.source.integer(
            raw,
            "in_capsule_data_size",
            CONNECT_DATA_LEN..=u64::from(MAX_IN_CAPSULE_DATA_SIZE),
            TargetConfig::default().in_capsule_data_size,
        )
    }
}
