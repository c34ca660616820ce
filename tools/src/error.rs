//! The errors of the `vfnvme` command. `main` prints each as one line, `vfnvme: <message>`.

use vfnvme_driver::queue::SubmitError;
use vfnvme_host::HostError;
use vfnvme_target::config::ConfigError;
use vfnvme_target::tgt::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver's messages already name the device and, where possible, the fix.
    #[error(transparent)]
    Driver(#[from] vfnvme_driver::Error),
    #[error("cannot start the simulated controller: {0}")]
    Simulator(#[source] std::io::Error),
    /// Arguments that parse but do not fit the device (I/O size, queue depth, namespace size).
    #[error("{0}")]
    Invalid(String),
    #[error("submitting an I/O failed: {0}")]
    Submit(#[from] SubmitError),
    /// NVMe/TCP: the messages name the target's address and what failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// `serve`: the messages name the file and, where possible, the line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `serve`: drives, memory, listeners; the messages say which and why.
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot set up SIGINT and SIGTERM handling: {0}")]
    Signals(#[source] nix::Error),
    #[error("writing to stdout failed: {0}")]
    Output(#[source] std::io::Error),
    /// `rpc`: the target answered the request with a JSON-RPC error.
    #[error("{method}: {message} (JSON-RPC error {code})")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error(
        "cannot reach the management socket {}: {source}; is vfnvme serve running \
         (--socket names another socket)?",
        path.display()
    )]
    RpcSocket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("management socket: {0}")]
    RpcAnswer(String),
    /// The run finished but saw I/O errors or data mismatches.
    #[error("{0}")]
    RunFailed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
