//! The routed pool's counters, scraped through a Prometheus recorder, against real SQLite files: there
//! at 0 from the start, then counting acquisitions, query errors and limited mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::sqlx::{self, Sqlite};
use dbfailover::{ActiveRole, Config, RoutedError, RoutedPool, Schedule};
use dbfailover_tests::sqlite::SqliteDb;
use metrics_exporter_prometheus::PrometheusBuilder;
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

/// The value of the series written exactly `series` (name and labels) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn acquires(connection: &str, result: &str) -> String {
    format!("dbfailover_pool_acquires_total{{connection=\"{connection}\",result=\"{result}\"}}")
}

fn errors(connection: &str, kind: &str) -> String {
    format!("dbfailover_pool_errors_total{{connection=\"{connection}\",kind=\"{kind}\"}}")
}

async fn query(routed: &RoutedPool<Sqlite>, sql: &'static str) -> Result<String, RoutedError> {
    routed
        .with_connection(async |conn| sqlx::query_scalar(sql).fetch_one(conn).await)
        .await
}

#[actix_rt::test]
async fn the_routed_pool_counts_acquisitions_and_errors_from_zero() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    // The pool registers its counters on this thread, with this recorder.
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let dir = tempfile::tempdir().unwrap();
    let primary = SqliteDb::create(dir.path(), "main").await.unwrap();
    let failover = SqliteDb::create(dir.path(), "standby").await.unwrap();
    let config = config(&primary, &failover);
    let engine = dbfailover::builder(config.clone())
        .unwrap()
        .build()
        .unwrap()
        .start();
    let routed = RoutedPool::<Sqlite>::connect_lazy(engine.clone(), &config, None).unwrap();

    let text = scrape.render();
    for series in [
        acquires("main", "success"),
        acquires("main", "failure"),
        acquires("standby", "success"),
        acquires("blocking", "limited"),
        errors("main", "connection"),
        errors("main", "query"),
        errors("standby", "switched"),
        errors("standby", "deadline"),
        errors("blocking", "limited"),
    ] {
        assert_eq!(value(&text, &series), Some(0.0), "{series}:\n{text}");
    }

    assert_eq!(
        query(&routed, "SELECT name FROM whoami").await.unwrap(),
        "main"
    );
    let error = query(&routed, "SELECT name FROM no_such_table")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RoutedError::Database {
                connection_error: false,
                ..
            }
        ),
        "{error}"
    );
    let text = scrape.render();
    assert_eq!(
        value(&text, &acquires("main", "success")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value(&text, &errors("main", "query")), Some(1.0), "{text}");
    assert_eq!(
        value(&text, &errors("main", "connection")),
        Some(0.0),
        "{text}"
    );

    primary.take_away();
    failover.take_away();
    for _ in 0..400 {
        if routed.snapshot().role == ActiveRole::Blocking {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(routed.snapshot().role, ActiveRole::Blocking);
    let error = query(&routed, "SELECT name FROM whoami").await.unwrap_err();
    assert!(error.is_limited_mode(), "{error}");
    let text = scrape.render();
    assert_eq!(
        value(&text, &acquires("blocking", "limited")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &errors("blocking", "limited")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &acquires("main", "success")),
        Some(2.0),
        "{text}"
    );
}
