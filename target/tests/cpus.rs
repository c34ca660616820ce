//! `[target] cpus`: each poll group's thread runs on the CPU the configuration names, and a
//! CPU the process may not use is refused before anything starts, drives included.

mod common;

use common::{config_text, loopback_config, RunningTarget, NQN};
use nix::sched::sched_getaffinity;
use nix::unistd::Pid;
use vfnvme_target::config::Config;
use vfnvme_target::tgt::Target;

const PCI: &str = "0000:00:04.0";

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap())
        .collect()
}

/// `Cpus_allowed_list` of this process's thread named `name`.
fn thread_cpus(name: &str) -> String {
    let threads = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    let mut found = Vec::new();
    for thread in threads {
        let dir = thread.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            let line = status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .expect("Cpus_allowed_list in status");
            found.push(line.trim().to_owned());
        }
    }
    assert_eq!(found.len(), 1, "threads named {name}: {found:?}");
    found.remove(0)
}

#[test]
fn each_poll_group_runs_on_the_cpu_the_configuration_names() {
    // The allowed CPUs in reverse, at most two: group 0 on the highest, so that the pinning
    // cannot be mistaken for the process's own affinity or for the first CPU.
    let cpus: Vec<usize> = allowed_cpus().into_iter().rev().take(2).collect();
    let list = cpus
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let target = RunningTarget::with_config(&config_text(&format!("cpus = [{list}]"), ""));
    for (group, cpu) in cpus.iter().enumerate() {
        assert_eq!(thread_cpus(&format!("poll-group-{group}")), cpu.to_string());
    }
    target.assert_serves();
    let report = target.stop();
    assert_eq!(report.abandoned_commands, 0);
}

#[test]
fn a_cpu_the_process_may_not_use_is_refused_at_start() {
    let outside = (0..1024)
        .rev()
        .find(|cpu| !allowed_cpus().contains(cpu))
        .expect("a CPU outside the affinity");
    let text = loopback_config(&format!("cpus = [{outside}]"))
        .subsystem(NQN, "allow_any_host = true")
        .namespace(1, &format!("pci = \"{PCI}\""))
        .text();
    let config = Config::parse(&text, "t.toml").expect("valid config");
    // Refused before any drive is opened (opening one resets its controller).
    let error = Target::start_opening(config, |pci| {
        panic!("{pci} opened although the target refuses its cpus")
    })
    .err()
    .expect("the target refuses the CPU")
    .to_string();
    assert!(
        error.starts_with(&format!(
            "[target] cpus names CPU {outside}, which this process may not run on"
        )),
        "{error}"
    );
    assert!(error.contains("taskset"), "{error}");
}
