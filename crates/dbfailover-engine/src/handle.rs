//! [`FailoverHandle`]: what a service keeps of a running engine, and the engine's lifetime: the
//! last handle dropped stops every actor (and the engine's thread, when it has one);
//! [`FailoverHandle::shutdown`] does the same and waits until it is done.

use crate::error::EngineError;
use crate::messages::{
    CheckNow, ConnectionReport, ForceSwitch, GetActiveConnection, GetConnectionStates, LiftFence,
    RunCheck, Stop, Subscribe, SubscribeStream, SubscriptionId, Unsubscribe,
};
use crate::probe::ProbeActor;
use crate::router::{ActiveSnapshot, RouterActor, SharedActive};
use crate::state::StateActor;
use crate::stream::EventStream;
use actix::prelude::*;
use dbfailover_core::route::Preference;
use dbfailover_core::{ActiveConnection, FailoverEvent, RoleNames};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a request to the engine may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine's own thread and actix `System`, when it was started with
/// [`FailoverSystem::start_in_thread`](crate::FailoverSystem::start_in_thread).
pub(crate) struct Owned {
    pub(crate) system: actix::System,
    pub(crate) thread: Mutex<Option<OwnedThread>>,
}

/// The engine's thread, and the signal it sends once its `System` has ended.
pub(crate) struct OwnedThread {
    join: std::thread::JoinHandle<()>,
    ended: tokio::sync::oneshot::Receiver<()>,
}

/// The running engine, shared by every clone of its [`FailoverHandle`]. Dropping it (the last handle
/// gone) stops the engine: the drop guard.
pub(crate) struct Inner {
    pub(crate) router: Addr<RouterActor>,
    pub(crate) state: Addr<StateActor>,
    pub(crate) probes: HashMap<String, Addr<ProbeActor>>,
    pub(crate) shared: Arc<SharedActive>,
    pub(crate) names: RoleNames,
    pub(crate) check_timeout: Duration,
    pub(crate) arbiter: actix::dev::ArbiterHandle,
    pub(crate) owned: Option<Owned>,
    /// Stop was asked for already.
    pub(crate) stopped: AtomicBool,
}

impl Inner {
    /// Keeps the engine's thread, to wait for it in `shutdown`.
    pub(crate) fn adopt_thread(
        &self,
        join: std::thread::JoinHandle<()>,
        ended: tokio::sync::oneshot::Receiver<()>,
    ) {
        if let Some(owned) = &self.owned
            && let Ok(mut slot) = owned.thread.lock()
        {
            *slot = Some(OwnedThread { join, ended });
        }
    }

    /// Tells every actor to stop (they hold each other's addresses, so none would stop on its own),
    /// and the engine's own `System`, if it has one. Returns at once; idempotent.
    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for probe in self.probes.values() {
            probe.do_send(Stop);
        }
        self.state.do_send(Stop);
        self.router.do_send(Stop);
        if let Some(owned) = &self.owned {
            owned.system.stop();
        }
    }

    /// Whether every actor has stopped.
    fn all_stopped(&self) -> bool {
        !self.router.connected()
            && !self.state.connected()
            && self.probes.values().all(|p| !p.connected())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a service keeps of a running engine: cloneable, `Send + Sync`, usable from any thread or runtime.
#[derive(Clone)]
pub struct FailoverHandle {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for FailoverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverHandle")
            .field("names", &self.inner.names)
            .field("active", &self.active_snapshot())
            .finish()
    }
}

async fn ask<A, M>(addr: &Addr<A>, msg: M, request: &'static str) -> Result<M::Result, EngineError>
where
    A: Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, addr.send(msg)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(EngineError::Stopped),
        Err(_) => Err(EngineError::Timeout {
            request,
            timeout: REQUEST_TIMEOUT,
        }),
    }
}

impl FailoverHandle {
    /// The configured names of primary, failover and blocking.
    pub fn names(&self) -> &RoleNames {
        &self.inner.names
    }

