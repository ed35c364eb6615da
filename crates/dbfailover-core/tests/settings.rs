//! The settings as an operator writes them: the bounds of every validated value, the shapes a
//! setting accepts, and the environment variables that override the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_core::config::{DatabaseSettings, Failovers, MAX_FAILOVERS, Schedule, StoreKind};
use dbfailover_core::load::{self, EnvOverride, LoadError, env_overrides, ignored_variables};
use dbfailover_core::{Config, ConfigError, DatabaseUrl, Role, RoleNames, Thresholds};
use std::time::Duration;

fn url(text: &str) -> DatabaseUrl {
    DatabaseUrl::parse(text).unwrap()
}

fn valid() -> Config {
    Config::with_databases(
        ("main", url("postgres://u:p@h1/db")),
        ("standby", url("postgres://u:p@h2/db")),
    )
}

/// The key of the first broken rule, or `None` when the configuration is valid.
fn broken(change: impl FnOnce(&mut Config)) -> Option<String> {
    let mut config = valid();
    change(&mut config);
    config.validate().err().map(|e| e.key().to_owned())
}

fn key(result: Result<Config, LoadError>) -> Option<String> {
    result.err().and_then(|e| e.key().map(str::to_owned))
}

#[test]
fn a_configuration_for_two_databases() {
    let config = valid();
    assert_eq!(config.failover.primary, "main");
    assert_eq!(config.failover.failover.names(), ["standby"]);
    assert_eq!(config.databases.len(), 2);
    assert_eq!(
        config.role_names(),
        RoleNames::pair("main", "standby", "blocking_connection")
    );
    assert_eq!(config.validate(), Ok(()));
    let mut h = config.health_check.clone();
    h.failure_threshold = 5;
    h.recovery_threshold = 4;
    assert_eq!(
        h.thresholds(),
        Thresholds {
            failure_threshold: 5,
            recovery_threshold: 4
        }
    );
}

#[test]
fn the_monitored_connections_come_primary_first_with_their_write_requirement() {
    let mut config = valid();
    config
        .databases
        .insert("audit".into(), DatabaseSettings::new(url("mysql://h/a")));
    config.databases.insert("archive".into(), {
        let mut archive = DatabaseSettings::new(url("mysql://h/b"));
        archive.require_writable = Some(true);
        archive
    });
    let monitored: Vec<_> = config
        .monitored()
        .into_iter()
        .map(|m| (m.name, m.role, m.require_writable))
        .collect();
    assert_eq!(
        monitored,
        [
            ("main", Role::Primary, true),
            ("standby", Role::Failover, true),
            ("archive", Role::Other, true),
            ("audit", Role::Other, false),
        ]
    );
}

#[test]
fn checks_use_the_monitor_url_when_there_is_one() {
    let plain = DatabaseSettings::new(url("postgres://app:a@h/db"));
    assert_eq!(plain.check_url().expose(), "postgres://app:a@h/db");
    let mut monitored = plain;
    monitored.monitor_url = Some(url("postgres://mon:b@h/db"));
    assert_eq!(monitored.check_url().expose(), "postgres://mon:b@h/db");
}

#[test]
fn failovers_are_one_name_or_a_list() {
    let one = Failovers::from("standby");
    assert_eq!(one.names(), ["standby"]);
    assert_eq!(one.first(), "standby");
    assert!(one.contains("standby"));
    assert!(!one.contains("main"));
    assert_eq!(one.to_string(), "standby");
    assert_eq!(serde_json::to_value(&one).unwrap(), "standby");
    let many = Failovers::from(vec!["r1".to_owned(), "r2".to_owned()]);
    assert_eq!(many.first(), "r1");
    assert!(many.contains("r2"));
    assert_eq!(many.to_string(), "r1, r2");
    assert_eq!(
        serde_json::to_value(&many).unwrap(),
        serde_json::json!(["r1", "r2"])
    );
    let read: Failovers = serde_json::from_str("\"r1, r2\"").unwrap();
    assert_eq!(read, many);
    let read: Failovers = serde_json::from_str("[\"r1\", \"r2\"]").unwrap();
    assert_eq!(read, many);
    let err = serde_json::from_str::<Failovers>("3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a connection name or a list of names"),
        "{err}"
    );
    assert_eq!(Failovers::from(Vec::new()).first(), "");
}

