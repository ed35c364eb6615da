//! The `RouterActor`: owns the active connection, answers `GetActiveConnection`, publishes events.

use crate::messages::{
    ApplyForce, ApplyTopology, CheckNow, ForceSwitch, GetActiveConnection, LiftFence, Publish,
    SetProbes, ShareForce, ShareTopology, StatusChanged, Subscribe, SubscribeStream,
    SubscriptionId, Unsubscribe,
};
use crate::state::StateActor;
use actix::prelude::*;
use dbfailover_core::config::Failback;
use dbfailover_core::event::{status_events, topology_event};
use dbfailover_core::route::Preference;
use dbfailover_core::topology::{Topology, TopologyEvent, TopologyRecord};
use dbfailover_core::{
    ActiveConnection, ActiveRole, ConnectionStatus, ConnectionView, EventKind, EventOrigin,
    FailoverEvent, RoleNames, Router,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The router's decision, published for readers that must not wait on a mailbox (the routed handle).
///
/// One atomic word holds the active node and the switch epoch, so a read is one load and never tears;
/// two more hold the nodes that may serve reads (a bit per node) and the fastest of them.
#[derive(Debug)]
pub struct SharedActive {
    word: AtomicU64,
    reads: AtomicU64,
    fastest: AtomicU64,
    /// Bit `n` set: node `n` is sound (work running there may finish).
    sound: AtomicU64,
    /// Bit `n` set: node `n` is not DOWN (reads running there may finish).
    up: AtomicU64,
    /// The switch epoch, for work that must end when routing leaves its database.
    switches: tokio::sync::watch::Sender<u64>,
}

impl Default for SharedActive {
    fn default() -> Self {
        Self {
            word: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            fastest: AtomicU64::new(u64::MAX),
            sound: AtomicU64::new(u64::MAX),
            up: AtomicU64::new(u64::MAX),
            switches: tokio::sync::watch::channel(0).0,
        }
    }
}

/// A lock-free read of the active node and switch epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActiveSnapshot {
    /// The active role.
    pub role: ActiveRole,
    /// The active node: 0 the primary, 1 and up the failovers in order; `None` in limited mode.
    pub node: Option<usize>,
    /// The switch epoch.
    pub epoch: u64,
}

/// A lock-free read of the nodes that may serve reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadSnapshot {
    /// Bit `n` set: node `n` is a healthy replica under the lag bound.
    pub nodes: u64,
    /// The one of them whose last check was fastest, if any.
    pub fastest: Option<usize>,
}

/// The low byte of the word: the active node, or this for limited functionality mode.
const BLOCKING: u64 = 0xff;

impl SharedActive {
    /// Reads the current decision.
    #[inline]
    pub fn load(&self) -> ActiveSnapshot {
        let word = self.word.load(Ordering::Acquire);
        let node = match word & BLOCKING {
            BLOCKING => None,
            // Invariant: only `store` writes the word, with a node below `MAX_NODES`.
            index => Some(index as usize),
        };
        ActiveSnapshot {
            role: RoleNames::active_role(node),
            node,
            epoch: word >> 8,
        }
    }

