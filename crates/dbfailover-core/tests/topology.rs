//! Replication topology as an operator meets it: who is the writer of record, who is fenced, when
//! a split brain is reported, and what the fleet's record changes on an instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_core::topology::{NodeFacts, Topology, TopologyEvent, TopologyRecord};

fn names() -> Vec<String> {
    vec!["main".into(), "replica1".into(), "replica2".into()]
}

fn writer(timeline: u32) -> NodeFacts {
    NodeFacts {
        writable: Some(true),
        replicating: Some(false),
        cluster: Some("7000".into()),
        timeline: Some(timeline),
        ..NodeFacts::default()
    }
}

fn replica(timeline: u32) -> NodeFacts {
    NodeFacts {
        writable: Some(false),
        replicating: Some(true),
        cluster: Some("7000".into()),
        timeline: Some(timeline),
        ..NodeFacts::default()
    }
}

/// A writer and a replica without cluster identities (MariaDB).
fn maria(writable: bool, gtid: &str) -> NodeFacts {
    NodeFacts {
        writable: Some(writable),
        replicating: Some(!writable),
        gtid: Some(gtid.into()),
        ..NodeFacts::default()
    }
}

fn fenced_names(t: &Topology) -> Vec<String> {
    t.record().fenced.keys().cloned().collect()
}

#[test]
fn a_steady_cluster_checked_again_and_again_is_quiet() {
    let mut t = Topology::new(names(), true);
    for _ in 0..3 {
        assert!(t.observe(0, &writer(1)).is_empty());
        assert!(t.observe(1, &replica(1)).is_empty());
        assert!(t.observe(2, &replica(1)).is_empty());
    }
    assert_eq!(t.fenced(), [false, false, false]);
    assert_eq!(t.record().writer, None);
    assert_eq!(t.record().timelines.get("7000"), Some(&1));
    assert_eq!(t.facts(1), Some(&replica(1)));
    assert_eq!(t.facts(3), None);
}

#[test]
fn facts_are_forgotten_when_a_node_goes_down() {
    let mut t = Topology::new(names(), true);
    t.observe(0, &writer(1));
    assert_eq!(t.facts(0), Some(&writer(1)));
    assert!(t.observe_down(0).is_empty());
    assert_eq!(t.facts(0), None);
}

#[test]
fn a_replica_behind_on_an_older_timeline_or_read_only_for_maintenance_is_not_fenced() {
    let mut t = Topology::new(names(), true);
    t.observe(0, &writer(3));
    assert!(t.observe(1, &replica(2)).is_empty());
    let maintenance = NodeFacts {
        writable: Some(false),
        replicating: Some(false),
        ..writer(1)
    };
    assert!(t.observe(2, &maintenance).is_empty());
    assert_eq!(t.fenced(), [false, false, false]);
}

#[test]
fn a_promotion_fences_the_node_it_replaced_and_says_which() {
    let mut t = Topology::new(names(), true);
    t.observe(0, &writer(1));
    t.observe(1, &replica(1));
    t.observe(2, &replica(1));
    t.observe_down(0);
    let events = t.observe(1, &writer(2));
    assert_eq!(
        events,
        [
            TopologyEvent::Promoted {
                connection: "replica1".into(),
                replaced: Some("main".into())
            },
            TopologyEvent::Fenced {
                connection: "main".into(),
                reason: "left behind: replica1 was promoted in its place".into()
            }
        ]
    );
    assert_eq!(t.record().writer.as_deref(), Some("replica1"));
    assert_eq!(t.fenced(), [true, false, false]);
    // The new writer checked again: nothing new.
    assert!(t.observe(1, &writer(2)).is_empty());
    // replica2 promoted later (replica1 crashed) replaces the writer of record, not the fenced
    // old primary.
    t.observe_down(1);
    let events = t.observe(2, &writer(3));
    assert_eq!(
        events,
        [
            TopologyEvent::Promoted {
                connection: "replica2".into(),
                replaced: Some("replica1".into())
            },
            TopologyEvent::Fenced {
                connection: "replica1".into(),
                reason: "left behind: replica2 was promoted in its place".into()
            }
        ]
    );
    assert_eq!(t.fenced(), [true, true, false]);
}

#[test]
fn a_primary_demoted_by_a_switchover_is_not_fenced_by_the_promotion_that_follows() {
    let mut t = Topology::new(names(), true);
    t.observe(0, &writer(1));
    t.observe(1, &replica(1));
    // The operator demotes main (it now replicates) and promotes replica1.
    t.observe(0, &replica(1));
    let events = t.observe(1, &writer(2));
    assert_eq!(
        events,
        [TopologyEvent::Promoted {
            connection: "replica1".into(),
            replaced: None
        }]
    );
    assert_eq!(t.fenced(), [false, false, false]);
}

