//! `vfnvme perf`: a load generator in the style of `spdk_nvme_perf`.
//!
//! One thread drives every queue pair round-robin: each pair keeps `-q` commands in flight,
//! each command slot owning one data buffer for the whole run, so the submit/poll loop
//! allocates nothing. Latency is measured from just before submission to the poll that reaped
//! the completion.
//!
//! The workload, verify and statistics logic here is shared by two backends, which differ only
//! in how a command is submitted and its completion reaped ([`Backend`]): a queue pair of a
//! local drive through the user-space driver (`--device`, [`local`]), or an NVMe/TCP I/O queue
//! of a remote target through `vfnvme_host` (`--connect`, [`remote`]).
//!
//! Workloads: `read`/`write` walk the namespace sequentially and wrap around; `randread`/
//! `randwrite` pick `-o`-aligned offsets uniformly; writes send whatever the buffers hold.
//! `verify` makes one sequential pass over the namespace: it writes each `-o` chunk with the
//! pattern below, reads it back and compares; it stops at the end of the pass or when `-t`
//! expires. `--verify-existing` skips the writes and checks data written earlier (by a previous
//! run, or by `dd` from `vfnvme pattern` through the kernel driver).
//!
//! The pattern: for logical block `lba` of `bs` bytes and seed `seed` (`--seed`, default 1),
//! the block is `bs / 8` little-endian u64 words, word `i` being
//! `lba.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.rotate_left(17) ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)`
//! (see [`pattern`]).

mod histogram;
mod local;
pub mod pattern;
mod remote;
mod workload;

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use vfnvme_driver::Namespace;
use vfnvme_spec::Status;

use crate::error::{Error, Result};
use histogram::Histogram;
use pattern::Mismatch;
pub use workload::Workload;
use workload::{Extent, Offsets};

/// How often commands are checked against the backend's I/O timeout.
const TIMEOUT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Polling rounds without a completion after which the thread yields once.
const IDLE_ROUNDS_BEFORE_YIELD: u32 = 64;
/// Fills buffers before a verify read, so that a local read that moved no data cannot pass.
const POISON_BYTE: u8 = 0xA5;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["device", "connect"])))]
pub struct PerfArgs {
    /// PCI address of a drive bound to vfio-pci (e.g. 0000:01:00.0), or `sim`.
    #[arg(long, value_name = "ADDRESS")]
    device: Option<String>,
    /// NVMe/TCP target and subsystem: tcp://HOST:PORT/NQN (port 4420 when left out).
    #[arg(long, value_name = "URL")]
    connect: Option<String>,
    /// Namespace to run against.
    #[arg(long, default_value_t = 1)]
    nsid: u32,
    /// Commands in flight per queue pair.
    #[arg(short = 'q', long = "queue-depth", value_name = "DEPTH",
          value_parser = clap::value_parser!(u16).range(1..))]
    queue_depth: u16,
    /// Bytes per I/O (a multiple of the block size; k and m suffixes are binary).
    #[arg(short = 'o', long = "io-size", value_name = "BYTES", value_parser = parse_size)]
    io_size: usize,
    #[arg(short = 'w', long)]
    workload: Workload,
    /// Run time in seconds (verify stops earlier when its pass is complete).
    #[arg(short = 't', long = "time", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// I/O queue pairs (with --connect: I/O connections), driven round-robin by one thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    qpairs: u16,
    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Seed of the data pattern and of random offsets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// With `-w verify`: only read and check, expecting the pattern to be there already.
    #[arg(long)]
    verify_existing: bool,
    /// With --connect: ask for the NVMe/TCP header digest (CRC32C).
    #[arg(long)]
    header_digest: bool,
    /// With --connect: ask for the NVMe/TCP data digest (CRC32C).
    #[arg(long)]
    data_digest: bool,
}

impl PerfArgs {
    /// A combination of options clap cannot express, as a usage error message.
    pub fn usage_problem(&self) -> Option<&'static str> {
        if self.verify_existing && self.workload != Workload::Verify {
            return Some("--verify-existing only applies to -w verify");
        }
        ((self.header_digest || self.data_digest) && self.connect.is_none())
            .then_some("--header-digest and --data-digest only apply to --connect")
    }
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

pub fn run(args: &PerfArgs) -> Result<()> {
    match (&args.device, &args.connect) {
        (Some(address), None) => local::run(args, address),
        (None, Some(url)) => remote::run(args, url),
        _ => Err(Error::Invalid(
            "give either --device or --connect, not both or neither".into(),
        )),
    }
}

