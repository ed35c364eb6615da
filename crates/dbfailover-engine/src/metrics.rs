//! The metrics the engine (and the `dbfailover-sqlx` routed pool) records through the [`metrics`]
//! facade; an embedding service exports them with the recorder of its choice, installed before the
//! engine starts (the `dbfailover watch --metrics-addr` command serves them to Prometheus).
//!
//! Every series an operator alerts on exists from the engine's start: the check and switch counters at
//! 0 for every configured connection and target (so `rate()` and `increase()` work from the first
//! scrape), the status series at `unknown` 1, the store gauge at 1, the build info.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `dbfailover_build_info` | gauge | `version` | always 1 |
//! | `dbfailover_check_duration_seconds` | histogram | `connection` | latency of successful checks |
//! | `dbfailover_checks_total` | counter | `connection`, `result` (`success` / `failure`) | checks run |
//! | `dbfailover_check_failures_total` | counter | `connection` | failed checks |
//! | `dbfailover_last_success_timestamp_seconds` | gauge | `connection` | Unix time of the last successful check (absent before the first) |
//! | `dbfailover_connection_status` | gauge | `connection`, `status` (`unknown` / `healthy` / `down`) | 1 for the connection's current status, 0 for the others |
//! | `dbfailover_active_connection` | gauge | `connection`, `role` | 1 for the active connection, 0 for the others |
//! | `dbfailover_switches_total` | counter | `to` (`primary` / `failover` / `blocking`) | switches of the active connection |
//! | `dbfailover_store_available` | gauge | | 1 while the state store answers, 0 during an outage |
//! | `dbfailover_node_writable` | gauge | `connection` | 1 accepts writes, 0 read-only (a replica), absent when unknown |
//! | `dbfailover_node_replication_lag_seconds` | gauge | `connection` | a replica's lag at its last check |
//! | `dbfailover_node_fenced` | gauge | `connection` | 1 while fenced (no writes go there) |
//! | `dbfailover_split_brain_total` | counter | | two nodes of one cluster seen accepting writes at once |
//! | `dbfailover_pool_acquires_total` | counter | `connection`, `result` (`success` / `failure` / `limited`) | connections the routed pool handed out or failed to |
//! | `dbfailover_pool_errors_total` | counter | `connection`, `kind` (`connection` / `query` / `switched` / `deadline` / `limited`) | errors the routed pool answered |

use dbfailover_core::{CheckResult, Config, ConnectionStatus, RoleNames};

/// `dbfailover_build_info{version}`: gauge, always 1; `version` is this release's.
pub const BUILD_INFO: &str = "dbfailover_build_info";
/// `dbfailover_check_duration_seconds{connection}`: histogram of the latency of successful checks.
pub const CHECK_DURATION: &str = "dbfailover_check_duration_seconds";
/// `dbfailover_checks_total{connection, result}`: counter of the checks run, `result` being
/// `success` or `failure`.
pub const CHECKS: &str = "dbfailover_checks_total";
/// `dbfailover_check_failures_total{connection}`: counter of the failed checks.
pub const CHECK_FAILURES: &str = "dbfailover_check_failures_total";
/// `dbfailover_last_success_timestamp_seconds{connection}`: gauge, the Unix time of the connection's
/// last successful check (absent before the first one).
pub const LAST_SUCCESS: &str = "dbfailover_last_success_timestamp_seconds";
/// `dbfailover_connection_status{connection, status}`: gauge, one series per status (`unknown`,
/// `healthy`, `down`): 1 for the connection's current status, 0 for the others.
pub const CONNECTION_STATUS: &str = "dbfailover_connection_status";
/// `dbfailover_active_connection{connection, role}`: gauge, 1 for the active connection (the blocking
/// connection in limited mode), 0 for the others.
pub const ACTIVE_CONNECTION: &str = "dbfailover_active_connection";
/// `dbfailover_switches_total{to}`: counter of the switches of the active connection, by the role
/// switched to (`primary`, `failover`, `blocking`).
pub const SWITCHES: &str = "dbfailover_switches_total";
/// `dbfailover_store_available`: gauge, 1 while the state store answers, 0 from a failed store
/// operation until one succeeds again.
pub const STORE_AVAILABLE: &str = "dbfailover_store_available";
/// `dbfailover_node_writable{connection}`: gauge, 1 when the node's last check found it accepting
/// writes, 0 read-only (a replica); absent while unknown.
pub const NODE_WRITABLE: &str = "dbfailover_node_writable";
/// `dbfailover_node_replication_lag_seconds{connection}`: gauge, a replica's lag at its last check.
pub const NODE_LAG: &str = "dbfailover_node_replication_lag_seconds";
/// `dbfailover_node_fenced{connection}`: gauge, 1 while the node is fenced (no writes go there).
pub const NODE_FENCED: &str = "dbfailover_node_fenced";
/// `dbfailover_split_brain_total`: counter of the times two nodes of one cluster were seen accepting
/// writes at once.
pub const SPLIT_BRAIN: &str = "dbfailover_split_brain_total";
/// `dbfailover_pool_acquires_total{connection, result}`: counter of the routed pool's acquisitions:
/// `success` (a connection handed out), `failure` (the database's pool failed to give one),
/// `limited` (refused at once in limited mode; `connection` is then the blocking connection's name).
pub const POOL_ACQUIRES: &str = "dbfailover_pool_acquires_total";
/// `dbfailover_pool_errors_total{connection, kind}`: counter of the errors the routed pool answered:
/// `connection` (a connection lost, refused or timed out), `query` (any other database error),
/// `switched` (work released because routing left its database), `deadline` (work that outlived the
/// query deadline), `limited` (limited mode).
pub const POOL_ERRORS: &str = "dbfailover_pool_errors_total";

