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
