//! `FailoverSystem`: wires the actors together and starts them; `FailoverHandle`: what a service keeps.

use crate::error::{BuildError, EngineError};
use crate::messages::{
    CheckNow, ConnectionReport, ForceSwitch, GetActiveConnection, GetConnectionStates, LiftFence,
    RunCheck, SetProbes, Subscribe, SubscribeStream, SubscriptionId, Unsubscribe,
};
use crate::probe::{Probe, ProbeActor, ProbeSettings};
use crate::router::{ActiveSnapshot, RouterActor, SharedActive};
use crate::state::StateActor;
use crate::store::{MemoryStore, StateStore};
use actix::prelude::*;
use dbfailover_core::route::Preference;
use dbfailover_core::{ActiveConnection, Config, FailoverEvent, Role, RoleNames};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a request to the engine may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The default bound on one state store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// Builds a [`FailoverSystem`]: a configuration, a probe per monitored database, a state store.
pub struct FailoverSystemBuilder {
    config: Config,
    probes: HashMap<String, Arc<dyn Probe>>,
    store: Option<Arc<dyn StateStore>>,
    store_timeout: Duration,
}

impl FailoverSystemBuilder {
    /// The probe that checks the database `connection`.
    pub fn probe(mut self, connection: impl Into<String>, probe: impl Probe) -> Self {
        self.probes.insert(connection.into(), Arc::new(probe));
        self
    }

    /// The probe that checks the database `connection`, already shared.
    pub fn shared_probe(mut self, connection: impl Into<String>, probe: Arc<dyn Probe>) -> Self {
        self.probes.insert(connection.into(), probe);
        self
    }

    /// Where state is kept. Default: a [`MemoryStore`].
    pub fn store(mut self, store: impl StateStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Where state is kept, already shared (as `dbfailover::store::from_settings` builds it).
    pub fn shared_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Bound on one store call. Default 500 ms.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Validates the configuration and checks that every monitored database has a probe.
    pub fn build(self) -> Result<FailoverSystem, BuildError> {
        self.config.validate()?;
        for name in self.probes.keys() {
            if !self.config.databases.contains_key(name) {
                return Err(BuildError::UnknownProbe {
                    connection: name.clone(),
                });
            }
        }
        if self.config.failover.enabled {
            for name in self.config.databases.keys() {
                if !self.probes.contains_key(name) {
                    return Err(BuildError::MissingProbe {
                        connection: name.clone(),
                    });
                }
            }
        }
        Ok(FailoverSystem {
            config: self.config,
            probes: self.probes,
            store: self
                .store
                .unwrap_or_else(|| Arc::new(MemoryStore::default())),
            store_timeout: self.store_timeout,
        })
    }
}

/// A validated failover engine, ready to start.
pub struct FailoverSystem {
    config: Config,
    probes: HashMap<String, Arc<dyn Probe>>,
    store: Arc<dyn StateStore>,
    store_timeout: Duration,
}

impl FailoverSystem {
    /// Starts building an engine for `config`.
    pub fn builder(config: Config) -> FailoverSystemBuilder {
        FailoverSystemBuilder {
            config,
            probes: HashMap::new(),
            store: None,
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }

    /// Starts the actors on the current actix arbiter. Call it from inside a running actix `System`
    /// (an actix-web service, `#[actix::main]`, `#[actix_rt::test]`).
    pub fn start(self) -> FailoverHandle {
        self.start_actors(None)
    }

    /// Starts the engine on a thread it owns, with its own actix `System`, for services that are not
    /// actix services (`#[tokio::main]`). The thread stops when the last handle is dropped or
    /// [`FailoverHandle::shutdown`] is called.
    pub fn start_in_thread(self) -> Result<FailoverHandle, EngineError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dbfailover-engine".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let owner = actix::System::current();
                    // The receiver waits below; if it is gone there is nobody to serve.
                    let _ = tx.send(self.start_actors(Some(owner)));
                });
                if let Err(error) = system.run() {
                    tracing::error!(%error, "failover engine thread ended with an error");
                }
            })
            .map_err(EngineError::Start)?;
        let handle = rx
            .recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| EngineError::Timeout {
                request: "start",
                timeout: REQUEST_TIMEOUT,
            })?;
        if let Some(owned) = &handle.inner.owned
            && let Ok(mut slot) = owned.thread.lock()
        {
            *slot = Some(thread);
        }
        Ok(handle)
    }

    fn start_actors(self, owner: Option<actix::System>) -> FailoverHandle {
        let names = self.config.role_names();
        let enabled = self.config.failover.enabled;
        let health = &self.config.health_check;
        let shared = Arc::new(SharedActive::default());
        let monitored = self.config.monitored();

        let router = RouterActor::with_topology(
            names.clone(),
            enabled,
            self.config.failover.failback,
            self.config.failover.fencing,
            Arc::clone(&shared),
        )
        .with_max_replication_lag(self.config.failover.max_replication_lag)
        .start();
        let connections: Vec<(Arc<str>, Role)> = monitored
            .iter()
            .map(|m| (Arc::<str>::from(m.name), m.role))
            .collect();
        let state_actor = {
            let connections = connections.clone();
            let thresholds = health.thresholds();
            let store = Arc::clone(&self.store);
            let store_timeout = self.store_timeout;
            let poll_interval = health.interval.interval().unwrap_or(Duration::from_secs(1));
            let record_ttl = self.config.state.ttl;
            let router = router.clone();
            Supervisor::start(move |_| {
                StateActor::new(
                    connections,
                    thresholds,
                    store,
                    store_timeout,
                    poll_interval,
                    router,
                )
                .with_record_ttl(record_ttl)
            })
        };
        router.do_send(WireState(state_actor.clone()));

        let mut probes = HashMap::new();
        if enabled {
            for m in &monitored {
                let Some(probe) = self.probes.get(m.name).cloned() else {
                    continue;
                };
                let settings = ProbeSettings {
                    connection: Arc::from(m.name),
                    timeout: health.timeout,
                    schedule: health.interval,
                    fast_interval: health.effective_fast_interval(),
                    confirm_timeout: health.effective_confirm_timeout(),
                    confirm_checks: health.failure_threshold,
                    require_writable: m.require_writable,
                };
                let results = state_actor.clone().recipient();
                let addr = Supervisor::start(move |_| ProbeActor::new(settings, probe, results));
                probes.insert(m.name.to_owned(), addr);
            }
        } else {
            tracing::info!("failover disabled: no probes run, every request answers the primary");
        }
        router.do_send(SetProbes {
            probes: (0..names.node_count())
                .map(|node| {
                    probes
                        .get(names.node_name(Some(node)))
                        .map(|a| a.clone().recipient())
                })
                .collect(),
        });
        tracing::info!(
            primary = %names.primary,
            failover = %names.failovers.join(", "),
            monitored = connections.len(),
            enabled,
            "failover engine started"
        );
        FailoverHandle {
            inner: Arc::new(Inner {
                router,
                state: state_actor,
                probes,
                shared,
                names,
                check_timeout: health.timeout,
                arbiter: actix::Arbiter::current(),
                owned: owner.map(|system| Owned {
                    system,
                    thread: Mutex::new(None),
                }),
            }),
        }
    }
}

