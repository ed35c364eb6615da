//! Starts the engine for a subcommand: the configured state store and a sqlx probe per database.

use crate::error::CliError;
use dbfailover::{Config, FailoverHandle, Schedule};

/// Whether the engine checks on its own or only when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// At the configured interval (`watch`).
    Scheduled,
    /// Only the checks the command asks for (`health-check`, `status`).
    OnDemand,
}

/// Starts the engine in the current actix `System`. Errors of the store or probe settings are
/// configuration errors (exit code 2).
pub(crate) async fn start(config: &Config, checks: Checks) -> Result<FailoverHandle, CliError> {
    let mut config = config.clone();
    if checks == Checks::OnDemand {
        config.health_check.interval = Schedule::Disabled;
    }
    let handle = dbfailover::builder(config)
        .map_err(|error| CliError::Config(error.to_string()))?
        .build()
        .map_err(|error| CliError::Config(error.to_string()))?
        .start();
    // The state actor reads the store before it handles any message (each read bounded by the store
    // timeout): once it answers, what the store held is loaded.
    handle
        .connection_states()
        .await
        .map_err(|error| CliError::Config(error.to_string()))?;
    Ok(handle)
}

/// Waits until everything the engine recorded has been handled. A check's result is written to the
/// store before `FailoverHandle::check` answers; this is one more round trip to the state actor.
pub(crate) async fn settle(handle: &FailoverHandle) {
    let _ = handle.connection_states().await;
}

/// Whether the engine's state store answers, as the current state every subscriber hears first says
/// (`true` when the engine cannot tell: nothing to warn about).
pub(crate) async fn store_answers(handle: &FailoverHandle) -> bool {
    let Ok(mut stream) = handle.event_stream().await else {
        return true;
    };
    !matches!(
        stream.recv().await.map(|event| event.kind),
        Ok(dbfailover::EventKind::CurrentState {
            store_available: false,
            ..
        })
    )
}
