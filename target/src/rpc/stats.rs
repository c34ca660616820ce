//! The statistics methods: `nvmf_get_stats` (SPDK's shape: the poll groups) and
//! `vfnvme_get_stats` (those, and the I/O of each namespace, host and connection). They read
//! the snapshots the poll groups publish at each tick; no poll group waits for them.

use serde_json::Value;

use super::context::Management;
use super::params::{parse, GetStats};
use super::protocol::{RpcError, INTERNAL_ERROR};
use crate::stats::report;

fn to_value(report: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(report).map_err(|error| RpcError::new(INTERNAL_ERROR, error.to_string()))
}

/// `nvmf_get_stats`: `tick_rate`, `uptime_ns` and the poll groups.
pub fn get_stats(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let _: GetStats = parse(params_value)?;
    to_value(report::target_stats(&m.stats))
}

/// `vfnvme_get_stats`: everything `nvmf_get_stats` answers, then `namespaces`, `hosts` and
/// `connections`.
pub fn get_all_stats(m: &mut Management, params_value: Value) -> Result<Value, RpcError> {
    let _: GetStats = parse(params_value)?;
    to_value(report::full_stats(&m.stats))
}
