//! The soak: memory and task count while the engine makes many transitions, in virtual time with a
//! scripted flapping probe, then on a real PostgreSQL primary killed and restarted every 300 ms.

use actix::prelude::*;
use dbfailover::engine::{FnProbe, ProbeReport};
use dbfailover::sqlx::{self, Postgres};
use dbfailover::{
    Config, DatabaseUrl, FailoverEvent, FailoverSystem, ProbeError, RoutedPool, Schedule,
};
use dbfailover_tests::server::DbServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts transitions (Down and Restored events of the primary).
struct Counter(Arc<AtomicU64>);

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for Counter {
    type Result = ();
    fn handle(&mut self, event: FailoverEvent, _ctx: &mut Context<Self>) {
        if matches!(
            event.kind.name(),
            "PrimaryConnectionDown" | "PrimaryConnectionRestored"
        ) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

pub(crate) fn run(transitions: usize, flap_seconds: u64) -> Result<(), String> {
    virtual_time(transitions)?;
    if flap_seconds > 0 {
        real_flapping(flap_seconds)?;
    }
    Ok(())
}

fn virtual_time(target: usize) -> Result<(), String> {
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    });
    system.block_on(async move {
        let url = |s: &str| DatabaseUrl::parse(s).map_err(|e| e.to_string());
        let mut config = Config::with_databases(
            ("main", url("postgres://127.0.0.1:1/app")?),
            ("standby", url("postgres://127.0.0.1:2/app")?),
        );
        config.health_check.interval = Schedule::Every(Duration::from_millis(100));
        let checks = Arc::new(AtomicU64::new(0));
        let flapping = {
            let checks = Arc::clone(&checks);
            // Three failures, two successes, again: a DOWN and a recovery every five checks.
            FnProbe::new(move |_| {
                let n = checks.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n % 5 < 3 {
                        Err(ProbeError::new("refused"))
                    } else {
                        Ok(ProbeReport::default())
                    }
                }
            })
        };
        let engine = FailoverSystem::builder(config)
            .probe("main", flapping)
            .probe(
                "standby",
                FnProbe::new(|_| async { Ok(ProbeReport::default()) }),
            )
            .build()
            .map_err(|e| e.to_string())?
            .start();
        let transitions = Arc::new(AtomicU64::new(0));
        engine
            .subscribe(Counter(Arc::clone(&transitions)).start().recipient())
            .await
            .map_err(|e| e.to_string())?;
        println!("virtual time, scripted flapping probe:\n");
        println!("| transitions | switches (epoch) | resident memory | tokio tasks alive |");
        println!("|---:|---:|---:|---:|");
        let mut next_report = 0u64;
        while transitions.load(Ordering::Relaxed) < target as u64 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let done = transitions.load(Ordering::Relaxed);
            if done >= next_report {
                println!(
                    "| {done} | {} | {:.1} MiB | {} |",
                    engine.active().epoch,
                    resident_mib(),
                    alive_tasks()
                );
                next_report += (target as u64 / 10).max(1);
            }
        }
        println!(
            "| {} | {} | {:.1} MiB | {} |\n",
            transitions.load(Ordering::Relaxed),
            engine.active().epoch,
            resident_mib(),
            alive_tasks()
        );
        Ok::<_, String>(())
    })
}

fn real_flapping(seconds: u64) -> Result<(), String> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let (mut primary, failover) = tokio::join!(
            DbServer::postgres("primary_db"),
            DbServer::postgres("failover_db")
        );
        let mut config = Config::with_databases(
            (primary.name(), primary.url()),
            (failover.name(), failover.url()),
        );
        config.health_check.interval = Schedule::Every(Duration::from_millis(100));
        config.health_check.timeout = Duration::from_millis(300);
        let engine = dbfailover::builder(config.clone())
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?
            .start();
        let transitions = Arc::new(AtomicU64::new(0));
        engine
            .subscribe(Counter(Arc::clone(&transitions)).start().recipient())
            .await
            .map_err(|e| e.to_string())?;
        let routed = Arc::new(
            RoutedPool::<Postgres>::connect_lazy(engine.clone(), &config, None)
                .map_err(|e| e.to_string())?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let workload = {
            let (routed, stop, queries) =
                (Arc::clone(&routed), Arc::clone(&stop), Arc::clone(&queries));
            actix_rt::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut conn) = routed.acquire().await {
                        let _ = sqlx::query("SELECT 1").execute(&mut *conn).await;
                    }
                    queries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        println!("real PostgreSQL primary killed and restarted every 300 ms for {seconds} s:\n");
        println!("| elapsed | transitions | queries | resident memory | tokio tasks alive |");
        println!("|---:|---:|---:|---:|---:|");
        let started = Instant::now();
        let mut last_report = Instant::now() - Duration::from_secs(10);
        while started.elapsed() < Duration::from_secs(seconds) {
            primary.kill9();
            tokio::time::sleep(Duration::from_millis(300)).await;
            primary.spawn_again();
            tokio::time::sleep(Duration::from_millis(300)).await;
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                println!(
                    "| {:.0} s | {} | {} | {:.1} MiB | {} |",
                    started.elapsed().as_secs_f64(),
                    transitions.load(Ordering::Relaxed),
                    queries.load(Ordering::Relaxed),
                    resident_mib(),
                    alive_tasks()
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = workload.await;
        println!(
            "| {:.0} s (end) | {} | {} | {:.1} MiB | {} |",
            started.elapsed().as_secs_f64(),
            transitions.load(Ordering::Relaxed),
            queries.load(Ordering::Relaxed),
            resident_mib(),
            alive_tasks()
        );
        Ok::<_, String>(())
    })
}
