//! `dbfailover watch` against real servers: events as JSON lines and human lines, Prometheus metrics,
//! and a clean stop (exit 0) on SIGTERM and SIGINT, even while a frozen database is being checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Watch, config_text, free_addr, get_metrics, write_config};
use dbfailover_tests::server::DbServer;
use std::time::Duration;

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn is_event(line: &str, name: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == name)
}

/// The value of the series written exactly `series` (name and labels) in a scrape.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

fn status_series(connection: &str, status: &str) -> String {
    format!("dbfailover_connection_status{{connection=\"{connection}\",status=\"{status}\"}}")
}

#[tokio::test]
async fn watch_prints_json_events_serves_metrics_and_stops_on_sigterm() {
    let mut main = DbServer::postgres("main").await;
    let standby = DbServer::postgres("standby").await;
    let (dir, _) = write_config(&config_text(&main.url(), &standby.url(), &[]));
    let addr = free_addr();
    let mut watch = Watch::start(dir.path(), &["--json", "--metrics-addr", &addr]);

    let healthy = watch.wait_for(Duration::from_secs(10), |l| {
        is_event(l, "ConnectionHealthy")
    });
    let event = json(&healthy);
    assert!(
        healthy.starts_with(r#"{"event":"ConnectionHealthy","at":""#),
        "{healthy}"
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(event["at"].as_str().unwrap()).is_ok()
            && event["at"].as_str().unwrap().ends_with('Z'),
        "{event}"
    );
    // Both connections are HEALTHY (the first event may be either's).
    for name in ["main", "standby"] {
        watch.wait_for(Duration::from_secs(5), |l| {
            is_event(l, "ConnectionHealthy") && json(l)["connection_name"] == name
        });
    }

    // The first scrape: every series an alert or a rate() needs, before anything failed or switched.
    let metrics = get_metrics(&addr);
    for (series, wanted) in [
        (
            format!(
                "dbfailover_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
        (status_series("main", "healthy"), 1.0),
        (status_series("main", "unknown"), 0.0),
        (status_series("main", "down"), 0.0),
        (status_series("standby", "healthy"), 1.0),
        (
            "dbfailover_checks_total{connection=\"main\",result=\"failure\"}".into(),
            0.0,
        ),
        (
            "dbfailover_check_failures_total{connection=\"standby\"}".into(),
            0.0,
        ),
        ("dbfailover_switches_total{to=\"failover\"}".into(), 0.0),
        ("dbfailover_switches_total{to=\"primary\"}".into(), 0.0),
        ("dbfailover_switches_total{to=\"blocking\"}".into(), 0.0),
        ("dbfailover_split_brain_total".into(), 0.0),
        ("dbfailover_store_available".into(), 1.0),
        (
            "dbfailover_active_connection{connection=\"main\",role=\"primary\"}".into(),
            1.0,
        ),
    ] {
        assert_eq!(
            value(&metrics, &series),
            Some(wanted),
            "{series}:\n{metrics}"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value(
        &metrics,
        "dbfailover_last_success_timestamp_seconds{connection=\"main\"}",
    )
    .unwrap_or_else(|| panic!("no last success:\n{metrics}"));
    assert!((now - last).abs() < 30.0, "{last} vs {now}");
    assert!(
        metrics.contains("# TYPE dbfailover_checks_total counter"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("probe"),
        "one name for checks:\n{metrics}"
    );

    main.kill9();
    let down = json(&watch.wait_for(Duration::from_secs(10), |l| {
        is_event(l, "PrimaryConnectionDown")
    }));
    assert_eq!(down["connection_name"], "main");
    let switched = json(&watch.wait_for(Duration::from_secs(5), |l| {
        is_event(l, "SwitchedToFailoverConnection")
    }));
    assert_eq!(switched["previous_connection_name"], "main");
    assert_eq!(switched["new_connection_name"], "standby");
    assert!(
        watch
            .seen
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );

    let metrics = get_metrics(&addr);
    assert!(
        metrics.contains("dbfailover_check_duration_seconds_bucket{connection=\"standby\""),
        "{metrics}"
    );
    for (series, wanted) in [
        (status_series("main", "down"), 1.0),
        (status_series("main", "healthy"), 0.0),
        (status_series("main", "unknown"), 0.0),
        (status_series("standby", "healthy"), 1.0),
        (
            "dbfailover_active_connection{connection=\"standby\",role=\"failover\"}".into(),
            1.0,
        ),
        (
            "dbfailover_active_connection{connection=\"main\",role=\"primary\"}".into(),
            0.0,
        ),
        ("dbfailover_switches_total{to=\"failover\"}".into(), 1.0),
        ("dbfailover_switches_total{to=\"primary\"}".into(), 0.0),
        ("dbfailover_store_available".into(), 1.0),
    ] {
        assert_eq!(
            value(&metrics, &series),
            Some(wanted),
            "{series}:\n{metrics}"
        );
    }
    let failures = value(
        &metrics,
        "dbfailover_checks_total{connection=\"main\",result=\"failure\"}",
    )
    .unwrap();
    assert!(failures >= 1.0, "{metrics}");
    assert_eq!(
        value(
            &metrics,
            "dbfailover_check_failures_total{connection=\"main\"}"
        ),
        Some(failures),
        "{metrics}"
    );
    assert!(!metrics.contains(common::PASSWORD));

    let (code, took) = watch.stop("TERM", Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", watch.stderr());
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn watch_stops_on_sigterm_while_a_frozen_database_is_being_checked() {
    let main = DbServer::postgres("main").await;
    let standby = DbServer::postgres("standby").await;
    let (dir, _) = write_config(&config_text(&main.url(), &standby.url(), &[]));
    let mut watch = common::Watch::start_with_env(
        dir.path(),
        &[],
        &[("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "30s")],
    );
    watch.wait_for(Duration::from_secs(10), |l| {
        l.contains("EVENT ConnectionHealthy") && l.contains("\"main\"")
    });
    main.freeze();
    // Checks run every 100 ms: one is now waiting on the frozen server, for up to 30 s.
    std::thread::sleep(Duration::from_millis(500));
    let (code, took) = watch.stop("TERM", Duration::from_secs(5));
    main.thaw();
    assert_eq!(code, Some(0), "{}", watch.stderr());
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        watch.seen.iter().any(|l| l == "stopped (SIGTERM)"),
        "{:?}",
        watch.seen
    );
    drop(standby);
}

#[tokio::test]
async fn watch_prints_human_lines_and_stops_on_sigint() {
    let main = DbServer::postgres("main").await;
    let standby = DbServer::postgres("standby").await;
    let (dir, _) = write_config(&config_text(&main.url(), &standby.url(), &[]));
    let mut watch = Watch::start(dir.path(), &[]);
    let first = watch.wait_for(Duration::from_secs(5), |l| l.starts_with("watching "));
    assert!(first.contains("primary main, failover standby"), "{first}");
    let line = watch.wait_for(Duration::from_secs(10), |l| {
        l.contains("EVENT ConnectionHealthy")
    });
    assert!(
        line.contains("connection_name=\"main\"") || line.contains("connection_name=\"standby\""),
        "{line}"
    );
    // A hangup (a closed terminal, an operator expecting a reload) is said, and the watch goes on.
    let hangup = std::process::Command::new("kill")
        .args(["-HUP", &watch.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        watch.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the watch"
    );
    let (code, _) = watch.stop("INT", Duration::from_secs(5));
    let stderr = watch.stderr();
    assert!(stderr.contains("SIGHUP ignored"), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        watch.seen.iter().any(|l| l == "stopped (SIGINT)"),
        "{:?}",
        watch.seen
    );
}

#[tokio::test]
async fn watch_serves_metrics_on_the_port_it_picked_and_says_which() {
    use std::io::BufRead;
    let main = DbServer::postgres("main").await;
    let standby = DbServer::postgres("standby").await;
    let (dir, _) = write_config(&config_text(&main.url(), &standby.url(), &[]));
    let mut watch = Watch::start(dir.path(), &["--json", "--metrics-addr", "127.0.0.1:0"]);
    let stderr = watch.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let said = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let addr = said
        .strip_prefix("dbfailover: serving metrics at http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{said}"))
        .to_owned();
    assert!(!addr.ends_with(":0"), "{said}");
    watch.wait_for(Duration::from_secs(10), |l| {
        is_event(l, "ConnectionHealthy")
    });
    let metrics = get_metrics(&addr);
    assert_eq!(
        value(&metrics, "dbfailover_store_available"),
        Some(1.0),
        "{metrics}"
    );
    let (code, _) = watch.stop("TERM", Duration::from_secs(5));
    assert_eq!(code, Some(0));
}
