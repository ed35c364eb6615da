//! The shared-state protocol, driven with exact inputs and exact time: several replicas, a store that
//! applies compare-and-set by `Expect::matches` (what every real store does), pushes delivered in order.
//! Every rule of `docs/state.md` is checked here without actix, Redis or a clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration as WallDuration, TimeZone, Utc};
use dbfailover_core::record::{
    CasOutcome, ConnectionEntry, FleetRecord, MAX_VOTES, Notice, Record, RecordKey, Slot, Version,
    Vote,
};
use dbfailover_core::replica::{Command, Now, Output, Replica, ReplicaConfig};
use dbfailover_core::route::Preference;
use dbfailover_core::topology::{TopologyRecord, decode_record};
use dbfailover_core::{CheckResult, ConnectionStatus, Counts, EventOrigin, Role, Thresholds};
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Thresholds = Thresholds {
    failure_threshold: 3,
    recovery_threshold: 2,
};
const INTERVAL: Duration = Duration::from_millis(100);

fn main_key() -> RecordKey {
    RecordKey::Connection("main".into())
}

/// A store holding bytes, as Redis does; `up == false` answers every call with an error.
#[derive(Default)]
struct Store {
    records: HashMap<RecordKey, Vec<u8>>,
    up: bool,
    commands: usize,
    /// Every command an instance tried, answered or not.
    tries: usize,
}

impl Store {
    fn load(&mut self, keys: &[RecordKey]) -> Vec<Slot> {
        keys.iter()
            .map(|k| Slot::decode(k, self.records.get(k).map(Vec::as_slice)))
            .collect()
    }
}

/// What a replica said, in order.
#[derive(Default)]
struct Seen {
    /// (connection, from, to, origin) of each transition.
    transitions: Vec<(String, ConnectionStatus, ConnectionStatus, EventOrigin)>,
    /// (connection, to, reason) of each transition.
    reasons: Vec<(String, ConnectionStatus, Option<String>)>,
    forced: Vec<(Preference, EventOrigin)>,
    unavailable: usize,
    restored: usize,
    foreign: usize,
    /// The fleet's topology decisions, as told to the router.
    topology: Vec<TopologyRecord>,
    /// Connections whose handed-in results were decided.
    applied: Vec<String>,
    /// Every status and forced switch told to the router, in order.
    told: Vec<String>,
}

struct Node {
    replica: Replica,
    seen: Seen,
    /// Cut off from the store (its calls fail) while others still reach it.
    partitioned: bool,
    /// This node's wall clock runs this far ahead (or behind) of the others.
    skew: WallDuration,
}

struct Sim {
    store: Store,
    nodes: Vec<Node>,
    start: Instant,
    elapsed: Duration,
    pushes: VecDeque<(usize, Notice)>,
}

impl Sim {
    fn new(count: usize, skews: &[i64]) -> Self {
        let nodes = (0..count)
            .map(|i| Node {
                replica: Replica::new(
                    // Even ids: a replica's write ids come from a generator seeded with
                    // `instance | 1`, and two instances must not draw the same ones.
                    ReplicaConfig::for_interval(0x1000 + 2 * i as u64, T, INTERVAL),
                    vec![
                        ("main".into(), Role::Primary),
                        ("standby".into(), Role::Failover),
                    ],
                ),
                seen: Seen::default(),
                partitioned: false,
                skew: WallDuration::hours(skews.get(i).copied().unwrap_or(0)),
            })
            .collect();
        let mut sim = Self {
            store: Store {
                up: true,
                ..Store::default()
            },
            nodes,
            start: Instant::now(),
            elapsed: Duration::ZERO,
            pushes: VecDeque::new(),
        };
        for i in 0..count {
            sim.drive(i);
        }
        sim.settle();
        sim
    }

    fn now(&self, node: usize) -> Now {
        let base: DateTime<Utc> = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap();
        Now {
            mono: self.start + self.elapsed,
            wall: base + WallDuration::from_std(self.elapsed).unwrap() + self.nodes[node].skew,
        }
    }

    /// Runs node `i`'s commands against the store until it has none; queues the pushes.
    fn drive(&mut self, i: usize) {
        for step in 0.. {
            // A replica that never stops asking for store operations is a bug: fail, do not hang.
            assert!(step < 100, "node {i} keeps asking for store operations");
            let now = self.now(i);
            let Some(command) = self.nodes[i].replica.poll_command(now) else {
                break;
            };
            let reachable = self.store.up && !self.nodes[i].partitioned;
            self.store.tries += 1;
            match command {
                Command::Load(keys) => {
                    if reachable {
                        self.store.commands += 1;
                        let slots = self.store.load(&keys);
                        self.nodes[i].replica.handle_loaded(slots, now);
                    } else {
                        self.nodes[i]
                            .replica
                            .handle_store_error("refused".into(), now);
                    }
                }
                Command::CompareAndSet(writes) => {
                    if !reachable {
                        self.nodes[i]
                            .replica
                            .handle_store_error("refused".into(), now);
                        continue;
                    }
                    self.store.commands += 1;
                    let ok = writes.iter().all(|w| {
                        w.expect
                            .matches(self.store.records.get(&w.key).map(Vec::as_slice))
                    });
                    if ok {
                        for w in &writes {
                            self.store
                                .records
                                .insert(w.key.clone(), w.value.as_bytes().to_vec());
                        }
                        let written: Vec<_> = writes
                            .iter()
                            .map(|w| {
                                (
                                    w.key.clone(),
                                    Slot::decode(&w.key, Some(w.value.as_bytes())),
                                )
                            })
                            .collect();
                        for n in 0..self.nodes.len() {
                            self.pushes.push_back((n, Notice::Written(written.clone())));
                        }
                        self.nodes[i]
                            .replica
                            .handle_cas_result(CasOutcome::Written, now);
                    } else {
                        let keys: Vec<_> = writes.iter().map(|w| w.key.clone()).collect();
                        let slots = self.store.load(&keys);
                        self.nodes[i]
                            .replica
                            .handle_cas_result(CasOutcome::Conflict(slots), now);
                    }
                }
            }
        }
        self.collect(i);
    }

    fn collect(&mut self, i: usize) {
        while let Some(output) = self.nodes[i].replica.poll_output() {
            let seen = &mut self.nodes[i].seen;
            match &output {
                Output::Status {
                    connection, view, ..
                } => seen.told.push(format!("{connection} {}", view.status)),
                Output::Forced { preference, .. } => {
                    seen.told.push(format!("forced {preference:?}"))
                }
                _ => {}
            }
            match output {
                Output::Status {
                    connection,
                    transition: Some(t),
                    origin,
                    ..
                } => {
                    seen.reasons
                        .push((connection.to_string(), t.to, t.reason.clone()));
                    seen.transitions
                        .push((connection.to_string(), t.from, t.to, origin));
                }
                Output::Forced { preference, origin } => seen.forced.push((preference, origin)),
                Output::StoreUnavailable { .. } => seen.unavailable += 1,
                Output::StoreRestored => seen.restored += 1,
                Output::ForeignRecord { .. } => seen.foreign += 1,
                Output::Topology(record) => seen.topology.push(record),
                Output::Applied { connection } => seen.applied.push(connection.to_string()),
                _ => {}
            }
        }
    }

    /// Delivers queued pushes (to nodes that reach the store) until none is left.
    fn settle(&mut self) {
        let mut delivered = 0;
        while let Some((n, notice)) = self.pushes.pop_front() {
            delivered += 1;
            assert!(delivered < 2_000, "the pushes never end");
            if self.nodes[n].partitioned || !self.store.up {
                continue;
            }
            let now = self.now(n);
            self.nodes[n].replica.handle_notice(notice, now);
            self.drive(n);
        }
    }

    fn check(&mut self, i: usize, connection: &str, ok: bool) {
        let now = self.now(i);
        let result = if ok {
            CheckResult::success(Duration::from_millis(1))
        } else {
            CheckResult::failure("connection refused")
        };
        self.nodes[i].replica.handle_check(connection, result, now);
        self.drive(i);
        self.settle();
    }

    fn advance(&mut self, by: Duration) {
        self.elapsed += by;
        for i in 0..self.nodes.len() {
            let now = self.now(i);
            if self.nodes[i]
                .replica
                .poll_timeout()
                .is_some_and(|at| at <= now.mono)
            {
                self.nodes[i].replica.handle_timeout(now);
            }
            self.drive(i);
        }
        self.settle();
    }

    /// Every node checks `connection` once (`ok[i]`), then time moves one interval.
    fn round(&mut self, connection: &str, ok: &[bool]) {
        for (i, ok) in ok.iter().enumerate() {
            self.check(i, connection, *ok);
        }
        self.advance(INTERVAL);
    }

    /// Node `i` reaches the store again; three intervals pass, and its outage is over.
    fn reconnect(&mut self, i: usize) {
        self.nodes[i].partitioned = false;
        for _ in 0..3 {
            self.advance(INTERVAL);
        }
        assert!(!self.nodes[i].replica.in_outage(), "node {i} is back");
    }

    /// `main` is DOWN for node `i` and in the store, and node `i` made it HEALTHY only once (at the
    /// start): routing never went back to it.
    fn assert_never_back_to_healthy(&self, i: usize) {
        assert_eq!(self.status(i, "main"), ConnectionStatus::Down);
        assert_eq!(self.stored_status(), Some(ConnectionStatus::Down));
        assert_eq!(self.transitions_to(i, ConnectionStatus::Healthy).len(), 1);
    }

    /// Node `i`'s timer fires now (whether or not it asked for one).
    fn fire(&mut self, i: usize) {
        let now = self.now(i);
        self.nodes[i].replica.handle_timeout(now);
    }

    /// Node `i`'s next command now, which is then not run.
    fn poll(&mut self, i: usize) -> Option<Command> {
        let now = self.now(i);
        self.nodes[i].replica.poll_command(now)
    }

    fn status(&self, i: usize, connection: &str) -> ConnectionStatus {
        self.nodes[i].replica.status(connection).unwrap()
    }

    fn stored(&self, key: &RecordKey) -> Slot {
        Slot::decode(key, self.store.records.get(key).map(Vec::as_slice))
    }

