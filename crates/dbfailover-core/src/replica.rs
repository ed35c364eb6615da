//! The shared-state protocol as a replica: one instance's part in the decision every instance sharing a
//! store makes together. Pure: inputs in, commands and outputs polled, time passed by the caller.
//!
//! The driver (the engine's `StateActor`) loops:
//! - feeds inputs: [`Replica::handle_check`], [`Replica::handle_force`], the answers to the commands it
//!   ran ([`Replica::handle_loaded`], [`Replica::handle_cas_result`], [`Replica::handle_store_error`]),
//!   what the store pushed ([`Replica::handle_notice`]) and [`Replica::handle_timeout`];
//! - runs [`Replica::poll_command`] (a load or one compare-and-set; at most one at a time) against the
//!   store, bounded by its timeout;
//! - delivers [`Replica::poll_output`] (status changes, forced switches, store availability) to the
//!   router;
//! - arms a timer at [`Replica::poll_timeout`].
//!
//! ## The rules
//! - **Order and freshness from the store, never from clocks.** Records carry versions
//!   ([`crate::record`]); votes carry the voter's own counter, and a reader times a vote's changes on its
//!   own monotonic clock: a vote whose counter has not moved for `vote_window` is stale. Wall-clock time
//!   only dates events.
//! - **The shared rule.** A connection becomes DOWN when the shared failure count reaches
//!   `failure_threshold` and no other instance's fresh vote is a success; HEALTHY after
//!   `recovery_threshold` consecutive successes. While another instance's fresh vote is a success, a
//!   failure is only its instance's vote: the counts do not move. The counts stop at their thresholds,
//!   so a check that changes nothing writes nothing (an unchanged vote is rewritten every
//!   `vote_refresh`, to stay fresh).
//! - **Nothing the store returns makes routing go back to a DOWN database**: a missing, unreadable or
//!   older record is rewritten from this instance's knowledge (the last shared record it saw, other
//!   instances' votes included); only a newer readable record is adopted.
//! - **Outages.** When the store does not answer, each instance decides alone (`StoreUnavailable` once).
//!   The store is tried again every `retry_interval`; the outage ends with a successful write
//!   (`StoreRestored`). An instance that decided alone keeps routing on its own decision until the
//!   shared record agrees with it or another instance shows, with a vote written after the store came
//!   back, that it still reaches the database: then the fleet's decision wins. Its writes add its
//!   evidence to the record without erasing anybody's votes.
//! - **Contention is not an outage**: a compare-and-set that finds another write retries on what it
//!   found, with jittered backoff; after `contention_attempts`, the results are kept as local facts only
//!   and the shared decision stands.
//! - **Forced switches are fleet-wide**: the fleet record and the target's record change in one
//!   compare-and-set; every instance applies it (the forcing one as local, the others as learned).

use crate::event::EventOrigin;
use crate::record::{
    CasOutcome, ConnectionEntry, Expect, FleetRecord, MAX_COUNTER, MAX_VOTES, Notice, Record,
    RecordKey, Slot, Version, Vote, Write,
};
use crate::route::{ConnectionView, Preference};
use crate::status::{ConnectionStatus, Role};
use crate::topology::{NodeFacts, RECORD_KEYS, TopologyRecord, decode_record, encode_record};
use crate::tracker::{CheckResult, Counts, HealthTracker, StatusTransition, Thresholds};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The replica's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This instance's identity among those sharing the store (random per start).
    pub instance: u64,
    /// The thresholds of the shared rule.
    pub thresholds: Thresholds,
    /// A vote whose counter has not changed for this long, on this instance's monotonic clock, is stale.
    pub vote_window: Duration,
    /// An unchanged vote is rewritten this often (well within `vote_window`).
    pub vote_refresh: Duration,
    /// During an outage, the store is tried again this often.
    pub retry_interval: Duration,
    /// Compare-and-set attempts of one update before its results are kept local.
    pub contention_attempts: u32,
    /// A fleet record that holds decisions (a forced switch, fences) is rewritten at least this
    /// often, so that it outlives the store's TTL (a third of it); `None`: never.
    pub fleet_refresh: Option<Duration>,
}

impl ReplicaConfig {
    /// The settings for checks every `interval`: votes refreshed every two intervals and stale after
    /// four, the store retried every interval.
    pub fn for_interval(instance: u64, thresholds: Thresholds, interval: Duration) -> Self {
        Self {
            instance,
            thresholds,
            vote_window: interval.saturating_mul(4),
            vote_refresh: interval.saturating_mul(2),
            retry_interval: interval,
            contention_attempts: 8,
            fleet_refresh: None,
        }
    }
}

/// Both clocks at one moment: the monotonic one decides, the wall clock only dates events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time: every duration the protocol measures.
    pub mono: Instant,
    /// Wall-clock time: the dates of events and transitions, never a decision.
    pub wall: DateTime<Utc>,
}

/// A store operation the driver runs, then answers with `handle_loaded`, `handle_cas_result` or
/// `handle_store_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read these records (authoritative: what the store holds now).
    Load(Vec<RecordKey>),
    /// Write these records, all or none.
    CompareAndSet(Vec<Write>),
}

/// What the replica tells the driver (and through it the router and the application).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A connection's state for routing, with the transition it made, if any.
    Status {
        /// The connection.
        connection: Arc<str>,
        /// Its role.
        role: Role,
        /// What routing needs to know of it.
        view: ConnectionView,
        /// The transition (its status events are published), if any.
        transition: Option<StatusTransition>,
        /// Whether this instance made it, or learned it.
        origin: EventOrigin,
        /// What this instance's latest check of it found of its role (`None`: it failed, or none ran).
        facts: Option<NodeFacts>,
    },
    /// The fleet's topology decisions (fences, writer of record, timelines), to merge into routing's.
    Topology(TopologyRecord),
    /// A forced switch to apply to routing.
    Forced {
        /// The preference it sets.
        preference: Preference,
        /// Whether this instance forced it, or learned it.
        origin: EventOrigin,
    },
    /// The check results of this connection handed in so far are decided.
    Applied {
        /// The connection.
        connection: Arc<str>,
    },
    /// The store stopped answering (once per outage); the instance decides alone.
    StoreUnavailable {
        /// Why, for operators.
        error: String,
    },
    /// The store answers (and takes writes) again.
    StoreRestored,
    /// A record is in a format this release does not know (once per record): this instance keeps its
    /// own decision for it.
    ForeignRecord {
        /// Which record.
        key: RecordKey,
        /// Its format.
        format: u32,
    },
}

