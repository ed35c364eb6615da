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
    watch.wait_for(Duration::from_secs(5), |l| {
        is_event(l, "ConnectionHealthy") && json(l)["connection_name"] == "standby"
    });

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
    for wanted in [
        "dbfailover_probe_duration_seconds_bucket{connection=\"standby\"",
        "dbfailover_checks_total{connection=\"main\",result=\"failure\"}",
        "dbfailover_check_failures_total{connection=\"main\"}",
        "dbfailover_connection_status{connection=\"main\"} 2",
        "dbfailover_connection_status{connection=\"standby\"} 1",
        "dbfailover_active_connection{connection=\"standby\",role=\"failover\"} 1",
        "dbfailover_switches_total{to=\"failover\"} 1",
    ] {
        assert!(metrics.contains(wanted), "missing {wanted}:\n{metrics}");
    }
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
