//! Thresholds and the seed's full cycle, in virtual time with scripted probes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, config, drain, names, sleep_ms};
use dbfailover_core::{ActiveRole, ConnectionStatus};
use dbfailover_engine::FailoverSystem;

#[actix_rt::test]
async fn primary_down_after_threshold_then_failover_then_restored_after_recovery_threshold() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let failover = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), failover.clone());
    let events = common::listen(&handle).await;

    sleep_ms(250).await;
    let active = handle.active_connection().await.unwrap();
    assert_eq!(
        (active.role, active.name.as_str(), active.epoch),
        (ActiveRole::Primary, "main", 0)
    );
    assert_eq!(
        drain(&events),
        ["ConnectionHealthy", "ConnectionHealthy"],
        "the first checks"
    );

    primary.set(Mode::Refuse);
    let refused_at = primary.calls();
    let started = tokio::time::Instant::now();
    // The first failure comes at the next periodic check; it is confirmed at the fast interval.
    while handle.active().role == ActiveRole::Primary {
        sleep_ms(1).await;
        assert!(started.elapsed().as_millis() < 1000, "never switched");
    }
    assert_eq!(
        primary.calls() - refused_at,
        3,
        "exactly failure_threshold failed checks"
    );
    assert!(
        started.elapsed().as_millis() <= 100 + 2 * 20 + 5,
        "{:?}",
        started.elapsed()
    );
    let active = handle.active_connection().await.unwrap();
    assert_eq!(
        (active.role, active.name.as_str(), active.epoch),
        (ActiveRole::Failover, "standby", 1)
    );
    assert_eq!(
        names(&events),
        [
            "PrimaryConnectionDown",
            "SwitchedToFailoverConnection",
            "DatabaseConnectionSwitched"
        ]
    );

    primary.set(Mode::Up);
    sleep_ms(110).await; // one success: not yet back
    assert_eq!(handle.active().role, ActiveRole::Failover);
    sleep_ms(200).await;
    assert_eq!(handle.active().role, ActiveRole::Primary);
    assert_eq!(handle.active().epoch, 2);
    assert_eq!(
        names(&events)[3..],
        [
            "PrimaryConnectionRestored",
            "ConnectionHealthy",
            "SwitchedToPrimaryConnection",
            "DatabaseConnectionSwitched"
        ]
    );
}

#[actix_rt::test]
async fn the_seeds_full_cycle_through_limited_mode() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let failover = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), failover.clone());
    let events = common::listen(&handle).await;
    sleep_ms(50).await;
    assert_eq!(drain(&events), ["ConnectionHealthy", "ConnectionHealthy"]);

    primary.set(Mode::Refuse);
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Failover);

    failover.set(Mode::Refuse);
    sleep_ms(500).await;
    let active = handle.active_connection().await.unwrap();
    assert_eq!(
        (active.role, active.name.as_str()),
        (ActiveRole::Blocking, "blocking")
    );

    primary.set(Mode::Up);
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Primary);

    failover.set(Mode::Up);
    sleep_ms(500).await;
    assert_eq!(
        names(&events),
        [
            "PrimaryConnectionDown",
            "SwitchedToFailoverConnection",
            "DatabaseConnectionSwitched",
            "FailoverConnectionDown",
            "LimitedFunctionalityModeActivated",
            "DatabaseConnectionSwitched",
            "PrimaryConnectionRestored",
            "ConnectionHealthy",
            "SwitchedToPrimaryConnection",
            "ExitedLimitedFunctionalityMode",
            "DatabaseConnectionSwitched",
            "FailoverConnectionRestored",
            "ConnectionHealthy",
        ]
    );
    let states = handle.connection_states().await.unwrap();
    assert!(
        states
            .iter()
            .all(|s| s.state.status == ConnectionStatus::Healthy)
    );
    assert_eq!(handle.active().epoch, 3);
}

#[actix_rt::test]
async fn healthy_fires_once_per_transition_not_per_check() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let failover = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), failover.clone());
    let events = common::listen(&handle).await;
    sleep_ms(1000).await;
    assert!(primary.calls() >= 9, "checks ran: {}", primary.calls());
    // The first checks made both HEALTHY; the checks since then fired nothing.
    assert_eq!(names(&events), ["ConnectionHealthy", "ConnectionHealthy"]);
}

#[actix_rt::test]
async fn a_read_only_primary_is_reachable_not_down_and_writes_go_elsewhere_until_it_is_writable() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), Scripted::new(Mode::Up));
    let events = common::listen(&handle).await;
    sleep_ms(50).await;
    drain(&events);
    primary.set(Mode::ReadOnly);
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Failover);
    let states = handle.connection_states().await.unwrap();
    assert_eq!(
        states[0].state.status,
        dbfailover_core::ConnectionStatus::Healthy
    );
    assert_eq!(states[0].state.writable, Some(false));
    let seen = drain(&events);
    assert!(!seen.contains(&"PrimaryConnectionDown"), "{seen:?}");
    assert!(seen.contains(&"SwitchedToFailoverConnection"), "{seen:?}");
    primary.set(Mode::Up);
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Primary, "writable again");
}

#[actix_rt::test]
async fn other_connections_report_connection_down_and_never_route() {
    tokio::time::pause();
    let mut config = config();
    config.databases.insert(
        "reporting".into(),
        dbfailover_core::DatabaseSettings::new(
            dbfailover_core::DatabaseUrl::parse("sqlite:///r.db").unwrap(),
        ),
    );
    let reporting = Scripted::new(Mode::Up);
    let handle = FailoverSystem::builder(config)
        .probe("main", Scripted::new(Mode::Up))
        .probe("standby", Scripted::new(Mode::Up))
        .probe("reporting", reporting.clone())
        .build()
        .unwrap()
        .start();
    let events = common::listen(&handle).await;
    sleep_ms(50).await;
    assert_eq!(
        drain(&events).len(),
        3,
        "each connection became healthy once"
    );
    reporting.set(Mode::Refuse);
    sleep_ms(500).await;
    assert_eq!(names(&events), ["ConnectionDown"]);
    assert_eq!(handle.active().role, ActiveRole::Primary);
    reporting.set(Mode::Up);
    sleep_ms(500).await;
    assert_eq!(names(&events), ["ConnectionDown", "ConnectionHealthy"]);
}
