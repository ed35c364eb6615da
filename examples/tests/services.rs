//! The example services against real PostgreSQL servers: served by the primary, then the failover,
//! then 503 with a clear body in limited mode; their own listener prints the events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_tests::server::DbServer;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Service {
    child: Child,
    addr: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &str, primary: &DbServer, failover: &DbServer) -> Service {
    let mut child = Command::new(binary)
        .env("DBFAILOVER_PRIMARY_URL", primary.url().expose())
        .env("DBFAILOVER_FAILOVER_URL", failover.url().expose())
        .env("DBFAILOVER_INTERVAL", "100ms")
        .env("LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let output = Arc::new(Mutex::new(Vec::new()));
    let addr = loop {
        let line = lines
            .next()
            .expect("the service printed its address")
            .unwrap();
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_owned();
        }
        output.lock().unwrap().push(line);
    };
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Service {
        child,
        addr,
        output,
    }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
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
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn until(addr: &str, want: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let started = Instant::now();
    loop {
        let (status, body) = get(addr, "/whoami");
        if want(status, &body) {
            return (status, body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "last answer {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn exercise(binary: &str) {
    let (mut primary, mut failover) = tokio::join!(
        DbServer::postgres("primary_db"),
        DbServer::postgres("failover_db")
    );
    let service = start(binary, &primary, &failover);
    until(&service.addr, |s, b| s == 200 && b.contains("primary_db"));
    primary.kill9();
    until(&service.addr, |s, b| s == 200 && b.contains("failover_db"));
    failover.kill9();
    let (status, body) = until(&service.addr, |s, _| s == 503);
    assert_eq!(status, 503);
    assert!(body.contains("limited functionality mode"), "{body}");
    assert!(
        body.contains("\"error\":\"limited_functionality_mode\""),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(100));
    let printed = service.output.lock().unwrap().join("\n");
    assert!(
        printed.contains("\"event\":\"LimitedFunctionalityModeActivated\""),
        "{printed}"
    );
    assert!(
        printed.contains("\"event\":\"SwitchedToFailoverConnection\""),
        "{printed}"
    );
    assert!(
        !printed.contains(dbfailover_tests::server::APP_PASSWORD),
        "a password was printed"
    );
}

#[actix_rt::test]
async fn the_actix_web_service_fails_over_and_answers_503_in_limited_mode() {
    exercise(env!("CARGO_BIN_EXE_actix-web-service")).await;
}

#[actix_rt::test]
async fn the_tokio_service_fails_over_and_answers_503_in_limited_mode() {
    exercise(env!("CARGO_BIN_EXE_tokio-service")).await;
}
