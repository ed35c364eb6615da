//! The `StateActor`: the driver of this instance's replica of the shared state
//! (`dbfailover_core::replica`). It carries check results and forced switches in, runs the store
//! operations the replica asks for (bounded by the store timeout), feeds their answers and the store's
//! pushes back, arms the replica's timer, and tells the router what the replica decided.

use crate::contain::{Contained, contained};
use crate::messages::{
    ApplyForce, ApplyTopology, ConnectionReport, GetConnectionStates, ProbeCompleted, Publish,
    ShareForce, ShareTopology, StatusChanged, StoreChanged,
};
use crate::router::RouterActor;
use crate::store::StateStore;
use actix::prelude::*;
use chrono::Utc;
use dbfailover_core::record::{Notice, RecordKey};
use dbfailover_core::replica::{Command, Now, Output, Replica, ReplicaConfig};
use dbfailover_core::route::Preference;
use dbfailover_core::{ConnectionStatus, EventKind, FailoverEvent, Role, Thresholds};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Drives this instance's [`Replica`]: every check result and forced switch goes through it, and with
/// it through the shared store (see `docs/state.md`). One store operation runs at a time, in a task of
/// its own bounded by the store timeout: a hung, failing or panicking store is an outage, never a stuck
/// actor. Other instances' writes arrive through the store's change feed (or a poll at the check
/// interval, and a slower safety poll beside a feed).
pub(crate) struct StateActor {
    replica: Replica,
    store: Arc<dyn StateStore>,
    store_timeout: Duration,
    poll_interval: Duration,
    router: Addr<RouterActor>,
    /// Callers waiting for a connection's results to be decided.
    waiters: HashMap<Arc<str>, Vec<oneshot::Sender<ConnectionStatus>>>,
    /// Callers waiting for a forced switch to be applied.
    force_waiters: Vec<oneshot::Sender<Option<Preference>>>,
    /// A store operation is running.
    running: bool,
    timer: Option<SpawnHandle>,
    /// The task forwarding the store's change feed; aborted when the actor stops, which drops the
    /// feed's receiver (a store's subscriber task ends when nobody listens).
    feed_task: Option<tokio::task::AbortHandle>,
}