/// `FailoverSystem` -> `RouterActor`: the state actor, for forced switches.
#[derive(Message)]
#[rtype(result = "()")]
struct WireState(Addr<StateActor>);

impl Handler<WireState> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: WireState, _ctx: &mut Context<Self>) {
        self.set_state(msg.0);
    }
}

struct Owned {
    system: actix::System,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Inner {
    router: Addr<RouterActor>,
    state: Addr<StateActor>,
    probes: HashMap<String, Addr<ProbeActor>>,
    shared: Arc<SharedActive>,
    names: RoleNames,
    check_timeout: Duration,
    arbiter: actix::dev::ArbiterHandle,
    owned: Option<Owned>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(owned) = &self.owned {
            owned.system.stop();
        }
    }
}

/// What a service keeps of a running engine: cloneable, `Send + Sync`, usable from any thread or runtime.
#[derive(Clone)]
pub struct FailoverHandle {
    inner: Arc<Inner>,
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
        ActiveConnection {
            role: snapshot.role,
            name: self.inner.names.node_name(snapshot.node).to_owned(),
            epoch: snapshot.epoch,
        }
    }

    /// Sends [`GetActiveConnection`] to the router and waits for its answer (bounded).
    pub async fn get_active_connection(&self) -> Result<ActiveConnection, EngineError> {
        ask(
            &self.inner.router,
            GetActiveConnection,
            "GetActiveConnection",
        )
        .await
    }

    /// The arbiter the engine's actors run on. A service without an actix `System` of its own (one that
    /// used [`FailoverSystem::start_in_thread`]) starts its event-listener actors here:
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
    /// says so ([`EventStreamError::Lagged`]).
    pub async fn event_stream(&self) -> Result<EventStream, EngineError> {
        let (first, receiver) = ask(&self.inner.router, SubscribeStream, "SubscribeStream").await?;
        Ok(EventStream {
            first: Some(first),
            receiver,
        })
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

    /// Stops an engine started with [`FailoverSystem::start_in_thread`] and waits (bounded) for its
    /// thread. For an engine started in the caller's actix `System`, stopping that system stops it.
    pub fn shutdown(&self) {
        let Some(owned) = &self.inner.owned else {
            return;
        };
        owned.system.stop();
        let thread = owned.thread.lock().ok().and_then(|mut slot| slot.take());
        if let Some(thread) = thread {
            let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("failover engine thread did not stop within {REQUEST_TIMEOUT:?}");
            }
        }
    }
}

/// The events of an engine, for services without actors ([`FailoverHandle::event_stream`]).
pub struct EventStream {
    first: Option<FailoverEvent>,
    receiver: tokio::sync::broadcast::Receiver<FailoverEvent>,
}

/// Why [`EventStream::recv`] gave no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventStreamError {
    /// The receiver fell this many events behind; they were skipped. The next call goes on.
    #[error("the event stream skipped {0} events it could not keep up with")]
    Lagged(u64),
    /// The engine stopped: no event will come.
    #[error("the engine stopped")]
    Closed,
}

impl EventStream {
    /// The next event: `CurrentState` first, then every event as it fires.
    pub async fn recv(&mut self) -> Result<FailoverEvent, EventStreamError> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        use tokio::sync::broadcast::error::RecvError;
        match self.receiver.recv().await {
            Ok(event) => Ok(event),
            Err(RecvError::Lagged(skipped)) => Err(EventStreamError::Lagged(skipped)),
            Err(RecvError::Closed) => Err(EventStreamError::Closed),
        }
    }
}
