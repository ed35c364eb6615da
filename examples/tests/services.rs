//! The example services against real PostgreSQL servers, configured as a user would (the library's
//! `DBFAILOVER_<SECTION>__<KEY>` variables): served by the primary, then by the failover after the
//! primary is killed, then 503 with a JSON body in limited mode; their own listener prints the events;
//! SIGTERM stops them cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover::sqlx::{self, Connection, PgConnection};
use dbfailover_tests::server::{APP_PASSWORD, DbServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any expected answer or line may take.
const PATIENCE: Duration = Duration::from_secs(10);

struct Service {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` on `primary` and `failover`, configured only through the library's variables.
fn start(binary: &str, primary: &DbServer, failover: &DbServer) -> Service {
    let mut child = Command::new(binary)
        .env_remove("DBFAILOVER_CONFIG")
        .env("DBFAILOVER_DATABASES__PRIMARY__URL", primary.url().expose())
        .env(
            "DBFAILOVER_DATABASES__FAILOVER__URL",
            failover.url().expose(),
        )
        .env("DBFAILOVER_HEALTH_CHECK__INTERVAL", "100ms")
        .env("LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let output = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Service { child, output }
}

impl Service {
    /// Everything it printed so far.
    fn printed(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The first line it printed that `want` accepts, waiting for it.
    fn line(&self, want: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.output.lock().unwrap().iter().find(|l| want(l)) {
                return line.clone();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no such line in:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address it printed as `listening on ADDR`.
    fn addr(&self) -> String {
        self.line(|l| l.starts_with("listening on "))
            .trim_start_matches("listening on ")
            .to_owned()
    }

    /// SIGTERM, then its exit status (it must exit within the patience).
    fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "still running after SIGTERM:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its events so far, parsed from the JSON lines it printed.
    fn json_events(&self) -> Vec<Value> {
        self.output
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("event").is_some())
            .collect()
    }
}

/// One HTTP/1.1 request; answers the status and the body.
fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, None)
}

/// Asks `GET path` until `want` accepts the answer.
fn until(addr: &str, path: &str, want: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let started = Instant::now();
    loop {
        let (status, body) = get(addr, path);
        if want(status, &body) {
            return (status, body);
        }
        assert!(
            started.elapsed() < PATIENCE,
            "last answer to {path}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Whether an answer is limited mode's (a lost connection also answers 503, with another body).
fn limited(status: u16, body: &str) -> bool {
    status == 503 && body.contains("limited_functionality_mode")
}

/// The limited-mode answer: 503 with a JSON body that says so.
fn assert_limited_mode_answer(status: u16, body: &str) {
    assert_eq!(status, 503, "{body}");
    let body = json(body);
    assert_eq!(body["error"], "limited_functionality_mode", "{body}");
    assert_eq!(body["limited_mode"], true, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limited functionality mode"),
        "{body}"
    );
}

/// `name`'s status in a `/health` body.
fn status_of(health: &Value, name: &str) -> String {
    health["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {health}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn assert_no_password(service: &Service) {
    assert!(
        !service.printed().contains(APP_PASSWORD),
        "a password was printed"
    );
}

async fn servers() -> (DbServer, DbServer) {
    tokio::join!(
        DbServer::postgres("primary_db"),
        DbServer::postgres("failover_db")
    )
}

/// The actix-web service's scenario: `GET /whoami` answers the database that served it.
async fn exercise_whoami(binary: &str) {
    let (mut primary, mut failover) = servers().await;
    let mut service = start(binary, &primary, &failover);
    let addr = service.addr();
    until(&addr, "/whoami", |s, b| {
        s == 200 && b.contains("primary_db")
    });
    primary.kill9();
    until(&addr, "/whoami", |s, b| {
        s == 200 && b.contains("failover_db")
    });
    failover.kill9();
    let (status, body) = until(&addr, "/whoami", limited);
    assert_limited_mode_answer(status, &body);
    service.line(|l| l.contains("\"event\":\"LimitedFunctionalityModeActivated\""));
    service.line(|l| l.contains("\"event\":\"SwitchedToFailoverConnection\""));
    assert_no_password(&service);
    assert!(service.terminate().success(), "{}", service.printed());
}

#[actix_rt::test]
async fn the_actix_web_service_fails_over_and_answers_503_in_limited_mode() {
    exercise_whoami(env!("CARGO_BIN_EXE_actix-web-service")).await;
}

/// A `users` table on `server`, holding one user named after the server.
async fn seed_users(server: &DbServer) {
    let mut conn = PgConnection::connect(server.url().expose()).await.unwrap();
    sqlx::query("CREATE TABLE users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (name) VALUES ($1)")
        .bind(format!("seeded on {}", server.name()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

fn post_user(addr: &str, name: &str) -> (u16, String) {
    request(
        addr,
        "POST",
        "/users",
        Some(&serde_json::json!({ "name": name }).to_string()),
    )
}

#[actix_rt::test]
async fn the_axum_service_routes_reads_and_writes_fails_over_and_answers_503_json_in_limited_mode()
{
    let (mut primary, mut failover) = servers().await;
    tokio::join!(seed_users(&primary), seed_users(&failover));
    let mut service = start(env!("CARGO_BIN_EXE_axum-service"), &primary, &failover);
    let addr = service.addr();

    // The primary serves reads and writes.
    until(&addr, "/users", |s, b| {
        s == 200 && b.contains("seeded on primary_db")
    });
    let (status, body) = post_user(&addr, "written to the primary");
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["name"], "written to the primary");
    let (status, body) = get(&addr, "/users");
    assert_eq!(status, 200, "{body}");
    let users = json(&body)["users"].to_string();
    assert!(users.contains("seeded on primary_db"), "{users}");
    assert!(users.contains("written to the primary"), "{users}");
    let (status, body) = until(&addr, "/health", |s, b| {
        s == 200
            && serde_json::from_str::<Value>(b).is_ok_and(|h| status_of(&h, "primary") == "HEALTHY")
    });
    assert_eq!(status, 200);
    let health = json(&body);
    assert_eq!(health["limited_mode"], false, "{health}");
    assert_eq!(health["active"]["name"], "primary", "{health}");
    assert_eq!(status_of(&health, "primary"), "HEALTHY", "{health}");

    // The primary dies: the failover serves reads and takes the writes.
    primary.kill9();
    let (_, body) = until(&addr, "/users", |s, b| {
        s == 200 && b.contains("seeded on failover_db")
    });
    assert!(!body.contains("written to the primary"), "{body}");
    let (_, body) = until(&addr, "/health", |s, b| {
        s == 200
            && serde_json::from_str::<Value>(b).is_ok_and(|h| h["active"]["role"] == "failover")
    });
    let health = json(&body);
    assert_eq!(health["active"]["name"], "failover", "{health}");
    assert_eq!(status_of(&health, "primary"), "DOWN", "{health}");
    let (status, body) = post_user(&addr, "written to the failover");
    assert_eq!(status, 201, "{body}");
    let (status, body) = get(&addr, "/users");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("written to the failover"), "{body}");

    // Both die: limited mode, 503 with a JSON body for reads, writes and the health check.
    failover.kill9();
    let (status, body) = until(&addr, "/users", limited);
    assert_limited_mode_answer(status, &body);
    let (status, body) = post_user(&addr, "refused");
    assert_limited_mode_answer(status, &body);
    let (status, body) = until(&addr, "/health", |s, b| {
        s == 503 && b.contains("\"limited_mode\":true")
    });
    assert_eq!(status, 503);
    let health = json(&body);
    assert_eq!(health["active"]["role"], "blocking", "{health}");
    assert_eq!(status_of(&health, "failover"), "DOWN", "{health}");

    // Its own task logged every event to tracing, the current state first (the engine's own log
    // lines, from other targets, are not what is looked for here).
    let own = |event: &str| {
        let field = format!("event={event} ");
        move |l: &str| l.contains(" axum_service: ") && l.contains(&field)
    };
    let first = service.line(|l| l.contains(" axum_service: ") && l.contains(" event="));
    assert!(first.contains("event=CurrentState "), "{first}");
    service.line(own("SwitchedToFailoverConnection"));
    service.line(own("LimitedFunctionalityModeActivated"));
    assert_no_password(&service);

    let status = service.terminate();
    assert!(status.success(), "{status}: {}", service.printed());
    service.line(|l| l == "stopped");
}

#[actix_rt::test]
async fn the_tokio_worker_follows_the_failover_into_limited_mode_and_prints_the_event_stream() {
    let (mut primary, mut failover) = servers().await;
    let mut service = start(env!("CARGO_BIN_EXE_tokio-service"), &primary, &failover);

    // What answers the worker's routed queries, from each database's own data.
    service.line(|l| l == r#"{"served_by":"primary_db"}"#);
    primary.kill9();
    service.line(|l| l == r#"{"served_by":"failover_db"}"#);
    failover.kill9();
    let refused = service.line(|l| l.contains("\"limited_mode\":true"));
    let refused = json(&refused);
    assert_eq!(refused["error"], "limited_functionality_mode", "{refused}");

    // The event stream: the current state first (primary active), then the transitions in order.
    service.line(|l| l.contains("\"event\":\"LimitedFunctionalityModeActivated\""));
    let events = service.json_events();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names.first(), Some(&"CurrentState"), "{names:?}");
    let position = |name: &str| names.iter().position(|n| *n == name);
    let switched = position("SwitchedToFailoverConnection").expect("switched to the failover");
    let limited = position("LimitedFunctionalityModeActivated").expect("limited mode");
    assert!(switched < limited, "{names:?}");
    assert_no_password(&service);

    let status = service.terminate();
    assert!(status.success(), "{status}: {}", service.printed());
    service.line(|l| l == "stopped");
}