    fn stored_status(&self) -> Option<ConnectionStatus> {
        match self.stored(&main_key()) {
            Slot::Readable {
                record: Record::Connection(entry),
                ..
            } => Some(entry.counts.status),
            _ => None,
        }
    }

    fn transitions_to(&self, i: usize, to: ConnectionStatus) -> Vec<EventOrigin> {
        self.nodes[i]
            .seen
            .transitions
            .iter()
            .filter(|(c, _, t, _)| c == "main" && *t == to)
            .map(|(.., o)| *o)
            .collect()
    }
}

fn all(n: usize, ok: bool) -> Vec<bool> {
    vec![ok; n]
}

#[test]
fn one_instance_follows_the_plain_thresholds() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
    sim.check(0, "main", false);
    sim.check(0, "main", false);
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
    sim.check(0, "main", false);
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Down);
    assert_eq!(
        sim.transitions_to(0, ConnectionStatus::Down),
        [EventOrigin::Local]
    );
}

#[test]
fn every_instance_switches_on_one_write_and_exactly_one_made_it() {
    let mut sim = Sim::new(3, &[]);
    sim.round("main", &all(3, true));
    for _ in 0..3 {
        sim.round("main", &all(3, false));
    }
    for i in 0..3 {
        assert_eq!(sim.status(i, "main"), ConnectionStatus::Down, "node {i}");
    }
    let origins: Vec<_> = (0..3)
        .flat_map(|i| sim.transitions_to(i, ConnectionStatus::Down))
        .collect();
    assert_eq!(
        origins.iter().filter(|o| **o == EventOrigin::Local).count(),
        1,
        "{origins:?}"
    );
    assert_eq!(origins.len(), 3, "{origins:?}");
}

#[test]
fn an_instance_that_still_reaches_it_vetoes_down_however_fast_the_others_fail() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    for _ in 0..20 {
        // Node 0 cannot reach it and confirms fast; node 1 reaches it once per interval.
        for _ in 0..5 {
            sim.check(0, "main", false);
        }
        sim.check(1, "main", true);
        sim.advance(INTERVAL);
        assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
        assert_eq!(sim.status(1, "main"), ConnectionStatus::Healthy);
    }
}

#[test]
fn a_dead_instance_s_vote_goes_stale_on_the_readers_clock_whatever_its_own_said() {
    // Node 1's wall clock runs an hour ahead: nothing changes, since no wall time decides anything.
    let mut sim = Sim::new(2, &[0, 1]);
    sim.round("main", &all(2, true));
    sim.round("main", &all(2, true));
    // Node 1 dies (checks no more); node 0 sees the primary die.
    let mut rounds = 0;
    while sim.status(0, "main") != ConnectionStatus::Down {
        sim.check(0, "main", false);
        sim.advance(INTERVAL);
        rounds += 1;
        assert!(
            rounds < 10,
            "the dead instance's vote vetoed for {rounds} intervals"
        );
    }
    // Stale after the window (four intervals), not sooner: the veto held while it might be alive.
    assert!(rounds >= 3, "{rounds}");
}

#[test]
fn skewed_clocks_decide_exactly_as_equal_ones() {
    fn run(skews: &[i64]) -> Vec<Vec<(String, ConnectionStatus, ConnectionStatus, EventOrigin)>> {
        let mut sim = Sim::new(3, skews);
        let script = [
            [true, true, true],
            [false, true, true],
            [false, false, true],
            [false, false, false],
            [false, false, false],
            [false, false, false],
            [true, false, true],
            [true, true, true],
            [true, true, true],
        ];
        for step in script {
            sim.round("main", &step);
        }
        // One instance stops; the others fail it over without it.
        for _ in 0..8 {
            sim.round("main", &[false, false]);
        }
        sim.nodes
            .iter()
            .map(|n| n.seen.transitions.clone())
            .collect()
    }
    let equal = run(&[0, 0, 0]);
    assert_eq!(run(&[0, 1, -1]), equal);
    assert_eq!(run(&[-5, 0, 3]), equal);
}

#[test]
fn an_evicted_or_garbage_record_is_rewritten_and_never_routes_back_to_a_down_database() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    for _ in 0..3 {
        sim.round("main", &all(2, false));
    }
    assert_eq!(sim.stored_status(), Some(ConnectionStatus::Down));
    let garbage: [Option<&[u8]>; 6] = [
        None,
        Some(b"HEALTHY 0 0 1"),
        Some(b"dbfo2 999 0000000000000001 c HEALTHY 0 0 - -junk"),
        Some(b"\xff\xfe\xfd"),
        Some(b"dbfo2 1 zz c HEALTHY 0 0 - -"),
        Some(b"dbfo2 18446744073709551615 00000000000000ff c HEALTHY 0 0 - -"),
    ];
    for raw in garbage {
        match raw {
            Some(raw) => {
                sim.store.records.insert(main_key(), raw.to_vec());
            }
            None => {
                sim.store.records.remove(&main_key());
            }
        }
        // The next poll or push finds it; the next checks (still failing) rewrite it.
        for i in 0..2 {
            sim.nodes[i].replica.request_load_all();
            sim.drive(i);
        }
        sim.round("main", &all(2, false));
        for i in 0..2 {
            assert_eq!(sim.status(i, "main"), ConnectionStatus::Down, "{raw:?}");
        }
        assert_eq!(
            sim.stored_status(),
            Some(ConnectionStatus::Down),
            "healed: {raw:?}"
        );
    }
    for i in 0..2 {
        assert_eq!(
            sim.transitions_to(i, ConnectionStatus::Healthy).len(),
            1,
            "only the first check made it HEALTHY"
        );
        assert_eq!(sim.nodes[i].seen.unavailable, 0);
    }
}

#[test]
fn a_store_that_lost_a_write_gets_it_back() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    let before_down = sim.store.records.get(&main_key()).cloned().unwrap();
    for _ in 0..3 {
        sim.round("main", &all(2, false));
    }
    assert_eq!(sim.stored_status(), Some(ConnectionStatus::Down));
    // The store fails over to a replica that missed the last writes.
    sim.store.records.insert(main_key(), before_down);
    for i in 0..2 {
        sim.nodes[i].replica.request_load_all();
        sim.drive(i);
    }
    sim.settle();
    assert_eq!(
        sim.stored_status(),
        Some(ConnectionStatus::Down),
        "rewritten"
    );
    for i in 0..2 {
        assert_eq!(sim.status(i, "main"), ConnectionStatus::Down);
    }
}

#[test]
fn another_release_s_record_is_left_alone_and_the_instance_decides_alone() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let foreign = b"dbfo3 7 00000000000000aa whatever the next release writes".to_vec();
    sim.store.records.insert(main_key(), foreign.clone());
    sim.nodes[0].replica.request_load_all();
    sim.drive(0);
    for _ in 0..3 {
        sim.round("main", &[false]);
    }
    assert_eq!(
        sim.status(0, "main"),
        ConnectionStatus::Down,
        "decided alone"
    );
    assert_eq!(
        sim.store.records.get(&main_key()),
        Some(&foreign),
        "never overwritten"
    );
    assert_eq!(sim.nodes[0].seen.foreign, 1, "said once");
    assert_eq!(sim.nodes[0].seen.unavailable, 0);
}

#[test]
fn an_unchanged_healthy_state_writes_only_to_refresh_votes() {
    let mut sim = Sim::new(10, &[]);
    sim.round("main", &all(10, true));
    sim.round("main", &all(10, true));
    let before = sim.store.commands;
    for _ in 0..20 {
        sim.round("main", &all(10, true));
    }
    let per_check = (sim.store.commands - before) as f64 / 200.0;
    assert!(per_check <= 0.6, "{per_check} store calls per check");
}

#[test]
fn contention_is_not_an_outage() {
    let mut sim = Sim::new(30, &[]);
    // Everyone checks, and only then do the pushes arrive: every write but the first conflicts.
    for round in 0..5 {
        for i in 0..30 {
            let now = sim.now(i);
            sim.nodes[i]
                .replica
                .handle_check("main", CheckResult::failure("x"), now);
            sim.drive(i);
        }
        sim.settle();
        sim.advance(INTERVAL);
        let _ = round;
    }
    for i in 0..30 {
        assert_eq!(sim.nodes[i].seen.unavailable, 0);
        assert_eq!(sim.status(i, "main"), ConnectionStatus::Down);
    }
}

#[test]
fn an_outage_is_reported_once_and_each_instance_goes_on_alone() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.store.up = false;
    for _ in 0..3 {
        sim.round("main", &all(2, false));
    }
    for i in 0..2 {
        assert_eq!(sim.status(i, "main"), ConnectionStatus::Down);
        assert_eq!(sim.nodes[i].seen.unavailable, 1);
    }
    sim.store.up = true;
    sim.round("main", &all(2, false));
    sim.advance(INTERVAL);
    for i in 0..2 {
        assert_eq!(sim.nodes[i].seen.restored, 1);
        assert_eq!(
            sim.status(i, "main"),
            ConnectionStatus::Down,
            "no switch back: {:?}",
            sim.nodes[i].seen.transitions
        );
        assert_eq!(sim.transitions_to(i, ConnectionStatus::Healthy).len(), 1);
    }
    assert_eq!(sim.stored_status(), Some(ConnectionStatus::Down));
}

#[test]
fn an_instance_that_lost_the_store_and_the_database_never_moves_the_fleet() {
    let mut sim = Sim::new(3, &[]);
    sim.round("main", &all(3, true));
    sim.round("main", &all(3, true));
    // Node 0 loses the store and its path to the primary; the others reach both.
    sim.nodes[0].partitioned = true;
    for _ in 0..5 {
        sim.round("main", &[false, true, true]);
    }
    assert_eq!(
        sim.status(0, "main"),
        ConnectionStatus::Down,
        "alone, it failed over"
    );
    // It gets the store back, still without its path to the primary.
    sim.nodes[0].partitioned = false;
    for _ in 0..6 {
        sim.round("main", &[false, true, true]);
        assert_eq!(sim.status(1, "main"), ConnectionStatus::Healthy);
        assert_eq!(sim.status(2, "main"), ConnectionStatus::Healthy);
        assert_ne!(sim.stored_status(), Some(ConnectionStatus::Down));
    }
    // The fleet still reaches it: the instance follows the fleet again.
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
    // The others' votes survived its writes.
    let Slot::Readable {
        record: Record::Connection(entry),
        ..
    } = sim.stored(&main_key())
    else {
        panic!("unreadable");
    };
    assert!(
        entry.votes.iter().filter(|v| v.ok).count() >= 2,
        "{entry:?}"
    );
    for i in 1..3 {
        assert!(sim.transitions_to(i, ConnectionStatus::Down).is_empty());
    }
}