/// What a vote's reader knows of it: the counter last seen, and when (monotonic) it last changed.
#[derive(Clone, Copy, Debug)]
struct Seen {
    seq: u64,
    changed_at: Instant,
}

/// After an outage: routing stays on the local decision until the fleet shows its own.
#[derive(Clone, Debug)]
struct Reconcile {
    /// The vote counters when the store came back: a vote that moved since is news from the fleet.
    seqs: HashMap<u64, u64>,
}

/// What the store holds under one record, as this instance last read it: what the next write
/// expects, the counter it follows, and whether the store must be rewritten (missing, unreadable,
/// or behind what this instance knows).
#[derive(Clone, Debug)]
struct Place {
    expect: Expect,
    counter: u64,
    heal: bool,
}

impl Default for Place {
    fn default() -> Self {
        Self {
            expect: Expect::Missing,
            counter: 0,
            heal: false,
        }
    }
}

/// How a readable record found in the store compares with the newest this instance knows.
enum Found {
    /// The same write.
    Same,
    /// No newer: the store went back (lost writes), or a push arrived late.
    Behind(u64),
    /// A newer write, or the first one seen.
    Newer,
}

impl Place {
    fn settle(&mut self, found: Version) {
        self.expect = Expect::after(found);
        self.counter = found.counter;
        self.heal = false;
    }

    /// Compares `found` with `known`, and notes what the store holds when `authoritative` (read from
    /// the store now) or when it is newer: the next write replaces it, rewriting what this instance
    /// knows if the store went back.
    fn meet(&mut self, known: Option<Version>, found: Version, authoritative: bool) -> Found {
        let outcome = match known {
            Some(known) if known == found => Found::Same,
            Some(known) if found.counter <= known.counter => Found::Behind(known.counter),
            _ => Found::Newer,
        };
        match outcome {
            // The store holds the newest write: the next one follows it.
            Found::Newer => self.settle(found),
            Found::Same if authoritative => self.settle(found),
            // The store went back (lost writes): the next write rewrites what this instance knows.
            Found::Behind(known) if authoritative => {
                self.expect = Expect::after(found);
                self.counter = known.max(found.counter);
                self.heal = true;
            }
            Found::Same | Found::Behind(_) => {}
        }
        outcome
    }
}

struct Conn {
    name: Arc<str>,
    role: Role,
    key: RecordKey,
    /// This instance's facts, and the decided counts routing uses.
    tracker: HealthTracker,
    /// The newest readable record seen, what writes build on.
    shared: Option<(Version, ConnectionEntry)>,
    /// What the store holds under its record, as last read.
    place: Place,
    /// Check results handed in and not yet decided.
    pending: Vec<(CheckResult, DateTime<Utc>)>,
    /// This instance's vote counter for this connection.
    seq: u64,
    /// This instance's vote as last written, and when.
    vote_written: Option<(bool, Instant)>,
    /// Whether this instance's latest check of it succeeded (its vote).
    last_ok: Option<bool>,
    /// What this instance's latest check found of its role.
    last_facts: Option<NodeFacts>,
    /// Added to `vote_refresh` for the next refresh (random per write).
    refresh_jitter: Duration,
    seen: HashMap<u64, Seen>,
    foreign: Option<u32>,
    reconcile: Option<Reconcile>,
}

/// What a connection must tell the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Nothing,
    /// Only this instance's unchanged vote, to keep it fresh: not worth a retry if another write came
    /// first (the next check tries again).
    Refresh,
    Change,
}

/// One write of a compare-and-set, planned: what to adopt when it succeeds.
#[derive(Clone, Debug)]
enum Planned {
    Connection {
        index: usize,
        version: Version,
        entry: ConnectionEntry,
        /// Results decided by this write (the first `applied` of `pending`).
        applied: usize,
        vote: Option<bool>,
        /// Only a vote refresh.
        refresh: bool,
    },
    Fleet {
        version: Version,
        record: FleetRecord,
    },
}

#[derive(Clone, Copy, Debug)]
struct Outage {
    next_try: Instant,
    /// A read succeeded: the next write decides whether the outage is over.
    readable_again: bool,
}

enum InFlight {
    Load(Vec<RecordKey>),
    Cas(Vec<Planned>),
}

/// One instance's replica of the shared state. See the module documentation.
pub struct Replica {
    config: ReplicaConfig,
    conns: Vec<Conn>,
    fleet: Option<(Version, FleetRecord)>,
    /// What the store holds under the fleet record, as last read.
    fleet_place: Place,
    fleet_foreign: Option<u32>,
    /// The preference routing was last told.
    preference: Preference,
    /// A forced switch waiting to be written: the preference, and the target's index.
    force: Option<(Preference, Option<usize>)>,
    /// A forced switch was applied while the store was away: it is written when the store is back.
    forced_in_outage: bool,
    /// Topology decisions of this instance not yet in the fleet record.
    topology_pending: Option<TopologyRecord>,
    /// The topology last told to the router.
    topology_known: TopologyRecord,
    /// When the fleet record was last written, by anyone (as this instance saw it).
    fleet_seen_at: Option<Instant>,
    outage: Option<Outage>,
    in_flight: Option<InFlight>,
    wants_load: BTreeSet<RecordKey>,
    attempts: u32,
    not_before: Option<Instant>,
    rng: u64,
    outputs: VecDeque<Output>,
}

impl Replica {
    /// A replica for `connections` (name and role), all UNKNOWN; it first loads every record.
    pub fn new(config: ReplicaConfig, connections: Vec<(Arc<str>, Role)>) -> Self {
        let conns = connections
            .into_iter()
            .map(|(name, role)| Conn {
                key: RecordKey::Connection(Arc::clone(&name)),
                name,
                role,
                tracker: HealthTracker::new(config.thresholds),
                shared: None,
                place: Place::default(),
                pending: Vec::new(),
                seq: 0,
                vote_written: None,
                last_ok: None,
                last_facts: None,
                refresh_jitter: Duration::ZERO,
                seen: HashMap::new(),
                foreign: None,
                reconcile: None,
            })
            .collect::<Vec<_>>();
        let mut wants_load: BTreeSet<RecordKey> = conns.iter().map(|c| c.key.clone()).collect();
        wants_load.insert(RecordKey::Fleet);
        Self {
            rng: config.instance | 1,
            config,
            conns,
            fleet: None,
            fleet_place: Place::default(),
            fleet_foreign: None,
            preference: Preference::Primary,
            force: None,
            forced_in_outage: false,
            topology_pending: None,
            topology_known: TopologyRecord::default(),
            fleet_seen_at: None,
            outage: None,
            in_flight: None,
            wants_load,
            attempts: 0,
            not_before: None,
            outputs: VecDeque::new(),
        }
    }