fn now() -> Now {
    Now {
        mono: tokio::time::Instant::now().into_std(),
        wall: Utc::now(),
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

/// This engine's identity among the instances sharing a store: random per start.
fn random_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

impl StateActor {
    /// A state actor for `connections` (name and role), starting UNKNOWN, sharing state through `store`.
    /// Without a change feed from the store, other instances' writes are polled every `poll_interval`.
    pub(crate) fn new(
        connections: Vec<(Arc<str>, Role)>,
        thresholds: Thresholds,
        store: Arc<dyn StateStore>,
        store_timeout: Duration,
        poll_interval: Duration,
        router: Addr<RouterActor>,
    ) -> Self {
        let config = ReplicaConfig::for_interval(random_instance(), thresholds, poll_interval);
        Self {
            replica: Replica::new(config, connections),
            store,
            store_timeout,
            poll_interval,
            router,
            waiters: HashMap::new(),
            force_waiters: Vec::new(),
            running: false,
            timer: None,
            feed_task: None,
        }
    }

    /// Shared records live `ttl` in the store: the fleet record's decisions (a forced switch, fences)
    /// are rewritten every third of it, so that they outlive it.
    pub(crate) fn with_record_ttl(mut self, ttl: Duration) -> Self {
        self.replica.set_fleet_refresh(ttl / 3);
        self
    }

    /// Delivers what the replica decided, runs the next store operation it asks for, arms its timer.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        self.deliver();
        if !self.running
            && let Some(command) = self.replica.poll_command(now())
        {
            self.run(command, ctx);
        }
        self.deliver();
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(at) = self.replica.poll_timeout() {
            let wait = at.saturating_duration_since(now().mono);
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                act.replica.handle_timeout(now());
                act.drive(ctx);
            }));
        }
    }

    fn run(&mut self, command: Command, ctx: &mut Context<Self>) {
        self.run_then(command, ctx, false);
    }

    /// Runs `command`; with `first`, before handling any other message (the first read, so that
    /// nobody sees the state before what the store holds was adopted).
    fn run_then(&mut self, command: Command, ctx: &mut Context<Self>, first: bool) {
        self.running = true;
        let store = Arc::clone(&self.store);
        let timeout = self.store_timeout;
        match command {
            Command::Load(keys) => {
                let work = bounded(timeout, "load", async move {
                    store.load(&keys).await.map_err(|e| e.reason())
                });
                let work = work.into_actor(self).map(|outcome, act, ctx| {
                    act.running = false;
                    match outcome {
                        Ok(slots) => act.replica.handle_loaded(slots, now()),
                        Err(error) => act.store_failed("load", error),
                    }
                    act.drive(ctx);
                });
                if first {
                    ctx.wait(work);
                } else {
                    ctx.spawn(work);
                }
            }
            Command::CompareAndSet(writes) => {
                let work = bounded(timeout, "update", async move {
                    store.compare_and_set(&writes).await.map_err(|e| e.reason())
                });
                ctx.spawn(work.into_actor(self).map(|outcome, act, ctx| {
                    act.running = false;
                    match outcome {
                        Ok(outcome) => act.replica.handle_cas_result(outcome, now()),
                        Err(error) => act.store_failed("update", error),
                    }
                    act.drive(ctx);
                }));
            }
        }
    }

    fn store_failed(&mut self, what: &'static str, error: String) {
        if self.replica.in_outage() {
            // Once per outage at warn (with the event); the retries that fail too at debug.
            tracing::debug!(store = %self.store.describe(), operation = what, %error, "state store still unavailable");
        } else {
            tracing::warn!(
                store = %self.store.describe(),
                operation = what,
                %error,
                "state store unavailable; going on from local state"
            );
        }
        self.replica.handle_store_error(error, now());
    }

    fn deliver(&mut self) {
        while let Some(output) = self.replica.poll_output() {
            match output {
                Output::Status {
                    connection,
                    role,
                    view,
                    transition,
                    origin,
                    facts,
                } => {
                    crate::metrics::record_status(&connection, view.status);
                    if let Some(t) = &transition {
                        tracing::info!(
                            connection = %connection,
                            from = %t.from,
                            to = %t.to,
                            origin = ?origin,
                            reason = t.reason.as_deref().unwrap_or(""),
                            "connection status changed"
                        );
                    }
                    self.router.do_send(StatusChanged {
                        connection,
                        role,
                        view,
                        transition,
                        origin,
                        facts,
                    });
                }
                Output::Forced { preference, origin } => match origin {
                    dbfailover_core::EventOrigin::Local => {
                        for waiter in self.force_waiters.drain(..) {
                            let _ = waiter.send(Some(preference));
                        }
                    }
                    dbfailover_core::EventOrigin::Learned => {
                        tracing::info!(?preference, "forced switch learned from another instance");
                        self.router.do_send(ApplyForce { preference, origin });
                    }
                },
                Output::Topology(record) => {
                    self.router.do_send(ApplyTopology(record));
                }
                Output::Applied { connection } => {
                    let status = self
                        .replica
                        .status(&connection)
                        .unwrap_or(ConnectionStatus::Unknown);
                    for waiter in self.waiters.remove(&connection).unwrap_or_default() {
                        let _ = waiter.send(status);
                    }
                }
                Output::StoreUnavailable { error } => {
                    self.router.do_send(Publish(FailoverEvent::new(
                        Utc::now(),
                        EventKind::CacheUnavailable { error },
                    )));
                }
                Output::StoreRestored => {
                    tracing::info!(store = %self.store.describe(), "state store available again");
                    self.router.do_send(Publish(FailoverEvent::new(
                        Utc::now(),
                        EventKind::CacheRestored {},
                    )));
                }
                Output::ForeignRecord { key, format } => {
                    let record = match &key {
                        RecordKey::Fleet => "fleet".to_owned(),
                        RecordKey::Connection(name) => name.to_string(),
                    };
                    tracing::warn!(
                        store = %self.store.describe(),
                        record,
                        format,
                        "shared record written in a format this release does not know (another \
                         release shares the store?); this instance keeps its own decision for it"
                    );
                }
            }
        }
    }
}

