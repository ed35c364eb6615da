#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Layout
//! - [`core`]: the pure state machine: configuration, `ConnectionStatus`, health tracker, routing
//!   decision, events, errors.
//! - [`engine`]: the actix actors (`ProbeActor`, `StateActor`, `RouterActor`), the `FailoverSystem`
//!   builder and the `FailoverHandle` services keep.
//! - [`store`]: the state stores (memory; file, Redis and memcached by feature) and
//!   `store::from_settings`, which builds the one the `[state]` settings name.
//! - [`pool`] (features `sqlite`, `postgres`, `mysql`): the sqlx probes and the `RoutedPool`;
//!   [`sqlx`] is the `sqlx` crate they are built with.
//! - [`actix`]: the actix crate the actors run on.
//!
//! The most used items are re-exported at the top.

pub use dbfailover_core as core;
pub use dbfailover_engine as engine;
pub use dbfailover_store as store;

pub use dbfailover_core::{
    ActiveConnection, ActiveRole, CheckResult, Config, ConfigError, ConnectionState,
    ConnectionStatus, DatabaseSettings, DatabaseUrl, EventKind, FailoverEvent, Replication, Role,
    Schedule,
};
pub use dbfailover_engine::{
    BuildError, ConnectionReport, EngineError, FailoverHandle, FailoverSystem,
    FailoverSystemBuilder, GetActiveConnection, MemoryStore, Probe, ProbeError, ProbeReport,
    StateStore, SubscriptionId,
};

/// The `sqlx` crate, at the version the probes and the routed pool are built with: name its types
/// through here (`dbfailover::sqlx::Postgres`, `dbfailover::sqlx::query`) and they always match.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub use dbfailover_sqlx::sqlx;

/// The sqlx side of dbfailover: the probes, the routed pool and their helpers (with the `sqlite`,
/// `postgres` or `mysql` feature). The most used items are also at the top.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub mod pool {
    pub use dbfailover_sqlx::{
        ProbeSetupError, RetryPolicy, Route, RoutedConnection, RoutedError, RoutedPool, SqlxProbe,
        Use, close_idle, is_connection_error, with_probes,
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use dbfailover_sqlx::{RetryPolicy, RoutedConnection, RoutedError, RoutedPool, Use};

/// The actix crate the engine's actors run on, for services that subscribe an actor of their own
/// ([`FailoverHandle::subscribe`]) or start one on the engine's arbiter.
pub use dbfailover_engine::actix;

/// An engine builder for the whole of `config`: a sqlx probe for every configured database, and the
/// state store `[state]` names (memory, file, Redis, memcached; connected lazily), bounded by
/// `state.timeout`.
///
/// Change more settings on the builder if needed, then `build()` and `start()` (inside an actix
/// `System`) or `start_in_thread()` (anywhere).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub fn builder(config: Config) -> Result<FailoverSystemBuilder, SetupError> {
    let store = dbfailover_store::from_settings(&config.state)?;
    let store_timeout = config.state.timeout;
    let probes_config = config.clone();
    let builder = dbfailover_sqlx::with_probes(FailoverSystem::builder(config), &probes_config)?;
    Ok(builder.shared_store(store).store_timeout(store_timeout))
}

/// A configuration [`builder`] cannot set up.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A database's URL cannot be probed.
    #[error(transparent)]
    Probe(#[from] dbfailover_sqlx::ProbeSetupError),
    /// The state store's settings cannot be used.
    #[error(transparent)]
    Store(#[from] dbfailover_store::StoreSetupError),
}