    /// Rewrites a fleet record holding decisions at least every `every` (see
    /// [`ReplicaConfig::fleet_refresh`]).
    pub fn set_fleet_refresh(&mut self, every: Duration) {
        self.config.fleet_refresh = Some(every.max(Duration::from_millis(10)));
    }

    /// This instance's identity.
    pub fn instance(&self) -> u64 {
        self.config.instance
    }

    /// Whether the store is unavailable (this instance decides alone).
    pub fn in_outage(&self) -> bool {
        self.outage.is_some()
    }

    /// The state of each connection (facts of this instance, decided counts), in order.
    pub fn trackers(&self) -> impl Iterator<Item = (&Arc<str>, Role, &HealthTracker)> {
        self.conns.iter().map(|c| (&c.name, c.role, &c.tracker))
    }

    /// The status routing uses for `connection`.
    pub fn status(&self, connection: &str) -> Option<ConnectionStatus> {
        self.index_of(connection)
            .map(|i| self.conns[i].tracker.status())
    }

    fn index_of(&self, connection: &str) -> Option<usize> {
        self.conns.iter().position(|c| &*c.name == connection)
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: cheap, deterministic per instance (tests replay exactly), never zero.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next_version(&mut self, counter: u64) -> Version {
        let counter = if counter >= MAX_COUNTER {
            1
        } else {
            counter + 1
        };
        Version {
            counter,
            write_id: self.random(),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Inputs

    /// One check of `connection` finished with `result` at `now`.
    pub fn handle_check(&mut self, connection: &str, result: CheckResult, now: Now) {
        let Some(index) = self.index_of(connection) else {
            return;
        };
        self.conns[index].last_ok = Some(result.is_success());
        self.conns[index].last_facts = result.facts();
        self.conns[index].pending.push((result, now.wall));
        if self.outage.is_some_and(|o| !o.readable_again) || self.conns[index].foreign.is_some() {
            self.decide_locally(index);
            return;
        }
        if self.in_flight.is_none() && !self.needs_write(index, now.mono) {
            self.decide_without_write(index);
        }
    }

    /// A forced switch to `preference` (its target marked HEALTHY), shared with the whole fleet.
    pub fn handle_force(&mut self, preference: Preference, target: &str, now: Now) {
        let target = self.index_of(target);
        if self.outage.is_some_and(|o| !o.readable_again) || self.fleet_foreign.is_some() {
            self.apply_force_locally(preference, target, EventOrigin::Local, now);
        } else {
            self.force = Some((preference, target));
        }
    }

    /// This instance's topology decisions (fences, the writer of record, timelines), to share: they
    /// are merged into the fleet record ([`TopologyRecord::merge`]) by the next write.
    pub fn handle_topology(&mut self, record: TopologyRecord) {
        self.topology_known = TopologyRecord::merge(&self.topology_known, &record);
        self.topology_pending = Some(match self.topology_pending.take() {
            Some(pending) => TopologyRecord::merge(&pending, &record),
            None => record,
        });
    }

    /// The answer to [`Command::Load`]: what the store holds under each key asked, in order.
    pub fn handle_loaded(&mut self, slots: Vec<Slot>, now: Now) {
        let Some(InFlight::Load(keys)) = self.in_flight.take() else {
            return;
        };
        if slots.len() != keys.len() {
            // A store that answers something else than what was asked is not answering.
            let error = format!(
                "the store answered {} records for {} keys",
                slots.len(),
                keys.len()
            );
            self.in_flight = Some(InFlight::Load(keys));
            self.handle_store_error(error, now);
            return;
        }
        if let Some(outage) = &mut self.outage {
            outage.readable_again = true;
            let pairs: Vec<_> = keys.into_iter().zip(slots).collect();
            self.reconnect(pairs, now);
            if !self.has_work() {
                // Nothing to write (every record is of a later release): the store answers, and no
                // write will come to say so.
                self.outage = None;
                self.outputs.push_back(Output::StoreRestored);
            }
            return;
        }
        for (key, slot) in keys.into_iter().zip(slots) {
            self.observe(&key, slot, true, now);
        }
        self.settle_idle(now);
    }

    /// The answer to [`Command::CompareAndSet`].
    pub fn handle_cas_result(&mut self, outcome: CasOutcome, now: Now) {
        let Some(InFlight::Cas(plans)) = self.in_flight.take() else {
            return;
        };
        match outcome {
            CasOutcome::Written => {
                if self.outage.take().is_some() {
                    self.outputs.push_back(Output::StoreRestored);
                }
                self.attempts = 0;
                self.not_before = None;
                for plan in plans {
                    self.written(plan, now);
                }
            }
            CasOutcome::Conflict(slots) if slots.len() != plans.len() => {
                self.in_flight = Some(InFlight::Cas(plans));
                let error = "the store answered a conflict without the records it holds".to_owned();
                self.handle_store_error(error, now);
                return;
            }
            CasOutcome::Conflict(slots) => {
                let keys: Vec<RecordKey> = plans.iter().map(|p| self.key_of(p)).collect();
                for (key, slot) in keys.into_iter().zip(slots) {
                    self.observe(&key, slot, true, now);
                }
                // Only refreshes, and still only refreshes on what the store holds now.
                let refreshes_only = self.force.is_none()
                    && plans.iter().all(|p| match p {
                        Planned::Connection {
                            index,
                            refresh: true,
                            ..
                        } => self.write_need(*index, now.mono) != Need::Change,
                        _ => false,
                    });
                if refreshes_only {
                    // Another write came first; the vote is refreshed at the next check instead.
                    for plan in &plans {
                        if let Planned::Connection { index, .. } = plan {
                            self.decide_without_write(*index);
                        }
                    }
                    self.settle_idle(now);
                    return;
                }
                self.attempts += 1;
                if self.attempts >= self.config.contention_attempts {
                    self.give_up_contended(&plans);
                } else if self.attempts > 1 {
                    let cap = 1u64 << self.attempts.min(6);
                    let jitter = Duration::from_millis(self.random() % cap);
                    self.not_before = Some(now.mono + jitter);
                }
            }
        }
        self.settle_idle(now);
    }

    /// The store did not answer the command in flight (an error, a timeout, a panic).
    pub fn handle_store_error(&mut self, error: String, now: Now) {
        let in_flight = self.in_flight.take();
        let first = self.outage.is_none();
        self.outage = Some(Outage {
            next_try: now.mono + self.config.retry_interval,
            readable_again: false,
        });
        self.attempts = 0;
        self.not_before = None;
        if first {
            self.outputs.push_back(Output::StoreUnavailable { error });
        }
        if let Some(InFlight::Load(keys)) = in_flight {
            // Loads asked for are asked again once the store is back.
            self.wants_load.extend(keys);
        }
        for index in 0..self.conns.len() {
            if !self.conns[index].pending.is_empty() {
                self.decide_locally(index);
            }
        }
        if let Some((preference, target)) = self.force.take() {
            self.apply_force_locally(preference, target, EventOrigin::Local, now);
        }
    }

    /// What the store pushed.
    pub fn handle_notice(&mut self, notice: Notice, now: Now) {
        if self.outage.is_some() {
            // The store answers someone: try it soon. What was pushed is read again then.
            if let Some(outage) = &mut self.outage {
                outage.next_try = outage.next_try.min(now.mono);
            }
            return;
        }
        match notice {
            Notice::Resync => {
                self.wants_load.extend(self.all_keys());
            }
            Notice::Written(records) => {
                // Connections first, then the fleet record: a forced switch's target is known first.
                let (fleet, conns): (Vec<_>, Vec<_>) = records
                    .into_iter()
                    .partition(|(key, _)| *key == RecordKey::Fleet);
                for (key, slot) in conns.into_iter().chain(fleet) {
                    self.observe(&key, slot, false, now);
                }
            }
        }
        self.settle_idle(now);
    }

    /// Time passed (the driver's timer fired at [`Replica::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Now) {
        self.settle_idle(now);
    }

    /// Asks for every record to be read again (a periodic poll, or a store that cannot push).
    pub fn request_load_all(&mut self) {
        self.wants_load.extend(self.all_keys());
    }

    fn all_keys(&self) -> Vec<RecordKey> {
        let mut keys: Vec<RecordKey> = self.conns.iter().map(|c| c.key.clone()).collect();
        keys.push(RecordKey::Fleet);
        keys
    }

    // ---------------------------------------------------------------------------------------------
    // Outputs

    /// The next store operation to run, if any (at most one is in flight).
    pub fn poll_command(&mut self, now: Now) -> Option<Command> {
        if self.in_flight.is_some() {
            return None;
        }
        if let Some(outage) = self.outage
            && !outage.readable_again
        {
            if now.mono < outage.next_try {
                return None;
            }
            if let Some(outage) = &mut self.outage {
                outage.next_try = now.mono + self.config.retry_interval;
            }
            let keys = self.all_keys();
            self.in_flight = Some(InFlight::Load(keys.clone()));
            return Some(Command::Load(keys));
        }
        if !self.wants_load.is_empty() {
            let keys: Vec<RecordKey> = std::mem::take(&mut self.wants_load).into_iter().collect();
            self.in_flight = Some(InFlight::Load(keys.clone()));
            return Some(Command::Load(keys));
        }
        if self.not_before.is_some_and(|t| now.mono < t) {
            return None;
        }
        let (writes, plans) = self.plan_writes(now.mono);
        if writes.is_empty() {
            return None;
        }
        self.in_flight = Some(InFlight::Cas(plans));
        Some(Command::CompareAndSet(writes))
    }

    /// The next output for the router or the application.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Replica::handle_timeout`] next, if anything waits for time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        let retry = self
            .outage
            .filter(|o| !o.readable_again)
            .map(|o| o.next_try);
        let backoff = self.not_before.filter(|_| self.has_work());
        let refresh = self
            .config
            .fleet_refresh
            .filter(|_| self.fleet_matters() && self.outage.is_none())
            .and_then(|every| self.fleet_seen_at.map(|at| at + every));
        [retry, backoff, refresh].into_iter().flatten().min()
    }

    fn has_work(&self) -> bool {
        self.force.is_some()
            || self.fleet_place.heal
            || self.topology_pending.is_some()
            || self
                .conns
                .iter()
                .any(|c| c.foreign.is_none() && (!c.pending.is_empty() || c.place.heal))
    }

    // ---------------------------------------------------------------------------------------------
    // Deciding

    fn is_fresh(&self, conn: &Conn, vote: &Vote, now: Instant) -> bool {
        conn.seen.get(&vote.instance).is_some_and(|seen| {
            seen.seq == vote.seq
                && now.saturating_duration_since(seen.changed_at) < self.config.vote_window
        })
    }

    /// The entry writes of connection `index` build on: the newest shared record, or (none seen) the
    /// local counts.
    fn base_entry(&self, index: usize) -> ConnectionEntry {
        let conn = &self.conns[index];
        let mut entry = match &conn.shared {
            Some((_, entry)) => entry.clone(),
            None => ConnectionEntry {
                counts: conn.tracker.counts(),
                votes: Vec::new(),
                forced: false,
                checked_at_ms: 0,
            },
        };
        if conn.reconcile.is_some() {
            // What this instance found alone is evidence too: its failures count, its DOWN does not.
            let local = conn.tracker.counts();
            if local.status == ConnectionStatus::Down {
                entry.counts.failure_count = entry.counts.failure_count.max(local.failure_count);
            }
        }
        entry.forced = false;
        entry
    }

    /// The entry after applying this instance's pending results (or a forced status) to `base`.
    fn apply_rule(
        &self,
        index: usize,
        base: &ConnectionEntry,
        now: Instant,
    ) -> (ConnectionEntry, Option<bool>) {
        let conn = &self.conns[index];
        let me = self.config.instance;
        let thresholds = self.config.thresholds;
        let mut votes: Vec<Vote> = base
            .votes
            .iter()
            .filter(|v| v.instance != me && self.is_fresh(conn, v, now))
            .copied()
            .collect();
        let vetoed = votes.iter().any(|v| v.ok);
        let mut tracker = HealthTracker::from_counts(thresholds, base.counts);
        // This instance's vote is its latest check, never an older vote found in the record.
        let mut vote = conn.last_ok;
        for (result, at) in &conn.pending {
            vote = Some(result.is_success());
            if vetoed && !result.is_success() {
                // Another instance still reaches it: this failure is this instance's vote alone. The
                // counts stay as they are, so an overruled instance's checks change nothing (and
                // write nothing) until the veto lifts.
                continue;
            }
            // Under a veto only successes get here, and a success never makes a connection DOWN.
            tracker.record(result, *at);
            tracker.adopt(capped(tracker.counts(), thresholds));
        }
        let mut counts = tracker.counts();
        if counts.failure_count >= thresholds.failure_threshold
            && counts.status != ConnectionStatus::Down
            && !vetoed
        {
            // The count stood at the threshold under a veto that has lifted.
            counts.status = ConnectionStatus::Down;
            counts.success_count = 0;
            tracker.adopt(counts);
        }
        if let Some(ok) = vote {
            if votes.len() + 1 > MAX_VOTES {
                votes.retain(|v| v.ok);
                votes.truncate(MAX_VOTES - 1);
            }
            votes.push(Vote {
                instance: me,
                ok,
                seq: conn.seq + 1,
            });
        }
        (
            ConnectionEntry {
                counts: tracker.counts(),
                votes,
                forced: false,
                checked_at_ms: conn
                    .pending
                    .last()
                    .map_or(base.checked_at_ms, |(_, at)| at.timestamp_millis()),
            },
            vote,
        )
    }

    /// Whether connection `index` has something the store must be told.
    fn needs_write(&self, index: usize, now: Instant) -> bool {
        self.write_need(index, now) != Need::Nothing
    }

    /// What connection `index` must tell the store: a change, a vote refresh, or nothing.
    fn write_need(&self, index: usize, now: Instant) -> Need {
        let conn = &self.conns[index];
        if conn.foreign.is_some() {
            return Need::Nothing;
        }
        if conn.place.heal || conn.shared.is_none() {
            return if !conn.pending.is_empty() || conn.place.heal {
                Need::Change
            } else {
                Need::Nothing
            };
        }
        if conn.pending.is_empty() {
            return Need::Nothing;
        }
        let base = self.base_entry(index);
        let (entry, vote) = self.apply_rule(index, &base, now);
        let shared_vote = base
            .votes
            .iter()
            .find(|v| v.instance == self.config.instance)
            .map(|v| v.ok);
        if entry.counts != base.counts
            || vote != shared_vote
            || conn.shared.as_ref().is_some_and(|(_, e)| e.forced)
        {
            return Need::Change;
        }
        let refresh_due = conn.vote_written.is_none_or(|(_, at)| {
            now.saturating_duration_since(at) >= self.config.vote_refresh + conn.refresh_jitter
        });
        if vote == Some(true) && refresh_due {
            Need::Refresh
        } else {
            Need::Nothing
        }
    }

    fn plan_writes(&mut self, now: Instant) -> (Vec<Write>, Vec<Planned>) {
        let mut writes = Vec::new();
        let mut plans = Vec::new();
        let forced_target = match self.force {
            Some((_, target)) => target,
            None => None,
        };
        for index in 0..self.conns.len() {
            let forced = self.force.is_some() && forced_target == Some(index);
            let need = self.write_need(index, now);
            if !forced && need == Need::Nothing {
                continue;
            }
            let base = self.base_entry(index);
            let (entry, applied, vote) = if forced {
                let mut entry = base.clone();
                entry.counts = Counts {
                    status: ConnectionStatus::Healthy,
                    failure_count: 0,
                    success_count: 0,
                };
                entry.forced = true;
                entry
                    .votes
                    .retain(|v| self.is_fresh(&self.conns[index], v, now));
                (entry, 0, None)
            } else {
                let (entry, vote) = self.apply_rule(index, &base, now);
                (entry, self.conns[index].pending.len(), vote)
            };
            let counter = self.conns[index].place.counter;
            let version = self.next_version(counter);
            let conn = &self.conns[index];
            writes.push(Write {
                key: conn.key.clone(),
                expect: conn.place.expect.clone(),
                value: Record::Connection(entry.clone()).encode(version),
                seed: Some((entry.counts.status, entry.counts.failure_count)),
            });
            plans.push(Planned::Connection {
                index,
                version,
                entry,
                applied,
                vote,
                refresh: !forced && need == Need::Refresh,
            });
        }
        let fleet_write = self.plan_fleet(now);
        if let Some(record) = fleet_write
            && self.fleet_foreign.is_none()
        {
            let version = self.next_version(self.fleet_place.counter);
            writes.push(Write {
                key: RecordKey::Fleet,
                expect: self.fleet_place.expect.clone(),
                value: Record::Fleet(record.clone()).encode(version),
                seed: None,
            });
            plans.push(Planned::Fleet { version, record });
        }
        (writes, plans)
    }

    /// The fleet record to write, if any: a forced switch, a heal, or topology decisions.
    fn plan_fleet(&mut self, now: Instant) -> Option<FleetRecord> {
        let current = self.fleet.as_ref().map(|(_, r)| r.clone());
        let extra = current
            .as_ref()
            .map(|r| r.extra.clone())
            .unwrap_or_default();
        let topology = match &self.topology_pending {
            Some(pending) => {
                let known = decode_record(&extra).unwrap_or_default();
                let merged = TopologyRecord::merge(&known, pending);
                if merged == known && self.force.is_none() && !self.fleet_place.heal {
                    // Nothing the fleet does not know already.
                    self.topology_pending = None;
                    return None;
                }
                Some(merged)
            }
            None => None,
        };
        let extra = match &topology {
            Some(record) => with_topology(&extra, record),
            None => extra,
        };
        let (preference, forced_by) = match self.force {
            Some((preference, _)) => (preference, self.config.instance),
            None if self.forced_in_outage => (self.preference, self.config.instance),
            None => current
                .as_ref()
                .map_or((self.preference, 0), |r| (r.preference, r.forced_by)),
        };
        let refresh = self.fleet_refresh_due(now);
        if self.force.is_none() && !self.fleet_place.heal && topology.is_none() && !refresh {
            return None;
        }
        Some(FleetRecord {
            preference,
            forced_by,
            extra,
        })
    }

    /// Whether the fleet record holds something (a forced preference, fences, a writer of record)
    /// that must outlive the store's TTL.
    fn fleet_matters(&self) -> bool {
        self.fleet.as_ref().is_some_and(|(_, r)| {
            r.preference != Preference::Primary
                || decode_record(&r.extra).is_some_and(|t| t != TopologyRecord::default())
        })
    }

    /// Whether the fleet record is due for a rewrite that keeps it alive (nobody wrote it for
    /// `fleet_refresh`).
    fn fleet_refresh_due(&self, now: Instant) -> bool {
        self.fleet_matters()
            && self.fleet_foreign.is_none()
            && self.config.fleet_refresh.is_some_and(|every| {
                self.fleet_seen_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= every)
            })
    }

