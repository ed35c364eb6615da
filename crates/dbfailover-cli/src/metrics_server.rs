//! Prometheus metrics for `watch --metrics-addr`: the engine records through the `metrics` facade;
//! this installs a Prometheus recorder and answers `GET /metrics` with its text format.

use crate::error::CliError;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Buckets of the probe latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder and starts answering on `addr` (on the current actix arbiter). Answers the
/// address actually bound (port 0 picks one).
pub(crate) async fn serve(addr: SocketAddr) -> Result<SocketAddr, CliError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| CliError::Config(format!("cannot serve metrics on {addr}: {error}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let handle = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)
        .and_then(|builder| builder.install_recorder())
        .map_err(|error| {
            CliError::Failed(format!("cannot install the metrics recorder: {error}"))
        })?;
    describe();
    actix_rt::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let handle = handle.clone();
                    actix_rt::spawn(answer(stream, handle));
                }
                Err(error) => tracing::warn!(%error, "metrics listener could not accept"),
            }
        }
    });
    Ok(bound)
}

fn describe() {
    use dbfailover::engine::metrics::*;
    metrics::describe_histogram!(
        PROBE_DURATION,
        metrics::Unit::Seconds,
        "latency of successful checks"
    );
    metrics::describe_counter!(CHECKS, "checks run, by result");
    metrics::describe_counter!(CHECK_FAILURES, "failed checks");
    metrics::describe_gauge!(CONNECTION_STATUS, "0 UNKNOWN, 1 HEALTHY, 2 DOWN");
    metrics::describe_gauge!(
        ACTIVE_CONNECTION,
        "1 for the active connection, 0 for the others"
    );
    metrics::describe_counter!(SWITCHES, "switches of the active connection");
}

/// Answers one HTTP/1 request: the metrics for `GET /metrics`, 404 otherwise; then closes.
async fn answer(mut stream: TcpStream, handle: PrometheusHandle) {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let first_line = String::from_utf8_lossy(&request)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut parts = first_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            handle.run_upkeep();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        } else {
            (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "metrics are at /metrics\n".to_owned(),
            )
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
