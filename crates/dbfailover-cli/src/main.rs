//! The `dbfailover` command.
//!
//! ## Layout
//! - `main.rs`: the command line (clap) and logging set-up.
//! - `demo.rs`: `dbfailover demo`, the embedded engine on two SQLite files that really disappear.

mod demo;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Keeps a service talking to a working database: failover, limited functionality mode, restore.
#[derive(Debug, Parser)]
#[command(name = "dbfailover", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Demo(args) => {
            let system = actix::System::new();
            system.block_on(demo::run(args))
        }
    }
}
