//! A plain `#[tokio::main]` worker embedding dbfailover, with no actix and no HTTP in its own code:
//! the engine runs on a thread it owns (`start_in_thread`), a loop runs a routed query every 100 ms
//! and prints a line whenever what answers changes (the database that served it, or limited
//! functionality mode), and a task prints every event of `event_stream()` (the current state first).
//!
//! ```sh
//! DBFAILOVER_DATABASES__PRIMARY__URL=postgres://app:secret@10.0.0.1/app \
//! DBFAILOVER_DATABASES__FAILOVER__URL=postgres://app:secret@10.0.0.2/app \
//! cargo run -p dbfailover-examples --bin tokio-service
//! ```
//!
//! Each database needs a table `whoami (name text)` holding its name. The configuration is the
//! library's: `DBFAILOVER_CONFIG` may name a file, and any `DBFAILOVER_<SECTION>__<KEY>` variable sets
//! a setting (see `dbfailover_examples::load_config`). It stops on SIGTERM or Ctrl-C.

use dbfailover::RoutedPool;
use dbfailover::engine::EventStreamError;
use dbfailover::sqlx::{self, Postgres};
use dbfailover_examples::{error_answer, event_line, load_config, served_body};
use std::time::Duration;

/// The time between two queries of the loop.
const EVERY: Duration = Duration::from_millis(100);

/// One unit of work: which database answers, or the JSON error a service would answer.
async fn work(routed: &RoutedPool<Postgres>) -> String {
    let answer = routed
        .with_connection(async |conn| {
            sqlx::query_scalar::<_, String>("SELECT name FROM whoami")
                .fetch_one(conn)
                .await
        })
        .await;
    match answer {
        Ok(name) => served_body(&name),
        // In limited mode this comes at once: no query was sent anywhere.
        Err(error) => error_answer(&error).1,
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = load_config()?;
    let engine = dbfailover::builder(config.clone())?
        .build()?
        .start_in_thread()?;

    // Every event without an actor: `CurrentState` first, then each transition as it fires.
    let mut events = engine.event_stream().await?;
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => println!("{}", event_line(&event)),
                Err(EventStreamError::Lagged(skipped)) => {
                    eprintln!("the event stream skipped {skipped} events");
                }
                Err(_) => return,
            }
        }
    });

    let routed = RoutedPool::<Postgres>::connect_lazy(engine.clone(), &config, None)?;
    println!("working every {EVERY:?}");
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = String::new();
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticks.tick() => {
                let answer = work(&routed).await;
                if answer != last {
                    println!("{answer}");
                    last = answer;
                }
            }
        }
    }
    drop(routed);
    engine.shutdown().await;
    println!("stopped");
    Ok(())
}
