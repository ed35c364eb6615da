//! Several engines sharing one store agree, make each transition once, and do not flap when they
//! disagree (virtual time; the shared store is the in-memory one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mode, Scripted, config, sleep_ms};
use dbfailover_core::{ActiveRole, EventOrigin, FailoverEvent};
use dbfailover_engine::{FailoverHandle, FailoverSystem, MemoryStore, StateStore};
use std::sync::{Arc, Mutex};

struct Instance {
    handle: FailoverHandle,
    primary: Scripted,
    events: Arc<Mutex<Vec<FailoverEvent>>>,
}

async fn instance(store: Arc<MemoryStore>) -> Instance {
    let primary = Scripted::new(Mode::Up);
    let handle = FailoverSystem::builder(config())
        .probe("main", primary.clone())
        .probe("standby", Scripted::new(Mode::Up))
        .shared_store(store as Arc<dyn StateStore>)
        .build()
        .unwrap()
        .start();
    let events = common::listen(&handle).await;
    Instance {
        handle,
        primary,
        events,
    }
}

/// Three instances on `store`, past their first checks.
async fn three_instances(store: &Arc<MemoryStore>) -> Vec<Instance> {
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(Arc::clone(store)).await);
    }
    sleep_ms(250).await;
    instances
}

fn count(instances: &[Instance], name: &str, origin: EventOrigin) -> usize {
    instances
        .iter()
        .flat_map(|i| i.events.lock().unwrap().clone())
        .filter(|e| e.kind.name() == name && e.origin == origin)
        .count()
}

#[actix_rt::test]
async fn three_instances_switch_together_and_one_of_them_made_the_transition() {
    tokio::time::pause();
    let store = Arc::new(MemoryStore::default());
    let instances = three_instances(&store).await;
    for i in &instances {
        i.primary.set(Mode::Refuse);
    }
    let started = tokio::time::Instant::now();
    let mut switched_at = Vec::new();
    while switched_at.len() < 3 {
        for (n, i) in instances.iter().enumerate() {
            if i.handle.active().role == ActiveRole::Failover
                && !switched_at.iter().any(|(m, _)| *m == n)
            {
                switched_at.push((n, started.elapsed()));
            }
        }
        sleep_ms(1).await;
        assert!(
            started.elapsed().as_secs() < 5,
            "not all switched: {switched_at:?}"
        );
    }
    let spread = switched_at.iter().map(|(_, t)| *t).max().unwrap()
        - switched_at.iter().map(|(_, t)| *t).min().unwrap();
    assert!(spread.as_millis() <= 100, "switches {spread:?} apart");
    sleep_ms(50).await;
    assert_eq!(
        count(&instances, "PrimaryConnectionDown", EventOrigin::Local),
        1
    );
    assert_eq!(
        count(&instances, "PrimaryConnectionDown", EventOrigin::Learned),
        2
    );
    assert_eq!(
        count(
            &instances,
            "SwitchedToFailoverConnection",
            EventOrigin::Local
        ),
        1
    );
    assert_eq!(
        count(
            &instances,
            "SwitchedToFailoverConnection",
            EventOrigin::Learned
        ),
        2
    );

    for i in &instances {
        i.primary.set(Mode::Up);
    }
    sleep_ms(500).await;
    assert!(
        instances
            .iter()
            .all(|i| i.handle.active().role == ActiveRole::Primary)
    );
    assert_eq!(
        count(&instances, "PrimaryConnectionRestored", EventOrigin::Local),
        1
    );
    assert_eq!(
        count(
            &instances,
            "PrimaryConnectionRestored",
            EventOrigin::Learned
        ),
        2
    );
}

#[actix_rt::test]
async fn an_instance_that_alone_cannot_reach_the_primary_does_not_make_anyone_flap() {
    tokio::time::pause();
    let store = Arc::new(MemoryStore::default());
    let instances = three_instances(&store).await;
    // Only the first instance's path to the primary is broken.
    instances[0].primary.set(Mode::Refuse);
    sleep_ms(5000).await;
    for i in &instances {
        assert_eq!(i.handle.active().epoch, 0, "nobody switched");
        let names: Vec<_> = i
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.name())
            .collect();
        assert!(!names.contains(&"PrimaryConnectionDown"), "{names:?}");
    }
}

#[actix_rt::test]
async fn a_new_instance_starts_from_what_the_others_decided() {
    tokio::time::pause();
    let store = Arc::new(MemoryStore::default());
    let first = instance(Arc::clone(&store)).await;
    first.primary.set(Mode::Refuse);
    sleep_ms(500).await;
    assert_eq!(first.handle.active().role, ActiveRole::Failover);
    let second = instance(Arc::clone(&store)).await;
    second.primary.set(Mode::Refuse);
    sleep_ms(5).await;
    assert_eq!(
        second.handle.active().role,
        ActiveRole::Failover,
        "resumed, not re-detected"
    );
}

#[actix_rt::test]
async fn a_forced_switch_moves_every_instance_and_each_listener_sees_the_same_switches() {
    tokio::time::pause();
    let store = Arc::new(MemoryStore::default());
    let instances = three_instances(&store).await;
    let active = instances[1].handle.force_failover().await.unwrap();
    assert_eq!(active.role, ActiveRole::Failover);
    sleep_ms(20).await;
    let switches = |i: &Instance| -> Vec<(&'static str, EventOrigin)> {
        i.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind.name().starts_with("Switched"))
            .map(|e| (e.kind.name(), e.origin))
            .collect()
    };
    for (n, i) in instances.iter().enumerate() {
        assert_eq!(i.handle.active().role, ActiveRole::Failover, "instance {n}");
        let origin = if n == 1 {
            EventOrigin::Local
        } else {
            EventOrigin::Learned
        };
        assert_eq!(
            switches(i),
            [("SwitchedToFailoverConnection", origin)],
            "instance {n}"
        );
    }
    // A later instance starts on the fleet's preference.
    let late = instance(Arc::clone(&store)).await;
    sleep_ms(20).await;
    assert_eq!(late.handle.active().role, ActiveRole::Failover);
    // Forcing the primary back is shared the same way.
    instances[2].handle.force_primary().await.unwrap();
    sleep_ms(20).await;
    for i in instances.iter().chain(std::iter::once(&late)) {
        assert_eq!(i.handle.active().role, ActiveRole::Primary);
    }
}