    fn key_of(&self, plan: &Planned) -> RecordKey {
        match plan {
            Planned::Connection { index, .. } => self.conns[*index].key.clone(),
            Planned::Fleet { .. } => RecordKey::Fleet,
        }
    }

    /// A planned write succeeded: adopt it.
    fn written(&mut self, plan: Planned, now: Now) {
        match plan {
            Planned::Connection {
                index,
                version,
                entry,
                applied,
                vote,
                ..
            } => {
                let forced = entry.forced;
                let conn = &mut self.conns[index];
                conn.place.settle(version);
                if vote.is_some() {
                    conn.seq += 1;
                    conn.vote_written = vote.map(|ok| (ok, now.mono));
                }
                // Refreshes of a fleet's instances spread out instead of meeting on one record.
                let spread =
                    u64::try_from(self.config.vote_refresh.as_micros() / 4).unwrap_or(u64::MAX);
                let jitter = Duration::from_micros(self.random() % spread.max(1));
                let conn = &mut self.conns[index];
                conn.refresh_jitter = jitter;
                conn.shared = Some((version, entry));
                let results: Vec<_> = conn
                    .pending
                    .drain(..applied.min(conn.pending.len()))
                    .collect();
                let before = conn.tracker.status();
                let mut reason = None;
                for (result, at) in &results {
                    conn.tracker.record(result, *at);
                    if let CheckResult::Failure { reason: r } = result {
                        reason = Some(r.clone());
                    }
                }
                if forced {
                    conn.tracker.force(ConnectionStatus::Healthy, now.wall);
                }
                self.follow_shared(index, before, reason, EventOrigin::Local, now, !forced);
                if applied > 0 {
                    let connection = Arc::clone(&self.conns[index].name);
                    self.outputs.push_back(Output::Applied { connection });
                }
                if forced && let Some((preference, _)) = self.force.take() {
                    self.preference = preference;
                    self.outputs.push_back(Output::Forced {
                        preference,
                        origin: EventOrigin::Local,
                    });
                }
            }
            Planned::Fleet { version, record } => {
                self.fleet_seen_at = Some(now.mono);
                self.forced_in_outage = false;
                self.topology_pending = None;
                self.deliver_topology(&record);
                self.fleet = Some((version, record));
                self.fleet_place.settle(version);
                if let Some((preference, None)) = self.force {
                    // A forced switch with no monitored target.
                    self.force = None;
                    self.preference = preference;
                    self.outputs.push_back(Output::Forced {
                        preference,
                        origin: EventOrigin::Local,
                    });
                }
            }
        }
    }

