//! `dbfailover health-check` against real servers: the seed's lines, exit codes, JSON, events, and a
//! frozen database that still ends the command shortly after the timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{code, config_text, run, texts, write_config};
use dbfailover::DatabaseUrl;
use dbfailover_tests::server::DbServer;
use std::time::Duration;

/// A URL where nothing listens (port 9, discard, is closed on the test machines' loopback).
fn nowhere() -> DatabaseUrl {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    DatabaseUrl::parse(&format!("postgres://app:app-secret@127.0.0.1:{port}/app")).unwrap()
}

#[tokio::test]
async fn health_check_prints_the_seeds_lines_and_exits_0_even_with_a_database_down() {
    let main = DbServer::postgres("main").await;
    let (dir, _) = write_config(&config_text(&main.url(), &nowhere(), &[]));

    let (output, _) = run(dir.path(), &["health-check"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(
        lines,
        [
            "Starting database health checks...",
            "Performing health checks for configured primary and failover connections.",
            "Checking health of connection: main...",
            "Connection 'main' status: HEALTHY, Failures: 0",
            "Checking health of connection: standby...",
            "Connection 'standby' status: UNKNOWN, Failures: 1",
            "Database health checks completed.",
        ],
        "{stdout}"
    );

    // With a threshold of 1 (set through the environment) the one failure makes the standby DOWN,
    // and --dispatch-events shows what that causes.
    let (output, _) = run(
        dir.path(),
        &["health-check", "--dispatch-events"],
        &[("DBFAILOVER_HEALTH_CHECK__FAILURE_THRESHOLD", "1")],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("Connection 'standby' status: DOWN, Failures: 1"),
        "{stdout}"
    );
    assert!(stdout.contains("EVENT FailoverConnectionDown"), "{stdout}");
    assert!(stdout.contains("EVENT ConnectionHealthy"), "{stdout}");
}

#[tokio::test]
async fn health_check_json_gives_one_object_per_connection() {
    let main = DbServer::postgres("main").await;
    let standby = DbServer::postgres("standby").await;
    let reporting = DbServer::mariadb("reporting").await;
    let (dir, _) = write_config(&config_text(
        &main.url(),
        &standby.url(),
        &[("reporting", &reporting.url())],
    ));

    let (output, _) = run(dir.path(), &["health-check", "--json"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stderr}");
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objects.len(), 2, "{stdout}");
    assert_eq!(objects[0]["connection"], "main");
    assert_eq!(objects[0]["role"], "primary");
    assert_eq!(objects[1]["connection"], "standby");
    assert_eq!(objects[1]["role"], "failover");
    for object in &objects {
        assert_eq!(object["status"], "HEALTHY", "{object}");
        assert_eq!(object["failure_count"], 0);
        assert_eq!(object["writable"], true);
        assert!(object["latency_ms"].as_f64().unwrap() > 0.0, "{object}");
        assert!(
            object["last_check_at"].as_str().unwrap().ends_with('Z'),
            "{object}"
        );
    }

    // A named connection: only that one, whatever its role.
    let (output, _) = run(dir.path(), &["health-check", "reporting", "--json"], &[]);
    let (stdout, _) = texts(&output);
    assert_eq!(code(&output), Some(0));
    let object: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(object["connection"], "reporting");
    assert_eq!(object["role"], "other");
    assert_eq!(object["status"], "HEALTHY");
}

#[tokio::test]
async fn an_unknown_connection_name_exits_1() {
    let main = DbServer::postgres("main").await;
    let (dir, _) = write_config(&config_text(&main.url(), &nowhere(), &[]));
    let (output, _) = run(dir.path(), &["health-check", "replica"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim(),
        "dbfailover: connection `replica` is not configured (configured: main, standby)"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

#[tokio::test]
async fn a_frozen_database_still_ends_the_command_shortly_after_the_timeout() {
    let main = DbServer::postgres("main").await;
    let (dir, _) = write_config(&config_text(&main.url(), &nowhere(), &[]));
    main.freeze();
    let (output, took) = run(
        dir.path(),
        &["health-check", "main"],
        &[("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "1s")],
    );
    main.thaw();
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("Connection 'main' status: UNKNOWN, Failures: 1"),
        "{stdout}"
    );
    // At least the timeout (the check waited for it), and not much more: a behaviour bound.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "took {took:?}"
    );
}

#[tokio::test]
async fn fail_on_down_gives_monitoring_codes_for_what_the_checks_found() {
    let mut main = DbServer::postgres("main").await;
    let mut standby = DbServer::postgres("standby").await;
    let (dir, _) = write_config(&config_text(&main.url(), &standby.url(), &[]));
    let monitor = |args: &[&str]| {
        let mut all = vec!["health-check", "--fail-on-down"];
        all.extend_from_slice(args);
        let (output, _) = run(dir.path(), &all, &[]);
        let (stdout, stderr) = texts(&output);
        let last = stdout.lines().last().unwrap_or_default().to_owned();
        (code(&output), last, format!("{stdout}{stderr}"))
    };

    let (code_of, last, all) = monitor(&[]);
    assert_eq!(code_of, Some(0), "{all}");
    assert!(last.starts_with("OK: "), "{all}");

    standby.kill9();
    let (code_of, last, all) = monitor(&[]);
    assert_eq!(
        code_of,
        Some(1),
        "a failover down, writes still served: {all}"
    );
    assert!(last.starts_with("WARNING: standby degraded"), "{all}");
    let (code_of, _, all) = monitor(&["main"]);
    assert_eq!(code_of, Some(0), "only the primary asked for: {all}");
    // Without the monitoring mode the seed's rule holds: it ran, so 0.
    let (output, _) = run(dir.path(), &["health-check"], &[]);
    assert_eq!(code(&output), Some(0));

    main.kill9();
    let (code_of, last, all) = monitor(&[]);
    assert_eq!(code_of, Some(2), "no database for writes: {all}");
    assert!(last.starts_with("CRITICAL: "), "{all}");

    let (code_of, last, all) = monitor(&["nosuch"]);
    assert_eq!(
        code_of,
        Some(3),
        "an unknown name could not be checked: {all}"
    );
    assert!(last.starts_with("UNKNOWN: "), "{all}");
    std::fs::write(dir.path().join("dbfailover.toml"), "[failover\n").unwrap();
    let (code_of, _, all) = monitor(&[]);
    assert_eq!(
        code_of,
        Some(3),
        "a bad configuration could not be checked: {all}"
    );
}

#[test]
fn fail_on_down_says_unknown_for_a_bad_command_line_and_warns_of_a_silent_store() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["main.db", "standby.db"] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    let redis_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[failover]\nprimary = \"main\"\nfailover = \"standby\"\n\
         [databases.main]\nurl = \"sqlite://{0}/main.db\"\n\
         [databases.standby]\nurl = \"sqlite://{0}/standby.db\"\n\
         [health_check]\ntimeout = \"500ms\"\n\
         [state]\nstore = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\ntimeout = \"200ms\"\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("dbfailover.toml"), text).unwrap();

    // A typo on a monitor's command line is UNKNOWN (3), not CRITICAL (2).
    let (output, _) = run(
        dir.path(),
        &["health-check", "--fail-on-down", "--bogus"],
        &[],
    );
    assert_eq!(code(&output), Some(3), "{:?}", texts(&output));
    let (output, _) = run(dir.path(), &["health-check", "--bogus"], &[]);
    assert_eq!(
        code(&output),
        Some(2),
        "a usage error outside monitoring mode"
    );

    // Both databases answer, but the shared store does not: each instance decides alone.
    let (output, _) = run(dir.path(), &["health-check", "--fail-on-down"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(1), "{stdout}{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("WARNING: main, standby healthy; the state store (redis) does not answer"),
        "{stdout}"
    );
    // `status` has no shared state to show: it says so and exits 1 after the table.
    let (output, _) = run(dir.path(), &["status", "--json"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("\"store_available\":false"), "{stdout}");
    assert!(stderr.contains("does not answer"), "{stderr}");
}
