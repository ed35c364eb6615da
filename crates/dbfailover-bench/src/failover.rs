//! The failover benchmark: two real servers (PostgreSQL, then MariaDB), 1 or 8 clients each sending a
//! `SELECT name FROM whoami` back to back, a real fault of the primary (kill -9 or a hang: SIGSTOP of
//! every process), and what the clients saw. The same clients and faults run through dbfailover's
//! routed pool (plain `with_connection`, and `with_retry(RetryPolicy::reads(), ..)`) and through
//! HAProxy (with a plain sqlx pool, which retries nothing) at its plain settings and at its best ones.
//!
//! Per run: **outage** from the fault to the first query served by the failover, for the last client
//! to get one; **restore** from the primary answering again (the first query on a new connection
//! straight to it that succeeds after the restart or SIGCONT) to the first query served by the
//! primary through the router, for the last client to get one; **failed** queries of
//! all clients from the fault to the restore, and after it; the **longest query** in flight between
//! the fault and the end of the outage; and how long a query started before the switch (the first
//! answer from the failover) **outlived** it.

use crate::plot;
use dbfailover::sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use dbfailover::sqlx::postgres::PgPoolOptions;
use dbfailover::sqlx::{self, ConnectOptions, Connection, MySql, MySqlPool, PgPool, Postgres};
use dbfailover::{Config, FailoverHandle, RetryPolicy, RoutedError, RoutedPool, Schedule};
use dbfailover_tests::server::DbServer;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// What one query saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Primary,
    Failover,
    Refused,
    Failed,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Self::Primary => 1,
            Self::Failover => 2,
            Self::Refused => 3,
            Self::Failed => 4,
        }
    }
}

/// The database servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Db {
    Postgres,
    Mariadb,
}

impl Db {
    fn label(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::Mariadb => "MariaDB",
        }
    }
}

/// The fault injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fault {
    /// kill -9 of every process of the primary; restored by restarting it.
    Kill,
    /// SIGSTOP of every process of the primary; restored by SIGCONT.
    Hang,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Self::Kill => "kill -9",
            Self::Hang => "hang",
        }
    }
}

/// Who routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Router {
    /// The routed pool, `with_connection`.
    Dbfailover,
    /// The routed pool, `with_retry(RetryPolicy::reads(), ..)`.
    DbfailoverRetry,
    /// HAProxy with plain checks.
    HaproxyPlain,
    /// HAProxy with `fastinter`, `downinter`, `observe layer4`, `error-limit 1 on-error fastinter`.
    HaproxyBest,
}

impl Router {
    const ALL: [Self; 4] = [
        Self::Dbfailover,
        Self::DbfailoverRetry,
        Self::HaproxyPlain,
        Self::HaproxyBest,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Dbfailover => "dbfailover",
            Self::DbfailoverRetry => "dbfailover + retry",
            Self::HaproxyPlain => "HAProxy plain",
            Self::HaproxyBest => "HAProxy best",
        }
    }

    fn is_haproxy(self) -> bool {
        matches!(self, Self::HaproxyPlain | Self::HaproxyBest)
    }
}

#[derive(Debug, Clone, Serialize)]
struct Scenario {
    db: Db,
    fault: Fault,
    clients: usize,
    router: Router,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    /// Fault to the first answer of the failover, for the last client to get one.
    outage_ms: f64,
    /// Fault to the first answer of the failover, for the first client to get one.
    first_answer_ms: f64,
    /// The primary answering again (a direct query on a new connection) to its first answer through
    /// the router, for the last client to get one.
    restore_ms: f64,
    /// From the restart or SIGCONT to the primary answering a direct query.
    primary_back_ms: f64,
    /// Queries that failed (or were refused) between the fault and the restore.
    failed_during_fault: usize,
    /// Queries that failed (or were refused) after the restore.
    failed_after_restore: usize,
    /// The longest query in flight between the fault and the end of the outage.
    longest_query_ms: f64,
    /// How long a query started before the first answer of the failover went on after it.
    outlived_switch_ms: f64,
    queries: usize,
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: Scenario,
    runs: Vec<Run>,
    median_outage_ms: f64,
    median_restore_ms: f64,
    median_failed_during_fault: f64,
    median_failed_after_restore: f64,
    median_longest_query_ms: f64,
    median_outlived_switch_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    reps: usize,
    dbfailover_settings: &'static str,
    haproxy_plain_settings: String,
    haproxy_best_settings: String,
    mariadb_haproxy_check: String,
    summaries: Vec<Summary>,
}

