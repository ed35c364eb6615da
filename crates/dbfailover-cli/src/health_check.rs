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
    /// Monitoring mode, for cron and probes: the exit code says what the checks found, as monitoring
    /// plugins do: 0 every checked database answered, 1 one is degraded (its check failed or it is
    /// not HEALTHY) but writes have a database, 2 no checked database takes writes, 3 nothing could
    /// be checked (a bad configuration, an unknown name). A last line `OK: ...`, `WARNING: ...`,
    /// `CRITICAL: ...` or `UNKNOWN: ...` sums it up.
    #[arg(long)]
    fail_on_down: bool,
}

/// What monitoring mode found, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    /// Every checked database answered and is HEALTHY.
    Ok = 0,
    /// A checked database failed its check or is not HEALTHY; writes still have a database.
    Warning = 1,
    /// No checked database that takes writes answered.
    Critical = 2,
    /// Nothing could be checked.
    Unknown = 3,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// Runs the checks and prints their outcome. Without `--fail-on-down`: exit 0 when it ran, whatever
/// the databases answered (the seed's behaviour). With it: the [`Verdict`]'s code.
pub(crate) async fn run(source: &ConfigSource, args: HealthCheckArgs) -> Result<(), CliError> {
    if !args.fail_on_down {
        return check(source, &args).await.map(|_| ());
    }
    let verdict = match check(source, &args).await {
        Ok((verdict, summary)) => {
            if !args.json {
                output::print_line(&format!("{}: {summary}", verdict.word()));
            }
            verdict
        }
        Err(error) => {
            output::print_error(&error.to_string());
            if !args.json {
                output::print_line(&format!("{}: {error}", Verdict::Unknown.word()));
            }
            Verdict::Unknown
        }
    };
    match verdict {
        Verdict::Ok => Ok(()),
        other => Err(CliError::Monitoring(other as u8)),
    }
}

/// Runs the checks, prints the seed's lines (or JSON), and says what they found.
async fn check(
    source: &ConfigSource,
    args: &HealthCheckArgs,
) -> Result<(Verdict, String), CliError> {
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
        return Ok((Verdict::Unknown, "database failover is disabled".to_owned()));
    }
    if !args.json {
        output::print_line("Starting database health checks...");
        if args.connection.is_none() {
            output::print_line(
                "Performing health checks for configured primary and failover connections.",
            );
        }
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
    // Per checked connection: whether it answered and is HEALTHY, and whether it takes writes.
    let mut found: Vec<(String, bool, bool)> = Vec::new();
    for name in &names {
        if !args.json {
            output::print_line(&format!("Checking health of connection: {name}..."));
        }
        match tokio::time::timeout(bound, handle.check(name)).await {
            Ok(Ok(report)) => {
                let answered = report.state.failure_count == 0
                    && report.state.status == dbfailover::ConnectionStatus::Healthy;
                found.push((
                    name.clone(),
                    answered,
                    answered && report.state.writable != Some(false),
                ));
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
            Ok(Err(error)) => {
                found.push((name.clone(), false, false));
                output::print_error(&format!("checking {name}: {error}"));
            }
            Err(_) => {
                found.push((name.clone(), false, false));
                output::print_error(&format!(
                    "checking {name}: no answer within {}",
                    dbfailover::core::duration::format(bound)
                ));
            }
        }
    }
    if args.dispatch_events {
        // Events are delivered after the state is recorded: one round trip to the router, then a
        // moment for the printer's mailbox.
        let _ = handle.active_connection().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine::settle(&handle).await;
    if !args.json {
        output::print_line("Database health checks completed.");
    }
    let (mut verdict, mut summary) = verdict_of(&found);
    // A shared store that does not answer leaves each instance deciding alone: worth a warning.
    let store_available = engine::store_answers(&handle).await;
    if !store_available {
        summary = format!(
            "{summary}; the state store ({}) does not answer",
            config.state.store
        );
        verdict = verdict.max(Verdict::Warning);
    }
    Ok((verdict, summary))
}

/// The verdict of the checks' outcomes `(name, answered, takes writes)`, and its summary.
fn verdict_of(found: &[(String, bool, bool)]) -> (Verdict, String) {
    let failed: Vec<&str> = found
        .iter()
        .filter(|(_, answered, _)| !answered)
        .map(|(name, _, _)| name.as_str())
        .collect();
    let writers: Vec<&str> = found
        .iter()
        .filter(|(_, _, writes)| *writes)
        .map(|(name, _, _)| name.as_str())
        .collect();
    if writers.is_empty() {
        let read_only: Vec<&str> = found
            .iter()
            .filter(|(_, answered, writes)| *answered && !writes)
            .map(|(name, _, _)| name.as_str())
            .collect();
        let mut why = Vec::new();
        if !failed.is_empty() {
            why.push(format!("failed: {}", failed.join(", ")));
        }
        if !read_only.is_empty() {
            why.push(format!("read-only: {}", read_only.join(", ")));
        }
        let summary = format!("no checked database takes writes ({})", why.join("; "));
        return (Verdict::Critical, summary);
    }
    if failed.is_empty() {
        let all: Vec<&str> = found.iter().map(|(name, _, _)| name.as_str()).collect();
        return (Verdict::Ok, format!("{} healthy", all.join(", ")));
    }
    (
        Verdict::Warning,
        format!(
            "{} degraded; writes have {}",
            failed.join(", "),
            writers.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(list: &[(&str, bool, bool)]) -> Verdict {
        let found: Vec<(String, bool, bool)> = list
            .iter()
            .map(|(n, a, w)| ((*n).to_owned(), *a, *w))
            .collect();
        verdict_of(&found).0
    }

    #[test]
    fn verdicts_follow_what_a_monitor_needs() {
        assert_eq!(
            outcome(&[("main", true, true), ("standby", true, true)]),
            Verdict::Ok
        );
        assert_eq!(
            outcome(&[("main", false, false), ("standby", true, true)]),
            Verdict::Warning
        );
        assert_eq!(
            outcome(&[("main", false, false), ("standby", false, false)]),
            Verdict::Critical
        );
        assert_eq!(
            outcome(&[("main", true, false), ("standby", false, false)]),
            Verdict::Critical,
            "a read-only node that answers takes no writes"
        );
        assert_eq!(outcome(&[("replica", true, true)]), Verdict::Ok);
        let found = vec![
            ("main".to_owned(), true, false),
            ("standby".to_owned(), false, false),
        ];
        assert_eq!(
            verdict_of(&found).1,
            "no checked database takes writes (failed: standby; read-only: main)"
        );
    }
}
