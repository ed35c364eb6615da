//! The failure scenarios every database must pass, written once and run for PostgreSQL and MariaDB.
//!
//! Each starts two real servers (primary and failover), an engine with a sqlx probe per server, a
//! routed pool and a workload querying through it, injects a real fault, and asserts what a service
//! would notice: which database answered, which events fired, and how long the switch took. The
//! measured times are printed (`cargo nextest run --no-capture` shows them).

use crate::events::Events;
use crate::server::{DbServer, Kind};
use dbfailover::engine::ActiveSnapshot;
use dbfailover::sqlx::{self, MySql, Postgres};
use dbfailover::{
    ActiveRole, Config, ConnectionStatus, FailoverHandle, RoutedError, RoutedPool, Schedule,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A routed pool of either driver.
pub enum Routed {
    /// PostgreSQL.
    Pg(RoutedPool<Postgres>),
    /// MySQL / MariaDB.
    My(RoutedPool<MySql>),
}

impl Routed {
    /// Asks the active database its name: which database served the query, from its own data.
    pub async fn whoami(&self) -> Result<String, RoutedError> {
        match self {
            Self::Pg(routed) => {
                routed
                    .with_connection(async |conn| {
                        sqlx::query_scalar("SELECT name FROM whoami")
                            .fetch_one(conn)
                            .await
                    })
                    .await
            }
            Self::My(routed) => {
                routed
                    .with_connection(async |conn| {
                        sqlx::query_scalar("SELECT name FROM whoami")
                            .fetch_one(conn)
                            .await
                    })
                    .await
            }
        }
    }

    /// The router's published decision.
    pub fn snapshot(&self) -> ActiveSnapshot {
        match self {
            Self::Pg(routed) => routed.snapshot(),
            Self::My(routed) => routed.snapshot(),
        }
    }
}

/// What one query of the workload saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Served by the database of this name.
    Served(String),
    /// Refused at once in limited mode.
    Refused(Duration),
    /// Failed with a database error.
    Failed(String),
}

/// A query every few milliseconds through the routed pool, recording what each saw and when.
pub struct Workload {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Outcome)>>,
}

