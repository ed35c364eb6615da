//! The metrics the engine records through the [`metrics`] facade; an embedding service exports them with
//! the recorder of its choice (the `dbfailover watch --metrics-addr` command serves them to Prometheus).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `dbfailover_probe_duration_seconds` | histogram | `connection` | latency of successful checks |
//! | `dbfailover_checks_total` | counter | `connection`, `result` (`success` / `failure`) | checks run |
//! | `dbfailover_check_failures_total` | counter | `connection` | failed checks |
//! | `dbfailover_connection_status` | gauge | `connection` | 0 UNKNOWN, 1 HEALTHY, 2 DOWN |
//! | `dbfailover_active_connection` | gauge | `connection`, `role` | 1 for the active connection, 0 for the others |
//! | `dbfailover_switches_total` | counter | `to` (`primary` / `failover` / `blocking`) | switches of the active connection |
//! | `dbfailover_node_writable` | gauge | `connection` | 1 accepts writes, 0 read-only (a replica), absent when unknown |
//! | `dbfailover_node_replication_lag_seconds` | gauge | `connection` | a replica's lag at its last check |
//! | `dbfailover_node_fenced` | gauge | `connection` | 1 while fenced (no writes go there) |
//! | `dbfailover_split_brain_total` | counter | | two nodes of one cluster seen accepting writes at once |

use dbfailover_core::{CheckResult, ConnectionStatus, RoleNames};

/// Latency histogram name.
pub const PROBE_DURATION: &str = "dbfailover_probe_duration_seconds";
/// Checks counter name.
pub const CHECKS: &str = "dbfailover_checks_total";
/// Failures counter name.
pub const CHECK_FAILURES: &str = "dbfailover_check_failures_total";
/// Status gauge name.
pub const CONNECTION_STATUS: &str = "dbfailover_connection_status";
/// Active connection gauge name.
pub const ACTIVE_CONNECTION: &str = "dbfailover_active_connection";
/// Switches counter name.
pub const SWITCHES: &str = "dbfailover_switches_total";
/// Writability gauge name.
pub const NODE_WRITABLE: &str = "dbfailover_node_writable";
/// Replication lag gauge name.
pub const NODE_LAG: &str = "dbfailover_node_replication_lag_seconds";
/// Fence gauge name.
pub const NODE_FENCED: &str = "dbfailover_node_fenced";
/// Split-brain counter name.
pub const SPLIT_BRAIN: &str = "dbfailover_split_brain_total";

/// A node's role as its latest check found it, and whether it is fenced.
pub(crate) fn record_node(
    connection: &str,
    facts: Option<&dbfailover_core::topology::NodeFacts>,
    fenced: bool,
) {
    let connection = connection.to_owned();
    if let Some(writable) = facts.and_then(|f| f.writable) {
        metrics::gauge!(NODE_WRITABLE, "connection" => connection.clone()).set(if writable {
            1.0
        } else {
            0.0
        });
    }
    if let Some(lag) = facts.and_then(|f| f.lag) {
        metrics::gauge!(NODE_LAG, "connection" => connection.clone()).set(lag.as_secs_f64());
    }
    metrics::gauge!(NODE_FENCED, "connection" => connection).set(if fenced { 1.0 } else { 0.0 });
}

/// Two nodes of one cluster accept writes at once.
pub(crate) fn record_split_brain() {
    metrics::counter!(SPLIT_BRAIN).increment(1);
}

pub(crate) fn record_check(connection: &str, result: &CheckResult) {
    let connection = connection.to_owned();
    match result {
        CheckResult::Success { latency, .. } => {
            metrics::histogram!(PROBE_DURATION, "connection" => connection.clone())
                .record(latency.as_secs_f64());
            metrics::counter!(CHECKS, "connection" => connection, "result" => "success")
                .increment(1);
        }
        CheckResult::Failure { .. } => {
            metrics::counter!(CHECKS, "connection" => connection.clone(), "result" => "failure")
                .increment(1);
            metrics::counter!(CHECK_FAILURES, "connection" => connection).increment(1);
        }
    }
}

pub(crate) fn record_status(connection: &str, status: ConnectionStatus) {
    let value = match status {
        ConnectionStatus::Unknown => 0.0,
        ConnectionStatus::Healthy => 1.0,
        ConnectionStatus::Down => 2.0,
    };
    metrics::gauge!(CONNECTION_STATUS, "connection" => connection.to_owned()).set(value);
}

pub(crate) fn record_active(names: &RoleNames, active: Option<usize>, switched: bool) {
    let nodes = (0..names.node_count())
        .map(Some)
        .chain(std::iter::once(None));
    for node in nodes {
        let value = if node == active { 1.0 } else { 0.0 };
        metrics::gauge!(
            ACTIVE_CONNECTION,
            "connection" => names.node_name(node).to_owned(),
            "role" => RoleNames::active_role(node).to_string()
        )
        .set(value);
    }
    if switched {
        metrics::counter!(SWITCHES, "to" => RoleNames::active_role(active).to_string())
            .increment(1);
    }
}
