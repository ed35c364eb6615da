//! Helpers of the command's tests: configuration files, runs of the real binary, and a running
//! `watch` whose lines are read as they come.

#![allow(dead_code, unreachable_pub)]

use dbfailover::DatabaseUrl;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The password of the test bed's servers: it must never be printed.
pub const PASSWORD: &str = dbfailover_tests::server::APP_PASSWORD;

/// A configuration file with `main` and `standby` (and any `others`), checks tuned for tests.
pub fn config_text(
    main: &DatabaseUrl,
    standby: &DatabaseUrl,
    others: &[(&str, &DatabaseUrl)],
) -> String {
    let mut text = format!(
        r#"[failover]
primary = "main"
failover = "standby"
blocking = "blocking"

[databases.main]
url = "{}"
[databases.standby]
url = "{}"
"#,
        main.expose(),
        standby.expose()
    );
    for (name, url) in others {
        text.push_str(&format!("[databases.{name}]\nurl = \"{}\"\n", url.expose()));
    }
    text.push_str(
        r#"
[health_check]
failure_threshold = 2
recovery_threshold = 1
timeout = "500ms"
interval = "100ms"
fast_interval = "20ms"
"#,
    );
    text
}

/// Writes `text` as `dbfailover.toml` in a new temporary folder.
pub fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("dbfailover.toml");
    std::fs::write(&path, text).expect("config written");
    (dir, path)
}

/// The binary with no `DBFAILOVER_*` variable of the test's environment leaking in.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbfailover"));
    cmd.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("DBFAILOVER_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs the binary with `args` in `dir`; answers the output and how long it took.
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let output = command(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the command runs");
    (output, started.elapsed())
}

/// stdout and stderr of `output`, asserting that neither holds the password.
pub fn texts(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stdout.contains(PASSWORD), "password on stdout:\n{stdout}");
    assert!(!stderr.contains(PASSWORD), "password on stderr:\n{stderr}");
    (stdout, stderr)
}

/// The exit code of `output`.
pub fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

/// A running `dbfailover watch`, its stdout lines read by a thread.
pub struct Watch {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Watch {
    /// Starts `dbfailover watch` with `args` in `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(dir, args, &[])
    }

    /// Starts `dbfailover watch` with `args` and the variables `env` in `dir`.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = command(dir)
            .arg("watch")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("watch starts");
        let (tx, rx) = channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits up to `within` for a line matching `wanted`; answers it.
    pub fn wait_for(&mut self, within: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        if let Some(line) = self.seen.iter().find(|l| wanted(l)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    assert!(!line.contains(PASSWORD), "password printed: {line}");
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no matching line within {within:?}; seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Sends `signal` (TERM, INT) with `kill`, then waits up to `within` for the exit; answers the
    /// exit code and the time the command took to stop.
    pub fn stop(&mut self, signal: &str, within: Duration) -> (Option<i32>, Duration) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // The rest of stdout, for the password check.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    assert!(!line.contains(PASSWORD), "password printed: {line}");
                    self.seen.push(line);
                }
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("watch did not stop within {within:?} after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the command printed on stderr (after it ended).
    pub fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        assert!(!text.contains(PASSWORD), "password on stderr: {text}");
        text
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` from `addr`; answers the body.
pub fn get_metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics listener answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout set");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// A free loopback address.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}
