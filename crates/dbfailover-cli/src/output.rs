//! What the subcommands print: events (human lines or JSON lines) and connection states. Every line
//! (stdout, stderr and the tracing log) goes through [`redact`] on its way out: URL passwords are
//! masked by structure, and once the configuration is loaded every password it holds is removed by
//! value too, in whatever form a driver or a server echoes it.

use actix::prelude::*;
use chrono::{DateTime, SecondsFormat, Utc};
use dbfailover::core::url::{Redactor, mask_text};
use dbfailover::{ConnectionReport, FailoverEvent};
use serde::Serialize;
use std::io::Write;

/// Every secret of the loaded configuration; unset until a configuration is loaded.
static SECRETS: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();

/// Remembers the secrets of `config`, so that every later line is redacted by value too.
pub(crate) fn remember_secrets(config: &dbfailover::Config) {
    let _ = SECRETS.set(config.redactor());
}

/// `text` as it may be shown: URL passwords masked, known secrets removed.
pub(crate) fn redact(text: &str) -> String {
    match SECRETS.get() {
        Some(redactor) => redactor.redact(text),
        None => mask_text(text),
    }
}

/// Prints `line` on stdout, redacted, flushed at once (a pipe sees each line as it happens).
pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) is not this command's failure.
    let _ = writeln!(out, "{}", redact(line));
    let _ = out.flush();
}

/// Prints `message` on stderr as `dbfailover: <message>`, redacted.
pub(crate) fn print_error(message: &str) {
    eprintln!("dbfailover: {}", redact(message));
}

/// The tracing log's writer: gathers one formatted event, then writes it redacted to stderr.
#[derive(Default)]
pub(crate) struct RedactingStderr(Vec<u8>);

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.0.is_empty() {
            let text = redact(&String::from_utf8_lossy(&self.0));
            self.0.clear();
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes())?;
            err.flush()?;
        }
        Ok(())
    }
}

impl Drop for RedactingStderr {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// RFC 3339 in UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One event as a JSON object on one line: `event` and `at` first, then the payload in snake_case.
pub(crate) fn event_json(event: &FailoverEvent) -> String {
    let mut fields = match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    fields.remove("event");
    fields.remove("at");
    let mut line = format!(
        "{{\"event\":{},\"at\":{}",
        serde_json::Value::from(event.kind.name()),
        serde_json::Value::from(timestamp(event.at))
    );
    for (key, value) in fields {
        line.push(',');
        line.push_str(&serde_json::Value::String(key).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    }
    line.push('}');
    line
}

/// One event as a human line: `2024-05-01T12:00:00.123Z EVENT SwitchedToFailoverConnection previous_connection_name=main ...`.
pub(crate) fn event_human(event: &FailoverEvent) -> String {
    format!("{} EVENT {}", timestamp(event.at), event_words(event))
}

/// An event without its time: `SwitchedToFailoverConnection previous_connection_name="main" ...`.
pub(crate) fn event_words(event: &FailoverEvent) -> String {
    let mut line = event.kind.name().to_owned();
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) {
        for (key, value) in fields {
            if key == "event" || key == "at" {
                continue;
            }
            match value {
                serde_json::Value::String(text) => line.push_str(&format!(" {key}={text:?}")),
                serde_json::Value::Null => {}
                other => line.push_str(&format!(" {key}={other}")),
            }
        }
    }
    line
}

/// An actor that prints every event it receives, as JSON lines or human lines.
pub(crate) struct EventPrinter {
    /// JSON lines instead of human lines.
    pub(crate) json: bool,
}

impl Actor for EventPrinter {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for EventPrinter {
    type Result = ();

    fn handle(&mut self, event: FailoverEvent, _ctx: &mut Context<Self>) {
        if self.json {
            print_line(&event_json(&event));
        } else {
            print_line(&event_human(&event));
        }
    }
}

/// One connection's state as `health-check --json` and `status --json` show it.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectionJson {
    /// The configured name.
    pub(crate) connection: String,
    /// `primary`, `failover` or `other`.
    pub(crate) role: String,
    /// `HEALTHY`, `DOWN` or `UNKNOWN`.
    pub(crate) status: String,
    /// Consecutive failed checks.
    pub(crate) failure_count: u32,
    /// Consecutive successful checks.
    pub(crate) success_count: u32,
    /// When it was last checked, RFC 3339 UTC, or null.
    pub(crate) last_check_at: Option<String>,
    /// Latency of the last successful check in milliseconds, or null.
    pub(crate) latency_ms: Option<f64>,
    /// Whether it accepted writes at its last successful check, or null.
    pub(crate) writable: Option<bool>,
    /// The reason of the last failed check, or null.
    pub(crate) error: Option<String>,
    /// Its place in a replication cluster at the last successful check (`replicating`, `cluster`,
    /// `timeline`), or null when the probe could not tell.
    pub(crate) replication: Option<dbfailover::Replication>,
}

impl From<&ConnectionReport> for ConnectionJson {
    fn from(report: &ConnectionReport) -> Self {
        let state = &report.state;
        Self {
            connection: report.name.clone(),
            role: report.role.to_string(),
            status: state.status.as_str().to_owned(),
            failure_count: state.failure_count,
            success_count: state.success_count,
            last_check_at: state.last_check_at.map(timestamp),
            latency_ms: state
                .last_latency
                .map(|d| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0),
            writable: state.writable,
            error: state.last_error.as_deref().map(redact),
            replication: state.replication.clone(),
        }
    }
}

/// `value` as one line of JSON (an object that cannot be serialized prints as `{}`).
pub(crate) fn json_line(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbfailover::EventKind;

    #[test]
    fn an_event_line_starts_with_its_name_and_time() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.5Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let event = FailoverEvent::new(
            at,
            EventKind::SwitchedToFailoverConnection {
                previous_connection_name: Some("main".into()),
                new_connection_name: "standby".into(),
            },
        );
        let json = event_json(&event);
        assert!(
            json.starts_with(
                r#"{"event":"SwitchedToFailoverConnection","at":"2024-05-01T12:00:00.500Z","#
            ),
            "{json}"
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(value["previous_connection_name"], "main");
        assert_eq!(value["new_connection_name"], "standby");
        let human = event_human(&event);
        assert!(
            human.starts_with("2024-05-01T12:00:00.500Z EVENT SwitchedToFailoverConnection"),
            "{human}"
        );
        assert!(human.contains("new_connection_name=\"standby\""), "{human}");
    }
}