const WHOAMI: &str = "SELECT name FROM whoami";
/// A client waits this long after a failed query before the next one (no busy loop on errors).
const PAUSE_AFTER_ERROR: Duration = Duration::from_millis(5);

/// The pool the clients share.
enum Pools {
    RoutedPg(RoutedPool<Postgres>, FailoverHandle),
    RoutedMy(RoutedPool<MySql>, FailoverHandle),
    PlainPg(PgPool),
    PlainMy(MySqlPool),
}

struct Client {
    pools: Pools,
    retry: bool,
}

macro_rules! routed_whoami {
    ($routed:expr, $retry:expr) => {
        if $retry {
            $routed
                .with_retry(RetryPolicy::reads(), async |conn| {
                    sqlx::query_scalar::<_, String>(WHOAMI)
                        .fetch_one(conn)
                        .await
                })
                .await
        } else {
            $routed
                .with_connection(async |conn| {
                    sqlx::query_scalar::<_, String>(WHOAMI)
                        .fetch_one(conn)
                        .await
                })
                .await
        }
    };
}

fn plain_error(source: sqlx::Error) -> RoutedError {
    RoutedError::Database {
        connection: "haproxy".into(),
        connection_error: true,
        source,
    }
}

impl Client {
    async fn query(&self) -> Outcome {
        let answer = match &self.pools {
            Pools::RoutedPg(routed, _) => routed_whoami!(routed, self.retry),
            Pools::RoutedMy(routed, _) => routed_whoami!(routed, self.retry),
            Pools::PlainPg(pool) => sqlx::query_scalar::<_, String>(WHOAMI)
                .fetch_one(pool)
                .await
                .map_err(plain_error),
            Pools::PlainMy(pool) => sqlx::query_scalar::<_, String>(WHOAMI)
                .fetch_one(pool)
                .await
                .map_err(plain_error),
        };
        match answer.as_deref() {
            Ok("primary_db") => Outcome::Primary,
            Ok(_) => Outcome::Failover,
            Err(RoutedError::AllConnectionsUnavailable { .. }) => Outcome::Refused,
            Err(_) => Outcome::Failed,
        }
    }

    async fn close(&self) {
        match &self.pools {
            Pools::RoutedPg(routed, engine) => {
                engine.clone().shutdown().await;
                for node in 0..2 {
                    if let Some(pool) = routed.pool_of(node) {
                        pool.close().await;
                    }
                }
            }
            Pools::RoutedMy(routed, engine) => {
                engine.clone().shutdown().await;
                for node in 0..2 {
                    if let Some(pool) = routed.pool_of(node) {
                        pool.close().await;
                    }
                }
            }
            Pools::PlainPg(pool) => pool.close().await,
            Pools::PlainMy(pool) => pool.close().await,
        }
    }
}

/// The median of the finite values (NaN when there is none).
fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

const DBFAILOVER_SETTINGS: &str = "interval 100 ms, failure_threshold 3, recovery_threshold 2, \
     timeout 300 ms, fast_interval 20 ms; pool acquire timeout 300 ms, 10 connections";

fn config(primary: &DbServer, failover: &DbServer) -> Config {
    let mut config = Config::with_databases(
        (primary.name(), primary.url()),
        (failover.name(), failover.url()),
    );
    config.failover.blocking = "blocking".into();
    let h = &mut config.health_check;
    h.interval = Schedule::Every(Duration::from_millis(100));
    h.timeout = Duration::from_millis(300);
    h.failure_threshold = 3;
    h.recovery_threshold = 2;
    h.fast_interval = Some(Duration::from_millis(20));
    config
}

