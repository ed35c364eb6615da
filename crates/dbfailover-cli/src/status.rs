//! `dbfailover status`: the shared state, as a table or as JSON.

use crate::config_file::{self, ConfigSource};
use crate::engine::{self, Checks};
use crate::error::CliError;
use crate::output::{self, ConnectionJson};
use serde::Serialize;

/// Options of `dbfailover status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// One JSON object: `connections` (one entry per connection) and `active`.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ActiveJson {
    role: String,
    connection: String,
    epoch: u64,
}

#[derive(Serialize)]
struct StatusJson {
    store: String,
    connections: Vec<ConnectionJson>,
    /// The replicas reads go to now (healthy, under the lag bound), in order.
    reads: Vec<String>,
    active: ActiveJson,
    /// Whether the state store answered: when it did not, the states are this process's own.
    store_available: bool,
}

/// Reads the shared state (no check is run) and prints it.
pub(crate) async fn run(source: &ConfigSource, args: StatusArgs) -> Result<(), CliError> {
    let loaded = config_file::load(source)?;
    let config = loaded.config;
    let handle = engine::start(&config, Checks::OnDemand).await?;
    let reports = handle
        .connection_states()
        .await
        .map_err(|error| CliError::Failed(error.to_string()))?;
    let active = handle
        .active_connection()
        .await
        .map_err(|error| CliError::Failed(error.to_string()))?;
    let store_available = engine::store_answers(&handle).await;
    // A store that does not answer holds no state to show: say so, and exit 1 after the table.
    let silent = (!store_available).then(|| {
        CliError::Failed(format!(
            "the state store ({}) does not answer: the states shown are this process's own, not \
             the shared ones",
            config.state.store
        ))
    });
    let connections: Vec<ConnectionJson> = reports.iter().map(ConnectionJson::from).collect();
    let read_nodes = handle.shared_active().reads().nodes;
    let names = handle.names();
    let reads: Vec<String> = (0..names.node_count().min(64))
        .filter(|n| read_nodes & (1 << n) != 0)
        .map(|n| names.node_name(Some(n)).to_owned())
        .collect();
    if args.json {
        let status = StatusJson {
            store: config.state.store.to_string(),
            connections,
            reads,
            active: ActiveJson {
                role: active.role.to_string(),
                connection: active.name,
                epoch: active.epoch,
            },
            store_available,
        };
        output::print_line(&output::json_line(&status));
        return silent.map_or(Ok(()), Err);
    }
    let header = [
        "CONNECTION",
        "ROLE",
        "STATUS",
        "FAILURES",
        "LAST CHECK",
        "LATENCY",
        "WRITABLE",
        "REPLICATION",
    ];
    let rows: Vec<[String; 8]> = connections
        .iter()
        .map(|c| {
            [
                c.connection.clone(),
                c.role.clone(),
                c.status.clone(),
                c.failure_count.to_string(),
                c.last_check_at.clone().unwrap_or_else(|| "never".into()),
                c.latency_ms
                    .map_or_else(|| "-".into(), |ms| format!("{ms:.1}ms")),
                match c.writable {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
                match &c.replication {
                    Some(r) => {
                        let role = if r.replicating { "replica" } else { "writer" };
                        match r.timeline {
                            Some(t) => format!("{role} (timeline {t})"),
                            None => role.to_owned(),
                        }
                    }
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let format_row = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    output::print_line(&format_row(&header.map(String::from)));
    for row in &rows {
        output::print_line(&format_row(row));
    }
    output::print_line(&format!(
        "active connection: {} ({})",
        active.name, active.role
    ));
    output::print_line(&format!(
        "reads go to: {}",
        if reads.is_empty() {
            "the active connection (no replica known under the lag bound)".to_owned()
        } else {
            reads.join(", ")
        }
    ));
    if config.state.store == dbfailover::core::config::StoreKind::Memory {
        output::print_line(
            "state store: memory (this process only: nothing is shared, so this shows what this \
             command itself knows, which is nothing checked; use a file, Redis or memcached store to \
             see a running service's state)",
        );
    } else {
        output::print_line(&format!("state store: {}", config.state.store));
    }
    silent.map_or(Ok(()), Err)
}
