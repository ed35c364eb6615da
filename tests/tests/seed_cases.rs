//! The seed's own test cases (ConnectionStateManagerTest, DatabaseFailoverManagerTest,
//! BlockingConnectionTest in BEHAVIOUR.md's terms), through the public API, adjusted where dbfailover
//! deliberately differs. Virtual time; probes are scripted switches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::core::record::{CasOutcome, Notice, RecordKey, Slot, Write};
use dbfailover::engine::{FnProbe, StoreFuture};
use dbfailover::{
    ActiveRole, Config, ConnectionStatus, DatabaseUrl, FailoverHandle, FailoverSystem, MemoryStore,
    ProbeError, ProbeReport, Schedule, StateStore,
};
use dbfailover_tests::events::Events;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A probe that answers up or down as a flag says.
fn switch_probe(up: Arc<AtomicBool>) -> impl dbfailover::Probe {
    FnProbe::new(move |_timeout| {
        let up = up.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(ProbeReport::default())
            } else {
                Err(ProbeError::new("SQLSTATE[HY000] [2002] Connection refused"))
            }
        }
    })
}

struct Bed {
    engine: FailoverHandle,
    events: Events,
    primary: Arc<AtomicBool>,
    failover: Arc<AtomicBool>,
    store: Arc<MemoryStore>,
}

/// Shares one in-memory store between the engine and the test.
struct SharedStore(Arc<MemoryStore>);

