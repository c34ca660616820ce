//! The command line of `vfnvme perf`: options as clap parses them, and the checks clap cannot
//! express. Its own file so that the run itself (`engine`) is not read through options.

use std::path::Path;
use std::sync::Arc;

use vfnvme_auth::{read_dhchap_secret, read_tls_psk, DhchapSecret, TlsPsk};

use super::workload::Workload;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["device", "connect"])))]
pub struct PerfArgs {
    /// PCI address of a drive bound to vfio-pci (e.g. 0000:01:00.0), or `sim`.
    #[arg(long, value_name = "ADDRESS")]
    pub(super) device: Option<String>,
    /// NVMe/TCP target and subsystem: tcp://HOST:PORT/NQN (port 4420 when left out).
    #[arg(long, value_name = "URL")]
    pub(super) connect: Option<String>,
    /// Namespace to run against.
    #[arg(long, default_value_t = 1)]
    pub(super) nsid: u32,
    /// Commands in flight per queue pair.
    #[arg(short = 'q', long = "queue-depth", value_name = "DEPTH",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) queue_depth: u16,
    /// Bytes per I/O (a multiple of the block size; k and m suffixes are binary).
    #[arg(short = 'o', long = "io-size", value_name = "BYTES", value_parser = parse_size)]
    pub(super) io_size: usize,
    #[arg(short = 'w', long)]
    pub(super) workload: Workload,
    /// Run time in seconds (verify stops earlier when its pass is complete).
    #[arg(short = 't', long = "time", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) seconds: u64,
    /// I/O queue pairs (with --connect: I/O connections), driven round-robin by one thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) qpairs: u16,
    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub(super) json: bool,
    /// Seed of the data pattern and of random offsets.
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// With `-w verify`: only read and check, expecting the pattern to be there already.
    #[arg(long)]
    pub(super) verify_existing: bool,
    /// With --connect: ask for the NVMe/TCP header digest (CRC32C).
    #[arg(long)]
    pub(super) header_digest: bool,
    /// With --connect: ask for the NVMe/TCP data digest (CRC32C).
    #[arg(long)]
    pub(super) data_digest: bool,
    /// With --connect: the host's DH-HMAC-CHAP secret, a `DHHC-1:...` string or a file holding
    /// one (readable by its owner only), as `nvme connect --dhchap-secret` takes it.
    #[arg(long, value_name = "KEY|FILE", value_parser = parse_dhchap_secret)]
    pub(super) dhchap_secret: Option<Arc<DhchapSecret>>,
    /// With --dhchap-secret: the controller's secret, for bidirectional authentication.
    #[arg(long, value_name = "KEY|FILE", value_parser = parse_dhchap_secret,
          requires = "dhchap_secret")]
    pub(super) dhchap_ctrl_secret: Option<Arc<DhchapSecret>>,
    /// With --connect: connect over TLS 1.3 with this configured PSK, an `NVMeTLSkey-1:...`
    /// string or a file holding one (readable by its owner only), as `nvme gen-tls-key`
    /// prints it; the identity and TLS PSK are derived for --hostnqn and the subsystem.
    #[arg(long, value_name = "KEY|FILE", value_parser = parse_tls_psk)]
    pub(super) tls_key: Option<Arc<TlsPsk>>,
    /// With --connect: the host NQN to connect as (the one the target's keys are for).
    #[arg(long, value_name = "NQN")]
    pub(super) hostnqn: Option<String>,
}

impl PerfArgs {
    /// A combination of options clap cannot express, as a usage error message.
    pub fn usage_problem(&self) -> Option<&'static str> {
        if self.verify_existing && self.workload != Workload::Verify {
            return Some("--verify-existing only applies to -w verify");
        }
        if self.dhchap_secret.is_some() && self.connect.is_none() {
            return Some("--dhchap-secret only applies to --connect");
        }
        if (self.tls_key.is_some() || self.hostnqn.is_some()) && self.connect.is_none() {
            return Some("--tls-key and --hostnqn only apply to --connect");
        }
        ((self.header_digest || self.data_digest) && self.connect.is_none())
            .then_some("--header-digest and --data-digest only apply to --connect")
    }
}

/// A `DHHC-1:...` secret as written, or the one in the file it names.
fn parse_dhchap_secret(text: &str) -> std::result::Result<Arc<DhchapSecret>, String> {
    key_or_file(text, "DHHC-1:", DhchapSecret::parse, read_dhchap_secret)
}

/// An `NVMeTLSkey-1:...` PSK as written, or the one in the file it names.
fn parse_tls_psk(text: &str) -> std::result::Result<Arc<TlsPsk>, String> {
    key_or_file(text, "NVMeTLSkey-1:", TlsPsk::parse, read_tls_psk)
}

/// A key given as its representation (starting with `prefix`) or as the path of a file
/// holding it. The messages never show the key.
fn key_or_file<K, E: ToString, F: ToString>(
    text: &str,
    prefix: &str,
    parse: impl FnOnce(&str) -> std::result::Result<K, E>,
    read: impl FnOnce(&Path) -> std::result::Result<K, F>,
) -> std::result::Result<Arc<K>, String> {
    let key = if text.trim_start().starts_with(prefix) {
        parse(text).map_err(|error| error.to_string())
    } else {
        read(Path::new(text)).map_err(|error| error.to_string())
    };
    key.map(Arc::new)
}

/// Parses a byte count: digits, optionally followed by `k` (KiB) or `m` (MiB).
fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 1024),
        Some((at, 'm' | 'M')) => (&text[..at], 1024 * 1024),
        _ => (text, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|count| count.checked_mul(unit))
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("`{text}` is not a positive byte count like 4096 or 128k"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("4x").is_err());
    }
}
