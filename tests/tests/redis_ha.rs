//! A state store that is itself highly available: engines sharing Redis under Sentinel (a primary,
//! one replica, three Sentinels) or a Redis Cluster (three primaries, three replicas), all real
//! servers on free loopback ports. The Redis primary (or the cluster node owning the deployment's
//! slot) is killed in the middle of a database failover: every engine still fails the database
//! over, none switches spuriously, the store comes back through Sentinel (or the cluster's own
//! failover) without a restart of the engines, and `CacheRestored` fires once on each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::core::record::{CasOutcome, RecordKey};
use dbfailover::core::{EventOrigin, RedisNodes, StateSettings, StoreKind};
use dbfailover::{ActiveRole, Config, DatabaseUrl, FailoverHandle, FailoverSystem, Schedule};
use dbfailover_tests::cache::{ClusterBed, MASTER_NAME, REDIS_PASSWORD, SentinelBed};
use dbfailover_tests::events::Events;
use dbfailover_tests::probe::switch_probe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PREFIX: &str = "dbfo_ha";

/// One instance of the service: an engine with its own store client.
struct Member {
    engine: FailoverHandle,
    events: Events,
    primary_up: Arc<AtomicBool>,
}

fn url(text: &str) -> DatabaseUrl {
    DatabaseUrl::parse(text).unwrap()
}

fn config(state: StateSettings) -> Config {
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

fn base() -> StateSettings {
    let mut state = StateSettings::default();
    state.store = StoreKind::Redis;
    state.prefix = PREFIX.into();
    state.ttl = Duration::from_secs(30);
    state.timeout = Duration::from_millis(300);
    state
}

fn nodes(urls: &[String]) -> RedisNodes {
    RedisNodes::from(urls.iter().map(|u| url(u)).collect::<Vec<_>>())
}

fn sentinel_settings(bed: &SentinelBed) -> StateSettings {
    let mut state = base();
    state.sentinels = nodes(&bed.sentinel_urls());
    state.master_name = Some(MASTER_NAME.into());
    state.node_auth = Some(url(&bed.node_auth()));
    state
}

fn cluster_settings(bed: &ClusterBed) -> StateSettings {
    let mut state = base();
    state.cluster = nodes(&bed.urls());
    state
}

async fn member(state: &StateSettings) -> Member {
    let primary_up = Arc::new(AtomicBool::new(true));
    let store = dbfailover::store::from_settings(state).unwrap();
    assert!(
        !store.describe().contains(REDIS_PASSWORD),
        "{}",
        store.describe()
    );
    let engine = FailoverSystem::builder(config(state.clone()))
        .probe("main", switch_probe(Arc::clone(&primary_up)))
        .probe("standby", switch_probe(Arc::new(AtomicBool::new(true))))
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
    }
}

