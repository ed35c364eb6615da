//! A plain `#[tokio::main]` service embedding dbfailover: the engine runs on a thread it owns, the
//! service's own listener actor runs on the engine's arbiter, queries go through the routed pool, and
//! limited functionality mode answers 503 at once. The HTTP side is a minimal HTTP/1.1 responder, to
//! keep the example free of a web framework.
//!
//! ```sh
//! DBFAILOVER_PRIMARY_URL=postgres://app:secret@10.0.0.1/app \
//! DBFAILOVER_FAILOVER_URL=postgres://app:secret@10.0.0.2/app \
//! LISTEN=127.0.0.1:8080 cargo run -p dbfailover-examples --bin tokio-service
//! curl localhost:8080/whoami
//! ```

use actix::Actor;
use dbfailover::sqlx::{self, Postgres};
use dbfailover::{RoutedError, RoutedPool};
use dbfailover_examples::{EventLog, config_from_env, error_body, limited_mode_body, served_body};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn whoami(routed: &RoutedPool<Postgres>) -> (u16, String) {
    // Which database served the query, from the database's own data.
    let answer = routed
        .with_connection(async |conn| {
            sqlx::query_scalar::<_, String>("SELECT name FROM whoami")
                .fetch_one(conn)
                .await
        })
        .await;
    match answer {
        Ok(name) => (200, served_body(&name)),
        Err(error @ RoutedError::AllConnectionsUnavailable { .. }) => {
            (503, limited_mode_body(&error))
        }
        Err(error) => (502, error_body(&error)),
    }
}

async fn serve(mut stream: TcpStream, routed: Arc<RoutedPool<Postgres>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&head);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/whoami" => whoami(&routed).await,
        _ => (404, "{\"error\":\"not_found\"}".to_owned()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = config_from_env()?;
    let engine = dbfailover::builder(config.clone())?
        .build()?
        .start_in_thread()?;
    // The service's own actor, on the arbiter of the engine's thread.
    let listener = EventLog::start_in_arbiter(engine.arbiter(), |_| EventLog);
    engine.subscribe(listener.recipient()).await?;
    let routed = Arc::new(RoutedPool::<Postgres>::connect_lazy(
        engine.clone(),
        &config,
        None,
    )?);

    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let socket = TcpListener::bind(&listen).await?;
    println!("listening on {}", socket.local_addr()?);
    loop {
        tokio::select! {
            accepted = socket.accept() => {
                let (stream, _) = accepted?;
                let routed = Arc::clone(&routed);
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, routed).await {
                        eprintln!("connection: {error}");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    engine.shutdown().await;
    Ok(())
}
