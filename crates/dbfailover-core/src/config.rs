//! Configuration: the settings of the seed, with their defaults, and their validation.

use crate::duration;
use crate::error::ConfigError;
use crate::status::{Role, RoleNames};
use crate::tracker::Thresholds;
use crate::url::DatabaseUrl;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The most failover connections a list may name (routing publishes the nodes that serve reads as one
/// bit each of a 64-bit word, the primary included).
pub const MAX_FAILOVERS: usize = 63;

/// The longest timeout, interval or lag bound accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// The longest TTL accepted (memcached reads a longer one as a date).
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The URL schemes of the databases the library can check (each needs its driver compiled in).
pub const DATABASE_SCHEMES: &[&str] = &["postgres", "postgresql", "mysql", "mariadb", "sqlite"];

/// The smallest check interval (and fast interval) accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The whole configuration. Every field has a documented default (see `docs/configuration.md`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Roles and the on/off switch (the seed's `enabled` and `connections`).
    #[serde(default)]
    pub failover: FailoverSettings,
    /// The monitored databases by name. Primary and failover must be among them; any other entry is
    /// monitored too and reported with `ConnectionDown` / `ConnectionHealthy`.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseSettings>,
    /// How connections are checked (the seed's `health_check`).
    #[serde(default)]
    pub health_check: HealthCheckSettings,
    /// Where connection state is kept and shared (the seed's `cache`).
    #[serde(default)]
    pub state: StateSettings,
}

/// Which state store keeps (and shares) connection state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process only. The default.
    #[default]
    Memory,
    /// A file shared by the processes of one host (`path`).
    File,
    /// Redis, shared by every instance (`url`: `redis://`, `rediss://`).
    Redis,
    /// Memcached, shared by every instance (`url`: `memcache://host:port`).
    Memcached,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory",
            Self::File => "file",
            Self::Redis => "redis",
            Self::Memcached => "memcached",
        })
    }
}

/// The seed's `cache` settings: where state is kept, under which key prefix, for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StateSettings {
    /// `memory` (default), `file`, `redis` or `memcached`.
    pub store: StoreKind,
    /// The store's URL, for `redis` and `memcached`; shown with the password masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<DatabaseUrl>,
    /// Redis under Sentinel (instead of `url`): the Sentinels' URLs (`redis://[:password@]host:26379`,
    /// each with the Sentinel's own AUTH). Needs `master_name`.
    #[serde(skip_serializing_if = "RedisNodes::is_empty")]
    pub sentinels: RedisNodes,
    /// Redis under Sentinel: the name Sentinel monitors the primary under (`sentinel monitor NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_name: Option<String>,
    /// Redis under Sentinel: the AUTH (user, password) and database of the data nodes, as a URL
    /// `redis://[user]:password@host/db` whose host is not used (Sentinel names the primary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_auth: Option<DatabaseUrl>,
    /// Redis Cluster (instead of `url`): some of the cluster's nodes (`redis://[:password@]host:port`);
    /// the rest is discovered. Every key of the deployment then shares the hash tag `{prefix}`.
    #[serde(skip_serializing_if = "RedisNodes::is_empty")]
    pub cluster: RedisNodes,
    /// The state file, for `file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    /// Prefix of every key. Default `dynamic_db_failover_status` (the seed's).
    pub prefix: String,
    /// Lifetime of every entry, renewed on each write. Default 300 s (the seed's `ttl_seconds`).
    #[serde(with = "duration::human", alias = "ttl_seconds")]
    pub ttl: Duration,
    /// Bound on one store operation. Default 500 ms.
    #[serde(with = "duration::human")]
    pub timeout: Duration,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            url: None,
            sentinels: RedisNodes::default(),
            master_name: None,
            node_auth: None,
            cluster: RedisNodes::default(),
            path: None,
            prefix: "dynamic_db_failover_status".into(),
            ttl: Duration::from_secs(300),
            timeout: Duration::from_millis(500),
        }
    }
}

/// A list of Redis nodes (Sentinels, or cluster nodes): a TOML list of URLs, or (from the
/// environment) URLs separated by commas. Shown with passwords masked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RedisNodes(Vec<DatabaseUrl>);

impl RedisNodes {
    /// The URLs, in order.
    pub fn urls(&self) -> &[DatabaseUrl] {
        &self.0
    }

    /// Whether the list is empty (the setting is not used).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<DatabaseUrl>> for RedisNodes {
    fn from(urls: Vec<DatabaseUrl>) -> Self {
        Self(urls)
    }
}