/// The `status` label of each [`ConnectionStatus`], in the order the series are written.
const STATUSES: [(ConnectionStatus, &str); 3] = [
    (ConnectionStatus::Unknown, "unknown"),
    (ConnectionStatus::Healthy, "healthy"),
    (ConnectionStatus::Down, "down"),
];

/// Describes every metric to the installed recorder (kind, unit, help text); idempotent.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(BUILD_INFO, "always 1; the version label is this release's");
    describe_histogram!(
        CHECK_DURATION,
        Unit::Seconds,
        "latency of successful checks"
    );
    describe_counter!(CHECKS, "checks run, by result (success, failure)");
    describe_counter!(CHECK_FAILURES, "failed checks");
    describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful check"
    );
    describe_gauge!(
        CONNECTION_STATUS,
        "1 for the connection's current status (unknown, healthy, down), 0 for the others"
    );
    describe_gauge!(
        ACTIVE_CONNECTION,
        "1 for the active connection, 0 for the others"
    );
    describe_counter!(
        SWITCHES,
        "switches of the active connection, by the role switched to"
    );
    describe_gauge!(
        STORE_AVAILABLE,
        "1 while the state store answers, 0 during an outage"
    );
    describe_gauge!(
        NODE_WRITABLE,
        "1 if the last check found the node accepting writes, 0 read-only"
    );
    describe_gauge!(
        NODE_LAG,
        Unit::Seconds,
        "a replica's replication lag at its last check"
    );
    describe_gauge!(
        NODE_FENCED,
        "1 while the node is fenced (no writes go there)"
    );
    describe_counter!(
        SPLIT_BRAIN,
        "two nodes of one cluster seen accepting writes at once"
    );
    describe_counter!(
        POOL_ACQUIRES,
        "routed pool acquisitions, by result (success, failure, limited)"
    );
    describe_counter!(
        POOL_ERRORS,
        "errors the routed pool answered, by kind (connection, query, switched, deadline, limited)"
    );
}

/// At the engine's start: every metric described, the build info, and every series an alert or a
/// `rate()` needs present from the first scrape (counters at 0, each connection's status `unknown`).
pub(crate) fn register(config: &Config) {
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for monitored in config.monitored() {
        let connection = monitored.name.to_owned();
        for result in ["success", "failure"] {
            metrics::counter!(CHECKS, "connection" => connection.clone(), "result" => result)
                .increment(0);
        }
        metrics::counter!(CHECK_FAILURES, "connection" => connection.clone()).increment(0);
        record_status(&connection, ConnectionStatus::Unknown);
    }
    let names = config.role_names();
    let mut targets: Vec<String> = (0..names.node_count())
        .map(Some)
        .chain(std::iter::once(None))
        .map(|node| RoleNames::active_role(node).to_string())
        .collect();
    targets.dedup();
    for to in targets {
        metrics::counter!(SWITCHES, "to" => to).increment(0);
    }
    metrics::counter!(SPLIT_BRAIN).increment(0);
}

/// Whether the state store answers, as the engine learns it.
pub(crate) fn record_store_available(available: bool) {
    metrics::gauge!(STORE_AVAILABLE).set(if available { 1.0 } else { 0.0 });
}

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
            metrics::histogram!(CHECK_DURATION, "connection" => connection.clone())
                .record(latency.as_secs_f64());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            metrics::gauge!(LAST_SUCCESS, "connection" => connection.clone()).set(now);
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
    for (each, label) in STATUSES {
        let value = if each == status { 1.0 } else { 0.0 };
        metrics::gauge!(
            CONNECTION_STATUS,
            "connection" => connection.to_owned(),
            "status" => label
        )
        .set(value);
    }
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