/// What the controller and the namespace allow, as a backend learned it.
struct Limits {
    namespace: Namespace,
    /// Largest data of one command, in bytes.
    max_transfer: usize,
    /// Entries of one I/O queue, at most.
    max_queue_entries: u32,
    /// I/O queues the controller granted.
    io_queues: u16,
}

/// The run, checked against what the controller and namespace allow.
struct Plan {
    workload: Workload,
    namespace: Namespace,
    io_blocks: u32,
    io_bytes: usize,
    queue_depth: u16,
    qpairs: u16,
    duration: Duration,
    seed: u64,
    /// Verify writes the pattern first (unless checking existing data).
    writes_pattern: bool,
}

impl Plan {
    fn new(args: &PerfArgs, limits: Limits) -> Result<Self> {
        let namespace = limits.namespace;
        let block_size = namespace.block_size as usize;
        let invalid = |message: String| Err(Error::Invalid(message));
        if !args.io_size.is_multiple_of(block_size) {
            return invalid(format!(
                "I/O size {} bytes is not a multiple of namespace {}'s {block_size}-byte blocks",
                args.io_size, args.nsid
            ));
        }
        if args.io_size > limits.max_transfer {
            return invalid(format!(
                "I/O size {} bytes exceeds the controller's maximum transfer of {} bytes",
                args.io_size, limits.max_transfer
            ));
        }
        let io_blocks = (args.io_size / block_size) as u32;
        if u64::from(io_blocks) > namespace.blocks {
            return invalid(format!(
                "I/O size {} bytes is larger than namespace {} ({} blocks of {block_size} bytes)",
                args.io_size, args.nsid, namespace.blocks
            ));
        }
        if args.workload == Workload::Verify && !pattern::fits_block_size(block_size) {
            return invalid(format!(
                "verify needs blocks of whole 8-byte words, not {block_size} bytes"
            ));
        }
        if u32::from(args.queue_depth) + 1 > limits.max_queue_entries {
            return invalid(format!(
                "queue depth {} is more than the controller's queues hold (at most {})",
                args.queue_depth,
                limits.max_queue_entries - 1
            ));
        }
        if args.qpairs > limits.io_queues {
            return invalid(format!(
                "{} queue pairs asked for, the controller grants {}",
                args.qpairs, limits.io_queues
            ));
        }
        Ok(Self {
            workload: args.workload,
            namespace,
            io_blocks,
            io_bytes: args.io_size,
            queue_depth: args.queue_depth,
            qpairs: args.qpairs,
            duration: Duration::from_secs(args.seconds),
            seed: args.seed,
            writes_pattern: args.workload == Workload::Verify && !args.verify_existing,
        })
    }

    fn block_size(&self) -> usize {
        self.namespace.block_size as usize
    }

    fn bytes_of(&self, extent: Extent) -> usize {
        extent.blocks as usize * self.block_size()
    }

    /// What a command slot does first with a fresh extent.
    fn first_kind(&self) -> IoKind {
        match self.workload {
            Workload::Read | Workload::RandRead => IoKind::Read,
            Workload::Write | Workload::RandWrite => IoKind::Write,
            Workload::Verify if self.writes_pattern => IoKind::PatternWrite,
            Workload::Verify => IoKind::CheckRead,
        }
    }
}

/// One I/O queue as the shared loop sees it: a queue pair of a local drive
/// ([`local::LocalQueue`]) or an NVMe/TCP I/O connection ([`remote::RemoteQueue`]). Its command
/// slots are numbered `0..queue depth` (the tag), and each owns one data buffer for the run.
trait Backend {
    /// Slot `tag`'s buffer, to fill before submission; `None` while a command holds it.
    fn buffer(&mut self, tag: u16) -> Option<&mut [u8]>;

    /// Submits slot `tag`'s I/O: a write of its buffer to `extent`, or a read of `extent`.
    /// `Ok(false)`: the queue has no room now; try again after reaping.
    fn submit(&mut self, tag: u16, write: bool, extent: Extent) -> Result<bool>;

    /// Reaps completions, reporting each as `(tag, status, data)`, `data` starting with what a
    /// read brought. Returns how many; a backend that can block waits for at least one while
    /// commands are outstanding.
    fn reap(&mut self, done: impl FnMut(u16, Status, &[u8])) -> Result<usize>;

    /// Commands submitted and not completed.
    fn outstanding(&self) -> usize;

