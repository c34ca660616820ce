//! A drive given up under load (what a hot removal does: the kernel's VFIO device request, here
//! raised on a simulated controller): its namespace fails cleanly with Namespace Not Ready,
//! hosts get an asynchronous event, the other drive keeps serving, the drive is released, and
//! nothing leaks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vfnvme_host::{Host, HostError};
use vfnvme_spec::{admin_opcode, feature, nvm_opcode, Command, Status};
use vfnvme_test_support::poll_until;

mod common;

use common::{loopback_config, options, RunningTarget};

const GOING: &str = "nqn.2026-11.io.vfnvme:going";
const STAYING: &str = "nqn.2026-11.io.vfnvme:staying";

/// Statistics of one host's load.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    not_ready: AtomicU64,
    other_errors: AtomicU64,
}

/// Writes and reads back blocks of namespace 1 of `nqn` until told to stop or the connection
/// fails; every successful read must return what was written.
fn hammer(address: SocketAddr, nqn: &'static str, running: Arc<AtomicBool>, load: Arc<Load>) {
    let mut host = Host::connect(address, nqn, options()).expect("connect");
    host.enable().expect("enable");
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    let mut lba = 0u64;
    while running.load(Ordering::Relaxed) {
        let data = vec![lba as u8 ^ 0x3c; 4096];
        let write = Command::nvm_rw(nvm_opcode::WRITE, 1, lba % 1024 * 8, 8);
        let read = Command::nvm_rw(nvm_opcode::READ, 1, lba % 1024 * 8, 8);
        let outcome = queue
            .execute(write, &data, 0, "Write")
            .and_then(|_| queue.execute(read, &[], 4096, "Read"));
        match outcome {
            Ok((_, back)) => {
                assert_eq!(back, data, "{nqn}: read back differs");
                load.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(HostError::Command { status, .. })
                if status.same_code(Status::namespace_not_ready()) =>
            {
                load.not_ready.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                load.other_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        lba += 1;
    }
}

#[test]
fn a_removed_drive_fails_cleanly_and_the_other_keeps_serving() {
    let _ = env_logger::builder().is_test(true).try_init();
    let mapped_before = vfnvme_driver::dma::mapped_bytes();
    let drive = "sim_mib = 8\nsim_latency_us = 100";
    let text = loopback_config("cores = 2")
        .subsystem(GOING, "allow_any_host = true")
        .namespace(1, drive)
        .subsystem(STAYING, "allow_any_host = true")
        .namespace(1, drive)
        .text();
    let target = RunningTarget::with_config(&text);
    let address = target.address;
    let control = target.drives.clone();
    let going = format!("sim:{GOING}:1");
    assert!(control.names().contains(&going));

    // The host of the drive that goes asks for namespace notices and leaves an AER pending.
    let mut watcher = Host::connect(address, GOING, options()).unwrap();
    watcher.enable().unwrap();
    let notices = Command {
        cdw10: u32::from(feature::ASYNC_EVENT_CONFIG),
        cdw11: 1 << 8,
        ..Command::new(admin_opcode::SET_FEATURES, 0)
    };
    watcher
        .admin_queue()
        .execute(notices, &[], 0, "Set Features")
        .unwrap();
    let aer = watcher
        .admin_queue()
        .submit(
            Command::new(admin_opcode::ASYNC_EVENT_REQUEST, 0),
            &[],
            0,
            99,
        )
        .unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let loads = [Arc::new(Load::default()), Arc::new(Load::default())];
    let hosts: Vec<_> = [GOING, STAYING]
        .into_iter()
        .zip(loads.iter().cloned())
        .map(|(nqn, load)| {
            let running = Arc::clone(&running);
            std::thread::spawn(move || hammer(address, nqn, running, load))
        })
        .collect();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        poll_until(
            Duration::from_secs(15),
            Duration::from_millis(5),
            || done().then_some(()),
            || format!("timed out waiting for {what}"),
        )
    };
    wait_for("both hosts to be busy", &|| {
        loads
            .iter()
            .all(|load| load.ok.load(Ordering::Relaxed) >= 50)
    });

    assert!(control.request_removal(&going));
    wait_for("the drive to be released", &|| control.is_released(&going));
    wait_for("the going host to see Namespace Not Ready", &|| {
        loads[0].not_ready.load(Ordering::Relaxed) > 0
    });
    let staying_before = loads[1].ok.load(Ordering::Relaxed);
    wait_for("the other drive to keep serving", &|| {
        loads[1].ok.load(Ordering::Relaxed) >= staying_before + 50
    });

    let mut event = None;
    while event.is_none() {
        watcher
            .admin_queue()
            .poll(true, |done, _| {
                if done.cid == aer {
                    event = Some(done);
                }
            })
            .unwrap();
    }
    let event = event.unwrap();
    assert!(event.status.is_success());
    assert_eq!(event.result & 0x7, 2, "a Notice event");
    assert_eq!(
        (event.result >> 16) & 0xff,
        0x04,
        "pointing at the Changed Namespace List"
    );

    running.store(false, Ordering::Relaxed);
    for host in hosts {
        host.join().expect("hosts see statuses, not panics");
    }
    for (name, load) in [GOING, STAYING].iter().zip(&loads) {
        assert_eq!(
            load.other_errors.load(Ordering::Relaxed),
            0,
            "{name}: unexpected errors"
        );
    }
    assert_eq!(
        loads[1].not_ready.load(Ordering::Relaxed),
        0,
        "the staying drive never failed"
    );
    drop(watcher);
    drop(control);
    let report = target.stop();
    assert_eq!(report.abandoned_commands, 0);
    assert_eq!(
        vfnvme_driver::dma::mapped_bytes(),
        mapped_before,
        "DMA memory left mapped"
    );
}
