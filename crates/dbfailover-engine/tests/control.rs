//! Subscriptions, forced switches and `enabled = false` (virtual time).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, collector, config, drain, sleep_ms};
use dbfailover_core::{ActiveRole, ConnectionStatus};
use dbfailover_engine::{BuildError, FailoverSystem};

#[actix_rt::test]
async fn unsubscribed_listeners_hear_nothing_more_and_others_still_do() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), Scripted::new(Mode::Up));
    let (first, first_events) = collector();
    let (second, second_events) = collector();
    let first_id = handle.subscribe(first).await.unwrap();
    let second_id = handle.subscribe(second).await.unwrap();
    assert_ne!(first_id, second_id);
    sleep_ms(50).await;
    assert!(handle.unsubscribe(first_id).await.unwrap());
    assert!(
        !handle.unsubscribe(first_id).await.unwrap(),
        "already unsubscribed"
    );
    drain(&first_events);
    drain(&second_events);
    primary.set(Mode::Refuse);
    sleep_ms(500).await;
    assert!(drain(&first_events).is_empty());
    assert_eq!(drain(&second_events).len(), 3);
}

#[actix_rt::test]
async fn forced_switches_move_routing_and_hold_until_the_target_is_down() {
    tokio::time::pause();
    let failover = Scripted::new(Mode::Up);
    let handle = common::start(config(), Scripted::new(Mode::Up), failover.clone());
    let events = common::listen(&handle).await;
    sleep_ms(50).await;
    drain(&events);

    let active = handle.force_failover().await.unwrap();
    assert_eq!((active.role, active.epoch), (ActiveRole::Failover, 1));
    sleep_ms(500).await;
    assert_eq!(
        handle.active().role,
        ActiveRole::Failover,
        "a healthy primary does not undo the forced switch"
    );
    assert_eq!(
        drain(&events),
        ["SwitchedToFailoverConnection", "DatabaseConnectionSwitched"]
    );

    failover.set(Mode::Refuse);
    sleep_ms(500).await;
    assert_eq!(
        handle.active().role,
        ActiveRole::Primary,
        "the forced target went DOWN"
    );
    failover.set(Mode::Up);
    sleep_ms(500).await;
    assert_eq!(
        handle.active().role,
        ActiveRole::Failover,
        "still preferred once recovered"
    );

    let active = handle.force_primary().await.unwrap();
    assert_eq!(active.role, ActiveRole::Primary);
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Primary);
}

#[actix_rt::test]
async fn forcing_the_primary_marks_it_healthy_until_probes_find_it_down_again() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Refuse);
    let handle = common::start(config(), primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(400).await;
    assert_eq!(handle.active().role, ActiveRole::Failover);
    handle.force_primary().await.unwrap();
    sleep_ms(1).await;
    let states = handle.connection_states().await.unwrap();
    assert_eq!(
        (states[0].state.status, states[0].state.failure_count),
        (ConnectionStatus::Healthy, 0)
    );
    assert_eq!(handle.active().role, ActiveRole::Primary);
    sleep_ms(400).await;
    assert_eq!(
        handle.active().role,
        ActiveRole::Failover,
        "probes found it DOWN again after the threshold"
    );
}

#[actix_rt::test]
async fn disabled_means_no_probes_and_always_the_primary() {
    tokio::time::pause();
    let mut config = config();
    config.failover.enabled = false;
    let primary = Scripted::new(Mode::Refuse);
    let failover = Scripted::new(Mode::Refuse);
    let handle = common::start(config, primary.clone(), failover.clone());
    sleep_ms(2000).await;
    assert_eq!(primary.calls() + failover.calls(), 0);
    let active = handle.active_connection().await.unwrap();
    assert_eq!(
        (active.role, active.name.as_str()),
        (ActiveRole::Primary, "main")
    );
    assert_eq!(
        handle.force_failover().await.unwrap().role,
        ActiveRole::Primary
    );
}

