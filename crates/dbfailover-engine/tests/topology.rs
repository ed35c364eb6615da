//! A replication cluster of three nodes in virtual time: writes follow a promoted replica, the node
//! it replaced is fenced when it comes back writable, a read-only replica is never a write target,
//! and every instance sharing a store fences the same node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{drain, sleep_ms};
use dbfailover_core::config::{Failback, Failovers};
use dbfailover_core::record::RecordKey;
use dbfailover_core::{ActiveRole, Config, DatabaseSettings, DatabaseUrl, Replication};
use dbfailover_engine::{
    FailoverHandle, FailoverSystem, FnProbe, MemoryStore, ProbeError, ProbeReport, StateStore,
};
use std::sync::{Arc, Mutex};

/// What a scripted node answers: down, a writer, or a replica, on a timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Down,
    Writer(u32),
    Replica(u32),
}

type Script = Arc<Mutex<Node>>;

fn probe(node: Script) -> impl dbfailover_engine::Probe {
    FnProbe::new(move |_| {
        let state = *node.lock().unwrap();
        async move {
            let (writable, replicating, timeline) = match state {
                Node::Down => return Err(ProbeError::new("connection refused")),
                Node::Writer(t) => (true, false, t),
                Node::Replica(t) => (false, true, t),
            };
            // Timeline 0: a database that tells no cluster identity or timeline (MariaDB).
            let known = timeline > 0;
            Ok(ProbeReport {
                writable: Some(writable),
                replication: Some(Replication {
                    replicating,
                    cluster: known.then(|| "7300000000000000001".to_owned()),
                    timeline: known.then_some(timeline),
                    lag: replicating.then_some(std::time::Duration::ZERO),
                    gtid: None,
                }),
            })
        }
    })
}

fn config(failback: Failback) -> Config {
    let mut config = common::config();
    config.databases.insert(
        "replica2".into(),
        DatabaseSettings::new(DatabaseUrl::parse("sqlite:///replica2.db").unwrap()),
    );
    config.failover.failover = Failovers::from(vec!["standby".to_owned(), "replica2".to_owned()]);
    config.failover.failback = failback;
    config
}

struct Cluster {
    nodes: [Script; 3],
}

impl Cluster {
    fn new() -> Self {
        Self {
            nodes: [
                Arc::new(Mutex::new(Node::Writer(1))),
                Arc::new(Mutex::new(Node::Replica(1))),
                Arc::new(Mutex::new(Node::Replica(1))),
            ],
        }
    }

    /// Nodes that tell no timeline (like MariaDB): only a promotion seen is evidence.
    fn without_timelines() -> Self {
        let cluster = Self::new();
        cluster.set(0, Node::Writer(0));
        cluster.set(1, Node::Replica(0));
        cluster.set(2, Node::Replica(0));
        cluster
    }

    /// The primary dies, then an outside tool promotes the second replica (no timeline told).
    async fn crash_primary_and_promote_replica2(&self) {
        self.set(0, Node::Down);
        sleep_ms(300).await;
        self.set(2, Node::Writer(0));
        sleep_ms(300).await;
    }

    fn set(&self, node: usize, state: Node) {
        *self.nodes[node].lock().unwrap() = state;
    }

    fn engine(&self, config: Config, store: Option<Arc<MemoryStore>>) -> FailoverHandle {
        let mut builder = FailoverSystem::builder(config)
            .probe("main", probe(Arc::clone(&self.nodes[0])))
            .probe("standby", probe(Arc::clone(&self.nodes[1])))
            .probe("replica2", probe(Arc::clone(&self.nodes[2])));
        if let Some(store) = store {
            builder = builder.shared_store(store as Arc<dyn StateStore>);
        }
        builder.build().unwrap().start()
    }
}

