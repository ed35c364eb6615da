//! `dbfailover demo` end to end: the real binary, real SQLite files that disappear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_demo_shows_every_switch_and_limited_mode_event_and_ends_by_itself() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_dbfailover"))
        .args(["demo", "--phase", "800ms"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    // A behaviour bound, not a speed claim: the demo must end by itself well inside 20 s.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    for event in [
        "EVENT PrimaryConnectionDown",
        "EVENT SwitchedToFailoverConnection",
        "EVENT FailoverConnectionDown",
        "EVENT LimitedFunctionalityModeActivated",
        "EVENT PrimaryConnectionRestored",
        "EVENT SwitchedToPrimaryConnection",
        "EVENT ExitedLimitedFunctionalityMode",
        "EVENT FailoverConnectionRestored",
        "EVENT DatabaseConnectionSwitched",
    ] {
        assert!(stdout.contains(event), "missing {event}\n{stdout}");
    }
    // Each real transition fires once: the primary goes down once and comes back once.
    assert_eq!(
        stdout.matches("EVENT PrimaryConnectionDown").count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("EVENT LimitedFunctionalityModeActivated")
            .count(),
        1,
        "{stdout}"
    );
    // The workload saw all three states, counted by what the database itself answered.
    let last = stdout
        .lines()
        .find(|l| l.contains("final:"))
        .unwrap_or_default();
    let numbers: Vec<u64> = last
        .split('|')
        .filter_map(|part| part.split_whitespace().last()?.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 4, "{last}");
    assert!(numbers[0] > 0 && numbers[1] > 0 && numbers[2] > 0, "{last}");
    // A query in flight when a database disappears may fail; only a handful may.
    assert!(
        numbers[3] <= 3,
        "at most a handful of queries failed: {last}"
    );
    assert!(stdout.contains("demo complete"));
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let output = Command::new(env!("CARGO_BIN_EXE_dbfailover"))
        .args(["demo", "--help"])
        .output()
        .expect("help runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(text.contains("Example:"), "{text}");
}