#[test]
fn a_replica_that_writes_again_after_its_own_promotion_replaces_nobody_else() {
    let mut t = Topology::new(vec!["main".into(), "replica1".into()], true);
    t.observe(1, &replica(1));
    // replica1 is the only node ever seen writing: a promotion that replaced nobody known.
    let events = t.observe(1, &writer(2));
    assert_eq!(
        events,
        [TopologyEvent::Promoted {
            connection: "replica1".into(),
            replaced: None
        }]
    );
    // It goes back to replicating and is promoted again: it does not replace (fence) itself.
    t.observe(1, &replica(2));
    let events = t.observe(1, &writer(3));
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, TopologyEvent::Fenced { .. })),
        "{events:?}"
    );
    assert_eq!(t.fenced(), [false, false]);
}

#[test]
fn fencing_off_still_names_the_writer_of_record() {
    let mut t = Topology::new(names(), false);
    t.observe(0, &writer(1));
    t.observe(1, &replica(1));
    t.observe_down(0);
    let events = t.observe(1, &writer(2));
    assert_eq!(
        events,
        [TopologyEvent::Promoted {
            connection: "replica1".into(),
            replaced: Some("main".into())
        }]
    );
    assert_eq!(t.fenced(), [false, false, false]);
}

#[test]
fn the_writer_of_record_moving_on_in_its_own_history_is_not_fenced() {
    let mut t = Topology::new(names(), true);
    t.observe(0, &maria(true, "0-1-100"));
    t.observe(1, &maria(false, "0-1-100"));
    t.observe(1, &maria(true, "0-2-105"));
    assert_eq!(t.record().writer.as_deref(), Some("replica1"));
    assert!(t.observe(1, &maria(true, "0-2-106")).is_empty());
    // Another writer at the writer of record's very position is not on another history.
    let events = t.observe(2, &maria(true, "0-2-106"));
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, TopologyEvent::Fenced { .. })),
        "{events:?}"
    );
    assert_eq!(
        t.fenced(),
        [true, false, false],
        "only the replaced primary"
    );
    // One on another history is fenced.
    let mut t = Topology::new(names(), true);
    t.observe(0, &maria(true, "0-1-100"));
    t.observe(1, &maria(false, "0-1-100"));
    t.observe(1, &maria(true, "0-2-105"));
    let events = t.observe(2, &maria(true, "0-3-1, 0-2-105"));
    assert!(
        events.contains(&TopologyEvent::Fenced {
            connection: "replica2".into(),
            reason: "accepts writes at GTID 0-3-1, 0-2-105, diverging from the writer of record \
                     replica1 at 0-2-105"
                .into()
        }),
        "{events:?}"
    );
}

#[test]
fn gtid_positions_compare_as_sets_of_domains() {
    let check = |a: &str, b: &str| {
        let mut t = Topology::new(vec!["w".into(), "x".into()], true);
        t.observe(0, &maria(false, a));
        t.observe(0, &maria(true, a));
        t.observe(1, &maria(true, b));
        t.fenced()[1]
    };
    assert!(!check("0-1-5,1-2-9", "1-2-9, 0-1-5"));
    assert!(!check("0-1-5,", "0-1-5"), "an empty entry is no domain");
    assert!(check("0-1-5", "0-1-6"));
    assert!(check("0-1-5,1-2-9", "0-1-5"));
}

#[test]
fn a_split_brain_is_reported_once_per_occurrence_naming_the_writers() {
    let mut t = Topology::new(names(), true);
    t.observe(0, &writer(1));
    t.observe(1, &replica(1));
    assert!(t.observe(2, &replica(1)).is_empty());
    // replica2 writes on the same timeline as main: same cluster, two writers.
    let events = t.observe(2, &writer(1));
    assert!(
        events.contains(&TopologyEvent::SplitBrain {
            connections: vec!["main".into(), "replica2".into()]
        }),
        "{events:?}"
    );
    assert!(
        !t.observe(2, &writer(1))
            .iter()
            .any(|e| matches!(e, TopologyEvent::SplitBrain { .. })),
        "not repeated while it lasts"
    );
    // main goes down: over; it comes back writing: reported again.
    assert!(t.observe_down(0).is_empty());
    let events = t.observe(0, &writer(1));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TopologyEvent::SplitBrain { .. })),
        "{events:?}"
    );
}

#[test]
fn writers_of_different_clusters_are_no_split_brain() {
    let mut t = Topology::new(vec!["a".into(), "b".into()], true);
    let other = NodeFacts {
        cluster: Some("8000".into()),
        ..writer(1)
    };
    assert!(t.observe(0, &writer(1)).is_empty());
    assert!(t.observe(1, &other).is_empty());
}

