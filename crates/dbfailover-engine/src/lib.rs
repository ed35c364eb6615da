#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Layout
//! - `probe`: the [`Probe`] trait a driver implements, and the `ProbeActor` (one per monitored
//!   connection) that runs it on its schedule, bounded by the timeout, one at a time (a few at once,
//!   `fast_interval` apart, only while a suspected hang is confirmed), and
//!   switches to fast confirming checks after a reported query failure.
//! - `state`: the `StateActor`, the driver of the core's shared-state replica (thresholds, the
//!   UNKNOWN / HEALTHY / DOWN trackers, the shared rule); it runs the replica's commands against a
//!   [`StateStore`] and tells the router.
//! - `router`: the [`RouterActor`], owner of the active connection (the core's `Router`); it answers
//!   `GetActiveConnection`, publishes events to subscribers, and writes its decision to a
//!   [`SharedActive`] word that the data path reads without a mailbox round trip.
//! - `messages`: every message, with who sends it and who answers.
//! - [`store`]: the [`StateStore`] trait and the in-memory store.
//! - [`metrics`]: the metrics the engine records through the `metrics` facade.
//! - `contain` (private): runs a probe or a store call in a task of its own, bounded by a timeout, a
//!   panic turned into an outcome; the one mechanism behind "a probe or a store never stops the engine".
//! - `builder` (private): [`FailoverSystemBuilder`] validates, [`FailoverSystem`] wires and starts the
//!   actors, on the caller's actix arbiter or on a thread of its own.
//! - `handle` (private): [`FailoverHandle`], what services keep; the last one dropped stops the engine
//!   (and its thread), [`FailoverHandle::shutdown`] stops it and waits.
//! - `stream` (private): [`EventStream`], the events without an actor.
//!
//! `docs/architecture.md` at the repository's top draws the actors and their messages.

mod builder;
/// The actix crate the actors run on (subscribe an actor of your own with the same version).
pub use actix;

mod contain;
pub mod error;
mod handle;
mod messages;
pub mod metrics;
mod probe;
mod router;
mod state;
pub mod store;
mod stream;

pub use builder::{DEFAULT_STORE_TIMEOUT, FailoverSystem, FailoverSystemBuilder};
pub use error::{BuildError, EngineError, ErrorSource, ProbeError, StoreError};
pub use handle::{FailoverHandle, REQUEST_TIMEOUT};
pub use messages::{ConnectionReport, GetActiveConnection, SubscriptionId};
pub use probe::{FnProbe, Probe, ProbeFuture, ProbeReport};
pub use router::{ActiveSnapshot, ReadSnapshot, RouterActor, SharedActive};
pub use store::{MemoryStore, StateStore, StoreFuture};
pub use stream::{EventStream, EventStreamError};
