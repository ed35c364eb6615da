//! The shared-state protocol on a real Redis, as an operator meets it: a cache that evicts our keys,
//! garbage (and wrong types) in every key, and a fleet of thirty instances following a flapping primary.
//! Each instance is an engine with its own Redis client, in this process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::core::{StateSettings, StoreKind};
use dbfailover::{ActiveRole, Config, DatabaseUrl, FailoverHandle, FailoverSystem, Schedule};
use dbfailover_tests::cache::{CacheKind, CacheServer};
use dbfailover_tests::events::Events;
use dbfailover_tests::probe::switch_probe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PREFIX: &str = "dbfo_protocol";

fn state(url: String) -> StateSettings {
    StateSettings {
        store: StoreKind::Redis,
        url: Some(DatabaseUrl::parse(&url).unwrap()),
        path: None,
        prefix: PREFIX.into(),
        ttl: Duration::from_secs(30),
        timeout: Duration::from_millis(300),
        ..StateSettings::default()
    }
}

fn config(state: &StateSettings, interval: Duration) -> Config {
    let url = |s: &str| DatabaseUrl::parse(s).unwrap();
    let mut config = Config::with_databases(
        ("main", url("postgres://app:pw@127.0.0.1:1/app")),
        ("standby", url("postgres://app:pw@127.0.0.1:2/app")),
    );
    config.failover.blocking = "blocking".into();
    config.health_check.interval = Schedule::Every(interval);
    config.health_check.timeout = Duration::from_millis(300);
    config.health_check.fast_interval = Duration::from_millis(20);
    config.state = state.clone();
    config
}

struct Fleet {
    members: Vec<(FailoverHandle, Events)>,
    primary_up: Arc<AtomicBool>,
}

async fn fleet(state: &StateSettings, n: usize, interval: Duration) -> Fleet {
    let primary_up = Arc::new(AtomicBool::new(true));
    let standby_up = Arc::new(AtomicBool::new(true));
    let mut members = Vec::new();
    for _ in 0..n {
        let engine = FailoverSystem::builder(config(state, interval))
            .probe("main", switch_probe(Arc::clone(&primary_up)))
            .probe("standby", switch_probe(Arc::clone(&standby_up)))
            .shared_store(dbfailover::store::from_settings(state).unwrap())
            .build()
            .unwrap()
            .start();
        let (listener, events) = Events::start();
        engine.subscribe(listener).await.unwrap();
        members.push((engine, events));
    }
    tokio::time::sleep(interval * 5).await;
    Fleet {
        members,
        primary_up,
    }
}

