//! Property tests of the state machine: trackers and router driven by arbitrary sequences of results.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use dbfailover_core::event::status_events;
use dbfailover_core::{
    ActiveRole, CheckResult, ConnectionStatus, ConnectionView, EventKind, HealthTracker, Role,
    RoleNames, Router, Thresholds,
};
use proptest::prelude::*;
use std::time::Duration;

/// One step of a scripted run: a check result for the primary or the failover.
#[derive(Clone, Debug)]
struct Step {
    failover: bool,
    success: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    // Runs of equal results make transitions likely; single results make them noisy.
    prop::collection::vec(
        (any::<bool>(), any::<bool>(), 1usize..6)
            .prop_map(|(failover, success, len)| vec![Step { failover, success }; len]),
        0..40,
    )
    .prop_map(|runs| runs.into_iter().flatten().collect())
}

fn names() -> RoleNames {
    RoleNames {
        primary: "main".into(),
        failovers: vec!["standby".into()],
        blocking: "blocking".into(),
    }
}

fn at(step: usize) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + step as i64, 0)
        .single()
        .unwrap_or_default()
}

fn view(tracker: &HealthTracker) -> ConnectionView {
    ConnectionView {
        status: tracker.status(),
        checked: tracker.has_results(),
        writable: None,
        latency: None,
    }
}

/// What happened at one step, as the engine would publish it.
struct Observed {
    active_before: ActiveRole,
    active_after: ActiveRole,
    transition: Option<(ConnectionStatus, ConnectionStatus)>,
    first_result_of_connection: bool,
    events: Vec<EventKind>,
}

fn run(thresholds: Thresholds, script: &[Step]) -> (Vec<Observed>, Router) {
    let mut primary = HealthTracker::new(thresholds);
    let mut failover = HealthTracker::new(thresholds);
    let mut router = Router::new(names());
    let mut observed = Vec::new();
    for (i, step) in script.iter().enumerate() {
        let now = at(i);
        let result = if step.success {
            CheckResult::success(Duration::from_millis(1))
        } else {
            CheckResult::failure("refused")
        };
        let (tracker, role, name) = if step.failover {
            (&mut failover, Role::Failover, "standby")
        } else {
            (&mut primary, Role::Primary, "main")
        };
        let first_result_of_connection = !tracker.has_results();
        let transition = tracker.record(&result, now);
        let mut events: Vec<EventKind> = transition
            .as_ref()
            .map(|t| status_events(role, name, t))
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        let active_before = router.active_role();
        let outcome = router.update(&[view(&primary), view(&failover)], &[false, false], now);
        events.extend(outcome.events.into_iter().map(|e| e.kind));
        observed.push(Observed {
            active_before,
            active_after: router.active_role(),
            transition: transition.map(|t| (t.from, t.to)),
            first_result_of_connection,
            events,
        });
    }
    (observed, router)
}

