//! Micro benchmarks of the data path (divan): the routed handle's read of the active connection and the
//! limited-mode error. The overhead on a real `SELECT 1` is measured by `dbfailover-bench overhead`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use dbfailover::engine::{FnProbe, ProbeReport};
use dbfailover::sqlx::Postgres;
use dbfailover::{Config, DatabaseUrl, FailoverHandle, FailoverSystem, ProbeError, RoutedPool};
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
