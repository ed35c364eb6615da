//! `dbfailover health-check [CONNECTION]`: the seed's `failover:health-check` command.

use crate::config_file::{self, ConfigSource};
use crate::engine::{self, Checks};
use crate::error::CliError;
use crate::output::{self, ConnectionJson, EventPrinter};
use actix::prelude::*;
use std::time::Duration;

/// Options of `dbfailover health-check`.
#[derive(Debug, clap::Args)]
pub(crate) struct HealthCheckArgs {
    /// The connection to check (a name under [databases]); default: the primary and the failover.
    connection: Option<String>,
    /// One JSON object per connection instead of the seed's lines.
    #[arg(long)]
    json: bool,
    /// Also print the events the checks cause (a connection going DOWN, a switch, ...).
    #[arg(long)]
    dispatch_events: bool,
}

/// Runs the checks and prints their outcome; exit 0 when it ran, whatever the databases answered.
pub(crate) async fn run(source: &ConfigSource, args: HealthCheckArgs) -> Result<(), CliError> {
    let loaded = config_file::load(source)?;
    let config = loaded.config;
    let names: Vec<String> = match &args.connection {
        Some(name) if config.databases.contains_key(name) => vec![name.clone()],
        Some(name) => {
            return Err(CliError::UnknownConnection {
                name: name.clone(),
                configured: config_file::configured_names(&config),
            });
        }
        None => std::iter::once(config.failover.primary.clone())
            .chain(config.failover.failover.names().iter().cloned())
            .collect(),
    };
    if !config.failover.enabled {
        if args.json {
            output::print_line(r#"{"enabled":false}"#);
        } else {
            output::print_line("Database failover is disabled (failover.enabled = false).");
        }
        return Ok(());
    }
    let handle = engine::start(&config, Checks::OnDemand).await?;
    if args.dispatch_events {
        let printer = EventPrinter { json: args.json }.start();
        handle
            .subscribe(printer.recipient())
            .await
            .map_err(|error| CliError::Failed(error.to_string()))?;
    }
    // A check ends at the configured timeout; this outer bound only guards against an engine that
    // stopped answering.
    let bound = config.health_check.timeout + Duration::from_secs(1);
    for name in &names {
        if !args.json {
            output::print_line(&format!("Checking health of connection: {name}..."));
        }
        match tokio::time::timeout(bound, handle.check(name)).await {
            Ok(Ok(report)) => {
                if args.json {
                    output::print_line(&output::json_line(&ConnectionJson::from(&report)));
                } else {
                    output::print_line(&format!(
                        "Connection '{}' status: {}, Failures: {}",
                        report.name,
                        report.state.status.as_str(),
                        report.state.failure_count
                    ));
                    if let Some(reason) = report
                        .state
                        .last_error
                        .as_deref()
                        .filter(|_| report.state.failure_count > 0)
                    {
                        output::print_line(&format!("  last error: {reason}"));
                    }
                }
            }
            Ok(Err(error)) => output::print_error(&format!("checking {name}: {error}")),
            Err(_) => output::print_error(&format!(
                "checking {name}: no answer within {}",
                dbfailover::core::duration::format(bound)
            )),
        }
    }
    if args.dispatch_events {
        // Events are delivered after the state is recorded: one round trip to the router, then a
        // moment for the printer's mailbox.
        let _ = handle.get_active_connection().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine::settle(&handle).await;
    Ok(())
}