    fn store(&self, node: Option<usize>, epoch: u64) {
        let index = node
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n < BLOCKING)
            .unwrap_or(BLOCKING);
        self.word.store((epoch << 8) | index, Ordering::Release);
        // Only a new epoch wakes the watchers.
        self.switches.send_if_modified(|current| {
            let changed = *current != epoch;
            *current = epoch;
            changed
        });
    }

    /// Wakes on every switch (a new epoch): for work that must end when routing leaves its database.
    pub fn switches(&self) -> tokio::sync::watch::Receiver<u64> {
        self.switches.subscribe()
    }

    /// Reads the nodes that may serve reads.
    #[inline]
    pub fn reads(&self) -> ReadSnapshot {
        let fastest = self.fastest.load(Ordering::Acquire);
        ReadSnapshot {
            nodes: self.reads.load(Ordering::Acquire),
            fastest: usize::try_from(fastest)
                .ok()
                .filter(|_| fastest != u64::MAX),
        }
    }

    /// Whether work running on node `node` may finish there (it is not DOWN, read-only or fenced).
    #[inline]
    pub fn is_sound(&self, node: usize) -> bool {
        node >= 64 || self.sound.load(Ordering::Acquire) & (1 << node) != 0
    }

    /// Whether node `node` still answers (it is not DOWN).
    #[inline]
    pub fn is_up(&self, node: usize) -> bool {
        node >= 64 || self.up.load(Ordering::Acquire) & (1 << node) != 0
    }

    fn store_reads(&self, nodes: u64, fastest: Option<usize>, sound: u64, up: u64) {
        let sound_before = self.sound.swap(sound, Ordering::AcqRel);
        let up_before = self.up.swap(up, Ordering::AcqRel);
        let before = self.reads.swap(nodes, Ordering::AcqRel);
        if before != nodes || sound_before != sound || up_before != up {
            // Reads running on a replica that left the set are released.
            self.switches.send_modify(|_| {});
        }
        let fastest = fastest
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(u64::MAX);
        self.fastest.store(fastest, Ordering::Release);
    }
}

/// Owns the routing state (the core's [`Router`]): re-decides on every status change, publishes the
/// status and switch events to subscribers in the order they fire, and writes the decision to the
/// [`SharedActive`] word before publishing, so that a listener reacting to a switch already sees it.
pub struct RouterActor {
    router: Router,
    enabled: bool,
    /// What routing knows of each node (0: the primary, then the failovers in order).
    views: Vec<ConnectionView>,
    shared: Arc<SharedActive>,
    subscribers: Vec<(SubscriptionId, Recipient<FailoverEvent>)>,
    next_subscription: u64,
    /// Each node's probe, for the checks routing asks for.
    probes: Vec<Option<Recipient<CheckNow>>>,
    state: Option<Addr<StateActor>>,
    /// Roles, the writer of record and fences, from the checks and the fleet.
    topology: Topology,
    /// Reads go to a replica only while its lag is at most this.
    max_replication_lag: std::time::Duration,
    /// No writer, replicas serve reads (read-only mode's events fired).
    read_only_mode: bool,
    /// Every event, for runtime-neutral subscribers ([`crate::FailoverHandle::event_stream`]).
    stream: tokio::sync::broadcast::Sender<FailoverEvent>,
    /// Whether the state store answers (from its availability events).
    store_available: bool,
}

impl RouterActor {
    /// A router on the primary, epoch 0, with the given failback, fencing on or off. With
    /// `enabled = false` it never leaves the primary.
    pub(crate) fn with_topology(
        names: RoleNames,
        enabled: bool,
        failback: Failback,
        fencing: bool,
        shared: Arc<SharedActive>,
    ) -> Self {
        shared.store(Some(0), 0);
        let nodes = names.node_count();
        let node_names = (0..nodes)
            .map(|n| names.node_name(Some(n)).to_owned())
            .collect();
        Self {
            topology: Topology::new(node_names, fencing),
            max_replication_lag: std::time::Duration::from_secs(5),
            read_only_mode: false,
            stream: tokio::sync::broadcast::channel(1024).0,
            store_available: true,
            router: Router::new(names).with_failback(failback),
            enabled,
            views: vec![ConnectionView::default(); nodes],
            shared,
            subscribers: Vec::new(),
            next_subscription: 1,
            probes: vec![None; nodes],
            state: None,
        }
    }

    /// Reads go to a replica only while its replication lag is at most `max_lag`.
    pub(crate) fn with_max_replication_lag(mut self, max_lag: std::time::Duration) -> Self {
        self.max_replication_lag = max_lag;
        self
    }

    pub(crate) fn set_state(&mut self, state: Addr<StateActor>) {
        self.state = Some(state);
    }

