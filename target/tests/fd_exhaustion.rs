//! The process runs out of file descriptors (a hard limit below what `limits.connections`
//! needs, and a host that opens connections until accept fails): the acceptor pauses instead
//! of failing, and once connections close the target accepts and serves again. Its own test
//! binary: it lowers the open-file limit of the whole process.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use vfnvme_test_support::poll_until;

#[test]
fn the_target_accepts_again_after_running_out_of_file_descriptors() {
    let _ = env_logger::builder().is_test(true).try_init();
    let target = RunningTarget::with_config(&config_text("cores = 1", ""));
    let mut host = target.host();
    let mut queue = host.connect_io_queue(1, 8).expect("I/O queue");
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open_fds() as u64 + 40, hard).unwrap();
    // Each connection takes two of this process's descriptors (both ends): the target's
    // accepts fail before the test's own connects do.
    let mut flood = Vec::new();
    while let Ok(stream) = TcpStream::connect(target.address) {
        flood.push(stream);
        if flood.len() > 1000 {
            break;
        }
    }
    assert!(
        flood.len() < 1000,
        "the descriptor limit did not bite ({} connections)",
        flood.len()
    );
    // The host's existing queue still works: only accepting is paused.
    queue
        .execute(
            vfnvme_spec::Command::nvm_rw(vfnvme_spec::nvm_opcode::READ, 1, 0, 1),
            &[],
            BLOCK,
            "Read",
        )
        .expect("I/O on an existing queue while accepts fail");
    drop(flood);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    poll_until(
        PATIENCE,
        Duration::from_millis(20),
        || {
            TcpStream::connect(target.address)
                .ok()
                .and_then(wait_for_ic)
        },
        || "the target does not accept again".into(),
    );
    target.assert_serves();
}

/// Whether the target answers an ICReq on `stream`.
fn wait_for_ic(stream: TcpStream) -> Option<()> {
    let mut client = RawClient::from_stream(stream);
    client.send_lenient(&RawClient::ic_req_bytes(false, false));
    match client.receive() {
        Received::Pdu(vfnvme_tcp::PduHeader::ICResp(_), _) => Some(()),
        _ => None,
    }
}
