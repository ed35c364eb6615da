//! Error types of the engine.

use dbfailover_core::ConfigError;
use std::time::Duration;
use thiserror::Error;

/// A [`crate::FailoverSystem`] that cannot be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration breaks a rule; the error names the setting and the value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A monitored database has no probe.
    #[error("connection `{connection}` is configured under [databases] but has no probe")]
    MissingProbe {
        /// The connection's name.
        connection: String,
    },
    /// A probe was given for a name that is not a configured database.
    #[error(
        "a probe was given for connection `{connection}`, which is not configured under [databases]"
    )]
    UnknownProbe {
        /// The name the probe was given for.
        connection: String,
    },
}

/// A request to the running engine that did not succeed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine has stopped (its actors are gone).
    #[error("the failover engine is not running")]
    Stopped,
    /// The engine did not answer in time.
    #[error("the failover engine did not answer `{request}` within {timeout:?}")]
    Timeout {
        /// The request.
        request: &'static str,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// No monitored connection has this name.
    #[error("no monitored connection is named `{connection}`")]
    UnknownConnection {
        /// The name asked for.
        connection: String,
    },
    /// The engine's thread could not be started.
    #[error("could not start the failover engine's thread")]
    Start(#[source] std::io::Error),
}

/// A probe's failure, in words an operator can act on. Must not carry secrets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct ProbeError {
    message: String,
}

impl ProbeError {
    /// A failure described by `message` (no passwords: mask URLs before putting them here).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A state store that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("state store: {message}")]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// A store failure described by `message` (no passwords).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