    /// The router's decision, read without a mailbox round trip (one atomic load).
    #[inline]
    pub fn active_snapshot(&self) -> ActiveSnapshot {
        self.inner.shared.load()
    }

    /// The shared word the router publishes its decision to, for routed handles.
    pub fn shared_active(&self) -> Arc<SharedActive> {
        Arc::clone(&self.inner.shared)
    }

    /// The active connection, read without a mailbox round trip.
    pub fn active(&self) -> ActiveConnection {
        let snapshot = self.active_snapshot();
        ActiveConnection::new(
            snapshot.role,
            self.inner.names.node_name(snapshot.node),
            snapshot.epoch,
        )
    }

    /// Asks the router for the active connection and waits for its answer (bounded): a round trip
    /// through its mailbox, so the answer comes after every event already sent to it. The data path
    /// reads [`FailoverHandle::active`] instead.
    pub async fn active_connection(&self) -> Result<ActiveConnection, EngineError> {
        ask(
            &self.inner.router,
            GetActiveConnection,
            "GetActiveConnection",
        )
        .await
    }

    /// The arbiter the engine's actors run on. A service without an actix `System` of its own (one that
    /// used [`FailoverSystem::start_in_thread`](crate::FailoverSystem::start_in_thread)) starts its event-listener actors here:
    /// `MyListener::start_in_arbiter(handle.arbiter(), |_| MyListener)`.
    pub fn arbiter(&self) -> &actix::dev::ArbiterHandle {
        &self.inner.arbiter
    }

    /// The router's address, for services that send it messages themselves.
    pub fn router(&self) -> &Addr<RouterActor> {
        &self.inner.router
    }

    /// Delivers every event to `listener` from now on (any actor's `Recipient<FailoverEvent>`).
    pub async fn subscribe(
        &self,
        listener: Recipient<FailoverEvent>,
    ) -> Result<SubscriptionId, EngineError> {
        ask(&self.inner.router, Subscribe(listener), "Subscribe").await
    }

    /// Every event from now on, without an actor (any async runtime): the first one is
    /// `CurrentState` (the active connection, each connection's status, whether the store answers),
    /// then every event as it fires. A receiver more than 1024 events behind skips the oldest and
    /// says so ([`EventStreamError::Lagged`](crate::EventStreamError::Lagged)).
    pub async fn event_stream(&self) -> Result<EventStream, EngineError> {
        let (first, receiver) = ask(&self.inner.router, SubscribeStream, "SubscribeStream").await?;
        Ok(EventStream::new(first, receiver))
    }

