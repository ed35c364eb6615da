//! The `StateActor`: owns the thresholds and every connection's tracker, shares state through the
//! store, learns other instances' transitions, and tells the router.

use crate::contain::{Contained, contained};
use crate::messages::{
    ConnectionReport, ForceStatus, GetConnectionStates, ProbeCompleted, Publish, StatusChanged,
    StoreChanged,
};
use crate::router::RouterActor;
use crate::store::{StateStore, StoredState, Versioned};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use dbfailover_core::shared::{self, SharedEntry};
use dbfailover_core::{
    CheckResult, ConnectionStatus, ConnectionView, Counts, EventKind, EventOrigin, FailoverEvent,
    HealthTracker, Role, StatusTransition, Thresholds,
};
use std::sync::Arc;
use std::time::Duration;

/// How many times an update is retried when other writers keep coming first.
const CAS_ATTEMPTS: usize = 16;

struct Tracked {
    name: Arc<str>,
    role: Role,
    tracker: HealthTracker,
    /// The store's version of the entry this tracker last adopted or wrote.
    version: Option<u64>,
    /// Set when a store outage begins (milliseconds since the epoch): store entries older than this are
    /// stale for this connection until its first successful update after the outage.
    reconcile_since: Option<i64>,
}

/// Records every check result (UNKNOWN / HEALTHY / DOWN with the failure and recovery thresholds) and
/// tells the router of each change.
///
/// With the store available, a result is applied to the shared entry by compare-and-set (so the
/// decision is the same for every instance sharing the store, and no update is lost), and the tracker
/// adopts the result. Changes other instances make arrive through the store's change feed (or a poll
/// at the check interval) and are adopted as *learned*. Without the store (an error, a timeout, a
/// panic), the tracker records the result locally and routing goes on from it; `CacheUnavailable` is
/// published once per outage and `CacheRestored` when the store answers again. Entries older than the
/// outage are then replaced by the local state, newer ones (written meanwhile by instances that could
/// reach the store) are adopted: no spurious switch either way.
pub struct StateActor {
    connections: Vec<Tracked>,
    thresholds: Thresholds,
    /// This engine's identity among the instances sharing the store (random per start).
    instance: u64,
    store: Arc<dyn StateStore>,
    store_timeout: Duration,
    poll_interval: Duration,
    router: Addr<RouterActor>,
    /// `None` while the store answers; since when it did not.
    outage_since: Option<DateTime<Utc>>,
    /// A store probe during an outage is running.
    store_retry_in_flight: bool,
    /// During an outage, the store answered a read again: the next update tries it (a write decides
    /// whether the outage is over).
    store_readable_again: bool,
    /// When the last store probe during an outage started.
    last_store_retry: Option<tokio::time::Instant>,
}

/// What one shared update did.
struct Applied {
    /// The entry's status before this update (its base).
    before: ConnectionStatus,
    /// The entry written.
    after: Versioned,
}

/// Who applies an update, and the rule's parameters.
#[derive(Clone, Copy)]
struct Voter {
    instance: u64,
    thresholds: Thresholds,
    window_ms: i64,
}