impl<'de> Deserialize<'de> for RedisNodes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodesVisitor;
        impl<'de> Visitor<'de> for NodesVisitor {
            type Value = RedisNodes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of redis:// URLs, or URLs separated by commas")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RedisNodes, E> {
                split_urls(text)
                    .into_iter()
                    .map(|t| DatabaseUrl::parse(t).map_err(E::custom))
                    .collect::<Result<Vec<_>, _>>()
                    .map(RedisNodes)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RedisNodes, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<DatabaseUrl>()? {
                    urls.push(url);
                }
                Ok(RedisNodes(urls))
            }
        }
        deserializer.deserialize_any(NodesVisitor)
    }
}

/// The seed's `enabled` and `connections` settings, and what a replication cluster needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FailoverSettings {
    /// `false`: no probes run and every `GetActiveConnection` answers the primary. Default `true`.
    pub enabled: bool,
    /// Name of the primary connection. Default `mysql` (the seed's).
    pub primary: String,
    /// The failover connections, in order of preference: one name (the seed's) or a list. Default
    /// `mysql_failover` (the seed's).
    pub failover: Failovers,
    /// Name reported for limited functionality mode; needs no database entry. Default `blocking_connection`.
    pub blocking: String,
    /// After switching away from a connection: `auto` (the seed's: back to the first usable one in order
    /// as soon as it is usable) or `manual` (stay until an operator forces the switch back). Default `auto`.
    pub failback: Failback,
    /// Never route writes back to a node that was left behind (a replica that was promoted replaced it,
    /// or it writes on an older timeline). Default `true`.
    pub fencing: bool,
    /// Reads go to a replica only while its replication lag is at most this. Default 5 s.
    #[serde(with = "duration::human")]
    pub max_replication_lag: Duration,
    /// Which replica a read goes to: `round_robin` (default) or `lowest_latency`.
    pub read_picker: ReadPicker,
}

/// Which of the replicas that may serve reads a read goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPicker {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one whose last check was fastest.
    LowestLatency,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            primary: "mysql".into(),
            failover: Failovers::from("mysql_failover"),
            blocking: "blocking_connection".into(),
            failback: Failback::Auto,
            fencing: true,
            max_replication_lag: Duration::from_secs(5),
            read_picker: ReadPicker::RoundRobin,
        }
    }
}

/// What routing does once it left a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failback {
    /// Back to the first usable connection in order as soon as it is usable (the seed's behaviour).
    #[default]
    Auto,
    /// Stay on the connection routing switched to until an operator forces the switch back.
    Manual,
}

/// The failover connections, in order: one name or a list (`failover = "standby"`,
/// `failover = ["replica1", "replica2"]`; from the environment, names separated by commas).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failovers(Vec<String>);

impl Failovers {
    /// The names, in order.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The first failover (the seed's single one).
    pub fn first(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

impl fmt::Display for Failovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl From<&str> for Failovers {
    fn from(name: &str) -> Self {
        Self(vec![name.to_owned()])
    }
}

impl From<Vec<String>> for Failovers {
    fn from(names: Vec<String>) -> Self {
        Self(names)
    }
}

impl Serialize for Failovers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Failovers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = Failovers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a connection name or a list of names")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Failovers, E> {
                Ok(Failovers(
                    text.split(',').map(|n| n.trim().to_owned()).collect(),
                ))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Failovers, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Failovers(names))
            }
        }
        deserializer.deserialize_any(Names)
    }
}

/// One monitored database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseSettings {
    /// Where it is (`postgres://`, `mysql://`, `sqlite://`); shown with the password masked.
    pub url: DatabaseUrl,
    /// Whether checks ask if it takes writes (a read-only node then gets no writes; it is not DOWN).
    /// Default: `true` for primary and failovers, `false` for other connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_writable: Option<bool>,
    /// Credentials for the checks, when the application's lack what the role queries need
    /// (PostgreSQL `pg_monitor`; MariaDB REPLICA MONITOR): the same database, another user. Shown
    /// with the password masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_url: Option<DatabaseUrl>,
}

impl DatabaseSettings {
    /// A database at `url` with default settings.
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            require_writable: None,
            monitor_url: None,
        }
    }

    /// The URL the checks use: `monitor_url` when set, else `url`.
    pub fn check_url(&self) -> &DatabaseUrl {
        self.monitor_url.as_ref().unwrap_or(&self.url)
    }
}