    /// After connection `index`'s shared record changed: routing follows it (unless reconciling), with
    /// a transition from `before` if the status moved.
    fn follow_shared(
        &mut self,
        index: usize,
        before: ConnectionStatus,
        reason: Option<String>,
        origin: EventOrigin,
        now: Now,
        with_events: bool,
    ) {
        let me = self.config.instance;
        let conn = &mut self.conns[index];
        let Some((_, entry)) = &conn.shared else {
            return;
        };
        if let Some(reconcile) = &conn.reconcile {
            let agrees = entry.counts.status == conn.tracker.status();
            let fleet_spoke = entry.votes.iter().any(|v| {
                v.instance != me && v.ok && reconcile.seqs.get(&v.instance) != Some(&v.seq)
            });
            if !agrees && !fleet_spoke {
                // Routing stays on this instance's own decision for now.
                let transition = transition(before, conn.tracker.status(), now.wall, reason);
                self.tell(index, transition, EventOrigin::Local);
                return;
            }
            conn.reconcile = None;
        }
        let counts = shared_counts(entry.counts, conn.tracker.counts(), self.config.thresholds);
        if let Some(at) =
            DateTime::from_timestamp_millis(entry.checked_at_ms).filter(|_| entry.checked_at_ms > 0)
        {
            // For operators only ("last check"): the writer's clock, never a decision.
            conn.tracker.observe_check_at(at);
        }
        conn.tracker.adopt(counts);
        let after = conn.tracker.status();
        let reason = match origin {
            EventOrigin::Local => reason,
            EventOrigin::Learned => Some("decided by another instance".to_owned()),
        };
        let transition = with_events
            .then(|| transition(before, after, now.wall, reason))
            .flatten();
        self.tell(index, transition, origin);
    }