#[test]
fn a_forced_switch_reaches_every_instance_with_one_local_origin() {
    let mut sim = Sim::new(3, &[]);
    sim.round("main", &all(3, true));
    sim.round("standby", &all(3, true));
    let now = sim.now(1);
    sim.nodes[1]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(1);
    sim.settle();
    for i in 0..3 {
        let expected = if i == 1 {
            EventOrigin::Local
        } else {
            EventOrigin::Learned
        };
        assert_eq!(
            sim.nodes[i].seen.forced,
            [(Preference::Failover, expected)],
            "node {i}"
        );
    }
    assert!(matches!(
        sim.stored(&RecordKey::Fleet),
        Slot::Readable {
            record: Record::Fleet(f),
            ..
        } if f.preference == Preference::Failover
    ));
    // A node that starts later learns it too.
    let mut late = Replica::new(
        ReplicaConfig::for_interval(0x9999, T, INTERVAL),
        vec![
            ("main".into(), Role::Primary),
            ("standby".into(), Role::Failover),
        ],
    );
    let now = sim.now(0);
    let Some(Command::Load(keys)) = late.poll_command(now) else {
        panic!("loads first");
    };
    late.handle_loaded(sim.store.load(&keys), now);
    let forced: Vec<_> = std::iter::from_fn(|| late.poll_output())
        .filter_map(|o| match o {
            Output::Forced { preference, origin } => Some((preference, origin)),
            _ => None,
        })
        .collect();
    assert_eq!(forced, [(Preference::Failover, EventOrigin::Learned)]);
}

#[test]
fn votes_carry_counters_not_times() {
    let mut sim = Sim::new(1, &[5]);
    sim.round("main", &[true]);
    let Slot::Readable {
        record: Record::Connection(ConnectionEntry { votes, .. }),
        version: Version { counter, .. },
    } = sim.stored(&main_key())
    else {
        panic!("unreadable");
    };
    assert_eq!(counter, 1);
    assert_eq!(
        votes,
        [Vote {
            instance: 0x1000,
            ok: true,
            seq: 1
        }]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// With a single instance, the shared rule is exactly the tracker's (status after every check).
    #[test]
    fn one_instance_is_the_plain_tracker(results in prop::collection::vec(any::<bool>(), 0..60)) {
        let mut sim = Sim::new(1, &[]);
        let mut tracker = dbfailover_core::HealthTracker::new(T);
        for ok in results {
            let result = if ok { CheckResult::success(Duration::ZERO) } else { CheckResult::failure("x") };
            tracker.record(&result, Utc::now());
            sim.check(0, "main", ok);
            prop_assert_eq!(sim.status(0, "main"), tracker.status());
        }
    }

    /// An instance that keeps reaching the database (a success every interval) keeps every other
    /// instance's failures, however many and however fast, from making it DOWN.
    #[test]
    fn a_reaching_instance_vetoes_down(bursts in prop::collection::vec(1usize..10, 1..30)) {
        let mut sim = Sim::new(2, &[]);
        sim.round("main", &all(2, true));
        for burst in bursts {
            sim.check(1, "main", true);
            for _ in 0..burst {
                sim.check(0, "main", false);
                prop_assert_ne!(sim.status(0, "main"), ConnectionStatus::Down);
                prop_assert_ne!(sim.stored_status(), Some(ConnectionStatus::Down));
            }
            sim.advance(INTERVAL);
        }
    }

    /// Whatever bytes the store holds, every instance keeps routing: failures still make the
    /// connection DOWN, and nothing it reads brings routing back.
    #[test]
    fn garbage_in_the_store_never_routes_back(raw in prop::collection::vec(any::<u8>(), 0..80), fleet in any::<bool>()) {
        let mut sim = Sim::new(2, &[]);
        sim.round("main", &all(2, true));
        for _ in 0..3 {
            sim.round("main", &all(2, false));
        }
        let key = if fleet { RecordKey::Fleet } else { main_key() };
        let mut raw = raw;
        if !fleet && raw.len() % 2 == 0 {
            // Half the cases: garbage behind a well-formed header.
            let mut header = b"dbfo2 1 0000000000000001 c HEALTHY 0 0 - ".to_vec();
            header.extend(raw);
            raw = header;
        }
        sim.store.records.insert(key, raw);
        for i in 0..2 {
            sim.nodes[i].replica.request_load_all();
            sim.drive(i);
        }
        sim.settle();
        for _ in 0..2 {
            sim.round("main", &all(2, false));
        }
        for i in 0..2 {
            prop_assert_eq!(sim.status(i, "main"), ConnectionStatus::Down);
            prop_assert_eq!(sim.transitions_to(i, ConnectionStatus::Healthy).len(), 1);
        }
    }
}

#[test]
fn names_with_any_characters_are_just_keys() {
    let name: Arc<str> = "a b\"c\n,:;".into();
    let mut replica = Replica::new(
        ReplicaConfig::for_interval(1, T, INTERVAL),
        vec![(Arc::clone(&name), Role::Primary)],
    );
    let now = Now {
        mono: Instant::now(),
        wall: Utc::now(),
    };
    let Some(Command::Load(keys)) = replica.poll_command(now) else {
        panic!("loads first");
    };
    assert!(keys.contains(&RecordKey::Connection(name)));
}

#[test]
fn a_switch_forced_while_the_store_is_away_reaches_the_fleet_when_it_is_back() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.round("standby", &all(2, true));
    sim.nodes[0].partitioned = true;
    sim.round("main", &all(2, true));
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    assert_eq!(
        sim.nodes[0].seen.forced,
        [(Preference::Failover, EventOrigin::Local)],
        "applied at once, alone"
    );
    assert!(sim.nodes[1].seen.forced.is_empty());
    sim.nodes[0].partitioned = false;
    for _ in 0..3 {
        sim.round("main", &all(2, true));
    }
    assert_eq!(
        sim.nodes[1].seen.forced,
        [(Preference::Failover, EventOrigin::Learned)],
        "the fleet learned it when the store came back"
    );
    assert!(matches!(
        sim.stored(&RecordKey::Fleet),
        Slot::Readable {
            record: Record::Fleet(ref f),
            ..
        } if f.preference == Preference::Failover
    ));
}

#[test]
fn a_store_that_answers_fewer_records_than_asked_is_not_answering() {
    let mut replica = Replica::new(
        ReplicaConfig::for_interval(1, T, INTERVAL),
        vec![
            ("main".into(), Role::Primary),
            ("standby".into(), Role::Failover),
        ],
    );
    let now = Now {
        mono: Instant::now(),
        wall: Utc::now(),
    };
    let Some(Command::Load(_)) = replica.poll_command(now) else {
        panic!("loads first");
    };
    replica.handle_loaded(vec![Slot::Missing], now);
    assert!(replica.in_outage());
    let unavailable = std::iter::from_fn(|| replica.poll_output())
        .filter(|o| matches!(o, Output::StoreUnavailable { .. }))
        .count();
    assert_eq!(unavailable, 1);
}

fn stored_fleet(sim: &Sim) -> Option<(Version, FleetRecord)> {
    match sim.stored(&RecordKey::Fleet) {
        Slot::Readable {
            version,
            record: Record::Fleet(fleet),
        } => Some((version, fleet)),
        _ => None,
    }
}

#[test]
fn topology_decisions_reach_every_instance_through_the_fleet_record() {
    let mut sim = Sim::new(3, &[]);
    sim.round("main", &all(3, true));
    // A field of a later release, already in the fleet record: kept as it is.
    sim.store.records.insert(
        RecordKey::Fleet,
        b"dbfo2 1 00000000000000aa f pref=primary by=0 later=x".to_vec(),
    );
    for i in 0..3 {
        sim.nodes[i].replica.request_load_all();
        sim.drive(i);
    }
    let mut fences = TopologyRecord {
        writer: Some("standby".into()),
        ..TopologyRecord::default()
    };
    fences.fenced.insert("main".into(), "left behind".into());
    sim.nodes[0].replica.handle_topology(fences.clone());
    sim.drive(0);
    sim.settle();
    let (version, fleet) = stored_fleet(&sim).expect("a fleet record");
    assert_eq!(version.counter, 2);
    assert_eq!(decode_record(&fleet.extra), Some(fences.clone()));
    assert!(fleet.extra.contains(&("later".to_owned(), "x".to_owned())));
    assert_eq!(fleet.preference, Preference::Primary);
    assert!(sim.nodes[0].seen.topology.is_empty(), "its own decisions");
    for i in 1..3 {
        assert_eq!(sim.nodes[i].seen.topology, [fences.clone()], "node {i}");
    }
    // What the fleet knows already writes nothing.
    let commands = sim.store.commands;
    sim.nodes[1].replica.handle_topology(fences.clone());
    sim.drive(1);
    sim.settle();
    assert_eq!(sim.store.commands, commands);
    // Another instance's decision adds up with the record's.
    let mut more = TopologyRecord::default();
    more.fenced
        .insert("standby".into(), "older timeline".into());
    sim.nodes[2].replica.handle_topology(more);
    sim.drive(2);
    sim.settle();
    let (_, fleet) = stored_fleet(&sim).expect("a fleet record");
    let merged = decode_record(&fleet.extra).expect("topology fields");
    assert_eq!(merged.fenced.len(), 2);
    assert_eq!(merged.writer.as_deref(), Some("standby"));
    assert_eq!(sim.nodes[0].seen.topology.last(), Some(&merged));
}

