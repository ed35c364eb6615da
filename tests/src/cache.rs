//! Real Redis and memcached servers for tests, on free loopback ports, killed and restarted by the
//! test, cleaned up on drop. The machine's own services are never touched.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which cache server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// `redis-server`, without persistence, with a password.
    Redis,
    /// `memcached`.
    Memcached,
}

/// A cache server owned by one test.
pub struct CacheServer {
    kind: CacheKind,
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

/// The Redis password the test bed sets (to check that it is masked everywhere).
pub const REDIS_PASSWORD: &str = "redis-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl CacheServer {
    /// Starts a server of `kind` and waits until it accepts connections.
    pub fn start(kind: CacheKind) -> Self {
        Self::start_with(kind, &[])
    }

    /// Starts a server of `kind` with `extra` command-line arguments (for example Redis's
    /// `--maxmemory 4mb --maxmemory-policy allkeys-random`).
    pub fn start_with(kind: CacheKind, extra: &[&str]) -> Self {
        let mut server = Self {
            kind,
            port: free_port(),
            child: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.restart();
        server
    }

    /// Runs `redis-cli` against this Redis server with `args`; answers its output.
    pub fn redis_cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
                "-a",
                REDIS_PASSWORD,
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("redis-cli: {e}"));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts the server again (empty: neither keeps anything on disk).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            CacheKind::Redis => {
                let mut cmd = Command::new("redis-server");
                cmd.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--requirepass", REDIS_PASSWORD, "--dir", "/tmp"]);
                cmd
            }
            CacheKind::Memcached => {
                let mut cmd = Command::new("memcached");
                cmd.args(["-p", &port, "-l", "127.0.0.1", "-U", "0", "-m", "16"]);
                if Command::new("id")
                    .arg("-u")
                    .output()
                    .map(|o| o.stdout.starts_with(b"0"))
                    .unwrap_or(false)
                {
                    cmd.args(["-u", "nobody"]);
                }
                cmd
            }
        };
        cmd.args(&self.extra);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", self.kind));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "{:?} did not start", self.kind);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the port still accepts connections, nothing answers. Returns once every thread of the
    /// server is stopped (a signal is delivered asynchronously).
    pub fn freeze(&self) {
        self.signal("STOP");
        let Some(child) = &self.child else {
            return;
        };
        let tasks = format!("/proc/{}/task", child.id());
        let stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|entries| {
                entries.flatten().all(|task| {
                    std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the last ')' (the command name may hold anything).
                        stat.rsplit_once(')')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
                    })
                })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stopped() {
            assert!(Instant::now() < deadline, "{:?} did not stop", self.kind);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT after [`CacheServer::freeze`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-s", signal, &child.id().to_string()])
                .status();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to reach it (Redis with its password).
    pub fn url(&self) -> String {
        match self.kind {
            CacheKind::Redis => format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.port),
            CacheKind::Memcached => format!("memcache://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        self.thaw();
        self.kill9();
    }
}