impl StateStore for SharedStore {
    fn load<'a>(&'a self, keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>> {
        self.0.load(keys)
    }
    fn compare_and_set<'a>(&'a self, writes: &'a [Write]) -> StoreFuture<'a, CasOutcome> {
        self.0.compare_and_set(writes)
    }
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        self.0.changes()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// The seed's view of an entry: status and failure count.
async fn stored(store: &MemoryStore, connection: &str) -> Option<(ConnectionStatus, u32)> {
    dbfailover_tests::stored::counts(store, connection).await
}

async fn bed(primary_up: bool, failover_up: bool) -> Bed {
    tokio::time::pause();
    let url = |s: &str| DatabaseUrl::parse(s).unwrap();
    // The seed's default names.
    let mut config = Config::with_databases(
        ("mysql", url("mysql://app:secret@10.0.0.1/app")),
        ("mysql_failover", url("mysql://app:secret@10.0.0.2/app")),
    );
    config.health_check.interval = Schedule::Every(Duration::from_secs(1));
    let primary = Arc::new(AtomicBool::new(primary_up));
    let failover = Arc::new(AtomicBool::new(failover_up));
    let store = Arc::new(MemoryStore::default());
    let engine = FailoverSystem::builder(config)
        .probe("mysql", switch_probe(Arc::clone(&primary)))
        .probe("mysql_failover", switch_probe(Arc::clone(&failover)))
        .store(SharedStore(Arc::clone(&store)))
        .build()
        .unwrap()
        .start();
    let (listener, events) = Events::start();
    engine.subscribe(listener).await.unwrap();
    Bed {
        engine,
        events,
        primary,
        failover,
        store,
    }
}

async fn seconds(n: u64) {
    tokio::time::sleep(Duration::from_millis(n * 1000 + 100)).await;
}

// ConnectionStateManagerTest

#[actix_rt::test]
async fn state_success_stores_healthy_with_zero_failures() {
    let bed = bed(true, true).await;
    seconds(0).await;
    assert_eq!(
        stored(&bed.store, "mysql").await,
        Some((ConnectionStatus::Healthy, 0))
    );
}

#[actix_rt::test]
async fn state_failures_count_up_and_the_threshold_stores_down_with_one_event() {
    let bed = bed(true, true).await;
    seconds(0).await;
    bed.primary.store(false, Ordering::SeqCst);
    wait_failures(&bed, 1).await;
    // The seed stores UNKNOWN below the threshold; a HEALTHY connection stays HEALTHY here (weakness 1).
    assert_eq!(
        stored(&bed.store, "mysql").await,
        Some((ConnectionStatus::Healthy, 1))
    );
    // The failure is confirmed at the fast interval: DOWN at the threshold.
    wait_failures(&bed, 3).await;
    assert_eq!(
        stored(&bed.store, "mysql").await,
        Some((ConnectionStatus::Down, 3))
    );
    // DOWN: checked at the normal interval again, no new event.
    seconds(3).await;
    assert_eq!(
        bed.events.count("PrimaryConnectionDown"),
        1,
        "already DOWN: no repeat"
    );
    // The shared count stops at the threshold ("at least 3"): a check that changes nothing writes
    // nothing, so a dead primary costs the store no write per check.
    assert_eq!(
        stored(&bed.store, "mysql").await,
        Some((ConnectionStatus::Down, 3))
    );
}

/// Waits (virtual time, 1 ms steps) until the primary's stored failure count is `n`.
async fn wait_failures(bed: &Bed, n: u32) {
    for _ in 0..5000 {
        if stored(&bed.store, "mysql").await.map(|s| s.1) == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("failure count never reached {n}");
}

#[actix_rt::test]
async fn state_recovery_from_down_emits_restored_but_unknown_to_healthy_does_not() {
    let bed = bed(false, true).await;
    seconds(2).await;
    assert_eq!(bed.events.count("PrimaryConnectionDown"), 1);
    assert_eq!(bed.events.count("PrimaryConnectionRestored"), 0);
    bed.primary.store(true, Ordering::SeqCst);
    seconds(2).await; // the recovery threshold, 2 successes
    assert_eq!(bed.events.count("PrimaryConnectionRestored"), 1);
    // ConnectionHealthy: the failover's first success, and the primary's recovery; not every check.
    assert_eq!(bed.events.count("ConnectionHealthy"), 2);
}

#[actix_rt::test]
async fn state_an_expired_entry_reads_as_unknown_and_zero() {
    tokio::time::pause();
    let store = MemoryStore::new(Duration::from_secs(300));
    let down = dbfailover_tests::stored::down_record("mysql");
    store.compare_and_set(&[down]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(
        stored(&store, "mysql").await,
        Some((ConnectionStatus::Down, 3))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored(&store, "mysql").await,
        None,
        "expired = missing = UNKNOWN / 0"
    );
}

#[actix_rt::test]
async fn state_a_restarted_engine_resumes_from_the_store() {
    let bed = bed(false, true).await;
    seconds(3).await;
    assert_eq!(
        stored(&bed.store, "mysql").await.map(|s| s.0),
        Some(ConnectionStatus::Down)
    );
    // A second engine sharing the store starts from DOWN, not from UNKNOWN.
    let url = |s: &str| DatabaseUrl::parse(s).unwrap();
    let mut config = Config::with_databases(
        ("mysql", url("mysql://app:secret@10.0.0.1/app")),
        ("mysql_failover", url("mysql://app:secret@10.0.0.2/app")),
    );
    config.health_check.interval = Schedule::Disabled;
    let second = FailoverSystem::builder(config)
        .probe("mysql", switch_probe(Arc::clone(&bed.primary)))
        .probe("mysql_failover", switch_probe(Arc::clone(&bed.failover)))
        .store(SharedStore(Arc::clone(&bed.store)))
        .build()
        .unwrap()
        .start();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(second.active().name, "mysql_failover");
}

// DatabaseFailoverManagerTest

#[actix_rt::test]
async fn manager_nothing_known_yet_routes_to_primary() {
    let bed = bed(false, false).await;
    let active = bed.engine.active_connection().await.unwrap();
    assert_eq!(
        (active.role, active.name.as_str()),
        (ActiveRole::Primary, "mysql")
    );
}

#[actix_rt::test]
async fn manager_primary_down_failover_healthy_switches_to_failover_once() {
    let bed = bed(false, true).await;
    seconds(5).await;
    assert_eq!(bed.engine.active().name, "mysql_failover");
    assert_eq!(bed.events.count("SwitchedToFailoverConnection"), 1);
    assert_eq!(bed.events.count("DatabaseConnectionSwitched"), 1);
}

#[actix_rt::test]
async fn manager_both_down_is_blocking_and_back_exits_limited_mode() {
    let bed = bed(false, false).await;
    seconds(3).await;
    assert_eq!(bed.engine.active().name, "blocking_connection");
    assert_eq!(bed.events.count("LimitedFunctionalityModeActivated"), 1);
    bed.primary.store(true, Ordering::SeqCst);
    seconds(2).await;
    assert_eq!(bed.engine.active().name, "mysql");
    assert_eq!(bed.events.count("ExitedLimitedFunctionalityMode"), 1);
    let exited = bed
        .events
        .all()
        .into_iter()
        .find(|e| e.kind.name() == "ExitedLimitedFunctionalityMode")
        .unwrap();
    let json = serde_json::to_value(&exited).unwrap();
    assert_eq!(json["restored_to_connection_name"], "mysql");
}

#[actix_rt::test]
async fn manager_one_failed_check_does_not_move_traffic() {
    // The seed routes away after one failure and back after one success (weakness 1). Not here.
    let bed = bed(true, true).await;
    seconds(0).await;
    bed.primary.store(false, Ordering::SeqCst);
    wait_failures(&bed, 1).await;
    // Back before the confirming check.
    bed.primary.store(true, Ordering::SeqCst);
    seconds(3).await;
    assert_eq!(bed.engine.active().epoch, 0, "no switch at all");
    assert!(bed.events.names().iter().all(|n| *n == "ConnectionHealthy"));
}

#[actix_rt::test]
async fn manager_forced_switches() {
    let bed = bed(true, true).await;
    seconds(0).await;
    assert_eq!(
        bed.engine.force_failover().await.unwrap().name,
        "mysql_failover"
    );
    assert_eq!(bed.engine.force_primary().await.unwrap().name, "mysql");
    assert_eq!(bed.events.count("SwitchedToFailoverConnection"), 1);
    assert_eq!(bed.events.count("SwitchedToPrimaryConnection"), 1);
    let _ = &bed.failover;
}
