//! Many instances, one decision: engines sharing a real Redis, memcached or state file agree, make each
//! transition once (one origin, the others learned), do not flap when they disagree, and keep working
//! through an outage of the store without a spurious switch when it comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::core::EventOrigin;
use dbfailover::core::{StateSettings, StoreKind};
use dbfailover::{
    ActiveRole, Config, DatabaseUrl, EventKind, FailoverHandle, FailoverSystem, Schedule,
};
use dbfailover_tests::cache::{CacheKind, CacheServer, REDIS_PASSWORD};
use dbfailover_tests::events::Events;
use dbfailover_tests::probe::switch_probe;
use dbfailover_tests::server::DbServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One instance of the service: an engine with its own store client.
struct Member {
    engine: FailoverHandle,
    events: Events,
    primary_up: Arc<AtomicBool>,
    failover_up: Arc<AtomicBool>,
}

fn config(state: StateSettings) -> Config {
    let url = |s: &str| DatabaseUrl::parse(s).unwrap();
    let mut config = Config::with_databases(
        ("main", url("postgres://app:pw@127.0.0.1:1/app")),
        ("standby", url("postgres://app:pw@127.0.0.1:2/app")),
    );
    config.failover.blocking = "blocking".into();
    config.health_check.interval = Schedule::Every(Duration::from_millis(100));
    config.health_check.timeout = Duration::from_millis(300);
    config.health_check.fast_interval = Some(Duration::from_millis(20));
    config.state = state;
    config
}

fn settings(
    store: StoreKind,
    url: Option<String>,
    path: Option<std::path::PathBuf>,
) -> StateSettings {
    let mut state = StateSettings::default();
    state.store = store;
    state.url = url.map(|u| DatabaseUrl::parse(&u).unwrap());
    state.path = path;
    state.prefix = "dbfailover_test".into();
    state.ttl = Duration::from_secs(30);
    state.timeout = Duration::from_millis(300);
    state
}

async fn member(state: &StateSettings) -> Member {
    let store = dbfailover::store::from_settings(state).unwrap();
    member_with_store(state, store).await
}

async fn member_with_store(
    state: &StateSettings,
    store: Arc<dyn dbfailover::StateStore>,
) -> Member {
    let primary_up = Arc::new(AtomicBool::new(true));
    let failover_up = Arc::new(AtomicBool::new(true));
    let engine = FailoverSystem::builder(config(state.clone()))
        .probe("main", switch_probe(Arc::clone(&primary_up)))
        .probe("standby", switch_probe(Arc::clone(&failover_up)))
        .shared_store(store)
        .build()
        .unwrap()
        .start();
    let (listener, events) = Events::start();
    engine.subscribe(listener).await.unwrap();
    Member {
        engine,
        events,
        primary_up,
        failover_up,
    }
}

