//! The SQLite probe and the routed handle against real SQLite files that really disappear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::engine::Probe;
use dbfailover::pool::{SqlxProbe, is_connection_error};
use dbfailover::sqlx::{self, Sqlite};
use dbfailover::{ActiveRole, Config, RoutedError, RoutedPool, Schedule};
use dbfailover_tests::events::Events;
use dbfailover_tests::sqlite::SqliteDb;
use std::time::Duration;

fn config(primary: &SqliteDb, failover: &SqliteDb) -> Config {
    let mut config = Config::with_databases(
        (primary.name(), primary.url()),
        (failover.name(), failover.url()),
    );
    config.failover.blocking = "blocking".into();
    config.health_check.interval = Schedule::Every(Duration::from_millis(50));
    config.health_check.timeout = Duration::from_millis(500);
    config.health_check.fast_interval = Some(Duration::from_millis(10));
    config
}

async fn wait_for_role(routed: &RoutedPool<Sqlite>, role: ActiveRole) {
    for _ in 0..400 {
        if routed.snapshot().role == role {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never reached {role}; now {:?}", routed.snapshot());
}

async fn served_by(routed: &RoutedPool<Sqlite>) -> Result<String, RoutedError> {
    routed
        .with_connection(async |conn| {
            sqlx::query_scalar("SELECT name FROM whoami")
                .fetch_one(conn)
                .await
        })
        .await
}

#[actix_rt::test]
async fn the_probe_succeeds_on_a_file_and_fails_without_creating_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::create(dir.path(), "main").await.unwrap();
    let probe = SqlxProbe::new("main", &db.url(), "SELECT 1").unwrap();
    let report = probe.check(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.writable, Some(true));

    db.take_away();
    let error = probe.check(Duration::from_secs(1)).await.unwrap_err();
    assert!(
        error.reason().contains("unable to open database file"),
        "{error:?}"
    );
    // What failed is the message; the driver's error is the source, typed, and not repeated.
    assert_eq!(error.to_string(), "connect");
    let source = std::error::Error::source(&error).expect("the driver's error is kept");
    assert!(source.downcast_ref::<sqlx::Error>().is_some(), "{source:?}");
    assert!(
        !db.path().exists(),
        "a probe must never create a missing database"
    );

    db.bring_back();
    let bad_query = SqlxProbe::new("main", &db.url(), "SELECT * FROM no_such_table").unwrap();
    let error = bad_query.check(Duration::from_secs(1)).await.unwrap_err();
    assert!(error.reason().starts_with("health query: "), "{error:?}");
    assert_eq!(error.to_string(), "health query");
}

#[test]
fn a_url_without_a_compiled_driver_is_a_clear_error_with_the_password_masked() {
    let url = dbfailover::DatabaseUrl::parse("oracle://scott:tiger@db/orcl").unwrap();
    let error = SqlxProbe::new("legacy", &url, "SELECT 1")
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("connection `legacy`: no driver for `oracle` URLs"),
        "{error}"
    );
    assert!(!error.contains("tiger"));
}

