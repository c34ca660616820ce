//! Admin commands forwarded to a drive do not stall I/O: while a SMART log Get Log Page is on
//! a drive that takes seconds to answer it, I/O queues on the same poll group keep completing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use vfnvme_host::Host;
use vfnvme_spec::log_page::log_id;
use vfnvme_spec::{nvm_opcode, Command};

mod common;

use common::{loopback_config, options, pattern, RunningTarget, BLOCK};

const NQN: &str = "nqn.2026-11.io.vfnvme:slowadmin";
/// Reads and writes that must complete while the SMART log is outstanding, at the least.
const IO_DURING_ADMIN: u64 = 50;

#[test]
fn io_on_the_same_poll_group_completes_while_a_smart_log_is_on_a_slow_drive() {
    let target = RunningTarget::with_config(
        &loopback_config("cores = 1")
            .subsystem(NQN, "allow_any_host = true")
            .namespace(1, "sim_mib = 8\nsim_log_page_latency_ms = 2000")
            .text(),
    );
    let mut host = Host::connect(target.address, NQN, options()).expect("admin connect");
    host.enable().expect("enable");
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");

    let completed = Arc::new(AtomicU64::new(0));
    let admin_sent = Arc::new(AtomicBool::new(false));
    let admin_thread = {
        let completed = Arc::clone(&completed);
        let admin_sent = Arc::clone(&admin_sent);
        std::thread::spawn(move || {
            admin_sent.store(true, Ordering::SeqCst);
            let log = host.log_page(log_id::SMART_HEALTH, 512);
            // I/Os that completed while the SMART log was outstanding; the host is kept (its
            // admin queue ends the controller when it closes).
            (log, completed.load(Ordering::SeqCst), host)
        })
    };
    while !admin_sent.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let before = completed.load(Ordering::SeqCst);
    let data = pattern(8 * BLOCK, 7);
    while !admin_thread.is_finished() {
        queue
            .execute(
                Command::nvm_rw(nvm_opcode::WRITE, 1, 64, 8),
                &data,
                0,
                "Write",
            )
            .expect("write while the SMART log is outstanding");
        let (_, back) = queue
            .execute(
                Command::nvm_rw(nvm_opcode::READ, 1, 64, 8),
                &[],
                data.len(),
                "Read",
            )
            .expect("read while the SMART log is outstanding");
        assert!(back == data, "data read back differs");
        completed.fetch_add(2, Ordering::SeqCst);
    }
    let (log, at_admin_completion, _host) = admin_thread.join().expect("the admin thread");
    let log = log.expect("the SMART log comes back");
    assert_eq!(log.len(), 512);
    let during = at_admin_completion - before;
    assert!(
        during >= IO_DURING_ADMIN,
        "only {during} I/Os completed while the SMART log was outstanding"
    );
}