#[test]
fn a_fleet_record_holding_decisions_is_rewritten_before_the_store_forgets_it() {
    let every = Duration::from_secs(1);
    let mut sim = Sim::new(2, &[]);
    for i in 0..2 {
        sim.nodes[i].replica.set_fleet_refresh(every);
    }
    sim.round("main", &all(2, true));
    sim.round("standby", &all(2, true));
    let counter = |sim: &Sim| stored_fleet(sim).map(|(v, _)| v.counter);
    // Nothing decided: nothing to keep alive.
    assert_eq!(counter(&sim), None);
    assert_eq!(sim.nodes[1].replica.poll_timeout(), None);
    sim.advance(every * 2);
    assert_eq!(counter(&sim), None);

    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    sim.settle();
    let forced = counter(&sim).expect("the forced switch is stored");
    assert_eq!(
        sim.nodes[1].replica.poll_timeout(),
        Some(sim.now(1).mono + every),
        "a timer for the refresh"
    );
    sim.advance(every - Duration::from_millis(100));
    assert_eq!(counter(&sim), Some(forced), "not due yet");
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        counter(&sim),
        Some(forced + 1),
        "rewritten once, by one instance"
    );
    assert_eq!(
        stored_fleet(&sim).map(|(_, f)| f.preference),
        Some(Preference::Failover)
    );
    sim.advance(every);
    assert_eq!(counter(&sim), Some(forced + 2));

    // Back to the primary: the record holds nothing worth keeping alive.
    let now = sim.now(1);
    sim.nodes[1]
        .replica
        .handle_force(Preference::Primary, "main", now);
    sim.drive(1);
    sim.settle();
    let back = counter(&sim).expect("stored");
    sim.advance(every * 3);
    assert_eq!(counter(&sim), Some(back));
    assert_eq!(sim.nodes[0].replica.poll_timeout(), None);
}

#[test]
fn a_refresh_interval_has_a_floor() {
    let mut sim = Sim::new(1, &[]);
    sim.nodes[0].replica.set_fleet_refresh(Duration::ZERO);
    sim.round("main", &[true]);
    sim.round("standby", &[true]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    sim.settle();
    assert_eq!(
        sim.nodes[0].replica.poll_timeout(),
        Some(sim.now(0).mono + Duration::from_millis(10))
    );
}

#[test]
fn every_write_carries_a_write_id_of_its_own() {
    let mut sim = Sim::new(2, &[]);
    let mut versions: Vec<Version> = Vec::new();
    for step in 0..12 {
        sim.check(step % 2, "main", step % 3 != 0);
        sim.advance(INTERVAL * 3);
        if let Some(version) = sim.stored(&main_key()).version()
            && versions.last() != Some(&version)
        {
            versions.push(version);
        }
    }
    assert!(versions.len() >= 6, "{versions:?}");
    for pair in versions.windows(2) {
        assert_eq!(pair[1].counter, pair[0].counter + 1, "{versions:?}");
    }
    let mut ids: Vec<u64> = versions.iter().map(|v| v.write_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), versions.len(), "{versions:?}");
}

#[test]
fn a_replica_reports_its_identity_its_connections_and_the_store_s_state() {
    let mut sim = Sim::new(1, &[]);
    let replica = &sim.nodes[0].replica;
    assert_eq!(replica.instance(), 0x1000);
    let connections: Vec<_> = replica
        .trackers()
        .map(|(name, role, tracker)| (name.to_string(), role, tracker.status()))
        .collect();
    assert_eq!(
        connections,
        [
            ("main".to_owned(), Role::Primary, ConnectionStatus::Unknown),
            (
                "standby".to_owned(),
                Role::Failover,
                ConnectionStatus::Unknown
            )
        ]
    );
    assert_eq!(replica.status("other"), None);
    assert!(!replica.in_outage());
    sim.check(0, "main", true);
    assert_eq!(sim.nodes[0].seen.applied, ["main"]);
    sim.check(0, "standby", false);
    assert_eq!(sim.nodes[0].seen.applied, ["main", "standby"]);
    sim.check(0, "nobody", false);
    assert_eq!(sim.nodes[0].seen.applied.len(), 2);
    sim.store.up = false;
    sim.check(0, "main", true);
    assert!(sim.nodes[0].replica.in_outage());
    assert_eq!(sim.nodes[0].seen.unavailable, 1);
    sim.store.up = true;
    sim.advance(INTERVAL);
    sim.check(0, "main", true);
    assert!(!sim.nodes[0].replica.in_outage());
    assert_eq!(sim.nodes[0].seen.restored, 1);
}

#[test]
fn a_record_that_vanished_and_came_back_is_followed_not_rewritten_over_and_over() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let kept = sim.store.records.get(&main_key()).cloned().unwrap();
    // The store loses the record (it failed over to a replica that lacked it)...
    sim.store.records.remove(&main_key());
    sim.nodes[0].replica.request_load_all();
    let now = sim.now(0);
    let Some(Command::Load(keys)) = sim.nodes[0].replica.poll_command(now) else {
        panic!("a load");
    };
    let slots = sim.store.load(&keys);
    sim.nodes[0].replica.handle_loaded(slots, now);
    // ...and holds it again before this instance rewrites it (the store failed back).
    sim.store.records.insert(main_key(), kept.clone());
    let before = sim.store.commands;
    sim.drive(0);
    sim.settle();
    for _ in 0..20 {
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.store.records.get(&main_key()), Some(&kept));
    assert_eq!(
        sim.store.commands - before,
        1,
        "one compare-and-set finds the record back; no write after it"
    );
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
}

#[test]
fn during_an_outage_each_check_is_decided_at_once_not_at_the_next_retry() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.store.up = false;
    // The first check finds the store away; the next retry is an interval later.
    sim.check(0, "main", false);
    assert!(sim.nodes[0].replica.in_outage());
    assert_eq!(
        sim.nodes[0].seen.applied,
        ["main", "main"],
        "the check whose write failed is decided alone"
    );
    assert_eq!(
        sim.nodes[0]
            .replica
            .trackers()
            .map(|(_, _, t)| t.state().failure_count)
            .collect::<Vec<_>>(),
        [1, 0]
    );
    let applied = sim.nodes[0].seen.applied.len();
    sim.check(0, "main", false);
    sim.check(0, "main", false);
    assert_eq!(sim.nodes[0].seen.applied.len(), applied + 2);
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Down);
    assert_eq!(
        sim.transitions_to(0, ConnectionStatus::Down),
        [EventOrigin::Local]
    );
}

#[test]
fn a_switch_forced_when_the_fleet_record_cannot_be_written_applies_at_once() {
    // The store is away and its next retry is not due.
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("standby", &[true]);
    sim.store.up = false;
    sim.check(0, "main", true);
    assert!(sim.nodes[0].replica.in_outage());
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.collect(0);
    assert_eq!(
        sim.nodes[0].seen.forced,
        [(Preference::Failover, EventOrigin::Local)]
    );
    // The fleet record is another release's: never overwritten, the switch applies here alone.
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("standby", &[true]);
    let foreign = b"dbfo3 1 ab pref=whatever".to_vec();
    sim.store.records.insert(RecordKey::Fleet, foreign.clone());
    sim.nodes[0].replica.request_load_all();
    sim.drive(0);
    assert_eq!(sim.nodes[0].seen.foreign, 1);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.collect(0);
    assert_eq!(
        sim.nodes[0].seen.forced,
        [(Preference::Failover, EventOrigin::Local)]
    );
    sim.drive(0);
    sim.advance(INTERVAL);
    assert_eq!(sim.store.records.get(&RecordKey::Fleet), Some(&foreign));
}

#[test]
fn a_write_that_meets_another_is_retried_on_what_it_found() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    // Both find it failing at once; instance 0's write lands before instance 1 hears of it.
    for i in 0..2 {
        let now = sim.now(i);
        sim.nodes[i]
            .replica
            .handle_check("main", CheckResult::failure("refused"), now);
        sim.drive(i);
    }
    sim.settle();
    let Slot::Readable {
        record: Record::Connection(entry),
        ..
    } = sim.stored(&main_key())
    else {
        panic!("a readable record");
    };
    assert_eq!(entry.votes.len(), 2);
    assert!(
        entry.votes.iter().all(|v| !v.ok),
        "both failures are in the record: {:?}",
        entry.votes
    );
}

#[test]
fn a_learned_forced_switch_tells_its_target_s_status_before_the_switch() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    for _ in 0..3 {
        sim.round("standby", &all(2, false));
    }
    assert_eq!(sim.status(1, "standby"), ConnectionStatus::Down);
    sim.nodes[1].seen.told.clear();
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    sim.settle();
    assert_eq!(
        sim.nodes[1].seen.told,
        ["standby HEALTHY", "forced Failover"],
        "routing hears the target is usable before it is told to prefer it"
    );
}

#[test]
fn during_an_outage_the_store_is_tried_once_per_retry_interval() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.store.up = false;
    let tries = sim.store.tries;
    sim.check(0, "main", true);
    assert!(sim.nodes[0].replica.in_outage());
    assert_eq!(sim.store.tries, tries + 1);
    assert_eq!(
        sim.nodes[0].replica.poll_timeout(),
        Some(sim.now(0).mono + INTERVAL),
        "a timer for the next try"
    );
    for _ in 0..5 {
        sim.check(0, "main", true);
    }
    assert_eq!(sim.store.tries, tries + 1, "checks do not hurry the retry");
    sim.advance(INTERVAL);
    assert_eq!(sim.store.tries, tries + 2);
    assert_eq!(
        sim.nodes[0].replica.poll_timeout(),
        Some(sim.now(0).mono + INTERVAL)
    );
}

/// A check that arrives while a read is in flight is decided as soon as the read answers, when it
/// needs no write: the caller waiting for it (`FailoverHandle::check`) is not left until the next
/// store operation.
#[test]
fn a_check_that_arrives_during_a_read_is_decided_when_the_read_answers() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("main", &[true]);
    sim.nodes[0].replica.request_load_all();
    let now = sim.now(0);
    let Some(Command::Load(keys)) = sim.nodes[0].replica.poll_command(now) else {
        panic!("a read starts");
    };
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::success(Duration::from_millis(1)), now);
    sim.collect(0);
    let before = sim.nodes[0].seen.applied.len();
    let slots = sim.store.load(&keys);
    sim.nodes[0].replica.handle_loaded(slots, now);
    sim.collect(0);
    assert_eq!(
        sim.nodes[0].seen.applied.len(),
        before + 1,
        "decided once the read answered, with nothing written"
    );
    assert_eq!(sim.nodes[0].replica.poll_command(now), None);
}

