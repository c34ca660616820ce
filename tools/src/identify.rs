//! `vfnvme identify`: what a controller and its namespaces say about themselves.

use std::io::Write;

use serde::Serialize;
use vfnvme_driver::Namespace;

use crate::device;
use crate::error::{Error, Result};

#[derive(Debug, Serialize)]
struct ControllerReport {
    address: String,
    vid: u16,
    serial: String,
    model: String,
    firmware: String,
    /// NVMe version as "major.minor".
    version: String,
    /// Maximum Data Transfer Size in bytes; 0 means the controller sets no limit.
    mdts_bytes: usize,
    /// The largest transfer the driver issues: MDTS capped at what one PRP list describes.
    max_transfer_bytes: usize,
    io_queues: u16,
    max_queue_entries: u32,
    namespaces: Vec<NamespaceReport>,
}

#[derive(Debug, Serialize)]
struct NamespaceReport {
    nsid: u32,
    block_size: u32,
    blocks: u64,
    capacity_bytes: u64,
}

impl From<&Namespace> for NamespaceReport {
    fn from(ns: &Namespace) -> Self {
        Self {
            nsid: ns.nsid,
            block_size: ns.block_size,
            blocks: ns.blocks,
            capacity_bytes: ns.blocks.saturating_mul(u64::from(ns.block_size)),
        }
    }
}

pub fn run(address: &str, json: bool) -> Result<()> {
    let opened = device::open(address)?;
    let controller = &opened.controller;
    let identify = controller.identify();
    let cap = controller.capabilities();
    let report = ControllerReport {
        address: controller.address().to_owned(),
        vid: identify.vid.get(),
        serial: identify.serial.to_string(),
        model: identify.model.to_string(),
        firmware: identify.firmware.to_string(),
        version: format!(
            "{}.{}",
            identify.ver.get() >> 16,
            (identify.ver.get() >> 8) & 0xff
        ),
        mdts_bytes: identify.mdts_bytes(cap.mpsmin_bytes()).unwrap_or(0),
        max_transfer_bytes: controller.max_transfer(),
        io_queues: controller.io_queues_granted(),
        max_queue_entries: cap.max_queue_entries(),
        namespaces: controller
            .namespaces()?
            .iter()
            .map(NamespaceReport::from)
            .collect(),
    };
    let text = if json {
        serde_json::to_string_pretty(&report).map_err(|e| Error::Output(e.into()))? + "\n"
    } else {
        render(&report)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Output)
}

fn render(report: &ControllerReport) -> String {
    let mdts = match report.mdts_bytes {
        0 => "no limit".to_owned(),
        bytes => format!("{bytes} bytes ({})", human_bytes(bytes as u64)),
    };
    let mut text = format!(
        "Controller {}\n  \
           Vendor ID:          {:#06x}\n  \
           Serial number:      {}\n  \
           Model:              {}\n  \
           Firmware:           {}\n  \
           NVMe version:       {}\n  \
           MDTS:               {mdts}\n  \
           Max transfer:       {} bytes\n  \
           I/O queues granted: {}\n  \
           Max queue entries:  {}\n",
        report.address,
        report.vid,
        report.serial,
        report.model,
        report.firmware,
        report.version,
        report.max_transfer_bytes,
        report.io_queues,
        report.max_queue_entries,
    );
    if report.namespaces.is_empty() {
        text.push_str("No active namespaces\n");
    }
    for ns in &report.namespaces {
        text.push_str(&format!(
            "Namespace {}\n  Block size: {} bytes\n  Blocks:     {}\n  Capacity:   {} bytes ({})\n",
            ns.nsid,
            ns.block_size,
            ns.blocks,
            ns.capacity_bytes,
            human_bytes(ns.capacity_bytes)
        ));
    }
    text
}

/// `bytes` in the largest binary unit that leaves at least 1, with two decimals.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_picks_the_largest_fitting_unit() {
        assert_eq!(human_bytes(512), "512.00 B");
        assert_eq!(human_bytes(16384 * 512), "8.00 MiB");
        assert_eq!(human_bytes(3 << 40), "3.00 TiB");
    }
}
