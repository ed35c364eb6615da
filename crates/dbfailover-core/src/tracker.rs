//! The per-connection health tracker: consecutive results in, status transitions out.

use crate::status::ConnectionStatus;
use crate::topology::NodeFacts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How many consecutive results it takes to change a connection's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Consecutive failed checks that make a connection DOWN (at least 1).
    pub failure_threshold: u32,
    /// Consecutive successful checks that make a DOWN connection HEALTHY again (at least 1).
    pub recovery_threshold: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            recovery_threshold: 2,
        }
    }
}

/// The result of one health check of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The check succeeded.
    Success {
        /// How long the check took, connect included.
        latency: Duration,
        /// Whether the connection accepts writes, when the probe could tell.
        writable: Option<bool>,
        /// What the probe found of its place in a replication cluster, when it could tell.
        replication: Option<Replication>,
    },
    /// The check failed: refused, timed out, errored, or the connection was read-only when it must not be.
    Failure {
        /// Why, in words an operator can act on (no secrets).
        reason: String,
    },
}

impl CheckResult {
    /// A success with the given latency and nothing known about writability.
    pub fn success(latency: Duration) -> Self {
        Self::Success {
            latency,
            writable: None,
            replication: None,
        }
    }

    /// What this result says of the node's role, for a success.
    pub fn facts(&self) -> Option<NodeFacts> {
        match self {
            Self::Success {
                writable,
                replication,
                ..
            } => Some(NodeFacts {
                writable: *writable,
                replicating: replication.as_ref().map(|r| r.replicating),
                cluster: replication.as_ref().and_then(|r| r.cluster.clone()),
                timeline: replication.as_ref().and_then(|r| r.timeline),
                lag: replication.as_ref().and_then(|r| r.lag),
                gtid: replication.as_ref().and_then(|r| r.gtid.clone()),
            }),
            Self::Failure { .. } => None,
        }
    }

    /// A failure with the given reason.
    pub fn failure(reason: impl Into<String>) -> Self {
        Self::Failure {
            reason: reason.into(),
        }
    }

    /// Whether this result is a success.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success { .. })
    }
}

/// A node's place in a replication cluster, as one check found it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    /// It replicates from another server (PostgreSQL in recovery; a running replica thread).
    pub replicating: bool,
    /// Its cluster's identity (PostgreSQL `system_identifier`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The timeline it writes or replays (PostgreSQL), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// How far a replica's data is behind its writer's, when known (PostgreSQL: 0 when it replayed
    /// everything it received, else the age of the last transaction it replayed; MariaDB:
    /// `Seconds_Behind_Master`).
    #[serde(
        default,
        rename = "lag_ms",
        with = "crate::duration::option_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub lag: Option<Duration>,
    /// Its GTID position (MariaDB `@@gtid_current_pos`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// A change of a connection's status, returned by [`HealthTracker::record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusTransition {
    /// The status before.
    pub from: ConnectionStatus,
    /// The status after.
    pub to: ConnectionStatus,
    /// When the deciding result was recorded.
    pub at: DateTime<Utc>,
    /// The failure reason of the deciding check, for transitions to DOWN.
    pub reason: Option<String>,
}

/// What is known about one connection: the tracker's state, as shown to operators and stores.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectionState {
    /// The status.
    pub status: ConnectionStatus,
    /// Consecutive failed checks (the seed's failure count).
    pub failure_count: u32,
    /// Consecutive successful checks.
    pub success_count: u32,
    /// All checks recorded since the tracker started.
    pub checks: u64,
    /// When the last check was recorded.
    pub last_check_at: Option<DateTime<Utc>>,
    /// Latency of the last successful check.
    #[serde(with = "crate::duration::option_millis")]
    pub last_latency: Option<Duration>,
    /// Whether the connection accepted writes at its last successful check, when known.
    pub writable: Option<bool>,
    /// Its place in a replication cluster at its last successful check, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// The reason of the last failed check.
    pub last_error: Option<String>,
}

/// The part of a tracker's state that decides transitions: what a shared store keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// The status.
    pub status: ConnectionStatus,
    /// Consecutive failed checks.
    pub failure_count: u32,
    /// Consecutive successful checks.
    pub success_count: u32,
}

