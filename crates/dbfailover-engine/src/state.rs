//! The `StateActor`: owns the thresholds and every connection's tracker, persists state, tells the router.

use crate::messages::{
    ConnectionReport, ForceStatus, GetConnectionStates, ProbeCompleted, Publish, StatusChanged,
};
use crate::router::RouterActor;
use crate::store::{StateStore, StoredState};
use actix::prelude::*;
use dbfailover_core::{
    ConnectionStatus, ConnectionView, EventKind, FailoverEvent, HealthTracker, Role,
    StatusTransition, Thresholds,
};
use std::sync::Arc;
use std::time::Duration;

struct Tracked {
    name: Arc<str>,
    role: Role,
    tracker: HealthTracker,
}

/// Records every check result in the connection's tracker (UNKNOWN / HEALTHY / DOWN with the failure and
/// recovery thresholds), writes the state to the [`StateStore`], and sends each change to the router.
///
/// A store that errors, hangs or panics never stops this: each store call runs in its own task bounded by
/// the store timeout, and the actor goes on from its local trackers. The first failure of an outage
/// publishes `CacheUnavailable`, the first success after it `CacheRestored`.
pub struct StateActor {
    connections: Vec<Tracked>,
    store: Arc<dyn StateStore>,
    store_timeout: Duration,
    router: Addr<RouterActor>,
    store_available: bool,
}

impl StateActor {
    /// A state actor for `connections` (name and role), starting UNKNOWN.
    pub fn new(
        connections: Vec<(Arc<str>, Role)>,
        thresholds: Thresholds,
        store: Arc<dyn StateStore>,
        store_timeout: Duration,
        router: Addr<RouterActor>,
    ) -> Self {
        Self {
            connections: connections
                .into_iter()
                .map(|(name, role)| Tracked {
                    name,
                    role,
                    tracker: HealthTracker::new(thresholds),
                })
                .collect(),
            store,
            store_timeout,
            router,
            store_available: true,
        }
    }

    fn find(&mut self, name: &str) -> Option<&mut Tracked> {
        self.connections.iter_mut().find(|c| &*c.name == name)
    }

    fn tell_router(&self, tracked_index: usize, transition: Option<StatusTransition>) {
        let Some(tracked) = self.connections.get(tracked_index) else {
            return;
        };
        crate::metrics::record_status(&tracked.name, tracked.tracker.status());
        self.router.do_send(StatusChanged {
            connection: Arc::clone(&tracked.name),
            role: tracked.role,
            view: ConnectionView {
                status: tracked.tracker.status(),
                checked: tracked.tracker.has_results(),
            },
            transition,
        });
    }

    /// Runs one store operation in its own task, bounded by the store timeout, and tracks outages.
    fn store_call<F, T>(
        &mut self,
        what: &'static str,
        call: F,
        ctx: &mut Context<Self>,
    ) -> SpawnHandle
    where
        F: FnOnce(Arc<dyn StateStore>) -> crate::store::StoreFuture<'static, T> + Send + 'static,
        T: Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let timeout = self.store_timeout;
        let task = tokio::spawn(async move { tokio::time::timeout(timeout, call(store)).await });
        let abort = task.abort_handle();
        let outcome = async move {
            match tokio::time::timeout(timeout + Duration::from_millis(50), task).await {
                Ok(Ok(Ok(Ok(_)))) => Ok(()),
                Ok(Ok(Ok(Err(e)))) => Err(e.to_string()),
                Ok(Ok(Err(_))) | Err(_) => {
                    abort.abort();
                    Err(format!(
                        "state store did not answer {what} within {timeout:?}"
                    ))
                }
                Ok(Err(join)) if join.is_panic() => {
                    Err(format!("state store panicked during {what}"))
                }
                Ok(Err(_)) => Err(format!("state store {what} was cancelled")),
            }
        };
        ctx.spawn(outcome.into_actor(self).map(move |outcome, act, _ctx| {
            act.note_store_outcome(what, outcome);
        }))
    }

    fn note_store_outcome(&mut self, what: &'static str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) if !self.store_available => {
                self.store_available = true;
                tracing::info!("state store available again");
                self.router.do_send(Publish(FailoverEvent::new(
                    chrono::Utc::now(),
                    EventKind::CacheRestored {},
                )));
            }
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(operation = what, %error, "state store unavailable; going on from local state");
                if self.store_available {
                    self.store_available = false;
                    self.router.do_send(Publish(FailoverEvent::new(
                        chrono::Utc::now(),
                        EventKind::CacheUnavailable { error },
                    )));
                }
            }
        }
    }

    fn persist(&mut self, index: usize, ctx: &mut Context<Self>) {
        let Some(tracked) = self.connections.get(index) else {
            return;
        };
        let name = Arc::clone(&tracked.name);
        let state = StoredState {
            status: tracked.tracker.status(),
            failure_count: tracked.tracker.state().failure_count,
        };
        self.store_call(
            "save",
            move |store| Box::pin(async move { store.save(&name, state).await }),
            ctx,
        );
    }
}

