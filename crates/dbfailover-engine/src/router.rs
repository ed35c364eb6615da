//! The `RouterActor`: owns the active connection, answers `GetActiveConnection`, publishes events.

use crate::messages::{
    ApplyForce, CheckNow, ForceSwitch, GetActiveConnection, Publish, SetProbes, ShareForce,
    StatusChanged, Subscribe, SubscriptionId, Unsubscribe,
};
use crate::state::StateActor;
use actix::prelude::*;
use dbfailover_core::event::status_events;
use dbfailover_core::route::Preference;
use dbfailover_core::{
    ActiveConnection, ActiveRole, ConnectionStatus, ConnectionView, EventOrigin, FailoverEvent,
    Role, RoleNames, Router,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The router's decision, published for readers that must not wait on a mailbox (the routed handle).
///
/// One atomic word holds the active role and the switch epoch, so a read is one load and never tears.
#[derive(Debug, Default)]
pub struct SharedActive(AtomicU64);

/// A lock-free read of the active role and switch epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveSnapshot {
    /// The active role.
    pub role: ActiveRole,
    /// The switch epoch.
    pub epoch: u64,
}

impl SharedActive {
    /// Reads the current decision.
    #[inline]
    pub fn load(&self) -> ActiveSnapshot {
        let word = self.0.load(Ordering::Acquire);
        ActiveSnapshot {
            // Invariant: only `store` writes the word, always with a valid role index in the low bits;
            // the fallback is unreachable and errs on the side of the primary, as before the first check.
            role: ActiveRole::from_index((word & 0b11) as u8).unwrap_or(ActiveRole::Primary),
            epoch: word >> 2,
        }
    }

    fn store(&self, role: ActiveRole, epoch: u64) {
        self.0
            .store((epoch << 2) | u64::from(role.to_index()), Ordering::Release);
    }
}

/// Owns the routing state (the core's [`Router`]): re-decides on every status change, publishes the
/// status and switch events to subscribers in the order they fire, and writes the decision to the
/// [`SharedActive`] word before publishing, so that a listener reacting to a switch already sees it.
pub struct RouterActor {
    router: Router,
    enabled: bool,
    primary: ConnectionView,
    failover: ConnectionView,
    shared: Arc<SharedActive>,
    subscribers: Vec<(SubscriptionId, Recipient<FailoverEvent>)>,
    next_subscription: u64,
    probe_primary: Option<Recipient<CheckNow>>,
    probe_failover: Option<Recipient<CheckNow>>,
    state: Option<Addr<StateActor>>,
}

impl RouterActor {
    /// A router on the primary, epoch 0. With `enabled = false` it never leaves the primary.
    pub fn new(names: RoleNames, enabled: bool, shared: Arc<SharedActive>) -> Self {
        shared.store(ActiveRole::Primary, 0);
        Self {
            router: Router::new(names),
            enabled,
            primary: ConnectionView::default(),
            failover: ConnectionView::default(),
            shared,
            subscribers: Vec::new(),
            next_subscription: 1,
            probe_primary: None,
            probe_failover: None,
            state: None,
        }
    }

    pub(crate) fn set_state(&mut self, state: Addr<StateActor>) {
        self.state = Some(state);
    }

    fn publish(&mut self, events: Vec<FailoverEvent>) {
        for event in events {
            tracing::info!(event = event.kind.name(), payload = ?event.kind, "failover event");
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
        let before = self.router.active_role();
        let outcome = self
            .router
            .update(self.primary, self.failover, chrono::Utc::now());
        let events = outcome
            .events
            .into_iter()
            .map(|e| e.with_origin(origin))
            .collect();
        self.after_change(before, events);
        if let Some(role) = outcome.check_now {
            let probe = match role {
                Role::Primary => self.probe_primary.as_ref(),
                _ => self.probe_failover.as_ref(),
            };
            if let Some(probe) = probe {
                probe.do_send(CheckNow { confirm: true });
            }
        }
    }

    fn after_change(&mut self, before: ActiveRole, events: Vec<FailoverEvent>) {
        let after = self.router.active_role();
        self.shared.store(after, self.router.epoch());
        crate::metrics::record_active(self.router.names(), after, before != after);
        if before != after {
            tracing::warn!(
                from = %before,
                to = %after,
                connection = self.router.names().name(after),
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
    }
}

impl Handler<SetProbes> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: SetProbes, _ctx: &mut Context<Self>) {
        self.probe_primary = msg.primary;
        self.probe_failover = msg.failover;
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
        match msg.role {
            Role::Primary => self.primary = msg.view,
            Role::Failover => self.failover = msg.view,
            Role::Other => return,
        }
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
        self.subscribers.push((id, msg.0));
        MessageResult(id)
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
        let view = match preference {
            Preference::Primary => &mut self.primary,
            Preference::Failover => &mut self.failover,
        };
        *view = ConnectionView::checked(ConnectionStatus::Healthy);
        let before = self.router.active_role();
        let outcome = self.router.force(preference, chrono::Utc::now());
        tracing::warn!(target_connection = ?preference, ?origin, "forced switch");
        let events = outcome
            .events
            .into_iter()
            .map(|e| e.with_origin(origin))
            .collect();
        self.after_change(before, events);
    }
}

impl Handler<ForceSwitch> for RouterActor {
    type Result = ResponseActFuture<Self, ActiveConnection>;

    fn handle(&mut self, msg: ForceSwitch, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.enabled {
            tracing::warn!("forced switch ignored: failover is disabled (enabled = false)");
            return Box::pin(actix::fut::ready(self.router.active()));
        }
        let target: Arc<str> = match msg.0 {
            Preference::Primary => self.router.names().primary.as_str().into(),
            Preference::Failover => self.router.names().failover.as_str().into(),
        };
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

impl Handler<ApplyForce> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyForce, _ctx: &mut Context<Self>) {
        if self.enabled {
            self.apply_force(msg.preference, msg.origin);
        }
    }
}
