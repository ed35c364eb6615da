//! [`FailoverSystemBuilder`] and [`FailoverSystem`]: a validated engine, and the wiring that starts
//! its actors, on the caller's actix arbiter or on a thread of its own.

use crate::error::{BuildError, EngineError};
use crate::handle::{FailoverHandle, Inner, Owned, REQUEST_TIMEOUT};
use crate::messages::SetProbes;
use crate::probe::{Probe, ProbeActor, ProbeSettings};
use crate::router::{RouterActor, SharedActive};
use crate::state::StateActor;
use crate::store::{MemoryStore, StateStore};
use actix::prelude::*;
use dbfailover_core::{Config, Role};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
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
                // Whoever waits in `shutdown` hears that the thread is done; nobody waiting is fine.
                let _ = ended_tx.send(());
            })
            .map_err(EngineError::Start)?;
        let handle = rx
            .recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| EngineError::Timeout {
                request: "start",
                timeout: REQUEST_TIMEOUT,
            })?;
        handle.inner.adopt_thread(thread, ended_rx);
        Ok(handle)
    }

    fn start_actors(self, owner: Option<actix::System>) -> FailoverHandle {
        let names = self.config.role_names();
        let enabled = self.config.failover.enabled;
        let health = &self.config.health_check;
        let shared = Arc::new(SharedActive::default());
        let monitored = self.config.monitored();
        crate::metrics::register(&self.config);

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
            StateActor::start(
                StateActor::new(
                    connections,
                    thresholds,
                    store,
                    store_timeout,
                    poll_interval,
                    router,
                )
                .with_record_ttl(record_ttl),
            )
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
                let addr = ProbeActor::new(settings, probe, results).start();
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
                stopped: std::sync::atomic::AtomicBool::new(false),
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
