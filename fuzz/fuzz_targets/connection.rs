//! The target's connection state machine fed whole byte streams through the real code path:
//! each input is what a host writes on a fresh TCP connection to a live target (acceptor, poll
//! group, RAM namespace) started once per process (see `vfnvme_fuzz::live`).
//!
//! Input: a settings byte (bit 0: the host waits until the target is quiet before closing,
//! so commands that complete later are answered; else it closes right after its last byte),
//! then the stream.
//!
//! Invariants: the target takes the stream and closes the connection once the host has closed
//! its side (no hang); what it sends is well-formed (ICResp or C2HTermReq first, digests and
//! alignment as negotiated, a defined FES, nothing after a C2HTermReq); and every 512 inputs a
//! well-behaved host still writes and reads back through it.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use vfnvme_fuzz::live::{check_responses, LiveTarget};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, stream)) = data.split_first() else {
        return;
    };
    let live = LiveTarget::get();
    let received = live.exchange(stream, settings & 1 != 0);
    check_responses(stream, &received);
    live.after_input();
});
