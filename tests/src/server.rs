//! Real PostgreSQL and MariaDB servers for tests: each on a free loopback port, in a temporary folder,
//! started and killed by the test (kill -9, SIGSTOP / SIGCONT, restart, read-only), cleaned up on drop
//! even when the test fails. The machine's own database services are never touched.
//!
//! Each server runs in a process group of its own, so a fault reaches the whole server (postmaster and
//! backends alike), as a crashed or frozen host would.

use dbfailover::DatabaseUrl;
use dbfailover::sqlx::sqlx::mysql::MySqlConnectOptions;
use dbfailover::sqlx::sqlx::postgres::PgConnectOptions;
use dbfailover::sqlx::sqlx::{self, ConnectOptions, Connection};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The database user the application (and the engine) connects as, with a password to mask.
pub const APP_USER: &str = "app";
/// That user's password.
pub const APP_PASSWORD: &str = "app-secret";

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL, from `/usr/lib/postgresql/*/bin`.
    Postgres,
    /// MariaDB, `/usr/sbin/mariadbd`.
    MariaDb,
}

/// A database server owned by one test.
pub struct DbServer {
    kind: Kind,
    name: String,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    run_as: Option<(u32, u32)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")) == "0"
}

fn user_ids(user: &str) -> Option<(u32, u32)> {
    let uid = Command::new("id").args(["-u", user]).output().ok()?;
    let gid = Command::new("id").args(["-g", user]).output().ok()?;
    if !uid.status.success() || !gid.status.success() {
        return None;
    }
    let parse = |b: &[u8]| String::from_utf8_lossy(b).trim().parse().ok();
    Some((parse(&uid.stdout)?, parse(&gid.stdout)?))
}

/// The newest PostgreSQL's binaries folder.
pub fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("postgres").exists());
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("PostgreSQL is not installed (scripts/test installs it)"))
}

