//! The engine's lifetime (real time): once the last handle is dropped, or `shutdown` returns, no check
//! runs any more, nothing holds the probes or the store, and an engine with a thread of its own has
//! no thread left; in both start modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, config};
use dbfailover_engine::{FailoverHandle, FailoverSystem, MemoryStore, StateStore};
use std::sync::Arc;
use std::time::Duration;

/// The probes and store of one engine, kept to count who still holds them.
struct Parts {
    main: Scripted,
    standby: Scripted,
    store: Arc<dyn StateStore>,
}

impl Parts {
    fn new() -> Self {
        Self {
            main: Scripted::new(Mode::Up),
            standby: Scripted::new(Mode::Refuse),
            store: Arc::new(MemoryStore::default()),
        }
    }

    fn system(&self) -> FailoverSystem {
        FailoverSystem::builder(config())
            .probe("main", self.main.clone())
            .probe("standby", self.standby.clone())
            .shared_store(Arc::clone(&self.store))
            .build()
            .unwrap()
    }

    fn checks(&self) -> usize {
        self.main.calls() + self.standby.calls()
    }

    /// Asserts that the engine is gone: no check for half a second, and nothing else holds the
    /// store (the state actor and the change-feed forwarder held it).
    async fn assert_gone(&self, how: &str) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = self.checks();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(self.checks(), before, "{how}: checks went on");
        for _ in 0..100 {
            if Arc::strong_count(&self.store) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{how}: the store is still held {} times",
            Arc::strong_count(&self.store) - 1
        );
    }
}

/// The tests that count the process's engine threads take turns (`cargo test` runs tests as threads
/// of one process; nextest runs each in its own).
static THREAD_COUNTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The engine's threads in this process (`dbfailover-engine`, cut to 15 bytes by the kernel).
fn engine_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "dbfailover-engi")
        .count()
}

async fn running(handle: &FailoverHandle, parts: &Parts) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(parts.checks() > 2, "the engine checks");
    assert!(handle.active_connection().await.is_ok());
}

#[actix_rt::test]
async fn in_the_callers_system_dropping_the_last_handle_stops_everything() {
    let parts = Parts::new();
    let handle = parts.system().start();
    let clone = handle.clone();
    running(&handle, &parts).await;
    drop(handle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        parts.checks() > 0 && clone.active_connection().await.is_ok(),
        "a clone keeps it running"
    );
    drop(clone);
    parts.assert_gone("last handle dropped").await;
}

#[actix_rt::test]
async fn in_the_callers_system_shutdown_waits_until_everything_stopped() {
    let parts = Parts::new();
    let handle = parts.system().start();
    let clone = handle.clone();
    running(&handle, &parts).await;
    assert!(handle.shutdown().await, "stopped within the bound");
    assert!(
        clone.active_connection().await.is_err(),
        "every clone answers that the engine stopped"
    );
    drop(clone);
    parts.assert_gone("shutdown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_its_own_thread_dropping_the_last_handle_ends_the_thread() {
    let _turn = THREAD_COUNTING.lock().await;
    let threads_before = engine_threads();
    let parts = Parts::new();
    let handle = parts.system().start_in_thread().unwrap();
    running(&handle, &parts).await;
    assert_eq!(engine_threads(), threads_before + 1);
    drop(handle);
    parts.assert_gone("last handle dropped").await;
    assert_eq!(
        engine_threads(),
        threads_before,
        "the engine's thread ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_its_own_thread_shutdown_waits_for_the_thread() {
    let _turn = THREAD_COUNTING.lock().await;
    let threads_before = engine_threads();
    let parts = Parts::new();
    let handle = parts.system().start_in_thread().unwrap();
    running(&handle, &parts).await;
    assert!(handle.shutdown().await);
    assert_eq!(
        engine_threads(),
        threads_before,
        "the thread ended before shutdown returned"
    );
    parts.assert_gone("shutdown").await;
}