async fn fleet(state: &StateSettings, n: usize) -> Vec<Member> {
    let mut members = Vec::new();
    for _ in 0..n {
        members.push(member(state).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    members
}

/// Waits until every member routes to `role`; returns the spread between the first and the last.
async fn all_reach(members: &[Member], role: ActiveRole, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut reached: Vec<Option<Instant>> = vec![None; members.len()];
    while reached.iter().any(Option::is_none) {
        for (i, m) in members.iter().enumerate() {
            if reached[i].is_none() && m.engine.active().role == role {
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

/// How many events named `name` the fleet saw as `local`, and as `learned`.
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

/// Three instances fail the database over together and back: each transition made once (one
/// `local`, two `learned`), within `max_spread` of each other (pushes, not polling).
async fn agree_on_switch(state: &StateSettings, max_spread: Duration, label: &str) {
    let members = fleet(state, 3).await;
    for m in &members {
        m.primary_up.store(false, Ordering::SeqCst);
    }
    let spread = all_reach(&members, ActiveRole::Failover, Duration::from_secs(5)).await;
    println!(
        "[{label}] three instances switched within {:.1} ms of each other",
        spread.as_secs_f64() * 1000.0
    );
    assert!(spread <= max_spread, "{spread:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origins(&members, "PrimaryConnectionDown"), (1, 2));
    assert_eq!(origins(&members, "SwitchedToFailoverConnection"), (1, 2));
    for m in &members {
        m.primary_up.store(true, Ordering::SeqCst);
    }
    all_reach(&members, ActiveRole::Primary, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origins(&members, "PrimaryConnectionRestored"), (1, 2));
    for m in &members {
        assert_eq!(
            m.events.count("CacheUnavailable"),
            0,
            "{:?}",
            m.events.names()
        );
    }
}

/// One instance loses the database, two still reach it: nobody switches.
async fn disagreement_does_not_flap(state: &StateSettings) {
    let members = fleet(state, 3).await;
    members[0].primary_up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for m in &members {
        assert_eq!(m.engine.active().epoch, 0, "{:?}", m.events.names());
        assert_eq!(m.events.count("PrimaryConnectionDown"), 0);
    }
}

/// After the store's own failover (started by `fail_store`, which answers when it started; `heal`
/// runs once every member saw `CacheRestored`): every member already on the failover database,
/// `CacheUnavailable` and `CacheRestored` once each, no switch back, the DOWN in the store again,
/// and the next transition shared again. Answers the time from the store's failure to each
/// member's `CacheRestored`.
async fn failover_through_a_store_failover(
    state: &StateSettings,
    fail_store: impl FnOnce() -> Instant,
    heal: impl FnOnce(),
    label: &str,
) -> Vec<Duration> {
    let members = fleet(state, 3).await;
    for m in &members {
        m.primary_up.store(false, Ordering::SeqCst);
    }
    all_reach(&members, ActiveRole::Failover, Duration::from_secs(5)).await;
    let failed_at = fail_store();
    // The members keep routing while the store fails over, and are told once that it is away,
    // once that it is back.
    let limit = Instant::now() + Duration::from_secs(30);
    let mut restored: Vec<Option<Duration>> = vec![None; members.len()];
    while restored.iter().any(Option::is_none) {
        for (i, m) in members.iter().enumerate() {
            if restored[i].is_none() && m.events.count("CacheRestored") > 0 {
                restored[i] = Some(failed_at.elapsed());
            }
            assert_eq!(m.engine.active().role, ActiveRole::Failover);
        }
        assert!(
            Instant::now() < limit,
            "the store did not come back: {:?}",
            members.iter().map(|m| m.events.names()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restored: Vec<Duration> = restored.into_iter().flatten().collect();
    println!(
        "[{label}] CacheRestored after the store's failure: {:?}",
        restored
            .iter()
            .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
    );
    heal();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for m in &members {
        let names = m.events.names();
        assert_eq!(m.events.count("CacheUnavailable"), 1, "{names:?}");
        assert_eq!(m.events.count("CacheRestored"), 1, "{names:?}");
        assert_eq!(
            m.events.count("SwitchedToFailoverConnection"),
            1,
            "{names:?}"
        );
        assert_eq!(
            m.events.count("SwitchedToPrimaryConnection"),
            0,
            "{names:?}"
        );
        assert_eq!(m.engine.active().role, ActiveRole::Failover);
        assert_eq!(m.engine.active().epoch, 1, "one switch, none spurious");
    }
    // The DOWN is in the store that took over (rewritten if the failover lost it).
    let store = dbfailover::store::from_settings(state).unwrap();
    let entry = dbfailover_tests::stored::counts(&*store, "main").await;
    assert_eq!(
        entry.map(|e| e.0),
        Some(dbfailover::ConnectionStatus::Down),
        "the DOWN is in the store after its failover"
    );
    // The next transition is shared again: one instance makes it, the others learn it.
    for m in &members {
        m.primary_up.store(true, Ordering::SeqCst);
    }
    all_reach(&members, ActiveRole::Primary, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(origins(&members, "PrimaryConnectionRestored"), (1, 2));
    // The change feed came back too: a forced switch reaches the others by push (polling would
    // take up to ten check intervals, 1 s).
    members[0].engine.force_failover().await.unwrap();
    let spread = all_reach(&members, ActiveRole::Failover, Duration::from_secs(5)).await;
    println!(
        "[{label}] a forced switch after the store's failover reached everyone within {:.1} ms",
        spread.as_secs_f64() * 1000.0
    );
    assert!(spread < Duration::from_millis(100), "{spread:?}");
    restored
}

#[actix_rt::test]
async fn sentinel_instances_agree_and_one_makes_each_transition() {
    let bed = SentinelBed::start();
    agree_on_switch(
        &sentinel_settings(&bed),
        Duration::from_millis(100),
        "sentinel",
    )
    .await;
}

/// The replica is frozen while the fleet writes the database's DOWN to the primary, then the
/// primary is killed and the replica thawed: Sentinel promotes a replica that never got the DOWN
/// (an acknowledged write lost, as asynchronous replication allows). The instances still route to
/// the failover database, rewrite the DOWN they know, and switch nothing.
#[actix_rt::test]
async fn sentinel_primary_killed_in_the_middle_of_a_database_failover_loses_no_decision() {
    let mut bed = SentinelBed::start();
    let state = sentinel_settings(&bed);
    let (_, replica_port) = bed.ports();
    let bed_ref = &mut bed;
    bed_ref.freeze_replica();
    let restored = failover_through_a_store_failover(
        &state,
        || {
            let lost = bed_ref
                .unreplicated_bytes()
                .expect("the primary's replication offsets");
            println!("[sentinel] bytes acknowledged by the primary, never replicated: {lost}");
            assert!(
                lost > 0,
                "the DOWN written meanwhile never reached the replica"
            );
            bed_ref.kill_primary();
            let at = Instant::now();
            bed_ref.thaw_replica();
            at
        },
        || {},
        "sentinel",
    )
    .await;
    assert!(!bed.primary_alive());
    assert_eq!(bed.current_primary_port(), Some(replica_port));
    assert!(bed.replica_cli(&["ROLE"]).starts_with("master"));
    assert!(restored.iter().all(|d| *d < Duration::from_secs(15)));
}

/// Two primaries at once: the Redis primary hangs (SIGSTOP) in the middle of a database failover,
/// Sentinel promotes the replica, then the old primary answers again, still a primary with its own
/// data, until the Sentinels demote it. The instances follow the Sentinels, switch nothing, and
/// the old primary ends a replica of the new one.
#[actix_rt::test]
async fn sentinel_primary_hung_then_back_beside_the_promoted_replica_switches_nothing() {
    let bed = SentinelBed::start();
    let state = sentinel_settings(&bed);
    let (old, replica) = bed.ports();
    failover_through_a_store_failover(
        &state,
        || {
            bed.freeze_primary();
            Instant::now()
        },
        || bed.thaw_primary(),
        "sentinel, hung primary",
    )
    .await;
    assert_eq!(bed.current_primary_port(), Some(replica));
    let limit = Instant::now() + Duration::from_secs(20);
    while !bed.node_cli(old, &["ROLE"]).starts_with("slave") {
        assert!(Instant::now() < limit, "the old primary was not demoted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A planned switchover (`SENTINEL FAILOVER`) while a fleet routes to the failover database: the
/// Sentinels promote the replica and demote the old primary, killing its clients. The store's kept
/// connection is dead; the next call replaces it within the call, on the primary the Sentinels name
/// now. The fleet switches nothing, is told of an outage at most once (and of its end as often),
/// and shares the next transition.
#[actix_rt::test]
async fn a_planned_sentinel_switchover_moves_the_store_without_a_switch() {
    let bed = SentinelBed::start();
    let state = sentinel_settings(&bed);
    let members = fleet(&state, 3).await;
    for m in &members {
        m.primary_up.store(false, Ordering::SeqCst);
    }
    all_reach(&members, ActiveRole::Failover, Duration::from_secs(5)).await;
    let store = dbfailover::store::from_settings(&state).unwrap();
    let key = RecordKey::Connection("other".into());
    store.load(std::slice::from_ref(&key)).await.unwrap();
    let (old, replica) = bed.ports();
    assert_eq!(bed.current_primary_port(), Some(old));
    let answer = bed.sentinel_failover();
    assert!(answer.contains("OK"), "{answer}");
    let limit = Instant::now() + Duration::from_secs(20);
    while !(bed.current_primary_port() == Some(replica)
        && bed.node_cli(old, &["ROLE"]).starts_with("slave")
        && bed
            .node_cli(old, &["INFO", "replication"])
            .contains("master_link_status:up"))
    {
        assert!(Instant::now() < limit, "Sentinel did not move the primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The store's connection went to the old primary, whose clients Sentinel killed: the call
    // replaces it and writes on the new primary, with no error.
    let outcome = store
        .compare_and_set(&[dbfailover_tests::stored::down_record("other")])
        .await;
    assert_eq!(outcome.unwrap(), CasOutcome::Written);
    let on_new = bed.node_cli(replica, &["GET", &format!("{PREFIX}_conn_status_other")]);
    assert_eq!(on_new.trim(), "DOWN");

    tokio::time::sleep(Duration::from_secs(2)).await;
    for m in &members {
        let names = m.events.names();
        println!(
            "[sentinel switchover] CacheUnavailable {}, CacheRestored {}",
            m.events.count("CacheUnavailable"),
            m.events.count("CacheRestored")
        );
        assert!(m.events.count("CacheUnavailable") <= 1, "{names:?}");
        assert_eq!(
            m.events.count("CacheUnavailable"),
            m.events.count("CacheRestored"),
            "{names:?}"
        );
        assert_eq!(m.engine.active().role, ActiveRole::Failover);
        assert_eq!(m.engine.active().epoch, 1, "no spurious switch: {names:?}");
    }
    let entry = dbfailover_tests::stored::counts(&*store, "main").await;
    assert_eq!(entry.map(|e| e.0), Some(dbfailover::ConnectionStatus::Down));
    for m in &members {
        m.primary_up.store(true, Ordering::SeqCst);
    }
    all_reach(&members, ActiveRole::Primary, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(origins(&members, "PrimaryConnectionRestored"), (1, 2));
}

#[actix_rt::test]
async fn cluster_instances_agree_and_one_makes_each_transition() {
    let bed = ClusterBed::start();
    agree_on_switch(
        &cluster_settings(&bed),
        Duration::from_millis(100),
        "cluster",
    )
    .await;
    // Every key of the deployment is under one hash tag: all on the node owning its slot.
    let owner = bed.owner_of(&format!("{{{PREFIX}}}")).unwrap();
    let keys = bed.cli_at(owner, &["KEYS", "*"]);
    let names: Vec<&str> = keys.lines().collect();
    assert!(names.contains(&"{dbfo_ha}_conn_state_main"), "{names:?}");
    assert!(names.contains(&"{dbfo_ha}_conn_status_main"), "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("{dbfo_ha}_")),
        "{names:?}"
    );
}

/// A forced switch writes the fleet record and the target's record in one compare-and-set: on a
/// cluster, one script on the shard of the deployment's hash tag. Every instance follows it.
#[actix_rt::test]
async fn cluster_forced_switches_reach_every_instance() {
    let bed = ClusterBed::start();
    let members = fleet(&cluster_settings(&bed), 3).await;
    members[0].engine.force_failover().await.unwrap();
    all_reach(&members, ActiveRole::Failover, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origins(&members, "SwitchedToFailoverConnection"), (1, 2));
    let owner = bed.owner_of(&format!("{{{PREFIX}}}")).unwrap();
    let fleet_record = bed.cli_at(owner, &["GET", &format!("{{{PREFIX}}}_fleet")]);
    assert!(fleet_record.contains(" f pref="), "{fleet_record}");
    members[2].engine.force_primary().await.unwrap();
    all_reach(&members, ActiveRole::Primary, Duration::from_secs(2)).await;
    for m in &members {
        assert_eq!(
            m.events.count("CacheUnavailable"),
            0,
            "{:?}",
            m.events.names()
        );
    }
}

#[actix_rt::test]
async fn cluster_disagreeing_instances_do_not_flap() {
    let bed = ClusterBed::start();
    disagreement_does_not_flap(&cluster_settings(&bed)).await;
}

/// The primary owning the deployment's slot is killed in the middle of a database failover; its
/// replica takes over (the cluster's own failover, about 2 s with a 1 s node timeout).
#[actix_rt::test]
async fn cluster_slot_owner_killed_in_the_middle_of_a_database_failover_loses_no_decision() {
    let mut bed = ClusterBed::start();
    let state = cluster_settings(&bed);
    let tag = format!("{{{PREFIX}}}");
    let owner = bed.owner_of(&tag).expect("an owner of the slot");
    let bed_ref = &mut bed;
    let restored = failover_through_a_store_failover(
        &state,
        || {
            bed_ref.kill(owner);
            Instant::now()
        },
        || {},
        "cluster",
    )
    .await;
    let new_owner = bed.owner_of(&tag).expect("a new owner of the slot");
    assert_ne!(new_owner, owner, "the replica took the slot over");
    assert!(restored.iter().all(|d| *d < Duration::from_secs(15)));
}

/// A Sentinel that hangs (SIGSTOP: its port accepts, nothing answers) while the two others answer:
/// the store asks every Sentinel at once, each bounded, and goes on with the first answer; a new
/// store and one whose connection was cut both keep working.
#[actix_rt::test]
async fn a_hung_sentinel_listed_first_does_not_stop_the_store() {
    let bed = SentinelBed::start();
    let state = sentinel_settings(&bed);
    let warm = dbfailover::store::from_settings(&state).unwrap();
    warm.load(&[RecordKey::Fleet]).await.unwrap();
    bed.freeze_sentinel(0);
    let fresh = dbfailover::store::from_settings(&state).unwrap();
    let (primary, _) = bed.ports();
    bed.node_cli(primary, &["CLIENT", "KILL", "TYPE", "normal"]);
    let mut answered = (0, 0);
    for _ in 0..5 {
        answered.0 += usize::from(fresh.load(&[RecordKey::Fleet]).await.is_ok());
        answered.1 += usize::from(warm.load(&[RecordKey::Fleet]).await.is_ok());
    }
    bed.thaw_sentinel(0);
    assert_eq!(
        answered,
        (5, 5),
        "calls answered (new store, cut store) of 5 each"
    );
}