/// Applies `update` to the store's entry of `connection` by compare-and-set, with the shared rule
/// (`dbfailover_core::shared`). The base is the store's entry, unless it is missing or older than the
/// caller's outage, in which case it is the caller's local counts (so a store that comes back empty or
/// stale cannot undo what was decided meanwhile).
async fn apply_shared(
    store: Arc<dyn StateStore>,
    connection: Arc<str>,
    update: Update,
    voter: Voter,
    local: Counts,
    outage_since_ms: Option<i64>,
) -> Result<Applied, String> {
    for _ in 0..CAS_ATTEMPTS {
        let current = store.load(&connection).await.map_err(|e| e.to_string())?;
        let expected = current.as_ref().map(|v| v.version);
        let usable =
            current.filter(|v| outage_since_ms.is_none_or(|since| v.state.updated_at_ms > since));
        let base = match usable {
            Some(v) => SharedEntry {
                counts: v.state.counts,
                votes: v.state.votes,
            },
            None => SharedEntry {
                counts: local,
                votes: Vec::new(),
            },
        };
        let entry = match &update {
            Update::Result(result, at) => shared::apply(
                &base,
                voter.instance,
                result,
                *at,
                voter.thresholds,
                voter.window_ms,
            ),
            Update::Force(status) => SharedEntry {
                counts: Counts {
                    status: *status,
                    failure_count: 0,
                    success_count: 0,
                },
                votes: Vec::new(),
            },
        };
        let mut state = StoredState::now(entry.counts);
        state.votes = entry.votes;
        if let Some(version) = store
            .compare_and_set(&connection, expected, state.clone())
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(Applied {
                before: base.counts.status,
                after: Versioned { state, version },
            });
        }
    }
    Err(format!("gave up after {CAS_ATTEMPTS} conflicting writes"))
}

/// When any instance last checked, from the entry's votes.
fn latest_vote(state: &StoredState) -> Option<DateTime<Utc>> {
    state
        .votes
        .iter()
        .map(|v| v.at_ms)
        .max()
        .and_then(DateTime::from_timestamp_millis)
}

/// What is applied to an entry.
#[derive(Clone)]
enum Update {
    Result(CheckResult, DateTime<Utc>),
    Force(ConnectionStatus),
}

impl Update {
    /// Records this update in `tracker` (the check's own facts: time, latency, error); a check result
    /// answers the transition it caused there. A forced status causes no status events.
    fn record_in(&self, tracker: &mut HealthTracker) -> Option<StatusTransition> {
        match self {
            Self::Result(result, at) => tracker.record(result, *at),
            Self::Force(status) => {
                tracker.force(*status, Utc::now());
                None
            }
        }
    }

    /// The reason a transition to DOWN gives, for a failed check.
    fn failure_reason(&self) -> Option<String> {
        match self {
            Self::Result(CheckResult::Failure { reason }, _) => Some(reason.clone()),
            _ => None,
        }
    }
}

/// The transition from `before` to `after`, if they differ (a DOWN carries `reason`).
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

impl Tracked {
    /// Takes the store's entry as the decision: status and counts, version, and the last time any
    /// instance checked. What this instance measured itself (latency, error) stays.
    fn take_entry(&mut self, entry: &Versioned) {
        self.tracker.adopt(entry.state.counts);
        if let Some(at) = latest_vote(&entry.state) {
            self.tracker.observe_check_at(at);
        }
        self.version = Some(entry.version);
    }
}

/// Runs a store operation in a task of its own, bounded by `timeout`: a hang or a panic in a store is
/// an error here, never a stuck actor.
async fn bounded<T: Send + 'static>(
    timeout: Duration,
    what: &'static str,
    operation: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    match contained(timeout, operation).await {
        Contained::Done(result) => result,
        Contained::TimedOut => Err(format!(
            "state store did not answer {what} within {timeout:?}"
        )),
        Contained::Panicked(message) => {
            Err(format!("state store panicked during {what}: {message}"))
        }
        Contained::Cancelled => Err(format!("state store {what} was cancelled")),
    }
}