/// When periodic checks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// A check every so often (measured from the end of the previous check).
    Every(Duration),
    /// No periodic checks: only checks asked for (a reported failure, a `CheckNow`, the CLI).
    Disabled,
}

impl Schedule {
    /// The interval, or `None` when disabled.
    pub fn interval(self) -> Option<Duration> {
        match self {
            Self::Every(d) => Some(d),
            Self::Disabled => None,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(d) => f.write_str(&duration::format(*d)),
            Self::Disabled => f.write_str("disabled"),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScheduleVisitor;
        impl Visitor<'_> for ScheduleVisitor {
            type Value = Schedule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration such as \"1s\", or \"everySecond\", \"everyMinute\", \"disabled\"",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Schedule, E> {
                Ok(Schedule::Every(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Schedule, E> {
                u64::try_from(v)
                    .map(|s| Schedule::Every(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("`{v}` is negative; an interval cannot be")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Schedule, E> {
                Schedule::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(ScheduleVisitor)
    }
}

impl Schedule {
    /// Parses a duration, or the seed's `schedule_frequency` values `everySecond`, `everyMinute`, `disabled`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "everySecond" => Ok(Self::Every(Duration::from_secs(1))),
            "everyMinute" => Ok(Self::Every(Duration::from_secs(60))),
            "disabled" => Ok(Self::Disabled),
            other => duration::parse(other).map(Self::Every).map_err(|reason| {
                format!("`{other}` is {reason}, nor everySecond, everyMinute or disabled")
            }),
        }
    }
}

/// The seed's `health_check` settings, plus the recovery threshold and the fast interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HealthCheckSettings {
    /// The health query. Default `SELECT 1`.
    pub query: String,
    /// Consecutive failed checks that make a connection DOWN. Default 3.
    pub failure_threshold: u32,
    /// Consecutive successful checks that make a DOWN connection HEALTHY. Default 2.
    pub recovery_threshold: u32,
    /// Bound on one check, connect included. Default 2 s (the seed's `timeout_seconds`).
    #[serde(with = "duration::human", alias = "timeout_seconds")]
    pub timeout: Duration,
    /// Time between checks, or `disabled`. Default 1 s (the seed's `everySecond`).
    #[serde(alias = "schedule_frequency")]
    pub interval: Schedule,
    /// Time between the confirming checks that follow a failed check or a reported query failure, until
    /// the connection is decided (a success, or DOWN). Default: 20 ms, or the interval when that is
    /// shorter; never longer than the interval. See [`HealthCheckSettings::effective_fast_interval`].
    #[serde(
        default,
        with = "duration::option_human",
        skip_serializing_if = "Option::is_none"
    )]
    pub fast_interval: Option<Duration>,
    /// Bound on the confirming checks that follow a check that timed out (a hung server answers the next
    /// connect no sooner). Default: the interval (the timeout when checks are disabled), never more
    /// than the timeout.
    #[serde(
        default,
        with = "duration::option_human",
        skip_serializing_if = "Option::is_none"
    )]
    pub confirm_timeout: Option<Duration>,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            query: "SELECT 1".into(),
            failure_threshold: 3,
            recovery_threshold: 2,
            timeout: Duration::from_secs(2),
            interval: Schedule::Every(Duration::from_secs(1)),
            fast_interval: None,
            confirm_timeout: None,
        }
    }
}

/// The fast interval when none is set (or the interval, when that is shorter).
pub const DEFAULT_FAST_INTERVAL: Duration = Duration::from_millis(20);

impl HealthCheckSettings {
    /// The time between confirming checks, with its default applied: the setting, else the smaller of
    /// [`DEFAULT_FAST_INTERVAL`] and the interval.
    pub fn effective_fast_interval(&self) -> Duration {
        self.fast_interval.unwrap_or_else(|| {
            self.interval
                .interval()
                .map_or(DEFAULT_FAST_INTERVAL, |i| i.min(DEFAULT_FAST_INTERVAL))
        })
    }

    /// The bound on confirming checks after a timeout, with its default applied.
    pub fn effective_confirm_timeout(&self) -> Duration {
        self.confirm_timeout
            .or(self.interval.interval())
            .unwrap_or(self.timeout)
            .min(self.timeout)
    }

    /// The thresholds the trackers apply.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            failure_threshold: self.failure_threshold,
            recovery_threshold: self.recovery_threshold,
        }
    }
}