#[test]
fn without_cluster_identities_a_promoted_writer_and_another_writer_are_a_split_brain() {
    let mut t = Topology::new(names(), false);
    t.observe(0, &maria(true, "0-1-1"));
    t.observe(1, &maria(false, "0-1-1"));
    t.observe_down(0);
    assert!(
        !t.observe(1, &maria(true, "0-2-2"))
            .iter()
            .any(|e| matches!(e, TopologyEvent::SplitBrain { .. }))
    );
    // main comes back writing (never fenced with fencing off) beside the promoted replica1.
    let events = t.observe(0, &maria(true, "0-1-2"));
    assert!(
        events.contains(&TopologyEvent::SplitBrain {
            connections: vec!["main".into(), "replica1".into()]
        }),
        "{events:?}"
    );
    // A third, independent writer that never replicated is not part of it.
    let mut t = Topology::new(names(), true);
    let independent = NodeFacts {
        writable: Some(true),
        ..NodeFacts::default()
    };
    t.observe(0, &independent);
    t.observe(1, &independent);
    assert!(t.observe(2, &independent).is_empty());
}

#[test]
fn an_operator_lifting_a_fence_makes_the_node_the_reference() {
    let mut t = Topology::new(names(), true);
    t.observe(0, &writer(1));
    t.observe(1, &replica(1));
    t.observe_down(0);
    t.observe(1, &writer(2));
    t.observe(0, &writer(1));
    assert_eq!(t.fenced(), [true, false, false]);
    assert_eq!(t.record().epoch, 0);
    let events = t.unfence(0);
    assert_eq!(
        events,
        [TopologyEvent::Unfenced {
            connection: "main".into()
        }]
    );
    assert_eq!(t.record().writer.as_deref(), Some("main"));
    assert_eq!(t.record().timelines.get("7000"), Some(&1));
    assert_eq!(t.record().epoch, 1);
    assert!(t.unfence(0).is_empty(), "nothing left to lift");
    assert!(t.unfence(7).is_empty());
    assert_eq!(t.record().epoch, 1);
}

#[test]
fn lifting_a_fence_without_a_writer_of_record_names_none() {
    let mut t = Topology::new(names(), true);
    t.observe(2, &writer(2));
    t.observe(0, &writer(1));
    assert_eq!(t.fenced(), [true, false, false]);
    assert_eq!(t.record().writer, None);
    t.unfence(0);
    assert_eq!(t.record().writer, None);
}

#[test]
fn adopting_the_fleet_s_record_reports_what_changed_here() {
    let mut t = Topology::new(names(), true);
    let mut record = TopologyRecord {
        writer: Some("replica1".into()),
        ..TopologyRecord::default()
    };
    record.fenced.insert("main".into(), "left behind".into());
    let events = t.adopt(&record);
    assert_eq!(
        events,
        [
            TopologyEvent::Fenced {
                connection: "main".into(),
                reason: "left behind".into()
            },
            TopologyEvent::Promoted {
                connection: "replica1".into(),
                replaced: None
            }
        ]
    );
    assert_eq!(fenced_names(&t), ["main"]);
    assert!(t.adopt(&record).is_empty(), "nothing new the second time");
    // The next epoch moves the writer and lifts the fence.
    let lifted = TopologyRecord {
        writer: Some("replica2".into()),
        epoch: 1,
        ..TopologyRecord::default()
    };
    assert_eq!(
        t.adopt(&lifted),
        [
            TopologyEvent::Unfenced {
                connection: "main".into()
            },
            TopologyEvent::Promoted {
                connection: "replica2".into(),
                replaced: Some("replica1".into())
            }
        ]
    );
    assert_eq!(t.fenced(), [false, false, false]);
}

#[test]
fn two_writers_with_one_cluster_identity_are_a_split_brain_even_without_a_promotion() {
    let mut t = Topology::new(vec!["a".into(), "b".into()], false);
    assert!(t.observe(0, &writer(1)).is_empty());
    assert_eq!(
        t.observe(1, &writer(1)),
        [TopologyEvent::SplitBrain {
            connections: vec!["a".into(), "b".into()]
        }]
    );
}

#[test]
fn a_cluster_identity_decides_even_for_a_fenced_writer() {
    // main is fenced (left behind on an older timeline); another cluster's writer is no split.
    let mut t = Topology::new(names(), true);
    t.observe(2, &writer(2));
    t.observe(0, &writer(1));
    assert_eq!(t.fenced(), [true, false, false]);
    t.observe_down(2);
    let other = NodeFacts {
        cluster: Some("8000".into()),
        ..writer(1)
    };
    assert!(
        !t.observe(1, &other)
            .iter()
            .any(|e| matches!(e, TopologyEvent::SplitBrain { .. }))
    );
}
