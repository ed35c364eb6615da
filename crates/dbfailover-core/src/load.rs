//! The one configuration parser: TOML text to [`Config`], environment overrides, then validation.
//!
//! Nothing here reads a file or the environment: the caller passes the file's text and the variables
//! (`std::env::vars()`), so the same parser serves the `dbfailover` command and embedding services.
//!
//! ## Environment overrides
//!
//! A variable `DBFAILOVER_<SECTION>__<KEY>` sets `<section>.<key>`; a double underscore separates the
//! levels, and names are matched lower-cased:
//!
//! | variable | setting |
//! |---|---|
//! | `DBFAILOVER_FAILOVER__ENABLED=false` | `failover.enabled` |
//! | `DBFAILOVER_HEALTH_CHECK__TIMEOUT=5s` | `health_check.timeout` |
//! | `DBFAILOVER_DATABASES__MAIN__URL=postgres://...` | `databases.main.url` |
//! | `DBFAILOVER_STATE__URL=redis://...` | `state.url` |
//! | `DBFAILOVER_STATE__SENTINELS=redis://h1:26379,redis://h2:26379` | `state.sentinels` (a list) |
//!
//! A database name is the entry of the file whose name, upper-cased with `-` and `.` written `_`, is the
//! variable's; a name the file does not have is taken lower-cased and adds a database. Variables without
//! a double underscore (`DBFAILOVER_LOG`, `DBFAILOVER_CONFIG`) are not settings and are left alone.
//! A variable wins over the file; setting a key through the environment replaces its alias in the file
//! (`timeout_seconds` for `timeout`, `schedule_frequency` for `interval`, `ttl_seconds` for `ttl`).

use crate::config::Config;
use crate::error::ConfigError;
use crate::url::{mask_password, mask_text};
use serde::Deserialize;
use thiserror::Error;

/// The prefix of every variable that overrides a setting.
pub const ENV_PREFIX: &str = "DBFAILOVER_";

/// The separator of levels in a variable's name.
pub const ENV_SEPARATOR: &str = "__";

/// Keys spelled two ways: the setting and the seed's alias, per section.
const ALIASES: [(&str, &str, &str); 3] = [
    ("health_check", "timeout", "timeout_seconds"),
    ("health_check", "interval", "schedule_frequency"),
    ("state", "ttl", "ttl_seconds"),
];

/// A configuration that cannot be loaded. The message names the setting and its (masked) value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The text is not TOML.
    #[error("invalid TOML at line {line}, column {column}: {message}")]
    Syntax {
        /// Line of the mistake, from 1.
        line: usize,
        /// Column of the mistake, from 1.
        column: usize,
        /// What is wrong, with any password masked.
        message: String,
    },
    /// A setting is unknown, of the wrong type, unparsable or breaks a rule.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl LoadError {
    /// The key of the offending setting, when the mistake is in one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Syntax { .. } => None,
            Self::Invalid(error) => Some(error.key()),
        }
    }
}

/// One setting taken from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// The variable's name, such as `DBFAILOVER_HEALTH_CHECK__TIMEOUT`.
    pub variable: String,
    /// The segments of the variable's name after the prefix, such as `["HEALTH_CHECK", "TIMEOUT"]`.
    pub path: Vec<String>,
    /// The variable's value (it may hold a password: show it with [`mask_password`]).
    pub value: String,
}

impl EnvOverride {
    /// The setting's dotted key, lower-cased, such as `health_check.timeout`.
    pub fn key(&self) -> String {
        self.path.join(".").to_ascii_lowercase()
    }
}

/// Parses `text` as the configuration file, without environment overrides, and validates it.
pub fn parse(text: &str) -> Result<Config, LoadError> {
    load(text, std::iter::empty::<(String, String)>())
}

/// Parses `text`, applies the `DBFAILOVER_*__*` variables among `env`, and validates the result.
///
/// `env` is any list of `(name, value)` pairs; the command passes `std::env::vars()`.
pub fn load<I, K, V>(text: &str, env: I) -> Result<Config, LoadError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut table: toml::Table = text.parse().map_err(|error| syntax_error(text, &error))?;
    let overrides = env_overrides(env);
    refuse_twins(&overrides)?;
    for o in &overrides {
        apply_override(&mut table, o)?;
    }
    let config = Config::deserialize(table.clone())
        .map_err(|error| setting_error(&table, &overrides, &error))?;
    config.validate()?;
    Ok(config)
}