fn thresholds() -> impl Strategy<Value = Thresholds> {
    (1u32..5, 1u32..5).prop_map(|(failure_threshold, recovery_threshold)| Thresholds {
        failure_threshold,
        recovery_threshold,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The active connection changes only on a transition (a DOWN or a completed recovery), or on the
    /// first answer of a failover that was checked because the primary went DOWN.
    #[test]
    fn active_changes_only_on_transitions(t in thresholds(), script in steps()) {
        let (observed, _) = run(t, &script);
        for (i, o) in observed.iter().enumerate() {
            if o.active_before != o.active_after {
                prop_assert!(
                    o.transition.is_some() || o.first_result_of_connection,
                    "step {i}: switched {:?} -> {:?} without a transition", o.active_before, o.active_after
                );
            }
        }
    }

    /// Events fire exactly on transitions: a switch event set per switch, status events per transition.
    #[test]
    fn events_fire_exactly_on_transitions(t in thresholds(), script in steps()) {
        let (observed, router) = run(t, &script);
        let mut switches = 0u64;
        for o in &observed {
            let switched = o.active_before != o.active_after;
            switches += u64::from(switched);
            let count = |name: &str| o.events.iter().filter(|e| e.name() == name).count();
            prop_assert_eq!(count("DatabaseConnectionSwitched"), usize::from(switched));
            prop_assert_eq!(
                count("LimitedFunctionalityModeActivated"),
                usize::from(switched && o.active_after == ActiveRole::Blocking)
            );
            prop_assert_eq!(
                count("ExitedLimitedFunctionalityMode"),
                usize::from(switched && o.active_before == ActiveRole::Blocking)
            );
            let became_down = matches!(o.transition, Some((_, ConnectionStatus::Down)));
            let became_healthy = matches!(o.transition, Some((_, ConnectionStatus::Healthy)));
            let restored = matches!(o.transition, Some((ConnectionStatus::Down, ConnectionStatus::Healthy)));
            let downs = count("PrimaryConnectionDown") + count("FailoverConnectionDown");
            let restores = count("PrimaryConnectionRestored") + count("FailoverConnectionRestored");
            prop_assert_eq!(downs, usize::from(became_down));
            prop_assert_eq!(count("ConnectionHealthy"), usize::from(became_healthy));
            prop_assert_eq!(restores, usize::from(restored));
        }
        prop_assert_eq!(router.epoch(), switches, "the epoch counts switches");
    }

    /// No sequence of results makes routing flap faster than the thresholds allow: leaving the primary
    /// takes a run of `failure_threshold` consecutive primary failures since routing last arrived on it;
    /// returning to it takes `recovery_threshold` consecutive primary successes.
    #[test]
    fn no_flapping_faster_than_thresholds(t in thresholds(), script in steps()) {
        let (observed, _) = run(t, &script);
        let mut since_arrival: Vec<bool> = Vec::new();
        let mut all_primary: Vec<bool> = Vec::new();
        for (i, (o, step)) in observed.iter().zip(&script).enumerate() {
            if !step.failover {
                since_arrival.push(step.success);
                all_primary.push(step.success);
            }
            if o.active_before == ActiveRole::Primary && o.active_after != ActiveRole::Primary {
                let n = t.failure_threshold as usize;
                let has_failure_run = since_arrival.windows(n).any(|w| w.iter().all(|s| !s));
                prop_assert!(has_failure_run, "step {i}: left the primary after {since_arrival:?}");
            }
            if o.active_before != ActiveRole::Primary && o.active_after == ActiveRole::Primary {
                let last: Vec<bool> = all_primary.iter().rev().take(t.recovery_threshold as usize).copied().collect();
                prop_assert!(
                    last.len() == t.recovery_threshold as usize && last.iter().all(|s| *s),
                    "step {i}: returned to the primary after {last:?}"
                );
                since_arrival.clear();
            }
        }
    }

    /// Events pair up: a connection's Down is followed by its Restored before another Down, and limited
    /// mode alternates with its exit.
    #[test]
    fn events_pair_up(t in thresholds(), script in steps()) {
        let (observed, _) = run(t, &script);
        let mut primary_down = false;
        let mut failover_down = false;
        let mut limited = false;
        for o in &observed {
            for e in &o.events {
                match e.name() {
                    "PrimaryConnectionDown" => { prop_assert!(!primary_down); primary_down = true; }
                    "PrimaryConnectionRestored" => { prop_assert!(primary_down); primary_down = false; }
                    "FailoverConnectionDown" => { prop_assert!(!failover_down); failover_down = true; }
                    "FailoverConnectionRestored" => { prop_assert!(failover_down); failover_down = false; }
                    "LimitedFunctionalityModeActivated" => { prop_assert!(!limited); limited = true; }
                    "ExitedLimitedFunctionalityMode" => { prop_assert!(limited); limited = false; }
                    _ => {}
                }
            }
        }
    }

    /// Routing never points at a DOWN database, and is blocking only while both are unusable.
    #[test]
    fn never_routes_to_a_down_database(t in thresholds(), script in steps()) {
        let mut primary = HealthTracker::new(t);
        let mut failover = HealthTracker::new(t);
        let mut router = Router::new(names());
        for (i, step) in script.iter().enumerate() {
            let result = if step.success { CheckResult::success(Duration::ZERO) } else { CheckResult::failure("x") };
            if step.failover { failover.record(&result, at(i)); } else { primary.record(&result, at(i)); }
            router.update(&[view(&primary), view(&failover)], &[false, false], at(i));
            match router.active_role() {
                ActiveRole::Primary => prop_assert!(
                    primary.status() != ConnectionStatus::Down
                        // waiting for the failover's first answer: the only time a DOWN primary is kept
                        || !failover.has_results()
                ),
                ActiveRole::Failover => prop_assert_ne!(failover.status(), ConnectionStatus::Down),
                ActiveRole::Blocking => {
                    prop_assert_eq!(primary.status(), ConnectionStatus::Down);
                    prop_assert_ne!(failover.status(), ConnectionStatus::Healthy);
                }
            }
        }
    }
}
