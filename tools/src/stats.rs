//! `vfnvme stats [--json] [--watch]`: the statistics of a running target (`vfnvme_get_stats`,
//! docs/statistics.md) as readable tables, or as the JSON the method answers. `--watch`
//! refreshes once a second until Ctrl-C (SIGINT), which ends it with exit status 0: the signal
//! is blocked and read from a signalfd between refreshes, so it never lands mid-print.

use std::fmt::Write as _;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::rpc::call;

/// Prints the statistics once, or every second with `watch` (screen cleared each time).
pub fn run(socket: &Path, json: bool, watch: bool) -> Result<()> {
    if !watch {
        return print(&render(&call(socket, "vfnvme_get_stats", None)?, json));
    }
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().map_err(Error::Signals)?;
    let stop = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).map_err(Error::Signals)?;
    loop {
        let stats = call(socket, "vfnvme_get_stats", None)?;
        print(&format!("\x1b[2J\x1b[H{}", render(&stats, json)))?;
        let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => return Ok(()),
            Err(error) => return Err(Error::Signals(error)),
        }
    }
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(error)),
        _ => Ok(()),
    }
}

/// The statistics as text: pretty JSON, or the tables.
pub fn render(stats: &Value, json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(stats).expect("a JSON value prints");
    }
    let mut text = String::new();
    let uptime = stats["uptime_ns"].as_u64().unwrap_or(0) as f64 / 1e9;
    let _ = writeln!(text, "uptime {uptime:.1} s\n");
    let _ = writeln!(
        text,
        "{:<14} {:>6} {:>6} {:>6} {:>12} {:>12} {:>7}",
        "POLL GROUP", "CONNS", "ADMIN", "IO", "OUTSTANDING", "COMMANDS", "BUSY%"
    );
    for group in list(stats, "poll_groups") {
        let busy = number(group, "busy_ns") as f64;
        let idle = number(group, "idle_ns") as f64;
        let share = if busy + idle > 0.0 {
            100.0 * busy / (busy + idle)
        } else {
            0.0
        };
        let _ = writeln!(
            text,
            "{:<14} {:>6} {:>6} {:>6} {:>12} {:>12} {:>7.1}",
            string(group, "name"),
            number(group, "connections"),
            number(group, "current_admin_qpairs"),
            number(group, "current_io_qpairs"),
            number(group, "outstanding_commands"),
            number(group, "completed_nvme_io"),
            share
        );
    }
    io_table(&mut text, "NAMESPACE", list(stats, "namespaces"), |ns| {
        format!("{} ns {}", string(ns, "subsystem_nqn"), number(ns, "nsid"))
    });
    io_table(&mut text, "HOST", list(stats, "hosts"), |host| {
        string(host, "host_nqn").to_owned()
    });
    let connections = list(stats, "connections");
    let host_of = |c: &Value| {
        c["host_nqn"]
            .as_str()
            .unwrap_or("(not connected)")
            .to_owned()
    };
    let width = connections
        .iter()
        .map(|c| host_of(c).len())
        .fold(4, usize::max);
    let _ = writeln!(
        text,
        "\n{:<22} {:<width$} {:>5} {:>6} {:>7} {:>5} {:>5}",
        "PEER", "HOST", "QID", "CNTLID", "DEPTH", "HDGST", "DDGST"
    );
    for connection in connections {
        let on = |key| if connection[key] == true { "on" } else { "off" };
        let _ = writeln!(
            text,
            "{:<22} {:<width$} {:>5} {:>6} {:>7} {:>5} {:>5}",
            string(connection, "peer"),
            host_of(connection),
            number(connection, "qid"),
            number(connection, "cntlid"),
            format!(
                "{}/{}",
                number(connection, "depth_in_use"),
                number(connection, "sq_entries")
            ),
            on("header_digest"),
            on("data_digest")
        );
    }
    text
}

