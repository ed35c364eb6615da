//! The configuration file through the real binary: bad files (one per kind of mistake) give exit 2 and
//! one line naming the setting and its value; `check-config` shows the effective configuration with
//! passwords masked and the variables that set it; `init` writes a valid starter file once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{code, run, texts, write_config};

const GOOD: &str = r#"[failover]
primary = "main"
failover = "standby"
blocking = "blocking"

[databases.main]
url = "postgres://app:app-secret@127.0.0.1:5432/app"
[databases.standby]
url = "postgres://app:app-secret@127.0.0.2:5432/app"

[health_check]
failure_threshold = 3
timeout = "2s"
interval = "1s"
"#;

#[test]
fn each_kind_of_mistake_exits_2_with_one_line_naming_the_setting_and_its_value() {
    // (what is wrong, replace this, with that, words the message must hold)
    let cases: [(&str, &str, &str, &[&str]); 14] = [
        (
            "unknown key",
            "interval = \"1s\"",
            "intervall = \"1s\"",
            &["`health_check.intervall`", "`1s`", "unknown setting"],
        ),
        (
            "unknown section",
            "[health_check]",
            "[healthcheck]",
            &["`healthcheck`", "unknown section"],
        ),
        (
            "wrong type",
            "failure_threshold = 3",
            "failure_threshold = \"three\"",
            &["`health_check.failure_threshold`", "`three`"],
        ),
        (
            "unparsable duration",
            "timeout = \"2s\"",
            "timeout = \"2 parsecs\"",
            &["`health_check.timeout`", "`2 parsecs`", "not a duration"],
        ),
        (
            "unparsable URL",
            "url = \"postgres://app:app-secret@127.0.0.1:5432/app\"",
            "url = \"postgres://app:app-secret@[127.0.0.1/app\"",
            &[
                "`databases.main.url`",
                "postgres://app:****@[127.0.0.1/app",
                "not a URL",
            ],
        ),
        (
            "threshold 0",
            "failure_threshold = 3",
            "failure_threshold = 0",
            &["`health_check.failure_threshold`", "`0`", "at least 1"],
        ),
        (
            "undefined role",
            "failover = \"standby\"",
            "failover = \"replica\"",
            &["`failover.failover`", "`replica`", "names no connection"],
        ),
        (
            "unknown interval word",
            "interval = \"1s\"",
            "interval = \"hourly\"",
            &["`health_check.interval`", "`hourly`"],
        ),
        (
            "misspelled scheme",
            "url = \"postgres://app:app-secret@127.0.0.1:5432/app\"",
            "url = \"postgress://app:app-secret@127.0.0.1:5432/app\"",
            &[
                "`databases.main.url`",
                "postgress://app:****@127.0.0.1:5432/app",
                "no database this library knows",
            ],
        ),
        (
            "a database no driver speaks",
            "url = \"postgres://app:app-secret@127.0.0.1:5432/app\"",
            "url = \"mssql://app:app-secret@127.0.0.1:1433/app\"",
            &["`databases.main.url`", "`mssql://`"],
        ),
        (
            "empty state path",
            "interval = \"1s\"",
            "interval = \"1s\"\n[state]\nstore = \"file\"\npath = \"\"",
            &["`state.path`", "needs a path"],
        ),
        (
            "state path is a directory",
            "interval = \"1s\"",
            "interval = \"1s\"\n[state]\nstore = \"file\"\npath = \".\"",
            &["`state.path`", "`.`", "is a directory"],
        ),
        (
            "fast interval longer than the interval",
            "interval = \"1s\"",
            "interval = \"1s\"\nfast_interval = \"2s\"",
            &[
                "`health_check.fast_interval`",
                "`2s`",
                "at most health_check.interval",
            ],
        ),
        (
            "not TOML",
            "[databases.main]\nurl = \"postgres",
            "[databases.main]\nurl = postgres",
            &["invalid TOML at line 7"],
        ),
    ];
    for (what, from, to, wanted) in cases {
        assert!(GOOD.contains(from), "{what}: {from}");
        let (dir, _) = write_config(&GOOD.replacen(from, to, 1));
        for args in [
            &["check-config"][..],
            &["health-check"],
            &["status"],
            &["watch"],
        ] {
            let (output, _) = run(dir.path(), args, &[]);
            let (stdout, stderr) = texts(&output);
            assert_eq!(code(&output), Some(2), "{what} {args:?}: {stdout}{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
            assert!(stderr.starts_with("dbfailover: "), "{what}: {stderr}");
            for word in wanted {
                assert!(stderr.contains(word), "{what}: missing {word} in {stderr}");
            }
        }
    }
}

#[test]
fn a_bad_variable_is_a_bad_configuration_too() {
    let (dir, _) = write_config(GOOD);
    let (output, _) = run(
        dir.path(),
        &["check-config"],
        &[("DBFAILOVER_HEALTH_CHECK__RECOVERY_THRESHOLD", "0")],
    );
    let (_, stderr) = texts(&output);
    assert_eq!(code(&output), Some(2), "{stderr}");
    assert!(
        stderr.contains("`health_check.recovery_threshold` = `0`"),
        "{stderr}"
    );

    let (output, _) = run(
        dir.path(),
        &["check-config"],
        &[(
            "DBFAILOVER_DATABASES__MAIN__URL",
            "postgres://app:app-secret@[x/app",
        )],
    );
    let (_, stderr) = texts(&output);
    assert_eq!(code(&output), Some(2), "{stderr}");
    assert!(
        stderr.contains("DBFAILOVER_DATABASES__MAIN__URL"),
        "{stderr}"
    );

    let (output, _) = run(
        dir.path(),
        &["--config", "missing.toml", "check-config"],
        &[],
    );
    let (_, stderr) = texts(&output);
    assert_eq!(code(&output), Some(2), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn check_config_prints_the_effective_configuration_with_passwords_masked() {
    let (dir, _) = write_config(GOOD);
    let (output, _) = run(
        dir.path(),
        &["check-config"],
        &[
            ("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "5s"),
            (
                "DBFAILOVER_DATABASES__STANDBY__URL",
                "postgres://app:app-secret@10.9.9.9:5432/app",
            ),
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(stdout.contains("timeout = \"5s\""), "{stdout}");
    assert!(
        stdout.contains("url = \"postgres://app:****@10.9.9.9:5432/app\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("# health_check.timeout set by DBFAILOVER_HEALTH_CHECK__TIMEOUT"),
        "{stdout}"
    );

    let (output, _) = run(dir.path(), &["check-config", "--json"], &[]);
    let (stdout, _) = texts(&output);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(
        json["databases"]["main"]["url"],
        "postgres://app:****@127.0.0.1:5432/app"
    );
    assert_eq!(json["health_check"]["failure_threshold"], 3);
}

#[test]
fn the_environment_alone_can_configure_when_there_is_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = run(
        dir.path(),
        &["check-config"],
        &[
            ("DBFAILOVER_FAILOVER__PRIMARY", "a"),
            ("DBFAILOVER_FAILOVER__FAILOVER", "b"),
            (
                "DBFAILOVER_DATABASES__A__URL",
                "mysql://app:app-secret@10.0.0.1/app",
            ),
            (
                "DBFAILOVER_DATABASES__B__URL",
                "mysql://app:app-secret@10.0.0.2/app",
            ),
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stderr}");
    assert!(stdout.contains("[databases.a]"), "{stdout}");

    let (output, _) = run(dir.path(), &["check-config"], &[]);
    let (_, stderr) = texts(&output);
    assert_eq!(code(&output), Some(2), "{stderr}");
    assert!(stderr.contains("no dbfailover.toml"), "{stderr}");
}

#[test]
fn init_writes_a_valid_starter_and_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = run(dir.path(), &["init"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(code(&output), Some(0), "{stderr}");
    assert!(stdout.contains("wrote dbfailover.toml"), "{stdout}");
    let written = std::fs::read_to_string(dir.path().join("dbfailover.toml")).unwrap();
    assert!(written.contains("[health_check]") && written.contains("# "));

    let (output, _) = run(dir.path(), &["check-config"], &[]);
    assert_eq!(code(&output), Some(0), "{:?}", texts(&output));

    std::fs::write(dir.path().join("dbfailover.toml"), "# mine\n").unwrap();
    let (output, _) = run(dir.path(), &["init"], &[]);
    let (_, stderr) = texts(&output);
    assert_eq!(code(&output), Some(1), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dbfailover.toml")).unwrap(),
        "# mine\n"
    );

    let (output, _) = run(dir.path(), &["init", "--force"], &[]);
    assert_eq!(code(&output), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("dbfailover.toml")).unwrap(),
        written
    );

    let (output, _) = run(dir.path(), &["init", "other.toml"], &[]);
    assert_eq!(code(&output), Some(0));
    assert!(dir.path().join("other.toml").exists());
}

#[test]
fn every_subcommand_explains_itself_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        "health-check",
        "status",
        "watch",
        "init",
        "check-config",
        "demo",
    ] {
        let (output, _) = run(dir.path(), &[sub, "--help"], &[]);
        let (stdout, _) = texts(&output);
        assert_eq!(code(&output), Some(0), "{sub}");
        assert!(stdout.contains("Example:"), "{sub}:\n{stdout}");
        assert!(
            stdout.contains(&format!("dbfailover {sub}")),
            "{sub}:\n{stdout}"
        );
    }
}