impl Actor for StateActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.end_feed();
        tracing::debug!("state actor stopped");
    }

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Resume from the store (a restarted engine, or other instances' knowledge); an unavailable
        // store leaves every connection UNKNOWN, as before the first check.
        match self.store.changes() {
            Some(mut feed) => {
                // A weak address: the forwarder must not keep the actor alive.
                let weak = ctx.address().downgrade();
                let task = actix::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    loop {
                        let received = feed.recv().await;
                        let Some(addr) = weak.upgrade() else { break };
                        match received {
                            Ok(notice) => addr.do_send(StoreChanged::Notice(notice)),
                            // Some notices were missed: read everything again.
                            Err(RecvError::Lagged(_)) => {
                                addr.do_send(StoreChanged::Notice(Notice::Resync));
                            }
                            Err(RecvError::Closed) => {
                                tracing::warn!("state store change feed ended; polling instead");
                                addr.do_send(StoreChanged::FeedEnded);
                                break;
                            }
                        }
                    }
                });
                self.feed_task = Some(task.abort_handle());
                // A change feed can die silently (a half-open connection): read now and then regardless.
                let safety = (self.poll_interval * 10).min(Duration::from_secs(10));
                ctx.run_interval(safety, |act, ctx| {
                    act.replica.request_load_all();
                    act.drive(ctx);
                });
            }
            None => {
                ctx.run_interval(self.poll_interval, |act, ctx| {
                    act.replica.request_load_all();
                    act.drive(ctx);
                });
            }
        }
        // The first read (every record) runs before any other message is handled.
        if let Some(command) = self.replica.poll_command(now()) {
            self.run_then(command, ctx, true);
        }
    }
}

impl StateActor {
    /// Ends the change-feed forwarder with the actor.
    fn end_feed(&mut self) {
        if let Some(task) = self.feed_task.take() {
            task.abort();
        }
    }
}

impl Handler<StoreChanged> for StateActor {
    type Result = ();

    fn handle(&mut self, msg: StoreChanged, ctx: &mut Context<Self>) {
        match msg {
            StoreChanged::Notice(notice) => self.replica.handle_notice(notice, now()),
            StoreChanged::FeedEnded => {
                ctx.run_interval(self.poll_interval, |act, ctx| {
                    act.replica.request_load_all();
                    act.drive(ctx);
                });
            }
        }
        self.drive(ctx);
    }
}

impl Handler<ProbeCompleted> for StateActor {
    type Result = ResponseFuture<ConnectionStatus>;

    fn handle(&mut self, msg: ProbeCompleted, ctx: &mut Context<Self>) -> Self::Result {
        let (sender, receiver) = oneshot::channel();
        self.waiters
            .entry(Arc::clone(&msg.connection))
            .or_default()
            .push(sender);
        self.replica.handle_check(
            &msg.connection,
            msg.result,
            Now {
                mono: now().mono,
                wall: msg.at,
            },
        );
        self.drive(ctx);
        Box::pin(async move { receiver.await.unwrap_or(ConnectionStatus::Unknown) })
    }
}

impl Handler<ShareForce> for StateActor {
    type Result = ResponseFuture<Option<Preference>>;

    fn handle(&mut self, msg: ShareForce, ctx: &mut Context<Self>) -> Self::Result {
        tracing::info!(target_connection = %msg.target, preference = ?msg.preference, "forced switch shared with the fleet");
        let (sender, receiver) = oneshot::channel();
        self.force_waiters.push(sender);
        self.replica
            .handle_force(msg.preference, &msg.target, now());
        self.drive(ctx);
        Box::pin(async move { receiver.await.ok().flatten() })
    }
}

impl Handler<ShareTopology> for StateActor {
    type Result = ();

    fn handle(&mut self, msg: ShareTopology, ctx: &mut Context<Self>) {
        self.replica.handle_topology(msg.0);
        self.drive(ctx);
    }
}

impl Handler<GetConnectionStates> for StateActor {
    type Result = MessageResult<GetConnectionStates>;

    fn handle(&mut self, _msg: GetConnectionStates, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.replica
                .trackers()
                .map(|(name, role, tracker)| ConnectionReport {
                    name: name.to_string(),
                    role,
                    state: tracker.state().clone(),
                })
                .collect(),
        )
    }
}

impl Handler<crate::messages::Stop> for StateActor {
    type Result = ();

    fn handle(&mut self, _msg: crate::messages::Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
