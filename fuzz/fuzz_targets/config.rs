//! Configuration parsing (`Config::parse`) on arbitrary text: never a panic, always a
//! configuration or a `ConfigError` that names the file (and, for a problem at one place, a
//! line of the text).
//!
//! Invariants of an accepted configuration: at least one poll group, listener and subsystem;
//! subsystem NQNs unique and of NQN length; each subsystem's namespaces non-empty, sorted by
//! NSID, unique and not 0; identity strings within their Identify fields.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use vfnvme_spec::fabrics::MAX_NQN_BYTES;
use vfnvme_target::config::{Config, ConfigError, MAX_MODEL_BYTES, MAX_SERIAL_BYTES};

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, FILE) {
        Ok(config) => check_config(&config),
        Err(error) => check_error(&error, text),
    }
});

fn check_error(error: &ConfigError, text: &str) {
    let message = error.to_string();
    assert!(
        message.starts_with(FILE),
        "{message:?} does not name the file"
    );
    match error {
        ConfigError::Invalid { line, reason, .. } => {
            let lines = text.lines().count().max(1);
            assert!(
                (1..=lines + 1).contains(line),
                "line {line} of a {lines}-line text: {message}"
            );
            assert!(!reason.is_empty(), "{error:?}");
        }
        ConfigError::Incomplete { reason, .. } => assert!(!reason.is_empty(), "{error:?}"),
        ConfigError::Read { .. } => panic!("parsing text read a file: {message}"),
    }
}

fn check_config(config: &Config) {
    assert!(config.target.cores >= 1);
    assert!(!config.listeners.is_empty());
    assert!(!config.subsystems.is_empty());
    for (index, subsystem) in config.subsystems.iter().enumerate() {
        assert!((1..=MAX_NQN_BYTES).contains(&subsystem.nqn.len()));
        assert!(
            config.subsystems[..index]
                .iter()
                .all(|other| other.nqn != subsystem.nqn),
            "NQN {} twice",
            subsystem.nqn
        );
        if let Some(serial) = &subsystem.serial {
            assert!(serial.len() <= MAX_SERIAL_BYTES);
        }
        if let Some(model) = &subsystem.model {
            assert!(model.len() <= MAX_MODEL_BYTES);
        }
        assert!(!subsystem.namespaces.is_empty());
        assert!(subsystem.namespaces[0].nsid != 0);
        assert!(
            subsystem
                .namespaces
                .windows(2)
                .all(|pair| pair[0].nsid < pair[1].nsid),
            "namespaces not sorted and unique: {:?}",
            subsystem.namespaces
        );
    }
}