    /// Stops delivering events to a subscriber; `false` when it was not subscribed.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<bool, EngineError> {
        ask(&self.inner.router, Unsubscribe(id), "Unsubscribe").await
    }

    /// Switches to the primary by hand: marks it HEALTHY and restores the normal preference.
    pub async fn force_primary(&self) -> Result<ActiveConnection, EngineError> {
        ask(
            &self.inner.router,
            ForceSwitch(Preference::Primary),
            "ForceSwitch",
        )
        .await
    }

    /// Switches to the failover by hand: marks it HEALTHY and prefers it until it is DOWN or the
    /// primary is forced back.
    pub async fn force_failover(&self) -> Result<ActiveConnection, EngineError> {
        ask(
            &self.inner.router,
            ForceSwitch(Preference::Failover),
            "ForceSwitch",
        )
        .await
    }

    /// An operator's order: `connection` (fenced after a promotion left it behind, or for an older
    /// timeline) may take writes again. Shared with every instance through the store. Answers whether
    /// it was fenced.
    pub async fn lift_fence(&self, connection: &str) -> Result<bool, EngineError> {
        ask(
            &self.inner.router,
            LiftFence(connection.to_owned()),
            "LiftFence",
        )
        .await
    }

    /// Checks `connection` now instead of waiting for its interval.
    pub fn check_now(&self, connection: &str) -> Result<(), EngineError> {
        self.probe(connection)?.do_send(CheckNow { confirm: false });
        Ok(())
    }

    /// Runs one check of `connection` now (after the one in flight, if any) and answers its state once
    /// that check is recorded: the seed's `failover:health-check CONNECTION`. Bounded by the probe's
    /// timeout plus the request timeout.
    pub async fn check(&self, connection: &str) -> Result<ConnectionReport, EngineError> {
        let probe = self.probe(connection)?.clone();
        match tokio::time::timeout(
            self.inner.check_timeout + REQUEST_TIMEOUT,
            probe.send(RunCheck),
        )
        .await
        {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) | Ok(Err(_)) => return Err(EngineError::Stopped),
            Err(_) => {
                return Err(EngineError::Timeout {
                    request: "RunCheck",
                    timeout: self.inner.check_timeout + REQUEST_TIMEOUT,
                });
            }
        }
        self.connection_states()
            .await?
            .into_iter()
            .find(|report| report.name == connection)
            .ok_or_else(|| EngineError::UnknownConnection {
                connection: connection.to_owned(),
            })
    }

    /// Passive detection: a query on `connection` just failed with a connection error. Starts
    /// confirming checks at the fast interval; returns at once (the data path never waits on this).
    pub fn report_query_failure(&self, connection: &str) -> Result<(), EngineError> {
        self.probe(connection)?.do_send(CheckNow { confirm: true });
        Ok(())
    }

    /// [`FailoverHandle::report_query_failure`] for node `node` (0: the primary, then the failovers in
    /// order); nothing for limited functionality mode (`None`).
    pub fn report_node_failure(&self, node: Option<usize>) -> Result<(), EngineError> {
        let Some(node) = node else {
            return Ok(());
        };
        let name = self.inner.names.node_name(Some(node)).to_owned();
        self.report_query_failure(&name)
    }

    fn probe(&self, connection: &str) -> Result<&Addr<ProbeActor>, EngineError> {
        self.inner
            .probes
            .get(connection)
            .ok_or_else(|| EngineError::UnknownConnection {
                connection: connection.to_owned(),
            })
    }

    /// Every monitored connection's state (status, failure count, last check, latency, writable).
    pub async fn connection_states(&self) -> Result<Vec<ConnectionReport>, EngineError> {
        ask(
            &self.inner.state,
            GetConnectionStates,
            "GetConnectionStates",
        )
        .await
    }

    /// Stops the engine and waits (at most [`REQUEST_TIMEOUT`]) until every actor has stopped and,
    /// for an engine started with [`FailoverSystem::start_in_thread`](crate::FailoverSystem::start_in_thread),
    /// its thread has ended. Every clone of this handle then answers [`EngineError::Stopped`].
    /// Dropping the last handle stops the engine too, without waiting.
    ///
    /// Never blocks the calling thread: it awaits. Answers whether everything stopped in time. Await
    /// it from outside the engine's own arbiter: a task running there stops with the engine (for an
    /// engine started with `start_in_thread`, such a future is dropped and never completes).
    pub async fn shutdown(self) -> bool {
        let inner = &self.inner;
        inner.stop();
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let thread = inner
            .owned
            .as_ref()
            .and_then(|owned| owned.thread.lock().ok().and_then(|mut slot| slot.take()));
        if let Some(thread) = thread {
            // The actors stop with their `System`; its thread says when it has ended.
            let ended = tokio::time::timeout_at(deadline, thread.ended)
                .await
                .is_ok();
            if ended {
                // It has returned from `System::run`: joining takes no time.
                let _ = thread.join.join();
            } else {
                tracing::warn!("failover engine thread did not stop within {REQUEST_TIMEOUT:?}");
            }
            return ended;
        }
        while !inner.all_stopped() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("failover engine actors did not stop within {REQUEST_TIMEOUT:?}");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}
