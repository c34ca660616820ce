//! Polling with a pause, for the slow paths (admin commands, enable, shutdown): a leaf both the
//! admin queue and the controller handle use.

use std::time::{Duration, Instant};

/// Polls `condition` until it holds or `timeout` passes.
pub(super) fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        pause();
    }
}

/// Yields between polls of a slow (admin) operation.
pub(super) fn pause() {
    std::thread::sleep(Duration::from_micros(20));
}
