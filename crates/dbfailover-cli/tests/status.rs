//! `dbfailover status`: the shared state as a table and as JSON; no check runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{code, run, texts, write_config};

const CONFIG: &str = r#"[failover]
primary = "main"
failover = "standby"

[databases.main]
url = "postgres://app:app-secret@127.0.0.1:9/app"
[databases.standby]
url = "postgres://app:app-secret@127.0.0.1:9/app"
[databases.reporting]
url = "mysql://app:app-secret@127.0.0.1:9/reports"
"#;

#[test]
fn status_shows_every_connection_and_the_active_one() {
    let (dir, _) = write_config(CONFIG);
    let (output, _) = run(dir.path(), &["status"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("CONNECTION") && lines[0].contains("LAST CHECK"),
        "{stdout}"
    );
    for (name, role) in [
        ("main", "primary"),
        ("standby", "failover"),
        ("reporting", "other"),
    ] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"));
        // No check ran: each connection is as the (empty) store has it.
        assert!(
            row.contains(role) && row.contains("UNKNOWN") && row.contains("never"),
            "{row}"
        );
    }
    assert!(
        stdout.contains("active connection: main (primary)"),
        "{stdout}"
    );

    let (output, _) = run(dir.path(), &["status", "--json"], &[]);
    let (stdout, _) = texts(&output);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(json["active"]["connection"], "main");
    assert_eq!(json["active"]["role"], "primary");
    let connections = json["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), 3);
    assert_eq!(connections[0]["connection"], "main");
    assert_eq!(connections[0]["status"], "UNKNOWN");
    assert_eq!(connections[0]["failure_count"], 0);
    assert!(connections[0]["last_check_at"].is_null());
}

#[actix_rt::test]
async fn health_check_then_status_share_a_state_file() {
    let (main, standby) = tokio::join!(
        dbfailover_tests::server::DbServer::postgres("main"),
        dbfailover_tests::server::DbServer::postgres("standby")
    );
    let folder = tempfile::tempdir().unwrap();
    let state = folder.path().join("state.json");
    let text = format!(
        "{}\n[state]\nstore = \"file\"\npath = \"{}\"\n",
        common::config_text(&main.url(), &standby.url(), &[]),
        state.display()
    );
    let (dir, _) = write_config(&text);
    drop(main); // the primary is gone before the first check
    // The first run checks the primary only, the second every connection.
    for (expected_failures, args) in [
        (1, &["health-check", "main"][..]),
        (2, &["health-check"][..]),
    ] {
        let (output, _) = run(dir.path(), args, &[]);
        let (stdout, stderr) = texts(&output);
        assert_eq!(code(&output), Some(0), "{stderr}");
        // One check per run, counted in the shared file: the seed's count goes up run by run.
        assert!(
            stdout.contains(&format!("Failures: {expected_failures}")),
            "{stdout}"
        );
    }
    let (output, _) = run(dir.path(), &["status"], &[]);
    let (stdout, _) = texts(&output);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("main"))
        .unwrap_or_default();
    // failure_threshold is 2 in the test configuration: DOWN after the second run.
    assert!(row.contains("DOWN") && !row.contains("never"), "{stdout}");
    assert!(
        stdout.contains("active connection: standby (failover)"),
        "{stdout}"
    );
}
