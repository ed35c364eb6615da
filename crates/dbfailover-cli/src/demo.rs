//! `dbfailover demo`: two SQLite files as primary and failover, a workload through the routed handle,
//! and real failures: the database files are moved away, so the probes' connects fail.

use actix::prelude::*;
use dbfailover::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use dbfailover::sqlx::{self, ConnectOptions, Connection, Sqlite};
use dbfailover::{
    ActiveRole, Config, DatabaseSettings, DatabaseUrl, FailoverEvent, FailoverHandle, RoutedError,
    RoutedPool, Schedule,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Options of `dbfailover demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Time between two queries of the workload.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    query_every: Duration,
    /// How long each phase (healthy, primary gone, both gone, ...) lasts.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    phase: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    dbfailover::core::duration::parse(text)
}

/// The events the demo must show at least once.
const EXPECTED: [&str; 9] = [
    "PrimaryConnectionDown",
    "SwitchedToFailoverConnection",
    "FailoverConnectionDown",
    "LimitedFunctionalityModeActivated",
    "PrimaryConnectionRestored",
    "SwitchedToPrimaryConnection",
    "ExitedLimitedFunctionalityMode",
    "FailoverConnectionRestored",
    "DatabaseConnectionSwitched",
];

/// What the workload saw.
#[derive(Default)]
struct Tally {
    primary: AtomicU64,
    failover: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn line(&self) -> String {
        format!(
            "served by primary {:>5} | by failover {:>5} | refused in limited mode {:>5} | failed {:>3}",
            self.primary.load(Ordering::Relaxed),
            self.failover.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Prints every event as it arrives and remembers which kinds were seen.
struct Printer {
    started: Instant,
    seen: Arc<std::sync::Mutex<BTreeSet<&'static str>>>,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for Printer {
    type Result = ();

    fn handle(&mut self, event: FailoverEvent, _ctx: &mut Context<Self>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(event.kind.name());
        }
        println!(
            "{:>8}  EVENT {}",
            elapsed(self.started),
            crate::output::event_words(&event)
        );
    }
}

fn elapsed(started: Instant) -> String {
    format!("+{:.3}s", started.elapsed().as_secs_f64())
}

async fn create_database(path: &Path, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await?;
    sqlx::query("CREATE TABLE whoami (name TEXT NOT NULL)")
        .execute(&mut conn)
        .await?;
    sqlx::query("INSERT INTO whoami (name) VALUES (?)")
        .bind(name)
        .execute(&mut conn)
        .await?;
    conn.close().await
}

fn sqlite_url(path: &Path) -> Result<DatabaseUrl, String> {
    DatabaseUrl::parse(&format!("sqlite://{}", path.display()))
}

fn demo_config(primary: &Path, failover: &Path) -> Result<Config, String> {
    let mut config = Config::default();
    config.failover.primary = "primary".into();
    config.failover.failover = "failover".into();
    config.failover.blocking = "blocking".into();
    config.databases.insert(
        "primary".into(),
        DatabaseSettings::new(sqlite_url(primary)?),
    );
    config.databases.insert(
        "failover".into(),
        DatabaseSettings::new(sqlite_url(failover)?),
    );
    config.health_check.interval = Schedule::Every(Duration::from_millis(100));
    config.health_check.timeout = Duration::from_millis(500);
    config.health_check.failure_threshold = 3;
    config.health_check.recovery_threshold = 2;
    config.health_check.fast_interval = Some(Duration::from_millis(20));
    Ok(config)
}

/// Moves a database file away (a real failure of every new connection) or back.
fn move_file(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::rename(from, to)
        .map_err(|e| format!("moving {} to {}: {e}", from.display(), to.display()))
}

async fn workload(
    routed: Arc<RoutedPool<Sqlite>>,
    tally: Arc<Tally>,
    every: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let served = routed
            .with_connection(async |conn| {
                sqlx::query_scalar::<_, String>("SELECT name FROM whoami")
                    .fetch_one(conn)
                    .await
            })
            .await;
        // Count by what the database itself says it is, not by what routing claimed.
        let counter = match served.as_deref() {
            Ok("primary") => &tally.primary,
            Ok(_) => &tally.failover,
            Err(RoutedError::AllConnectionsUnavailable { .. }) => &tally.refused,
            Err(_) => &tally.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

async fn wait_for(engine: &FailoverHandle, role: ActiveRole, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if engine.active().role == role {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("dbfailover demo: {error}");
            ExitCode::from(1)
        }
    }
}

async fn run_inner(args: DemoArgs) -> Result<ExitCode, String> {
    let folder = tempfile::tempdir().map_err(|e| format!("creating a temporary folder: {e}"))?;
    let primary_path = folder.path().join("primary.db");
    let failover_path = folder.path().join("failover.db");
    let away = |p: &PathBuf| p.with_extension("db.away");
    for (path, name) in [(&primary_path, "primary"), (&failover_path, "failover")] {
        create_database(path, name)
            .await
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
    }
    let config = demo_config(&primary_path, &failover_path)?;
    let h = &config.health_check;
    println!(
        "dbfailover demo: two SQLite databases in {}",
        folder.path().display()
    );
    println!(
        "  checks every {} (timeout {}), DOWN after {} failures, HEALTHY again after {} successes",
        dbfailover::core::duration::format(h.interval.interval().unwrap_or_default()),
        dbfailover::core::duration::format(h.timeout),
        h.failure_threshold,
        h.recovery_threshold
    );
    println!(
        "  a workload queries through the routed handle every {}",
        dbfailover::core::duration::format(args.query_every)
    );

    let engine = dbfailover::builder(config.clone())
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?
        .start();
    let started = Instant::now();
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let printer = Printer {
        started,
        seen: Arc::clone(&seen),
    }
    .start();
    engine
        .subscribe(printer.recipient())
        .await
        .map_err(|e| e.to_string())?;

    let pool_options = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(500));
    let routed = Arc::new(
        RoutedPool::<Sqlite>::connect_lazy(engine.clone(), &config, Some(pool_options))
            .map_err(|e| e.to_string())?,
    );
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = actix_rt::spawn(workload(
        Arc::clone(&routed),
        Arc::clone(&tally),
        args.query_every,
        Arc::clone(&stop),
    ));
    let status = {
        let tally = Arc::clone(&tally);
        let engine = engine.clone();
        let stop = Arc::clone(&stop);
        actix_rt::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let active = engine.active();
                println!(
                    "{:>8}  status: active {:<8} | {}",
                    elapsed(started),
                    active.name,
                    tally.line()
                );
            }
        })
    };

    let step = |text: &str| println!("{:>8}  STEP  {text}", elapsed(started));
    let phase = args.phase;
    let limit = Duration::from_secs(5);
    tokio::time::sleep(phase).await;

    step("the primary's database file is moved away: new connections to it fail");
    move_file(&primary_path, &away(&primary_path))?;
    let switched = wait_for(&engine, ActiveRole::Failover, limit).await;
    tokio::time::sleep(phase).await;

    step("the failover's database file is moved away too");
    move_file(&failover_path, &away(&failover_path))?;
    let limited = wait_for(&engine, ActiveRole::Blocking, limit).await;
    tokio::time::sleep(phase).await;

    step("the primary's file is back");
    move_file(&away(&primary_path), &primary_path)?;
    let restored = wait_for(&engine, ActiveRole::Primary, limit).await;
    tokio::time::sleep(phase).await;

    step("the failover's file is back");
    move_file(&away(&failover_path), &failover_path)?;
    tokio::time::sleep(phase).await;

    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    status.abort();
    let states = engine
        .connection_states()
        .await
        .map_err(|e| e.to_string())?;
    println!("{:>8}  final: {}", elapsed(started), tally.line());
    for report in &states {
        println!(
            "          {} ({}): {}, failures {}, checks {}",
            report.name,
            report.role,
            report.state.status,
            report.state.failure_count,
            report.state.checks
        );
    }
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let missing: Vec<&str> = EXPECTED
        .iter()
        .copied()
        .filter(|e| !seen.contains(e))
        .collect();
    let ok = switched
        && limited
        && restored
        && missing.is_empty()
        && tally.primary.load(Ordering::Relaxed) > 0
        && tally.failover.load(Ordering::Relaxed) > 0
        && tally.refused.load(Ordering::Relaxed) > 0;
    if ok {
        println!("demo complete: every switch and limited-mode event was seen");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "demo incomplete: switched={switched} limited={limited} restored={restored} missing events {missing:?}"
        );
        Ok(ExitCode::from(1))
    }
}