    fn publish(&mut self, events: Vec<FailoverEvent>) {
        for event in events {
            tracing::info!(event = event.kind.name(), payload = ?event.kind, "failover event");
            let store_available = match event.kind {
                EventKind::CacheUnavailable { .. } => Some(false),
                EventKind::CacheRestored {} => Some(true),
                _ => None,
            };
            if let Some(available) = store_available {
                self.store_available = available;
                crate::metrics::record_store_available(available);
            }
            // Nobody listening on the stream is fine; a receiver that lags hears `Lagged`.
            let _ = self.stream.send(event.clone());
            // Every event reaches every live subscriber, whatever its mailbox size (`do_send` does not
            // drop on a full mailbox); a stopped subscriber is unsubscribed.
            self.subscribers.retain(|(id, recipient)| {
                if recipient.connected() {
                    recipient.do_send(event.clone());
                    true
                } else {
                    tracing::info!(subscription = id.0, "subscriber stopped; unsubscribed");
                    false
                }
            });
        }
    }

    fn reroute(&mut self, origin: EventOrigin) {
        if !self.enabled {
            return;
        }
        let before = self.router.active_node();
        let fenced = self.topology.fenced();
        let outcome = self.router.update(&self.views, &fenced, chrono::Utc::now());
        self.after_change(before, outcome.events, origin);
        self.update_reads(origin);
        if let Some(node) = outcome.check_now
            && let Some(Some(probe)) = self.probes.get(node)
        {
            probe.do_send(CheckNow { confirm: true });
        }
    }

    /// Publishes the nodes that may serve reads, and read-only mode's events.
    fn update_reads(&mut self, origin: EventOrigin) {
        let mut nodes = 0u64;
        let mut fastest: Option<(usize, std::time::Duration)> = None;
        for (i, view) in self.views.iter().enumerate().take(64) {
            if dbfailover_core::route::readable(
                view,
                self.topology.facts(i),
                self.max_replication_lag,
            ) {
                nodes |= 1 << i;
                let latency = view.latency.unwrap_or(std::time::Duration::MAX);
                if fastest.is_none_or(|(_, best)| latency < best) {
                    fastest = Some((i, latency));
                }
            }
        }
        let fenced = self.topology.fenced();
        let sound = self
            .views
            .iter()
            .enumerate()
            .take(64)
            .filter(|(i, view)| {
                dbfailover_core::route::sound(view, fenced.get(*i).copied().unwrap_or(false))
            })
            .fold(0u64, |mask, (i, _)| mask | (1 << i));
        let up = self
            .views
            .iter()
            .enumerate()
            .take(64)
            .filter(|(_, view)| view.status != ConnectionStatus::Down)
            .fold(0u64, |mask, (i, _)| mask | (1 << i));
        self.shared
            .store_reads(nodes, fastest.map(|(i, _)| i), sound, up);
        let read_only = self.router.active_node().is_none() && nodes != 0;
        if read_only != self.read_only_mode {
            self.read_only_mode = read_only;
            let now = chrono::Utc::now();
            let kind = if read_only {
                let names = self.router.names();
                EventKind::ReadOnlyModeActivated {
                    read_connection_names: (0..self.views.len())
                        .filter(|i| nodes & (1 << i) != 0)
                        .map(|i| names.node_name(Some(i)).to_owned())
                        .collect(),
                }
            } else {
                EventKind::ReadOnlyModeExited {}
            };
            self.publish(vec![FailoverEvent::new(now, kind).with_origin(origin)]);
        }
    }

