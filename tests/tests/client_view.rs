//! What a busy service sees during a real hang or crash of its primary (PostgreSQL and MariaDB from
//! the test bed): work running on the primary is released at the switch instead of waiting for the
//! frozen server, and the retry helper runs idempotent reads again on the new route, so that no read
//! fails; work that is not idempotent is never run twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::sqlx;
use dbfailover::{ActiveRole, RetryPolicy, RoutedError};
use dbfailover_tests::scenarios::{Harness, Routed};
use dbfailover_tests::server::Kind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A query that runs far longer than any failover: released at the switch, it never completes.
async fn long_query(routed: &Routed) -> Result<(), RoutedError> {
    match routed {
        Routed::Pg(pool) => {
            pool.with_connection(async |conn| {
                sqlx::query("SELECT pg_sleep(20)")
                    .execute(conn)
                    .await
                    .map(drop)
            })
            .await
        }
        Routed::My(pool) => {
            pool.with_connection(async |conn| {
                sqlx::query("SELECT SLEEP(20)")
                    .execute(conn)
                    .await
                    .map(drop)
            })
            .await
        }
    }
}

async fn work_is_released_at_the_switch(kind: Kind) {
    let h = Harness::start(kind, |_| {}).await;
    h.wait_for(ActiveRole::Primary, Duration::from_secs(5))
        .await;
    let routed = Arc::clone(&h.routed);
    let running = tokio::spawn(async move {
        let started = Instant::now();
        (long_query(&routed).await, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every process of the primary stops: the query will never answer.
    h.primary.freeze();
    let (result, lasted) = running.await.unwrap();
    h.primary.thaw();
    match result {
        Err(RoutedError::Switched { from, to }) => {
            assert_eq!((from.as_str(), to.as_str()), ("primary_db", "failover_db"));
        }
        other => panic!("[{kind:?}] expected the switch to release the work: {other:?}"),
    }
    // The behaviour itself is a bound: released at the switch, long before the query's 20 s.
    assert!(lasted < Duration::from_secs(10), "[{kind:?}] {lasted:?}");
    assert_eq!(h.routed.whoami().await.ok().as_deref(), Some("failover_db"));
}

#[actix_rt::test]
async fn postgres_work_on_a_frozen_primary_is_released_at_the_switch() {
    work_is_released_at_the_switch(Kind::Postgres).await;
}

#[actix_rt::test]
async fn mariadb_work_on_a_frozen_primary_is_released_at_the_switch() {
    work_is_released_at_the_switch(Kind::MariaDb).await;
}

/// One idempotent read through the retry helper: which database answered. Each read takes 50 ms, so
/// that every client has one running when the fault comes.
async fn retried_read(routed: &Routed) -> Result<String, RoutedError> {
    match routed {
        Routed::Pg(pool) => {
            pool.with_retry(RetryPolicy::reads(), async |conn| {
                sqlx::query_scalar("SELECT name FROM whoami WHERE pg_sleep(0.05) IS NOT NULL")
                    .fetch_one(conn)
                    .await
            })
            .await
        }
        Routed::My(pool) => {
            pool.with_retry(RetryPolicy::reads(), async |conn| {
                sqlx::query_scalar("SELECT name FROM whoami WHERE SLEEP(0.05) = 0")
                    .fetch_one(conn)
                    .await
            })
            .await
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Hang,
}

/// Eight clients read back to back through the retry helper across the fault: none fails.
async fn no_read_fails(kind: Kind, fault: Fault) {
    let mut h = Harness::start(kind, |_| {}).await;
    h.wait_for(ActiveRole::Primary, Duration::from_secs(5))
        .await;
    let failed = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let routed = Arc::clone(&h.routed);
        let (failed, served, stop) = (Arc::clone(&failed), Arc::clone(&served), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match retried_read(&routed).await {
                    Ok(_) => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(error.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    match fault {
        Fault::Kill => h.primary.kill9(),
        Fault::Hang => h.primary.freeze(),
    }
    h.wait_for(ActiveRole::Failover, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for client in clients {
        errors.extend(client.await.unwrap());
    }
    if let Fault::Hang = fault {
        h.primary.thaw();
    }
    assert!(served.load(Ordering::Relaxed) > 40, "the clients ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "[{kind:?} {fault:?}] reads failed: {errors:?}"
    );
}

#[actix_rt::test]
async fn postgres_no_retried_read_fails_across_a_kill() {
    no_read_fails(Kind::Postgres, Fault::Kill).await;
}

#[actix_rt::test]
async fn postgres_no_retried_read_fails_across_a_hang() {
    no_read_fails(Kind::Postgres, Fault::Hang).await;
}

#[actix_rt::test]
async fn mariadb_no_retried_read_fails_across_a_kill() {
    no_read_fails(Kind::MariaDb, Fault::Kill).await;
}

#[actix_rt::test]
async fn work_that_is_not_idempotent_is_never_run_twice() {
    let h = Harness::start(Kind::Postgres, |_| {}).await;
    h.wait_for(ActiveRole::Primary, Duration::from_secs(5))
        .await;
    let Routed::Pg(pool) = &*h.routed else {
        unreachable!()
    };
    let runs = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&runs);
    let pool2 = pool;
    let write = pool2.with_retry(RetryPolicy::not_idempotent(), async move |conn| {
        counted.fetch_add(1, Ordering::SeqCst);
        sqlx::query("SELECT pg_sleep(20)")
            .execute(conn)
            .await
            .map(drop)
    });
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.primary.freeze();
    };
    let (result, ()) = tokio::join!(write, freeze);
    h.primary.thaw();
    assert!(
        matches!(result, Err(RoutedError::Switched { .. })),
        "{result:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "started once, never again");
}

#[actix_rt::test]
async fn work_on_a_sound_failover_finishes_when_routing_fails_back() {
    let mut h = Harness::start(Kind::Postgres, |_| {}).await;
    h.wait_for(ActiveRole::Primary, Duration::from_secs(5))
        .await;
    h.primary.kill9();
    h.wait_for(ActiveRole::Failover, Duration::from_secs(5))
        .await;
    let routed = Arc::clone(&h.routed);
    let running = tokio::spawn(async move {
        let Routed::Pg(pool) = &*routed else {
            unreachable!()
        };
        let write_route = pool.with_connection(async |conn| {
            sqlx::query_scalar::<_, String>("SELECT name FROM whoami WHERE pg_sleep(2) IS NOT NULL")
                .fetch_one(conn)
                .await
        });
        let read_route = pool.with_read_connection(async |conn| {
            sqlx::query_scalar::<_, String>("SELECT name FROM whoami WHERE pg_sleep(2) IS NOT NULL")
                .fetch_one(conn)
                .await
        });
        let (write_route, read_route) = tokio::join!(write_route, read_route);
        (write_route, read_route)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.primary.start().await;
    h.wait_for(ActiveRole::Primary, Duration::from_secs(5))
        .await;
    // Routing went back to the preferred primary while the work ran on the failover, which is sound:
    // the work on both routes finishes there.
    let (write_route, read_route) = running.await.unwrap();
    assert_eq!(write_route.ok().as_deref(), Some("failover_db"));
    assert_eq!(read_route.ok().as_deref(), Some("failover_db"));
}