/// Puts a connection record for `main` in the store, as another instance would have written it,
/// and has every node read it.
fn plant(sim: &mut Sim, status: ConnectionStatus, votes: Vec<Vote>) {
    let entry = ConnectionEntry {
        counts: Counts {
            status,
            failure_count: 0,
            success_count: 1,
        },
        votes,
        forced: false,
        checked_at_ms: 0,
    };
    let version = Version {
        counter: 40,
        write_id: 0xabc,
    };
    let raw = Record::Connection(entry).encode(version);
    sim.store.records.insert(main_key(), raw.into_bytes());
    for i in 0..sim.nodes.len() {
        sim.nodes[i].replica.request_load_all();
        sim.drive(i);
    }
    sim.settle();
}

fn stored_votes(sim: &Sim) -> Vec<Vote> {
    let Slot::Readable {
        record: Record::Connection(entry),
        ..
    } = sim.stored(&main_key())
    else {
        panic!("a readable record: {:?}", sim.stored(&main_key()));
    };
    entry.votes
}

/// A vote is fresh for `vote_window` (four intervals here) after its counter last changed on the
/// reader's clock, and stale from that very moment: an instance that stopped voting vetoes no longer.
#[test]
fn another_instance_s_vote_is_stale_exactly_one_window_after_it_last_changed() {
    let window = 4 * INTERVAL;
    for (age, vetoed) in [(window - Duration::from_nanos(1), true), (window, false)] {
        let mut sim = Sim::new(1, &[]);
        let vote = Vote {
            instance: 0x3000,
            ok: true,
            seq: 1,
        };
        plant(&mut sim, ConnectionStatus::Healthy, vec![vote]);
        assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
        sim.elapsed += age;
        for _ in 0..3 {
            sim.check(0, "main", false);
        }
        let expected = if vetoed {
            ConnectionStatus::Healthy
        } else {
            ConnectionStatus::Down
        };
        assert_eq!(sim.status(0, "main"), expected, "vote {age:?} old");
        assert_eq!(sim.stored_status(), Some(expected), "vote {age:?} old");
    }
}

/// A record holds at most `MAX_VOTES` votes. When it is full, an instance's own vote still goes in,
/// and the votes that make room are failures: a success (a veto) is the last thing to drop.
#[test]
fn a_full_record_takes_this_instance_s_vote_and_drops_failures_first() {
    let others = |count: usize, ok: bool| -> Vec<Vote> {
        (0..count)
            .map(|i| Vote {
                instance: 0x10_0000 + 2 * i as u64,
                ok,
                seq: 1,
            })
            .collect()
    };
    let me = 0x1000;
    // (votes planted, what is stored after this instance's failure)
    let cases = [
        // Room for one more: every vote stays.
        (others(MAX_VOTES - 1, false), MAX_VOTES, MAX_VOTES - 1),
        // Full of failures: they make room, this instance's vote goes in.
        (others(MAX_VOTES, false), 1, 0),
        // Full of successes: one makes room, and the record stays readable.
        (others(MAX_VOTES, true), MAX_VOTES, MAX_VOTES - 1),
        // A few failures, well below the bound: kept.
        (others(2, false), 3, 2),
    ];
    for (planted, total, kept) in cases {
        let label = format!("{} planted", planted.len());
        let mut sim = Sim::new(1, &[]);
        let planted_ids: Vec<u64> = planted.iter().map(|v| v.instance).collect();
        plant(&mut sim, ConnectionStatus::Healthy, planted);
        sim.check(0, "main", false);
        let votes = stored_votes(&sim);
        assert_eq!(votes.len(), total, "{label}");
        assert_eq!(
            votes
                .iter()
                .filter(|v| planted_ids.contains(&v.instance))
                .count(),
            kept,
            "{label}"
        );
        assert!(
            votes.iter().any(|v| v.instance == me && !v.ok),
            "{label}: this instance's failure is in the record"
        );
    }
}

/// A transition to DOWN says why (the failure of the deciding check); any other transition carries no
/// failure reason.
#[test]
fn only_a_transition_to_down_carries_the_failure_reason() {
    let mut sim = Sim::new(1, &[]);
    sim.check(0, "main", false);
    sim.check(0, "main", true);
    for _ in 0..3 {
        sim.check(0, "main", false);
    }
    for _ in 0..2 {
        sim.check(0, "main", true);
    }
    assert_eq!(
        sim.nodes[0].seen.reasons,
        [
            ("main".to_owned(), ConnectionStatus::Healthy, None),
            (
                "main".to_owned(),
                ConnectionStatus::Down,
                Some("connection refused".to_owned())
            ),
            ("main".to_owned(), ConnectionStatus::Healthy, None),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Contention, step by step: another instance's write lands between this instance's read and its
// compare-and-set.

/// Runs node `i`'s next command, which must be a compare-and-set, after another instance rewrote
/// every record it writes (the same content under a newer version; an unreadable record stays
/// unreadable, with other bytes): the write meets a conflict.
fn lose_race(sim: &mut Sim, i: usize) {
    let now = sim.now(i);
    let Some(Command::CompareAndSet(writes)) = sim.nodes[i].replica.poll_command(now) else {
        panic!("node {i} writes at once");
    };
    let keys: Vec<RecordKey> = writes.iter().map(|w| w.key.clone()).collect();
    for key in &keys {
        let raw = match sim.stored(key) {
            Slot::Readable { version, record } => record
                .encode(Version {
                    counter: version.counter + 1,
                    write_id: version.write_id ^ 0x5a5a,
                })
                .into_bytes(),
            _ => format!("garbage {}", sim.store.commands).into_bytes(),
        };
        sim.store.records.insert(key.clone(), raw);
    }
    sim.store.commands += 1;
    let slots = sim.store.load(&keys);
    sim.nodes[i]
        .replica
        .handle_cas_result(CasOutcome::Conflict(slots), now);
    sim.collect(i);
}

/// Moves the clock to `at` (monotonic), without driving anybody.
fn set_time(sim: &mut Sim, at: Instant) {
    sim.elapsed = at - sim.start;
}

/// A write that meets another is retried at once on what it found; from the second conflict on it
/// waits a jittered backoff (below 2, 4, ... 64 ms), with a timer armed for it, so that the retry
/// needs no other event; after `contention_attempts` (8) it gives up: the result stays this
/// instance's fact, the shared decision stands, nothing more is written.
#[test]
fn a_write_that_keeps_meeting_others_backs_off_on_its_own_timer_then_gives_up() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::failure("refused"), now);
    lose_race(&mut sim, 0);
    assert_eq!(
        sim.nodes[0].replica.poll_timeout(),
        None,
        "no backoff after the first conflict"
    );
    let mut waited = Duration::ZERO;
    for conflicts in 2..8u32 {
        lose_race(&mut sim, 0);
        let now = sim.now(0).mono;
        let at = sim.nodes[0]
            .replica
            .poll_timeout()
            .expect("a timer for the retry after a backoff");
        assert!(at >= now, "{conflicts} conflicts");
        let cap = Duration::from_millis(1 << conflicts.min(6));
        assert!(at - now < cap, "{conflicts} conflicts: {:?}", at - now);
        if at > now {
            assert_eq!(sim.poll(0), None);
        }
        waited += at - now;
        set_time(&mut sim, at);
        sim.fire(0);
    }
    assert!(waited > Duration::ZERO, "some backoff is not zero");
    assert!(sim.nodes[0].seen.applied.is_empty() || sim.nodes[0].seen.applied.len() == 1);
    let applied = sim.nodes[0].seen.applied.len();
    lose_race(&mut sim, 0);
    assert_eq!(
        sim.nodes[0].seen.applied.len(),
        applied + 1,
        "given up: decided"
    );
    assert_eq!(sim.poll(0), None);
    assert_eq!(sim.nodes[0].replica.poll_timeout(), None);
    assert_eq!(
        sim.nodes[0].seen.unavailable, 0,
        "contention is not an outage"
    );
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
    assert!(
        stored_votes(&sim).iter().all(|v| v.ok),
        "the failure was never written"
    );
}

/// After a backoff, the retry runs when its timer fires and lands.
#[test]
fn a_write_that_met_others_twice_lands_when_its_backoff_ends() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::failure("refused"), now);
    lose_race(&mut sim, 0);
    lose_race(&mut sim, 0);
    let at = sim.nodes[0].replica.poll_timeout().expect("a timer");
    set_time(&mut sim, at);
    sim.fire(0);
    sim.drive(0);
    assert!(
        stored_votes(&sim)
            .iter()
            .any(|v| v.instance == 0x1000 && !v.ok),
        "the failure is in the record"
    );
    assert_eq!(sim.nodes[0].replica.poll_timeout(), None);
}

/// A backoff whose write became needless (another instance wrote what it had to say, and more) arms
/// no timer.
#[test]
fn a_backoff_with_nothing_left_to_write_arms_no_timer() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::failure("refused"), now);
    lose_race(&mut sim, 0);
    lose_race(&mut sim, 0);
    // The fleet's record now holds this instance's failure, and another instance's success (a veto):
    // the failure changes nothing more.
    let Slot::Readable {
        version,
        record: Record::Connection(mut entry),
    } = sim.stored(&main_key())
    else {
        panic!("readable");
    };
    entry.votes = vec![
        Vote {
            instance: 0x3000,
            ok: true,
            seq: 9,
        },
        Vote {
            instance: 0x1000,
            ok: false,
            seq: 2,
        },
    ];
    let version = Version {
        counter: version.counter + 1,
        write_id: 0x77,
    };
    let slot = Slot::Readable {
        version,
        record: Record::Connection(entry),
    };
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_notice(Notice::Written(vec![(main_key(), slot)]), now);
    sim.collect(0);
    assert_eq!(sim.nodes[0].seen.applied, ["main", "main"]);
    assert_eq!(sim.nodes[0].replica.poll_timeout(), None);
    assert_eq!(sim.nodes[0].replica.poll_command(now), None);
}

