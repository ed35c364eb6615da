//! The metrics an operator scrapes, through a Prometheus recorder: every series an alert or a `rate()`
//! needs is there before the first check, and follows checks, switches and the store's outages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, sleep_ms};
use dbfailover_core::ActiveRole;
use dbfailover_core::record::{CasOutcome, RecordKey, Slot, Write};
use dbfailover_engine::{StateStore, StoreError, StoreFuture};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A store the test can break.
#[derive(Clone, Default)]
struct Breakable {
    broken: Arc<AtomicBool>,
    inner: Arc<dbfailover_engine::MemoryStore>,
}

impl StateStore for Breakable {
    fn load<'a>(&'a self, keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>> {
        if self.broken.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::new("connection refused")) });
        }
        self.inner.load(keys)
    }
    fn compare_and_set<'a>(&'a self, writes: &'a [Write]) -> StoreFuture<'a, CasOutcome> {
        if self.broken.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::new("connection refused")) });
        }
        self.inner.compare_and_set(writes)
    }
    fn describe(&self) -> String {
        "breakable".into()
    }
}

/// The value of the series written exactly `series` (name and labels) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn status(text: &str, connection: &str) -> Vec<(&'static str, f64)> {
    ["unknown", "healthy", "down"]
        .into_iter()
        .map(|s| {
            let series = format!(
                "dbfailover_connection_status{{connection=\"{connection}\",status=\"{s}\"}}"
            );
            (s, value(text, &series).unwrap_or(f64::NAN))
        })
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

#[actix_rt::test]
async fn every_series_is_there_from_the_start_and_follows_checks_switches_and_the_store() {
    tokio::time::pause();
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    // The engine's actors and checks run on this thread.
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let store = Breakable::default();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start_with_store(primary.clone(), Scripted::new(Mode::Up), store.clone());

    // Before any check ran.
    let text = scrape.render();
    for (series, wanted) in [
        (
            format!(
                "dbfailover_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
        (
            "dbfailover_checks_total{connection=\"main\",result=\"success\"}".into(),
            0.0,
        ),
        (
            "dbfailover_checks_total{connection=\"standby\",result=\"failure\"}".into(),
            0.0,
        ),
        (
            "dbfailover_check_failures_total{connection=\"main\"}".into(),
            0.0,
        ),
        ("dbfailover_switches_total{to=\"primary\"}".into(), 0.0),
        ("dbfailover_switches_total{to=\"failover\"}".into(), 0.0),
        ("dbfailover_switches_total{to=\"blocking\"}".into(), 0.0),
        ("dbfailover_split_brain_total".into(), 0.0),
    ] {
        assert_eq!(value(&text, &series), Some(wanted), "{series}:\n{text}");
    }
    assert_eq!(status(&text, "main"), [("unknown", 1.0)], "{text}");
    assert_eq!(status(&text, "standby"), [("unknown", 1.0)], "{text}");
    assert!(
        text.contains("# HELP dbfailover_connection_status"),
        "{text}"
    );
    assert!(!text.contains("probe"), "one name for checks:\n{text}");

    sleep_ms(50).await;
    let text = scrape.render();
    assert_eq!(status(&text, "main"), [("healthy", 1.0)], "{text}");
    assert_eq!(
        value(&text, "dbfailover_store_available"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "dbfailover_active_connection{connection=\"main\",role=\"primary\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value(
        &text,
        "dbfailover_last_success_timestamp_seconds{connection=\"main\"}",
    )
    .expect("a last success");
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    assert!(
        text.contains("dbfailover_check_duration_seconds{connection=\"main\",quantile="),
        "{text}"
    );

    store.broken.store(true, Ordering::SeqCst);
    primary.set(Mode::Refuse);
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Failover);
    let text = scrape.render();
    assert_eq!(status(&text, "main"), [("down", 1.0)], "{text}");
    assert_eq!(status(&text, "standby"), [("healthy", 1.0)], "{text}");
    assert_eq!(
        value(&text, "dbfailover_store_available"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "dbfailover_switches_total{to=\"failover\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "dbfailover_switches_total{to=\"primary\"}"),
        Some(0.0),
        "{text}"
    );
    let failures = value(
        &text,
        "dbfailover_checks_total{connection=\"main\",result=\"failure\"}",
    )
    .unwrap();
    assert!(failures >= 3.0, "{text}");
    assert_eq!(
        value(
            &text,
            "dbfailover_check_failures_total{connection=\"main\"}"
        ),
        Some(failures),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "dbfailover_active_connection{connection=\"standby\",role=\"failover\"}"
        ),
        Some(1.0),
        "{text}"
    );

    store.broken.store(false, Ordering::SeqCst);
    sleep_ms(200).await;
    let text = scrape.render();
    assert_eq!(
        value(&text, "dbfailover_store_available"),
        Some(1.0),
        "{text}"
    );
}