/// A table of I/O counters (namespaces or hosts), one line each, errors below their line.
fn io_table(text: &mut String, title: &str, rows: &[Value], name: impl Fn(&Value) -> String) {
    let width = rows
        .iter()
        .map(|row| name(row).len())
        .fold(title.len(), usize::max);
    let _ = writeln!(
        text,
        "\n{:<width$} {:>10} {:>10} {:>8} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        title,
        "READS",
        "WRITES",
        "OTHER",
        "READ MiB",
        "WRIT MiB",
        "ERRORS",
        "P50 us",
        "P99 us",
        "P99.9 us",
        "MAX us"
    );
    let mib = |value: u64| value as f64 / (1024.0 * 1024.0);
    let micros = |value: &Value, key| number(value, key) as f64 / 1000.0;
    for row in rows {
        let errors = list(row, "errors");
        let error_count =
            errors.iter().map(|e| number(e, "count")).sum::<u64>() + number(row, "other_errors");
        let latency = &row["latency"];
        let _ = writeln!(
            text,
            "{:<width$} {:>10} {:>10} {:>8} {:>10.1} {:>10.1} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            name(row),
            number(row, "reads"),
            number(row, "writes"),
            number(row, "others"),
            mib(number(row, "bytes_read")),
            mib(number(row, "bytes_written")),
            error_count,
            micros(latency, "p50_ns"),
            micros(latency, "p99_ns"),
            micros(latency, "p999_ns"),
            micros(latency, "max_ns")
        );
        for error in errors {
            let _ = writeln!(
                text,
                "    {} x {}",
                number(error, "count"),
                string(error, "status")
            );
        }
    }
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map_or(&[], Vec::as_slice)
}

fn number(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or(0)
}

fn string<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_tables_show_each_group_namespace_host_and_connection() {
        let io = json!({"reads": 3, "writes": 2, "others": 1, "bytes_read": 3 << 20,
            "bytes_written": 1 << 20, "other_errors": 0,
            "errors": [{"sct": 0, "sc": 128, "status": "LBA out of range (sct 0x0, sc 0x80)", "count": 1}],
            "latency": {"count": 6, "mean_ns": 2000, "p50_ns": 1500, "p99_ns": 9000,
                        "p999_ns": 9000, "max_ns": 9000}});
        let mut namespace = io.clone();
        namespace["subsystem_nqn"] = json!("nqn.x:a");
        namespace["nsid"] = json!(1);
        let mut host = io;
        host["host_nqn"] = json!("nqn.h");
        let stats = json!({"tick_rate": 1_000_000_000u64, "uptime_ns": 2_500_000_000u64,
            "poll_groups": [{"name": "poll-group-0", "connections": 2, "current_admin_qpairs": 1,
                "current_io_qpairs": 1, "outstanding_commands": 4, "completed_nvme_io": 6,
                "busy_ns": 1, "idle_ns": 3}],
            "namespaces": [namespace], "hosts": [host],
            "connections": [{"poll_group": 0, "peer": "127.0.0.1:5", "host_nqn": "nqn.h",
                "subsystem_nqn": "nqn.x:a", "cntlid": 1, "qid": 1, "depth_in_use": 4,
                "sq_entries": 32, "header_digest": true, "data_digest": false}]});
        let text = render(&stats, false);
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line {start}:\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line("poll-group-0"),
            ["poll-group-0", "2", "1", "1", "4", "6", "25.0"]
        );
        assert_eq!(
            line("nqn.x:a ns 1"),
            ["nqn.x:a", "ns", "1", "3", "2", "1", "3.0", "1.0", "1", "1.5", "9.0", "9.0", "9.0"]
        );
        assert_eq!(line("nqn.h")[1..4], ["3", "2", "1"]);
        assert!(
            text.contains("    1 x LBA out of range (sct 0x0, sc 0x80)"),
            "{text}"
        );
        assert_eq!(
            line("127.0.0.1:5"),
            ["127.0.0.1:5", "nqn.h", "1", "1", "4/32", "on", "off"]
        );
        assert!(text.starts_with("uptime 2.5 s"), "{text}");
        let json = render(&stats, true);
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), stats);
    }
}
