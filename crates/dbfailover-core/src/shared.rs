//! The rule by which instances sharing a store decide together. Pure.
//!
//! Every instance applies each of its check results to the shared entry (by compare-and-set, in the
//! engine). The entry holds the shared counts and each instance's latest result (its *vote*) for a
//! window of time. A connection becomes DOWN when the shared failure count reaches the threshold and
//! **no other instance's latest result within the window is a success**: an instance that can still
//! reach a database vetoes leaving it, so one instance's broken path (however fast its confirming checks
//! run) cannot make the others switch. Successes reset the shared failure count, as in one instance.
//! A single instance has no one to veto it: the plain thresholds apply.

use crate::tracker::{CheckResult, Counts, HealthTracker, Thresholds};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One instance's latest result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The instance (random per engine start).
    pub instance: u64,
    /// Whether its latest check succeeded.
    pub ok: bool,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The most votes an entry keeps (the newest win).
pub const MAX_VOTES: usize = 32;

/// A shared entry: the counts every instance reads, and the recent votes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedEntry {
    /// Status and consecutive counts.
    pub counts: Counts,
    /// Each instance's latest result within the window.
    pub votes: Vec<Vote>,
}

/// Applies `instance`'s `result` at `now` to `entry`; votes older than `window_ms` are forgotten.
pub fn apply(
    entry: &SharedEntry,
    instance: u64,
    result: &CheckResult,
    now: DateTime<Utc>,
    thresholds: Thresholds,
    window_ms: i64,
) -> SharedEntry {
    let now_ms = now.timestamp_millis();
    let mut votes: Vec<Vote> = entry
        .votes
        .iter()
        .copied()
        .filter(|v| v.instance != instance && v.at_ms >= now_ms - window_ms)
        .collect();
    votes.push(Vote {
        instance,
        ok: result.is_success(),
        at_ms: now_ms,
    });
    if votes.len() > MAX_VOTES {
        votes.sort_by_key(|v| std::cmp::Reverse(v.at_ms));
        votes.truncate(MAX_VOTES);
    }
    let mut tracker = HealthTracker::from_counts(thresholds, entry.counts);
    let before = tracker.status();
    tracker.record(result, now);
    let mut counts = tracker.counts();
    let vetoed = votes.iter().any(|v| v.instance != instance && v.ok);
    if counts.status == crate::ConnectionStatus::Down && before != counts.status && vetoed {
        // Another instance still reaches it: keep counting, do not leave it.
        counts.status = before;
    }
    SharedEntry { counts, votes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionStatus;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + ms)
            .single()
            .unwrap_or_default()
    }

    fn fail() -> CheckResult {
        CheckResult::failure("refused")
    }

    fn ok() -> CheckResult {
        CheckResult::success(std::time::Duration::ZERO)
    }

    const T: Thresholds = Thresholds {
        failure_threshold: 3,
        recovery_threshold: 2,
    };

    #[test]
    fn a_single_instance_follows_the_plain_thresholds() {
        let mut entry = SharedEntry::default();
        for i in 0..3 {
            entry = apply(&entry, 1, &fail(), at(i * 20), T, 200);
        }
        assert_eq!(entry.counts.status, ConnectionStatus::Down);
    }

    #[test]
    fn another_instance_that_still_reaches_it_vetoes_down() {
        let mut entry = apply(&SharedEntry::default(), 2, &ok(), at(0), T, 200);
        for i in 1..=5 {
            entry = apply(&entry, 1, &fail(), at(i * 10), T, 200);
        }
        assert_ne!(entry.counts.status, ConnectionStatus::Down);
        assert_eq!(
            entry.counts.failure_count, 5,
            "the failures are still counted"
        );
        // The other instance fails too: nothing vetoes any more.
        entry = apply(&entry, 2, &fail(), at(80), T, 200);
        assert_eq!(entry.counts.status, ConnectionStatus::Down);
    }

    #[test]
    fn a_vanished_instances_vote_expires() {
        let mut entry = apply(&SharedEntry::default(), 2, &ok(), at(0), T, 200);
        for i in 1..=3 {
            entry = apply(&entry, 1, &fail(), at(300 + i * 10), T, 200);
        }
        assert_eq!(entry.counts.status, ConnectionStatus::Down);
        assert_eq!(
            entry.votes.len(),
            1,
            "only the live instance's vote is kept"
        );
    }
}