#[actix_rt::test]
async fn writes_follow_the_promoted_replica_and_never_go_back_to_the_node_it_replaced() {
    tokio::time::pause();
    let cluster = Cluster::new();
    let handle = cluster.engine(config(Failback::Auto), None);
    let events = common::listen(&handle).await;
    sleep_ms(300).await;
    assert_eq!(handle.active().name, "main");
    drain(&events);

    // The primary dies; an outside tool promotes the second replica (the first follows it).
    cluster.set(0, Node::Down);
    sleep_ms(300).await;
    assert_eq!(handle.active().role, ActiveRole::Blocking, "no writer yet");
    cluster.set(2, Node::Writer(2));
    cluster.set(1, Node::Replica(2));
    sleep_ms(300).await;
    let active = handle.active();
    assert_eq!(
        (active.role, active.name.as_str()),
        (ActiveRole::Failover, "replica2")
    );
    let seen = drain(&events);
    assert!(seen.contains(&"ReplicaPromoted"), "{seen:?}");
    assert!(seen.contains(&"ConnectionFenced"), "{seen:?}");

    // The old primary comes back writable on its old timeline: a split brain, and fenced.
    cluster.set(0, Node::Writer(1));
    sleep_ms(1000).await;
    assert_eq!(
        handle.active().name,
        "replica2",
        "writes never go back to it"
    );
    let seen = drain(&events);
    assert!(seen.contains(&"SplitBrainDetected"), "{seen:?}");
    assert!(
        !seen.iter().any(|e| e.starts_with("SwitchedTo")),
        "{seen:?}"
    );

    // An operator forces the switch back: the fence is lifted.
    handle.force_primary().await.unwrap();
    assert_eq!(handle.active().name, "main");
    assert!(drain(&events).contains(&"ConnectionUnfenced"));
}

#[actix_rt::test]
async fn two_independent_writable_databases_keep_the_seed_s_failback() {
    tokio::time::pause();
    // The seed's setting: neither node ever a replica, no cluster identity.
    let main = Arc::new(Mutex::new(true));
    let up = |flag: Arc<Mutex<bool>>| {
        FnProbe::new(move |_| {
            let up = *flag.lock().unwrap();
            async move {
                if up {
                    Ok(ProbeReport {
                        writable: Some(true),
                        replication: Some(Replication::default()),
                    })
                } else {
                    Err(ProbeError::new("refused"))
                }
            }
        })
    };
    let handle = FailoverSystem::builder(common::config())
        .probe("main", up(Arc::clone(&main)))
        .probe("standby", up(Arc::new(Mutex::new(true))))
        .build()
        .unwrap()
        .start();
    let events = common::listen(&handle).await;
    sleep_ms(300).await;
    *main.lock().unwrap() = false;
    sleep_ms(500).await;
    assert_eq!(handle.active().name, "standby");
    *main.lock().unwrap() = true;
    sleep_ms(500).await;
    assert_eq!(
        handle.active().name,
        "main",
        "back to the primary, as the seed does"
    );
    let seen = drain(&events);
    assert!(!seen.contains(&"ConnectionFenced"), "{seen:?}");
    assert!(!seen.contains(&"SplitBrainDetected"), "{seen:?}");
}

#[actix_rt::test]
async fn a_read_only_replica_is_healthy_and_never_takes_writes() {
    tokio::time::pause();
    let cluster = Cluster::new();
    let handle = cluster.engine(config(Failback::Auto), None);
    sleep_ms(300).await;
    cluster.set(0, Node::Down);
    sleep_ms(1000).await;
    assert_eq!(handle.active().role, ActiveRole::Blocking);
    let states = handle.connection_states().await.unwrap();
    for s in &states[1..] {
        assert_eq!(
            s.state.status,
            dbfailover_core::ConnectionStatus::Healthy,
            "{}",
            s.name
        );
        assert_eq!(s.state.writable, Some(false));
    }
}

#[actix_rt::test]
async fn manual_failback_stays_on_the_node_it_switched_to() {
    tokio::time::pause();
    let cluster = Cluster::new();
    // Two writable nodes that are no replicas of each other, failback manual.
    cluster.set(1, Node::Writer(1));
    let mut config = config(Failback::Manual);
    config.failover.fencing = false;
    let handle = cluster.engine(config, None);
    sleep_ms(300).await;
    cluster.set(0, Node::Down);
    sleep_ms(300).await;
    assert_eq!(handle.active().name, "standby");
    cluster.set(0, Node::Writer(1));
    sleep_ms(1000).await;
    assert_eq!(handle.active().name, "standby", "stays until forced");
    handle.force_primary().await.unwrap();
    assert_eq!(handle.active().name, "main");
}