impl StateActor {
    /// A state actor for `connections` (name and role), starting UNKNOWN. Without a change feed from
    /// the store, other instances' changes are polled every `poll_interval`.
    pub fn new(
        connections: Vec<(Arc<str>, Role)>,
        thresholds: Thresholds,
        store: Arc<dyn StateStore>,
        store_timeout: Duration,
        poll_interval: Duration,
        router: Addr<RouterActor>,
    ) -> Self {
        Self {
            connections: connections
                .into_iter()
                .map(|(name, role)| Tracked {
                    name,
                    role,
                    tracker: HealthTracker::new(thresholds),
                    version: None,
                    reconcile_since: None,
                })
                .collect(),
            thresholds,
            instance: {
                use std::hash::{BuildHasher, Hasher};
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write_u32(std::process::id());
                hasher.finish()
            },
            store,
            store_timeout,
            poll_interval,
            router,
            outage_since: None,
            store_retry_in_flight: false,
            store_readable_again: false,
            last_store_retry: None,
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.connections.iter().position(|c| &*c.name == name)
    }

    fn tell_router(&self, index: usize, transition: Option<StatusTransition>, origin: EventOrigin) {
        let Some(tracked) = self.connections.get(index) else {
            return;
        };
        crate::metrics::record_status(&tracked.name, tracked.tracker.status());
        if let Some(t) = &transition {
            tracing::info!(
                connection = %tracked.name,
                from = %t.from,
                to = %t.to,
                origin = ?origin,
                reason = t.reason.as_deref().unwrap_or(""),
                "connection status changed"
            );
        }
        self.router.do_send(StatusChanged {
            connection: Arc::clone(&tracked.name),
            role: tracked.role,
            view: ConnectionView {
                status: tracked.tracker.status(),
                checked: tracked.tracker.has_results(),
            },
            transition,
            origin,
        });
    }

    fn note_store_outcome(&mut self, what: &'static str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                if self.outage_since.take().is_some() {
                    tracing::info!(store = %self.store.describe(), "state store available again");
                    self.router.do_send(Publish(FailoverEvent::new(
                        Utc::now(),
                        EventKind::CacheRestored {},
                    )));
                }
            }
            Err(error) => {
                tracing::warn!(
                    store = %self.store.describe(),
                    operation = what,
                    %error,
                    "state store unavailable; going on from local state"
                );
                if self.outage_since.is_none() {
                    let now = Utc::now();
                    self.outage_since = Some(now);
                    for tracked in &mut self.connections {
                        tracked.reconcile_since = Some(now.timestamp_millis());
                    }
                    self.router.do_send(Publish(FailoverEvent::new(
                        Utc::now(),
                        EventKind::CacheUnavailable { error },
                    )));
                }
            }
        }
    }

    /// Adopts the store's entry for connection `index`, learned from another instance (or from this
    /// engine's previous run), and tells the router.
    fn adopt(&mut self, index: usize, entry: &Versioned) {
        let Some(tracked) = self.connections.get_mut(index) else {
            return;
        };
        // The same version with the same counts is this instance's own write coming back. (A store
        // that restarted empty hands out versions again, so a known version with other counts is news.)
        if tracked.version == Some(entry.version) && tracked.tracker.counts() == entry.state.counts
        {
            return;
        }
        let before = tracked.tracker.status();
        tracked.take_entry(entry);
        let at =
            DateTime::from_timestamp_millis(entry.state.updated_at_ms).unwrap_or_else(Utc::now);
        let reason = Some("decided by another instance".to_owned());
        let transition = transition(before, entry.state.counts.status, at, reason);
        self.tell_router(index, transition, EventOrigin::Learned);
    }

    /// Loads connection `index`'s entry (bounded) and adopts it, before handling any other message:
    /// no update interleaves, so an older entry never overwrites a newer one.
    fn load_and_adopt(&mut self, index: usize, ctx: &mut Context<Self>) {
        let Some(tracked) = self.connections.get(index) else {
            return;
        };
        let load = self.bounded_load(Arc::clone(&tracked.name));
        ctx.wait(load.into_actor(self).map(move |loaded, act, _ctx| {
            match loaded {
                Ok(Some(entry))
                    if act.connections[index]
                        .reconcile_since
                        .is_some_and(|since| entry.state.updated_at_ms <= since) =>
                {
                    // Older than this instance's outage: its next update replaces it.
                }
                Ok(Some(entry)) => act.adopt(index, &entry),
                // A missing entry (expired, or a store that restarted empty) is rewritten by the next
                // update from the local state; adopting UNKNOWN here could switch to a dead database.
                Ok(None) => {}
                Err(error) => act.note_store_outcome("load", Err(error)),
            }
        }));
    }

    /// One load of `connection`'s entry, bounded by the store timeout.
    fn bounded_load(
        &self,
        connection: Arc<str>,
    ) -> impl std::future::Future<Output = Result<Option<Versioned>, String>> + 'static {
        let store = Arc::clone(&self.store);
        bounded(self.store_timeout, "load", async move {
            store.load(&connection).await.map_err(|e| e.to_string())
        })
    }

    /// Records `update` in the local tracker only (the store is unavailable) and tells the router.
    fn record_locally(&mut self, index: usize, update: &Update) -> ConnectionStatus {
        let Some(tracked) = self.connections.get_mut(index) else {
            return ConnectionStatus::Unknown;
        };
        let transition = update.record_in(&mut tracked.tracker);
        let status = tracked.tracker.status();
        self.tell_router(index, transition, EventOrigin::Local);
        status
    }

    /// During an outage, checks now and then (at most once per poll interval, one at a time) whether
    /// the store answers again, without making any caller wait for it.
    fn retry_store(&mut self, ctx: &mut Context<Self>) {
        let due = self
            .last_store_retry
            .is_none_or(|last| last.elapsed() >= self.poll_interval);
        if self.store_retry_in_flight || !due {
            return;
        }
        let Some(first) = self.connections.first() else {
            return;
        };
        self.store_retry_in_flight = true;
        self.last_store_retry = Some(tokio::time::Instant::now());
        let load = self.bounded_load(Arc::clone(&first.name));
        ctx.spawn(load.into_actor(self).map(|outcome, act, _ctx| {
            act.store_retry_in_flight = false;
            act.store_readable_again = outcome.is_ok();
        }));
    }

    /// Applies `update` to connection `index` through the store, or locally while the store is away.
    fn update(
        &mut self,
        index: usize,
        update: Update,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ConnectionStatus> {
        if self.outage_since.is_some() && !self.store_readable_again {
            let status = self.record_locally(index, &update);
            self.retry_store(ctx);
            return Box::pin(actix::fut::ready(status));
        }
        self.store_readable_again = false;
        let Some(tracked) = self.connections.get(index) else {
            return Box::pin(actix::fut::ready(ConnectionStatus::Unknown));
        };
        let operation = apply_shared(
            Arc::clone(&self.store),
            Arc::clone(&tracked.name),
            update.clone(),
            Voter {
                instance: self.instance,
                thresholds: self.thresholds,
                // A vote counts for two check intervals: an instance that stopped checking stops vetoing.
                window_ms: i64::try_from(self.poll_interval.as_millis() * 2).unwrap_or(i64::MAX),
            },
            tracked.tracker.counts(),
            tracked.reconcile_since,
        );
        let work = bounded(self.store_timeout, "update", operation);
        Box::pin(work.into_actor(self).map(move |outcome, act, _ctx| {
            let applied = match outcome {
                Ok(applied) => applied,
                Err(error) => {
                    act.note_store_outcome("update", Err(error));
                    return act.record_locally(index, &update);
                }
            };
            act.note_store_outcome("update", Ok(()));
            let tracked = &mut act.connections[index];
            let before = tracked.tracker.status();
            // Another instance changed the entry since this one last saw it: what follows is learned.
            let learned = applied.before != before;
            // The check's own facts are this instance's; the decision is the store's.
            update.record_in(&mut tracked.tracker);
            tracked.take_entry(&applied.after);
            tracked.reconcile_since = None;
            let after = tracked.tracker.status();
            let transition = match update {
                Update::Result(..) => {
                    transition(before, after, Utc::now(), update.failure_reason())
                }
                Update::Force(_) => None,
            };
            let origin = if learned {
                EventOrigin::Learned
            } else {
                EventOrigin::Local
            };
            act.tell_router(index, transition, origin);
            after
        }))
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(StoreChanged::All);
    }
}

