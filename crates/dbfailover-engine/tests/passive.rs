//! Passive detection: a reported query failure is confirmed by fast checks (virtual time).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, config, drain, sleep_ms};
use dbfailover_core::{ActiveRole, Schedule};
use std::time::Duration;

#[actix_rt::test]
async fn a_reported_failure_makes_a_dead_primary_down_in_fast_checks_not_intervals() {
    tokio::time::pause();
    let mut config = config();
    config.health_check.interval = Schedule::Every(Duration::from_secs(1));
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config, primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(100).await; // first checks done; next periodic check at 1 s
    primary.set(Mode::Refuse);
    let reported = tokio::time::Instant::now();
    handle.report_query_failure("main").unwrap();
    // Three checks: at once, +20 ms, +20 ms.
    while handle.active().role == ActiveRole::Primary {
        sleep_ms(1).await;
        assert!(
            reported.elapsed() < Duration::from_millis(900),
            "not detected before the next interval"
        );
    }
    let detected = reported.elapsed();
    assert_eq!(handle.active().role, ActiveRole::Failover);
    assert!(detected <= Duration::from_millis(60), "took {detected:?}");
}

#[actix_rt::test]
async fn a_transient_failure_is_cleared_by_the_first_confirming_success() {
    tokio::time::pause();
    let mut config = config();
    config.health_check.interval = Schedule::Every(Duration::from_secs(1));
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config, primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(100).await;
    let before = primary.calls();
    handle.report_query_failure("main").unwrap();
    sleep_ms(500).await;
    assert_eq!(
        primary.calls(),
        before + 1,
        "one confirming check, then back to the interval"
    );
    assert_eq!(handle.active().role, ActiveRole::Primary);
}

#[actix_rt::test]
async fn a_burst_of_reports_does_not_become_a_burst_of_checks() {
    tokio::time::pause();
    let mut config = config();
    config.health_check.interval = Schedule::Every(Duration::from_secs(1));
    config.health_check.failure_threshold = 5;
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config, primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(100).await;
    primary.set(Mode::Refuse);
    let before = primary.calls();
    for _ in 0..10 {
        for _ in 0..20 {
            handle.report_query_failure("main").unwrap();
        }
        sleep_ms(5).await;
    }
    // 50 ms of 200 reports: a check at once, then the confirming checks (refusals are rechecked
    // within a few ms) until DOWN at the threshold; reports after that confirm nothing more.
    let checks = primary.calls() - before;
    assert!((2..=5).contains(&checks), "{checks} checks");
}

#[actix_rt::test]
async fn with_checks_disabled_a_down_primary_has_the_unchecked_failover_checked_at_once() {
    tokio::time::pause();
    let mut config = config();
    config.health_check.interval = Schedule::Disabled;
    let primary = Scripted::new(Mode::Refuse);
    let failover = Scripted::new(Mode::Up);
    let handle = common::start(config, primary.clone(), failover.clone());
    let events = common::listen(&handle).await;
    sleep_ms(500).await;
    assert_eq!(
        primary.calls() + failover.calls(),
        0,
        "disabled: no periodic checks"
    );
    handle.report_query_failure("main").unwrap();
    sleep_ms(200).await;
    assert_eq!(
        failover.calls(),
        1,
        "the failover was checked once, when the primary went DOWN"
    );
    assert_eq!(handle.active().role, ActiveRole::Failover);
    assert_eq!(
        drain(&events),
        [
            "PrimaryConnectionDown",
            "ConnectionHealthy",
            "SwitchedToFailoverConnection",
            "DatabaseConnectionSwitched"
        ]
    );
}

#[actix_rt::test]
async fn primary_down_and_the_unchecked_failover_failing_means_limited_mode_at_once() {
    tokio::time::pause();
    let mut config = config();
    config.health_check.interval = Schedule::Disabled;
    let handle = common::start(
        config,
        Scripted::new(Mode::Refuse),
        Scripted::new(Mode::Refuse),
    );
    let events = common::listen(&handle).await;
    handle.report_query_failure("main").unwrap();
    sleep_ms(45).await; // the primary's three fast checks
    sleep_ms(5).await; // the failover's first check
    assert_eq!(
        handle.active().role,
        ActiveRole::Blocking,
        "decided on the failover's first answer"
    );
    sleep_ms(200).await;
    let states = handle.connection_states().await.unwrap();
    assert_eq!(
        states[1].state.status,
        dbfailover_core::ConnectionStatus::Down,
        "confirmed by fast checks"
    );
    // One instance makes every transition itself: nothing it publishes is "learned".
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind.name() == "LimitedFunctionalityModeActivated")
    );
    assert!(
        events
            .iter()
            .all(|e| e.origin == dbfailover_core::EventOrigin::Local),
        "{events:?}"
    );
}
