//! `[limits]`: checking what hosts may take of the target. Its own file so that the limits,
//! which grow with every resource a host can hold, stay apart from the target's settings.

use std::time::Duration;

use super::raw::{RawLimits, Source};
use super::types::{ConfigError, Limits};

/// The checked `[limits]`; absent keys keep their defaults.
pub(super) fn check(source: &Source, raw: RawLimits) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let millis = |value, key, default: Duration| {
        source
            .integer(value, key, 100..=3_600_000, default.as_millis() as u64)
            .map(Duration::from_millis)
    };
    let limits = Limits {
        connections: source.integer(
            raw.connections,
            "connections",
            1..=1 << 20,
            defaults.connections,
        )?,
        connections_per_address: source.integer(
            raw.connections_per_address,
            "connections_per_address",
            1..=1 << 20,
            defaults.connections_per_address,
        )?,
        controllers_per_host: source.integer(
            raw.controllers_per_host,
            "controllers_per_host",
            1..=65_519,
            defaults.controllers_per_host,
        )?,
        icreq_timeout: millis(
            raw.icreq_timeout_ms,
            "icreq_timeout_ms",
            defaults.icreq_timeout,
        )?,
        connect_timeout: millis(
            raw.connect_timeout_ms,
            "connect_timeout_ms",
            defaults.connect_timeout,
        )?,
        buffer_bytes_per_host: source.integer(
            raw.buffer_bytes_per_host,
            "buffer_bytes_per_host",
            4096..=1 << 40,
            defaults.buffer_bytes_per_host,
        )?,
        r2t_per_connection: source.integer(
            raw.r2t_per_connection,
            "r2t_per_connection",
            1..=u64::from(u16::MAX),
            defaults.r2t_per_connection,
        )?,
    };
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::time::Duration;

    const REST: &str = "[[listener]]\naddress = \"127.0.0.1:4420\"\n\
        [[subsystem]]\nnqn = \"nqn.2026-11.io.vfnvme:a\"\nallow_any_host = true\n\
        [[subsystem.namespace]]\nnsid = 1\nram_mib = 1\n";

    fn parse(limits: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("[limits]\n{limits}\n{REST}"), "vfnvme.toml")
    }

    #[test]
    fn absent_limits_keep_their_defaults() {
        let config = Config::parse(REST, "vfnvme.toml").unwrap();
        let limits = config.target.limits;
        assert_eq!(limits.connections, 4096);
        assert_eq!(limits.connections_per_address, 512);
        assert_eq!(limits.controllers_per_host, 128);
        assert_eq!(limits.icreq_timeout, Duration::from_secs(10));
        assert_eq!(limits.connect_timeout, Duration::from_secs(10));
        assert_eq!(limits.buffer_bytes_per_host, 8 << 20);
        assert_eq!(limits.r2t_per_connection, 32);
    }

    #[test]
    fn every_limit_is_read() {
        let limits = parse(
            "connections = 10\nconnections_per_address = 3\ncontrollers_per_host = 2\n\
             icreq_timeout_ms = 250\nconnect_timeout_ms = 500\n\
             buffer_bytes_per_host = 65536\nr2t_per_connection = 4",
        )
        .unwrap()
        .target
        .limits;
        assert_eq!(limits.connections, 10);
        assert_eq!(limits.connections_per_address, 3);
        assert_eq!(limits.controllers_per_host, 2);
        assert_eq!(limits.icreq_timeout, Duration::from_millis(250));
        assert_eq!(limits.connect_timeout, Duration::from_millis(500));
        assert_eq!(limits.buffer_bytes_per_host, 65536);
        assert_eq!(limits.r2t_per_connection, 4);
    }

    #[test]
    fn out_of_range_limits_name_the_key_line_and_range() {
        for (text, expected) in [
            (
                "connections = 0",
                "vfnvme.toml:2: connections = 0 is out of range; give 1 to 1048576",
            ),
            (
                "\nicreq_timeout_ms = 5",
                "vfnvme.toml:3: icreq_timeout_ms = 5 is out of range; give 100 to 3600000",
            ),
            (
                "r2t_per_connection = 70000",
                "vfnvme.toml:2: r2t_per_connection = 70000 is out of range; give 1 to 65535",
            ),
            (
                "buffer_bytes_per_host = 100",
                "vfnvme.toml:2: buffer_bytes_per_host = 100 is out of range; give 4096 to \
                 1099511627776",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().to_string(), expected, "{text}");
        }
    }

    #[test]
    fn unknown_and_mistyped_limits_are_refused() {
        let unknown = parse("connection = 5").unwrap_err().to_string();
        assert!(
            unknown.starts_with("vfnvme.toml:2: unknown field `connection`"),
            "{unknown}"
        );
        let negative = parse("connections = -1").unwrap_err().to_string();
        assert!(negative.starts_with("vfnvme.toml:2:"), "{negative}");
    }
}