    fn tell(&mut self, index: usize, transition: Option<StatusTransition>, origin: EventOrigin) {
        let conn = &self.conns[index];
        self.outputs.push_back(Output::Status {
            connection: Arc::clone(&conn.name),
            role: conn.role,
            view: ConnectionView {
                status: conn.tracker.status(),
                checked: conn.tracker.has_results(),
                writable: conn.tracker.state().writable,
                latency: conn.tracker.state().last_latency,
            },
            transition,
            origin,
            facts: conn.last_facts.clone(),
        });
    }

    /// Decides connection `index`'s pending results with the local tracker alone (no store).
    fn decide_locally(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        let before = conn.tracker.status();
        let mut last = None;
        for (result, at) in conn.pending.drain(..) {
            if let Some(t) = conn.tracker.record(&result, at) {
                last = Some(t);
            }
        }
        let transition = last.filter(|t| t.to != before);
        let connection = Arc::clone(&conn.name);
        self.tell(index, transition, EventOrigin::Local);
        self.outputs.push_back(Output::Applied { connection });
    }

    /// The pending results change nothing in the shared record: they are facts of this instance.
    fn decide_without_write(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        let counts = conn.shared.as_ref().map(|(_, e)| e.counts);
        for (result, at) in conn.pending.drain(..) {
            conn.tracker.record(&result, at);
        }
        if let Some(counts) = counts
            && conn.reconcile.is_none()
        {
            let counts = shared_counts(counts, conn.tracker.counts(), self.config.thresholds);
            conn.tracker.adopt(counts);
        }
        let connection = Arc::clone(&conn.name);
        self.outputs.push_back(Output::Applied { connection });
    }

