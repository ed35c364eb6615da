//! The failover benchmark: two real PostgreSQL servers, a workload through the routed handle (a query
//! every 5 ms, plus background load), a real fault (kill -9, SIGSTOP), and the client's view of it.
//! With `haproxy` on the PATH, the same workload and faults run through HAProxy with the same check
//! settings (inter 100 ms, fall 3, rise 2, check timeout 300 ms, `option pgsql-check`), tuned as a
//! failover proxy is (`on-marked-down shutdown-sessions`, `on-marked-up shutdown-backup-sessions`, so
//! that established sessions follow the switch), in the same run.

use crate::plot;
use dbfailover::sqlx::sqlx::postgres::PgPoolOptions;
use dbfailover::sqlx::sqlx::{self, PgPool, Postgres};
use dbfailover::{Config, FailoverHandle, RoutedError, RoutedPool, Schedule};
use dbfailover_tests::server::DbServer;
use serde::Serialize;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// The fault injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fault {
    Kill,
    Hang,
}

/// Who routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Router {
    /// The routed handle with this check interval and fast interval.
    Dbfailover { interval_ms: u64, fast_ms: u64 },
    /// HAProxy with `inter 100ms fall 3 rise 2`, primary and `backup` failover.
    Haproxy,
}

#[derive(Debug, Clone, Serialize)]
struct Scenario {
    name: &'static str,
    router: Router,
    fault: Fault,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    outage_ms: f64,
    failed_queries: usize,
    refused_queries: usize,
    restore_ms: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: Scenario,
    runs: Vec<Run>,
    median_outage_ms: f64,
    median_failed_queries: f64,
    median_restore_ms: f64,
}

/// Either way of querying.
enum Client {
    Routed(Arc<RoutedPool<Postgres>>, FailoverHandle),
    Plain(PgPool),
}

