//! What the example services share: their configuration from the environment, an event-listener
//! actor, and the answer they give in limited functionality mode.
//!
//! ## Layout
//! - `src/bin/actix_web_service.rs`: the engine inside actix-web's `System`.
//! - `src/bin/tokio_service.rs`: a `#[tokio::main]` service; the engine runs on its own thread.
//! - this file: [`config_from_env`], [`EventLog`], [`limited_mode_body`].

use actix::prelude::*;
use dbfailover::{Config, DatabaseSettings, DatabaseUrl, FailoverEvent, RoutedError, Schedule};
use std::time::Duration;

/// Reads `DBFAILOVER_PRIMARY_URL` and `DBFAILOVER_FAILOVER_URL` (PostgreSQL URLs), and optionally
/// `DBFAILOVER_INTERVAL` (default `1s`). The connections are named `primary` and `failover`.
pub fn config_from_env() -> Result<Config, String> {
    let url = |key: &str| {
        let text = std::env::var(key).map_err(|_| format!("{key} is not set"))?;
        DatabaseUrl::parse(&text).map_err(|e| format!("{key}: {e}"))
    };
    let mut config = Config::default();
    config.failover.primary = "primary".into();
    config.failover.failover = "failover".into();
    config.failover.blocking = "blocking".into();
    config.databases.insert(
        "primary".into(),
        DatabaseSettings::new(url("DBFAILOVER_PRIMARY_URL")?),
    );
    config.databases.insert(
        "failover".into(),
        DatabaseSettings::new(url("DBFAILOVER_FAILOVER_URL")?),
    );
    if let Ok(text) = std::env::var("DBFAILOVER_INTERVAL") {
        config.health_check.interval =
            Schedule::parse(&text).map_err(|e| format!("DBFAILOVER_INTERVAL: {e}"))?;
    }
    config.health_check.timeout = Duration::from_millis(500);
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// The service's own listener: prints each event as one JSON line.
pub struct EventLog;

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for EventLog {
    type Result = ();

    fn handle(&mut self, event: FailoverEvent, _ctx: &mut Context<Self>) {
        match serde_json::to_string(&event) {
            Ok(line) => println!("{line}"),
            Err(error) => eprintln!("event not printable: {error}"),
        }
    }
}

/// The 503 body in limited functionality mode: what happened, in words a client can show.
pub fn limited_mode_body(error: &RoutedError) -> String {
    serde_json::json!({
        "error": "limited_functionality_mode",
        "message": error.to_string(),
    })
    .to_string()
}

/// The body of a successful `/whoami`: which database served the query.
pub fn served_body(name: &str) -> String {
    serde_json::json!({ "served_by": name }).to_string()
}

/// The body of any other failure.
pub fn error_body(error: &RoutedError) -> String {
    serde_json::json!({ "error": "database_error", "message": error.to_string() }).to_string()
}
