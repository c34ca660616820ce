//! The project's own binaries that go into the guest.

use std::path::PathBuf;
use std::process::Command;

use crate::host;

/// Builds (if stale) and returns `build/release/vfnvme`.
///
/// Running cargo is a no-op when the binary is fresh, and it is the only way to be sure the
/// guest never runs a stale binary. `VFNVME_HW_NO_BUILD=1` skips it and takes the binary as it
/// is (for iterating on the harness while the workspace does not build).
///
/// Errors are strings because the image records them for the scenarios that need the binary,
/// while scenarios that do not need it still run.
pub fn vfnvme_release_binary() -> Result<PathBuf, String> {
    let binary = host::build_dir().join("release/vfnvme");
    if std::env::var_os("VFNVME_HW_NO_BUILD").is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "vfnvme-tools",
                "--bin",
                "vfnvme",
            ])
            .current_dir(host::workspace_root())
            .output()
            .map_err(|error| format!("cannot run cargo to build vfnvme: {error}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            return Err(format!(
                "`cargo build --release -p vfnvme-tools` failed:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build --release -p vfnvme-tools`",
            binary.display()
        ))
    }
}