impl Actor for StateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Resume from the store (a restarted engine, or other instances' knowledge). Bounded; an
        // unavailable store leaves every connection UNKNOWN, as before the first check.
        for index in 0..self.connections.len() {
            self.load_and_adopt(index, ctx);
        }
        match self.store.changes() {
            Some(mut feed) => {
                let addr = ctx.address();
                actix::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    while addr.connected() {
                        match feed.recv().await {
                            // An empty name: the store reconnected and may have missed changes.
                            Ok(name) if name.is_empty() => addr.do_send(StoreChanged::All),
                            Ok(name) => addr.do_send(StoreChanged::Connection(name)),
                            // Some names were missed: reload every connection.
                            Err(RecvError::Lagged(_)) => addr.do_send(StoreChanged::All),
                            Err(RecvError::Closed) => {
                                tracing::warn!("state store change feed ended; polling instead");
                                addr.do_send(StoreChanged::FeedEnded);
                                break;
                            }
                        }
                    }
                });
                // A change feed can die silently (a half-open connection): poll now and then regardless.
                let safety = (self.poll_interval * 10).min(Duration::from_secs(10));
                ctx.run_interval(safety, |act, ctx| act.poll(ctx));
            }
            None => {
                ctx.run_interval(self.poll_interval, |act, ctx| act.poll(ctx));
            }
        }
    }
}