    /// Deals with commands that take too long (a no-op where the transport times out itself).
    fn check_timeouts(&mut self) -> Result<()>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoKind {
    Read,
    Write,
    /// Verify: writes the pattern, then reads it back.
    PatternWrite,
    /// Verify: reads and compares with the pattern.
    CheckRead,
}

impl IoKind {
    fn is_write(self) -> bool {
        matches!(self, Self::Write | Self::PatternWrite)
    }
}

#[derive(Clone, Copy, Debug)]
enum SlotState {
    Idle,
    /// Waiting to be submitted (again, when the queue had no room).
    Ready(IoKind, Extent),
    InFlight(IoKind, Extent, Instant),
}

/// The first failed command, for the final message.
#[derive(Clone, Copy, Debug)]
struct IoFailure {
    kind: IoKind,
    extent: Extent,
    status: Status,
}

/// Counters of the whole run, over all queue pairs.
struct Stats {
    latency: Histogram,
    bytes: u64,
    errors: u64,
    first_error: Option<IoFailure>,
    mismatched_blocks: u64,
    first_mismatch: Option<Mismatch>,
    verified_bytes: u64,
}

/// What every queue pair shares: where the next I/O goes, and the counters.
struct Engine<'a> {
    plan: &'a Plan,
    offsets: Offsets,
    /// Cleared when `-t` expires: chunks already started still finish.
    taking_new_extents: bool,
    stats: Stats,
}

impl Engine<'_> {
    /// Fills `buffer` as `kind` needs it before submission.
    fn prepare(&self, kind: IoKind, extent: Extent, buffer: &mut [u8]) {
        let data = &mut buffer[..self.plan.bytes_of(extent)];
        match kind {
            IoKind::PatternWrite => {
                pattern::fill(data, extent.lba, self.plan.block_size(), self.plan.seed)
            }
            IoKind::CheckRead => data.fill(POISON_BYTE),
            IoKind::Read | IoKind::Write => {}
        }
    }

    /// Accounts for a completed command whose buffer holds `data`; returns what its slot does
    /// next.
    fn complete(&mut self, kind: IoKind, extent: Extent, status: Status, data: &[u8]) -> SlotState {
        let stats = &mut self.stats;
        if !status.is_success() {
            stats.errors += 1;
            stats.first_error.get_or_insert(IoFailure {
                kind,
                extent,
                status,
            });
            return SlotState::Idle;
        }
        let len = self.plan.bytes_of(extent);
        stats.bytes += len as u64;
        match kind {
            IoKind::PatternWrite => SlotState::Ready(IoKind::CheckRead, extent),
            IoKind::CheckRead => {
                let check = pattern::check(
                    &data[..len],
                    extent.lba,
                    self.plan.block_size(),
                    self.plan.seed,
                );
                stats.verified_bytes += len as u64;
                stats.mismatched_blocks += check.bad_blocks;
                if let Some(mismatch) = check.first {
                    stats.first_mismatch.get_or_insert(mismatch);
                }
                SlotState::Idle
            }
            IoKind::Read | IoKind::Write => SlotState::Idle,
        }
    }
}

/// One backend queue with the state of its command slots.
struct Queue<B> {
    backend: B,
    slots: Vec<SlotState>,
    /// Slots with something to submit (or idle, to be given a new extent).
    ready: VecDeque<u16>,
}

impl<B: Backend> Queue<B> {
    fn new(backend: B, depth: u16) -> Self {
        Self {
            backend,
            slots: vec![SlotState::Idle; usize::from(depth)],
            ready: (0..depth).collect(),
        }
    }

    /// Whether nothing is in flight and nothing waits to be submitted. Right after
    /// [`Queue::submit`], `ready` only holds slots the queue had no room for: idle slots left
    /// it because no new extent was to be had.
    fn is_finished(&self) -> bool {
        self.backend.outstanding() == 0 && self.ready.is_empty()
    }

    /// Reaps completions; returns how many.
    fn reap(&mut self, engine: &mut Engine<'_>) -> Result<usize> {
        let Self {
            backend,
            slots,
            ready,
        } = self;
        backend.reap(|tag, status, data| {
            let Some(slot) = slots.get_mut(usize::from(tag)) else {
                log::error!("completion for command slot {tag}, which does not exist");
                return;
            };
            let SlotState::InFlight(kind, extent, submitted) = *slot else {
                log::error!("completion for command slot {tag}, which is not in flight");
                return;
            };
            let nanos = submitted.elapsed().as_nanos();
            engine
                .stats
                .latency
                .record(u64::try_from(nanos).unwrap_or(u64::MAX));
            *slot = engine.complete(kind, extent, status, data);
            ready.push_back(tag);
        })
    }

