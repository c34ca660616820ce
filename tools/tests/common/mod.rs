//! Shared by the `vfnvme` command's integration tests: running the binary and judging its exit.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value;

/// perf arguments for a short run of reads at queue depth 1.
pub const ONE_SECOND_OF_READS: &[&str] = &["-q", "1", "-o", "4k", "-w", "read", "-t", "1"];

/// Runs `vfnvme` with `args` (logging off) and waits for it.
pub fn vfnvme(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfnvme"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the vfnvme binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}; stderr:\n{}",
        output.status,
        stderr(output)
    );
}

/// The JSON summary a run printed on stdout (a failed run prints one too).
pub fn json_stdout(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}

/// The JSON summary of a run that must have succeeded.
pub fn json_of_success(output: &Output) -> Value {
    assert_success(output);
    json_stdout(output)
}

/// Exit status 1 with exactly one line on stderr, `vfnvme: ...`, mentioning `needle`.
pub fn assert_clean_failure(output: &Output, needle: &str) {
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr:\n{stderr}");
    assert!(lines[0].starts_with("vfnvme: "), "{stderr}");
    assert!(lines[0].contains(needle), "`{needle}` not in: {stderr}");
}