impl Fleet {
    async fn all_reach(&self, role: ActiveRole, limit: Duration) -> Duration {
        let started = Instant::now();
        let mut reached: Vec<Option<Instant>> = vec![None; self.members.len()];
        while reached.iter().any(Option::is_none) {
            for (i, (m, _)) in self.members.iter().enumerate() {
                if reached[i].is_none() && m.active().role == role {
                    reached[i] = Some(Instant::now());
                }
            }
            assert!(started.elapsed() < limit, "not all reached {role}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let times: Vec<Instant> = reached.into_iter().flatten().collect();
        *times.iter().max().unwrap() - *times.iter().min().unwrap()
    }

    fn none_on(&self, role: ActiveRole) -> bool {
        self.members.iter().all(|(m, _)| m.active().role != role)
    }

    fn count(&self, event: &str) -> usize {
        self.members.iter().map(|(_, e)| e.count(event)).sum()
    }
}

#[actix_rt::test]
async fn an_evicting_redis_never_sends_anyone_back_to_a_dead_primary() {
    let redis = CacheServer::start_with(
        CacheKind::Redis,
        &["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-random"],
    );
    let state = state(redis.url());
    let fleet = fleet(&state, 3, Duration::from_millis(100)).await;
    fleet.primary_up.store(false, Ordering::SeqCst);
    fleet
        .all_reach(ActiveRole::Failover, Duration::from_secs(5))
        .await;
    let key = format!("{PREFIX}_conn_state_main");
    assert!(!redis.redis_cli(&["GET", &key]).trim().is_empty());
    // Flood the cache: every key, ours included, may be evicted, again and again.
    let junk = "x".repeat(20_000);
    let started = Instant::now();
    let mut evicted = 0;
    let mut i = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        for _ in 0..50 {
            redis.redis_cli(&["SET", &format!("junk:{i}"), &junk]);
            i += 1;
        }
        if redis.redis_cli(&["EXISTS", &key]).trim() == "0" {
            evicted += 1;
        }
        assert!(
            fleet.none_on(ActiveRole::Primary),
            "an instance went back to the dead primary"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = redis.redis_cli(&["INFO", "stats"]);
    let evictions: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    println!("evicted keys: {evictions}; our record seen missing {evicted} times");
    assert!(evictions > 0, "the flood evicted keys");
    // The record heals itself from the instances' knowledge.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fleet.none_on(ActiveRole::Primary));
    assert_eq!(fleet.count("CacheUnavailable"), 0);
    assert_eq!(fleet.count("SwitchedToPrimaryConnection"), 0);
}

#[actix_rt::test]
async fn garbage_and_wrong_types_in_every_key_heal_and_never_switch_anyone_back() {
    let redis = CacheServer::start(CacheKind::Redis);
    let state = state(redis.url());
    let fleet = fleet(&state, 3, Duration::from_millis(100)).await;
    fleet.primary_up.store(false, Ordering::SeqCst);
    fleet
        .all_reach(ActiveRole::Failover, Duration::from_secs(5))
        .await;
    let keys = redis.redis_cli(&["KEYS", &format!("{PREFIX}*")]);
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(keys.len() >= 4, "{keys:?}");
    let plantings: [&[&str]; 6] = [
        &["SET", "{}", "HEALTHY 0 0 1700000000000"],
        &[
            "SET",
            "{}",
            "dbfo2 99999999999999999999 00000000000000ff c HEALTHY 0 0 - -",
        ],
        &["SET", "{}", "dbfo2 1 zz c HEALTHY 0 0 - -"],
        &["SET", "{}", "\u{fffd}\u{7f}garbage"],
        &["DEL", "{}"],
        &["LPUSH", "{}", "HEALTHY"],
    ];
    for planting in plantings {
        for key in &keys {
            let args: Vec<String> = planting
                .iter()
                .map(|a| {
                    if *a == "{}" {
                        (*key).to_owned()
                    } else {
                        (*a).to_owned()
                    }
                })
                .collect();
            if planting[0] != "DEL" {
                redis.redis_cli(&["DEL", key]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            redis.redis_cli(&args);
        }
        // Polls and the next checks find it and rewrite it.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1500) {
            assert!(fleet.none_on(ActiveRole::Primary), "{planting:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Healed: the record reads DOWN again, as a readable record.
    let stored = redis.redis_cli(&["GET", &format!("{PREFIX}_conn_state_main")]);
    assert!(
        stored.starts_with("dbfo2 ") && stored.contains(" c DOWN "),
        "{stored}"
    );
    assert_eq!(fleet.count("CacheUnavailable"), 0);
    // And the next transition is shared as before.
    fleet.primary_up.store(true, Ordering::SeqCst);
    fleet
        .all_reach(ActiveRole::Primary, Duration::from_secs(5))
        .await;
}

#[actix_rt::test]
async fn thirty_instances_follow_a_flapping_primary_in_one_sequence() {
    let redis = CacheServer::start(CacheKind::Redis);
    let state = state(redis.url());
    let fleet = fleet(&state, 30, Duration::from_millis(200)).await;
    let mut spreads = Vec::new();
    for _ in 0..3 {
        fleet.primary_up.store(false, Ordering::SeqCst);
        spreads.push(
            fleet
                .all_reach(ActiveRole::Failover, Duration::from_secs(10))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        fleet.primary_up.store(true, Ordering::SeqCst);
        spreads.push(
            fleet
                .all_reach(ActiveRole::Primary, Duration::from_secs(10))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("switch spreads across 30 instances: {spreads:?}");
    let switches = |events: &Events| -> Vec<&'static str> {
        events
            .names()
            .into_iter()
            .filter(|n| n.starts_with("SwitchedTo"))
            .collect()
    };
    let first = switches(&fleet.members[0].1);
    assert_eq!(first.len(), 6, "{first:?}");
    for (_, events) in &fleet.members {
        assert_eq!(
            switches(events),
            first,
            "every instance saw the same switches"
        );
    }
    assert_eq!(
        fleet.count("CacheUnavailable"),
        0,
        "contention is not an outage"
    );
    // Each transition was made by one instance; the others learned it.
    let local_downs: usize = fleet
        .members
        .iter()
        .map(|(_, e)| {
            e.all()
                .iter()
                .filter(|ev| {
                    ev.kind.name() == "PrimaryConnectionDown"
                        && ev.origin == dbfailover::core::EventOrigin::Local
                })
                .count()
        })
        .sum();
    assert_eq!(local_downs, 3);
}

/// One instance of the partition test: its own probe flags and store URL.
struct Member {
    engine: FailoverHandle,
    events: Events,
    primary_up: Arc<AtomicBool>,
}

async fn member(state: &StateSettings, interval: Duration) -> Member {
    let primary_up = Arc::new(AtomicBool::new(true));
    let engine = FailoverSystem::builder(config(state, interval))
        .probe("main", switch_probe(Arc::clone(&primary_up)))
        .probe("standby", switch_probe(Arc::new(AtomicBool::new(true))))
        .shared_store(dbfailover::store::from_settings(state).unwrap())
        .build()
        .unwrap()
        .start();
    let (listener, events) = Events::start();
    engine.subscribe(listener).await.unwrap();
    Member {
        engine,
        events,
        primary_up,
    }
}

#[actix_rt::test]
async fn an_instance_cut_off_from_redis_and_the_primary_never_moves_the_fleet_and_follows_it_after()
{
    let redis = CacheServer::start(CacheKind::Redis);
    let proxy = dbfailover_tests::proxy::Proxy::start(redis.port()).await;
    let interval = Duration::from_millis(100);
    let direct = state(redis.url());
    let through_proxy = state(redis.url().replace(
        &format!(":{}/", redis.port()),
        &format!(":{}/", proxy.port()),
    ));
    let cut_off = member(&through_proxy, interval).await;
    let others = [
        member(&direct, interval).await,
        member(&direct, interval).await,
    ];
    tokio::time::sleep(interval * 5).await;
    for m in std::iter::once(&cut_off).chain(&others) {
        assert_eq!(m.engine.active().role, ActiveRole::Primary);
    }

    // One instance loses both the store and its path to the primary.
    proxy.cut();
    cut_off.primary_up.store(false, Ordering::SeqCst);
    let started = Instant::now();
    while cut_off.engine.active().role != ActiveRole::Failover {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "it fails over alone"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cut_off.events.count("CacheUnavailable"), 1);
    tokio::time::sleep(interval * 10).await;
    for m in &others {
        assert_eq!(
            m.engine.active().role,
            ActiveRole::Primary,
            "the others stay"
        );
    }

    // The store comes back for it; its own path to the primary does not.
    proxy.heal();
    let started = Instant::now();
    while cut_off.engine.active().role != ActiveRole::Primary {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "it follows the fleet, which still reaches the primary: {:?}",
            cut_off.events.names()
        );
        assert!(
            others
                .iter()
                .all(|m| m.engine.active().role == ActiveRole::Primary)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cut_off.events.count("CacheRestored"), 1);
    tokio::time::sleep(interval * 10).await;
    for m in &others {
        assert_eq!(
            m.events.count("PrimaryConnectionDown"),
            0,
            "{:?}",
            m.events.names()
        );
        assert_eq!(m.engine.active().role, ActiveRole::Primary);
    }
    let stored = redis.redis_cli(&["GET", &format!("{PREFIX}_conn_state_main")]);
    assert!(stored.contains(" c HEALTHY "), "{stored}");

    // And when the primary really dies, the fleet (the reconciled instance included) moves together.
    for m in &others {
        m.primary_up.store(false, Ordering::SeqCst);
    }
    let started = Instant::now();
    while std::iter::once(&cut_off)
        .chain(&others)
        .any(|m| m.engine.active().role != ActiveRole::Failover)
    {
        assert!(started.elapsed() < Duration::from_secs(5), "all fail over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
