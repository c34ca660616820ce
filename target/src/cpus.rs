//! `[target] cpus`: pinning each poll group's thread to a CPU of its own, as SPDK pins its
//! reactors to the cores of its mask. A busy-polling thread left to the scheduler is moved
//! between CPUs and shares them with whatever else runs; pinned, it keeps its caches and its
//! CPU. The CPUs are checked at start, against the CPUs the process may run on (its affinity,
//! which taskset or systemd's CPUAffinity= may have narrowed), before anything is started.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// A CPU named in `[target] cpus` that the process may not run on.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error(
        "[target] cpus names CPU {cpu}, which this process may not run on (it may use CPUs \
         {allowed}); list CPUs from those, or widen the process's affinity (taskset, systemd's \
         CPUAffinity=)"
    )]
    NotAllowed { cpu: usize, allowed: String },
    #[error("reading the CPUs this process may run on (sched_getaffinity): {0}")]
    Affinity(#[source] nix::Error),
}

/// Whether the process may run on every CPU of `cpus`.
pub fn check_allowed(cpus: &[usize]) -> Result<(), CpuError> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).map_err(CpuError::Affinity)?;
    match cpus
        .iter()
        .find(|&&cpu| !allowed.is_set(cpu).unwrap_or(false))
    {
        Some(&cpu) => Err(CpuError::NotAllowed {
            cpu,
            allowed: cpu_list(&allowed),
        }),
        None => Ok(()),
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

/// The CPUs of `set` as the kernel writes CPU lists: `0-3,8`.
fn cpu_list(set: &CpuSet) -> String {
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect();
    let mut ranges: Vec<String> = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let first = cpus[index];
        while index + 1 < cpus.len() && cpus[index + 1] == cpus[index] + 1 {
            index += 1;
        }
        let last = cpus[index];
        ranges.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        index += 1;
    }
    ranges.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_written_as_the_kernel_writes_them() {
        let mut set = CpuSet::new();
        for cpu in [0, 1, 2, 3, 8, 10, 11] {
            set.set(cpu).unwrap();
        }
        assert_eq!(cpu_list(&set), "0-3,8,10-11");
        assert_eq!(cpu_list(&CpuSet::new()), "");
    }
}