/// Tracks consecutive results of one connection and decides its status.
///
/// - UNKNOWN becomes HEALTHY on the first success, and DOWN after `failure_threshold` consecutive failures.
/// - HEALTHY stays HEALTHY through fewer than `failure_threshold` consecutive failures (routing never leaves
///   a connection that is merely suspect), and becomes DOWN at the threshold.
/// - DOWN becomes HEALTHY only after `recovery_threshold` consecutive successes; a failure restarts the count.
///
/// Pure: the caller passes the time, nothing here waits or does I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTracker {
    thresholds: Thresholds,
    state: ConnectionState,
}

impl HealthTracker {
    /// A tracker in UNKNOWN with no results yet.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            state: ConnectionState::default(),
        }
    }

    /// A tracker resuming from a stored status and failure count (as a shared store keeps them).
    pub fn resume(thresholds: Thresholds, status: ConnectionStatus, failure_count: u32) -> Self {
        Self {
            thresholds,
            state: ConnectionState {
                status,
                failure_count,
                ..ConnectionState::default()
            },
        }
    }

    /// A tracker resuming from shared counts (a store's entry), with nothing else known.
    pub fn from_counts(thresholds: Thresholds, counts: Counts) -> Self {
        let mut tracker = Self::new(thresholds);
        tracker.adopt(counts);
        tracker
    }

    /// The status and consecutive counts.
    pub fn counts(&self) -> Counts {
        Counts {
            status: self.state.status,
            failure_count: self.state.failure_count,
            success_count: self.state.success_count,
        }
    }

    /// Takes status and counts from elsewhere (the shared store's decision), keeping what this tracker
    /// knows of its own checks (last check, latency, error).
    pub fn adopt(&mut self, counts: Counts) {
        self.state.status = counts.status;
        self.state.failure_count = counts.failure_count;
        self.state.success_count = counts.success_count;
    }

    /// Notes that the connection was checked at `at` (by another instance sharing the store): the last
    /// check time moves forward, never back.
    pub fn observe_check_at(&mut self, at: DateTime<Utc>) {
        if self.state.last_check_at.is_none_or(|last| last < at) {
            self.state.last_check_at = Some(at);
        }
    }

    /// The thresholds this tracker applies.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// The current status.
    pub fn status(&self) -> ConnectionStatus {
        self.state.status
    }

    /// Everything known about the connection.
    pub fn state(&self) -> &ConnectionState {
        &self.state
    }

    /// Whether any result has been recorded (or a state resumed from a store).
    pub fn has_results(&self) -> bool {
        self.state.checks > 0 || self.state.status != ConnectionStatus::Unknown
    }

    /// Records one check result at `now`; returns the status transition it caused, if any.
    pub fn record(&mut self, result: &CheckResult, now: DateTime<Utc>) -> Option<StatusTransition> {
        let state = &mut self.state;
        state.checks = state.checks.saturating_add(1);
        state.last_check_at = Some(now);
        let from = state.status;
        let (to, reason) = match result {
            CheckResult::Success {
                latency,
                writable,
                replication,
            } => {
                state.failure_count = 0;
                state.success_count = state.success_count.saturating_add(1);
                state.last_latency = Some(*latency);
                state.writable = *writable;
                state.replication = replication.clone();
                let to = match from {
                    ConnectionStatus::Down
                        if state.success_count < self.thresholds.recovery_threshold =>
                    {
                        ConnectionStatus::Down
                    }
                    _ => ConnectionStatus::Healthy,
                };
                (to, None)
            }
            CheckResult::Failure { reason } => {
                state.success_count = 0;
                state.failure_count = state.failure_count.saturating_add(1);
                state.last_error = Some(reason.clone());
                let to = if state.failure_count >= self.thresholds.failure_threshold {
                    ConnectionStatus::Down
                } else {
                    from
                };
                (to, Some(reason.clone()))
            }
        };
        state.status = to;
        (from != to).then(|| StatusTransition {
            from,
            to,
            at: now,
            reason: if to == ConnectionStatus::Down {
                reason
            } else {
                None
            },
        })
    }

    /// Sets the status by hand (a forced switch marks its target HEALTHY), clearing the counts.
    pub fn force(
        &mut self,
        status: ConnectionStatus,
        now: DateTime<Utc>,
    ) -> Option<StatusTransition> {
        let from = self.state.status;
        self.state.status = status;
        self.state.failure_count = 0;
        self.state.success_count = 0;
        (from != status).then_some(StatusTransition {
            from,
            to: status,
            at: now,
            reason: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn ok() -> CheckResult {
        CheckResult::success(Duration::from_millis(1))
    }

    fn fail() -> CheckResult {
        CheckResult::failure("connection refused")
    }

    #[test]
    fn first_success_makes_unknown_healthy() {
        let mut tracker = HealthTracker::new(Thresholds::default());
        let transition = tracker.record(&ok(), t(0)).map(|tr| (tr.from, tr.to));
        assert_eq!(
            transition,
            Some((ConnectionStatus::Unknown, ConnectionStatus::Healthy))
        );
        assert_eq!(tracker.record(&ok(), t(1)), None);
    }

    #[test]
    fn down_only_at_the_threshold_and_healthy_stays_healthy_below_it() {
        let mut tracker = HealthTracker::new(Thresholds::default());
        tracker.record(&ok(), t(0));
        assert_eq!(tracker.record(&fail(), t(1)), None);
        assert_eq!(tracker.record(&fail(), t(2)), None);
        assert_eq!(tracker.status(), ConnectionStatus::Healthy);
        assert_eq!(tracker.state().failure_count, 2);
        let down = tracker.record(&fail(), t(3));
        assert_eq!(down.as_ref().map(|d| d.to), Some(ConnectionStatus::Down));
        assert_eq!(
            down.and_then(|d| d.reason).as_deref(),
            Some("connection refused")
        );
        assert_eq!(
            tracker.record(&fail(), t(4)),
            None,
            "already DOWN: no new transition"
        );
    }

    #[test]
    fn unknown_failing_below_threshold_stays_unknown_like_the_seed() {
        let mut tracker = HealthTracker::new(Thresholds::default());
        assert_eq!(tracker.record(&fail(), t(0)), None);
        assert_eq!(tracker.status(), ConnectionStatus::Unknown);
        assert_eq!(tracker.state().failure_count, 1);
    }

    #[test]
    fn recovery_needs_consecutive_successes() {
        let thresholds = Thresholds {
            failure_threshold: 1,
            recovery_threshold: 3,
        };
        let mut tracker = HealthTracker::new(thresholds);
        tracker.record(&fail(), t(0));
        assert_eq!(tracker.status(), ConnectionStatus::Down);
        tracker.record(&ok(), t(1));
        tracker.record(&ok(), t(2));
        tracker.record(&fail(), t(3));
        tracker.record(&ok(), t(4));
        tracker.record(&ok(), t(5));
        assert_eq!(
            tracker.status(),
            ConnectionStatus::Down,
            "the failure restarted the count"
        );
        let up = tracker.record(&ok(), t(6));
        assert_eq!(up.map(|u| u.to), Some(ConnectionStatus::Healthy));
    }

    #[test]
    fn success_resets_failure_count_like_the_seed() {
        let mut tracker = HealthTracker::new(Thresholds::default());
        tracker.record(&fail(), t(0));
        tracker.record(&fail(), t(1));
        tracker.record(&ok(), t(2));
        assert_eq!(tracker.state().failure_count, 0);
        tracker.record(&fail(), t(3));
        tracker.record(&fail(), t(4));
        assert_ne!(tracker.status(), ConnectionStatus::Down);
    }

    #[test]
    fn force_clears_counts() {
        let mut tracker = HealthTracker::new(Thresholds::default());
        for i in 0..3 {
            tracker.record(&fail(), t(i));
        }
        let forced = tracker.force(ConnectionStatus::Healthy, t(9));
        assert_eq!(forced.map(|f| f.to), Some(ConnectionStatus::Healthy));
        assert_eq!(tracker.state().failure_count, 0);
    }
}