#[actix_rt::test]
async fn an_instance_that_never_saw_the_promotion_fences_the_same_node_through_the_store() {
    tokio::time::pause();
    // Nodes that tell no timeline: only the promotion, seen by the first instance, is evidence.
    let cluster = Cluster::without_timelines();
    let store = Arc::new(MemoryStore::default());
    let first = cluster.engine(config(Failback::Auto), Some(Arc::clone(&store)));
    sleep_ms(300).await;
    cluster.crash_primary_and_promote_replica2().await;
    assert_eq!(first.active().name, "replica2");
    // A new instance starts after the promotion, with the old primary back writable: only the
    // fleet's record says it was left behind.
    cluster.set(0, Node::Writer(0));
    let second = cluster.engine(config(Failback::Auto), Some(Arc::clone(&store)));
    let events = common::listen(&second).await;
    sleep_ms(500).await;
    assert_eq!(second.active().name, "replica2");
    assert_eq!(first.active().name, "replica2");
    let seen = drain(&events);
    assert!(seen.contains(&"ConnectionFenced"), "{seen:?}");
}

#[actix_rt::test]
async fn with_no_writer_left_replicas_serve_reads_and_read_only_mode_is_announced() {
    tokio::time::pause();
    let cluster = Cluster::new();
    let handle = cluster.engine(config(Failback::Auto), None);
    let events = common::listen(&handle).await;
    sleep_ms(300).await;
    let reads = handle.shared_active().reads();
    assert_eq!(
        reads.nodes, 0b110,
        "both replicas serve reads while the primary writes"
    );
    drain(&events);
    cluster.set(0, Node::Down);
    sleep_ms(500).await;
    assert_eq!(handle.active().role, ActiveRole::Blocking);
    assert_eq!(handle.shared_active().reads().nodes, 0b110);
    let seen = drain(&events);
    assert!(
        seen.contains(&"LimitedFunctionalityModeActivated"),
        "{seen:?}"
    );
    assert!(seen.contains(&"ReadOnlyModeActivated"), "{seen:?}");
    // A replica is promoted: writes again, read-only mode ends.
    cluster.set(2, Node::Writer(2));
    sleep_ms(500).await;
    assert_eq!(handle.active().name, "replica2");
    assert_eq!(
        handle.shared_active().reads().nodes,
        0b010,
        "the writer serves no replica reads"
    );
    assert!(drain(&events).contains(&"ReadOnlyModeExited"));
}

#[actix_rt::test]
async fn fences_outlive_the_store_s_ttl_and_an_operator_can_lift_any_node_s_fence() {
    tokio::time::pause();
    let cluster = Cluster::without_timelines();
    let store = Arc::new(MemoryStore::new(std::time::Duration::from_secs(5)));
    let mut config = config(Failback::Auto);
    config.state.ttl = std::time::Duration::from_secs(5);
    let first = cluster.engine(config.clone(), Some(Arc::clone(&store)));
    sleep_ms(300).await;
    cluster.crash_primary_and_promote_replica2().await;
    assert_eq!(first.active().name, "replica2");
    // Far longer than the store's TTL: the fleet record is kept alive by its refreshes, never gone.
    for _ in 0..120 {
        sleep_ms(100).await;
        assert!(
            store.raw(&RecordKey::Fleet).is_some(),
            "the fleet record expired"
        );
    }
    cluster.set(0, Node::Writer(0));
    let second = cluster.engine(config, Some(Arc::clone(&store)));
    sleep_ms(500).await;
    assert_eq!(
        second.active().name,
        "replica2",
        "the fence outlived the TTL"
    );
    // replica2 dies, replica1 is promoted; replica2 comes back writable: fenced. An operator lifts
    // its fence (no forced switch reaches a third node).
    cluster.set(2, Node::Down);
    sleep_ms(300).await;
    cluster.set(1, Node::Writer(0));
    sleep_ms(300).await;
    cluster.set(2, Node::Writer(0));
    sleep_ms(500).await;
    assert_eq!(first.active().name, "standby");
    assert!(first.lift_fence("replica2").await.unwrap());
    assert!(!first.lift_fence("replica2").await.unwrap(), "lifted once");
}