    /// Publishes the decision (the word, metrics) and then the switch `events`, made by `origin`.
    fn after_change(
        &mut self,
        before: Option<usize>,
        events: Vec<FailoverEvent>,
        origin: EventOrigin,
    ) {
        let events = events.into_iter().map(|e| e.with_origin(origin)).collect();
        let after = self.router.active_node();
        self.shared.store(after, self.router.epoch());
        crate::metrics::record_active(self.router.names(), after, before != after);
        if before != after {
            let names = self.router.names();
            tracing::warn!(
                from = names.node_name(before),
                to = names.node_name(after),
                role = %RoleNames::active_role(after),
                epoch = self.router.epoch(),
                "active connection switched"
            );
        }
        self.publish(events);
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Listeners may be slow; a large mailbox keeps the router from blocking on them.
        ctx.set_mailbox_capacity(1024);
        // What is true before the first check: the active connection, and a store presumed to answer
        // until an operation on it fails.
        crate::metrics::record_active(self.router.names(), self.router.active_node(), false);
        crate::metrics::record_store_available(self.store_available);
    }
}

impl Handler<SetProbes> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: SetProbes, _ctx: &mut Context<Self>) {
        for (node, probe) in msg.probes.into_iter().enumerate() {
            if let Some(slot) = self.probes.get_mut(node) {
                *slot = probe;
            }
        }
    }
}

impl Handler<StatusChanged> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: StatusChanged, _ctx: &mut Context<Self>) {
        if let Some(transition) = &msg.transition {
            let events = status_events(msg.role, &msg.connection, transition)
                .into_iter()
                .map(|e| e.with_origin(msg.origin))
                .collect();
            self.publish(events);
        }
        let Some(node) = self.router.names().node_of(&msg.connection) else {
            return;
        };
        if let Some(view) = self.views.get_mut(node) {
            *view = msg.view;
        }
        let before = self.topology.record().clone();
        let changes = if msg.view.status == ConnectionStatus::Down {
            self.topology.observe_down(node)
        } else if let Some(facts) = &msg.facts {
            self.topology.observe(node, facts)
        } else {
            Vec::new()
        };
        self.topology_changed(changes, &before, EventOrigin::Local);
        self.reroute(msg.origin);
    }
}

impl Handler<Publish> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, _ctx: &mut Context<Self>) {
        self.publish(vec![msg.0]);
    }
}

impl Handler<GetActiveConnection> for RouterActor {
    type Result = MessageResult<GetActiveConnection>;

    fn handle(&mut self, _msg: GetActiveConnection, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.router.active())
    }
}

impl Handler<Subscribe> for RouterActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        let id = SubscriptionId(self.next_subscription);
        self.next_subscription += 1;
        // What happened before it came is not lost: the subscriber hears what is true now first,
        // then every event (`do_send` does not drop on a full mailbox).
        msg.0.do_send(self.current_state());
        self.subscribers.push((id, msg.0));
        MessageResult(id)
    }
}

impl RouterActor {
    /// What is true now, as an event.
    fn current_state(&self) -> FailoverEvent {
        let names = self.router.names();
        FailoverEvent::new(
            chrono::Utc::now(),
            EventKind::CurrentState {
                active_connection_name: names.node_name(self.router.active_node()).to_owned(),
                connections: self
                    .views
                    .iter()
                    .enumerate()
                    .map(|(i, view)| (names.node_name(Some(i)).to_owned(), view.status))
                    .collect(),
                store_available: self.store_available,
            },
        )
    }
}

impl Handler<SubscribeStream> for RouterActor {
    type Result = MessageResult<SubscribeStream>;

    fn handle(&mut self, _msg: SubscribeStream, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult((self.current_state(), self.stream.subscribe()))
    }
}

impl Handler<Unsubscribe> for RouterActor {
    type Result = bool;

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) -> bool {
        let before = self.subscribers.len();
        self.subscribers.retain(|(id, _)| *id != msg.0);
        self.subscribers.len() != before
    }
}

