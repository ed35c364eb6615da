#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Layout
//! - [`status`]: `ConnectionStatus` (UNKNOWN / HEALTHY / DOWN), `Role`, `ActiveRole`, `RoleNames`.
//! - [`tracker`]: `HealthTracker::record(result, now) -> Option<StatusTransition>`, the thresholds.
//! - [`route`](mod@route): `route(views, fenced, preferred) -> Decision` over the primary and the failovers in
//!   order, `readable` for the read route, and the `Router` that applies decisions,
//!   counts switch epochs and says which switch events fire.
//! - [`event`]: `FailoverEvent` and the events a status transition or a switch causes.
//! - [`record`]: the records instances share through a store (versions, votes, the fleet record) and
//!   their one text form; [`replica`]: the shared-state protocol, one instance's replica of it.
//! - [`topology`]: replication roles from the checks, the writer of record, fences (a promoted replica
//!   fences the node it replaced; an older timeline is refused).
//! - [`config`]: the settings, their defaults and their validation; [`url`]: password-masked URLs.
//! - [`load`]: the one parser: TOML text and `DBFAILOVER_*` variables to a validated `Config`.
//! - [`error`]: the error types.
//!
//! Nothing here waits, sleeps, reads a clock or does I/O: callers pass results and the time, and get
//! back transitions, decisions and events. The actors of `dbfailover-engine` carry messages, time and
//! I/O to and from these functions.

pub mod config;
pub mod duration;
pub mod error;
pub mod event;
pub mod load;
pub mod record;
pub mod replica;
pub mod route;
pub mod status;
pub mod topology;
pub mod tracker;
pub mod url;

pub use config::{
    Config, DatabaseSettings, FailoverSettings, HealthCheckSettings, RedisNodes, Schedule,
    StateSettings, StoreKind,
};
pub use error::ConfigError;
pub use event::{EventKind, EventOrigin, FailoverEvent};
pub use load::LoadError;
pub use route::{ActiveConnection, ConnectionView, Decision, Preference, Router, route};
pub use status::{ActiveRole, ConnectionStatus, Role, RoleNames};
pub use tracker::{
    CheckResult, ConnectionState, Counts, HealthTracker, Replication, StatusTransition, Thresholds,
};
pub use url::DatabaseUrl;
