//! The cost of routing on a real `SELECT 1` on PostgreSQL: the routed pool beside a plain sqlx pool on
//! the same server, in interleaved rounds (so drift on a shared machine hits both alike), each round a
//! loop of queries inside one task.

use dbfailover::sqlx::postgres::PgPoolOptions;
use dbfailover::sqlx::{self, Postgres};
use dbfailover::{Config, RoutedPool};
use dbfailover_tests::server::DbServer;
use std::time::Instant;

pub(crate) fn run(rounds: usize, per_round: usize) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let (primary, failover) = tokio::join!(
            DbServer::postgres("primary_db"),
            DbServer::postgres("failover_db")
        );
        let config = Config::with_databases(
            (primary.name(), primary.url()),
            (failover.name(), failover.url()),
        );
        let engine = dbfailover::builder(config.clone())
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?
            .start_in_thread()
            .map_err(|e| e.to_string())?;
        let options = PgPoolOptions::new().max_connections(4);
        let routed =
            RoutedPool::<Postgres>::connect_lazy(engine.clone(), &config, Some(options.clone()))
                .map_err(|e| e.to_string())?;
        let plain = options
            .connect(primary.url().expose())
            .await
            .map_err(|e| e.to_string())?;
        let mut plain_us = Vec::new();
        let mut routed_us = Vec::new();
        for round in 0..=rounds {
            let started = Instant::now();
            for _ in 0..per_round {
                sqlx::query("SELECT 1")
                    .execute(&plain)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let plain_round = started.elapsed().as_secs_f64() * 1e6 / per_round as f64;
            let started = Instant::now();
            for _ in 0..per_round {
                routed
                    .with_connection(async |conn| sqlx::query("SELECT 1").execute(conn).await)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let routed_round = started.elapsed().as_secs_f64() * 1e6 / per_round as f64;
            if round > 0 {
                // Round 0 warms both pools up.
                plain_us.push(plain_round);
                routed_us.push(routed_round);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            v[v.len() / 2]
        };
        let (p, r) = (median(&mut plain_us), median(&mut routed_us));
        println!("| `SELECT 1`, median of {rounds} rounds of {per_round} | per query |");
        println!("|---|---:|");
        println!("| plain sqlx pool | {p:.1} µs |");
        println!("| routed pool (`with_connection`) | {r:.1} µs |");
        println!("| overhead | {:+.1} % |", (r - p) / p * 100.0);
        engine.shutdown().await;
        Ok(())
    })
}
