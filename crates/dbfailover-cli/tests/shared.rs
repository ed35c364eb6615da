//! Several `dbfailover watch` processes sharing one store: three on Redis, two on a state file. All
//! switch together when the primary is killed; one of them made the transition, the others learned it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Watch, config_text, write_config};
use dbfailover_tests::cache::{CacheKind, CacheServer};
use dbfailover_tests::server::DbServer;
use std::time::Duration;

fn at_ms(line: &str) -> i64 {
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    chrono::DateTime::parse_from_rfc3339(json["at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

fn origin(line: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    json["origin"].as_str().unwrap_or_default().to_owned()
}

async fn processes_switch_together(state: &str, processes: usize, max_spread_ms: i64) {
    let (mut main, standby) =
        tokio::join!(DbServer::postgres("main"), DbServer::postgres("standby"));
    let text = format!(
        "{}\n{state}\n",
        config_text(&main.url(), &standby.url(), &[])
    );
    let (dir, _path) = write_config(&text);
    let mut watches: Vec<Watch> = (0..processes)
        .map(|_| Watch::start(dir.path(), &["--json"]))
        .collect();
    // Events before a process subscribed its printer are not printed (a later process may learn the
    // healthy state at start); give every process the time to start and check.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    main.kill9();
    let lines: Vec<String> = watches
        .iter_mut()
        .map(|w| {
            w.wait_for(Duration::from_secs(10), |l| {
                l.contains("\"SwitchedToFailoverConnection\"")
            })
        })
        .collect();
    let times: Vec<i64> = lines.iter().map(|l| at_ms(l)).collect();
    let spread = times.iter().max().unwrap() - times.iter().min().unwrap();
    println!("{processes} processes switched within {spread} ms of each other");
    assert!(spread <= max_spread_ms, "{spread} ms: {lines:?}");
    let local = lines.iter().filter(|l| origin(l) == "local").count();
    assert_eq!(
        local, 1,
        "one process made the switch, the others learned it: {lines:?}"
    );
    for w in &mut watches {
        let (code, _) = w.stop("TERM", Duration::from_secs(10));
        assert_eq!(code, Some(0));
    }
}

#[actix_rt::test]
async fn three_processes_on_one_redis_switch_within_100_ms_of_each_other() {
    let redis = CacheServer::start(CacheKind::Redis);
    let state = format!("[state]\nstore = \"redis\"\nurl = \"{}\"\n", redis.url());
    processes_switch_together(&state, 3, 100).await;
}

#[actix_rt::test]
async fn two_processes_on_one_state_file_switch_together() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("state.json");
    let state = format!("[state]\nstore = \"file\"\npath = \"{}\"\n", path.display());
    // The file store is polled at the check interval (100 ms).
    processes_switch_together(&state, 2, 250).await;
}

/// libfaketime, which shifts a process's wall clock (its monotonic clock is left alone).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[actix_rt::test]
async fn a_dead_instance_whose_clock_ran_an_hour_fast_does_not_hold_the_fleet_on_a_dead_primary() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "libfaketime is installed by scripts/test"
    );
    let redis = CacheServer::start(CacheKind::Redis);
    let state = format!("[state]\nstore = \"redis\"\nurl = \"{}\"\n", redis.url());
    let (mut main, standby) =
        tokio::join!(DbServer::postgres("main"), DbServer::postgres("standby"));
    let text = format!(
        "{}\n{state}\n",
        config_text(&main.url(), &standby.url(), &[])
    );
    let (dir, _path) = write_config(&text);
    let skewed = [
        ("LD_PRELOAD", FAKETIME),
        ("FAKETIME", "+1h"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let behind = [
        ("LD_PRELOAD", FAKETIME),
        ("FAKETIME", "-3h"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut fast = Watch::start_with_env(dir.path(), &["--json"], &skewed);
    let mut late = Watch::start_with_env(dir.path(), &["--json"], &behind);
    let mut plain = Watch::start(dir.path(), &["--json"]);
    // The injection itself: a process started the same way reads a clock an hour ahead.
    let date = std::process::Command::new("date")
        .arg("+%s")
        .envs(skewed.iter().copied())
        .output()
        .unwrap();
    let shown: i64 = String::from_utf8_lossy(&date.stdout)
        .trim()
        .parse()
        .unwrap();
    let ahead = shown - chrono::Utc::now().timestamp();
    assert!(
        (3500..3700).contains(&ahead),
        "the skewed clock runs an hour fast ({ahead} s)"
    );
    // Every process checks the healthy primary and votes for it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The process from the future dies with its "ok" vote in the store; then the primary dies.
    fast.stop("KILL", Duration::from_secs(5));
    main.kill9();
    for w in [&mut late, &mut plain] {
        w.wait_for(Duration::from_secs(10), |l| {
            l.contains("\"SwitchedToFailoverConnection\"")
        });
    }
    for w in [&mut late, &mut plain] {
        let (code, _) = w.stop("TERM", Duration::from_secs(10));
        assert_eq!(code, Some(0));
    }
}
