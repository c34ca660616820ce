//! The optional Prometheus endpoint (`[metrics] address`): `GET /metrics` answers the poll
//! groups' published snapshots (the same ones `vfnvme_get_stats` reads) in the OpenMetrics
//! text format, encoded by `prometheus-client`. A thread of its own on the management side, with
//! a minimal HTTP/1.0 loop: one request per connection, answered and closed. It never touches a
//! poll group. docs/statistics.md names the metrics.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::histogram::LatencyHistogram;
use super::snapshot::{GroupSnapshot, IoEntry, StatsBoard};

/// A client that does not send its request line within this is dropped.
const CLIENT_PATIENCE: Duration = Duration::from_secs(5);
/// Latency histogram bucket bounds: below 2^k ns for k in this range (1 µs to 34 s).
const LATENCY_BOUNDS: std::ops::RangeInclusive<u32> = 10..=35;
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The endpoint's thread; stopped (and joined) when dropped.
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `address` and serves `board`'s snapshots.
    pub fn start(address: SocketAddr, board: Arc<StatsBoard>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK)?);
        let stop_for_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&listener, &stop_for_thread, &board))?;
        log::info!("metrics: http://{address}/metrics");
        Ok(Self {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens (the port the system chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the metrics thread panicked");
            }
        }
    }
}

fn serve(listener: &TcpListener, stop: &EventFd, board: &Arc<StatsBoard>) {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => {
                log::error!("metrics: poll failed: {error}; the endpoint stops");
                return;
            }
        }
        if fds[1].any().unwrap_or(false) {
            return;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(error) = answer(stream, board) {
                    log::debug!("metrics: {peer}: {error}");
                }
            }
            Err(error) => log::warn!("metrics: accept failed: {error}"),
        }
    }
}

/// Reads one request and answers it: `/metrics` the exposition, anything else 404.
fn answer(stream: TcpStream, board: &Arc<StatsBoard>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_PATIENCE))?;
    stream.set_write_timeout(Some(CLIENT_PATIENCE))?;
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers, up to the blank line; none matters.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some("GET"), Some("/metrics")) => ("200 OK", CONTENT_TYPE, exposition(board)),
        (Some("GET"), _) => ("404 Not Found", "text/plain", "try /metrics\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let mut writer = &stream;
    write!(
        writer,
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    writer.flush()
}

/// The metrics of `board` in the OpenMetrics text format.
pub fn exposition(board: &Arc<StatsBoard>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshots(Arc::clone(board))));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("encoding into a String does not fail");
    text
}

/// Encodes the board's snapshots at each scrape.
#[derive(Debug)]
struct Snapshots(Arc<StatsBoard>);

impl std::fmt::Debug for StatsBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsBoard")
    }
}

