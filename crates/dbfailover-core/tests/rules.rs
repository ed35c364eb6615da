//! The rules a user of the core meets, one by one: how statuses and roles are spelled, what a tracker
//! decides and remembers, where routing sends writes and reads, and which events each change fires.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use dbfailover_core::config::Failback;
use dbfailover_core::event::{status_events, switch_events, topology_event};
use dbfailover_core::route::{Preference, readable, sound};
use dbfailover_core::topology::{NodeFacts, TopologyEvent};
use dbfailover_core::{
    ActiveRole, CheckResult, ConnectionStatus, ConnectionView, Counts, EventKind, EventOrigin,
    FailoverEvent, HealthTracker, Replication, Role, RoleNames, Router, StatusTransition,
    Thresholds, route,
};
use std::time::Duration;

use ConnectionStatus::{Down, Healthy, Unknown};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap()
}

fn ok() -> CheckResult {
    CheckResult::success(Duration::from_millis(7))
}

fn fail() -> CheckResult {
    CheckResult::failure("connection refused")
}

fn three() -> RoleNames {
    RoleNames {
        primary: "main".into(),
        failovers: vec!["replica1".into(), "replica2".into()],
        blocking: "blocking".into(),
    }
}

fn kinds(events: &[FailoverEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

// ---------------------------------------------------------------------------------------------
// Statuses and roles, as operators and stores spell them.

#[test]
fn statuses_are_spelled_as_the_seed_and_read_back_in_any_case() {
    for (status, text) in [(Unknown, "UNKNOWN"), (Healthy, "HEALTHY"), (Down, "DOWN")] {
        assert_eq!(status.as_str(), text);
        assert_eq!(status.to_string(), text);
        assert_eq!(ConnectionStatus::parse(text), Some(status));
        assert_eq!(ConnectionStatus::parse(&text.to_lowercase()), Some(status));
    }
    for garbage in ["", "UP", "MAYBE", "HEALTHY "] {
        assert_eq!(ConnectionStatus::parse(garbage), None, "{garbage:?}");
    }
}

#[test]
fn roles_and_active_roles_have_their_names() {
    assert_eq!(Role::Primary.to_string(), "primary");
    assert_eq!(Role::Failover.to_string(), "failover");
    assert_eq!(Role::Other.to_string(), "other");
    assert_eq!(ActiveRole::Primary.to_string(), "primary");
    assert_eq!(ActiveRole::Failover.to_string(), "failover");
    assert_eq!(ActiveRole::Blocking.to_string(), "blocking");
}

#[test]
fn an_active_role_packs_into_a_number_and_back() {
    let roles = [
        ActiveRole::Primary,
        ActiveRole::Failover,
        ActiveRole::Blocking,
    ];
    for role in roles {
        assert_eq!(ActiveRole::from_index(role.to_index()), Some(role));
    }
    assert_eq!(
        roles.map(ActiveRole::to_index),
        [0, 1, 2],
        "the numbers a reader of the atomic word expects"
    );
    assert_eq!(ActiveRole::from_index(3), None);
    assert_eq!(ActiveRole::from_index(u8::MAX), None);
}

#[test]
fn names_number_the_primary_then_the_failovers_in_order() {
    let pair = RoleNames::pair("main", "standby", "blocking");
    assert_eq!(pair.primary, "main");
    assert_eq!(pair.failovers, ["standby"]);
    assert_eq!(pair.blocking, "blocking");
    assert_eq!(pair.failover(), "standby");
    assert_eq!(pair.node_count(), 2);

    let names = three();
    assert_eq!(names.failover(), "replica1");
    assert_eq!(names.node_count(), 3);
    assert_eq!(names.node_name(Some(0)), "main");
    assert_eq!(names.node_name(Some(1)), "replica1");
    assert_eq!(names.node_name(Some(2)), "replica2");
    assert_eq!(names.node_name(Some(3)), "blocking");
    assert_eq!(names.node_name(None), "blocking");
    assert_eq!(names.node_of("main"), Some(0));
    assert_eq!(names.node_of("replica1"), Some(1));
    assert_eq!(names.node_of("replica2"), Some(2));
    assert_eq!(names.node_of("audit"), None);
    assert_eq!(names.role_of("main"), Role::Primary);
    assert_eq!(names.role_of("replica2"), Role::Failover);
    assert_eq!(names.role_of("audit"), Role::Other);
    assert_eq!(RoleNames::active_role(Some(0)), ActiveRole::Primary);
    assert_eq!(RoleNames::active_role(Some(2)), ActiveRole::Failover);
    assert_eq!(RoleNames::active_role(None), ActiveRole::Blocking);

    let none = RoleNames {
        failovers: Vec::new(),
        ..pair
    };
    assert_eq!(none.failover(), "");
    assert_eq!(none.node_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// The tracker.

#[test]
fn a_check_result_says_what_the_probe_found() {
    let replication = Replication {
        replicating: true,
        cluster: Some("7000".into()),
        timeline: Some(3),
        lag: Some(Duration::from_millis(20)),
        gtid: Some("0-1-5".into()),
    };
    let result = CheckResult::Success {
        latency: Duration::from_millis(3),
        writable: Some(false),
        replication: Some(replication),
    };
    assert!(result.is_success());
    assert_eq!(
        result.facts(),
        Some(NodeFacts {
            writable: Some(false),
            replicating: Some(true),
            cluster: Some("7000".into()),
            timeline: Some(3),
            lag: Some(Duration::from_millis(20)),
            gtid: Some("0-1-5".into()),
        })
    );
    assert_eq!(
        ok(),
        CheckResult::Success {
            latency: Duration::from_millis(7),
            writable: None,
            replication: None
        }
    );
    assert_eq!(ok().facts(), Some(NodeFacts::default()));
    assert!(!fail().is_success());
    assert_eq!(fail().facts(), None);
    assert_eq!(
        fail(),
        CheckResult::Failure {
            reason: "connection refused".into()
        }
    );
}

#[test]
fn the_tracker_remembers_the_last_check_for_operators() {
    let mut tracker = HealthTracker::new(Thresholds::default());
    assert!(!tracker.has_results(), "never checked");
    assert_eq!(tracker.state().checks, 0);
    let replication = Replication {
        replicating: true,
        ..Replication::default()
    };
    tracker.record(
        &CheckResult::Success {
            latency: Duration::from_millis(4),
            writable: Some(false),
            replication: Some(replication.clone()),
        },
        t(1),
    );
    tracker.record(&fail(), t(2));
    let state = tracker.state();
    assert!(tracker.has_results());
    assert_eq!(state.checks, 2);
    assert_eq!(state.last_check_at, Some(t(2)));
    assert_eq!(state.last_latency, Some(Duration::from_millis(4)));
    assert_eq!(state.writable, Some(false));
    assert_eq!(state.replication, Some(replication));
    assert_eq!(state.last_error.as_deref(), Some("connection refused"));
    assert_eq!(state.failure_count, 1);
    assert_eq!(state.success_count, 0);
}

#[test]
fn an_unknown_that_only_failed_has_results_all_the_same() {
    let mut tracker = HealthTracker::new(Thresholds::default());
    tracker.record(&fail(), t(0));
    assert_eq!(tracker.status(), Unknown);
    assert!(
        tracker.has_results(),
        "checked and failing is not never checked"
    );
}

#[test]
fn a_tracker_resumed_from_a_store_goes_on_from_its_counts() {
    let thresholds = Thresholds {
        failure_threshold: 3,
        recovery_threshold: 3,
    };
    // HEALTHY with two failures stored: the next failure is the third.
    let mut tracker = HealthTracker::resume(thresholds, Healthy, 2);
    assert_eq!(tracker.thresholds(), thresholds);
    assert_eq!(tracker.status(), Healthy);
    assert!(tracker.has_results(), "a resumed status is a result");
    let down = tracker.record(&fail(), t(0)).unwrap();
    assert_eq!((down.from, down.to), (Healthy, Down));

    // A resumed UNKNOWN without checks is as good as new.
    assert!(!HealthTracker::resume(thresholds, Unknown, 0).has_results());

    // From shared counts: one success more makes the DOWN connection HEALTHY.
    let counts = Counts {
        status: Down,
        failure_count: 0,
        success_count: 2,
    };
    let mut tracker = HealthTracker::from_counts(thresholds, counts);
    assert_eq!(tracker.counts(), counts);
    assert_eq!(tracker.thresholds(), thresholds);
    let up = tracker.record(&ok(), t(1)).unwrap();
    assert_eq!((up.from, up.to), (Down, Healthy));
    assert_eq!(
        tracker.counts(),
        Counts {
            status: Healthy,
            failure_count: 0,
            success_count: 3
        }
    );
}

#[test]
fn adopting_the_shared_decision_keeps_what_the_tracker_saw_itself() {
    let mut tracker = HealthTracker::new(Thresholds::default());
    tracker.record(&ok(), t(5));
    let shared = Counts {
        status: Down,
        failure_count: 3,
        success_count: 0,
    };
    tracker.adopt(shared);
    assert_eq!(tracker.counts(), shared);
    assert_eq!(tracker.status(), Down);
    assert_eq!(tracker.state().last_check_at, Some(t(5)));
    assert_eq!(tracker.state().last_latency, Some(Duration::from_millis(7)));
}

#[test]
fn a_check_by_another_instance_moves_the_last_check_forward_never_back() {
    let mut tracker = HealthTracker::new(Thresholds::default());
    tracker.observe_check_at(t(10));
    assert_eq!(tracker.state().last_check_at, Some(t(10)));
    tracker.observe_check_at(t(20));
    assert_eq!(tracker.state().last_check_at, Some(t(20)));
    tracker.observe_check_at(t(15));
    assert_eq!(tracker.state().last_check_at, Some(t(20)));
}

#[test]
fn recovery_takes_exactly_the_recovery_threshold() {
    for recovery_threshold in 1..=4 {
        let mut tracker = HealthTracker::new(Thresholds {
            failure_threshold: 1,
            recovery_threshold,
        });
        tracker.record(&fail(), t(0));
        assert_eq!(tracker.status(), Down);
        for i in 1..recovery_threshold {
            assert_eq!(tracker.record(&ok(), t(i.into())), None);
            assert_eq!(tracker.status(), Down);
        }
        let up = tracker.record(&ok(), t(9)).unwrap();
        assert_eq!(
            up,
            StatusTransition {
                from: Down,
                to: Healthy,
                at: t(9),
                reason: None
            }
        );
    }
}

#[test]
fn down_takes_exactly_the_failure_threshold_and_says_why() {
    for failure_threshold in 1..=4 {
        let mut tracker = HealthTracker::new(Thresholds {
            failure_threshold,
            recovery_threshold: 1,
        });
        tracker.record(&ok(), t(0));
        for i in 1..failure_threshold {
            assert_eq!(tracker.record(&fail(), t(i.into())), None);
        }
        let down = tracker.record(&CheckResult::failure("timed out"), t(9));
        assert_eq!(
            down,
            Some(StatusTransition {
                from: Healthy,
                to: Down,
                at: t(9),
                reason: Some("timed out".into())
            })
        );
    }
}

#[test]
fn a_forced_status_is_a_transition_only_when_it_changes_something() {
    let mut tracker = HealthTracker::new(Thresholds::default());
    tracker.record(&fail(), t(0));
    let forced = tracker.force(Healthy, t(3));
    assert_eq!(
        forced,
        Some(StatusTransition {
            from: Unknown,
            to: Healthy,
            at: t(3),
            reason: None
        })
    );
    assert_eq!(tracker.counts().failure_count, 0);
    assert_eq!(tracker.force(Healthy, t(4)), None);
    tracker.record(&ok(), t(5));
    tracker.force(Healthy, t(6));
    assert_eq!(tracker.counts().success_count, 0, "the counts start over");
}

// ---------------------------------------------------------------------------------------------
// Routing.

fn view(status: ConnectionStatus) -> ConnectionView {
    ConnectionView::checked(status)
}

fn read_only(status: ConnectionStatus) -> ConnectionView {
    ConnectionView {
        writable: Some(false),
        ..view(status)
    }
}

#[test]
fn a_checked_view_is_checked() {
    let v = ConnectionView::checked(Down);
    assert_eq!(v.status, Down);
    assert!(v.checked);
    assert_eq!(v.writable, None);
    assert_eq!(v.latency, None);
    assert_eq!(Preference::Primary.node(), 0);
    assert_eq!(Preference::Failover.node(), 1);
}

#[test]
fn the_preferred_node_keeps_writes_unless_down_read_only_or_fenced() {
    let healthy = [view(Healthy), view(Healthy)];
    assert_eq!(route(&healthy, &[false; 2], 0).active, Some(Some(0)));
    // Fenced or read-only: writes go to the other node.
    assert_eq!(route(&healthy, &[true, false], 0).active, Some(Some(1)));
    assert_eq!(
        route(&[read_only(Healthy), view(Healthy)], &[false; 2], 0).active,
        Some(Some(1))
    );
    // Suspect but not DOWN: it keeps writes, nothing to check.
    let d = route(&[view(Unknown), view(Healthy)], &[false; 2], 0);
    assert_eq!((d.active, d.check_now), (Some(Some(0)), None));
    // A preferred node past the end: the first usable node in order.
    assert_eq!(route(&healthy, &[false; 2], 5).active, Some(Some(0)));
}

#[test]
fn another_node_takes_writes_only_when_healthy_writable_and_not_fenced() {
    // Only a fenced failover is healthy: limited functionality mode.
    assert_eq!(
        route(&[view(Down), view(Healthy)], &[false, true], 0).active,
        Some(None)
    );
    // A read-only failover is passed over for the next one.
    let views = [view(Down), read_only(Healthy), view(Healthy)];
    assert_eq!(route(&views, &[false; 3], 0).active, Some(Some(2)));
    // A fenced failover is passed over for the next one.
    let views = [view(Down), view(Healthy), view(Healthy)];
    assert_eq!(
        route(&views, &[false, true, false], 0).active,
        Some(Some(2))
    );
    // When the failover is preferred, a DOWN one gives way to the primary.
    assert_eq!(
        route(&[view(Healthy), view(Down)], &[false; 2], 1).active,
        Some(Some(0))
    );
    // A DOWN preferred node is not taken back by the search either.
    assert_eq!(
        route(&[view(Down), view(Down)], &[false; 2], 1).active,
        Some(None)
    );
}

#[test]
fn a_node_never_checked_is_checked_before_routing_moves_unless_a_failing_one_came_first() {
    // Primary DOWN, replica1 failing (UNKNOWN, checked), replica2 never checked, replica3 HEALTHY.
    let names_views = [
        view(Down),
        view(Unknown),
        ConnectionView::default(),
        view(Healthy),
    ];
    let d = route(&names_views, &[false; 4], 0);
    assert_eq!(d.active, Some(Some(3)));
    assert_eq!(d.check_now, Some(1), "the first suspect is checked fast");
    // Only the never-checked one: routing waits for its first check.
    let d = route(
        &[view(Down), ConnectionView::default(), view(Healthy)],
        &[false; 3],
        0,
    );
    assert_eq!((d.active, d.check_now), (None, Some(1)));
    // A failing one and nothing healthy: limited mode, and the failing one is checked fast.
    let d = route(&[view(Down), view(Unknown)], &[false; 2], 0);
    assert_eq!((d.active, d.check_now), (Some(None), Some(1)));
}

#[test]
fn work_already_running_finishes_on_a_sound_node() {
    assert!(sound(&view(Healthy), false));
    assert!(sound(&view(Unknown), false));
    assert!(sound(&ConnectionView::default(), false));
    assert!(!sound(&view(Down), false));
    assert!(!sound(&read_only(Healthy), false));
    assert!(!sound(&view(Healthy), true));
}

#[test]
fn reads_need_a_healthy_replica_within_the_lag_bound() {
    let max = Duration::from_millis(100);
    let replica = |lag: u64| NodeFacts {
        writable: Some(false),
        replicating: Some(true),
        lag: Some(Duration::from_millis(lag)),
        ..NodeFacts::default()
    };
    assert!(readable(&read_only(Healthy), Some(&replica(100)), max));
    assert!(!readable(&read_only(Healthy), Some(&replica(101)), max));
    assert!(!readable(&read_only(Unknown), Some(&replica(0)), max));
    // The probe says it takes writes: not a replica, whatever the facts say.
    let writable = ConnectionView {
        writable: Some(true),
        ..view(Healthy)
    };
    assert!(!readable(&writable, Some(&replica(0)), max));
    // Writability unknown to the view but a replica by its facts: readable.
    assert!(readable(&view(Healthy), Some(&replica(0)), max));
    let not_replicating = NodeFacts {
        replicating: Some(false),
        ..replica(0)
    };
    assert!(!readable(&read_only(Healthy), Some(&not_replicating), max));
}

#[test]
fn the_router_reports_where_writes_go() {
    let mut router = Router::new(three());
    assert_eq!(router.names(), &three());
    assert_eq!(router.active_role(), ActiveRole::Primary);
    assert_eq!(router.active_node(), Some(0));
    assert_eq!(router.preferred(), 0);
    assert_eq!(router.epoch(), 0);
    let out = router.update(&[view(Down), view(Down), view(Healthy)], &[false; 3], t(1));
    assert_eq!(
        kinds(&out.events),
        ["SwitchedToFailoverConnection", "DatabaseConnectionSwitched"]
    );
    assert_eq!(router.active_role(), ActiveRole::Failover);
    assert_eq!(router.active_node(), Some(2));
    let active = router.active();
    assert_eq!(
        (active.role, active.name.as_str(), active.epoch),
        (ActiveRole::Failover, "replica2", 1)
    );
    assert_eq!(
        router.preferred(),
        0,
        "automatic failback keeps the primary"
    );
    let out = router.update(&[view(Down), view(Down), view(Down)], &[false; 3], t(2));
    assert_eq!(
        kinds(&out.events),
        [
            "LimitedFunctionalityModeActivated",
            "DatabaseConnectionSwitched"
        ]
    );
    assert_eq!(router.active_role(), ActiveRole::Blocking);
    assert_eq!(router.active_node(), None);
    assert_eq!(router.active().name, "blocking");
    assert_eq!(router.epoch(), 2);
}

#[test]
fn the_router_waits_for_a_pending_check_and_asks_for_it() {
    let mut router = Router::new(RoleNames::pair("main", "standby", "blocking"));
    let out = router.update(&[view(Down), ConnectionView::default()], &[false; 2], t(1));
    assert!(out.events.is_empty());
    assert_eq!(out.check_now, Some(1));
    assert_eq!(router.active_node(), Some(0), "unchanged until the check");
    let out = router.update(&[view(Down), view(Unknown)], &[false; 2], t(2));
    assert_eq!(out.check_now, Some(1));
    assert_eq!(router.active_node(), None);
}

#[test]
fn manual_failback_prefers_where_routing_went_but_not_limited_mode() {
    let mut router =
        Router::new(RoleNames::pair("main", "standby", "blocking")).with_failback(Failback::Manual);
    router.update(&[view(Down), view(Healthy)], &[false; 2], t(1));
    assert_eq!(router.preferred(), 1);
    router.update(&[view(Down), view(Down)], &[false; 2], t(2));
    assert_eq!(router.active_node(), None);
    assert_eq!(router.preferred(), 1, "limited mode is no node to prefer");
    router.update(&[view(Healthy), view(Healthy)], &[false; 2], t(3));
    assert_eq!(router.active_node(), Some(1));
}

#[test]
fn a_forced_switch_moves_writes_at_once_and_says_so() {
    let mut router = Router::new(three());
    let out = router.force(1, t(1));
    assert_eq!(
        kinds(&out.events),
        ["SwitchedToFailoverConnection", "DatabaseConnectionSwitched"]
    );
    assert_eq!(out.check_now, None);
    assert_eq!(router.active_node(), Some(1));
    assert_eq!(router.preferred(), 1);
    assert_eq!(router.epoch(), 1);
    // The forced node stays preferred while it is usable, even with the primary healthy.
    let healthy = [view(Healthy), view(Healthy), view(Healthy)];
    assert!(router.update(&healthy, &[false; 3], t(2)).events.is_empty());
    assert_eq!(router.active_node(), Some(1));
    // Forcing where it already is: nothing switches.
    assert!(router.force(1, t(3)).events.is_empty());
    assert_eq!(router.epoch(), 1);
    // A node past the last one means the last one.
    router.force(9, t(4));
    assert_eq!(router.active_node(), Some(2));
    assert_eq!(router.preferred(), 2);
    assert_eq!(router.active().name, "replica2");
    let out = router.force(0, t(5));
    assert_eq!(
        kinds(&out.events),
        ["SwitchedToPrimaryConnection", "DatabaseConnectionSwitched"]
    );
    assert_eq!(router.active_role(), ActiveRole::Primary);
    assert_eq!(router.preferred(), 0);
}

// ---------------------------------------------------------------------------------------------
// Events.

#[test]
fn a_status_transition_fires_the_events_of_the_connection_s_role() {
    let transition = |from, to| StatusTransition {
        from,
        to,
        at: t(1),
        reason: (to == Down).then(|| "refused".to_owned()),
    };
    let down = transition(Healthy, Down);
    assert_eq!(
        status_events(Role::Primary, "main", &down)
            .into_iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        [EventKind::PrimaryConnectionDown {
            connection_name: "main".into(),
            reason: Some("refused".into())
        }]
    );
    assert_eq!(
        kinds(&status_events(Role::Failover, "standby", &down)),
        ["FailoverConnectionDown"]
    );
    assert_eq!(
        kinds(&status_events(Role::Other, "audit", &down)),
        ["ConnectionDown"]
    );
    let restored = transition(Down, Healthy);
    assert_eq!(
        kinds(&status_events(Role::Primary, "main", &restored)),
        ["PrimaryConnectionRestored", "ConnectionHealthy"]
    );
    let failover = status_events(Role::Failover, "standby", &restored);
    assert_eq!(
        failover.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [
            EventKind::FailoverConnectionRestored {
                connection_name: "standby".into()
            },
            EventKind::ConnectionHealthy {
                connection_name: "standby".into()
            }
        ]
    );
    assert!(failover.iter().all(|e| e.at == t(1)));
    assert!(failover.iter().all(|e| e.origin == EventOrigin::Local));
    assert_eq!(
        kinds(&status_events(Role::Other, "audit", &restored)),
        ["ConnectionHealthy"]
    );
    assert_eq!(
        kinds(&status_events(
            Role::Failover,
            "standby",
            &transition(Unknown, Healthy)
        )),
        ["ConnectionHealthy"]
    );
    assert!(status_events(Role::Primary, "main", &transition(Healthy, Unknown)).is_empty());
}

#[test]
fn a_learned_event_says_so() {
    let event = FailoverEvent::new(t(1), EventKind::CacheRestored {});
    assert_eq!(event.origin, EventOrigin::Local);
    let learned = event.clone().with_origin(EventOrigin::Learned);
    assert_eq!(learned.origin, EventOrigin::Learned);
    assert_eq!((learned.at, learned.kind), (event.at, event.kind));
}

#[test]
fn switch_events_name_both_ends_and_leave_limited_mode_once() {
    let names = three();
    assert!(switch_events(&names, Some(1), Some(1), t(1)).is_empty());
    assert!(switch_events(&names, None, None, t(1)).is_empty());
    let events = switch_events(&names, Some(0), Some(2), t(1));
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [
            EventKind::SwitchedToFailoverConnection {
                previous_connection_name: Some("main".into()),
                new_connection_name: "replica2".into()
            },
            EventKind::DatabaseConnectionSwitched {
                previous_connection_name: Some("main".into()),
                new_connection_name: "replica2".into()
            }
        ]
    );
    assert!(events.iter().all(|e| e.at == t(1)));
    let events = switch_events(&names, Some(1), None, t(1));
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [
            EventKind::LimitedFunctionalityModeActivated {
                connection_name: "blocking".into()
            },
            EventKind::DatabaseConnectionSwitched {
                previous_connection_name: Some("replica1".into()),
                new_connection_name: "blocking".into()
            }
        ]
    );
    let events = switch_events(&names, None, Some(1), t(1));
    assert_eq!(
        events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [
            EventKind::SwitchedToFailoverConnection {
                previous_connection_name: Some("blocking".into()),
                new_connection_name: "replica1".into()
            },
            EventKind::ExitedLimitedFunctionalityMode {
                restored_to_connection_name: "replica1".into()
            },
            EventKind::DatabaseConnectionSwitched {
                previous_connection_name: Some("blocking".into()),
                new_connection_name: "replica1".into()
            }
        ]
    );
}

#[test]
fn topology_changes_become_their_events() {
    let cases = [
        (
            TopologyEvent::Promoted {
                connection: "replica1".into(),
                replaced: Some("main".into()),
            },
            EventKind::ReplicaPromoted {
                connection_name: "replica1".into(),
                replaced_connection_name: Some("main".into()),
            },
        ),
        (
            TopologyEvent::Fenced {
                connection: "main".into(),
                reason: "left behind".into(),
            },
            EventKind::ConnectionFenced {
                connection_name: "main".into(),
                reason: "left behind".into(),
            },
        ),
        (
            TopologyEvent::Unfenced {
                connection: "main".into(),
            },
            EventKind::ConnectionUnfenced {
                connection_name: "main".into(),
            },
        ),
        (
            TopologyEvent::SplitBrain {
                connections: vec!["main".into(), "replica1".into()],
            },
            EventKind::SplitBrainDetected {
                connection_names: vec!["main".into(), "replica1".into()],
            },
        ),
    ];
    for (topology, kind) in cases {
        let event = topology_event(topology, t(4));
        assert_eq!(event, FailoverEvent::new(t(4), kind));
    }
}

#[test]
fn every_event_has_its_seed_name() {
    let s = String::new;
    let cases = [
        (
            EventKind::SwitchedToPrimaryConnection {
                previous_connection_name: None,
                new_connection_name: s(),
            },
            "SwitchedToPrimaryConnection",
        ),
        (
            EventKind::ExitedLimitedFunctionalityMode {
                restored_to_connection_name: s(),
            },
            "ExitedLimitedFunctionalityMode",
        ),
        (
            EventKind::CacheUnavailable { error: s() },
            "CacheUnavailable",
        ),
        (EventKind::CacheRestored {}, "CacheRestored"),
        (
            EventKind::ReadOnlyModeActivated {
                read_connection_names: Vec::new(),
            },
            "ReadOnlyModeActivated",
        ),
        (EventKind::ReadOnlyModeExited {}, "ReadOnlyModeExited"),
        (
            EventKind::CurrentState {
                active_connection_name: s(),
                connections: Vec::new(),
                store_available: true,
            },
            "CurrentState",
        ),
    ];
    for (kind, name) in cases {
        assert_eq!(kind.name(), name);
        let json = serde_json::to_value(FailoverEvent::new(t(0), kind)).unwrap();
        assert_eq!(json["event"], name, "the JSON tag is the name");
    }
}
