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
    /// Routing left the database this work ran on (it is DOWN, read-only or fenced, or limited mode
    /// began) while the work was still running: the work was stopped at once and its connection
    /// discarded. Whatever it did is in doubt; idempotent work can run again on the new route.
    #[error(
        "routing switched from `{from}` to `{to}` while the work ran on `{from}`: it was stopped"
    )]
    Switched {
        /// The connection the work ran on.
        from: String,
        /// The connection routing switched to (the blocking name in limited mode).
        to: String,
    },
    /// The work outlived the routed handle's query deadline: it was stopped and its connection
    /// discarded.
    #[error("work on `{connection}` outlived the query deadline of {deadline:?}: it was stopped")]
    Deadline {
        /// The connection the work ran on.
        connection: String,
        /// The deadline.
        deadline: std::time::Duration,
    },
    /// The retry helper gave up: every attempt allowed failed (the last error is the source).
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<RoutedError>,
    },
}

impl RoutedError {
    /// Whether this is the limited-mode error.
    pub fn is_limited_mode(&self) -> bool {
        matches!(self, Self::AllConnectionsUnavailable { .. })
    }

    /// Whether running the same work again may succeed on another route: a switch, or the connection
    /// itself lost, refused or timed out. A query error (a constraint, a syntax error) is not, nor is a
    /// deadline: the database is sound, and the stopped query may still run there (the server is not
    /// told; set the server's own timeout, `statement_timeout` / `max_statement_time`, as well).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Switched { .. } => true,
            Self::Deadline { .. } => false,
            Self::Database {
                connection_error, ..
            } => *connection_error,
            Self::AllConnectionsUnavailable { .. } | Self::RetriesExhausted { .. } => false,
        }
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