#[test]
fn bad_settings_are_rejected_at_build_time_naming_the_setting() {
    let mut bad = config();
    bad.health_check.failure_threshold = 0;
    let err = FailoverSystem::builder(bad)
        .probe("main", Scripted::new(Mode::Up))
        .probe("standby", Scripted::new(Mode::Up))
        .build()
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid setting `health_check.failure_threshold` = `0`: must be at least 1"
    );
    let err = FailoverSystem::builder(config())
        .probe("main", Scripted::new(Mode::Up))
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(err, BuildError::MissingProbe { ref connection } if connection == "standby"),
        "{err}"
    );
}

#[actix_rt::test]
async fn a_one_shot_check_answers_status_and_failure_count_after_a_fresh_check() {
    tokio::time::pause();
    let mut config = config();
    config.health_check.interval = dbfailover_core::Schedule::Disabled;
    let primary = Scripted::new(Mode::Refuse);
    let handle = common::start(config, primary.clone(), Scripted::new(Mode::Up));
    for expected in 1..=4u32 {
        let report = handle.check("main").await.unwrap();
        assert_eq!(report.state.failure_count, expected);
        let status = if expected >= 3 {
            ConnectionStatus::Down
        } else {
            ConnectionStatus::Unknown
        };
        assert_eq!(report.state.status, status);
    }
    assert_eq!(primary.calls(), 4, "one check per request");
    primary.set(Mode::Up);
    let report = handle.check("main").await.unwrap();
    assert_eq!(
        (report.state.status, report.state.failure_count),
        (ConnectionStatus::Down, 0)
    );
    assert!(handle.check("nope").await.is_err());
}

#[actix_rt::test]
async fn a_late_event_stream_hears_the_current_state_first_then_every_event() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(300).await;
    // No actor: a receiver any async code can read.
    let mut stream = handle.event_stream().await.unwrap();
    let first = stream.recv().await.unwrap();
    match first.kind {
        dbfailover_core::EventKind::CurrentState {
            active_connection_name,
            connections,
            store_available,
        } => {
            assert_eq!(active_connection_name, "main");
            assert_eq!(
                connections,
                [
                    ("main".to_owned(), ConnectionStatus::Healthy),
                    ("standby".to_owned(), ConnectionStatus::Healthy)
                ]
            );
            assert!(store_available);
        }
        other => panic!("{other:?}"),
    }
    primary.set(Mode::Refuse);
    let mut names = Vec::new();
    while !names.contains(&"SwitchedToFailoverConnection") {
        names.push(stream.recv().await.unwrap().kind.name());
    }
    assert_eq!(names[0], "PrimaryConnectionDown", "{names:?}");
}

/// Hears every event, the snapshot included.
struct Everything(std::sync::Arc<std::sync::Mutex<Vec<dbfailover_core::FailoverEvent>>>);

impl actix::Actor for Everything {
    type Context = actix::Context<Self>;
}

impl actix::Handler<dbfailover_core::FailoverEvent> for Everything {
    type Result = ();
    fn handle(&mut self, event: dbfailover_core::FailoverEvent, _: &mut Self::Context) {
        self.0.lock().unwrap().push(event);
    }
}

#[actix_rt::test]
async fn an_actor_that_subscribes_late_hears_what_is_true_now_first() {
    use actix::Actor;
    use dbfailover_core::EventKind;
    tokio::time::pause();
    let handle = common::start(
        config(),
        Scripted::new(Mode::Refuse),
        Scripted::new(Mode::Up),
    );
    // The switch away from the primary happens before anybody listens.
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Failover);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    handle
        .subscribe(Everything(seen.clone()).start().recipient())
        .await
        .unwrap();
    sleep_ms(10).await;
    let events = seen.lock().unwrap().clone();
    let Some(EventKind::CurrentState {
        active_connection_name,
        connections,
        store_available,
    }) = events.first().map(|e| e.kind.clone())
    else {
        panic!("the first event is the current state: {events:?}");
    };
    assert_eq!(active_connection_name, "standby");
    assert_eq!(
        connections,
        [
            ("main".to_owned(), ConnectionStatus::Down),
            ("standby".to_owned(), ConnectionStatus::Healthy)
        ]
    );
    assert!(store_available);
    assert_eq!(events.len(), 1, "nothing happened since: {events:?}");
}