    /// Writes kept losing to others: the results stay facts of this instance; the shared decision
    /// stands (contention is not an outage).
    fn give_up_contended(&mut self, plans: &[Planned]) {
        self.attempts = 0;
        self.not_before = None;
        for plan in plans {
            if let Planned::Connection { index, .. } = plan {
                self.decide_without_write(*index);
            }
        }
        // A forced switch stays staged and is tried again: it is an operator's explicit order.
    }

    /// With nothing in flight, decides what needs no write.
    fn settle_idle(&mut self, now: Now) {
        if self.in_flight.is_some() {
            return;
        }
        for index in 0..self.conns.len() {
            if !self.conns[index].pending.is_empty()
                && self.conns[index].foreign.is_none()
                && self.outage.is_none()
                && !self.needs_write(index, now.mono)
            {
                self.decide_without_write(index);
            }
        }
    }

    fn apply_force_locally(
        &mut self,
        preference: Preference,
        target: Option<usize>,
        origin: EventOrigin,
        now: Now,
    ) {
        if let Some(index) = target {
            self.conns[index]
                .tracker
                .force(ConnectionStatus::Healthy, now.wall);
            self.tell(index, None, origin);
        }
        self.preference = preference;
        if self.outage.is_some() {
            self.forced_in_outage = true;
        }
        self.outputs
            .push_back(Output::Forced { preference, origin });
    }

    // ---------------------------------------------------------------------------------------------
    // Reading the store

    fn note_votes(&mut self, index: usize, entry: &ConnectionEntry, now: Instant) {
        let seen = &mut self.conns[index].seen;
        for vote in &entry.votes {
            match seen.get_mut(&vote.instance) {
                Some(s) if s.seq == vote.seq => {}
                Some(s) => {
                    s.seq = vote.seq;
                    s.changed_at = now;
                }
                None => {
                    seen.insert(
                        vote.instance,
                        Seen {
                            seq: vote.seq,
                            changed_at: now,
                        },
                    );
                }
            }
        }
        // Forget instances long gone, so the table stays as small as the fleet; never one whose vote
        // is still in the record (read again, it would pass for a new vote, and a fresh one).
        let window = self.config.vote_window;
        seen.retain(|instance, s| {
            now.saturating_duration_since(s.changed_at) < window.saturating_mul(4)
                || entry.votes.iter().any(|v| v.instance == *instance)
        });
    }

    /// What the store holds (or pushed) under `key`. `authoritative`: read from the store now.
    fn observe(&mut self, key: &RecordKey, slot: Slot, authoritative: bool, now: Now) {
        let RecordKey::Connection(name) = key else {
            self.observe_fleet(slot, authoritative, now);
            return;
        };
        let Some(index) = self.index_of(name) else {
            return;
        };
        if self.is_own_write_in_flight(&slot) {
            // This instance's own write, pushed before its answer arrived: the answer decides.
            return;
        }
        match slot {
            Slot::Readable {
                version,
                record: Record::Connection(entry),
            } => {
                self.note_votes(index, &entry, now.mono);
                let conn = &mut self.conns[index];
                conn.foreign = None;
                let known = conn.shared.as_ref().map(|(v, _)| *v);
                match conn.place.meet(known, version, authoritative) {
                    Found::Same => {}
                    // A late push is checked against the store; a store that went back is
                    // rewritten from what this instance knows.
                    Found::Behind(_) => {
                        if !authoritative {
                            self.wants_load.insert(key.clone());
                        }
                    }
                    Found::Newer => {
                        let forced = entry.forced;
                        conn.shared = Some((version, entry));
                        let before = conn.tracker.status();
                        self.follow_shared(index, before, None, EventOrigin::Learned, now, !forced);
                    }
                }
            }
            Slot::Foreign { format } => {
                let conn = &mut self.conns[index];
                if conn.foreign.is_none() {
                    self.outputs.push_back(Output::ForeignRecord {
                        key: key.clone(),
                        format,
                    });
                }
                self.conns[index].foreign = Some(format);
                if !self.conns[index].pending.is_empty() {
                    self.decide_locally(index);
                }
            }
            other if authoritative => {
                // Missing, unreadable, or a record of the wrong kind: never adopted; rewritten.
                let conn = &mut self.conns[index];
                conn.foreign = None;
                conn.place.expect = Expect::replacing(&other).unwrap_or(Expect::Unreadable);
                conn.place.heal = conn.shared.is_some() || conn.tracker.has_results();
            }
            _ => {
                self.wants_load.insert(key.clone());
            }
        }
    }

    /// Tells the router the fleet's topology, when it says something new.
    fn deliver_topology(&mut self, record: &FleetRecord) {
        let Some(topology) = decode_record(&record.extra) else {
            return;
        };
        if topology != self.topology_known {
            self.topology_known = topology.clone();
            self.outputs.push_back(Output::Topology(topology));
        }
    }

    fn is_own_write_in_flight(&self, slot: &Slot) -> bool {
        let Some(InFlight::Cas(plans)) = &self.in_flight else {
            return false;
        };
        let Some(found) = slot.version() else {
            return false;
        };
        plans.iter().any(|plan| match plan {
            Planned::Connection { version, .. } | Planned::Fleet { version, .. } => {
                *version == found
            }
        })
    }

    fn observe_fleet(&mut self, slot: Slot, authoritative: bool, now: Now) {
        if self.is_own_write_in_flight(&slot) {
            return;
        }
        match slot {
            Slot::Readable {
                version,
                record: Record::Fleet(record),
            } => {
                self.fleet_foreign = None;
                let known = self.fleet.as_ref().map(|(v, _)| *v);
                match self.fleet_place.meet(known, version, authoritative) {
                    Found::Same => {}
                    Found::Behind(_) => {
                        if !authoritative {
                            self.wants_load.insert(RecordKey::Fleet);
                        }
                    }
                    Found::Newer => {
                        let preference = record.preference;
                        self.fleet_seen_at = Some(now.mono);
                        self.deliver_topology(&record);
                        self.fleet = Some((version, record));
                        if preference != self.preference {
                            self.preference = preference;
                            self.outputs.push_back(Output::Forced {
                                preference,
                                origin: EventOrigin::Learned,
                            });
                        }
                    }
                }
            }
            Slot::Foreign { format } => {
                if self.fleet_foreign.is_none() {
                    self.outputs.push_back(Output::ForeignRecord {
                        key: RecordKey::Fleet,
                        format,
                    });
                }
                self.fleet_foreign = Some(format);
            }
            other if authoritative => {
                self.fleet_foreign = None;
                self.fleet_place.expect = Expect::replacing(&other).unwrap_or(Expect::Unreadable);
                // Only a record holding decisions (a preference, fences, a switch forced while the
                // store was away and not written yet) is worth rewriting.
                self.fleet_place.heal = self.fleet_matters() || self.forced_in_outage;
            }
            _ => {
                self.wants_load.insert(RecordKey::Fleet);
            }
        }
    }