fn signal_group(pid: u32, signal: &str) {
    // The negative pid names the process group.
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl DbServer {
    /// Starts a PostgreSQL server named `name` (its `whoami` table holds the name).
    pub async fn postgres(name: &str) -> Self {
        Self::create(Kind::Postgres, name).await
    }

    /// Starts a MariaDB server named `name`.
    pub async fn mariadb(name: &str) -> Self {
        Self::create(Kind::MariaDb, name).await
    }

    /// Starts a server of `kind`.
    pub async fn create(kind: Kind, name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("dbfailover-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("temporary folder: {e}"));
        // PostgreSQL refuses to run as root; as root, run both as the packages' own users.
        let run_as = if is_root() {
            let user = match kind {
                Kind::Postgres => "postgres",
                Kind::MariaDb => "mysql",
            };
            let ids = user_ids(user).unwrap_or_else(|| {
                panic!("user `{user}` is missing (the server package creates it)")
            });
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))
                .unwrap_or_else(|e| panic!("chown: {e}"));
            Some(ids)
        } else {
            None
        };
        let mut server = Self {
            kind,
            name: name.to_owned(),
            dir,
            port: free_port(),
            child: None,
            run_as,
        };
        server.init();
        server.start().await;
        server.setup().await;
        server
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn init(&self) {
        match self.kind {
            Kind::Postgres => {
                output(
                    self.command(postgres_bin().join("initdb"))
                        .arg("-D")
                        .arg(self.data())
                        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]),
                );
            }
            Kind::MariaDb => {
                // Concurrent bootstraps occasionally fail on a loaded machine; a fresh folder and
                // another try is what an operator would do too. The last failure is shown whole.
                let mut last = String::new();
                for _ in 0..3 {
                    let _ = std::fs::remove_dir_all(self.data());
                    let mut cmd = Command::new("mariadb-install-db");
                    cmd.arg("--no-defaults")
                        .arg(format!("--datadir={}", self.data().display()))
                        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                        .args(["--innodb-use-native-aio=0", "--innodb-buffer-pool-size=16M"]);
                    if self.run_as.is_some() {
                        cmd.arg("--user=mysql");
                    }
                    match cmd.output() {
                        Ok(out) if out.status.success() => return,
                        Ok(out) => {
                            last = format!(
                                "{}\n{}",
                                String::from_utf8_lossy(&out.stdout),
                                String::from_utf8_lossy(&out.stderr)
                            );
                        }
                        Err(e) => last = e.to_string(),
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                panic!("mariadb-install-db failed three times:\n{last}");
            }
        }
    }

    /// Starts (or restarts) the server process and waits until it answers.
    pub async fn start(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap_or_else(|e| panic!("log file: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));
        let mut cmd = match self.kind {
            Kind::Postgres => {
                let mut cmd = self.command(postgres_bin().join("postgres"));
                cmd.arg("-D")
                    .arg(self.data())
                    .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
                    .arg(self.socket_dir())
                    // No fsync (the data lives as long as the test), but every commit reaches the
                    // OS before it returns, so a kill -9 of the server loses nothing.
                    .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
                    .args(["-c", "shared_buffers=16MB", "-c", "max_connections=60"]);
                cmd
            }
            Kind::MariaDb => {
                let mut cmd = Command::new("/usr/sbin/mariadbd");
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!(
                        "--socket={}",
                        self.dir.path().join("mysql.sock").display()
                    ))
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.path().join("mysql.pid").display()
                    ))
                    .args([
                        "--skip-log-bin",
                        "--innodb-buffer-pool-size=16M",
                        "--innodb-use-native-aio=0",
                        "--innodb-flush-log-at-trx-commit=2",
                        "--max-connections=60",
                        "--skip-name-resolve",
                    ]);
                if self.run_as.is_some() {
                    cmd.arg("--user=mysql");
                }
                cmd
            }
        };
        cmd.process_group(0)
            .stdout(log)
            .stderr(log2)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.admin_ping().await {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited while starting ({status}):\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn pg_admin(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .database("postgres")
    }

    fn my_admin(&self) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .socket(self.dir.path().join("mysql.sock"))
            .username("root")
    }

    async fn admin_ping(&self) -> bool {
        let attempt = async {
            match self.kind {
                Kind::Postgres => self.pg_admin().connect().await.is_ok(),
                Kind::MariaDb => self.my_admin().connect().await.is_ok(),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .unwrap_or(false)
    }

    /// Runs statements as the server's administrator.
    pub async fn admin(&self, statements: &[&str]) {
        let run = async {
            match self.kind {
                Kind::Postgres => {
                    let mut conn = self.pg_admin().connect().await?;
                    for s in statements {
                        sqlx::query(s).execute(&mut conn).await?;
                    }
                    conn.close().await
                }
                Kind::MariaDb => {
                    let mut conn = self.my_admin().connect().await?;
                    for s in statements {
                        sqlx::query(s).execute(&mut conn).await?;
                    }
                    conn.close().await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap_or_else(|_| panic!("{}: admin statements timed out", self.name))
            .unwrap_or_else(|e| panic!("{}: {statements:?}: {e}", self.name));
    }

    /// A number the administrator's query returns (for checks of server-side state).
    pub async fn admin_count(&self, query: &str) -> i64 {
        let run = async {
            match self.kind {
                Kind::Postgres => {
                    let mut conn = self.pg_admin().connect().await?;
                    sqlx::query_scalar::<_, i64>(query)
                        .fetch_one(&mut conn)
                        .await
                }
                Kind::MariaDb => {
                    let mut conn = self.my_admin().connect().await?;
                    sqlx::query_scalar::<_, i64>(query)
                        .fetch_one(&mut conn)
                        .await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap_or_else(|_| panic!("{}: admin query timed out", self.name))
            .unwrap_or_else(|e| panic!("{}: {query}: {e}", self.name))
    }

    async fn setup(&self) {
        let name = &self.name;
        match self.kind {
            Kind::Postgres => {
                self.admin(&[
                    &format!("CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'"),
                    &format!("CREATE DATABASE app OWNER {APP_USER}"),
                ])
                .await;
                let mut conn = PgConnectOptions::new()
                    .host("127.0.0.1")
                    .port(self.port)
                    .username(APP_USER)
                    .database("app")
                    .connect()
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                sqlx::query("CREATE TABLE whoami (name TEXT NOT NULL)")
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                sqlx::query("INSERT INTO whoami VALUES ($1)")
                    .bind(name)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Kind::MariaDb => {
                self.admin(&[
                    "CREATE DATABASE app",
                    &format!("CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'"),
                    &format!("GRANT ALL ON app.* TO '{APP_USER}'@'%'"),
                    "CREATE TABLE app.whoami (name VARCHAR(64) NOT NULL)",
                    &format!("INSERT INTO app.whoami VALUES ('{name}')"),
                ])
                .await;
            }
        }
    }

    /// The server's name (what `SELECT name FROM whoami` answers).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The application's URL (with a password, to check that it is masked everywhere).
    pub fn url(&self) -> DatabaseUrl {
        let scheme = match self.kind {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mysql",
        };
        DatabaseUrl::parse(&format!(
            "{scheme}://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/app",
            self.port
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// kill -9 of the whole server; returns once it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(child.id(), "KILL");
            let _ = child.wait();
            // Backends in the group die with it; give the kernel a moment to reap them.
            let deadline = Instant::now() + Duration::from_secs(5);
            while group_alive(child.id()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// SIGSTOP: the port still accepts connections, nothing answers.
    pub fn freeze(&self) {
        if let Some(pid) = self.pid() {
            signal_group(pid, "STOP");
        }
    }

    /// SIGCONT after [`DbServer::freeze`].
    pub fn thaw(&self) {
        if let Some(pid) = self.pid() {
            signal_group(pid, "CONT");
        }
    }

    /// Starts the server again after [`DbServer::kill9`] without waiting for it to answer (for
    /// flapping, where the next kill may come before it is ready).
    pub fn spawn_again(&mut self) {
        self.spawn();
    }

    /// Makes the server refuse writes (PostgreSQL `default_transaction_read_only`, MariaDB `read_only`),
    /// or accept them again.
    pub async fn set_read_only(&self, read_only: bool) {
        let on = if read_only { "on" } else { "off" };
        match self.kind {
            Kind::Postgres => {
                self.admin(&[
                    &format!("ALTER SYSTEM SET default_transaction_read_only = {on}"),
                    "SELECT pg_reload_conf()",
                ])
                .await;
            }
            Kind::MariaDb => {
                self.admin(&[&format!("SET GLOBAL read_only = {}", u8::from(read_only))])
                    .await;
            }
        }
    }

    /// The application user's open connections to the server (as the administrator sees them).
    pub async fn app_connections(&self) -> i64 {
        match self.kind {
            Kind::Postgres => {
                self.admin_count(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = '{APP_USER}'"
                ))
                .await
            }
            Kind::MariaDb => {
                self.admin_count(&format!(
                    "SELECT CAST(count(*) AS SIGNED) FROM information_schema.processlist WHERE user = '{APP_USER}'"
                ))
                .await
            }
        }
    }
}

fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Drop for DbServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A frozen server ignores SIGKILL only until it is continued; send both.
            signal_group(pid, "KILL");
            signal_group(pid, "CONT");
        }
        self.kill9();
    }
}
