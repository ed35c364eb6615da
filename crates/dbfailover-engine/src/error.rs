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

/// The error a probe or a store call failed with, kept for code that wants to inspect it
/// (`downcast_ref::<sqlx::Error>()`, `downcast_ref::<std::io::Error>()`).
pub type ErrorSource = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A probe's failure. Its `Display` is what failed, in words (`connect`, `health query`); the error
/// that caused it is its [`source`](std::error::Error::source), typed; [`ProbeError::reason`] is the
/// whole story as one line, with secrets removed, for operators (events, logs, `last_error`).
#[derive(Debug, Clone)]
pub struct ProbeError {
    context: String,
    detail: Option<String>,
    source: Option<ErrorSource>,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The error itself, not the `Arc` around it, so that it downcasts to its own type.
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for ProbeError {
    fn eq(&self, other: &Self) -> bool {
        self.reason() == other.reason()
    }
}

impl Eq for ProbeError {}

impl ProbeError {
    /// A failure described by `message` alone (no passwords: mask URLs before putting them here).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            context: message.into(),
            detail: None,
            source: None,
        }
    }

    /// A failure of `context` (what was being done) caused by `source`. `shown` is the source's
    /// text as an operator may see it: with every secret removed (see
    /// `dbfailover_core::url::Redactor`).
    pub fn with_source(
        context: impl Into<String>,
        shown: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            context: context.into(),
            detail: Some(shown.into()),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// The failure as one line for operators: what failed, then what the cause said (secrets
    /// removed), as in `connect: Connection refused (os error 111)`.
    pub fn reason(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.context),
            None => self.context.clone(),
        }
    }
}

/// A state store that could not be used. Its `Display` says which store and what failed (no
/// passwords, and not the cause's text); the cause is its [`source`](std::error::Error::source),
/// typed; [`StoreError::reason`] is the whole story as one line, secrets removed.
#[derive(Debug, Clone)]
pub struct StoreError {
    message: String,
    detail: Option<String>,
    source: Option<ErrorSource>,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "state store: {}", self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.reason() == other.reason()
    }
}

impl Eq for StoreError {}

impl StoreError {
    /// A store failure described by `message` alone (no passwords).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            detail: None,
            source: None,
        }
    }

    /// A store failure of `message` caused by `source`; `shown` is the source's text with every
    /// secret removed.
    pub fn with_source(
        message: impl Into<String>,
        shown: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            detail: Some(shown.into()),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// The failure as one line for operators: `state store: redis redis://:****@h:6379: load: ...`.
    pub fn reason(&self) -> String {
        match &self.detail {
            Some(detail) => format!("state store: {}: {detail}", self.message),
            None => format!("state store: {}", self.message),
        }
    }
}
