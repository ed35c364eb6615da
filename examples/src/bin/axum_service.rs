//! An axum service embedding dbfailover: the engine runs on a thread it owns (this service has no
//! actix `System`), reads take the routed pool's read route, writes the write route, limited
//! functionality mode answers 503 with a JSON body at once, `/health` reports every connection, and
//! the events go to `tracing`.
//!
//! ```sh
//! DBFAILOVER_DATABASES__PRIMARY__URL=postgres://app:secret@10.0.0.1/app \
//! DBFAILOVER_DATABASES__FAILOVER__URL=postgres://app:secret@10.0.0.2/app \
//! LISTEN=127.0.0.1:8080 cargo run -p dbfailover-examples --bin axum-service
//! curl localhost:8080/users
//! curl -X POST -H 'content-type: application/json' -d '{"name":"ada"}' localhost:8080/users
//! curl localhost:8080/health
//! ```
//!
//! Each database needs a table `users (id bigserial primary key, name text not null)`. The
//! configuration is the library's: `DBFAILOVER_CONFIG` may name a file, and any
//! `DBFAILOVER_<SECTION>__<KEY>` variable sets a setting (see `dbfailover_examples::load_config`).
//! `RUST_LOG`-style filtering is left out to keep the dependencies lean: everything at `INFO` and
//! above is printed.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dbfailover::engine::EventStreamError;
use dbfailover::sqlx::{self, Postgres};
use dbfailover::{EventKind, FailoverHandle, RoutedError, RoutedPool};
use dbfailover_examples::{error_answer, event_line, health_answer, load_config};
use std::io::IsTerminal;
use std::sync::Arc;

type Routed = Arc<RoutedPool<Postgres>>;

/// A JSON answer with the given status.
fn json(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An error of the routed pool: 503 with a JSON body in limited mode (at once, no query was sent).
fn routed_error(error: &RoutedError) -> Response {
    if !error.is_limited_mode() {
        tracing::warn!(%error, "query failed");
    }
    let (status, body) = error_answer(error);
    json(status, body)
}

/// `GET /users`: a read on the read route (a replica under the lag bound, else the node taking
/// writes), stopped at once if routing leaves its database while it runs.
async fn list_users(State(routed): State<Routed>) -> Response {
    let users = routed
        .with_read_connection(async |conn| {
            sqlx::query_as::<_, (i64, String)>("SELECT id, name FROM users ORDER BY id")
                .fetch_all(conn)
                .await
        })
        .await;
    match users {
        Ok(rows) => {
            let users: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|(id, name)| serde_json::json!({ "id": id, "name": name }))
                .collect();
            json(200, serde_json::json!({ "users": users }).to_string())
        }
        Err(error) => routed_error(&error),
    }
}

#[derive(serde::Deserialize)]
struct NewUser {
    name: String,
}

/// `POST /users` with `{"name": ".."}`: a write on the node taking writes.
async fn create_user(State(routed): State<Routed>, Json(user): Json<NewUser>) -> Response {
    let name = user.name;
    let id = routed
        .with_connection(async |conn| {
            sqlx::query_scalar::<_, i64>("INSERT INTO users (name) VALUES ($1) RETURNING id")
                .bind(&name)
                .fetch_one(conn)
                .await
        })
        .await;
    match id {
        Ok(id) => json(
            201,
            serde_json::json!({ "id": id, "name": name }).to_string(),
        ),
        Err(error) => routed_error(&error),
    }
}

/// `GET /health`: each connection's name, role and status; 200 while a database takes writes, 503 in
/// limited mode.
async fn health(State(routed): State<Routed>) -> Response {
    let engine = routed.engine();
    match engine.connection_states().await {
        Ok(reports) => {
            let (status, body) = health_answer(&engine.active(), &reports);
            json(status, body)
        }
        Err(error) => json(
            503,
            serde_json::json!({ "status": "engine_unavailable", "message": error.to_string() })
                .to_string(),
        ),
    }
}

/// Every event to `tracing`: the current state first, then each transition as it fires.
async fn log_events(engine: FailoverHandle) {
    let mut events = match engine.event_stream().await {
        Ok(events) => events,
        Err(error) => {
            tracing::error!(%error, "no event stream");
            return;
        }
    };
    loop {
        match events.recv().await {
            Ok(event) => {
                let name = event.kind.name();
                let details = event_line(&event);
                match event.kind {
                    EventKind::CurrentState { .. }
                    | EventKind::DatabaseConnectionSwitched { .. } => {
                        tracing::info!(event = %name, %details, "database failover")
                    }
                    _ => tracing::warn!(event = %name, %details, "database failover"),
                }
            }
            Err(EventStreamError::Lagged(skipped)) => {
                tracing::warn!(skipped, "event stream fell behind")
            }
            Err(_) => return,
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("stopping");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_max_level(tracing::Level::INFO)
        .init();
    let config = load_config()?;
    let engine = dbfailover::builder(config.clone())?
        .build()?
        .start_in_thread()?;
    tokio::spawn(log_events(engine.clone()));
    let routed: Routed = Arc::new(RoutedPool::connect_lazy(engine.clone(), &config, None)?);

    let app = Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/health", get(health))
        .with_state(routed);
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Stops the engine's thread (bounded): its probes and pools end with it.
    engine.shutdown().await;
    println!("stopped");
    Ok(())
}
