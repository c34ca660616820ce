//! What the tests of several crates (driver, target, tools) share, so that each exists once:
//! waiting for a condition with a deadline, and writing a `vfnvme serve` configuration.
//! A crate of its own because integration tests of different crates cannot share a module;
//! dev-dependency only, never linked into the appliance.

#![forbid(unsafe_code)]

use std::fmt::Write;
use std::time::{Duration, Instant};

/// Calls `ready` until it returns `Some` and returns that value, pausing `pause` between calls
/// (`Duration::ZERO`: just yield the CPU, for what completes in microseconds). Panics with
/// `timed_out()` (what was awaited, and what was seen) once `within` has passed.
pub fn poll_until<T>(
    within: Duration,
    pause: Duration,
    mut ready: impl FnMut() -> Option<T>,
    timed_out: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("{}", timed_out());
        }
        if pause.is_zero() {
            std::thread::yield_now();
        } else {
            std::thread::sleep(pause);
        }
    }
}

/// The text of a `vfnvme serve` configuration, table by table:
/// `ConfigText::new("cores = 2").listener("127.0.0.1:0").subsystem(NQN, "allow_any_host = true")
/// .namespace(1, "ram_mib = 16").text()`.
#[derive(Clone, Debug)]
pub struct ConfigText(String);

impl ConfigText {
    /// `[target]` with the key lines `target` (may be empty).
    pub fn new(target: &str) -> Self {
        Self(format!("[target]\n{target}\n"))
    }

    /// A `[[listener]]` at `address`.
    pub fn listener(mut self, address: &str) -> Self {
        write!(self.0, "\n[[listener]]\naddress = \"{address}\"\n").expect("a String takes it");
        self
    }

    /// A `[[listener]]` at `address` whose connections run TLS 1.3 with a PSK.
    pub fn tls_listener(mut self, address: &str) -> Self {
        write!(
            self.0,
            "\n[[listener]]\naddress = \"{address}\"\nsecure_channel = \"tls\"\n"
        )
        .expect("a String takes it");
        self
    }

    /// A `[[subsystem]]` `nqn` with the key lines `keys` (who may connect, identity).
    pub fn subsystem(mut self, nqn: &str, keys: &str) -> Self {
        write!(self.0, "\n[[subsystem]]\nnqn = \"{nqn}\"\n{keys}\n").expect("a String takes it");
        self
    }

    /// A `[[subsystem.namespace]]` `nsid` of the last subsystem, backed as `keys` say.
    pub fn namespace(mut self, nsid: u32, keys: &str) -> Self {
        write!(self.0, "\n[[subsystem.namespace]]\nnsid = {nsid}\n{keys}\n")
            .expect("a String takes it");
        self
    }

    pub fn text(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_returns_what_became_ready() {
        let mut calls = 0;
        let value = poll_until(
            Duration::from_secs(10),
            Duration::ZERO,
            || {
                calls += 1;
                (calls == 3).then_some(calls)
            },
            || "never".to_owned(),
        );
        assert_eq!(value, 3);
    }

    #[test]
    #[should_panic(expected = "waited for nothing")]
    fn poll_until_panics_with_the_message_after_the_deadline() {
        poll_until(
            Duration::from_millis(20),
            Duration::from_millis(5),
            || None::<()>,
            || "waited for nothing".to_owned(),
        );
    }

    #[test]
    fn config_text_is_the_tables_in_order() {
        let text = ConfigText::new("cores = 2")
            .listener("127.0.0.1:0")
            .subsystem("nqn.x", "allow_any_host = true")
            .namespace(1, "ram_mib = 16")
            .text();
        assert_eq!(
            text,
            "[target]\ncores = 2\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[subsystem]]\n\
             nqn = \"nqn.x\"\nallow_any_host = true\n\n[[subsystem.namespace]]\nnsid = 1\n\
             ram_mib = 16\n"
        );
    }
}