/// One monitored connection as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitoredConnection<'a> {
    /// Its configured name.
    pub name: &'a str,
    /// The role it plays.
    pub role: Role,
    /// Its settings.
    pub settings: &'a DatabaseSettings,
    /// Whether a read-only answer counts as a failure (the default applied).
    pub require_writable: bool,
}

impl Config {
    /// A configuration with `primary` and `failover` databases at the given URLs and default settings.
    pub fn with_databases(primary: (&str, DatabaseUrl), failover: (&str, DatabaseUrl)) -> Self {
        let mut config = Self::default();
        config.failover.primary = primary.0.to_owned();
        config.failover.failover = Failovers::from(failover.0);
        config
            .databases
            .insert(primary.0.to_owned(), DatabaseSettings::new(primary.1));
        config
            .databases
            .insert(failover.0.to_owned(), DatabaseSettings::new(failover.1));
        config
    }

    /// A [`Redactor`](crate::url::Redactor) that knows every secret of this configuration (each
    /// database's and monitor's password, the store's), for text that may echo one by value.
    pub fn redactor(&self) -> crate::url::Redactor {
        let mut redactor = crate::url::Redactor::new();
        for database in self.databases.values() {
            redactor.add_url(&database.url);
            if let Some(monitor) = &database.monitor_url {
                redactor.add_url(monitor);
            }
        }
        if let Some(url) = &self.state.url {
            redactor.add_url(url);
        }
        redactor
    }

    /// The configured role names.
    pub fn role_names(&self) -> RoleNames {
        RoleNames {
            primary: self.failover.primary.clone(),
            failovers: self.failover.failover.names().to_vec(),
            blocking: self.failover.blocking.clone(),
        }
    }

