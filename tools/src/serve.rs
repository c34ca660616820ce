//! `vfnvme serve --config FILE`: the NVMe/TCP target daemon.
//!
//! SIGINT and SIGTERM are blocked in the main thread before the target starts, so every thread
//! it spawns (the poll groups) inherits the mask and the signals are only ever received through
//! a signalfd, which the acceptor loop watches. On either, the target shuts down in order
//! (listeners, the management socket, then each poll group draining its commands, then the
//! drives). The management socket is `[target] rpc_socket`, by default
//! `/run/vfnvme/vfnvme.sock`.

use std::path::Path;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use vfnvme_target::config::{Config, DEFAULT_RPC_SOCKET};
use vfnvme_target::tgt::Target;

use crate::error::{Error, Result};

pub fn run(config_path: &Path) -> Result<()> {
    let mut config = Config::load(config_path)?;
    if config.target.rpc_socket.is_none() {
        create_default_socket_directory()?;
        config.target.rpc_socket = Some(DEFAULT_RPC_SOCKET.into());
    }
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGINT);
    stop_signals.add(Signal::SIGTERM);
    stop_signals.thread_block().map_err(Error::Signals)?;
    let signal_fd = SignalFd::with_flags(
        &stop_signals,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(Error::Signals)?;
    let nqns: Vec<String> = config.subsystems.iter().map(|s| s.nqn.clone()).collect();
    let mut target = Target::start(config)?;
    eprintln!("vfnvme: {}", ready_line(&nqns, &target.local_addresses()));
    let accepted = target.run_until(&signal_fd);
    match (&accepted, signal_fd.read_signal()) {
        (Err(error), _) => log::error!("{error}: shutting down"),
        (Ok(()), received) => {
            let name = received
                .ok()
                .flatten()
                .and_then(|info| Signal::try_from(i32::try_from(info.ssi_signo).ok()?).ok())
                .map_or("a stop signal", Signal::as_str);
            log::info!("{name}: shutting down");
        }
    }
    let report = target.shut_down();
    log::info!(
        "stopped: {} connections served, {} commands abandoned",
        report.connections_served,
        report.abandoned_commands
    );
    accepted.map_err(Error::Target)
}

/// The default socket's directory, `/run/vfnvme`, if it is missing (started without the
/// systemd unit, which creates it): mode 0700, as the unit's RuntimeDirectoryMode.
fn create_default_socket_directory() -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let directory = Path::new(DEFAULT_RPC_SOCKET)
        .parent()
        .expect("the default socket is in a directory");
    match std::fs::DirBuilder::new().mode(0o700).create(directory) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(Error::Invalid(format!(
                "cannot create {} for the management socket: {error}; create it, or set \
                 [target] rpc_socket",
                directory.display()
            )))
        }
        _ => Ok(()),
    }
}

/// `serving NQN[, NQN...] on ADDRESS[, ADDRESS...]`.
fn ready_line(nqns: &[String], addresses: &[std::net::SocketAddr]) -> String {
    let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    format!("serving {} on {}", nqns.join(", "), addresses.join(", "))
}

#[cfg(test)]
mod tests {
    use super::ready_line;

    #[test]
    fn the_ready_line_lists_subsystems_and_listeners() {
        let nqns = ["nqn.a".to_owned(), "nqn.b".to_owned()];
        let addresses = [
            "127.0.0.1:4420".parse().unwrap(),
            "[::1]:8009".parse().unwrap(),
        ];
        assert_eq!(
            ready_line(&nqns, &addresses),
            "serving nqn.a, nqn.b on 127.0.0.1:4420, [::1]:8009"
        );
    }
}