type Labels = Vec<(&'static str, String)>;

fn io_labels(entry: &IoEntry) -> Labels {
    vec![
        ("subsystem", entry.subsystem_nqn.to_string()),
        (
            "nsid",
            entry
                .nsid
                .map_or_else(|| "none".to_owned(), |n| n.to_string()),
        ),
        ("host", entry.host_nqn.to_string()),
    ]
}

fn with(mut labels: Labels, key: &'static str, value: impl ToString) -> Labels {
    labels.push((key, value.to_string()));
    labels
}

/// One metric family: its descriptor, then each labelled value.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The I/O entries summed over the poll groups, per (subsystem, nsid, host).
fn io_entries(snapshots: &[GroupSnapshot]) -> Vec<IoEntry> {
    let mut sums: Vec<IoEntry> = Vec::new();
    for entry in snapshots.iter().flat_map(|s| &s.io) {
        match sums.iter_mut().find(|e| {
            e.nsid == entry.nsid
                && e.host_nqn == entry.host_nqn
                && e.subsystem_nqn == entry.subsystem_nqn
        }) {
            Some(sum) => sum.counters.merge(&entry.counters),
            None => sums.push(entry.clone()),
        }
    }
    sums
}

/// A latency histogram as Prometheus buckets, in seconds: each bound with the count of its
/// own bucket (the encoder makes them cumulative); `f64::MAX` is the encoder's `+Inf`.
fn buckets(histogram: &LatencyHistogram) -> Vec<(f64, u64)> {
    let mut buckets = Vec::with_capacity(LATENCY_BOUNDS.count() + 1);
    let mut below_previous = 0;
    for k in LATENCY_BOUNDS {
        let bound = (1u64 << k) - 1;
        let at_most = histogram.count_at_most(bound);
        buckets.push((bound as f64 / 1e9, at_most - below_previous));
        below_previous = at_most;
    }
    buckets.push((f64::MAX, histogram.count() - below_previous));
    buckets
}

impl Collector for Snapshots {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots = self.0.snapshots();
        let io = io_entries(&snapshots);
        let counter = |v: u64| ConstCounter::new(v);
        family(
            &mut encoder,
            "vfnvme_commands",
            "I/O commands answered, by kind (read, write, other)",
            MetricType::Counter,
            io.iter().flat_map(|e| {
                let c = &e.counters;
                [("read", c.reads), ("write", c.writes), ("other", c.others)]
                    .map(|(kind, v)| (with(io_labels(e), "kind", kind), counter(v)))
            }),
        )?;
        family(
            &mut encoder,
            "vfnvme_bytes",
            "Data of successful reads and writes, by direction",
            MetricType::Counter,
            io.iter().flat_map(|e| {
                let c = &e.counters;
                [("read", c.bytes_read), ("write", c.bytes_written)]
                    .map(|(way, v)| (with(io_labels(e), "direction", way), counter(v)))
            }),
        )?;
        family(
            &mut encoder,
            "vfnvme_errors",
            "I/O commands answered with an error, by status (SCT, SC; other: beyond the table)",
            MetricType::Counter,
            io.iter().flat_map(|e| {
                let errors = &e.counters.errors;
                errors
                    .entries()
                    .iter()
                    .map(move |&(sct, sc, count)| {
                        let labels = with(with(io_labels(e), "sct", sct), "sc", sc);
                        (labels, counter(count))
                    })
                    .chain((errors.other() > 0).then(|| {
                        let labels = with(with(io_labels(e), "sct", "other"), "sc", "other");
                        (labels, counter(errors.other()))
                    }))
            }),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "vfnvme_command_latency_seconds",
                "Time from a command's capsule parsed to its response queued",
                None,
                MetricType::Histogram,
            )?;
            for entry in &io {
                let histogram = &entry.counters.latency;
                metric
                    .encode_family(&io_labels(entry))?
                    .encode_histogram::<NoLabelSet>(
                        histogram.sum() as f64 / 1e9,
                        histogram.count(),
                        &buckets(histogram),
                        None,
                    )?;
            }
        }
        let group = |s: &GroupSnapshot| vec![("poll_group", s.index.to_string())];
        let gauges = |value: fn(&GroupSnapshot) -> usize| {
            snapshots
                .iter()
                .map(move |s| (group(s), ConstGauge::new(value(s) as i64)))
        };
        family(
            &mut encoder,
            "vfnvme_poll_group_connections",
            "Connections the poll group holds",
            MetricType::Gauge,
            gauges(|s| s.connections),
        )?;
        family(
            &mut encoder,
            "vfnvme_poll_group_admin_queue_pairs",
            "Admin queues bound by a Connect",
            MetricType::Gauge,
            gauges(|s| s.admin_queue_pairs),
        )?;
        family(
            &mut encoder,
            "vfnvme_poll_group_io_queue_pairs",
            "I/O queues bound by a Connect",
            MetricType::Gauge,
            gauges(|s| s.io_queue_pairs),
        )?;
        family(
            &mut encoder,
            "vfnvme_poll_group_outstanding_commands",
            "Commands received and not yet answered",
            MetricType::Gauge,
            gauges(|s| s.outstanding_commands),
        )?;
        let seconds = |ns: u64| ConstCounter::new(ns as f64 / 1e9);
        family(
            &mut encoder,
            "vfnvme_poll_group_busy_seconds",
            "Time of the poll group's rounds that found work",
            MetricType::Counter,
            snapshots.iter().map(|s| (group(s), seconds(s.busy_ns))),
        )?;
        family(
            &mut encoder,
            "vfnvme_poll_group_idle_seconds",
            "Time of the poll group's rounds that found none (parked included)",
            MetricType::Counter,
            snapshots.iter().map(|s| (group(s), seconds(s.idle_ns))),
        )?;
        family(
            &mut encoder,
            "vfnvme_uptime_seconds",
            "How long the target has run",
            MetricType::Gauge,
            [(
                Labels::new(),
                ConstGauge::new(self.0.uptime().as_secs_f64()),
            )],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_range_once_and_end_with_the_rest() {
        let mut histogram = LatencyHistogram::default();
        for value in [500, 1_000, 1_023, 1_024, 3_000_000, 1 << 40] {
            histogram.record(value);
        }
        let buckets = buckets(&histogram);
        assert_eq!(buckets.len(), LATENCY_BOUNDS.count() + 1);
        // Below 2^10 ns: 500, 1000, 1023; below 2^11: 1024; 3 ms below 2^22.
        assert_eq!(buckets[0], (1023e-9, 3));
        assert_eq!(buckets[1].1, 1);
        assert_eq!(buckets[12].1, 1);
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 6);
    }
}