#[test]
fn schedules_are_durations_or_the_seed_s_words() {
    assert_eq!(
        Schedule::Every(Duration::from_secs(2)).interval(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(Schedule::Disabled.interval(), None);
    assert_eq!(
        Schedule::Every(Duration::from_millis(250)).to_string(),
        "250ms"
    );
    assert_eq!(Schedule::Disabled.to_string(), "disabled");
    assert_eq!(
        serde_json::to_value(Schedule::Disabled).unwrap(),
        "disabled"
    );
    assert_eq!(
        serde_json::from_str::<Schedule>("5").unwrap(),
        Schedule::Every(Duration::from_secs(5))
    );
    assert_eq!(
        serde_json::from_str::<Schedule>("\" everyMinute \"").unwrap(),
        Schedule::Every(Duration::from_secs(60))
    );
    let config = load::parse(
        "[failover]\nprimary = \"m\"\nfailover = \"s\"\n[databases.m]\nurl = \"postgres://h/m\"\n\
         [databases.s]\nurl = \"postgres://h/s\"\n[health_check]\ninterval = 3\n",
    )
    .unwrap();
    assert_eq!(
        config.health_check.interval,
        Schedule::Every(Duration::from_secs(3))
    );
    let negative = serde_json::from_str::<Schedule>("-2")
        .unwrap_err()
        .to_string();
    assert!(negative.contains("`-2` is negative"), "{negative}");
    let wrong = serde_json::from_str::<Schedule>("true")
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("\"everySecond\", \"everyMinute\", \"disabled\""),
        "{wrong}"
    );
    let words = serde_json::from_str::<Schedule>("\"hourly\"")
        .unwrap_err()
        .to_string();
    assert!(words.contains("`hourly` is not a duration"), "{words}");
}

#[test]
fn confirming_checks_are_bounded_by_the_interval_and_the_timeout() {
    let mut config = valid();
    let h = &mut config.health_check;
    h.timeout = Duration::from_secs(2);
    h.interval = Schedule::Every(Duration::from_millis(500));
    assert_eq!(h.effective_confirm_timeout(), Duration::from_millis(500));
    h.interval = Schedule::Every(Duration::from_secs(5));
    assert_eq!(h.effective_confirm_timeout(), Duration::from_secs(2));
    h.interval = Schedule::Disabled;
    assert_eq!(h.effective_confirm_timeout(), Duration::from_secs(2));
    h.confirm_timeout = Some(Duration::from_millis(300));
    assert_eq!(h.effective_confirm_timeout(), Duration::from_millis(300));
}

#[test]
fn store_kinds_have_their_names() {
    assert_eq!(StoreKind::Memory.to_string(), "memory");
    assert_eq!(StoreKind::File.to_string(), "file");
    assert_eq!(StoreKind::Redis.to_string(), "redis");
    assert_eq!(StoreKind::Memcached.to_string(), "memcached");
}

#[test]
fn durations_are_accepted_up_to_their_bounds() {
    let ms = Duration::from_millis;
    let hour = Duration::from_secs(3600);
    assert_eq!(
        broken(|c| c.health_check.interval = Schedule::Every(ms(10))),
        None
    );
    assert_eq!(
        broken(|c| c.health_check.interval = Schedule::Every(ms(9))).as_deref(),
        Some("health_check.interval")
    );
    assert_eq!(
        broken(|c| c.health_check.interval = Schedule::Disabled),
        None
    );
    assert_eq!(
        broken(|c| c.health_check.confirm_timeout = Some(ms(10))),
        None
    );
    assert_eq!(
        broken(|c| c.health_check.confirm_timeout = Some(ms(9))).as_deref(),
        Some("health_check.confirm_timeout")
    );
    assert_eq!(
        broken(|c| c.health_check.fast_interval = Some(ms(10))),
        None
    );
    assert_eq!(
        broken(|c| c.health_check.fast_interval = Some(ms(9))).as_deref(),
        Some("health_check.fast_interval")
    );
    for (name, set) in [
        (
            "health_check.timeout",
            (|c, d| c.health_check.timeout = d) as fn(&mut Config, Duration),
        ),
        ("health_check.fast_interval", |c, d| {
            // At most the interval, which is then at its bound too.
            c.health_check.interval = Schedule::Every(Duration::from_secs(3600));
            c.health_check.fast_interval = Some(d)
        }),
        ("state.timeout", |c, d| c.state.timeout = d),
        ("failover.max_replication_lag", |c, d| {
            c.failover.max_replication_lag = d
        }),
        ("health_check.interval", |c, d| {
            c.health_check.interval = Schedule::Every(d)
        }),
        ("health_check.confirm_timeout", |c, d| {
            c.health_check.confirm_timeout = Some(d)
        }),
    ] {
        assert_eq!(broken(|c| set(c, hour)), None, "{name}");
        assert_eq!(
            broken(|c| set(c, hour + ms(1))).as_deref(),
            Some(name),
            "{name}"
        );
    }
    let month = Duration::from_secs(30 * 24 * 3600);
    assert_eq!(broken(|c| c.state.ttl = month), None);
    assert_eq!(
        broken(|c| c.state.ttl = month + ms(1000)).as_deref(),
        Some("state.ttl")
    );
    assert_eq!(broken(|c| c.state.ttl = ms(1000)), None);
    assert_eq!(
        broken(|c| c.state.ttl = ms(999)).as_deref(),
        Some("state.ttl")
    );
    assert_eq!(
        broken(|c| c.state.timeout = Duration::ZERO).as_deref(),
        Some("state.timeout")
    );
}

#[test]
fn names_must_be_distinct_and_defined() {
    let failovers = |n: usize| -> Vec<String> { (0..n).map(|i| format!("r{i}")).collect() };
    let with_failovers = |n: usize| {
        move |c: &mut Config| {
            for name in failovers(n) {
                c.databases
                    .insert(name.clone(), DatabaseSettings::new(url("postgres://h/db")));
            }
            c.failover.failover = Failovers::from(failovers(n));
        }
    };
    assert_eq!(broken(with_failovers(MAX_FAILOVERS)), None);
    assert_eq!(
        broken(with_failovers(MAX_FAILOVERS + 1)).as_deref(),
        Some("failover.failover")
    );
    assert_eq!(
        broken(|c| c.failover.failover = Failovers::from(Vec::new())).as_deref(),
        Some("failover.failover")
    );
    assert_eq!(
        broken(|c| c.failover.failover =
            Failovers::from(vec!["standby".to_owned(), "standby".to_owned()]))
        .as_deref(),
        Some("failover.failover")
    );
    assert_eq!(
        broken(|c| c.failover.blocking = "standby".into()).as_deref(),
        Some("failover.blocking")
    );
    assert_eq!(
        broken(|c| c.failover.blocking = " ".into()).as_deref(),
        Some("failover.blocking")
    );
    assert_eq!(
        broken(|c| {
            c.failover.blocking = "spare".into();
            c.databases.insert(
                "spare".into(),
                DatabaseSettings::new(url("postgres://h/db")),
            );
        })
        .as_deref(),
        Some("failover.blocking")
    );
    assert_eq!(
        broken(|c| {
            c.failover.failover = Failovers::from(vec!["standby".to_owned(), "gone".to_owned()]);
        })
        .as_deref(),
        Some("failover.failover")
    );
    assert_eq!(
        broken(|c| {
            c.databases
                .insert(" ".into(), DatabaseSettings::new(url("postgres://h/db")));
        })
        .as_deref(),
        Some("databases")
    );
    let err = {
        let mut c = valid();
        c.failover.primary = "nowhere".into();
        c.validate().unwrap_err().to_string()
    };
    assert!(err.contains("(defined: main, standby)"), "{err}");
    let err = {
        let mut c = valid();
        c.databases.clear();
        c.validate().unwrap_err().to_string()
    };
    assert!(err.contains("(defined: none)"), "{err}");
}

#[test]
fn each_store_takes_its_own_urls() {
    fn store(kind: StoreKind, u: Option<&'static str>) -> impl FnOnce(&mut Config) {
        move |c: &mut Config| {
            c.state.store = kind;
            c.state.url = u.map(url);
        }
    }
    for ok in ["redis://h:6379/0", "rediss://h/0", "unix:///tmp/r.sock"] {
        assert_eq!(broken(store(StoreKind::Redis, Some(ok))), None, "{ok}");
    }
    for ok in ["memcache://h:11211", "tcp://h:11211"] {
        assert_eq!(broken(store(StoreKind::Memcached, Some(ok))), None, "{ok}");
    }
    assert_eq!(
        broken(store(StoreKind::Redis, Some("memcache://h:11211"))).as_deref(),
        Some("state.url")
    );
    assert_eq!(
        broken(store(StoreKind::Memcached, Some("redis://h"))).as_deref(),
        Some("state.url")
    );
    let mut config = valid();
    store(StoreKind::Memcached, None)(&mut config);
    let err = config.validate().unwrap_err();
    assert_eq!(err.key(), "state.url");
    assert!(
        err.to_string().contains("the memcached store needs a URL"),
        "{err}"
    );
    assert_eq!(
        broken(|c| c.state.store = StoreKind::File).as_deref(),
        Some("state.path")
    );
    assert_eq!(
        broken(|c| {
            c.state.store = StoreKind::File;
            c.state.path = Some("/tmp/state".into());
        }),
        None
    );
    assert_eq!(
        broken(|c| c.state.prefix = " ".into()).as_deref(),
        Some("state.prefix")
    );
}

// ---------------------------------------------------------------------------------------------
// Loading, and the environment.

const FILE: &str = "[failover]\nprimary = \"main\"\nfailover = \"standby\"\n\
[databases.main]\nurl = \"postgres://h/main\"\n[databases.Standby-EU]\nurl = \"postgres://h/s\"\n";

fn file_with_standby() -> String {
    FILE.replace("Standby-EU", "standby")
}

#[test]
fn variables_are_settings_only_with_a_double_underscore() {
    let env = [
        ("DBFAILOVER_STATE__TTL", "60s"),
        ("DBFAILOVER_LOG", "debug"),
        ("DBFAILOVER_CONFIG", "/etc/x"),
        ("DBFAILOVER_STATE_TTL", "60s"),
        ("DBFAILOVER_FAILOVER__ENABLED", "no"),
        ("HOME", "/root"),
    ];
    let overrides = env_overrides(env);
    assert_eq!(
        overrides,
        [
            EnvOverride {
                variable: "DBFAILOVER_FAILOVER__ENABLED".into(),
                path: vec!["FAILOVER".into(), "ENABLED".into()],
                value: "no".into()
            },
            EnvOverride {
                variable: "DBFAILOVER_STATE__TTL".into(),
                path: vec!["STATE".into(), "TTL".into()],
                value: "60s".into()
            },
        ]
    );
    assert_eq!(overrides[1].key(), "state.ttl");
    assert_eq!(ignored_variables(env), ["DBFAILOVER_STATE_TTL"]);
    assert!(ignored_variables([("DBFAILOVER_A", ""), ("X_B", "")]) == ["DBFAILOVER_A"]);
}

#[test]
fn variables_set_typed_values() {
    let env = [
        ("DBFAILOVER_FAILOVER__ENABLED", " Off "),
        ("DBFAILOVER_HEALTH_CHECK__FAILURE_THRESHOLD", " 5 "),
        ("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "3"),
        ("DBFAILOVER_DATABASES__MAIN__REQUIRE_WRITABLE", "yes"),
    ];
    let config = load::load(&file_with_standby(), env).unwrap();
    assert!(!config.failover.enabled);
    assert_eq!(config.health_check.failure_threshold, 5);
    assert_eq!(config.health_check.timeout, Duration::from_secs(3));
    assert_eq!(config.databases["main"].require_writable, Some(true));
    for (on, expected) in [
        ("1", true),
        ("on", true),
        ("TRUE", true),
        ("0", false),
        ("false", false),
    ] {
        let config =
            load::load(&file_with_standby(), [("DBFAILOVER_FAILOVER__ENABLED", on)]).unwrap();
        assert_eq!(config.failover.enabled, expected, "{on}");
    }
    assert_eq!(
        key(load::load(
            &file_with_standby(),
            [("DBFAILOVER_FAILOVER__ENABLED", "maybe")]
        ))
        .as_deref(),
        Some("failover.enabled")
    );
    // A word where a count goes is refused, naming the setting.
    assert_eq!(
        key(load::load(
            &file_with_standby(),
            [("DBFAILOVER_HEALTH_CHECK__RECOVERY_THRESHOLD", "two")]
        ))
        .as_deref(),
        Some("health_check.recovery_threshold")
    );
}

#[test]
fn a_database_variable_finds_the_file_s_entry_whatever_its_spelling() {
    let env = [("DBFAILOVER_DATABASES__STANDBY_EU__URL", "postgres://h/new")];
    let text = FILE.replace("failover = \"standby\"", "failover = \"Standby-EU\"");
    let config = load::load(&text, env).unwrap();
    assert_eq!(config.databases.len(), 2);
    assert_eq!(
        config.databases["Standby-EU"].url.expose(),
        "postgres://h/new"
    );
    // A name the file does not have adds a database, lower-cased.
    let env = [("DBFAILOVER_DATABASES__AUDIT__URL", "postgres://h/audit")];
    let config = load::load(&text, env).unwrap();
    assert_eq!(config.databases["audit"].url.expose(), "postgres://h/audit");
}

#[test]
fn a_variable_replaces_the_alias_in_the_file_and_twins_are_refused() {
    let text = format!(
        "{}[health_check]\ntimeout_seconds = 9\n",
        file_with_standby()
    );
    let config = load::load(&text, [("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "4s")]).unwrap();
    assert_eq!(config.health_check.timeout, Duration::from_secs(4));
    let text = format!("{}[health_check]\ntimeout = \"9s\"\n", file_with_standby());
    let config = load::load(&text, [("DBFAILOVER_HEALTH_CHECK__TIMEOUT_SECONDS", "4")]).unwrap();
    assert_eq!(config.health_check.timeout, Duration::from_secs(4));
    let text = format!("{}[state]\nttl_seconds = 90\n", file_with_standby());
    let config = load::load(&text, [("DBFAILOVER_STATE__TTL", "60s")]).unwrap();
    assert_eq!(config.state.ttl, Duration::from_secs(60));
    // An alias of another section is not this one's.
    let text = format!("{}[health_check]\ntimeout = \"9s\"\n", file_with_standby());
    let config = load::load(&text, [("DBFAILOVER_STATE__TIMEOUT", "1s")]).unwrap();
    assert_eq!(config.health_check.timeout, Duration::from_secs(9));
    assert_eq!(config.state.timeout, Duration::from_secs(1));

    let twins = [
        ("DBFAILOVER_STATE__TTL", "60s"),
        ("DBFAILOVER_STATE__TTL_SECONDS", "60"),
    ];
    let err = load::load(&file_with_standby(), twins).unwrap_err();
    assert_eq!(err.key(), Some("state.ttl_seconds"));
    // The same field name in two sections is no twin.
    let config = load::load(
        &file_with_standby(),
        [
            ("DBFAILOVER_STATE__TIMEOUT", "1s"),
            ("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "1s"),
        ],
    )
    .unwrap();
    assert_eq!(config.state.timeout, config.health_check.timeout);
}

#[test]
fn a_syntax_error_is_located_and_has_no_key() {
    let err = load::parse("[failover]\nprimary = \"main\"\n  enabled = tru\n").unwrap_err();
    match &err {
        LoadError::Syntax { line, column, .. } => assert_eq!((*line, *column), (3, 13)),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.key(), None);
    let err = load::parse("x = ").unwrap_err();
    assert!(matches!(err, LoadError::Syntax { line: 1, .. }), "{err:?}");
}

#[test]
fn a_setting_error_names_the_key_the_value_and_what_is_expected() {
    let invalid = |text: &str| match load::parse(text) {
        Err(LoadError::Invalid(ConfigError::InvalidSetting { key, value, reason })) => {
            (key, value, reason)
        }
        other => panic!("{other:?}"),
    };
    let (k, _, reason) = invalid(&format!("{}[nonsense]\na = 1\n", file_with_standby()));
    assert_eq!(k, "nonsense");
    assert!(reason.starts_with("unknown section"), "{reason}");
    let (k, v, reason) = invalid(&format!(
        "{}[state]\nstore = \"etcd\"\n",
        file_with_standby()
    ));
    assert_eq!((k.as_str(), v.as_str()), ("state.store", "etcd"));
    assert!(reason.contains("`etcd` is not known"), "{reason}");
    let (k, v, _) = invalid(&format!(
        "{}[health_check]\nfailure_threshold = -1\n",
        file_with_standby()
    ));
    assert_eq!(
        (k.as_str(), v.as_str()),
        ("health_check.failure_threshold", "-1")
    );
    let (k, v, _) = invalid(&format!(
        "{}[state]\nstore = {{ a = 1, b = 2 }}\n",
        file_with_standby()
    ));
    assert_eq!((k.as_str(), v.as_str()), ("state.store", "{ a, b }"));
    let (k, _, reason) = invalid("[databases.main]\n");
    assert_eq!(k, "databases.main.url");
    assert_eq!(reason, "is required");
    let (k, v, reason) =
        match load::load(&file_with_standby(), [("DBFAILOVER_STATE__STORE", "etcd")]) {
            Err(LoadError::Invalid(ConfigError::InvalidSetting { key, value, reason })) => {
                (key, value, reason)
            }
            other => panic!("{other:?}"),
        };
    assert_eq!((k.as_str(), v.as_str()), ("state.store", "etcd"));
    assert!(
        reason.ends_with("(set by DBFAILOVER_STATE__STORE)"),
        "{reason}"
    );
}

// ---------------------------------------------------------------------------------------------
// Defaults and rules found by mutation testing (`scripts/mutants`): each is something an operator
// would notice.

#[test]
fn the_fast_interval_defaults_to_twenty_milliseconds_or_the_interval_when_shorter() {
    let mut h = valid().health_check;
    h.fast_interval = None;
    h.interval = Schedule::Every(Duration::from_secs(10));
    assert_eq!(h.effective_fast_interval(), Duration::from_millis(20));
    h.interval = Schedule::Every(Duration::from_millis(5));
    assert_eq!(h.effective_fast_interval(), Duration::from_millis(5));
    h.interval = Schedule::Disabled;
    assert_eq!(h.effective_fast_interval(), Duration::from_millis(20));
    h.fast_interval = Some(Duration::from_millis(7));
    assert_eq!(h.effective_fast_interval(), Duration::from_millis(7));
}

#[test]
fn the_configuration_s_redactor_knows_every_password_it_holds() {
    let text = "[failover]\nprimary = \"main\"\nfailover = \"standby\"\n\
        [databases.main]\nurl = \"postgres://u:first-Secret@h1/db\"\n\
        monitor_url = \"postgres://m:monitor-Secret@h1/db\"\n\
        [databases.standby]\nurl = \"postgres://u:second-Secret@h2/db\"\n\
        [state]\nstore = \"redis\"\nurl = \"redis://:store-Secret@r/0\"\n";
    let config = load::parse(text).unwrap();
    let echo = "driver said: first-Secret, monitor-Secret, second-Secret, store-Secret";
    let redacted = config.redactor().redact(echo);
    assert!(!redacted.contains("Secret"), "{redacted}");
    assert!(redacted.starts_with("driver said: "), "{redacted}");
}

#[test]
fn a_redis_store_needs_a_url_sentinels_or_a_cluster() {
    let mut config = valid();
    config.state.store = StoreKind::Redis;
    config.state.url = None;
    let err = config.validate().unwrap_err();
    assert_eq!(err.key(), "state.url");
    assert!(
        err.to_string().contains("the redis store needs a URL"),
        "{err}"
    );
    let with = |extra: &str| {
        load::parse(&format!(
            "{}[state]\nstore = \"redis\"\n{extra}",
            file_with_standby()
        ))
    };
    assert_eq!(key(with("url = \"redis://h/0\"\n")), None);
    assert_eq!(
        key(with(
            "sentinels = [\"redis://s1:26379\"]\nmaster_name = \"mymaster\"\n"
        )),
        None
    );
    assert_eq!(key(with("cluster = [\"redis://c1:7000\"]\n")), None);
    // A blank name is no name: Sentinel would be asked for a primary nobody monitors.
    assert_eq!(
        key(with(
            "sentinels = [\"redis://s1:26379\"]\nmaster_name = \"  \"\n"
        ))
        .as_deref(),
        Some("state.master_name")
    );
}

#[test]
fn a_node_list_of_the_wrong_shape_says_what_it_expects() {
    let err = load::parse(&format!(
        "{}[state]\nstore = \"redis\"\nsentinels = 5\n",
        file_with_standby()
    ))
    .unwrap_err();
    assert_eq!(err.key(), Some("state.sentinels"));
    assert!(
        err.to_string()
            .contains("a list of redis:// URLs, or URLs separated by commas"),
        "{err}"
    );
}

#[test]
fn a_blocking_name_equal_to_a_database_s_is_explained_as_such() {
    for name in ["main", "standby"] {
        let mut config = valid();
        config.failover.blocking = name.to_owned();
        let err = config.validate().unwrap_err();
        assert_eq!(err.key(), "failover.blocking");
        assert!(
            err.to_string()
                .contains("must differ from the primary and failover names"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_variable_leaves_the_file_s_other_settings_of_its_section_alone() {
    let file = format!(
        "{}[health_check]\ntimeout = \"3s\"\nschedule_frequency = \"7s\"\n[state]\nttl_seconds = 90\n",
        file_with_standby()
    );
    let config = load::load(
        &file,
        [
            ("DBFAILOVER_HEALTH_CHECK__FAILURE_THRESHOLD", "5"),
            ("DBFAILOVER_STATE__PREFIX", "fleet"),
        ],
    )
    .unwrap();
    assert_eq!(config.health_check.failure_threshold, 5);
    assert_eq!(config.health_check.timeout, Duration::from_secs(3));
    assert_eq!(
        config.health_check.interval,
        Schedule::Every(Duration::from_secs(7))
    );
    assert_eq!(config.state.prefix, "fleet");
    assert_eq!(config.state.ttl, Duration::from_secs(90));
}

#[test]
fn a_misspelled_key_in_the_file_is_reported_with_the_file_s_value_even_when_a_variable_sets_the_real_one()
 {
    let file = format!(
        "{}[health_check]\nfailure-threshold = 2\n",
        file_with_standby()
    );
    let err = load::load(&file, [("DBFAILOVER_HEALTH_CHECK__FAILURE_THRESHOLD", "5")]).unwrap_err();
    let LoadError::Invalid(ConfigError::InvalidSetting { key, value, .. }) = err else {
        panic!("{err:?}");
    };
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("health_check.failure-threshold", "2")
    );
}

#[test]
fn a_dsn_pasted_where_a_url_belongs_is_refused_without_showing_its_password() {
    let file = file_with_standby().replace("postgres://h/main", "app:S3cret@tcp(db:3306)/app");
    let err = load::parse(&file).unwrap_err();
    assert_eq!(err.key(), Some("databases.main.url"));
    let text = format!("{err} {err:?}");
    assert!(!text.contains("S3cret"), "{text}");
    assert!(text.contains("app:****@tcp(db:3306)/app"), "{text}");
}
