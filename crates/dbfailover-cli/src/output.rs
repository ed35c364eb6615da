//! What the subcommands print: events (human lines or JSON lines) and connection states. Every line
//! goes through [`mask_password`] on its way out.

use actix::prelude::*;
use chrono::{DateTime, SecondsFormat, Utc};
use dbfailover::core::url::mask_password;
use dbfailover::{ConnectionReport, FailoverEvent};
use serde::Serialize;
use std::io::Write;

/// Prints `line` on stdout, password masked, flushed at once (a pipe sees each line as it happens).
pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) is not this command's failure.
    let _ = writeln!(out, "{}", mask_password(line));
    let _ = out.flush();
}

/// Prints `message` on stderr as `dbfailover: <message>`, password masked.
pub(crate) fn print_error(message: &str) {
    eprintln!("dbfailover: {}", mask_password(message));
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
            error: state.last_error.as_deref().map(mask_password),
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