/// A forced switch is an operator's order: under contention it backs off like any write, on its own
/// timer, and lands.
#[test]
fn a_forced_switch_that_meets_other_writes_is_retried_on_its_own_timer() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("standby", &[true]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    lose_race(&mut sim, 0);
    lose_race(&mut sim, 0);
    assert!(sim.nodes[0].seen.forced.is_empty());
    let at = sim.nodes[0]
        .replica
        .poll_timeout()
        .expect("a timer for the forced switch's retry");
    set_time(&mut sim, at);
    sim.fire(0);
    sim.drive(0);
    assert_eq!(
        sim.nodes[0].seen.forced,
        [(Preference::Failover, EventOrigin::Local)]
    );
    assert_eq!(
        stored_fleet(&sim).map(|(_, r)| r.preference),
        Some(Preference::Failover)
    );
}

/// A vote refresh (an unchanged success, rewritten to stay fresh) that meets another write is not
/// retried: the check is decided, and the next check refreshes instead.
#[test]
fn a_vote_refresh_that_meets_another_write_is_not_retried() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("main", &[true]);
    // Past the refresh interval (two intervals) and its jitter (at most a quarter of it).
    sim.advance(3 * INTERVAL);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::success(Duration::from_millis(1)), now);
    let applied = sim.nodes[0].seen.applied.len();
    lose_race(&mut sim, 0);
    assert_eq!(sim.nodes[0].seen.applied.len(), applied + 1, "decided");
    assert_eq!(sim.nodes[0].replica.poll_command(now), None, "not retried");
    assert_eq!(sim.nodes[0].replica.poll_timeout(), None);
}

/// Topology decisions (a fence) are written like any other: under contention they back off on their
/// own timer and land.
#[test]
fn a_fence_that_meets_other_writes_is_retried_on_its_own_timer() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let mut fences = TopologyRecord::default();
    fences.fenced.insert("main".into(), "left behind".into());
    sim.nodes[0].replica.handle_topology(fences.clone());
    lose_race(&mut sim, 0);
    lose_race(&mut sim, 0);
    let at = sim.nodes[0]
        .replica
        .poll_timeout()
        .expect("a timer for the fence's retry");
    set_time(&mut sim, at);
    sim.fire(0);
    sim.drive(0);
    let (_, fleet) = stored_fleet(&sim).expect("a fleet record");
    assert_eq!(decode_record(&fleet.extra), Some(fences));
}

/// A push of the write this instance already knows, arriving late (after a read found the record
/// gone), does not make it forget that the store lost the record: the rewrite lands at the first
/// compare-and-set.
#[test]
fn a_late_push_of_a_known_write_does_not_undo_a_rewrite() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("main", &[false]);
    let late = Notice::Written(vec![(main_key(), sim.stored(&main_key()))]);
    sim.pushes.clear();
    sim.store.records.remove(&main_key());
    sim.nodes[0].replica.request_load_all();
    let Some(Command::Load(keys)) = sim.poll(0) else {
        panic!("a read");
    };
    let now = sim.now(0);
    let slots = sim.store.load(&keys);
    sim.nodes[0].replica.handle_loaded(slots, now);
    sim.nodes[0].replica.handle_notice(late, now);
    let commands = sim.store.commands;
    sim.drive(0);
    assert_eq!(sim.store.commands, commands + 1, "one compare-and-set");
    assert!(
        stored_votes(&sim)
            .iter()
            .any(|v| v.instance == 0x1000 && !v.ok),
        "the record is back"
    );
}

/// A store that answers a conflict without the records it holds is not answering.
#[test]
fn a_conflict_without_the_records_found_is_an_outage() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::failure("refused"), now);
    let Some(Command::CompareAndSet(_)) = sim.poll(0) else {
        panic!("a write");
    };
    sim.nodes[0]
        .replica
        .handle_cas_result(CasOutcome::Conflict(Vec::new()), now);
    sim.collect(0);
    assert!(sim.nodes[0].replica.in_outage());
    assert_eq!(sim.nodes[0].seen.unavailable, 1);
    assert_eq!(sim.nodes[0].seen.applied, ["main", "main"], "decided alone");
}

/// A single node, with its own instance id.
fn lone(instance: u64) -> Sim {
    let mut sim = Sim::new(1, &[]);
    sim.nodes[0].replica = Replica::new(
        ReplicaConfig::for_interval(instance, T, INTERVAL),
        vec![
            ("main".into(), Role::Primary),
            ("standby".into(), Role::Failover),
        ],
    );
    sim.drive(0);
    sim
}

/// An unchanged vote is rewritten after `vote_refresh` (two intervals) plus a jitter of at most a
/// quarter of it, drawn per write: never sooner, and a fleet's instances do not all refresh at the
/// same moment.
#[test]
fn vote_refreshes_come_after_the_refresh_interval_and_spread_out() {
    let refresh = 2 * INTERVAL;
    let mut delays = Vec::new();
    for instance in (0..8).map(|i| 0x4000 + 2 * i) {
        let mut sim = lone(instance);
        // Until the success count reaches its threshold, every success changes the record.
        for _ in 0..3 {
            sim.check(0, "main", true);
        }
        let written = sim.elapsed;
        let commands = sim.store.commands;
        while sim.store.commands == commands {
            sim.elapsed += Duration::from_millis(1);
            sim.check(0, "main", true);
            assert!(sim.elapsed - written < 2 * refresh, "never refreshed");
        }
        delays.push(sim.elapsed - written);
    }
    for delay in &delays {
        assert!(
            *delay >= refresh && *delay <= refresh + refresh / 4,
            "{delays:?}"
        );
    }
    delays.sort();
    delays.dedup();
    assert!(
        delays.len() > 1,
        "every instance refreshed at once: {delays:?}"
    );
}

/// A forced switch decides no check result: nobody waiting for a check of the target is told it
/// was decided.
#[test]
fn a_forced_switch_decides_no_check() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("standby", &[true]);
    let applied = sim.nodes[0].seen.applied.len();
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    assert_eq!(
        sim.nodes[0].seen.forced,
        [(Preference::Failover, EventOrigin::Local)]
    );
    assert_eq!(sim.nodes[0].seen.applied.len(), applied);
}

/// A switch forced during an outage is written over the fleet record the store still holds (one
/// from an earlier switch), not replaced by it.
#[test]
fn a_switch_forced_in_an_outage_overrides_an_earlier_fleet_record() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.round("standby", &all(2, true));
    let now = sim.now(1);
    sim.nodes[1]
        .replica
        .handle_force(Preference::Primary, "main", now);
    sim.drive(1);
    sim.settle();
    assert_eq!(
        stored_fleet(&sim).map(|(_, f)| f.preference),
        Some(Preference::Primary)
    );
    sim.nodes[0].partitioned = true;
    sim.round("main", &all(2, true));
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    sim.nodes[0].partitioned = false;
    for _ in 0..3 {
        sim.round("main", &all(2, true));
    }
    assert_eq!(
        stored_fleet(&sim).map(|(_, f)| (f.preference, f.forced_by)),
        Some((Preference::Failover, 0x1000))
    );
    assert_eq!(
        sim.nodes[1].seen.forced.last(),
        Some(&(Preference::Failover, EventOrigin::Learned))
    );
}

/// The fleet record says who forced the switch; another instance writing a fence into it keeps that.
#[test]
fn a_fence_written_after_a_forced_switch_keeps_who_forced_it() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.round("standby", &all(2, true));
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    sim.settle();
    let mut fences = TopologyRecord::default();
    fences.fenced.insert("main".into(), "left behind".into());
    sim.nodes[1].replica.handle_topology(fences.clone());
    sim.drive(1);
    sim.settle();
    let (_, fleet) = stored_fleet(&sim).expect("a fleet record");
    assert_eq!(decode_record(&fleet.extra), Some(fences));
    assert_eq!(
        (fleet.preference, fleet.forced_by),
        (Preference::Failover, 0x1000)
    );
}

/// Operators see when a connection was last checked by any instance: an instance that never checked
/// it learns the time from the shared record.
#[test]
fn the_last_check_time_is_learned_from_the_fleet() {
    let mut sim = Sim::new(2, &[]);
    sim.elapsed = Duration::from_millis(1234);
    let checked = sim.now(0).wall;
    sim.check(0, "main", true);
    let (_, _, tracker) = sim.nodes[1]
        .replica
        .trackers()
        .find(|(name, ..)| &***name == "main")
        .unwrap();
    assert_eq!(tracker.state().last_check_at, Some(checked));
    assert_eq!(tracker.state().checks, 0, "node 1 checked nothing itself");
}

// ---------------------------------------------------------------------------------------------
// Reading the store: votes, pushes, foreign records, the end of an outage.

fn counts(sim: &Sim, i: usize, connection: &str) -> Counts {
    let (_, _, tracker) = sim.nodes[i]
        .replica
        .trackers()
        .find(|(name, ..)| &***name == connection)
        .unwrap();
    tracker.counts()
}

/// Reading a record again does not make the votes in it fresh: only a vote whose counter moved is
/// news. (A store that cannot push is read every interval.)
#[test]
fn a_dead_instance_s_vote_goes_stale_even_when_the_record_is_read_again_and_again() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.round("main", &all(2, true));
    let mut rounds = 0;
    while sim.status(0, "main") != ConnectionStatus::Down {
        sim.check(0, "main", false);
        sim.nodes[0].replica.request_load_all();
        sim.advance(INTERVAL);
        rounds += 1;
        assert!(
            rounds < 10,
            "the dead instance's vote vetoed for {rounds} intervals"
        );
    }
}

