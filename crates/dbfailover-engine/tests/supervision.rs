//! A probe that panics or hangs, and a store that errors, never stop monitoring (virtual time).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, config, drain, sleep_ms};
use dbfailover_core::record::{CasOutcome, Record, RecordKey, Slot, Write};
use dbfailover_core::{ActiveRole, ConnectionStatus};
use dbfailover_engine::{FailoverSystem, StateStore, StoreError, StoreFuture};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[actix_rt::test]
async fn a_panicking_probe_counts_as_failed_and_monitoring_goes_on() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(50).await;
    primary.set(Mode::Panic);
    sleep_ms(400).await;
    assert_eq!(handle.active().role, ActiveRole::Failover);
    let states = handle.connection_states().await.unwrap();
    assert!(
        states[0]
            .state
            .last_error
            .as_deref()
            .unwrap()
            .contains("probe panicked")
    );
    primary.set(Mode::Up);
    sleep_ms(300).await;
    assert_eq!(
        handle.active().role,
        ActiveRole::Primary,
        "the same probe actor recovered it"
    );
}

#[actix_rt::test]
async fn a_hang_is_confirmed_by_at_most_the_threshold_s_checks_at_once_started_apart() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(50).await;
    assert_eq!(
        primary.max_running.load(Ordering::SeqCst),
        1,
        "one at a time while healthy"
    );
    primary.set(Mode::Hang);
    let hung = tokio::time::Instant::now();
    // Asking for checks again and again while they hang must not start more than the threshold's.
    for _ in 0..20 {
        handle.check_now("main").unwrap();
        handle.report_query_failure("main").unwrap();
        sleep_ms(10).await;
    }
    while handle.active().role == ActiveRole::Primary {
        sleep_ms(5).await;
    }
    // About one timeout plus the threshold's fast intervals: the confirming checks overlap.
    assert!(
        hung.elapsed() <= Duration::from_millis(250),
        "{:?}",
        hung.elapsed()
    );
    assert_eq!(
        primary.max_running.load(Ordering::SeqCst),
        3,
        "at most failure_threshold checks at once"
    );
    let states = handle.connection_states().await.unwrap();
    assert_eq!(
        states[0].state.last_error.as_deref(),
        Some("timed out after 50ms")
    );
}

/// A store the test can break.
#[derive(Clone, Default)]
struct Breakable {
    broken: Arc<AtomicBool>,
    /// Reads work, writes fail (a read-only replica, a full Redis).
    read_only: Arc<AtomicBool>,
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
        if self.broken.load(Ordering::SeqCst) || self.read_only.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::new("connection refused")) });
        }
        self.inner.compare_and_set(writes)
    }
    fn describe(&self) -> String {
        "breakable".into()
    }
}

#[actix_rt::test]
async fn a_broken_store_never_stops_failover_and_its_outage_is_reported_once() {
    tokio::time::pause();
    let store = Breakable::default();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start_with_store(primary.clone(), Scripted::new(Mode::Up), store.clone());
    let events = common::listen(&handle).await;
    sleep_ms(50).await;
    drain(&events);

    store.broken.store(true, Ordering::SeqCst);
    primary.set(Mode::Refuse);
    sleep_ms(500).await;
    assert_eq!(
        handle.active().role,
        ActiveRole::Failover,
        "failed over from local state"
    );
    let seen = drain(&events);
    assert_eq!(
        seen.iter().filter(|n| **n == "CacheUnavailable").count(),
        1,
        "{seen:?}"
    );
    assert!(seen.contains(&"SwitchedToFailoverConnection"));

    store.broken.store(false, Ordering::SeqCst);
    sleep_ms(200).await;
    assert_eq!(drain(&events), ["CacheRestored"]);
    let stored = store
        .inner
        .load(&[RecordKey::Connection("main".into())])
        .await
        .unwrap();
    let status = match &stored[0] {
        Slot::Readable {
            record: Record::Connection(entry),
            ..
        } => entry.counts.status,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        status,
        ConnectionStatus::Down,
        "the store caught up with the local state"
    );
}

/// A store that never answers.
struct Hung;

impl StateStore for Hung {
    fn load<'a>(&'a self, _keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>> {
        Box::pin(std::future::pending())
    }
    fn compare_and_set<'a>(&'a self, _writes: &'a [Write]) -> StoreFuture<'a, CasOutcome> {
        Box::pin(std::future::pending())
    }
    fn describe(&self) -> String {
        "hung".into()
    }
}

#[actix_rt::test]
async fn a_hung_store_never_blocks_routing() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let handle = FailoverSystem::builder(config())
        .probe("main", primary.clone())
        .probe("standby", Scripted::new(Mode::Up))
        .store(Hung)
        .store_timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .start();
    sleep_ms(400).await;
    primary.set(Mode::Refuse);
    sleep_ms(500).await;
    assert_eq!(
        handle.active_connection().await.unwrap().role,
        ActiveRole::Failover
    );
}

#[actix_rt::test]
async fn a_store_that_reads_but_cannot_write_is_one_outage_not_a_flapping_one() {
    tokio::time::pause();
    let store = Breakable::default();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start_with_store(primary.clone(), Scripted::new(Mode::Up), store.clone());
    let events = common::listen(&handle).await;
    sleep_ms(50).await;
    drain(&events);
    store.read_only.store(true, Ordering::SeqCst);
    primary.set(Mode::Refuse);
    sleep_ms(3000).await;
    assert_eq!(handle.active().role, ActiveRole::Failover);
    let seen = drain(&events);
    assert_eq!(
        seen.iter().filter(|n| **n == "CacheUnavailable").count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|n| **n == "CacheRestored").count(),
        0,
        "{seen:?}"
    );
    store.read_only.store(false, Ordering::SeqCst);
    sleep_ms(500).await;
    assert_eq!(drain(&events), ["CacheRestored"]);
}

#[actix_rt::test]
async fn a_hung_check_that_times_out_after_a_newer_one_answered_is_not_counted() {
    tokio::time::pause();
    let primary = Scripted::new(Mode::Up);
    let handle = common::start(config(), primary.clone(), Scripted::new(Mode::Up));
    sleep_ms(50).await;
    // Two checks hang (they overlap while the failure is confirmed), then the server answers again.
    primary.set(Mode::Hang);
    handle.report_query_failure("main").unwrap();
    sleep_ms(35).await;
    primary.set(Mode::Up);
    // The newer check answers at once; the two hung ones time out 15 and 35 ms later.
    sleep_ms(40).await;
    // The hung checks timed out after the newer success: stale, not failures. One refusal now is
    // one failure, not the third.
    primary.set(Mode::Refuse);
    handle.check("main").await.unwrap();
    assert_eq!(handle.active().role, ActiveRole::Primary);
    let states = handle.connection_states().await.unwrap();
    assert!(states[0].state.failure_count <= 1, "{:?}", states[0].state);
}