    /// Submits what the ready slots have, giving idle ones new extents while the run lasts.
    fn submit(&mut self, engine: &mut Engine<'_>) -> Result<()> {
        let Self {
            backend,
            slots,
            ready,
        } = self;
        while let Some(tag) = ready.pop_front() {
            let slot = &mut slots[usize::from(tag)];
            let Some(buffer) = backend.buffer(tag) else {
                continue;
            };
            let (kind, extent) = match *slot {
                SlotState::Ready(kind, extent) => (kind, extent),
                SlotState::Idle if engine.taking_new_extents => {
                    let Some(extent) = engine.offsets.next_extent() else {
                        continue;
                    };
                    (engine.plan.first_kind(), extent)
                }
                SlotState::Idle | SlotState::InFlight(..) => continue,
            };
            engine.prepare(kind, extent, buffer);
            let submitted = Instant::now();
            if backend.submit(tag, kind.is_write(), extent)? {
                *slot = SlotState::InFlight(kind, extent, submitted);
            } else {
                *slot = SlotState::Ready(kind, extent);
                ready.push_front(tag);
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Runs `plan` on `backends` (one per queue pair) and reports, on stdout, how it went: what
/// every backend shares once its queues exist. `address` names the device or target.
fn run_plan<B: Backend>(
    args: &PerfArgs,
    plan: &Plan,
    address: &str,
    backends: Vec<B>,
) -> Result<()> {
    let queues = backends
        .into_iter()
        .map(|backend| Queue::new(backend, plan.queue_depth))
        .collect();
    let (stats, elapsed) = drive(plan, queues)?;
    let summary = summarize(plan, address, &stats, elapsed);
    print_summary(&summary, args.json)?;
    match failure_message(&stats) {
        Some(message) => Err(Error::RunFailed(message)),
        None => Ok(()),
    }
}

/// The submit/poll loop, until `-t` expires (or the verify pass ends) and everything started
/// has completed.
fn drive<B: Backend>(plan: &Plan, mut queues: Vec<Queue<B>>) -> Result<(Stats, Duration)> {
    let mut engine = Engine {
        plan,
        offsets: Offsets::new(
            plan.workload,
            plan.io_blocks,
            plan.namespace.blocks,
            plan.seed,
        ),
        taking_new_extents: true,
        stats: Stats {
            latency: Histogram::default(),
            bytes: 0,
            errors: 0,
            first_error: None,
            mismatched_blocks: 0,
            first_mismatch: None,
            verified_bytes: 0,
        },
    };
    let start = Instant::now();
    let deadline = start + plan.duration;
    let mut progress = Progress::new(start);
    let mut next_timeout_check = start + TIMEOUT_CHECK_INTERVAL;
    let mut idle_rounds = 0u32;
    loop {
        let mut reaped = 0;
        for queue in &mut queues {
            reaped += queue.reap(&mut engine)?;
            queue.submit(&mut engine)?;
        }
        idle_rounds = if reaped == 0 { idle_rounds + 1 } else { 0 };
        if idle_rounds == IDLE_ROUNDS_BEFORE_YIELD {
            // Lets a device thread sharing this CPU (the simulator, on a busy machine) run now
            // instead of at the next scheduler tick; costs nothing measurable on real drives.
            std::thread::yield_now();
            idle_rounds = 0;
        }
        if queues.iter().all(Queue::is_finished) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            engine.taking_new_extents = false;
        }
        if now >= next_timeout_check {
            next_timeout_check = now + TIMEOUT_CHECK_INTERVAL;
            for queue in &mut queues {
                queue.backend.check_timeouts()?;
            }
        }
        progress.maybe_report(now, &engine.stats);
    }
    let elapsed = start.elapsed();
    drop(queues);
    Ok((engine.stats, elapsed))
}

#[derive(Debug, Serialize)]
struct LatencyMicros {
    mean: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    device: String,
    nsid: u32,
    workload: String,
    io_size: usize,
    queue_depth: u16,
    qpairs: u16,
    seconds: f64,
    ios: u64,
    iops: f64,
    mib_per_s: f64,
    lat_us: LatencyMicros,
    errors: u64,
    /// Blocks whose data differed from the pattern.
    verify_mismatches: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_bytes: Option<u64>,
    /// Whether verify covered the whole namespace before `-t` expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_complete: Option<bool>,
}

/// The once-a-second line on stderr.
struct Progress {
    start: Instant,
    next: Instant,
    last_ios: u64,
    last_bytes: u64,
}

impl Progress {
    fn new(start: Instant) -> Self {
        Self {
            start,
            next: start + PROGRESS_INTERVAL,
            last_ios: 0,
            last_bytes: 0,
        }
    }

    fn maybe_report(&mut self, now: Instant, stats: &Stats) {
        if now < self.next {
            return;
        }
        let interval = (now - self.next + PROGRESS_INTERVAL).as_secs_f64();
        self.next = now + PROGRESS_INTERVAL;
        let ios = stats.latency.count();
        let iops = (ios - self.last_ios) as f64 / interval;
        let mib_per_s = (stats.bytes - self.last_bytes) as f64 / MIB / interval;
        self.last_ios = ios;
        self.last_bytes = stats.bytes;
        eprintln!(
            "[{:>4.0} s] {iops:>12.0} IOPS {mib_per_s:>10.2} MiB/s  errors {}",
            (now - self.start).as_secs_f64(),
            stats.errors
        );
    }
}

fn summarize(plan: &Plan, address: &str, stats: &Stats, elapsed: Duration) -> Summary {
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let latency = &stats.latency;
    let micros = |nanos: f64| nanos / 1000.0;
    let verifying = plan.workload == Workload::Verify;
    let namespace_bytes = plan.namespace.blocks * u64::from(plan.namespace.block_size);
    Summary {
        device: address.to_owned(),
        nsid: plan.namespace.nsid,
        workload: plan.workload.to_string(),
        io_size: plan.io_bytes,
        queue_depth: plan.queue_depth,
        qpairs: plan.qpairs,
        seconds,
        ios: latency.count(),
        iops: latency.count() as f64 / seconds,
        mib_per_s: stats.bytes as f64 / MIB / seconds,
        lat_us: LatencyMicros {
            mean: micros(latency.mean()),
            p50: micros(latency.quantile(0.50)),
            p99: micros(latency.quantile(0.99)),
            p999: micros(latency.quantile(0.999)),
            max: micros(latency.max() as f64),
        },
        errors: stats.errors,
        verify_mismatches: stats.mismatched_blocks,
        verified_bytes: verifying.then_some(stats.verified_bytes),
        verify_complete: verifying.then_some(stats.verified_bytes == namespace_bytes),
    }
}

fn print_summary(summary: &Summary, json: bool) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(summary).map_err(|e| Error::Output(e.into()))? + "\n"
    } else {
        render(summary)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Output)
}

fn render(summary: &Summary) -> String {
    let lat = &summary.lat_us;
    let mut text = format!(
        "{} nsid {}: {} {} B, queue depth {} x {} queue pair(s), {:.2} s\n  \
           IOPS:       {:.1}\n  \
           MiB/s:      {:.2}\n  \
           I/Os:       {}\n  \
           Latency us: mean {:.2}  p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n  \
           Errors:     {}\n",
        summary.device,
        summary.nsid,
        summary.workload,
        summary.io_size,
        summary.queue_depth,
        summary.qpairs,
        summary.seconds,
        summary.iops,
        summary.mib_per_s,
        summary.ios,
        lat.mean,
        lat.p50,
        lat.p99,
        lat.p999,
        lat.max,
        summary.errors,
    );
    if let (Some(verified), Some(complete)) = (summary.verified_bytes, summary.verify_complete) {
        let coverage = if complete {
            "whole namespace"
        } else {
            "pass cut short by -t"
        };
        text.push_str(&format!(
            "  Verified:   {verified} bytes ({coverage}), {} mismatched blocks\n",
            summary.verify_mismatches
        ));
    }
    text
}

/// One line saying what went wrong, if anything did.
fn failure_message(stats: &Stats) -> Option<String> {
    let mut problems = Vec::new();
    if let Some(failure) = stats.first_error {
        let direction = if failure.kind.is_write() {
            "write"
        } else {
            "read"
        };
        problems.push(format!(
            "{} I/O errors (first: {direction} of {} blocks at LBA {}: {})",
            stats.errors, failure.extent.blocks, failure.extent.lba, failure.status
        ));
    }
    if let Some(mismatch) = stats.first_mismatch {
        problems.push(format!(
            "{} blocks differ from the pattern (first: LBA {} byte {}: expected {:#018x}, \
             found {:#018x})",
            stats.mismatched_blocks,
            mismatch.lba,
            mismatch.offset,
            mismatch.expected,
            mismatch.found
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
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
