//! The counters of a run ([`Stats`]) and what is told of them: the once-a-second progress
//! line on stderr, the summary on stdout (text or JSON), and the one-line failure message.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use vfnvme_spec::Status;

use super::histogram::Histogram;
use super::pattern::Mismatch;
use super::plan::{IoKind, Plan};
use super::workload::{Extent, Workload};
use crate::error::{Error, Result};

const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
const MIB: f64 = 1024.0 * 1024.0;

/// The first failed command, for the final message.
#[derive(Clone, Copy, Debug)]
pub(super) struct IoFailure {
    pub(super) kind: IoKind,
    pub(super) extent: Extent,
    pub(super) status: Status,
}

/// Counters of the whole run, over all queue pairs.
pub(super) struct Stats {
    pub(super) latency: Histogram,
    pub(super) bytes: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<IoFailure>,
    pub(super) mismatched_blocks: u64,
    pub(super) first_mismatch: Option<Mismatch>,
    pub(super) verified_bytes: u64,
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
pub(super) struct Progress {
    start: Instant,
    next: Instant,
    last_ios: u64,
    last_bytes: u64,
}

impl Progress {
    pub(super) fn new(start: Instant) -> Self {
        Self {
            start,
            next: start + PROGRESS_INTERVAL,
            last_ios: 0,
            last_bytes: 0,
        }
    }

    pub(super) fn maybe_report(&mut self, now: Instant, stats: &Stats) {
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

/// Prints the summary on stdout (as JSON with `json`); an error naming what went wrong if any
/// command failed or any data differed from the pattern.
pub(super) fn report(
    plan: &Plan,
    address: &str,
    stats: &Stats,
    elapsed: Duration,
    json: bool,
) -> Result<()> {
    let summary = summarize(plan, address, stats, elapsed);
    print_summary(&summary, json)?;
    match failure_message(stats) {
        Some(message) => Err(Error::RunFailed(message)),
        None => Ok(()),
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
