//! What the example services share: their configuration (the library's own loader: an optional file
//! and `DBFAILOVER_<SECTION>__<KEY>` variables), an event-listener actor, and the JSON they answer.
//!
//! ## Layout
//! - `src/bin/actix_web_service.rs`: the engine inside actix-web's `System`; `GET /whoami`.
//! - `src/bin/axum_service.rs`: an axum service; the engine runs on its own thread; `GET /users`
//!   (routed read), `POST /users` (routed write), `GET /health`; events to `tracing`.
//! - `src/bin/tokio_service.rs`: a `#[tokio::main]` worker without HTTP: routed queries in a loop,
//!   events from `event_stream()`.
//! - this file: [`load_config`], [`EventLog`], [`event_line`], [`error_answer`], [`health_answer`].
//!
//! ## Configuration
//!
//! The same as the `dbfailover` command's (docs/configuration.md): the file `DBFAILOVER_CONFIG`
//! names, else [`DEFAULT_CONFIG`], then every `DBFAILOVER_<SECTION>__<KEY>` variable over it. With the
//! default text, two variables are enough:
//!
//! ```sh
//! DBFAILOVER_DATABASES__PRIMARY__URL=postgres://app:secret@10.0.0.1/app
//! DBFAILOVER_DATABASES__FAILOVER__URL=postgres://app:secret@10.0.0.2/app
//! DBFAILOVER_HEALTH_CHECK__INTERVAL=250ms   # optional, default 1s
//! ```

use actix::prelude::*;
use dbfailover::{
    ActiveConnection, ActiveRole, Config, ConnectionReport, FailoverEvent, RoutedError,
};

/// The variable naming a configuration file (as for the `dbfailover` command).
pub const CONFIG_VARIABLE: &str = "DBFAILOVER_CONFIG";

/// The configuration used when `DBFAILOVER_CONFIG` names no file: connections named `primary` and
/// `failover` (their URLs come from `DBFAILOVER_DATABASES__PRIMARY__URL` and
/// `DBFAILOVER_DATABASES__FAILOVER__URL`), checks bounded by 500 ms.
pub const DEFAULT_CONFIG: &str = r#"
[failover]
primary = "primary"
failover = "failover"
blocking = "blocking"

[health_check]
timeout = "500ms"
"#;

/// The configuration: the file `DBFAILOVER_CONFIG` names (else [`DEFAULT_CONFIG`]), with the
/// `DBFAILOVER_<SECTION>__<KEY>` variables applied over it, validated by the library's loader
/// (`dbfailover::core::load::load`). `DBFAILOVER_` variables that name no setting are reported on
/// stderr (they would otherwise be silently ignored).
pub fn load_config() -> Result<Config, String> {
    let (text, source) = match std::env::var(CONFIG_VARIABLE) {
        Ok(path) => (
            std::fs::read_to_string(&path).map_err(|e| format!("{CONFIG_VARIABLE}={path}: {e}"))?,
            path,
        ),
        Err(_) => (
            DEFAULT_CONFIG.to_owned(),
            "the built-in configuration".to_owned(),
        ),
    };
    for variable in dbfailover::core::load::ignored_variables(std::env::vars()) {
        eprintln!(
            "warning: {variable} names no setting and is ignored (settings are \
             DBFAILOVER_<SECTION>__<KEY>, such as DBFAILOVER_DATABASES__PRIMARY__URL)"
        );
    }
    dbfailover::core::load::load(&text, std::env::vars()).map_err(|error| {
        format!(
            "{source}: {error} (set DBFAILOVER_DATABASES__PRIMARY__URL and \
             DBFAILOVER_DATABASES__FAILOVER__URL, or name a file in {CONFIG_VARIABLE})"
        )
    })
}

/// One event as one JSON line (passwords in it are already masked).
pub fn event_line(event: &FailoverEvent) -> String {
    serde_json::to_string(event)
        .unwrap_or_else(|error| format!("{{\"error\":\"event not printable: {error}\"}}"))
}

/// The actix-web service's own listener: prints each event as one JSON line.
pub struct EventLog;

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for EventLog {
    type Result = ();

    fn handle(&mut self, event: FailoverEvent, _ctx: &mut Context<Self>) {
        println!("{}", event_line(&event));
    }
}

/// The body of a successful `/whoami`: which database served the query.
pub fn served_body(name: &str) -> String {
    serde_json::json!({ "served_by": name }).to_string()
}

/// The HTTP status and JSON body for an error of the routed pool:
/// - limited functionality mode: 503, `{"error": "limited_functionality_mode", "limited_mode": true, ..}`;
/// - a connection lost or a switch during the work (worth trying again): 503, `"database_unavailable"`;
/// - anything else (a bad query, a deadline): 500, `"database_error"`.
pub fn error_answer(error: &RoutedError) -> (u16, String) {
    let (status, kind) = if error.is_limited_mode() {
        (503, "limited_functionality_mode")
    } else if error.is_retryable() {
        (503, "database_unavailable")
    } else {
        (500, "database_error")
    };
    let body = serde_json::json!({
        "error": kind,
        "limited_mode": error.is_limited_mode(),
        "message": error.to_string(),
    });
    (status, body.to_string())
}

/// The HTTP status and JSON body of a health check: 200 while a database takes writes, 503 in limited
/// functionality mode; each connection's name, role and status.
pub fn health_answer(active: &ActiveConnection, reports: &[ConnectionReport]) -> (u16, String) {
    let limited = active.role == ActiveRole::Blocking;
    let connections: Vec<serde_json::Value> = reports
        .iter()
        .map(|report| {
            serde_json::json!({
                "name": report.name,
                "role": report.role,
                "status": report.state.status,
                "writable": report.state.writable,
            })
        })
        .collect();
    let body = serde_json::json!({
        "status": if limited { "limited_functionality_mode" } else { "ok" },
        "limited_mode": limited,
        "active": { "name": active.name, "role": active.role, "epoch": active.epoch },
        "connections": connections,
    });
    (if limited { 503 } else { 200 }, body.to_string())
}
