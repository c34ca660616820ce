//! Running host programs and finding the host files the harness needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{HarnessError, Result};

/// What to tell a user who lacks the host tools: CI's script installs all of them.
pub const INSTALL_HINT: &str = "run .ci/run, or apt-get install --no-install-recommends \
     qemu-system-x86 busybox-static fio nvme-cli";

/// Finds `program` on PATH (plus the sbin directories, which a non-root PATH may lack).
pub fn find_program(program: &str, hint: &str) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| HarnessError::MissingProgram {
            program: program.to_owned(),
            hint: hint.to_owned(),
        })
}

/// Runs a command to completion and returns its output, failing on a non-zero exit.
pub fn run(command: &mut Command) -> Result<Output> {
    let printable = format!("{command:?}");
    let output = command.output().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            HarnessError::MissingProgram {
                program: command.get_program().to_string_lossy().into_owned(),
                hint: INSTALL_HINT.to_owned(),
            }
        } else {
            HarnessError::Qemu(format!("cannot start {printable}: {error}"))
        }
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        return Err(HarnessError::CommandFailed {
            command: printable,
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(output)
}

/// The workspace root (the directory holding the workspace Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("hw-tests lives inside the workspace")
        .to_path_buf()
}

/// Cargo's build directory: `$CARGO_TARGET_DIR`, else `build/` (never `target/`, a crate).
pub fn build_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("build"))
}

/// Where downloaded kernels, console logs and images live, outside the repository:
/// `$VFNVME_HW_CACHE`, else `$XDG_CACHE_HOME/vfnvme-hw`, else `/var/cache/vfnvme-hw` for
/// root and `~/.cache/vfnvme-hw` for others.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = if let Some(dir) = std::env::var_os("VFNVME_HW_CACHE") {
        PathBuf::from(dir)
    } else if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(xdg).join("vfnvme-hw")
    } else if is_root() {
        PathBuf::from("/var/cache/vfnvme-hw")
    } else {
        let home = std::env::var_os("HOME").ok_or_else(|| {
            HarnessError::Kernel("neither VFNVME_HW_CACHE nor HOME is set".to_owned())
        })?;
        PathBuf::from(home).join(".cache/vfnvme-hw")
    };
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io("creating", &dir, e))?;
    Ok(dir)
}

fn is_root() -> bool {
    // /proc/self/status "Uid:" line: real, effective, saved, fs. No libc call needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}
