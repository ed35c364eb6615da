//! `GetActiveConnection` round trips through the router's mailbox, from a tokio runtime on other threads
//! (as a `#[tokio::main]` service does), and the lock-free read beside it.

use dbfailover::engine::{FnProbe, ProbeReport};
use dbfailover::{Config, DatabaseUrl, FailoverSystem};
use std::time::Instant;

pub(crate) fn run(calls: usize) -> Result<(), String> {
    let url = |s: &str| DatabaseUrl::parse(s).map_err(|e| e.to_string());
    let config = Config::with_databases(
        ("main", url("postgres://127.0.0.1:1/app")?),
        ("standby", url("postgres://127.0.0.1:2/app")?),
    );
    let up = || FnProbe::new(|_| async { Ok(ProbeReport::default()) });
    let engine = FailoverSystem::builder(config)
        .probe("main", up())
        .probe("standby", up())
        .build()
        .map_err(|e| e.to_string())?
        .start_in_thread()
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    println!("| callers | round trips | seconds | round trips / s |");
    println!("|---:|---:|---:|---:|");
    for callers in [1usize, 64] {
        // 64 callers share four times the calls of the single caller.
        let per_caller = if callers == 1 {
            calls
        } else {
            (calls * 4) / callers
        };
        let engine = engine.clone();
        let (total, seconds) = runtime.block_on(async move {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..callers {
                let engine = engine.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ok = 0usize;
                    for _ in 0..per_caller {
                        if engine.active_connection().await.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await.unwrap_or(0);
            }
            (total, started.elapsed().as_secs_f64())
        });
        println!(
            "| {callers} | {total} | {seconds:.2} | {:.0} |",
            total as f64 / seconds
        );
    }
    let started = Instant::now();
    let mut epochs = 0u64;
    let reads = 10_000_000u64;
    for _ in 0..reads {
        epochs = epochs.wrapping_add(std::hint::black_box(engine.active_snapshot()).epoch);
    }
    let per_read = started.elapsed().as_secs_f64() / reads as f64;
    println!(
        "\nlock-free read of the active connection (active_snapshot): {:.1} ns per read ({epochs})",
        per_read * 1e9
    );
    runtime.block_on(engine.shutdown());
    Ok(())
}
