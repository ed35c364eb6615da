//! Probes for sqlx databases: connect, run the health query, say whether the connection accepts writes.
//!
//! Every check opens a new connection (what failing over needs to know is whether a new connection can be
//! made), bounds connect and query together by the timeout, and asks the server to stop the query at the
//! timeout too, so nothing the probe gave up on keeps running there.
// Built without a driver feature, every scheme is refused at setup and the check code is unused.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(unused, unreachable_code)
)]

use crate::error::ProbeSetupError;
use dbfailover_core::url::Redactor;
use dbfailover_core::{Config, DatabaseUrl};
use dbfailover_engine::{FailoverSystemBuilder, Probe, ProbeError, ProbeFuture, ProbeReport};
use std::time::Duration;

/// The drivers compiled into this build, for error messages.
pub fn available_drivers() -> String {
    let drivers = [
        (cfg!(feature = "sqlite"), "sqlite"),
        (cfg!(feature = "postgres"), "postgres"),
        (cfg!(feature = "mysql"), "mysql"),
    ];
    let on: Vec<&str> = drivers
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
    if on.is_empty() {
        "none".to_owned()
    } else {
        on.join(", ")
    }
}

/// The URL as the driver takes it: `mariadb:` is the `mysql:` driver. Only the scheme is rewritten.
pub fn driver_url(url: &str) -> String {
    match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url.to_owned(),
    }
}

/// A sqlx probe of one database.
pub struct SqlxProbe {
    target: Target,
    query: String,
    connection: String,
    /// The missing privilege was reported (once per probe).
    privilege_reported: std::sync::atomic::AtomicBool,
    /// Removes this URL's password from driver and server texts, whatever form they echo it in.
    redactor: Redactor,
}

enum Target {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::sqlite::SqliteConnectOptions),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::postgres::PgConnectOptions),
    #[cfg(feature = "mysql")]
    MySql(sqlx::mysql::MySqlConnectOptions),
    /// Without a driver feature no target can be made (every scheme is refused at setup).
    #[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
    Nothing(std::convert::Infallible),
}

impl SqlxProbe {
    /// A probe of the database at `url` (`sqlite:`, `postgres:`/`postgresql:`, `mysql:`/`mariadb:`),
    /// running `query` as its health query.
    pub fn new(connection: &str, url: &DatabaseUrl, query: &str) -> Result<Self, ProbeSetupError> {
        let scheme = url.scheme();
        let bad_url = |source| ProbeSetupError::BadUrl {
            connection: connection.to_owned(),
            url: url.masked(),
            source,
        };
        let target = match scheme.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                use std::str::FromStr;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url.expose())
                    .map_err(bad_url)?
                    // A missing file is a failed check, never a new empty database.
                    .create_if_missing(false);
                Target::Sqlite(options)
            }
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                use std::str::FromStr;
                let options =
                    sqlx::postgres::PgConnectOptions::from_str(url.expose()).map_err(bad_url)?;
                Target::Postgres(options)
            }
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => {
                use std::str::FromStr;
                let normalized = driver_url(url.expose());
                let options =
                    sqlx::mysql::MySqlConnectOptions::from_str(&normalized).map_err(bad_url)?;
                Target::MySql(options)
            }
            _ => {
                return Err(ProbeSetupError::UnsupportedScheme {
                    connection: connection.to_owned(),
                    scheme,
                    available: available_drivers(),
                });
            }
        };
        Ok(Self {
            target,
            query: query.to_owned(),
            connection: connection.to_owned(),
            privilege_reported: std::sync::atomic::AtomicBool::new(false),
            redactor: {
                let mut redactor = Redactor::new();
                redactor.add_url(url);
                redactor
            },
        })
    }

    /// An error's text with URLs masked and this database's password removed by value.
    fn text_of(&self, error: impl std::fmt::Display) -> String {
        self.redactor.redact(&error.to_string())
    }

    /// `context` (what was being done) failed with the driver's `error`: kept as the typed source,
    /// its text redacted for the reason operators see.
    fn failure(&self, context: &str, error: sqlx::Error) -> ProbeError {
        ProbeError::with_source(context, self.text_of(&error), error)
    }

    async fn run(&self, timeout: Duration) -> Result<ProbeReport, ProbeError> {
        let work = async {
            match &self.target {
                #[cfg(feature = "sqlite")]
                Target::Sqlite(options) => check_sqlite(options, &self.query, self).await,
                #[cfg(feature = "postgres")]
                Target::Postgres(options) => {
                    check_postgres(options, &self.query, timeout, self).await
                }
                #[cfg(feature = "mysql")]
                Target::MySql(options) => check_mysql(options, &self.query, timeout, self).await,
                #[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
                Target::Nothing(never) => match *never {},
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::new(format!(
                "timed out after {}",
                dbfailover_core::duration::format(timeout)
            ))),
        }
    }
}

