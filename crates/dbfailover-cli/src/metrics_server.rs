//! Prometheus metrics for `watch --metrics-addr`: the engine records through the `metrics` facade;
//! this installs the Prometheus recorder of `metrics-exporter-prometheus` and its own HTTP listener,
//! which answers every path with the text format (`/health` with `OK`).

use crate::error::CliError;
use metrics_exporter_prometheus::PrometheusBuilder;
use std::net::{SocketAddr, TcpListener};

/// Buckets of the check latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder and starts the exporter's listener on `addr`, as a task of the current actix
/// arbiter (it stops with the command's runtime). Answers the address bound.
///
/// The exporter binds the address itself and does not say which port it got: for port 0, a free port
/// is picked first (bound and released at once), then handed to the exporter. Another process taking
/// that port in between makes the start fail with "cannot serve metrics", never serve elsewhere.
pub(crate) fn serve(addr: SocketAddr) -> Result<SocketAddr, CliError> {
    let cannot_serve = |error: &dyn std::fmt::Display| {
        CliError::Config(format!("cannot serve metrics on {addr}: {error}"))
    };
    let addr = if addr.port() == 0 {
        TcpListener::bind(addr)
            .and_then(|listener| listener.local_addr())
            .map_err(|error| cannot_serve(&error))?
    } else {
        addr
    };
    let (recorder, exporter) = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)
        .map_err(|error| CliError::Failed(format!("cannot build the metrics recorder: {error}")))?
        .with_http_listener(addr)
        .build()
        .map_err(|error| cannot_serve(&error))?;
    metrics::set_global_recorder(recorder).map_err(|error| {
        CliError::Failed(format!("cannot install the metrics recorder: {error}"))
    })?;
    actix_rt::spawn(async move {
        if let Err(error) = exporter.await {
            tracing::error!(?error, "metrics listener stopped");
        }
    });
    Ok(addr)
}
