//! What can stop a subcommand, and the exit code each kind gives.

use std::process::ExitCode;
use thiserror::Error;

/// A subcommand that could not do its job. Shown on stderr as one line `dbfailover: <message>`.
#[derive(Debug, Error)]
pub(crate) enum CliError {
    /// The configuration file, a `DBFAILOVER_*` variable or the state store settings are unusable.
    #[error("{0}")]
    Config(String),
    /// A connection name that the configuration does not have.
    #[error("connection `{name}` is not configured (configured: {configured})")]
    UnknownConnection {
        /// The name asked for.
        name: String,
        /// The configured names, comma separated.
        configured: String,
    },
    /// Anything else that stopped the command (a file that cannot be written, an engine that stopped).
    #[error("{0}")]
    Failed(String),
    /// `health-check --fail-on-down` found a problem: the exit code (1, 2 or 3), already reported.
    #[error("")]
    Monitoring(u8),
}

impl CliError {
    /// 2 for a bad configuration, 1 for an unknown connection or another failure.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            Self::UnknownConnection { .. } | Self::Failed(_) => ExitCode::from(1),
            Self::Monitoring(code) => ExitCode::from(*code),
        }
    }
}