impl SqlxProbe {
    /// Says once, at warn, that a role query was refused, which privilege it needs, and how to give
    /// the checks credentials that have it.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    fn missing_privilege(&self, what: &str, privilege: &str, error: &str) {
        use std::sync::atomic::Ordering;
        if !self.privilege_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                connection = %self.connection,
                %error,
                "{what} needs {privilege}; without it that part of the node's role is unknown \
                 (set databases.{}.monitor_url to credentials that have it)",
                self.connection
            );
        }
    }
}

impl Probe for SqlxProbe {
    fn check(&self, timeout: Duration) -> ProbeFuture<'_> {
        Box::pin(self.run(timeout))
    }
}

#[cfg(feature = "sqlite")]
async fn check_sqlite(
    options: &sqlx::sqlite::SqliteConnectOptions,
    query: &str,
    probe: &SqlxProbe,
) -> Result<ProbeReport, ProbeError> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = options
        .connect()
        .await
        .map_err(|e| probe.failure("connect", e))?;
    let result = sqlx::query(query).execute(&mut conn).await;
    let query_only: Result<i64, _> = sqlx::query_scalar("PRAGMA query_only")
        .fetch_one(&mut conn)
        .await;
    // Closing is best effort; the connection is dropped either way.
    let _ = conn.close().await;
    result.map_err(|e| probe.failure("health query", e))?;
    Ok(ProbeReport {
        writable: query_only.ok().map(|q| q == 0),
        replication: None,
    })
}

#[cfg(feature = "postgres")]
async fn check_postgres(
    options: &sqlx::postgres::PgConnectOptions,
    query: &str,
    timeout: Duration,
    probe: &SqlxProbe,
) -> Result<ProbeReport, ProbeError> {
    use sqlx::{ConnectOptions, Connection};
    // The server stops the health query at the timeout too.
    let millis = timeout.as_millis().max(1).to_string();
    let options = options
        .clone()
        .options([("statement_timeout", millis.as_str())]);
    let mut conn = options
        .connect()
        .await
        .map_err(|e| probe.failure("connect", e))?;
    let outcome = async {
        sqlx::query(query)
            .execute(&mut conn)
            .await
            .map_err(|e| probe.failure("health query", e))?;
        // Role, writability, cluster identity and timeline in one round trip. The cluster identity
        // needs `pg_control_system()` (superusers and `pg_monitor` by default): without it, the
        // role and writability still come.
        let full: Result<PgRoleRow, _> =
            sqlx::query_as(&format!("{PG_ROLE_QUERY}, {PG_IDENTITY_COLUMNS}"))
                .fetch_one(&mut conn)
                .await;
        let (in_recovery, read_only, lag_ms, cluster, timeline) = match full {
            Ok(row) => row,
            Err(error) => {
                probe.missing_privilege(
                    "reading the cluster identity and timeline",
                    "pg_monitor (or a superuser)",
                    &probe.text_of(&error),
                );
                let (in_recovery, read_only, lag_ms): (bool, String, Option<f64>) =
                    sqlx::query_as(PG_ROLE_QUERY)
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|e| probe.failure("writability query", e))?;
                (in_recovery, read_only, lag_ms, None, None)
            }
        };
        let lag = lag_ms
            .filter(|ms| ms.is_finite())
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0));
        Ok(ProbeReport {
            writable: Some(!in_recovery && read_only != "on"),
            replication: Some(dbfailover_core::Replication {
                replicating: in_recovery,
                cluster,
                timeline: timeline.and_then(|t| u32::try_from(t).ok()),
                lag: if in_recovery { lag } else { None },
                gtid: None,
            }),
        })
    }
    .await;
    let _ = conn.close().await;
    outcome
}

/// A PostgreSQL node's role, writability and, for a standby, its replication lag in milliseconds: 0
/// when it replayed everything it received, else the age of the last transaction it replayed; unknown
/// (NULL) when it is not streaming from a writer (cut off, its data stands still), or when the role
/// may not see its WAL receiver (`pg_read_all_stats`, part of `pg_monitor`).
#[cfg(feature = "postgres")]
const PG_ROLE_QUERY: &str = "SELECT pg_is_in_recovery(), \
    current_setting('transaction_read_only'), \
    CASE WHEN pg_is_in_recovery() THEN \
        CASE WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') \
            THEN NULL \
        WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() \
            THEN 0::float8 \
            ELSE (EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp())) * 1000)::float8 \
        END \
    END";

/// In recovery, `transaction_read_only`, lag (ms), cluster identity, timeline.
#[cfg(feature = "postgres")]
type PgRoleRow = (bool, String, Option<f64>, Option<String>, Option<i32>);