struct Haproxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Haproxy {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn haproxy_installed() -> bool {
    Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The check options of both servers.
fn check_options(best: bool) -> &'static str {
    if best {
        "check inter 100ms fall 3 rise 2 fastinter 20ms downinter 100ms observe layer4 \
         error-limit 1 on-error fastinter"
    } else {
        "check inter 100ms fall 3 rise 2"
    }
}

/// How HAProxy checks a MariaDB server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MyCheck {
    /// `option mysql-check user haproxy_check post-41`.
    Login,
    /// A TCP connect.
    Tcp,
}

/// The `listen` section's body (without `bind`).
fn haproxy_backend(db: Db, my_check: MyCheck, best: bool, primary: u16, failover: u16) -> String {
    let check = match (db, my_check) {
        (Db::Postgres, _) => "option pgsql-check user postgres\n",
        (Db::Mariadb, MyCheck::Login) => "option mysql-check user haproxy_check post-41\n",
        (Db::Mariadb, MyCheck::Tcp) => "",
    };
    let options = check_options(best);
    format!(
        "{check}server primary 127.0.0.1:{primary} {options} \
         on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n\
         server failover 127.0.0.1:{failover} {options} on-marked-down shutdown-sessions backup\n"
    )
}

const HAPROXY_DEFAULTS: &str = "defaults\n  mode tcp\n  timeout connect 300ms\n  \
     timeout client 60s\n  timeout server 60s\n  timeout check 300ms\n";