impl RouterActor {
    /// Applies a forced switch: its target is HEALTHY and preferred until probes find it DOWN.
    fn apply_force(&mut self, preference: Preference, origin: EventOrigin) {
        let node = preference.node();
        // An operator's order: a fence on its target is lifted.
        let before = self.topology.record().clone();
        let lifted = self.topology.unfence(node);
        self.topology_changed(lifted, &before, origin);
        if let Some(view) = self.views.get_mut(node) {
            view.status = ConnectionStatus::Healthy;
            view.checked = true;
        }
        let before = self.router.active_node();
        let outcome = self.router.force(node, chrono::Utc::now());
        tracing::warn!(target_connection = ?preference, ?origin, "forced switch");
        self.after_change(before, outcome.events, origin);
    }
}

impl Handler<ForceSwitch> for RouterActor {
    type Result = ResponseActFuture<Self, ActiveConnection>;

    fn handle(&mut self, msg: ForceSwitch, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.enabled {
            tracing::warn!("forced switch ignored: failover is disabled (enabled = false)");
            return Box::pin(actix::fut::ready(self.router.active()));
        }
        let target: Arc<str> = self.router.names().node_name(Some(msg.0.node())).into();
        let Some(state) = self.state.clone() else {
            self.apply_force(msg.0, EventOrigin::Local);
            return Box::pin(actix::fut::ready(self.router.active()));
        };
        let shared = state.send(ShareForce {
            preference: msg.0,
            target,
        });
        Box::pin(shared.into_actor(self).map(move |answer, act, _ctx| {
            match answer {
                Ok(Some(preference)) => act.apply_force(preference, EventOrigin::Local),
                // The state actor is gone: the switch is this instance's alone.
                Ok(None) | Err(_) => act.apply_force(msg.0, EventOrigin::Local),
            }
            act.router.active()
        }))
    }
}

impl RouterActor {
    /// Publishes topology changes and shares the decisions if they changed.
    fn topology_changed(
        &mut self,
        changes: Vec<TopologyEvent>,
        before: &TopologyRecord,
        origin: EventOrigin,
    ) {
        let now = chrono::Utc::now();
        for change in &changes {
            tracing::warn!(change = ?change, ?origin, "replication topology changed");
            if matches!(change, TopologyEvent::SplitBrain { .. }) {
                crate::metrics::record_split_brain();
            }
        }
        let fenced = self.topology.fenced();
        for (node, fenced) in fenced.into_iter().enumerate() {
            let name = self.router.names().node_name(Some(node)).to_owned();
            crate::metrics::record_node(&name, self.topology.facts(node), fenced);
        }
        let events = changes
            .into_iter()
            .map(|c| topology_event(c, now).with_origin(origin))
            .collect();
        self.publish(events);
        if self.topology.record() != before
            && origin == EventOrigin::Local
            && let Some(state) = &self.state
        {
            state.do_send(ShareTopology(self.topology.record().clone()));
        }
    }
}

impl Handler<ApplyTopology> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyTopology, _ctx: &mut Context<Self>) {
        let before = self.topology.record().clone();
        let changes = self.topology.adopt(&msg.0);
        self.topology_changed(changes, &before, EventOrigin::Learned);
        self.reroute(EventOrigin::Learned);
    }
}

impl Handler<LiftFence> for RouterActor {
    type Result = bool;

    fn handle(&mut self, msg: LiftFence, _ctx: &mut Context<Self>) -> bool {
        let Some(node) = self.router.names().node_of(&msg.0) else {
            return false;
        };
        let before = self.topology.record().clone();
        let lifted = self.topology.unfence(node);
        let was_fenced = !lifted.is_empty();
        tracing::warn!(connection = %msg.0, was_fenced, "fence lifted by an operator");
        self.topology_changed(lifted, &before, EventOrigin::Local);
        self.reroute(EventOrigin::Local);
        was_fenced
    }
}

impl Handler<ApplyForce> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyForce, _ctx: &mut Context<Self>) {
        if self.enabled {
            self.apply_force(msg.preference, msg.origin);
        }
    }
}

impl Handler<crate::messages::Stop> for RouterActor {
    type Result = ();

    fn handle(&mut self, _msg: crate::messages::Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