/// A check that arrives while a read is in flight, when the read finds a record of a later release:
/// the check is decided at once, by this instance alone.
#[test]
fn a_check_pending_when_a_foreign_record_is_found_is_decided_alone() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let foreign = b"dbfo3 7 00000000000000aa whatever the next release writes".to_vec();
    sim.store.records.insert(main_key(), foreign.clone());
    sim.nodes[0].replica.request_load_all();
    let Some(Command::Load(keys)) = sim.poll(0) else {
        panic!("a read");
    };
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::failure("refused"), now);
    sim.collect(0);
    let applied = sim.nodes[0].seen.applied.len();
    let slots = sim.store.load(&keys);
    sim.nodes[0].replica.handle_loaded(slots, now);
    sim.collect(0);
    assert_eq!(sim.nodes[0].seen.foreign, 1);
    assert_eq!(sim.nodes[0].seen.applied.len(), applied + 1, "decided");
    assert_eq!(sim.poll(0), None);
    assert_eq!(sim.store.records.get(&main_key()), Some(&foreign));
}

/// An evicted record is rewritten by any instance that knows it, even one that only learned it (and
/// never checked the connection itself), so that no count of the fleet's is lost.
#[test]
fn an_instance_that_only_learned_a_record_rewrites_it_when_evicted() {
    let mut sim = Sim::new(2, &[]);
    sim.check(0, "main", false);
    sim.check(0, "main", false);
    assert_eq!(sim.status(1, "main"), ConnectionStatus::Unknown);
    assert_eq!(counts(&sim, 1, "main").failure_count, 2, "learned");
    sim.store.records.remove(&main_key());
    sim.nodes[1].replica.request_load_all();
    sim.drive(1);
    let Slot::Readable {
        record: Record::Connection(entry),
        ..
    } = sim.stored(&main_key())
    else {
        panic!("rewritten");
    };
    assert_eq!(entry.counts.failure_count, 2);
    sim.check(0, "main", false);
    assert_eq!(sim.status(1, "main"), ConnectionStatus::Down);
}

/// The store may push this instance's own write before it answers the compare-and-set: the decision
/// is still this instance's own (one `Local` transition), not something learned.
#[test]
fn an_own_write_pushed_before_its_answer_stays_a_local_decision() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.check(0, "main", false);
    sim.check(0, "main", false);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::failure("refused"), now);
    let Some(Command::CompareAndSet(writes)) = sim.poll(0) else {
        panic!("a write");
    };
    let pushed = writes
        .iter()
        .map(|w| {
            sim.store
                .records
                .insert(w.key.clone(), w.value.as_bytes().to_vec());
            (
                w.key.clone(),
                Slot::decode(&w.key, Some(w.value.as_bytes())),
            )
        })
        .collect();
    sim.nodes[0]
        .replica
        .handle_notice(Notice::Written(pushed), now);
    sim.nodes[0]
        .replica
        .handle_cas_result(CasOutcome::Written, now);
    sim.collect(0);
    assert_eq!(
        sim.transitions_to(0, ConnectionStatus::Down),
        [EventOrigin::Local]
    );
}

/// A push of an older fleet record (the store failed over and lost the last write) is checked with a
/// read, and the record is rewritten with what this instance knows.
#[test]
fn a_fleet_record_the_store_lost_is_rewritten_after_a_late_push_shows_it() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("standby", &[true]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    sim.settle();
    let old = sim.store.records.get(&RecordKey::Fleet).cloned().unwrap();
    let mut fences = TopologyRecord::default();
    fences.fenced.insert("main".into(), "left behind".into());
    sim.nodes[0].replica.handle_topology(fences.clone());
    sim.drive(0);
    sim.settle();
    sim.store.records.insert(RecordKey::Fleet, old.clone());
    let slot = Slot::decode(&RecordKey::Fleet, Some(&old));
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_notice(Notice::Written(vec![(RecordKey::Fleet, slot)]), now);
    sim.drive(0);
    let (_, fleet) = stored_fleet(&sim).expect("a fleet record");
    assert_eq!(decode_record(&fleet.extra), Some(fences));
    assert_eq!(fleet.preference, Preference::Failover);
}

/// A switch forced during an outage is never written over a fleet record of a later release found
/// when the store is back.
#[test]
fn a_switch_forced_in_an_outage_leaves_a_foreign_fleet_record_alone() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("standby", &[true]);
    sim.nodes[0].partitioned = true;
    sim.round("main", &[true]);
    assert!(sim.nodes[0].replica.in_outage());
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    let foreign = b"dbfo3 9 00000000000000bb f whatever the next release writes".to_vec();
    sim.store.records.insert(RecordKey::Fleet, foreign.clone());
    sim.nodes[0].partitioned = false;
    for _ in 0..3 {
        sim.round("main", &[true]);
    }
    assert!(!sim.nodes[0].replica.in_outage());
    assert_eq!(sim.store.records.get(&RecordKey::Fleet), Some(&foreign));
    assert_eq!(sim.nodes[0].seen.foreign, 1, "reported once");
    assert_eq!(
        sim.nodes[0].seen.forced,
        [(Preference::Failover, EventOrigin::Local)]
    );
}

/// When the store comes back after an outage holding an older record than this instance last saw
/// (it lost writes meanwhile), routing does not go back to the DOWN database, and the record is
/// rewritten.
#[test]
fn a_store_back_from_an_outage_with_lost_writes_does_not_route_back() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    let healthy = sim.store.records.get(&main_key()).cloned().unwrap();
    for _ in 0..3 {
        sim.check(0, "main", false);
    }
    assert_eq!(sim.stored_status(), Some(ConnectionStatus::Down));
    sim.nodes[0].partitioned = true;
    sim.check(0, "standby", true);
    assert!(sim.nodes[0].replica.in_outage());
    sim.store.records.insert(main_key(), healthy);
    sim.reconnect(0);
    sim.assert_never_back_to_healthy(0);
}

/// An instance cut off from the store while the fleet decided follows the fleet's decision when it
/// is back, as something learned.
#[test]
fn an_instance_back_from_an_outage_follows_what_the_fleet_decided_meanwhile() {
    let mut sim = Sim::new(3, &[]);
    sim.round("main", &all(3, true));
    sim.nodes[0].partitioned = true;
    sim.check(0, "standby", true);
    assert!(sim.nodes[0].replica.in_outage());
    // Node 0's last vote (a success) vetoes until it goes stale.
    for _ in 0..8 {
        sim.check(1, "main", false);
        sim.check(2, "main", false);
        sim.advance(INTERVAL);
    }
    assert_eq!(sim.stored_status(), Some(ConnectionStatus::Down));
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Healthy);
    sim.reconnect(0);
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Down);
    assert_eq!(
        sim.transitions_to(0, ConnectionStatus::Down),
        [EventOrigin::Learned]
    );
}

/// An instance that found a database DOWN alone during an outage, when the store comes back without
/// the record (evicted), keeps it DOWN and writes its decision.
#[test]
fn a_decision_made_alone_survives_a_record_evicted_during_the_outage() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.round("main", &[true]);
    sim.nodes[0].partitioned = true;
    for _ in 0..3 {
        sim.round("main", &[false]);
    }
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Down);
    sim.store.records.remove(&main_key());
    sim.reconnect(0);
    sim.assert_never_back_to_healthy(0);
}

/// The shared record keeps counts only up to their thresholds; operators see this instance's own
/// longer run beyond them. Below them, the counts are the fleet's: while another instance vetoes,
/// this instance's failures do not add up.
#[test]
fn counts_beyond_the_thresholds_show_this_instance_s_own_run() {
    let mut sim = Sim::new(1, &[]);
    for _ in 0..5 {
        sim.check(0, "main", false);
    }
    assert_eq!(counts(&sim, 0, "main").failure_count, 5);
    for _ in 0..4 {
        sim.check(0, "main", true);
    }
    assert_eq!(counts(&sim, 0, "main").success_count, 4);
    assert_eq!(sim.stored_status(), Some(ConnectionStatus::Healthy));

    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.check(1, "main", true);
    for _ in 0..4 {
        sim.check(0, "main", false);
    }
    let seen = counts(&sim, 0, "main");
    assert_eq!(seen.status, ConnectionStatus::Healthy);
    assert_eq!(seen.failure_count, 0, "vetoed: the fleet's count");
}

/// After an outage, a record with the same counter as the last one seen but from another write (the
/// store failed over to a node that took a different write on the same base) is not newer: it is
/// not adopted, and routing does not go back to the DOWN database it calls HEALTHY.
#[test]
fn a_record_from_another_write_at_the_same_counter_is_not_adopted_after_an_outage() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    for _ in 0..3 {
        sim.check(0, "main", false);
    }
    let Slot::Readable {
        version,
        record: Record::Connection(mut entry),
    } = sim.stored(&main_key())
    else {
        panic!("readable");
    };
    assert_eq!(entry.counts.status, ConnectionStatus::Down);
    sim.nodes[0].partitioned = true;
    sim.check(0, "standby", true);
    assert!(sim.nodes[0].replica.in_outage());
    entry.counts = Counts {
        status: ConnectionStatus::Healthy,
        failure_count: 0,
        success_count: 2,
    };
    let other = Version {
        counter: version.counter,
        write_id: version.write_id ^ 0xffff,
    };
    sim.store.records.insert(
        main_key(),
        Record::Connection(entry).encode(other).into_bytes(),
    );
    sim.reconnect(0);
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Down);
    assert_eq!(sim.stored_status(), Some(ConnectionStatus::Down));
}

/// A record that no check wrote (a forced switch of a connection nobody checked) carries no check
/// time: an instance that learns it shows no "last check" (not 1970).
#[test]
fn a_record_without_a_check_time_sets_no_last_check() {
    let mut sim = Sim::new(2, &[]);
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    sim.settle();
    assert_eq!(sim.status(1, "standby"), ConnectionStatus::Healthy);
    let (_, _, tracker) = sim.nodes[1]
        .replica
        .trackers()
        .find(|(name, ..)| &***name == "standby")
        .unwrap();
    assert_eq!(tracker.state().last_check_at, None);
}

/// A switch another instance forced while this one was cut off from the store is learned when the
/// store is back, never overwritten by what this instance knew before the outage.
#[test]
fn a_switch_forced_by_another_instance_during_an_outage_is_learned_not_overwritten() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.round("standby", &all(2, true));
    sim.nodes[0].partitioned = true;
    sim.check(0, "standby", true);
    sim.check(0, "main", false);
    assert!(sim.nodes[0].replica.in_outage());
    let now = sim.now(1);
    sim.nodes[1]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(1);
    sim.settle();
    sim.reconnect(0);
    assert_eq!(
        stored_fleet(&sim).map(|(_, f)| (f.preference, f.forced_by)),
        Some((Preference::Failover, 0x1002))
    );
    assert_eq!(
        sim.nodes[0].seen.forced,
        [(Preference::Failover, EventOrigin::Learned)]
    );
}