fn start_haproxy(backend: &str) -> Result<Haproxy, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let dir =
        std::env::temp_dir().join(format!("dbfailover-haproxy-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cfg =
        format!("global\n  maxconn 2000\n{HAPROXY_DEFAULTS}listen db\n  bind 127.0.0.1:{port}\n");
    for line in backend.lines() {
        let _ = writeln!(cfg, "  {line}");
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("haproxy.log")).map_err(|e| e.to_string())?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting haproxy: {e}"))?;
    let proxy = Haproxy { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("haproxy did not start:\n{}", proxy.log()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(proxy)
}

/// One query: when it started and ended (ms since the run's origin), and what it saw.
#[derive(Debug, Clone, Copy)]
struct Query {
    start: f64,
    end: f64,
    outcome: Outcome,
}

struct Bed {
    db: Db,
    primary: DbServer,
    failover: DbServer,
    my_check: MyCheck,
}

async fn make_client(
    bed: &Bed,
    router: Router,
    clients: usize,
) -> Result<(Client, Option<Haproxy>), String> {
    let retry = router == Router::DbfailoverRetry;
    let max = u32::try_from(clients.max(10)).unwrap_or(10);
    if !router.is_haproxy() {
        let config = config(&bed.primary, &bed.failover);
        let engine = dbfailover::builder(config.clone())
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?
            .start_in_thread()
            .map_err(|e| e.to_string())?;
        let pools = match bed.db {
            Db::Postgres => Pools::RoutedPg(
                RoutedPool::<Postgres>::connect_lazy(engine.clone(), &config, None)
                    .map_err(|e| e.to_string())?,
                engine,
            ),
            Db::Mariadb => Pools::RoutedMy(
                RoutedPool::<MySql>::connect_lazy(engine.clone(), &config, None)
                    .map_err(|e| e.to_string())?,
                engine,
            ),
        };
        return Ok((Client { pools, retry }, None));
    }
    let backend = haproxy_backend(
        bed.db,
        bed.my_check,
        router == Router::HaproxyBest,
        bed.primary.port(),
        bed.failover.port(),
    );
    let proxy = start_haproxy(&backend)?;
    let url = |scheme: &str| format!("{scheme}://app:app-secret@127.0.0.1:{}/app", proxy.port);
    let acquire = Duration::from_millis(300);
    let pools = match bed.db {
        Db::Postgres => Pools::PlainPg(
            PgPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .connect_lazy(&url("postgres"))
                .map_err(|e| e.to_string())?,
        ),
        Db::Mariadb => Pools::PlainMy(
            MySqlPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .connect_lazy(&url("mysql"))
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok((Client { pools, retry }, Some(proxy)))
}

/// When (ms since `origin`) a query on a new connection straight to `url`, bypassing every router,
/// first succeeds; a few attempts per millisecond at most.
async fn first_direct_answer(db: Db, url: String, origin: Instant) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let attempt = async {
            match db {
                Db::Postgres => {
                    let mut conn = sqlx::PgConnection::connect(&url).await?;
                    let answer = sqlx::query_scalar::<_, String>(WHOAMI)
                        .fetch_one(&mut conn)
                        .await;
                    let _ = conn.close().await;
                    answer
                }
                Db::Mariadb => {
                    let mut conn = sqlx::MySqlConnection::connect(&url).await?;
                    let answer = sqlx::query_scalar::<_, String>(WHOAMI)
                        .fetch_one(&mut conn)
                        .await;
                    let _ = conn.close().await;
                    answer
                }
            }
        };
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
            return ms(origin);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    f64::NAN
}

/// Waits until every client's latest query saw `want`; false after `limit`.
async fn wait_all(last: &[AtomicU8], want: Outcome, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if last
            .iter()
            .all(|l| l.load(Ordering::Relaxed) == want.code())
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

fn ms(origin: Instant) -> f64 {
    origin.elapsed().as_secs_f64() * 1000.0
}

/// One run: warm up, fault, wait for every client to be served by the failover, restore, wait for
/// every client to be served by the primary again.
async fn run_once(
    scenario: &Scenario,
    bed: &mut Bed,
) -> Result<(Run, Vec<(f64, Outcome)>), String> {
    let (client, proxy) = make_client(bed, scenario.router, scenario.clients).await?;
    let client = Arc::new(client);
    let stop = Arc::new(AtomicBool::new(false));
    let last: Arc<Vec<AtomicU8>> =
        Arc::new((0..scenario.clients).map(|_| AtomicU8::new(0)).collect());
    let origin = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..scenario.clients {
        let (client, stop, last) = (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&last));
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = ms(origin);
                let outcome = client.query().await;
                let end = ms(origin);
                seen.push(Query {
                    start,
                    end,
                    outcome,
                });
                last[index].store(outcome.code(), Ordering::Relaxed);
                if matches!(outcome, Outcome::Failed | Outcome::Refused) {
                    tokio::time::sleep(PAUSE_AFTER_ERROR).await;
                }
            }
            seen
        }));
    }
    let finish = async |client: &Client, tasks: Vec<tokio::task::JoinHandle<Vec<Query>>>| {
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in tasks {
            all.push(task.await.unwrap_or_default());
        }
        client.close().await;
        all
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    if !wait_all(&last, Outcome::Primary, Duration::from_secs(10)).await {
        finish(&client, tasks).await;
        let log = proxy.as_ref().map(Haproxy::log).unwrap_or_default();
        return Err(format!(
            "{scenario:?}: the primary does not serve every client\n{log}"
        ));
    }
    let fault_ms = ms(origin);
    match scenario.fault {
        Fault::Kill => tokio::task::block_in_place(|| bed.primary.kill9()),
        Fault::Hang => tokio::task::block_in_place(|| bed.primary.freeze()),
    }
    let switched = wait_all(&last, Outcome::Failover, Duration::from_secs(20)).await;
    if !switched {
        eprintln!("  {scenario:?}: not every client was served by the failover within 20 s");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restore_begins_ms = ms(origin);
    let probe = tokio::spawn(first_direct_answer(
        bed.db,
        bed.primary.url().expose().to_owned(),
        origin,
    ));
    match scenario.fault {
        Fault::Kill => bed.primary.start().await,
        Fault::Hang => tokio::task::block_in_place(|| bed.primary.thaw()),
    }
    let back_ms = probe.await.unwrap_or(f64::NAN);
    let restored = wait_all(&last, Outcome::Primary, Duration::from_secs(20)).await;
    if !restored {
        eprintln!("  {scenario:?}: not every client was served by the primary within 20 s");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = finish(&client, tasks).await;
    drop(proxy);

    let first_after = |queries: &[Query], from: f64, want: Outcome| {
        queries
            .iter()
            .find(|q| q.end > from && q.outcome == want)
            .map_or(f64::NAN, |q| q.end - from)
    };
    let per_client = |from: f64, want: Outcome| -> Vec<f64> {
        seen.iter().map(|q| first_after(q, from, want)).collect()
    };
    let worst = |values: Vec<f64>| {
        if values.iter().any(|v| v.is_nan()) {
            f64::NAN
        } else {
            values.into_iter().fold(0.0, f64::max)
        }
    };
    let outages = per_client(fault_ms, Outcome::Failover);
    let first_answer_ms = outages
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    let outage_ms = worst(outages);
    let restore_ms =
        worst(per_client(restore_begins_ms, Outcome::Primary)) - (back_ms - restore_begins_ms);
    let all = || seen.iter().flatten();
    let failed = |q: &&Query| matches!(q.outcome, Outcome::Failed | Outcome::Refused);
    let outage_end = fault_ms
        + if outage_ms.is_finite() {
            outage_ms
        } else {
            back_ms - fault_ms
        };
    let switch_at = fault_ms + first_answer_ms;
    let run = Run {
        outage_ms,
        first_answer_ms,
        restore_ms,
        failed_during_fault: all()
            .filter(failed)
            .filter(|q| q.end > fault_ms && q.end <= restore_begins_ms)
            .count(),
        failed_after_restore: all()
            .filter(failed)
            .filter(|q| q.end > restore_begins_ms)
            .count(),
        primary_back_ms: back_ms - restore_begins_ms,
        longest_query_ms: all()
            .filter(|q| q.end > fault_ms && q.start < outage_end)
            .map(|q| q.end - q.start)
            .fold(0.0, f64::max),
        outlived_switch_ms: if switch_at.is_finite() {
            all()
                .filter(|q| q.start < switch_at && q.end > switch_at)
                .map(|q| q.end - switch_at)
                .fold(0.0, f64::max)
        } else {
            f64::NAN
        },
        queries: all().count(),
    };
    let timeline = seen
        .first()
        .map(|queries| {
            queries
                .iter()
                .map(|q| (q.end - fault_ms, q.outcome))
                .collect()
        })
        .unwrap_or_default();
    Ok((run, timeline))
}

/// Two servers of `db`; for MariaDB, the passwordless `haproxy_check` user HAProxy's login check uses,
/// or TCP checks when it cannot log in.
async fn bed(db: Db) -> Bed {
    let (primary, failover) = match db {
        Db::Postgres => {
            tokio::join!(
                DbServer::postgres("primary_db"),
                DbServer::postgres("failover_db")
            )
        }
        Db::Mariadb => {
            tokio::join!(
                DbServer::mariadb("primary_db"),
                DbServer::mariadb("failover_db")
            )
        }
    };
    let mut my_check = MyCheck::Tcp;
    if db == Db::Mariadb {
        primary.admin(&["CREATE USER 'haproxy_check'@'%'"]).await;
        failover.admin(&["CREATE USER 'haproxy_check'@'%'"]).await;
        let mut logs_in = true;
        for server in [&primary, &failover] {
            let options = MySqlConnectOptions::new()
                .host("127.0.0.1")
                .port(server.port())
                .username("haproxy_check");
            let attempt = options.connect();
            logs_in &= matches!(
                tokio::time::timeout(Duration::from_secs(5), attempt).await,
                Ok(Ok(_))
            );
        }
        if logs_in {
            my_check = MyCheck::Login;
        } else {
            println!("haproxy_check cannot log in to MariaDB: HAProxy checks it over plain TCP");
        }
    }
    Bed {
        db,
        primary,
        failover,
        my_check,
    }
}

fn show(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.0}")
    } else {
        "n/a".into()
    }
}

pub(crate) fn run(
    reps: usize,
    dbs: &[Db],
    clients: &[usize],
    json: &Path,
    svg: &Path,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let haproxy = haproxy_installed();
    if !haproxy {
        println!("haproxy is not installed: HAProxy scenarios skipped (apt-get install haproxy)");
    }
    runtime.block_on(async move {
        let mut summaries = Vec::new();
        let mut plots = Vec::new();
        let mut mariadb_check = String::from("not run");
        for &db in dbs {
            let mut bed = bed(db).await;
            if db == Db::Mariadb {
                mariadb_check = match bed.my_check {
                    MyCheck::Login => "option mysql-check user haproxy_check post-41".into(),
                    MyCheck::Tcp => "TCP connect (haproxy_check could not log in)".into(),
                };
            }
            for fault in [Fault::Kill, Fault::Hang] {
                for &count in clients {
                    for router in Router::ALL {
                        if router.is_haproxy() && !haproxy {
                            continue;
                        }
                        let scenario = Scenario {
                            db,
                            fault,
                            clients: count,
                            router,
                        };
                        let mut runs = Vec::new();
                        for rep in 0..reps {
                            let (run, timeline) = run_once(&scenario, &mut bed).await?;
                            eprintln!(
                                "{} {} {} client(s) {} #{rep}: {run:?}",
                                db.label(),
                                fault.label(),
                                count,
                                router.label()
                            );
                            if rep == 0 && db == Db::Postgres && count == 1 {
                                plots.push((
                                    format!("{}, {}", router.label(), fault.label()),
                                    timeline,
                                ));
                            }
                            runs.push(run);
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let pick = |f: fn(&Run) -> f64| median(runs.iter().map(f));
                        summaries.push(Summary {
                            scenario,
                            median_outage_ms: pick(|r| r.outage_ms),
                            median_restore_ms: pick(|r| r.restore_ms),
                            median_failed_during_fault: pick(|r| r.failed_during_fault as f64),
                            median_failed_after_restore: pick(|r| r.failed_after_restore as f64),
                            median_longest_query_ms: pick(|r| r.longest_query_ms),
                            median_outlived_switch_ms: pick(|r| r.outlived_switch_ms),
                            runs,
                        });
                    }
                }
            }
        }
        println!(
            "| database | fault | clients | router | outage | restore | failed (fault + restore) | longest query | outlived the switch | outage / HAProxy best |"
        );
        println!("|---|---|---:|---|---:|---:|---:|---:|---:|---:|");
        for s in &summaries {
            let c = &s.scenario;
            let best = summaries.iter().find(|o| {
                o.scenario.db == c.db
                    && o.scenario.fault == c.fault
                    && o.scenario.clients == c.clients
                    && o.scenario.router == Router::HaproxyBest
            });
            let ratio = match best {
                Some(b) if !c.router.is_haproxy() => {
                    format!("{:.2}", s.median_outage_ms / b.median_outage_ms)
                }
                _ => String::new(),
            };
            println!(
                "| {} | {} | {} | {} | {} ms | {} ms | {} + {} | {} ms | {} ms | {ratio} |",
                c.db.label(),
                c.fault.label(),
                c.clients,
                c.router.label(),
                show(s.median_outage_ms),
                show(s.median_restore_ms),
                show(s.median_failed_during_fault),
                show(s.median_failed_after_restore),
                show(s.median_longest_query_ms),
                show(s.median_outlived_switch_ms),
            );
        }
        let report = Report {
            reps,
            dbfailover_settings: DBFAILOVER_SETTINGS,
            haproxy_plain_settings: format!("{HAPROXY_DEFAULTS}{}", haproxy_backend(Db::Postgres, MyCheck::Login, false, 0, 0)),
            haproxy_best_settings: format!("{HAPROXY_DEFAULTS}{}", haproxy_backend(Db::Postgres, MyCheck::Login, true, 0, 0)),
            mariadb_haproxy_check: mariadb_check,
            summaries,
        };
        if let Some(parent) = json.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(json, text).map_err(|e| format!("{}: {e}", json.display()))?;
        println!("results: {}", json.display());
        if !plots.is_empty() {
            std::fs::write(svg, plot::svg(&plots))
                .map_err(|e| format!("{}: {e}", svg.display()))?;
            println!("plot: {}", svg.display());
        }
        Ok(())
    })
}