/// Its cluster identity (`system_identifier`: superusers and `pg_monitor`) and timeline: a writer's
/// from its WAL position, a standby's from its WAL receiver (or its last checkpoint).
#[cfg(feature = "postgres")]
const PG_IDENTITY_COLUMNS: &str = "(SELECT system_identifier::text FROM pg_control_system()), \
    CASE WHEN pg_is_in_recovery() \
        THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), \
                      (SELECT timeline_id FROM pg_control_checkpoint())) \
        ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
    END";

#[cfg(feature = "mysql")]
async fn check_mysql(
    options: &sqlx::mysql::MySqlConnectOptions,
    query: &str,
    timeout: Duration,
    probe: &SqlxProbe,
) -> Result<ProbeReport, ProbeError> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = options
        .connect()
        .await
        .map_err(|e| probe.failure("connect", e))?;
    let outcome = async {
        // MariaDB: max_statement_time (seconds); MySQL: max_execution_time (ms). Best effort.
        let seconds = format!("{:.3}", timeout.as_secs_f64());
        if sqlx::query(&format!("SET SESSION max_statement_time = {seconds}"))
            .execute(&mut conn)
            .await
            .is_err()
        {
            let _ = sqlx::query(&format!(
                "SET SESSION max_execution_time = {}",
                timeout.as_millis().max(1)
            ))
            .execute(&mut conn)
            .await;
        }
        sqlx::query(query)
            .execute(&mut conn)
            .await
            .map_err(|e| probe.failure("health query", e))?;
        let read_only: i64 = sqlx::query_scalar("SELECT CAST(@@global.read_only AS SIGNED)")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| probe.failure("writability query", e))?;
        // MySQL has super_read_only; MariaDB does not: an error here means "not set".
        let super_read_only: i64 =
            sqlx::query_scalar("SELECT CAST(@@global.super_read_only AS SIGNED)")
                .fetch_one(&mut conn)
                .await
                .unwrap_or(0);
        // A running replica thread is replication evidence (`read_only` alone may be maintenance).
        // `SHOW REPLICA STATUS` needs REPLICA MONITOR / REPLICATION CLIENT: without it, unknown.
        let status = match sqlx::query("SHOW REPLICA STATUS")
            .fetch_all(&mut conn)
            .await
        {
            Ok(rows) => Some(rows),
            Err(error) => {
                probe.missing_privilege(
                    "SHOW REPLICA STATUS (the replication evidence)",
                    "REPLICA MONITOR or REPLICATION CLIENT",
                    &probe.text_of(&error),
                );
                None
            }
        };
        // Configured as a replica (a row in SHOW REPLICA STATUS, its threads running or stopped for
        // maintenance) is replication evidence; only RESET SLAVE ALL (a promotion) removes the row.
        let replicating = status.as_ref().map(|rows| !rows.is_empty());
        let running = status.as_ref().is_some_and(|rows| {
            rows.iter().any(|row| {
                use sqlx::Row;
                ["Slave_SQL_Running", "Replica_SQL_Running"]
                    .iter()
                    .any(|column| {
                        row.try_get::<String, _>(*column)
                            .is_ok_and(|v| v.eq_ignore_ascii_case("yes"))
                    })
            })
        });
        let lag = status
            .as_ref()
            .and_then(|rows| {
                use sqlx::Row;
                let row = rows.first()?;
                let seconds = row
                    .try_get::<Option<u64>, _>("Seconds_Behind_Master")
                    .ok()
                    .flatten()
                    .or_else(|| {
                        row.try_get::<Option<i64>, _>("Seconds_Behind_Master")
                            .ok()
                            .flatten()
                            .and_then(|s| u64::try_from(s).ok())
                    })?;
                Some(Duration::from_secs(seconds))
            })
            // A stopped replica's data does not move: its lag is unknown, never 0.
            .filter(|_| running);
        // MariaDB's GTID position (MySQL has no such variable: unknown there).
        let gtid: Option<String> = sqlx::query_scalar("SELECT @@global.gtid_current_pos")
            .fetch_one(&mut conn)
            .await
            .ok();
        Ok(ProbeReport {
            // A replica takes no writes from the application, whatever `read_only` says (MariaDB
            // replicas are writable by default).
            writable: Some(read_only == 0 && super_read_only == 0 && replicating != Some(true)),
            replication: replicating.map(|replicating| dbfailover_core::Replication {
                replicating,
                cluster: None,
                timeline: None,
                lag: if replicating { lag } else { None },
                gtid: gtid.filter(|g| !g.is_empty()),
            }),
        })
    }
    .await;
    let _ = conn.close().await;
    outcome
}

/// Adds a [`SqlxProbe`] for every database of `config` to `builder`, each running the configured
/// health query.
pub fn with_probes(
    mut builder: FailoverSystemBuilder,
    config: &Config,
) -> Result<FailoverSystemBuilder, ProbeSetupError> {
    for (name, settings) in &config.databases {
        let probe = SqlxProbe::new(name, settings.check_url(), &config.health_check.query)?;
        builder = builder.probe(name.clone(), probe);
    }
    Ok(builder)
}