// ---------------------------------------------------------------------------------------------
// Outages meeting forced switches, fences and later releases; votes read again; counts.

/// A switch forced during an outage rewrites the fleet record from what this instance
/// knew before the outage: fences another instance wrote meanwhile must survive it.
#[test]
fn a_switch_forced_in_an_outage_keeps_the_fences_written_meanwhile() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.round("standby", &all(2, true));
    sim.nodes[0].partitioned = true;
    sim.check(0, "main", false);
    assert!(sim.nodes[0].replica.in_outage());
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    let mut fence = TopologyRecord::default();
    fence.fenced.insert("main".into(), "left behind".into());
    sim.nodes[1].replica.handle_topology(fence.clone());
    sim.drive(1);
    sim.settle();
    assert_eq!(
        stored_fleet(&sim).and_then(|(_, f)| decode_record(&f.extra)),
        Some(fence.clone())
    );
    sim.reconnect(0);
    let (_, fleet) = stored_fleet(&sim).unwrap();
    assert_eq!(fleet.preference, Preference::Failover);
    assert_eq!(
        decode_record(&fleet.extra).map(|t| t.fenced),
        Some(fence.fenced.clone()),
        "the fence written during the outage is kept"
    );
}

/// A switch forced during an outage that met a foreign fleet record: once that record is gone (the
/// later release rolled back), the order reaches the fleet.
#[test]
fn a_switch_forced_in_an_outage_reaches_the_fleet_once_the_foreign_record_is_gone() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    sim.round("standby", &all(2, true));
    sim.nodes[0].partitioned = true;
    sim.check(0, "main", false);
    assert!(sim.nodes[0].replica.in_outage());
    let now = sim.now(0);
    sim.nodes[0]
        .replica
        .handle_force(Preference::Failover, "standby", now);
    sim.drive(0);
    let foreign = b"dbfo3 9 00000000000000bb f whatever the next release writes".to_vec();
    sim.store.records.insert(RecordKey::Fleet, foreign.clone());
    sim.nodes[0].partitioned = false;
    for _ in 0..3 {
        sim.round("main", &all(2, true));
    }
    assert!(!sim.nodes[0].replica.in_outage());
    assert_eq!(sim.store.records.get(&RecordKey::Fleet), Some(&foreign));
    // The later release goes away (rolled back; its record expires).
    sim.store.records.remove(&RecordKey::Fleet);
    for i in 0..2 {
        sim.nodes[i].replica.request_load_all();
        sim.drive(i);
    }
    sim.settle();
    for _ in 0..3 {
        sim.round("main", &all(2, true));
    }
    eprintln!(
        "node0 forced {:?} node1 forced {:?} fleet {:?}",
        sim.nodes[0].seen.forced,
        sim.nodes[1].seen.forced,
        stored_fleet(&sim)
    );
    assert_eq!(
        stored_fleet(&sim).map(|(_, f)| f.preference),
        Some(Preference::Failover)
    );
}

/// A pushed unreadable fleet slot (garbage on the change channel) is checked against the
/// store: a foreign fleet record already reported is not reported again.
#[test]
fn a_garbage_push_does_not_report_a_foreign_fleet_record_again() {
    let mut sim = Sim::new(1, &[]);
    let foreign = b"dbfo3 9 00000000000000bb f whatever".to_vec();
    sim.store.records.insert(RecordKey::Fleet, foreign);
    sim.nodes[0].replica.request_load_all();
    sim.drive(0);
    sim.settle();
    assert_eq!(sim.nodes[0].seen.foreign, 1);
    let garbage = Slot::decode(&RecordKey::Fleet, Some(b"garbage"));
    sim.pushes
        .push_back((0, Notice::Written(vec![(RecordKey::Fleet, garbage)])));
    sim.settle();
    sim.nodes[0].replica.request_load_all();
    sim.drive(0);
    sim.settle();
    assert_eq!(sim.nodes[0].seen.foreign, 1, "reported once");
}

/// The same for a connection record.
#[test]
fn a_garbage_push_does_not_report_a_foreign_connection_record_again() {
    let mut sim = Sim::new(1, &[]);
    let foreign = b"dbfo3 9 00000000000000bb c whatever".to_vec();
    sim.store.records.insert(main_key(), foreign);
    sim.nodes[0].replica.request_load_all();
    sim.drive(0);
    sim.settle();
    assert_eq!(sim.nodes[0].seen.foreign, 1);
    let garbage = Slot::decode(&main_key(), Some(b"garbage"));
    sim.pushes
        .push_back((0, Notice::Written(vec![(main_key(), garbage)])));
    sim.settle();
    sim.nodes[0].replica.request_load_all();
    sim.drive(0);
    sim.settle();
    assert_eq!(sim.nodes[0].seen.foreign, 1, "reported once");
}

/// A success count the fleet reset (another instance's failure counted) is not resumed from
/// this instance's older run: in an outage, DOWN still takes `recovery_threshold` successes.
#[test]
fn a_success_run_the_fleet_broke_is_not_resumed_in_an_outage() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    for _ in 0..3 {
        sim.round("main", &all(2, false));
    }
    assert_eq!(sim.status(0, "main"), ConnectionStatus::Down);
    sim.check(0, "main", true);
    assert_eq!(counts(&sim, 0, "main").success_count, 1);
    // Node 0's success vote goes stale at node 1; node 1's failure counts.
    sim.advance(5 * INTERVAL);
    sim.check(1, "main", false);
    eprintln!("shared after node 1's failure: {:?}", stored_votes(&sim));
    eprintln!("node 0 counts: {:?}", counts(&sim, 0, "main"));
    sim.nodes[0].partitioned = true;
    sim.check(0, "standby", true);
    assert!(sim.nodes[0].replica.in_outage());
    sim.check(0, "main", true);
    assert_eq!(
        sim.status(0, "main"),
        ConnectionStatus::Down,
        "one success after the fleet's failure"
    );
}

/// A vote of an instance that stopped goes stale; reading the record again and again, even four
/// windows later, never makes it fresh (a veto) again.
#[test]
fn a_forgotten_stale_vote_read_again_does_not_veto() {
    let mut seen = Vec::new();
    for extra in [Duration::ZERO, Duration::from_nanos(1)] {
        let mut sim = Sim::new(1, &[]);
        let vote = Vote {
            instance: 0x3000,
            ok: true,
            seq: 1,
        };
        plant(&mut sim, ConnectionStatus::Healthy, vec![vote]);
        sim.elapsed += 4 * 4 * INTERVAL + extra;
        for _ in 0..2 {
            sim.nodes[0].replica.request_load_all();
            sim.drive(0);
        }
        for _ in 0..3 {
            sim.check(0, "main", false);
        }
        seen.push((extra, sim.status(0, "main")));
    }
    assert_eq!(
        seen,
        [
            (Duration::ZERO, ConnectionStatus::Down),
            (Duration::from_nanos(1), ConnectionStatus::Down)
        ]
    );
}

/// A heal that loses to another instance's heal, which already holds this instance's counts and
/// vote: a vote refresh that is due is written now.
#[test]
fn a_lost_heal_still_refreshes_a_due_vote_at_once() {
    let mut sim = Sim::new(2, &[]);
    sim.round("main", &all(2, true));
    // Node 0's vote is due for a refresh (at most 2.5 intervals), still fresh (4).
    sim.advance(2 * INTERVAL);
    let seq_of = |sim: &Sim| {
        stored_votes(sim)
            .iter()
            .find(|v| v.instance == 0x1000)
            .map(|v| v.seq)
    };
    let before = seq_of(&sim).unwrap();
    sim.store.records.remove(&main_key());
    let now = sim.now(0);
    sim.nodes[0].replica.request_load_all();
    let Some(Command::Load(keys)) = sim.nodes[0].replica.poll_command(now) else {
        panic!("a load");
    };
    let slots = sim.store.load(&keys);
    sim.nodes[0].replica.handle_loaded(slots, now);
    sim.nodes[0]
        .replica
        .handle_check("main", CheckResult::success(Duration::from_millis(1)), now);
    let Some(Command::CompareAndSet(writes)) = sim.nodes[0].replica.poll_command(now) else {
        panic!("a heal");
    };
    // Node 1 heals first.
    sim.nodes[1].replica.request_load_all();
    sim.drive(1);
    assert_eq!(seq_of(&sim), Some(before), "node 1 carried node 0's vote");
    let keys: Vec<RecordKey> = writes.iter().map(|w| w.key.clone()).collect();
    assert!(
        !writes[0]
            .expect
            .matches(sim.store.records.get(&keys[0]).map(Vec::as_slice))
    );
    let slots = sim.store.load(&keys);
    sim.nodes[0]
        .replica
        .handle_cas_result(CasOutcome::Conflict(slots), now);
    sim.drive(0);
    sim.settle();
    assert_eq!(seq_of(&sim), Some(before + 1), "refreshed now");
}

/// A store back from an outage holding only records of a later release (a rolling upgrade
/// went on meanwhile) answers: the outage ends.
#[test]
fn an_outage_ends_when_the_store_answers_with_only_foreign_records() {
    let mut sim = Sim::new(1, &[]);
    sim.round("main", &[true]);
    sim.nodes[0].partitioned = true;
    sim.check(0, "main", false);
    assert!(sim.nodes[0].replica.in_outage());
    for key in [
        main_key(),
        RecordKey::Connection("standby".into()),
        RecordKey::Fleet,
    ] {
        sim.store
            .records
            .insert(key, b"dbfo3 9 00000000000000bb x later".to_vec());
    }
    sim.nodes[0].partitioned = false;
    for _ in 0..5 {
        sim.round("main", &[true]);
    }
    eprintln!(
        "tries {} foreign {}",
        sim.store.tries, sim.nodes[0].seen.foreign
    );
    assert!(!sim.nodes[0].replica.in_outage());
}