async fn fleet(state: &StateSettings, n: usize) -> Vec<Member> {
    let mut members = Vec::new();
    for _ in 0..n {
        members.push(member(state).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    members
}

/// Waits until every member routes to `role`; returns the spread between the first and the last.
async fn all_reach(members: &[&FailoverHandle], role: ActiveRole, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut reached: Vec<Option<Instant>> = vec![None; members.len()];
    while reached.iter().any(Option::is_none) {
        for (i, m) in members.iter().enumerate() {
            if reached[i].is_none() && m.active().role == role {
                reached[i] = Some(Instant::now());
            }
        }
        assert!(
            started.elapsed() < limit,
            "not all reached {role}: {reached:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let times: Vec<Instant> = reached.into_iter().flatten().collect();
    *times.iter().max().unwrap() - *times.iter().min().unwrap()
}

fn origins(members: &[Member], name: &str) -> (usize, usize) {
    let all: Vec<_> = members
        .iter()
        .flat_map(|m| m.events.all())
        .filter(|e| e.kind.name() == name)
        .collect();
    let local = all
        .iter()
        .filter(|e| e.origin == EventOrigin::Local)
        .count();
    (local, all.len() - local)
}

async fn agree_on_switch(state: StateSettings, max_spread: Duration, label: &str) {
    let members = fleet(&state, 3).await;
    for m in &members {
        m.primary_up.store(false, Ordering::SeqCst);
    }
    let handles: Vec<_> = members.iter().map(|m| &m.engine).collect();
    let spread = all_reach(&handles, ActiveRole::Failover, Duration::from_secs(5)).await;
    println!(
        "[{label}] three instances switched within {:.1} ms of each other",
        spread.as_secs_f64() * 1000.0
    );
    assert!(spread <= max_spread, "{spread:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        origins(&members, "PrimaryConnectionDown"),
        (1, 2),
        "one origin, two learned"
    );
    assert_eq!(origins(&members, "SwitchedToFailoverConnection"), (1, 2));
    for m in &members {
        m.primary_up.store(true, Ordering::SeqCst);
    }
    all_reach(&handles, ActiveRole::Primary, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origins(&members, "PrimaryConnectionRestored"), (1, 2));
    let _ = &members[0].failover_up;
}

async fn disagreement_does_not_flap(state: StateSettings) {
    let members = fleet(&state, 3).await;
    members[0].primary_up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for m in &members {
        assert_eq!(
            m.engine.active().epoch,
            0,
            "nobody switched: {:?}",
            m.events.names()
        );
        assert_eq!(m.events.count("PrimaryConnectionDown"), 0);
    }
}

/// How the store goes away, and comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// kill -9, then a restart: the store comes back empty.
    KilledThenRestartedEmpty,
    /// SIGSTOP, then SIGCONT: the store hangs, then answers with what it had.
    Hung,
}

/// The store goes away in the middle of a failover: every instance still fails over from its own
/// checks, reports the outage once, and when the store is back reports that once, with no switch.
async fn failover_through_a_store_outage(kind: CacheKind, outage: Outage) {
    let mut cache = CacheServer::start(kind);
    let store_kind = if kind == CacheKind::Redis {
        StoreKind::Redis
    } else {
        StoreKind::Memcached
    };
    let state = settings(store_kind, Some(cache.url()), None);
    let members = fleet(&state, 2).await;
    let handles: Vec<_> = members.iter().map(|m| &m.engine).collect();

    match outage {
        Outage::KilledThenRestartedEmpty => cache.kill9(),
        Outage::Hung => cache.freeze(),
    }
    for m in &members {
        m.primary_up.store(false, Ordering::SeqCst);
    }
    // A hung store costs each instance the store timeout (300 ms) once, then it decides on its own.
    all_reach(&handles, ActiveRole::Failover, Duration::from_secs(5)).await;
    for m in &members {
        assert_eq!(
            m.events.count("CacheUnavailable"),
            1,
            "{:?}",
            m.events.names()
        );
        let active = m.engine.active_connection().await.unwrap();
        assert_eq!(
            active.role,
            ActiveRole::Failover,
            "the handle answers while the store is away"
        );
    }
    let epochs: Vec<u64> = members.iter().map(|m| m.engine.active().epoch).collect();

    match outage {
        Outage::KilledThenRestartedEmpty => cache.restart(),
        Outage::Hung => cache.thaw(),
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (m, epoch) in members.iter().zip(&epochs) {
        assert_eq!(m.events.count("CacheRestored"), 1, "{:?}", m.events.names());
        assert_eq!(
            m.engine.active().epoch,
            *epoch,
            "no switch after the store came back"
        );
        assert_eq!(m.engine.active().role, ActiveRole::Failover);
    }
    // The DOWN decided meanwhile is in the store (written back after an empty restart).
    let store = dbfailover::store::from_settings(&state).unwrap();
    let entry = dbfailover_tests::stored::counts(&*store, "main")
        .await
        .expect("the DOWN is in the store");
    assert_eq!(entry.0, dbfailover::ConnectionStatus::Down);

    // And the next transition is shared again: the primary comes back for everyone.
    for m in &members {
        m.primary_up.store(true, Ordering::SeqCst);
    }
    all_reach(&handles, ActiveRole::Primary, Duration::from_secs(5)).await;
}

async fn ttl_expiry(state: StateSettings) {
    let mut state = state;
    state.ttl = Duration::from_secs(1);
    let store = dbfailover::store::from_settings(&state).unwrap();
    let down = dbfailover_tests::stored::down_record("main");
    assert_eq!(
        store.compare_and_set(&[down]).await.unwrap(),
        dbfailover::core::record::CasOutcome::Written
    );
    assert!(
        dbfailover_tests::stored::counts(&*store, "main")
            .await
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        dbfailover_tests::stored::counts(&*store, "main").await,
        None,
        "expired: UNKNOWN / 0"
    );
}

// Redis

#[actix_rt::test]
async fn redis_three_instances_follow_a_killed_postgres_primary_together() {
    let cache = CacheServer::start(CacheKind::Redis);
    let (mut primary, failover) = tokio::join!(
        DbServer::postgres("primary_db"),
        DbServer::postgres("failover_db")
    );
    let state = settings(StoreKind::Redis, Some(cache.url()), None);
    let mut config = config(state.clone());
    config.databases.clear();
    config.failover.primary = "primary_db".into();
    config.failover.failover = "failover_db".into();
    config.databases.insert(
        "primary_db".into(),
        dbfailover::DatabaseSettings::new(primary.url()),
    );
    config.databases.insert(
        "failover_db".into(),
        dbfailover::DatabaseSettings::new(failover.url()),
    );
    let mut members = Vec::new();
    for _ in 0..3 {
        let store = dbfailover::store::from_settings(&state).unwrap();
        let engine = dbfailover::builder(config.clone())
            .unwrap()
            .shared_store(store)
            .build()
            .unwrap()
            .start();
        let (listener, events) = Events::start();
        engine.subscribe(listener).await.unwrap();
        members.push(Member {
            engine,
            events,
            primary_up: Arc::new(AtomicBool::new(true)),
            failover_up: Arc::new(AtomicBool::new(true)),
        });
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let killed = Instant::now();
    primary.kill9();
    let handles: Vec<_> = members.iter().map(|m| &m.engine).collect();
    let spread = all_reach(&handles, ActiveRole::Failover, Duration::from_secs(5)).await;
    println!(
        "[redis] postgres primary killed: all three on the failover after {:.1} ms, within {:.1} ms of each other",
        killed.elapsed().as_secs_f64() * 1000.0,
        spread.as_secs_f64() * 1000.0
    );
    assert!(spread <= Duration::from_millis(100), "{spread:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origins(&members, "PrimaryConnectionDown"), (1, 2));
    for m in &members {
        for e in m.events.all() {
            let json = serde_json::to_string(&e).unwrap();
            assert!(
                !json.contains("app-secret") && !json.contains(REDIS_PASSWORD),
                "{json}"
            );
        }
    }
}

#[actix_rt::test]
async fn redis_instances_agree_within_100_ms_and_one_makes_each_transition() {
    let cache = CacheServer::start(CacheKind::Redis);
    agree_on_switch(
        settings(StoreKind::Redis, Some(cache.url()), None),
        Duration::from_millis(100),
        "redis",
    )
    .await;
}

#[actix_rt::test]
async fn redis_disagreeing_instances_do_not_flap() {
    let cache = CacheServer::start(CacheKind::Redis);
    disagreement_does_not_flap(settings(StoreKind::Redis, Some(cache.url()), None)).await;
}

#[actix_rt::test]
async fn redis_killed_mid_failover_and_restarted_empty_loses_nothing_and_switches_nothing() {
    failover_through_a_store_outage(CacheKind::Redis, Outage::KilledThenRestartedEmpty).await;
}

#[actix_rt::test]
async fn a_hung_redis_never_blocks_routing_and_its_return_switches_nothing() {
    failover_through_a_store_outage(CacheKind::Redis, Outage::Hung).await;
}

#[actix_rt::test]
async fn redis_entries_expire_to_unknown() {
    let cache = CacheServer::start(CacheKind::Redis);
    ttl_expiry(settings(StoreKind::Redis, Some(cache.url()), None)).await;
}

#[test]
fn redis_urls_are_shown_without_their_password() {
    let url = format!("redis://user:{REDIS_PASSWORD}@127.0.0.1:1/0");
    let store =
        dbfailover::store::from_settings(&settings(StoreKind::Redis, Some(url), None)).unwrap();
    assert!(!store.describe().contains(REDIS_PASSWORD));
    assert!(
        store.describe().contains("user:****@"),
        "{}",
        store.describe()
    );
}

// memcached

#[actix_rt::test]
async fn memcached_instances_agree_within_a_check_interval() {
    let cache = CacheServer::start(CacheKind::Memcached);
    let state = settings(StoreKind::Memcached, Some(cache.url()), None);
    // No push: instances poll at the check interval (100 ms).
    agree_on_switch(state, Duration::from_millis(250), "memcached").await;
}

#[actix_rt::test]
async fn memcached_disagreeing_instances_do_not_flap() {
    let cache = CacheServer::start(CacheKind::Memcached);
    disagreement_does_not_flap(settings(StoreKind::Memcached, Some(cache.url()), None)).await;
}

#[actix_rt::test]
async fn memcached_killed_mid_failover_and_restarted_empty_loses_nothing_and_switches_nothing() {
    failover_through_a_store_outage(CacheKind::Memcached, Outage::KilledThenRestartedEmpty).await;
}

#[actix_rt::test]
async fn memcached_entries_expire_to_unknown() {
    let cache = CacheServer::start(CacheKind::Memcached);
    ttl_expiry(settings(StoreKind::Memcached, Some(cache.url()), None)).await;
}

// file

#[actix_rt::test]
async fn file_store_instances_agree_within_a_check_interval() {
    let dir = tempfile::tempdir().unwrap();
    let state = settings(StoreKind::File, None, Some(dir.path().join("state.json")));
    agree_on_switch(state, Duration::from_millis(250), "file").await;
}

#[actix_rt::test]
async fn file_store_disagreeing_instances_do_not_flap() {
    let dir = tempfile::tempdir().unwrap();
    disagreement_does_not_flap(settings(
        StoreKind::File,
        None,
        Some(dir.path().join("state.json")),
    ))
    .await;
}

#[actix_rt::test]
async fn file_store_entries_expire_to_unknown() {
    let dir = tempfile::tempdir().unwrap();
    ttl_expiry(settings(
        StoreKind::File,
        None,
        Some(dir.path().join("state.json")),
    ))
    .await;
}

#[actix_rt::test]
async fn an_unwritable_state_file_is_an_outage_not_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    // A folder put where the file should be after the start (one at the start is refused): every
    // write fails, as an unwritable file would.
    let path = dir.path().join("state.json");
    let state = settings(StoreKind::File, None, Some(path.clone()));
    let store = dbfailover::store::from_settings(&state).unwrap();
    std::fs::create_dir(&path).unwrap();
    let members = [member_with_store(&state, store).await];
    members[0].primary_up.store(false, Ordering::SeqCst);
    all_reach(
        &[&members[0].engine],
        ActiveRole::Failover,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(members[0].events.count("CacheUnavailable"), 1);
    let unavailable = members[0]
        .events
        .all()
        .into_iter()
        .find(|e| e.kind.name() == "CacheUnavailable")
        .unwrap();
    assert!(matches!(
        unavailable.kind,
        EventKind::CacheUnavailable { .. }
    ));
}

/// Connections to the store other than the one asking (`CLIENT LIST` minus `redis-cli`'s own).
fn store_clients(redis: &CacheServer) -> usize {
    redis
        .redis_cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|line| line.contains("addr=") && !line.contains("cmd=client|list"))
        .count()
}

#[actix_rt::test]
async fn the_last_handle_dropped_leaves_no_connection_to_redis() {
    let redis = CacheServer::start(CacheKind::Redis);
    let state = settings(StoreKind::Redis, Some(redis.url()), None);
    let before = store_clients(&redis);
    let member = member(&state).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        store_clients(&redis) >= before + 2,
        "the engine holds its command connection and its subscription: {}",
        redis.redis_cli(&["CLIENT", "LIST"])
    );
    drop(member);
    // Nothing is published meanwhile: the subscriber must notice on its own that nobody listens.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store_clients(&redis) > before {
        assert!(
            Instant::now() < deadline,
            "connections left 5 s after the last handle was dropped:\n{}",
            redis.redis_cli(&["CLIENT", "LIST"])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