    /// Every monitored connection: the primary, the failovers in order, then the others.
    pub fn monitored(&self) -> Vec<MonitoredConnection<'_>> {
        let names = self.role_names();
        let mut out: Vec<_> = self
            .databases
            .iter()
            .map(|(name, settings)| {
                let role = names.role_of(name);
                MonitoredConnection {
                    name,
                    role,
                    settings,
                    require_writable: settings.require_writable.unwrap_or(role != Role::Other),
                }
            })
            .collect();
        out.sort_by_key(|c| names.node_of(c.name).unwrap_or(usize::MAX));
        out
    }

    /// Checks every rule a setting must follow; the error names the first broken one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.failover;
        if f.failover.names().is_empty() {
            return Err(ConfigError::invalid(
                "failover.failover",
                "[]",
                "must name at least one connection",
            ));
        }
        if f.failover.names().len() > MAX_FAILOVERS {
            return Err(ConfigError::invalid(
                "failover.failover",
                f.failover.to_string(),
                format!("lists at most {MAX_FAILOVERS} connections"),
            ));
        }
        let failover_keys = f.failover.names().iter().map(|n| ("failover.failover", n));
        for (key, value) in [
            ("failover.primary", &f.primary),
            ("failover.blocking", &f.blocking),
        ]
        .into_iter()
        .chain(failover_keys.clone())
        {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(key, value, "must name a connection"));
            }
        }
        for (index, name) in f.failover.names().iter().enumerate() {
            if *name == f.primary {
                return Err(ConfigError::invalid(
                    "failover.failover",
                    name,
                    "must differ from failover.primary",
                ));
            }
            if f.failover.names()[..index].contains(name) {
                return Err(ConfigError::invalid(
                    "failover.failover",
                    name,
                    "is listed twice",
                ));
            }
        }
        if f.blocking == f.primary || f.failover.contains(&f.blocking) {
            return Err(ConfigError::invalid(
                "failover.blocking",
                &f.blocking,
                "must differ from the primary and failover names",
            ));
        }
        if self.databases.contains_key(&f.blocking) {
            return Err(ConfigError::invalid(
                "failover.blocking",
                &f.blocking,
                "names an entry under [databases]; the blocking connection is not a database and must have none",
            ));
        }
        for (key, value) in std::iter::once(("failover.primary", &f.primary)).chain(failover_keys) {
            if !self.databases.contains_key(value) {
                let defined: Vec<&str> = self.databases.keys().map(String::as_str).collect();
                return Err(ConfigError::invalid(
                    key,
                    value,
                    format!(
                        "names no connection under [databases] (defined: {})",
                        if defined.is_empty() {
                            "none".to_owned()
                        } else {
                            defined.join(", ")
                        }
                    ),
                ));
            }
        }
        for (name, database) in &self.databases {
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "databases",
                    name,
                    "a database needs a name",
                ));
            }
            let urls = std::iter::once(("url", &database.url))
                .chain(database.monitor_url.iter().map(|u| ("monitor_url", u)));
            for (field, url) in urls {
                let scheme = url.scheme();
                if !DATABASE_SCHEMES.contains(&scheme.as_str()) {
                    return Err(ConfigError::invalid(
                        format!("databases.{name}.{field}"),
                        url,
                        format!(
                            "`{scheme}://` is no database this library knows; use one of {}",
                            DATABASE_SCHEMES
                                .iter()
                                .map(|s| format!("{s}://"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        self.validate_state()?;
        let h = &self.health_check;
        if h.query.trim().is_empty() {
            return Err(ConfigError::invalid(
                "health_check.query",
                &h.query,
                "must not be empty",
            ));
        }
        if h.failure_threshold == 0 {
            return Err(ConfigError::invalid(
                "health_check.failure_threshold",
                h.failure_threshold,
                "must be at least 1",
            ));
        }
        if h.recovery_threshold == 0 {
            return Err(ConfigError::invalid(
                "health_check.recovery_threshold",
                h.recovery_threshold,
                "must be at least 1",
            ));
        }
        if h.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "health_check.timeout",
                duration::format(h.timeout),
                "must be more than 0",
            ));
        }
        if let Schedule::Every(interval) = h.interval
            && interval < MIN_INTERVAL
        {
            return Err(ConfigError::invalid(
                "health_check.interval",
                duration::format(interval),
                "must be at least 10ms, or \"disabled\"",
            ));
        }
        if let Some(confirm) = h.confirm_timeout
            && confirm < MIN_INTERVAL
        {
            return Err(ConfigError::invalid(
                "health_check.confirm_timeout",
                duration::format(confirm),
                "must be at least 10ms",
            ));
        }
        if let Some(fast) = h.fast_interval {
            if fast < MIN_INTERVAL {
                return Err(ConfigError::invalid(
                    "health_check.fast_interval",
                    duration::format(fast),
                    "must be at least 10ms",
                ));
            }
            if let Schedule::Every(interval) = h.interval
                && fast > interval
            {
                return Err(ConfigError::invalid(
                    "health_check.fast_interval",
                    duration::format(fast),
                    format!(
                        "must be at most health_check.interval ({}): confirming checks come faster than \
                         periodic ones",
                        duration::format(interval)
                    ),
                ));
            }
        }
        let mut bounded = vec![
            ("health_check.timeout", h.timeout),
            ("health_check.fast_interval", h.effective_fast_interval()),
            ("state.timeout", self.state.timeout),
            (
                "failover.max_replication_lag",
                self.failover.max_replication_lag,
            ),
        ];
        if let Schedule::Every(interval) = h.interval {
            bounded.push(("health_check.interval", interval));
        }
        if let Some(confirm) = h.confirm_timeout {
            bounded.push(("health_check.confirm_timeout", confirm));
        }
        for (key, value) in bounded {
            if value > MAX_DURATION {
                return Err(ConfigError::invalid(
                    key,
                    duration::format(value),
                    "must be at most 1h (a longer one is surely a mistake)",
                ));
            }
        }
        if self.state.ttl > MAX_TTL {
            return Err(ConfigError::invalid(
                "state.ttl",
                duration::format(self.state.ttl),
                "must be at most 30 days",
            ));
        }
        Ok(())
    }
}

impl Config {
    fn validate_state(&self) -> Result<(), ConfigError> {
        let s = &self.state;
        validate_redis_topology(s)?;
        match s.store {
            StoreKind::Redis
                if s.url.is_none() && !(s.sentinels.is_empty() && s.cluster.is_empty()) => {}
            StoreKind::Redis | StoreKind::Memcached => {
                let Some(url) = &s.url else {
                    return Err(ConfigError::invalid(
                        "state.url",
                        "",
                        format!("the {} store needs a URL", s.store),
                    ));
                };
                let scheme = url.scheme();
                let allowed: &[&str] = match s.store {
                    StoreKind::Redis => &["redis", "rediss", "redis+unix", "unix"],
                    _ => &["memcache", "memcached", "tcp"],
                };
                if !allowed.contains(&scheme.as_str()) {
                    return Err(ConfigError::invalid(
                        "state.url",
                        url,
                        format!(
                            "the {} store takes {} URLs",
                            s.store,
                            allowed.join(":// or ")
                        ),
                    ));
                }
            }
            StoreKind::File
                if s.path
                    .as_ref()
                    .is_none_or(|p| p.as_os_str().to_string_lossy().trim().is_empty()) =>
            {
                return Err(ConfigError::invalid(
                    "state.path",
                    s.path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    "the file store needs a path",
                ));
            }
            StoreKind::File | StoreKind::Memory => {}
        }
        if s.prefix.trim().is_empty() {
            return Err(ConfigError::invalid(
                "state.prefix",
                &s.prefix,
                "must not be empty",
            ));
        }
        if s.ttl < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "state.ttl",
                duration::format(s.ttl),
                "must be at least 1s",
            ));
        }
        if s.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "state.timeout",
                duration::format(s.timeout),
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

/// The Redis topology settings: `url`, `sentinels` + `master_name` (+ `node_auth`) and `cluster`
/// exclude each other, name only `redis`/`rediss` URLs, and are for the `redis` store only.
fn validate_redis_topology(s: &StateSettings) -> Result<(), ConfigError> {
    let shown = |nodes: &RedisNodes| {
        nodes
            .urls()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let given: Vec<(&str, String)> = [
        s.url.as_ref().map(|u| ("state.url", u.to_string())),
        (!s.sentinels.is_empty()).then(|| ("state.sentinels", shown(&s.sentinels))),
        (!s.cluster.is_empty()).then(|| ("state.cluster", shown(&s.cluster))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if s.store != StoreKind::Redis {
        let redis_only = [
            (!s.sentinels.is_empty()).then(|| ("state.sentinels", shown(&s.sentinels))),
            (!s.cluster.is_empty()).then(|| ("state.cluster", shown(&s.cluster))),
            s.master_name.clone().map(|n| ("state.master_name", n)),
            s.node_auth
                .as_ref()
                .map(|u| ("state.node_auth", u.to_string())),
        ];
        if let Some((key, value)) = redis_only.into_iter().flatten().next() {
            return Err(ConfigError::invalid(
                key,
                value,
                format!("only the redis store takes it (store is {})", s.store),
            ));
        }
        return Ok(());
    }
    if let [(first, value), (second, _), ..] = given.as_slice() {
        return Err(ConfigError::invalid(
            *first,
            value,
            format!("`{first}` and `{second}` exclude each other: give one of them"),
        ));
    }
    for (key, nodes) in [
        ("state.sentinels", &s.sentinels),
        ("state.cluster", &s.cluster),
    ] {
        for (i, url) in nodes.urls().iter().enumerate() {
            if !matches!(url.scheme().as_str(), "redis" | "rediss") {
                return Err(ConfigError::invalid(
                    format!("{key}[{i}]"),
                    url,
                    "takes redis:// or rediss:// URLs",
                ));
            }
        }
    }
    match (&s.master_name, s.sentinels.is_empty()) {
        (None, false) => {
            return Err(ConfigError::invalid(
                "state.master_name",
                "",
                "`state.sentinels` needs the name Sentinel monitors the primary under",
            ));
        }
        (Some(name), true) => {
            return Err(ConfigError::invalid(
                "state.master_name",
                name,
                "needs `state.sentinels`",
            ));
        }
        (Some(name), false) if name.trim().is_empty() => {
            return Err(ConfigError::invalid(
                "state.master_name",
                name,
                "must not be empty",
            ));
        }
        _ => {}
    }
    if let Some(auth) = &s.node_auth {
        if s.sentinels.is_empty() {
            return Err(ConfigError::invalid(
                "state.node_auth",
                auth,
                "needs `state.sentinels` (with `url` or `cluster`, the URL carries the AUTH)",
            ));
        }
        if !matches!(auth.scheme().as_str(), "redis" | "rediss") {
            return Err(ConfigError::invalid(
                "state.node_auth",
                auth,
                "takes a redis:// or rediss:// URL",
            ));
        }
    }
    if !s.cluster.is_empty() && s.prefix.contains(['{', '}']) {
        return Err(ConfigError::invalid(
            "state.prefix",
            &s.prefix,
            "with `state.cluster` the prefix becomes the keys' hash tag `{prefix}`: no braces in it",
        ));
    }
    Ok(())
}

/// The URLs of a comma-separated list: a comma starts a new URL only when a scheme (`redis://`,
/// `rediss://`) follows it, so a comma inside a password (`redis://:a,b@h`) never cuts a URL in two
/// (which would show the piece before the comma, unmasked, in an error).
fn split_urls(text: &str) -> Vec<&str> {
    // A trailing comma ends the list (a URL ends with its host or path, never with a comma).
    let text = text.trim().trim_end_matches(',');
    let mut starts = vec![0];
    for (at, _) in text.match_indices(',') {
        let rest = text[at + 1..].trim_start();
        let scheme_len = rest.find("://").filter(|&end| {
            end > 0
                && rest[..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if scheme_len.is_some() {
            starts.push(at + 1);
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = starts.get(i + 1).map_or(text.len(), |&next| next - 1);
            text[start..end].trim()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_splits_a_url_list_only_before_a_scheme() {
        assert_eq!(
            split_urls("redis://:a,b@h1:1, rediss://u:c,d,e@h2:2,"),
            ["redis://:a,b@h1:1", "rediss://u:c,d,e@h2:2"]
        );
        assert_eq!(split_urls(" , "), Vec::<&str>::new());
    }

    fn url(text: &str) -> DatabaseUrl {
        DatabaseUrl::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn valid() -> Config {
        Config::with_databases(
            ("main", url("sqlite:///tmp/main.db")),
            ("standby", url("sqlite:///tmp/standby.db")),
        )
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = Config::default();
        assert!(c.failover.enabled);
        assert_eq!(c.failover.primary, "mysql");
        assert_eq!(c.failover.failover.names(), ["mysql_failover"]);
        assert_eq!(c.failover.blocking, "blocking_connection");
        assert_eq!(c.health_check.query, "SELECT 1");
        assert_eq!(c.health_check.failure_threshold, 3);
        assert_eq!(c.health_check.timeout, Duration::from_secs(2));
        assert_eq!(
            c.health_check.interval,
            Schedule::Every(Duration::from_secs(1))
        );
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn each_bad_setting_names_its_key_and_value() {
        type Mutation = fn(&mut Config);
        let cases: [(Mutation, &str, &str); 11] = [
            (
                |c| c.health_check.failure_threshold = 0,
                "health_check.failure_threshold",
                "0",
            ),
            (
                |c| c.health_check.recovery_threshold = 0,
                "health_check.recovery_threshold",
                "0",
            ),
            (
                |c| c.health_check.timeout = Duration::ZERO,
                "health_check.timeout",
                "0s",
            ),
            (
                |c| c.health_check.interval = Schedule::Every(Duration::from_millis(5)),
                "health_check.interval",
                "5ms",
            ),
            (
                |c| c.health_check.fast_interval = Some(Duration::from_millis(1)),
                "health_check.fast_interval",
                "1ms",
            ),
            (
                |c| c.health_check.timeout = Duration::from_secs(7200),
                "health_check.timeout",
                "2h",
            ),
            (
                |c| c.state.ttl = Duration::from_secs(31 * 24 * 3600),
                "state.ttl",
                "1month 13h 26m 24s",
            ),
            (
                |c| c.failover.primary = "nowhere".into(),
                "failover.primary",
                "nowhere",
            ),
            (
                |c| c.failover.failover = "main".into(),
                "failover.failover",
                "main",
            ),
            (
                |c| c.failover.blocking = "main".into(),
                "failover.blocking",
                "main",
            ),
            (
                |c| c.health_check.query = " ".into(),
                "health_check.query",
                " ",
            ),
        ];
        for (mutate, key, value) in cases {
            let mut config = valid();
            mutate(&mut config);
            match config.validate() {
                Err(ConfigError::InvalidSetting {
                    key: k, value: v, ..
                }) => {
                    assert_eq!((k.as_str(), v.as_str()), (key, value));
                }
                other => panic!("{key}: expected an invalid setting, got {other:?}"),
            }
        }
    }

    #[test]
    fn schedule_accepts_the_seeds_frequencies() {
        assert_eq!(
            Schedule::parse("everySecond"),
            Ok(Schedule::Every(Duration::from_secs(1)))
        );
        assert_eq!(
            Schedule::parse("everyMinute"),
            Ok(Schedule::Every(Duration::from_secs(60)))
        );
        assert_eq!(Schedule::parse("disabled"), Ok(Schedule::Disabled));
        assert_eq!(
            Schedule::parse("100ms"),
            Ok(Schedule::Every(Duration::from_millis(100)))
        );
        assert!(Schedule::parse("hourly").is_err());
    }

    #[test]
    fn monitored_lists_roles_and_writable_defaults() {
        let mut config = valid();
        config.databases.insert(
            "reporting".into(),
            DatabaseSettings::new(url("sqlite:///tmp/r.db")),
        );
        let monitored = config.monitored();
        let roles: Vec<_> = monitored
            .iter()
            .map(|m| (m.name, m.role, m.require_writable))
            .collect();
        assert_eq!(
            roles,
            [
                ("main", Role::Primary, true),
                ("standby", Role::Failover, true),
                ("reporting", Role::Other, false)
            ]
        );
    }

    #[test]
    fn serialized_config_masks_passwords() {
        let mut config = valid();
        config.databases.insert(
            "reporting".into(),
            DatabaseSettings::new(url("postgres://u:topsecret@h/db")),
        );
        let json = serde_json::to_string(&config).unwrap_or_default();
        assert!(json.contains("u:****@h"), "{json}");
        assert!(!json.contains("topsecret"));
    }

    fn redis_state() -> Config {
        let mut config = valid();
        config.state.store = StoreKind::Redis;
        config
    }

    fn nodes(urls: &[&str]) -> RedisNodes {
        RedisNodes::from(urls.iter().map(|u| url(u)).collect::<Vec<_>>())
    }

    fn invalid(config: &Config) -> (String, String) {
        match config.validate() {
            Err(ConfigError::InvalidSetting { key, value, reason }) => {
                (key, format!("{value} {reason}"))
            }
            Ok(()) => panic!("accepted"),
        }
    }

    #[test]
    fn sentinel_and_cluster_settings_are_checked() {
        let mut config = redis_state();
        config.state.sentinels = nodes(&["redis://:sentpw@h1:26379", "redis://:sentpw@h2:26379"]);
        let (key, text) = invalid(&config);
        assert_eq!(key, "state.master_name", "{text}");
        config.state.master_name = Some("mymaster".into());
        config.state.node_auth = Some(url("redis://app:nodepw@mymaster/2"));
        assert!(config.validate().is_ok());

        config.state.url = Some(url("redis://:urlpw@h/0"));
        let (key, text) = invalid(&config);
        assert_eq!(key, "state.url");
        assert!(text.contains("`state.url` and `state.sentinels`"), "{text}");
        assert!(
            !text.contains("urlpw") && !text.contains("sentpw"),
            "{text}"
        );
        config.state.url = None;

        config.state.cluster = nodes(&["redis://:clpw@h1:7000"]);
        let (key, text) = invalid(&config);
        assert_eq!(key, "state.sentinels");
        assert!(
            text.contains("`state.sentinels` and `state.cluster`"),
            "{text}"
        );
        assert!(!text.contains("clpw") && !text.contains("sentpw"), "{text}");

        let mut config = redis_state();
        config.state.cluster = nodes(&["redis://:clpw@h1:7000", "http://:clpw@h2:7001"]);
        let (key, text) = invalid(&config);
        assert_eq!(key, "state.cluster[1]");
        assert!(!text.contains("clpw"), "{text}");
        config.state.cluster = nodes(&["redis://:clpw@h1:7000", "redis://:clpw@h2:7001"]);
        assert!(config.validate().is_ok());
        config.state.prefix = "a{b}".into();
        assert_eq!(invalid(&config).0, "state.prefix");
        config.state.prefix = "app".into();
        config.state.node_auth = Some(url("redis://:pw@x/0"));
        assert_eq!(invalid(&config).0, "state.node_auth");

        let mut config = redis_state();
        config.state.master_name = Some("mymaster".into());
        assert_eq!(invalid(&config).0, "state.master_name");

        let mut config = valid();
        config.state.store = StoreKind::Memcached;
        config.state.url = Some(url("memcache://h:11211"));
        config.state.cluster = nodes(&["redis://h1:7000"]);
        assert_eq!(invalid(&config).0, "state.cluster");
    }

    #[test]
    fn redis_nodes_read_a_list_or_comma_separated_text() {
        #[derive(Deserialize)]
        struct Holder {
            nodes: RedisNodes,
        }
        let list: Holder = toml::from_str("nodes = [\"redis://h1:1\", \"redis://h2:2\"]")
            .unwrap_or_else(|e| panic!("{e}"));
        let text: Holder = toml::from_str("nodes = \"redis://h1:1, redis://h2:2\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(list.nodes, text.nodes);
        assert_eq!(list.nodes.urls().len(), 2);
        let bad = toml::from_str::<Holder>("nodes = [\"redis://:pw@[x:1\"]");
        let message = bad
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(
            message.contains("not a URL") && !message.contains(":pw@"),
            "{message}"
        );
    }
}