/// The settings among `env` (variables named `DBFAILOVER_<SECTION>__<KEY>...`), in name order.
pub fn env_overrides<I, K, V>(env: I) -> Vec<EnvOverride>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out: Vec<EnvOverride> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.as_ref();
            let rest = name.strip_prefix(ENV_PREFIX)?;
            if !rest.contains(ENV_SEPARATOR) {
                return None;
            }
            Some(EnvOverride {
                variable: name.to_owned(),
                path: rest
                    .split(ENV_SEPARATOR)
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                value: value.as_ref().to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.variable.cmp(&b.variable));
    out
}

/// Two variables that set one setting (a key and its alias, names that differ only in case or in
/// `-` / `.` / `_`): which one wins would be an accident, so neither does.
fn refuse_twins(overrides: &[EnvOverride]) -> Result<(), ConfigError> {
    let mut seen: std::collections::HashMap<Vec<String>, &EnvOverride> =
        std::collections::HashMap::new();
    for o in overrides {
        let mut key: Vec<String> = o.path.iter().map(|segment| env_name(segment)).collect();
        if let [section, field] = key.as_mut_slice() {
            for (s, a, b) in ALIASES {
                if env_name(s) == *section && env_name(b) == *field {
                    *field = env_name(a);
                }
            }
        }
        if let Some(first) = seen.insert(key, o) {
            return Err(ConfigError::invalid(
                o.key(),
                mask_password(&o.value),
                format!(
                    "set twice, by {} and by {}: unset one of them",
                    first.variable, o.variable
                ),
            ));
        }
    }
    Ok(())
}

/// The `DBFAILOVER_` variables among `env` that name no setting (a single `_` where the levels need
/// `__`), other than the command's own (`DBFAILOVER_CONFIG`, `DBFAILOVER_LOG`): worth a warning.
pub fn ignored_variables<I, K, V>(env: I) -> Vec<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out: Vec<String> = env
        .into_iter()
        .map(|(name, _)| name.as_ref().to_owned())
        .filter(|name| {
            name.strip_prefix(ENV_PREFIX).is_some_and(|rest| {
                !rest.contains(ENV_SEPARATOR) && !matches!(rest, "CONFIG" | "LOG")
            })
        })
        .collect();
    out.sort();
    out
}

fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Resolves the variable's segments to the table's keys and sets the value, typed for its setting.
fn apply_override(table: &mut toml::Table, o: &EnvOverride) -> Result<(), ConfigError> {
    let raw_key = o.path.join(".");
    let invalid = |reason: String| {
        ConfigError::invalid(
            raw_key.to_ascii_lowercase(),
            mask_password(&o.value),
            format!("{reason} (set by {})", o.variable),
        )
    };
    if o.path.iter().any(|segment| segment.is_empty()) {
        return Err(invalid(format!(
            "a variable names a setting as SECTION{ENV_SEPARATOR}KEY, with no empty part"
        )));
    }
    let mut path: Vec<String> = Vec::with_capacity(o.path.len());
    let mut current = table;
    let last = o.path.len() - 1;
    for (index, segment) in o.path.iter().enumerate() {
        let key = if path.first().map(String::as_str) == Some("databases") && index == 1 {
            let matching: Vec<&String> = current
                .keys()
                .filter(|name| env_name(name) == env_name(segment))
                .collect();
            if let [first, second, ..] = matching.as_slice() {
                return Err(invalid(format!(
                    "names two databases of the file, `{first}` and `{second}`: rename one of them"
                )));
            }
            matching
                .first()
                .map(|name| (*name).clone())
                .unwrap_or_else(|| segment.to_ascii_lowercase())
        } else {
            segment.to_ascii_lowercase()
        };
        path.push(key.clone());
        if index == last {
            if let [section, field] = path.as_slice() {
                for (s, a, b) in ALIASES {
                    if s == section && (a == field || b == field) {
                        current.remove(if a == field { b } else { a });
                    }
                }
            }
            current.insert(key, typed_value(&path, &o.value));
            return Ok(());
        }
        let entry = current
            .entry(key)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            other => {
                return Err(ConfigError::invalid(
                    path.join("."),
                    mask_text(&other.to_string()),
                    format!(
                        "is a value, not a section; {} cannot set a key inside it",
                        o.variable
                    ),
                ));
            }
        };
    }
    Ok(())
}

