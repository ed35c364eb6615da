//! Micro benchmarks of the data path (divan): the routed handle's read of the active connection, the
//! limited-mode error, and a real `SELECT 1` on PostgreSQL through the routed pool beside a plain pool.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use dbfailover::engine::{FnProbe, ProbeReport};
use dbfailover::sqlx::sqlx::postgres::PgPoolOptions;
use dbfailover::sqlx::sqlx::{self, PgPool, Postgres};
use dbfailover::{Config, DatabaseUrl, FailoverHandle, FailoverSystem, ProbeError, RoutedPool};
use dbfailover_tests::server::DbServer;
use divan::Bencher;
use std::sync::OnceLock;
use std::time::Duration;

fn main() {
    divan::main();
}

fn engine(up: bool) -> FailoverHandle {
    let url = |s: &str| DatabaseUrl::parse(s).unwrap();
    let config = Config::with_databases(
        ("main", url("postgres://127.0.0.1:1/app")),
        ("standby", url("postgres://127.0.0.1:2/app")),
    );
    let probe = move || {
        FnProbe::new(move |_| async move {
            if up {
                Ok(ProbeReport::default())
            } else {
                Err(ProbeError::new("refused"))
            }
        })
    };
    FailoverSystem::builder(config)
        .probe("main", probe())
        .probe("standby", probe())
        .build()
        .unwrap()
        .start_in_thread()
        .unwrap()
}

/// The routed handle's read of the router's decision: one atomic load.
#[divan::bench]
fn active_snapshot(bencher: Bencher<'_, '_>) {
    let engine = engine(true);
    bencher.bench(|| divan::black_box(&engine).active_snapshot());
}

struct Limited {
    _engine: FailoverHandle,
    routed: RoutedPool<Postgres>,
    _runtime: tokio::runtime::Runtime,
}

fn limited() -> &'static Limited {
    static LIMITED: OnceLock<Limited> = OnceLock::new();
    LIMITED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine = engine(false);
        let url = |s: &str| DatabaseUrl::parse(s).unwrap();
        let config = Config::with_databases(
            ("main", url("postgres://127.0.0.1:1/app")),
            ("standby", url("postgres://127.0.0.1:2/app")),
        );
        let routed = {
            let _guard = runtime.enter();
            RoutedPool::<Postgres>::connect_lazy(engine.clone(), &config, None).unwrap()
        };
        while engine.active().role != dbfailover::ActiveRole::Blocking {
            std::thread::sleep(Duration::from_millis(10));
        }
        Limited {
            _engine: engine,
            routed,
            _runtime: runtime,
        }
    })
}

/// Limited functionality mode: the typed error, at once.
#[divan::bench]
fn limited_mode_error(bencher: Bencher<'_, '_>) {
    let limited = limited();
    bencher.bench(|| divan::black_box(limited.routed.route().is_err()));
}

struct Real {
    runtime: tokio::runtime::Runtime,
    _servers: (DbServer, DbServer),
    _engine: FailoverHandle,
    routed: RoutedPool<Postgres>,
    plain: PgPool,
}

fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (primary, failover) = runtime.block_on(async {
            tokio::join!(
                DbServer::postgres("primary_db"),
                DbServer::postgres("failover_db")
            )
        });
        let config = Config::with_databases(
            (primary.name(), primary.url()),
            (failover.name(), failover.url()),
        );
        let engine = dbfailover::builder(config.clone())
            .unwrap()
            .build()
            .unwrap()
            .start_in_thread()
            .unwrap();
        let options = PgPoolOptions::new().max_connections(1);
        let (routed, plain) = runtime.block_on(async {
            let routed = RoutedPool::<Postgres>::connect_lazy(
                engine.clone(),
                &config,
                Some(options.clone()),
            )
            .unwrap();
            let plain = options.connect(primary.url().expose()).await.unwrap();
            (routed, plain)
        });
        Real {
            runtime,
            _servers: (primary, failover),
            _engine: engine,
            routed,
            plain,
        }
    })
}

/// `SELECT 1` on a real PostgreSQL through a plain sqlx pool.
#[divan::bench(sample_count = 300)]
fn select_1_plain_pool(bencher: Bencher<'_, '_>) {
    let real = real();
    bencher.bench(|| {
        real.runtime
            .block_on(async { sqlx::query("SELECT 1").execute(&real.plain).await.unwrap() })
    });
}

/// `SELECT 1` on the same server through the routed pool (route, acquire, observe).
#[divan::bench(sample_count = 300)]
fn select_1_routed_pool(bencher: Bencher<'_, '_>) {
    let real = real();
    bencher.bench(|| {
        real.runtime.block_on(async {
            let mut conn = real.routed.acquire().await.unwrap();
            let role = conn.role();
            real.routed
                .observe(role, sqlx::query("SELECT 1").execute(&mut *conn).await)
                .unwrap()
        })
    });
}