impl Client {
    async fn query(&self) -> Outcome {
        let answer = match self {
            Self::Routed(routed, _) => {
                routed
                    .with_connection(async |conn| {
                        sqlx::query_scalar::<_, String>("SELECT name FROM whoami")
                            .fetch_one(conn)
                            .await
                    })
                    .await
            }
            Self::Plain(pool) => sqlx::query_scalar::<_, String>("SELECT name FROM whoami")
                .fetch_one(pool)
                .await
                .map_err(|source| RoutedError::Database {
                    connection: "haproxy".into(),
                    connection_error: true,
                    source,
                }),
        };
        match answer.as_deref() {
            Ok("primary_db") => Outcome::Primary,
            Ok(_) => Outcome::Failover,
            Err(RoutedError::AllConnectionsUnavailable { .. }) => Outcome::Refused,
            Err(_) => Outcome::Failed,
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn config(primary: &DbServer, failover: &DbServer, interval: Duration) -> Config {
    let mut config = Config::with_databases(
        (primary.name(), primary.url()),
        (failover.name(), failover.url()),
    );
    config.failover.blocking = "blocking".into();
    let h = &mut config.health_check;
    h.interval = Schedule::Every(interval);
    h.timeout = Duration::from_millis(300);
    h.failure_threshold = 3;
    h.recovery_threshold = 2;
    h.fast_interval = Duration::from_millis(20);
    config
}

struct Haproxy {
    child: Child,
    port: u16,
    _dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A folder removed on drop.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn start_haproxy(primary: &DbServer, failover: &DbServer) -> Result<Haproxy, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())?;
    let dir =
        std::env::temp_dir().join(format!("dbfailover-haproxy-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cfg = format!(
        "global\n  maxconn 2000\ndefaults\n  mode tcp\n  timeout connect 300ms\n  timeout client 60s\n  \
         timeout server 60s\n  timeout check 300ms\nlisten pg\n  bind 127.0.0.1:{port}\n  \
         option pgsql-check user app\n  \
         server primary 127.0.0.1:{} check inter 100ms fall 3 rise 2 \
         on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n  \
         server failover 127.0.0.1:{} check inter 100ms fall 3 rise 2 backup\n",
        primary.port(),
        failover.port()
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting haproxy: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("haproxy did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Haproxy {
        child,
        port,
        _dir: tempfile_dir::Dir(dir),
    })
}

/// One run: warm up, fault, wait for the failover to serve, restore, wait for the primary to serve.
async fn run_once(
    scenario: &Scenario,
    primary: &mut DbServer,
    failover: &DbServer,
) -> Result<(Run, Vec<(f64, Outcome)>), String> {
    let mut _haproxy = None;
    let client = Arc::new(match scenario.router {
        Router::Dbfailover {
            interval_ms,
            fast_ms,
        } => {
            let mut config = config(primary, failover, Duration::from_millis(interval_ms));
            config.health_check.fast_interval = Duration::from_millis(fast_ms);
            let engine = dbfailover::builder(config.clone())
                .map_err(|e| e.to_string())?
                .build()
                .map_err(|e| e.to_string())?
                .start_in_thread()
                .map_err(|e| e.to_string())?;
            let routed = RoutedPool::<Postgres>::connect_lazy(engine.clone(), &config, None)
                .map_err(|e| e.to_string())?;
            Client::Routed(Arc::new(routed), engine)
        }
        Router::Haproxy => {
            let proxy = start_haproxy(primary, failover)?;
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_millis(300))
                .connect_lazy(&format!(
                    "postgres://app:app-secret@127.0.0.1:{}/app",
                    proxy.port
                ))
                .map_err(|e| e.to_string())?;
            _haproxy = Some(proxy);
            Client::Plain(pool)
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    // The measured workload: a query every 5 ms.
    let main = {
        let (client, stop) = (Arc::clone(&client), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let outcome = client.query().await;
                seen.push((origin.elapsed().as_secs_f64() * 1000.0, outcome));
            }
            seen
        })
    };
    // Background load: four more clients querying steadily.
    let mut background = Vec::new();
    for _ in 0..4 {
        let (client, stop) = (Arc::clone(&client), Arc::clone(&stop));
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.query().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fault_ms = origin.elapsed().as_secs_f64() * 1000.0;
    match scenario.fault {
        Fault::Kill => primary.kill9(),
        Fault::Hang => primary.freeze(),
    }
    // Wait (bounded) for the failover to serve, then a little longer.
    let deadline = Instant::now() + Duration::from_secs(15);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Client::Routed(_, engine) = client.as_ref() {
            if engine.active().role == dbfailover::ActiveRole::Failover {
                break;
            }
        } else {
            break;
        }
    }
    match scenario.fault {
        Fault::Kill => primary.start().await,
        Fault::Hang => primary.thaw(),
    }
    let back_ms = origin.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = main.await.map_err(|e| e.to_string())?;
    for task in background {
        let _ = task.await;
    }
    if let Client::Routed(_, engine) = client.as_ref() {
        engine.shutdown();
    }
    let first_after = |from: f64, want: Outcome| {
        seen.iter()
            .find(|(at, outcome)| *at > from && *outcome == want)
            .map(|(at, _)| at - from)
            .unwrap_or(f64::NAN)
    };
    let outage_ms = first_after(fault_ms, Outcome::Failover);
    let restore_ms = first_after(back_ms, Outcome::Primary);
    let during = |o: Outcome| {
        seen.iter()
            .filter(|(at, outcome)| {
                *at > fault_ms && *at < fault_ms + outage_ms + 5.0 && *outcome == o
            })
            .count()
    };
    let run = Run {
        outage_ms,
        failed_queries: during(Outcome::Failed),
        refused_queries: during(Outcome::Refused),
        restore_ms,
    };
    let timeline = seen.into_iter().map(|(at, o)| (at - fault_ms, o)).collect();
    Ok((run, timeline))
}

pub(crate) fn run(reps: usize, json: &Path, svg: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let (mut primary, failover) = tokio::join!(
            DbServer::postgres("primary_db"),
            DbServer::postgres("failover_db")
        );
        let mut scenarios = vec![
            Scenario {
                name: "dbfailover, kill -9 (interval 100 ms)",
                router: Router::Dbfailover {
                    interval_ms: 100,
                    fast_ms: 20,
                },
                fault: Fault::Kill,
            },
            Scenario {
                name: "dbfailover, SIGSTOP (interval 100 ms)",
                router: Router::Dbfailover {
                    interval_ms: 100,
                    fast_ms: 20,
                },
                fault: Fault::Hang,
            },
            Scenario {
                name: "dbfailover, kill -9, passive (interval 1 s)",
                router: Router::Dbfailover {
                    interval_ms: 1000,
                    fast_ms: 20,
                },
                fault: Fault::Kill,
            },
            Scenario {
                name: "dbfailover, kill -9, passive (interval 1 s, fast 10 ms)",
                router: Router::Dbfailover {
                    interval_ms: 1000,
                    fast_ms: 10,
                },
                fault: Fault::Kill,
            },
        ];
        if haproxy_installed() {
            scenarios.push(Scenario {
                name: "HAProxy, kill -9 (inter 100 ms)",
                router: Router::Haproxy,
                fault: Fault::Kill,
            });
            scenarios.push(Scenario {
                name: "HAProxy, SIGSTOP (inter 100 ms)",
                router: Router::Haproxy,
                fault: Fault::Hang,
            });
        } else {
            println!(
                "haproxy is not installed: HAProxy scenarios skipped (apt-get install haproxy)"
            );
        }
        let mut summaries = Vec::new();
        let mut plots = Vec::new();
        for scenario in &scenarios {
            let mut runs = Vec::new();
            for rep in 0..reps {
                let (run, timeline) = run_once(scenario, &mut primary, &failover).await?;
                eprintln!("{} #{rep}: {run:?}", scenario.name);
                let interval_100 = !matches!(
                    scenario.router,
                    Router::Dbfailover {
                        interval_ms: 1000,
                        ..
                    }
                );
                if rep == 0 && scenario.fault == Fault::Kill && interval_100 {
                    plots.push((scenario.name, timeline));
                }
                runs.push(run);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let pick = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
            summaries.push(Summary {
                scenario: scenario.clone(),
                median_outage_ms: pick(|r| r.outage_ms),
                median_failed_queries: pick(|r| r.failed_queries as f64),
                median_restore_ms: pick(|r| r.restore_ms),
                runs,
            });
        }
        println!("| scenario | outage (median of {reps}) | failed queries | restore |");
        println!("|---|---:|---:|---:|");
        for s in &summaries {
            println!(
                "| {} | {:.0} ms | {:.0} | {:.0} ms |",
                s.scenario.name, s.median_outage_ms, s.median_failed_queries, s.median_restore_ms
            );
        }
        let find = |router_haproxy: bool, fault: Fault| {
            summaries.iter().find(|s| {
                matches!(s.scenario.router, Router::Haproxy) == router_haproxy
                    && s.scenario.fault == fault
                    && !matches!(
                        s.scenario.router,
                        Router::Dbfailover {
                            interval_ms: 1000,
                            ..
                        }
                    )
            })
        };
        for fault in [Fault::Kill, Fault::Hang] {
            if let (Some(ours), Some(theirs)) = (find(false, fault), find(true, fault)) {
                println!(
                    "ratio ours / HAProxy, {fault:?}: outage {:.2}, restore {:.2}",
                    ours.median_outage_ms / theirs.median_outage_ms,
                    ours.median_restore_ms / theirs.median_restore_ms
                );
            }
        }
        if let Some(parent) = json.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let text = serde_json::to_string_pretty(&summaries).map_err(|e| e.to_string())?;
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