impl Workload {
    /// Starts querying every `every`.
    pub fn start(routed: Arc<Routed>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = match routed.whoami().await {
                    Ok(name) => Outcome::Served(name),
                    Err(RoutedError::AllConnectionsUnavailable { .. }) => {
                        Outcome::Refused(started.elapsed())
                    }
                    Err(other) => Outcome::Failed(other.to_string()),
                };
                seen.push((started, outcome));
                tokio::time::sleep(every).await;
            }
            seen
        });
        Self { stop, task }
    }

    /// Stops and returns every outcome.
    pub async fn finish(self) -> Vec<(Instant, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Two servers, an engine, its events, a routed pool.
pub struct Harness {
    /// The primary server.
    pub primary: DbServer,
    /// The failover server.
    pub failover: DbServer,
    /// The engine.
    pub engine: FailoverHandle,
    /// Every event the engine published.
    pub events: Events,
    /// The routed pool.
    pub routed: Arc<Routed>,
    /// `postgres` or `mariadb`, for printed measurements.
    pub label: &'static str,
}

/// Interval 100 ms, timeout 300 ms, thresholds 3 / 2, fast interval 20 ms.
pub fn base_config(primary: &DbServer, failover: &DbServer) -> Config {
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

impl Harness {
    /// Starts both servers and the engine (inside the current actix `System`), with `tune` applied to
    /// the base configuration.
    pub async fn start(kind: Kind, tune: impl FnOnce(&mut Config)) -> Self {
        let (primary, failover) = tokio::join!(
            DbServer::create(kind, "primary_db"),
            DbServer::create(kind, "failover_db")
        );
        let mut config = base_config(&primary, &failover);
        tune(&mut config);
        let engine = dbfailover::builder(config.clone())
            .unwrap_or_else(|e| panic!("{e}"))
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .start();
        let (listener, events) = Events::start();
        engine
            .subscribe(listener)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let routed = match kind {
            Kind::Postgres => Routed::Pg(
                RoutedPool::connect_lazy(engine.clone(), &config, None)
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            Kind::MariaDb => Routed::My(
                RoutedPool::connect_lazy(engine.clone(), &config, None)
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        };
        let label = match kind {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mariadb",
        };
        let harness = Self {
            primary,
            failover,
            engine,
            events,
            routed: Arc::new(routed),
            label,
        };
        if config.health_check.interval != Schedule::Disabled {
            // Both checked once: a known starting point.
            harness
                .wait_status(0, ConnectionStatus::Healthy, Duration::from_secs(10))
                .await;
            harness
                .wait_status(1, ConnectionStatus::Healthy, Duration::from_secs(10))
                .await;
        }
        harness
    }

    /// Waits until routing is on `role`; returns how long it took. Panics after `limit`.
    pub async fn wait_for(&self, role: ActiveRole, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.engine.active().role != role {
            assert!(
                started.elapsed() < limit,
                "[{}] routing did not reach {role} within {limit:?}; events: {:?}; states: {:?}",
                self.label,
                self.events.names(),
                self.engine.connection_states().await.ok()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        started.elapsed()
    }

    /// Waits until monitored connection number `index` (0 primary, 1 failover) has `status`.
    pub async fn wait_status(&self, index: usize, status: ConnectionStatus, limit: Duration) {
        let started = Instant::now();
        loop {
            let states = self.engine.connection_states().await.unwrap_or_default();
            if states.get(index).map(|s| s.state.status) == Some(status) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "[{}] connection {index} never {status}: {states:?}",
                self.label
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Prints a measurement.
    pub fn report(&self, scenario: &str, what: &str, took: Duration) {
        println!(
            "[{}] {scenario}: {what}: {:.1} ms",
            self.label,
            took.as_secs_f64() * 1000.0
        );
    }
}

/// Scenario 1, the seed's full cycle: kill primary, kill failover, restart primary.
pub async fn full_cycle(kind: Kind) {
    let mut h = Harness::start(kind, |_| {}).await;
    assert_eq!(h.routed.whoami().await.ok().as_deref(), Some("primary_db"));
    let workload = Workload::start(Arc::clone(&h.routed), Duration::from_millis(5));

    h.primary.kill9();
    let took = h
        .wait_for(ActiveRole::Failover, Duration::from_secs(5))
        .await;
    h.report("full cycle", "primary kill -9 -> failover", took);
    assert_eq!(h.routed.whoami().await.ok().as_deref(), Some("failover_db"));
    tokio::time::sleep(Duration::from_millis(200)).await;

    h.failover.kill9();
    let took = h
        .wait_for(ActiveRole::Blocking, Duration::from_secs(5))
        .await;
    h.report("full cycle", "failover kill -9 -> limited mode", took);
    let asked = Instant::now();
    let refused = h.routed.whoami().await;
    let refused_in = asked.elapsed();
    assert!(
        matches!(refused, Err(RoutedError::AllConnectionsUnavailable { .. })),
        "{refused:?}"
    );
    // The refusal does no I/O; the bound only guards against a wait sneaking in.
    assert!(
        refused_in < Duration::from_millis(50),
        "limited mode took {refused_in:?} to refuse"
    );

    let restarted = Instant::now();
    h.primary.start().await;
    h.wait_for(ActiveRole::Primary, Duration::from_secs(10))
        .await;
    h.report(
        "full cycle",
        "primary restarted (process start) -> primary",
        restarted.elapsed(),
    );
    let back = h.routed.whoami().await;
    assert_eq!(
        back.as_ref().ok().map(String::as_str),
        Some("primary_db"),
        "{back:?}"
    );

    let seen = workload.finish().await;
    let refused = seen
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Refused(_)))
        .count();
    assert!(refused > 0, "the workload saw limited mode");
    let served_failover = seen
        .iter()
        .filter(|(_, o)| *o == Outcome::Served("failover_db".into()))
        .count();
    assert!(
        served_failover > 0,
        "the workload was served by the failover"
    );
    let names = h.events.names();
    let expected_order = [
        "PrimaryConnectionDown",
        "SwitchedToFailoverConnection",
        "FailoverConnectionDown",
        "LimitedFunctionalityModeActivated",
        "PrimaryConnectionRestored",
        "SwitchedToPrimaryConnection",
        "ExitedLimitedFunctionalityMode",
    ];
    let positions: Vec<Option<usize>> = expected_order
        .iter()
        .map(|e| names.iter().position(|n| n == e))
        .collect();
    assert!(
        positions.iter().all(Option::is_some),
        "missing events: {names:?}"
    );
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "events out of order: {names:?}"
    );
    for event in expected_order {
        assert_eq!(h.events.count(event), 1, "{event} fired once: {names:?}");
    }
}

/// Scenario 2: the primary hangs (SIGSTOP), then continues.
pub async fn hang(kind: Kind) {
    let h = Harness::start(kind, |_| {}).await;
    let workload = Workload::start(Arc::clone(&h.routed), Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.primary.freeze();
    let took = h
        .wait_for(ActiveRole::Failover, Duration::from_secs(10))
        .await;
    h.report("hang", "primary SIGSTOP -> failover", took);
    // timeout + failure_threshold × interval = 600 ms is the designed bound (the first check waits the
    // timeout; the confirming ones overlap it, or wait the confirm timeout, here the interval); allow
    // for a loaded machine.
    assert!(took < Duration::from_millis(600 + 700), "{took:?}");
    let states = h.engine.connection_states().await.unwrap_or_default();
    let error = states[0].state.last_error.clone().unwrap_or_default();
    assert!(
        ["timed out after 300ms", "timed out after 100ms"].contains(&error.as_str()),
        "decided by checks that timed out, at the timeout or the confirm timeout: {error}"
    );
    let asked = Instant::now();
    let report = h
        .engine
        .check("primary_db")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let one_check = asked.elapsed();
    h.report("hang", "one check of the frozen primary", one_check);
    assert_eq!(report.state.status, ConnectionStatus::Down);
    assert!(
        one_check < Duration::from_millis(300 + 700),
        "a check outlived its timeout: {one_check:?}"
    );

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let thawed = Instant::now();
    h.primary.thaw();
    let took = h
        .wait_for(ActiveRole::Primary, Duration::from_secs(10))
        .await;
    h.report(
        "hang",
        "primary SIGCONT -> primary",
        thawed.elapsed().max(took),
    );
    let _ = workload.finish().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Abandoned checks and queries did not pile up as connections on the server.
    let open = h.primary.app_connections().await;
    assert!(
        open <= 12,
        "{open} connections of the application left on the primary"
    );
    assert_eq!(h.events.count("PrimaryConnectionDown"), 1);
    assert_eq!(h.events.count("PrimaryConnectionRestored"), 1);
}

/// Scenario 3: the primary flaps (killed and restarted every 300 ms for 5 s).
pub async fn flap(kind: Kind) {
    let mut h = Harness::start(kind, |_| {}).await;
    let workload = Workload::start(Arc::clone(&h.routed), Duration::from_millis(5));
    let started = Instant::now();
    let mut kills = 0u64;
    while started.elapsed() < Duration::from_secs(5) {
        h.primary.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.primary.spawn_again();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    h.wait_for(ActiveRole::Primary, Duration::from_secs(15))
        .await;
    let _ = workload.finish().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let epoch = h.engine.active().epoch;
    println!(
        "[{}] flap: {kills} kills in 5 s -> {epoch} switches; events {:?}",
        h.label,
        h.events.names()
    );
    // Never more than one switch away and one back per fault.
    assert!(epoch <= 2 * kills, "{epoch} switches for {kills} kills");
    assert_eq!(
        epoch % 2,
        0,
        "ended on the primary after an even number of switches"
    );
    // Every event pairs up.
    assert_eq!(
        h.events.count("PrimaryConnectionDown"),
        h.events.count("PrimaryConnectionRestored")
    );
    assert_eq!(
        h.events.count("LimitedFunctionalityModeActivated"),
        h.events.count("ExitedLimitedFunctionalityMode")
    );
    assert_eq!(
        h.events.count("FailoverConnectionDown"),
        0,
        "the failover never failed"
    );
    assert_eq!(
        h.events.count("SwitchedToFailoverConnection"),
        h.events.count("SwitchedToPrimaryConnection")
    );
}

/// Scenario 4: passive detection with a 1 s interval.
pub async fn passive(kind: Kind) {
    let mut h = Harness::start(kind, |c| {
        c.health_check.interval = Schedule::Every(Duration::from_secs(1));
    })
    .await;
    let workload = Workload::start(Arc::clone(&h.routed), Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.primary.kill9();
    let took = h
        .wait_for(ActiveRole::Failover, Duration::from_secs(5))
        .await;
    h.report(
        "passive",
        "primary kill -9 -> failover (interval 1 s)",
        took,
    );
    assert!(
        took < Duration::from_millis(500),
        "not well under one interval: {took:?}"
    );
    let seen = workload.finish().await;
    let failed = seen
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .count();
    let served = seen
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Served(_)))
        .count();
    println!(
        "[{}] passive: {failed} of {} queries failed during the switch",
        h.label,
        seen.len()
    );
    // The workload's own waiting query reported the failure; it was then served by the failover.
    assert!(served > failed, "{seen:?}");
    let states = h.engine.connection_states().await.unwrap_or_default();
    assert!(
        states[0].state.checks < 10,
        "detected by a few confirming checks, not by the schedule"
    );
}

/// Scenario 5: the primary turns read-only: it is reachable (HEALTHY), writes go to the failover,
/// and come back when it is writable again.
pub async fn read_only(kind: Kind) {
    let h = Harness::start(kind, |_| {}).await;
    h.primary.set_read_only(true).await;
    let took = h
        .wait_for(ActiveRole::Failover, Duration::from_secs(5))
        .await;
    h.report("read-only", "primary read-only -> failover", took);
    // Reachable, read-only: HEALTHY and no target for writes, not DOWN.
    assert_eq!(
        h.events.count("PrimaryConnectionDown"),
        0,
        "{:?}",
        h.events.names()
    );
    let states = h.engine.connection_states().await.unwrap_or_default();
    let primary = states.iter().find(|s| s.name == "primary_db");
    assert_eq!(
        primary.map(|s| (s.state.status, s.state.writable)),
        Some((ConnectionStatus::Healthy, Some(false)))
    );
    assert_eq!(h.routed.whoami().await.ok().as_deref(), Some("failover_db"));
    h.primary.set_read_only(false).await;
    h.wait_for(ActiveRole::Primary, Duration::from_secs(5))
        .await;
}

/// Scenario 6: a one-shot check of a named connection gives its status and failure count.
pub async fn one_shot(kind: Kind) {
    let mut h = Harness::start(kind, |c| c.health_check.interval = Schedule::Disabled).await;
    let report = h
        .engine
        .check("primary_db")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (report.state.status, report.state.failure_count),
        (ConnectionStatus::Healthy, 0)
    );
    assert_eq!(report.state.writable, Some(true));
    assert!(report.state.last_latency.is_some());
    h.primary.kill9();
    for failures in 1..=3u32 {
        let asked = Instant::now();
        let report = h
            .engine
            .check("primary_db")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        h.report("one-shot", "check of a killed server", asked.elapsed());
        assert_eq!(report.state.failure_count, failures);
        let expected = if failures < 3 {
            ConnectionStatus::Healthy
        } else {
            ConnectionStatus::Down
        };
        assert_eq!(report.state.status, expected);
        assert!(
            report
                .state
                .last_error
                .as_deref()
                .unwrap_or_default()
                .starts_with("connect:")
        );
    }
    let report = h
        .engine
        .check("failover_db")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (report.state.status, report.state.failure_count),
        (ConnectionStatus::Healthy, 0)
    );
}

/// A health query slower than the timeout: the probe gives up at the timeout, and the server stops the
/// query too, so nothing the probe abandoned keeps running there.
pub async fn slow_health_query(kind: Kind) {
    let slow = match kind {
        Kind::Postgres => "SELECT pg_sleep(5)",
        Kind::MariaDb => "SELECT SLEEP(5)",
    };
    let h = Harness::start(kind, |c| {
        c.health_check.interval = Schedule::Disabled;
        c.health_check.query = slow.to_owned();
    })
    .await;
    let asked = Instant::now();
    let report = h
        .engine
        .check("primary_db")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let took = asked.elapsed();
    h.report(
        "slow query",
        "check with a 5 s health query, timeout 300 ms",
        took,
    );
    assert!(took < Duration::from_millis(300 + 700), "{took:?}");
    assert_eq!(report.state.failure_count, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let still_running = match kind {
        Kind::Postgres => {
            h.primary
                .admin_count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'")
                .await
        }
        Kind::MariaDb => {
            h.primary
                .admin_count("SELECT CAST(count(*) AS SIGNED) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP%'")
                .await
        }
    };
    assert_eq!(
        still_running, 0,
        "the server stopped the abandoned health query"
    );
}
