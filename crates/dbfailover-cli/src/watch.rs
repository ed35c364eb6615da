//! `dbfailover watch`: runs the engine until SIGINT or SIGTERM, printing every event as it happens.
//! SIGHUP (a closed terminal, or an operator expecting a reload) does not stop it: it says on stderr
//! that it goes on with the configuration it started with.

use crate::config_file::{self, ConfigSource};
use crate::engine::{self, Checks};
use crate::error::CliError;
use crate::metrics_server;
use crate::output::{self, EventPrinter};
use actix::prelude::*;
use std::net::SocketAddr;
use tokio::signal::unix::{SignalKind, signal};

/// Options of `dbfailover watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// One JSON object per event and line instead of human lines.
    #[arg(long)]
    json: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (for example 127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
}

/// Runs until a signal; exit 0 then, even while a check of a frozen database is in flight.
pub(crate) async fn run(source: &ConfigSource, args: WatchArgs) -> Result<(), CliError> {
    let loaded = config_file::load(source)?;
    let config = loaded.config;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|error| CliError::Failed(format!("cannot watch SIGTERM: {error}")))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|error| CliError::Failed(format!("cannot watch SIGINT: {error}")))?;
    let mut hangup = signal(SignalKind::hangup())
        .map_err(|error| CliError::Failed(format!("cannot watch SIGHUP: {error}")))?;
    if let Some(addr) = args.metrics_addr {
        let bound = metrics_server::serve(addr)?;
        output::print_error(&format!("serving metrics at http://{bound}/metrics"));
    }
    let handle = engine::start(&config, Checks::Scheduled).await?;
    handle
        .subscribe(EventPrinter { json: args.json }.start().recipient())
        .await
        .map_err(|error| CliError::Failed(error.to_string()))?;
    // What happened before the printer subscribed is not lost: a store that did not answer at start
    // is said on stderr.
    if !engine::store_answers(&handle).await {
        output::print_error(&format!(
            "warning: the state store ({}) does not answer; this instance decides alone until it does",
            config.state.store
        ));
    }
    if !args.json {
        let monitored: Vec<&str> = config.monitored().iter().map(|m| m.name).collect();
        output::print_line(&format!(
            "watching {} (primary {}, failover {}); every {}, timeout {}; stop with Ctrl-C",
            monitored.join(", "),
            config.failover.primary,
            config.failover.failover,
            config.health_check.interval,
            dbfailover::core::duration::format(config.health_check.timeout),
        ));
    }
    let which = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => output::print_error(
                "SIGHUP ignored: watch goes on with the configuration it started with; restart it \
                 to apply a changed one",
            ),
        }
    };
    tracing::info!(signal = which, "stopping");
    if !args.json {
        output::print_line(&format!("stopped ({which})"));
    }
    Ok(())
}
