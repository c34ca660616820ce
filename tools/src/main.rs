//! `vfnvme`: identify NVMe drives and generate load on them through the user-space driver or
//! over NVMe/TCP, serve them to remote hosts as an NVMe/TCP target, and manage a running
//! target through its management socket.
//!
//! Every failure is one line on stderr, `vfnvme: <message>`, and exit status 1; usage errors
//! are clap's, with exit status 2.

mod device;
mod error;
mod identify;
mod perf;
mod rpc;
mod serve;
mod stats;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use error::{Error, Result};
use perf::{pattern, PerfArgs};
use vfnvme_target::config::DEFAULT_RPC_SOCKET;

#[derive(Debug, Parser)]
#[command(
    name = "vfnvme",
    version,
    about = "User-space NVMe driver and NVMe/TCP target"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a controller and its namespaces.
    Identify {
        /// PCI address of a drive bound to vfio-pci (e.g. 0000:01:00.0), or `sim`.
        address: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate I/O load and report IOPS, bandwidth and latency.
    Perf(PerfArgs),
    /// Run the NVMe/TCP target until SIGINT or SIGTERM.
    Serve {
        /// The TOML configuration (see deploy/vfnvme.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Call a method of a running target's management socket (JSON-RPC; docs/rpc.md).
    Rpc {
        /// The method, e.g. nvmf_get_subsystems (rpc_get_methods lists them).
        method: String,
        /// Its params, a JSON object, e.g. '{"nqn": "nqn.2026-11.io.vfnvme:ram0"}'.
        #[arg(long, value_name = "JSON")]
        params: Option<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// The target's subsystems, their hosts, listeners and namespaces (nvmf_get_subsystems).
    Subsystems {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// The target's statistics: poll groups, I/O per namespace and host, connections
    /// (vfnvme_get_stats; docs/statistics.md).
    Stats {
        /// Print the JSON vfnvme_get_stats answers instead of tables.
        #[arg(long)]
        json: bool,
        /// Refresh once a second (the screen cleared each time) until Ctrl-C.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Write the verify data pattern of some blocks to stdout (e.g. for `dd` to a drive).
    Pattern {
        /// Bytes per logical block (a multiple of 8).
        #[arg(long, value_name = "BYTES")]
        block_size: usize,
        /// How many blocks to write.
        #[arg(long, value_name = "COUNT")]
        blocks: u64,
        /// LBA of the first block.
        #[arg(long, value_name = "LBA", default_value_t = 0)]
        start_lba: u64,
        /// Seed of the pattern (as perf's --seed).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Where the management socket is.
#[derive(Debug, Args)]
struct SocketArg {
    /// The management socket ([target] rpc_socket of the target's configuration).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_RPC_SOCKET)]
    socket: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon tells what it does; the one-shot commands only what went wrong.
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vfnvme: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Identify { address, json } => identify::run(&address, json),
        Command::Perf(args) => {
            if let Some(problem) = args.usage_problem() {
                PerfArgs::augment_args(clap::Command::new("vfnvme perf"))
                    .error(clap::error::ErrorKind::ArgumentConflict, problem)
                    .exit();
            }
            perf::run(&args)
        }
        Command::Serve { config } => serve::run(&config),
        Command::Rpc {
            method,
            params,
            socket,
        } => rpc::run(&socket.socket, &method, params.as_deref()),
        Command::Subsystems { socket } => rpc::run(&socket.socket, "nvmf_get_subsystems", None),
        Command::Stats {
            json,
            watch,
            socket,
        } => stats::run(&socket.socket, json, watch),
        Command::Pattern {
            block_size,
            blocks,
            start_lba,
            seed,
        } => print_pattern(block_size, blocks, start_lba, seed),
    }
}

/// Writes the pattern of `blocks` blocks from `start_lba` to stdout. A reader that stops early
/// (`| head`) ends the output quietly.
fn print_pattern(block_size: usize, blocks: u64, start_lba: u64, seed: u64) -> Result<()> {
    if !pattern::fits_block_size(block_size) {
        return Err(Error::Invalid(format!(
            "block size {block_size} is not a positive multiple of 8 bytes"
        )));
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut block = vec![0u8; block_size];
    let written = (start_lba..start_lba.saturating_add(blocks)).try_for_each(|lba| {
        pattern::fill(&mut block, lba, block_size, seed);
        out.write_all(&block)
    });
    match written.and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(error)),
        _ => Ok(()),
    }
}
