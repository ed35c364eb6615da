//! Scripted probes, an event collector and a configuration for the actor tests (virtual time).
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix::prelude::*;
use dbfailover_core::{Config, DatabaseUrl, FailoverEvent, Schedule};
use dbfailover_engine::{Probe, ProbeError, ProbeFuture, ProbeReport};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a scripted probe does on its next checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Up,
    Refuse,
    Hang,
    Panic,
    ReadOnly,
}

/// A probe whose answers the test sets, counting its calls and how many ran at once.
#[derive(Clone)]
pub struct Scripted {
    mode: Arc<Mutex<Mode>>,
    pub calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
}

struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Scripted {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::new(AtomicUsize::new(0)),
            running: Arc::new(AtomicUsize::new(0)),
            max_running: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Probe for Scripted {
    fn check(&self, _timeout: Duration) -> ProbeFuture<'_> {
        let mode = *self.mode.lock().unwrap();
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let guard = Running(Arc::clone(&self.running));
        Box::pin(async move {
            let _guard = guard;
            match mode {
                Mode::Up => Ok(ProbeReport {
                    writable: Some(true),
                    replication: None,
                }),
                Mode::Refuse => Err(ProbeError::new("connection refused")),
                Mode::Hang => std::future::pending().await,
                Mode::Panic => panic!("scripted probe panic"),
                Mode::ReadOnly => Ok(ProbeReport {
                    writable: Some(false),
                    replication: None,
                }),
            }
        })
    }
}

/// An actor that keeps every event it receives.
pub struct Collector(pub Arc<Mutex<Vec<FailoverEvent>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for Collector {
    type Result = ();
    fn handle(&mut self, msg: FailoverEvent, _ctx: &mut Context<Self>) {
        // The snapshot every subscriber hears first is checked on its own (control.rs); the lists
        // hold what happened.
        if !matches!(msg.kind, dbfailover_core::EventKind::CurrentState { .. }) {
            self.0.lock().unwrap().push(msg);
        }
    }
}

/// Starts a collector; returns its recipient and the shared list.
pub fn collector() -> (Recipient<FailoverEvent>, Arc<Mutex<Vec<FailoverEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let addr = Collector(Arc::clone(&events)).start();
    (addr.recipient(), events)
}

pub fn names(events: &Arc<Mutex<Vec<FailoverEvent>>>) -> Vec<&'static str> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect()
}

/// Primary `main`, failover `standby`, interval 100 ms, timeout 50 ms, fast 20 ms, thresholds 3 / 2.
pub fn config() -> Config {
    let url = |s: &str| DatabaseUrl::parse(s).unwrap();
    let mut config = Config::with_databases(
        ("main", url("sqlite:///main.db")),
        ("standby", url("sqlite:///standby.db")),
    );
    config.failover.blocking = "blocking".into();
    config.health_check.interval = Schedule::Every(Duration::from_millis(100));
    config.health_check.timeout = Duration::from_millis(50);
    config.health_check.fast_interval = Some(Duration::from_millis(20));
    config
}

/// Subscribes a new collector to `handle`'s events; answers the list it fills.
pub async fn listen(handle: &dbfailover_engine::FailoverHandle) -> Arc<Mutex<Vec<FailoverEvent>>> {
    let (listener, events) = collector();
    handle.subscribe(listener).await.unwrap();
    events
}

/// Starts an engine on the test configuration with these probes and `store`.
pub fn start_with_store(
    primary: Scripted,
    failover: Scripted,
    store: impl dbfailover_engine::StateStore,
) -> dbfailover_engine::FailoverHandle {
    dbfailover_engine::FailoverSystem::builder(config())
        .probe("main", primary)
        .probe("standby", failover)
        .store(store)
        .build()
        .unwrap()
        .start()
}

/// Starts an engine on `config` with these probes for `main` and `standby`.
pub fn start(
    config: Config,
    primary: Scripted,
    failover: Scripted,
) -> dbfailover_engine::FailoverHandle {
    dbfailover_engine::FailoverSystem::builder(config)
        .probe("main", primary)
        .probe("standby", failover)
        .build()
        .unwrap()
        .start()
}

/// Sleeps in (paused) tokio time.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Removes and returns the names of the events received so far.
pub fn drain(events: &Arc<Mutex<Vec<FailoverEvent>>>) -> Vec<&'static str> {
    events
        .lock()
        .unwrap()
        .drain(..)
        .map(|e| e.kind.name())
        .collect()
}
