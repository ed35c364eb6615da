//! Error types of the sqlx side.

use thiserror::Error;

/// What the routed handle answers instead of a connection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RoutedError {
    /// Limited functionality mode: primary and failover are both down. Returned at once, with no
    /// network or file access.
    #[error(
        "All configured database connections (primary and failover) are currently unavailable. \
         Application is in limited functionality mode."
    )]
    AllConnectionsUnavailable {
        /// The blocking connection's configured name.
        blocking_connection: String,
    },
    /// The active database answered with an error (a connection error has been reported to the engine).
    #[error("database `{connection}`: {source}")]
    Database {
        /// The connection that failed.
        connection: String,
        /// Whether the error means the connection itself was lost, refused or timed out.
        connection_error: bool,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl RoutedError {
    /// Whether this is the limited-mode error.
    pub fn is_limited_mode(&self) -> bool {
        matches!(self, Self::AllConnectionsUnavailable { .. })
    }
}

/// A database URL the sqlx side cannot probe.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProbeSetupError {
    /// The URL's scheme names no driver compiled in.
    #[error("connection `{connection}`: no driver for `{scheme}` URLs (compiled in: {available})")]
    UnsupportedScheme {
        /// The connection's name.
        connection: String,
        /// The URL's scheme.
        scheme: String,
        /// The drivers this build has.
        available: String,
    },
    /// The driver rejected the URL.
    #[error("connection `{connection}`: bad URL `{url}`: {source}")]
    BadUrl {
        /// The connection's name.
        connection: String,
        /// The URL, password masked.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}
