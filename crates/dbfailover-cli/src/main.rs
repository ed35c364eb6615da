//! The `dbfailover` command.
//!
//! ## Layout
//! - `main.rs`: the command line (clap), logging set-up, exit codes.
//! - `config_file.rs`: which file to read; the file and the environment go to the one parser
//!   (`dbfailover::core::load`).
//! - `engine.rs`: starts the engine with the configured store, checking on schedule or on demand.
//! - `health_check.rs`, `status.rs`, `watch.rs` (with `metrics_server.rs`), `init.rs` (with
//!   `starter.toml`), `check_config.rs`, `demo.rs`: one subcommand each.
//! - `output.rs`: event lines (human and JSON), connection states; every line is password masked.
//! - `error.rs`: what stops a subcommand, and its exit code.

mod check_config;
mod config_file;
mod demo;
mod engine;
mod error;
mod health_check;
mod init;
mod metrics_server;
mod output;
mod status;
mod watch;

use clap::{Parser, Subcommand};
use config_file::ConfigSource;
use error::CliError;
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps a service talking to a working database: failover, limited functionality mode, restore.
///
/// Exit codes: 0 the command ran (even if a database is down), 1 an unknown connection name or
/// another failure, 2 a bad configuration or command line. Errors are one line on stderr.
#[derive(Debug, Parser)]
#[command(name = "dbfailover", version, about, long_about = None, verbatim_doc_comment)]
struct Cli {
    /// The configuration file [default: $DBFAILOVER_CONFIG, else dbfailover.toml in the current
    /// folder, which may be missing when DBFAILOVER_<SECTION>__<KEY> variables configure everything].
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the primary and the failover (or one connection) now and prints their status.
    ///
    /// The seed's `failover:health-check`: each check is recorded in the configured state store,
    /// so the failure count carries over between runs when the store is shared (file, redis,
    /// memcached). Each check ends within health_check.timeout. Exit 0 when it ran, even if a
    /// database is down; 1 for a connection that is not configured; 2 for a bad configuration.
    ///
    /// Example:
    ///   $ dbfailover health-check
    ///   Checking health of connection: main...
    ///   Connection 'main' status: HEALTHY, Failures: 0
    ///   Checking health of connection: standby...
    ///   Connection 'standby' status: DOWN, Failures: 3
    ///   $ dbfailover health-check reporting --json
    ///   {"connection":"reporting","role":"other","status":"HEALTHY","failure_count":0,...}
    #[command(verbatim_doc_comment)]
    HealthCheck(health_check::HealthCheckArgs),

    /// Shows the shared state: each connection's status, failures, last check, latency, writability,
    /// and the active connection. Runs no check.
    ///
    /// Example:
    ///   $ dbfailover status
    ///   CONNECTION  ROLE      STATUS   FAILURES  LAST CHECK                LATENCY  WRITABLE
    ///   main        primary   DOWN     3         2024-05-01T12:00:00.120Z  -        -
    ///   standby     failover  HEALTHY  0         2024-05-01T12:00:00.118Z  1.3ms    yes
    ///   active connection: standby (failover)
    ///   $ dbfailover status --json
    #[command(verbatim_doc_comment)]
    Status(status::StatusArgs),

    /// Runs the engine and prints every event as it happens, until SIGINT or SIGTERM (exit 0).
    ///
    /// Human lines by default; with --json one object per line:
    ///   {"event":"SwitchedToFailoverConnection","at":"2024-05-01T12:00:00.120Z","origin":"local",
    ///    "previous_connection_name":"main","new_connection_name":"standby"}
    /// With --metrics-addr, serves Prometheus metrics at http://ADDR/metrics.
    ///
    /// Example:
    ///   $ dbfailover watch --json --metrics-addr 127.0.0.1:9187
    #[command(verbatim_doc_comment)]
    Watch(watch::WatchArgs),

    /// Writes a commented starter configuration (default dbfailover.toml); --force overwrites.
    ///
    /// Example:
    ///   $ dbfailover init /etc/dbfailover.toml
    ///   wrote /etc/dbfailover.toml: edit the [databases] URLs, then run `dbfailover check-config`
    #[command(verbatim_doc_comment)]
    Init(init::InitArgs),

    /// Validates the configuration and prints the effective one, passwords masked.
    ///
    /// Shows which settings DBFAILOVER_<SECTION>__<KEY> variables set. Exit 2 with one line naming
    /// the setting and its value when something is wrong.
    ///
    /// Example:
    ///   $ DBFAILOVER_HEALTH_CHECK__TIMEOUT=5s dbfailover check-config
    ///   # configuration is valid (dbfailover.toml)
    ///   # health_check.timeout set by DBFAILOVER_HEALTH_CHECK__TIMEOUT
    ///   ...
    #[command(verbatim_doc_comment)]
    CheckConfig(check_config::CheckConfigArgs),

    /// Runs the embedded engine on two SQLite databases in a temporary folder and breaks them.
    ///
    /// No server is needed. A workload queries through the routed handle every few milliseconds
    /// while the demo makes the primary's file unavailable, then the failover's, then brings them
    /// back. Every event is printed as it happens, with a status line of what the workload saw.
    /// Ends by itself (about 12 seconds); exit code 0 when every switch and limited-mode event was seen.
    ///
    /// Example:
    ///   dbfailover demo
    ///   DBFAILOVER_LOG=info dbfailover demo     # with the engine's own logs on stderr
    #[command(verbatim_doc_comment)]
    Demo(demo::DemoArgs),
}

fn init_logging() {
    use tracing_subscriber::filter::Targets;
    let spec = std::env::var("DBFAILOVER_LOG").unwrap_or_else(|_| "error".to_owned());
    let filter: Targets = spec.parse().unwrap_or_else(|error| {
        eprintln!("dbfailover: ignoring DBFAILOVER_LOG={spec:?}: {error}");
        Targets::new().with_default(tracing::Level::ERROR)
    });
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(output::RedactingStderr::default))
        .with(filter)
        .init();
}

fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if !matches!(error, CliError::Monitoring(_)) {
                output::print_error(&error.to_string());
            }
            error.exit_code()
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            if !error.use_stderr() {
                // --help, --version.
                return ExitCode::SUCCESS;
            }
            // A monitor that runs a broken command line must hear UNKNOWN, not "no database".
            let args: Vec<String> = std::env::args().collect();
            let monitoring = args.iter().any(|a| a == "health-check")
                && args.iter().any(|a| a == "--fail-on-down");
            return ExitCode::from(if monitoring { 3 } else { 2 });
        }
    };
    init_logging();
    let source = ConfigSource::new(cli.config);
    match cli.command {
        Command::Demo(args) => actix::System::new().block_on(demo::run(args)),
        Command::Init(args) => finish(init::run(args)),
        Command::CheckConfig(args) => {
            finish(actix::System::new().block_on(async { check_config::run(&source, args) }))
        }
        Command::HealthCheck(args) => {
            finish(actix::System::new().block_on(health_check::run(&source, args)))
        }
        Command::Status(args) => finish(actix::System::new().block_on(status::run(&source, args))),
        Command::Watch(args) => finish(actix::System::new().block_on(watch::run(&source, args))),
    }
}
