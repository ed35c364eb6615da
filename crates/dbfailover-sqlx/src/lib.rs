#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Layout
//! - [`probe`]: [`SqlxProbe`], the health check of one database (SQLite, PostgreSQL, MySQL/MariaDB by
//!   cargo feature), bounded by the timeout, connect included; [`with_probes`] adds one per configured
//!   database to an engine builder.
//! - [`routed`]: [`RoutedPool`], the handle the application queries through: the active database's pool
//!   after one atomic load, or the typed limited-mode error at once.
//! - [`error`]: the error types.

pub mod error;
mod metrics;
pub mod probe;
pub mod routed;

pub use error::{ProbeSetupError, RoutedError};
pub use probe::{SqlxProbe, with_probes};
pub use routed::{
    RetryPolicy, Route, RoutedConnection, RoutedPool, Use, close_idle, is_connection_error,
};
pub use sqlx;