impl Handler<StoreChanged> for StateActor {
    type Result = ();

    fn handle(&mut self, msg: StoreChanged, ctx: &mut Context<Self>) {
        if self.outage_since.is_some() && !matches!(msg, StoreChanged::FeedEnded) {
            // During an outage the local state rules; the next update reconciles.
            return;
        }
        match msg {
            StoreChanged::Connection(name) => {
                if let Some(index) = self.index_of(&name) {
                    self.load_and_adopt(index, ctx);
                }
            }
            StoreChanged::All => {
                for index in 0..self.connections.len() {
                    self.load_and_adopt(index, ctx);
                }
            }
            StoreChanged::FeedEnded => {
                ctx.run_interval(self.poll_interval, |act, ctx| act.poll(ctx));
            }
        }
    }
}

impl Supervised for StateActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("state actor restarted by its supervisor");
    }
}

impl Handler<ProbeCompleted> for StateActor {
    type Result = AtomicResponse<Self, ConnectionStatus>;

    fn handle(&mut self, msg: ProbeCompleted, ctx: &mut Context<Self>) -> Self::Result {
        match self.index_of(&msg.connection) {
            Some(index) => {
                AtomicResponse::new(self.update(index, Update::Result(msg.result, msg.at), ctx))
            }
            None => AtomicResponse::new(Box::pin(actix::fut::ready(ConnectionStatus::Unknown))),
        }
    }
}

impl Handler<ForceStatus> for StateActor {
    type Result = AtomicResponse<Self, ConnectionStatus>;

    fn handle(&mut self, msg: ForceStatus, ctx: &mut Context<Self>) -> Self::Result {
        tracing::info!(connection = %msg.connection, status = %msg.status, "status set by a forced switch");
        match self.index_of(&msg.connection) {
            Some(index) => AtomicResponse::new(self.update(index, Update::Force(msg.status), ctx)),
            None => AtomicResponse::new(Box::pin(actix::fut::ready(ConnectionStatus::Unknown))),
        }
    }
}

impl Handler<GetConnectionStates> for StateActor {
    type Result = MessageResult<GetConnectionStates>;

    fn handle(&mut self, _msg: GetConnectionStates, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.connections
                .iter()
                .map(|c| ConnectionReport {
                    name: c.name.to_string(),
                    role: c.role,
                    state: c.tracker.state().clone(),
                })
                .collect(),
        )
    }
}
