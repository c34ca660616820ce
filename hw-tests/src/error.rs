//! The harness's error type: every variant tells the reader what to do about it.

use std::path::PathBuf;

/// Something the harness could not do before or while booting a guest.
///
/// Failing to *prepare* a boot is an error, never a skipped test: a missing QEMU or kernel
/// must turn the test suite red, with the install command in the message.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A host program the harness runs is not installed.
    #[error("`{program}` is not installed: {hint}")]
    MissingProgram {
        /// The program that was looked for.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// A host program ran but failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, for the reader to run by hand.
        command: String,
        /// Exit status as printed by std.
        status: String,
        /// The tail of its stderr.
        stderr: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What the harness was doing, e.g. "reading".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The guest kernel package could not be found or unpacked.
    #[error("guest kernel: {0}")]
    Kernel(String),
    /// A kernel module the guest needs is missing or unreadable.
    #[error("kernel module {module}: {reason}")]
    Module {
        /// Module name as given to the harness.
        module: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that must be in the guest is missing on the host.
    #[error("{what} not found at {}: {hint}", path.display())]
    MissingFile {
        /// What the file is.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to produce it.
        hint: String,
    },
    /// QEMU could not be started or did not behave.
    #[error("qemu: {0}")]
    Qemu(String),
}

impl HarnessError {
    /// Wraps an I/O error with the action and path it happened on.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result type of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