impl Actor for StateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Resume from the store (a restarted engine, or another instance's knowledge). Bounded; an
        // unavailable store leaves every connection UNKNOWN, as before the first check.
        for index in 0..self.connections.len() {
            let name = Arc::clone(&self.connections[index].name);
            let store = Arc::clone(&self.store);
            let timeout = self.store_timeout;
            let load = async move {
                let task = tokio::spawn(async move {
                    tokio::time::timeout(timeout, async move { store.load(&name).await }).await
                });
                match tokio::time::timeout(timeout + Duration::from_millis(50), task).await {
                    Ok(Ok(Ok(result))) => result.map_err(|e| e.to_string()),
                    _ => Err(format!(
                        "state store did not answer load within {timeout:?}"
                    )),
                }
            };
            ctx.wait(
                load.into_actor(self)
                    .map(move |loaded, act, _ctx| match loaded {
                        Ok(Some(stored)) => {
                            if let Some(tracked) = act.connections.get_mut(index) {
                                let thresholds = tracked.tracker.thresholds();
                                tracked.tracker = HealthTracker::resume(
                                    thresholds,
                                    stored.status,
                                    stored.failure_count,
                                );
                                tracing::info!(
                                    connection = %tracked.name,
                                    status = %stored.status,
                                    failure_count = stored.failure_count,
                                    "resumed from the state store"
                                );
                            }
                            act.tell_router(index, None);
                        }
                        Ok(None) => {}
                        Err(error) => act.note_store_outcome("load", Err(error)),
                    }),
            );
        }
    }
}

impl Supervised for StateActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("state actor restarted by its supervisor");
    }
}

impl Handler<ProbeCompleted> for StateActor {
    type Result = MessageResult<ProbeCompleted>;

    fn handle(&mut self, msg: ProbeCompleted, ctx: &mut Context<Self>) -> Self::Result {
        let Some(index) = self
            .connections
            .iter()
            .position(|c| c.name == msg.connection)
        else {
            return MessageResult(ConnectionStatus::Unknown);
        };
        let tracked = &mut self.connections[index];
        let transition = tracked.tracker.record(&msg.result, msg.at);
        let status = tracked.tracker.status();
        if let Some(t) = &transition {
            tracing::info!(
                connection = %tracked.name,
                from = %t.from,
                to = %t.to,
                reason = t.reason.as_deref().unwrap_or(""),
                "connection status changed"
            );
        }
        self.persist(index, ctx);
        self.tell_router(index, transition);
        MessageResult(status)
    }
}

impl Handler<ForceStatus> for StateActor {
    type Result = ();

    fn handle(&mut self, msg: ForceStatus, ctx: &mut Context<Self>) {
        let now = chrono::Utc::now();
        let Some(tracked) = self.find(&msg.connection) else {
            return;
        };
        if tracked.tracker.force(msg.status, now).is_some() {
            tracing::info!(connection = %msg.connection, status = %msg.status, "status set by a forced switch");
        }
        if let Some(index) = self
            .connections
            .iter()
            .position(|c| c.name == msg.connection)
        {
            self.persist(index, ctx);
            self.tell_router(index, None);
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