    /// The store answered a read during an outage: prepare to end it. Every record is rewritten (the
    /// write that ends the outage), merging this instance's evidence into what the store holds; a
    /// connection whose shared status differs from the local decision is reconciled.
    fn reconnect(&mut self, pairs: Vec<(RecordKey, Slot)>, now: Now) {
        for (key, slot) in pairs {
            let RecordKey::Connection(name) = &key else {
                if self.forced_in_outage && !matches!(slot, Slot::Foreign { .. }) {
                    // An operator's order given during the outage is written over what the store
                    // holds (the fleet learns it), not replaced by it.
                    self.fleet_place.expect =
                        Expect::replacing(&slot).unwrap_or(Expect::Unreadable);
                    if let Some(version) = slot.version() {
                        self.fleet_place.counter = self.fleet_place.counter.max(version.counter);
                    }
                    if let Slot::Readable {
                        version,
                        record: Record::Fleet(record),
                    } = slot
                    {
                        // What the fleet decided meanwhile (fences, the writer of record) is kept:
                        // the order is written over it, not instead of it.
                        self.deliver_topology(&record);
                        self.fleet = Some((version, record));
                        self.fleet_seen_at = Some(now.mono);
                    }
                    self.fleet_foreign = None;
                    self.fleet_place.heal = true;
                } else {
                    // A record of a later release is never written over (and is reported once).
                    self.observe_fleet(slot, true, now);
                }
                continue;
            };
            let Some(index) = self.index_of(name) else {
                continue;
            };
            let before_outage = self.conns[index]
                .shared
                .as_ref()
                .map(|(v, e)| (*v, e.counts.status));
            if let Slot::Foreign { .. } = slot {
                self.observe(&key, slot, true, now);
                continue;
            }
            if let Slot::Readable {
                version,
                record: Record::Connection(entry),
            } = &slot
            {
                // Every vote counts as fresh from now: this instance was blind during the outage.
                let conn = &mut self.conns[index];
                for vote in &entry.votes {
                    conn.seen.insert(
                        vote.instance,
                        Seen {
                            seq: vote.seq,
                            changed_at: now.mono,
                        },
                    );
                }
                let local = conn.tracker.status();
                let newer = before_outage.is_none_or(|(v, _)| v != *version);
                let real_transition =
                    newer && before_outage.is_some_and(|(_, status)| status != entry.counts.status);
                conn.foreign = None;
                conn.place.expect = Expect::after(*version);
                conn.place.counter = conn.place.counter.max(version.counter);
                if newer && version.counter > before_outage.map_or(0, |(v, _)| v.counter) {
                    conn.shared = Some((*version, entry.clone()));
                }
                conn.place.heal = true;
                let status = conn.shared.as_ref().map(|(_, e)| e.counts.status);
                if real_transition || status == Some(local) {
                    // The fleet decided meanwhile, or agrees: follow the store.
                    let before = conn.tracker.status();
                    conn.reconcile = None;
                    let origin = if real_transition {
                        EventOrigin::Learned
                    } else {
                        EventOrigin::Local
                    };
                    self.follow_shared(index, before, None, origin, now, true);
                } else {
                    let seqs = entry.votes.iter().map(|v| (v.instance, v.seq)).collect();
                    self.conns[index].reconcile = Some(Reconcile { seqs });
                }
            } else {
                // Missing or unreadable: rewrite from what this instance knew before the outage.
                let conn = &mut self.conns[index];
                conn.foreign = None;
                conn.place.expect = Expect::replacing(&slot).unwrap_or(Expect::Unreadable);
                conn.place.heal = true;
                let status = before_outage.map(|(_, s)| s);
                if status.is_some_and(|s| s != conn.tracker.status()) {
                    let seqs = conn
                        .shared
                        .as_ref()
                        .map(|(_, e)| e.votes.iter().map(|v| (v.instance, v.seq)).collect())
                        .unwrap_or_default();
                    let entry_votes: Vec<Vote> = conn
                        .shared
                        .as_ref()
                        .map(|(_, e)| e.votes.clone())
                        .unwrap_or_default();
                    for vote in entry_votes {
                        conn.seen.insert(
                            vote.instance,
                            Seen {
                                seq: vote.seq,
                                changed_at: now.mono,
                            },
                        );
                    }
                    conn.reconcile = Some(Reconcile { seqs });
                }
            }
        }
        // The fleet record is rewritten too when it holds more than the default.
        if self.fleet_matters() {
            self.fleet_place.heal = true;
        }
    }
}

/// Counts as the shared record keeps them: they stop at their thresholds (beyond them nothing changes,
/// so an unchanged state writes nothing).
fn capped(counts: Counts, thresholds: Thresholds) -> Counts {
    Counts {
        status: counts.status,
        failure_count: counts.failure_count.min(thresholds.failure_threshold),
        success_count: counts.success_count.min(thresholds.recovery_threshold),
    }
}

/// The counts routing and operators see: the shared ones, except that a shared count at its cap
/// ("at least the threshold") shows this instance's own longer run.
fn shared_counts(shared: Counts, local: Counts, thresholds: Thresholds) -> Counts {
    let mut counts = shared;
    if shared.failure_count == thresholds.failure_threshold
        && local.failure_count > shared.failure_count
    {
        counts.failure_count = local.failure_count;
    }
    if shared.success_count == thresholds.recovery_threshold
        && local.success_count > shared.success_count
    {
        counts.success_count = local.success_count;
    }
    counts
}

fn transition(
    before: ConnectionStatus,
    after: ConnectionStatus,
    at: DateTime<Utc>,
    reason: Option<String>,
) -> Option<StatusTransition> {
    (before != after).then(|| StatusTransition {
        from: before,
        to: after,
        at,
        reason: if after == ConnectionStatus::Down {
            reason
        } else {
            None
        },
    })
}

/// `extra` with its topology fields replaced by `record`'s.
fn with_topology(extra: &[(String, String)], record: &TopologyRecord) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = extra
        .iter()
        .filter(|(key, _)| !RECORD_KEYS.contains(&key.as_str()))
        .cloned()
        .collect();
    fields.extend(encode_record(record));
    fields
}