/// A variable's text as the TOML value its setting takes: booleans and counts are typed, the rest
/// (names, URLs, durations, which also accept text) stay strings.
fn typed_value(path: &[String], text: &str) -> toml::Value {
    let field = path.last().map(String::as_str).unwrap_or_default();
    let section = path.first().map(String::as_str).unwrap_or_default();
    let is_bool = matches!(
        (section, field),
        ("failover", "enabled") | ("databases", "require_writable")
    );
    let is_count = matches!(
        (section, field),
        ("health_check", "failure_threshold" | "recovery_threshold")
    );
    let trimmed = text.trim();
    if is_bool {
        match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => return toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => return toml::Value::Boolean(false),
            _ => {}
        }
    }
    if is_count && let Ok(n) = trimmed.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    toml::Value::String(text.to_owned())
}

fn syntax_error(text: &str, error: &toml::de::Error) -> LoadError {
    let offset = error.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, tail)| tail)
        .chars()
        .count()
        + 1;
    LoadError::Syntax {
        line,
        column,
        message: mask_text(error.message().trim()),
    }
}

/// The dotted key the deserializer was in when it failed. The `toml` crate shows it on the last line of
/// an error that has no source text (`in `a.b``), which is the case for a value deserialized from a table.
fn error_path(error: &toml::de::Error) -> Vec<String> {
    let shown = error.to_string();
    shown
        .trim_end()
        .lines()
        .last()
        .and_then(|line| line.strip_prefix("in `"))
        .and_then(|line| line.strip_suffix('`'))
        .map(|keys| keys.split('.').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The text between the first pair of backquotes after `marker` in `message`.
fn quoted_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &message[message.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let mut value = table.get(first)?;
    for key in rest {
        value = value.as_table()?.get(key)?;
    }
    Some(value)
}

/// Whether a key's name says its value may be a secret.
fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pas", "pwd", "secret", "token", "auth", "cred", "key"]
        .iter()
        .any(|word| key.contains(word))
}

fn shown_value(value: Option<&toml::Value>) -> String {
    match value {
        None => String::new(),
        Some(toml::Value::String(text)) => mask_password(text),
        Some(toml::Value::Table(table)) => {
            let keys: Vec<&str> = table.keys().map(String::as_str).collect();
            format!("{{ {} }}", keys.join(", "))
        }
        Some(other) => mask_text(&other.to_string()),
    }
}

fn setting_error(
    table: &toml::Table,
    overrides: &[EnvOverride],
    error: &toml::de::Error,
) -> LoadError {
    let message = error.message().trim();
    let mut path = error_path(error);
    let mut reason = mask_text(message);
    // The value of a key this library does not know is not shown when its name says it may be a
    // secret put where a URL was meant (`password = "..."`, `pasword`, `token`).
    let mut unknown = false;
    if let Some(field) = quoted_after(message, "unknown field ") {
        unknown = true;
        path.push(field.to_owned());
        let expected = message
            .split_once(", expected ")
            .map_or(String::new(), |(_, e)| format!("; expected {e}"));
        reason = if path.len() == 1 {
            format!("unknown section{expected}")
        } else {
            format!("unknown setting{expected}")
        };
    } else if let Some(field) = quoted_after(message, "missing field ") {
        path.push(field.to_owned());
        reason = "is required".to_owned();
    } else if let Some(variant) = quoted_after(message, "unknown variant ") {
        let expected = message
            .split_once(", expected ")
            .map_or(String::new(), |(_, e)| format!("; expected {e}"));
        reason = format!("`{}` is not known{expected}", mask_text(variant));
    }
    let value = match lookup(table, &path) {
        Some(toml::Value::Table(_)) | None => shown_value(lookup(table, &path)),
        Some(_) if unknown && path.last().is_some_and(|k| names_a_secret(k)) => {
            crate::url::MASK.to_owned()
        }
        found => shown_value(found),
    };
    if let Some(o) = overrides
        .iter()
        .rev()
        .find(|o| o.key().eq_ignore_ascii_case(&path.join(".")))
    {
        reason = format!("{reason} (set by {})", o.variable);
    }
    let key = if path.is_empty() {
        "(top level)".to_owned()
    } else {
        path.join(".")
    };
    LoadError::Invalid(ConfigError::invalid(key, value, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_that_may_hold_a_secret_does_not_show_its_value() {
        let text = "[failover]\nprimary = \"a\"\nfailover = \"b\"\n\
            [databases.a]\nurl = \"sqlite:///a.db\"\npassword = \"Hunter2Secret\"\n\
            [databases.b]\nurl = \"sqlite:///b.db\"\n";
        let shown = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(shown.contains("`databases.a.password`"), "{shown}");
        assert!(!shown.contains("Hunter2"), "{shown}");
        let env = [("DBFAILOVER_STATE__PASSWORD", "EnvSecretPw")];
        let text = text.replace("password = \"Hunter2Secret\"\n", "");
        let shown = load(&text, env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(shown.contains("state.password"), "{shown}");
        assert!(!shown.contains("EnvSecret"), "{shown}");
    }
    use crate::config::{Schedule, StoreKind};
    use std::time::Duration;

    const GOOD: &str = r#"
[failover]
primary = "main"
failover = "standby"
blocking = "blocking"

[databases.main]
url = "postgres://app:secret@10.0.0.1:5432/app"
[databases.standby]
url = "postgres://app:secret@10.0.0.2:5432/app"
[databases.reporting-eu]
url = "mysql://app:secret@10.0.0.3/reports"

[health_check]
query = "SELECT 1"
failure_threshold = 3
recovery_threshold = 2
timeout = "2s"
interval = "everySecond"
fast_interval = "50ms"

[state]
store = "memory"
prefix = "dynamic_db_failover_status"
ttl = "300s"
"#;

    fn invalid(result: Result<Config, LoadError>) -> (String, String, String) {
        match result {
            Err(LoadError::Invalid(ConfigError::InvalidSetting { key, value, reason })) => {
                (key, value, reason)
            }
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn the_documented_file_loads() {
        let config = parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.failover.primary, "main");
        assert_eq!(config.databases.len(), 3);
        assert_eq!(config.health_check.timeout, Duration::from_secs(2));
        assert_eq!(
            config.health_check.interval,
            Schedule::Every(Duration::from_secs(1))
        );
        assert_eq!(
            config.health_check.fast_interval,
            Some(Duration::from_millis(50))
        );
        assert_eq!(config.state.store, StoreKind::Memory);
    }

    #[test]
    fn each_kind_of_mistake_names_its_key_and_value() {
        let cases: [(&str, &str, &str, &str); 9] = [
            (
                "recovery_threshold = 2",
                "recovery_treshold = 2",
                "health_check.recovery_treshold",
                "2",
            ),
            (
                "[state]\n",
                "[healthcheck]\nx = 1\ny = 2\n[state]\n",
                "healthcheck",
                "{ x, y }",
            ),
            (
                "failure_threshold = 3",
                "failure_threshold = \"three\"",
                "health_check.failure_threshold",
                "three",
            ),
            (
                "timeout = \"2s\"",
                "timeout = \"2 sex\"",
                "health_check.timeout",
                "2 sex",
            ),
            (
                "interval = \"everySecond\"",
                "interval = \"hourly\"",
                "health_check.interval",
                "hourly",
            ),
            (
                "url = \"postgres://app:secret@10.0.0.1:5432/app\"",
                "url = \"postgres://app:secret@[10.0.0.1/app\"",
                "databases.main.url",
                "postgres://app:****@[10.0.0.1/app",
            ),
            (
                "failure_threshold = 3",
                "failure_threshold = 0",
                "health_check.failure_threshold",
                "0",
            ),
            (
                "failover = \"standby\"",
                "failover = \"nowhere\"",
                "failover.failover",
                "nowhere",
            ),
            (
                "store = \"memory\"",
                "store = \"etcd\"",
                "state.store",
                "etcd",
            ),
        ];
        for (from, to, key, value) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let (k, v, reason) = invalid(parse(&text));
            assert_eq!((k.as_str(), v.as_str()), (key, value), "{to}: {reason}");
            assert!(!reason.contains("secret"), "{reason}");
        }
    }

    #[test]
    fn a_missing_url_is_required() {
        let text = GOOD.replacen("url = \"mysql://app:secret@10.0.0.3/reports\"", "", 1);
        let (key, _, reason) = invalid(parse(&text));
        assert_eq!(key, "databases.reporting-eu.url");
        assert_eq!(reason, "is required");
    }

    #[test]
    fn a_syntax_error_gives_line_and_column_without_the_text() {
        let text = "[failover]\nprimary = \"main\n";
        match parse(text) {
            Err(LoadError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        let text = "[databases.main]\nurl = postgres://app:secret@h/app\n";
        let error = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        let env = [
            ("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "5s"),
            ("DBFAILOVER_HEALTH_CHECK__FAILURE_THRESHOLD", "7"),
            ("DBFAILOVER_FAILOVER__ENABLED", "false"),
            (
                "DBFAILOVER_DATABASES__MAIN__URL",
                "postgres://app:other@10.0.0.9/app",
            ),
            (
                "DBFAILOVER_DATABASES__REPORTING_EU__URL",
                "mysql://r:pw@10.0.0.8/reports",
            ),
            ("DBFAILOVER_DATABASES__ARCHIVE__URL", "sqlite:///tmp/a.db"),
            ("DBFAILOVER_LOG", "debug"),
            ("DBFAILOVER_PRIMARY_URL", "not a setting"),
            ("HOME", "/root"),
        ];
        let config = load(GOOD, env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.health_check.timeout, Duration::from_secs(5));
        assert_eq!(config.health_check.failure_threshold, 7);
        assert!(!config.failover.enabled);
        assert_eq!(
            config.databases["main"].url.expose(),
            "postgres://app:other@10.0.0.9/app"
        );
        assert_eq!(
            config.databases["reporting-eu"].url.expose(),
            "mysql://r:pw@10.0.0.8/reports"
        );
        assert!(config.databases.contains_key("archive"));
    }

    #[test]
    fn an_alias_in_the_file_gives_way_to_the_variable() {
        let text = GOOD.replacen("timeout = \"2s\"", "timeout_seconds = 2", 1);
        let config = load(&text, [("DBFAILOVER_HEALTH_CHECK__TIMEOUT", "3s")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.health_check.timeout, Duration::from_secs(3));
    }

    #[test]
    fn a_bad_variable_names_the_variable_and_masks_its_value() {
        let (key, value, reason) = invalid(load(
            GOOD,
            [("DBFAILOVER_HEALTH_CHECK__FAILURE_THRESHOLD", "many")],
        ));
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("health_check.failure_threshold", "many")
        );
        assert!(
            reason.contains("DBFAILOVER_HEALTH_CHECK__FAILURE_THRESHOLD"),
            "{reason}"
        );

        let (key, value, _) = invalid(load(
            GOOD,
            [(
                "DBFAILOVER_DATABASES__MAIN__URL",
                "postgres://app:hunter2@[bad/app",
            )],
        ));
        assert_eq!(key, "databases.main.url");
        assert!(!value.contains("hunter2"), "{value}");

        let (key, _, reason) = invalid(load(GOOD, [("DBFAILOVER_HEALTHCHECK__TIMEOUT", "1s")]));
        assert_eq!(key, "healthcheck");
        assert!(reason.contains("unknown section"), "{reason}");
    }

    #[test]
    fn env_alone_is_a_configuration() {
        let env = [
            ("DBFAILOVER_FAILOVER__PRIMARY", "a"),
            ("DBFAILOVER_FAILOVER__FAILOVER", "b"),
            ("DBFAILOVER_DATABASES__A__URL", "sqlite:///tmp/a.db"),
            ("DBFAILOVER_DATABASES__B__URL", "sqlite:///tmp/b.db"),
        ];
        let config = load("", env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.monitored().len(), 2);
    }

    #[test]
    fn a_failover_list_loads_in_order_from_the_file_and_from_a_variable() {
        let databases = "[databases.main]\nurl = \"sqlite:///m.db\"\n\
                         [databases.r1]\nurl = \"sqlite:///r1.db\"\n\
                         [databases.r2]\nurl = \"sqlite:///r2.db\"\n";
        let text = format!(
            "[failover]\nprimary = \"main\"\nfailover = [\"r2\", \"r1\"]\nfailback = \"manual\"\n{databases}"
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.failover.failover.names(), ["r2", "r1"]);
        assert_eq!(config.failover.failback, crate::config::Failback::Manual);
        let names: Vec<&str> = config.monitored().iter().map(|m| m.name).collect();
        assert_eq!(names, ["main", "r2", "r1"], "routing order");
        let env = [("DBFAILOVER_FAILOVER__FAILOVER", "r1, r2")];
        let text = format!("[failover]\nprimary = \"main\"\nfailover = \"r1\"\n{databases}");
        let config = load(&text, env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.failover.failover.names(), ["r1", "r2"]);
    }

    #[test]
    fn a_bad_failover_list_names_the_key_and_the_value() {
        let databases = "[databases.main]\nurl = \"sqlite:///m.db\"\n[databases.r1]\nurl = \"sqlite:///r1.db\"\n";
        for (list, reason) in [
            ("[\"r1\", \"r1\"]", "listed twice"),
            ("[]", "at least one"),
            ("[\"r1\", \"main\"]", "must differ from failover.primary"),
            ("[\"r1\", \"nowhere\"]", "names no connection"),
        ] {
            let text = format!("[failover]\nprimary = \"main\"\nfailover = {list}\n{databases}");
            let error = parse(&text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.contains("failover.failover") && error.contains(reason),
                "{list}: {error}"
            );
        }
        let many: Vec<String> = (0..64).map(|i| format!("\"n{i}\"")).collect();
        let text = format!(
            "[failover]\nprimary = \"main\"\nfailover = [{}]\n{databases}",
            many.join(", ")
        );
        let error = parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("at most 63"), "{error}");
    }

    #[test]
    fn two_variables_for_one_setting_are_an_error_naming_both() {
        let text = "[databases.main]\nurl = \"sqlite:///m.db\"\n[databases.standby]\nurl = \"sqlite:///s.db\"\n\
                    [failover]\nprimary = \"main\"\nfailover = \"standby\"\n";
        for (a, b) in [
            (
                "DBFAILOVER_HEALTH_CHECK__TIMEOUT",
                "DBFAILOVER_HEALTH_CHECK__TIMEOUT_SECONDS",
            ),
            (
                "DBFAILOVER_HEALTH_CHECK__TIMEOUT",
                "DBFAILOVER_health_check__timeout",
            ),
        ] {
            let env = [(a, "1s"), (b, "2s")];
            let error = load(text, env)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(a) && error.contains(b), "{error}");
        }
        let twins = "[databases.reporting-eu]\nurl = \"sqlite:///a.db\"\n\
                     [databases.reporting_eu]\nurl = \"sqlite:///b.db\"\n";
        let env = [("DBFAILOVER_DATABASES__REPORTING_EU__URL", "sqlite:///c.db")];
        let error = load(&format!("{text}{twins}"), env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("reporting-eu") && error.contains("reporting_eu"),
            "{error}"
        );
        let env = [
            ("DBFAILOVER_HEALTH_CHECK_TIMEOUT", "1s"),
            ("DBFAILOVER_LOG", "info"),
            ("DBFAILOVER_CONFIG", "x.toml"),
            ("OTHER", "1"),
        ];
        assert_eq!(ignored_variables(env), ["DBFAILOVER_HEALTH_CHECK_TIMEOUT"]);
    }

    #[test]
    fn redis_node_lists_come_from_the_environment_separated_by_commas() {
        let text = "[databases.main]\nurl = \"sqlite:///m.db\"\n[databases.standby]\nurl = \"sqlite:///s.db\"\n\
                    [failover]\nprimary = \"main\"\nfailover = \"standby\"\n[state]\nstore = \"redis\"\n";
        let env = [
            (
                "DBFAILOVER_STATE__SENTINELS",
                "redis://:pw@h1:26379, redis://:pw@h2:26379",
            ),
            ("DBFAILOVER_STATE__MASTER_NAME", "mymaster"),
        ];
        let config = load(text, env).unwrap_or_else(|e| panic!("{e}"));
        let urls: Vec<&str> = config
            .state
            .sentinels
            .urls()
            .iter()
            .map(|u| u.expose())
            .collect();
        assert_eq!(urls, ["redis://:pw@h1:26379", "redis://:pw@h2:26379"]);
        assert_eq!(config.state.master_name.as_deref(), Some("mymaster"));
        let both = [
            ("DBFAILOVER_STATE__CLUSTER", "redis://:pw@h1:7000"),
            ("DBFAILOVER_STATE__URL", "redis://:pw@h:6379"),
        ];
        let error = load(text, both)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("state.url") && error.contains("state.cluster"),
            "{error}"
        );
        assert!(!error.contains(":pw@"), "{error}");
    }
}