#[actix_rt::test]
async fn the_routed_handle_follows_the_engine_through_failover_and_limited_mode() {
    let dir = tempfile::tempdir().unwrap();
    let primary = SqliteDb::create(dir.path(), "main").await.unwrap();
    let failover = SqliteDb::create(dir.path(), "standby").await.unwrap();
    let config = config(&primary, &failover);
    let engine = dbfailover::builder(config.clone())
        .unwrap()
        .build()
        .unwrap()
        .start();
    let (listener, events) = Events::start();
    engine.subscribe(listener).await.unwrap();
    let routed = RoutedPool::<Sqlite>::connect_lazy(engine.clone(), &config, None).unwrap();

    assert_eq!(served_by(&routed).await.unwrap(), "main");

    primary.take_away();
    wait_for_role(&routed, ActiveRole::Failover).await;
    assert_eq!(
        served_by(&routed).await.unwrap(),
        "standby",
        "the failover's own data answered"
    );

    failover.take_away();
    wait_for_role(&routed, ActiveRole::Blocking).await;
    let error = served_by(&routed).await.unwrap_err();
    assert!(error.is_limited_mode());
    assert_eq!(
        error.to_string(),
        "All configured database connections (primary and failover) are currently unavailable. \
         Application is in limited functionality mode."
    );
    assert!(
        matches!(error, RoutedError::AllConnectionsUnavailable { ref blocking_connection } if blocking_connection == "blocking")
    );
    assert!(
        !primary.path().exists() && !failover.path().exists(),
        "limited mode touched no file"
    );

    failover.bring_back();
    wait_for_role(&routed, ActiveRole::Failover).await;
    assert_eq!(served_by(&routed).await.unwrap(), "standby");
    primary.bring_back();
    wait_for_role(&routed, ActiveRole::Primary).await;
    assert_eq!(served_by(&routed).await.unwrap(), "main");
    assert_eq!(
        events
            .names()
            .into_iter()
            .filter(|n| n.starts_with("Switched") || n.contains("Limited"))
            .collect::<Vec<_>>(),
        [
            "SwitchedToFailoverConnection",
            "LimitedFunctionalityModeActivated",
            "SwitchedToFailoverConnection",
            "ExitedLimitedFunctionalityMode",
            "SwitchedToPrimaryConnection",
        ]
    );
}

#[actix_rt::test]
async fn a_query_that_fails_to_connect_is_reported_and_confirmed_fast() {
    let dir = tempfile::tempdir().unwrap();
    let primary = SqliteDb::create(dir.path(), "main").await.unwrap();
    let failover = SqliteDb::create(dir.path(), "standby").await.unwrap();
    let mut config = config(&primary, &failover);
    // Periodic checks only every 10 s: only passive detection can find the failure in time.
    config.health_check.interval = Schedule::Every(Duration::from_secs(10));
    let engine = dbfailover::builder(config.clone())
        .unwrap()
        .build()
        .unwrap()
        .start();
    // A pool that opens a new connection per query, so the workload sees the file go.
    let options = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .max_lifetime(Duration::ZERO);
    let routed =
        RoutedPool::<Sqlite>::connect_lazy(engine.clone(), &config, Some(options)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    primary.take_away();
    let error = served_by(&routed).await.unwrap_err();
    match &error {
        RoutedError::Database {
            connection,
            connection_error,
            source,
        } => {
            assert_eq!(connection, "main");
            assert!(*connection_error && is_connection_error(source), "{source}");
        }
        other => panic!("expected a database error, got {other}"),
    }
    wait_for_role(&routed, ActiveRole::Failover).await;
    assert_eq!(served_by(&routed).await.unwrap(), "standby");
}

#[actix_rt::test]
async fn the_facade_builder_uses_the_configured_state_store() {
    let dir = tempfile::tempdir().unwrap();
    let primary = SqliteDb::create(dir.path(), "main").await.unwrap();
    let failover = SqliteDb::create(dir.path(), "standby").await.unwrap();
    let mut config = config(&primary, &failover);
    let state_file = dir.path().join("state.json");
    config.state.store = dbfailover::core::StoreKind::File;
    config.state.path = Some(state_file.clone());
    // Two engines built from the configuration alone share the file: one decision.
    let engines: Vec<_> = (0..2)
        .map(|_| {
            dbfailover::builder(config.clone())
                .unwrap()
                .build()
                .unwrap()
                .start()
        })
        .collect();
    let (listener, events) = Events::start();
    engines[1].subscribe(listener).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&state_file).unwrap_or_default();
    assert!(text.contains("conn_state_main"), "{text}");
    primary.take_away();
    for engine in &engines {
        let started = std::time::Instant::now();
        while engine.active().role != ActiveRole::Failover {
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    primary.bring_back();
    let downs: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| e.kind.name() == "PrimaryConnectionDown")
        .collect();
    assert_eq!(downs.len(), 1, "{downs:?}");
}
