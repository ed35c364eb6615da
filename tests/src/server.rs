//! Real PostgreSQL and MariaDB servers for tests: each on a free loopback port, in a temporary folder,
//! started and killed by the test (kill -9, SIGSTOP / SIGCONT, restart, read-only), cleaned up on drop
//! even when the test fails. The machine's own database services are never touched.
//!
//! A fault reaches every process of the server, as a crashed or frozen host would: the main process
//! (postmaster, `mariadbd`) first, then each of its descendants, signalled one by one by pid. A process
//! group would not do: PostgreSQL backends call `setsid()` and leave the postmaster's group.
//!
//! Servers can also replicate for real: a PostgreSQL standby made by `pg_basebackup` that streams
//! from its primary, or a MariaDB replica following its primary by GTID; each can be promoted, and a
//! PostgreSQL replay can be paused to make a replica lag. Replicas are servers like the others: the
//! same faults reach them.

use dbfailover::DatabaseUrl;
use dbfailover::sqlx::mysql::MySqlConnectOptions;
use dbfailover::sqlx::postgres::PgConnectOptions;
use dbfailover::sqlx::{self, ConnectOptions, Connection};
use dbfailover::sqlx::{Column, Row};
use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Set up for replication: PostgreSQL logs hint bits (`wal_log_hints`, which `pg_rewind` needs);
    /// MariaDB keeps a row-based binary log with GTIDs, its port as server id.
    replication: bool,
    /// MariaDB: follows a writer, so starts read-only; promotion clears it. (A PostgreSQL standby
    /// keeps this in its data folder: `standby.signal`.)
    follower: AtomicBool,
}

/// How long a replica may take to follow its writer, or a promoted one to accept writes.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(30);

/// `text` as an SQL string literal for both servers (without backslashes, which MariaDB reads as
/// escapes and PostgreSQL does not).
fn sql_literal(text: &str) -> String {
    assert!(
        !text.contains('\\'),
        "no backslash in SQL text here: {text:?}"
    );
    format!("'{}'", text.replace('\'', "''"))
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

/// How long a fault may take to reach every process of a server.
const FAULT_DEADLINE: Duration = Duration::from_secs(10);

/// One process as `/proc/PID/stat` shows it; the start time tells a reused pid apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcInfo {
    pid: u32,
    ppid: u32,
    state: char,
    start: u64,
}

impl ProcInfo {
    fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(pid, &text)
    }

    /// The fields of a `stat` line. The command name (field 2) is in parentheses and may itself hold
    /// spaces and `)`, so the fields are counted from the last `)`.
    fn parse(pid: u32, text: &str) -> Option<Self> {
        let (_, rest) = text.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        // Field 22 (the start time); fields 3 and 4 are read already.
        let start = fields.nth(22 - 5)?.parse().ok()?;
        Some(Self {
            pid,
            ppid,
            state,
            start,
        })
    }

    /// The same process as now (`None` once it has exited and been reaped, or its pid was reused).
    fn now(&self) -> Option<Self> {
        Self::read(self.pid).filter(|p| p.start == self.start)
    }

    /// Still running (or stopped): neither reaped nor a zombie.
    fn alive(&self) -> bool {
        self.now()
            .is_some_and(|p| !matches!(p.state, 'Z' | 'X' | 'x'))
    }

    /// Stopped by a signal, or gone.
    fn stopped_or_gone(&self) -> bool {
        self.now()
            .is_none_or(|p| matches!(p.state, 'T' | 't' | 'Z' | 'X' | 'x'))
    }

    /// Stopped by a signal (not by a tracer).
    fn stopped(&self) -> bool {
        self.now().is_some_and(|p| p.state == 'T')
    }
}

fn all_processes() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(ProcInfo::read)
        .collect()
}

/// The descendants of the `known` processes that are not among them, parents before children.
fn new_descendants(known: &[ProcInfo]) -> Vec<ProcInfo> {
    let table = all_processes();
    let is_known = |p: &ProcInfo| known.iter().any(|k| k.pid == p.pid && k.start == p.start);
    let mut parents: HashSet<u32> = table
        .iter()
        .filter(|p| is_known(p))
        .map(|p| p.pid)
        .collect();
    let mut found: Vec<ProcInfo> = Vec::new();
    loop {
        let before = found.len();
        for p in &table {
            if parents.contains(&p.ppid) && !parents.contains(&p.pid) && !is_known(p) {
                parents.insert(p.pid);
                found.push(*p);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// `root` and all its descendants, `root` first; scans until a scan finds no new process.
fn tree(root: ProcInfo, deadline: Instant) -> Vec<ProcInfo> {
    let mut procs = vec![root];
    loop {
        let new = new_descendants(&procs);
        if new.is_empty() || Instant::now() >= deadline {
            return procs;
        }
        procs.extend(new);
    }
}

/// The process `pid` and all its descendants (found by parent pid in `/proc`), `pid` first; empty when
/// there is no such process.
pub fn process_tree(pid: u32) -> Vec<u32> {
    ProcInfo::read(pid)
        .map(|root| tree(root, Instant::now() + FAULT_DEADLINE))
        .unwrap_or_default()
        .iter()
        .map(|p| p.pid)
        .collect()
}

/// Sends `signal` to each of `procs`, by pid.
fn signal(signal: &str, procs: &[ProcInfo]) {
    if procs.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-s", signal, "--"])
        .args(procs.iter().map(|p| p.pid.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGSTOP to `root`, then to each descendant, until a scan finds no new one; with `wait`, also until
/// every one is stopped. Returns them all, `root` first.
fn stop_tree(root: ProcInfo, wait: bool, deadline: Instant) -> Vec<ProcInfo> {
    signal("STOP", &[root]);
    let mut procs = vec![root];
    loop {
        // A stopped parent forks no more, so the scans end.
        let new = new_descendants(&procs);
        let done = new.is_empty() && (!wait || procs.iter().all(ProcInfo::stopped_or_gone));
        if done || Instant::now() >= deadline {
            return procs;
        }
        signal("STOP", &new);
        procs.extend(new);
        if procs.iter().any(|p| !p.stopped_or_gone()) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// SIGCONT to every process of the tree of `root` (children first), then again to any still stopped.
fn continue_tree(root: ProcInfo, deadline: Instant) {
    let mut procs = tree(root, deadline);
    signal("CONT", &procs[1..]);
    signal("CONT", &procs[..1]);
    loop {
        procs.extend(new_descendants(&procs));
        let stopped: Vec<ProcInfo> = procs.iter().copied().filter(ProcInfo::stopped).collect();
        if stopped.is_empty() || Instant::now() >= deadline {
            return;
        }
        signal("CONT", &stopped);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SIGKILL to the process of `child` and every descendant; returns once all of them are gone (`child`
/// reaped, the others reaped or zombies), or an error naming those still alive after
/// [`FAULT_DEADLINE`].
fn kill_tree(child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + FAULT_DEADLINE;
    let mut procs = match ProcInfo::read(child.id()) {
        // Stopped first: a killed parent's children move to another parent, and could no longer be
        // found by parent pid.
        Some(root) => stop_tree(root, false, deadline),
        None => Vec::new(),
    };
    signal("KILL", &procs);
    loop {
        let reaped = !matches!(child.try_wait(), Ok(None));
        let new = new_descendants(&procs);
        signal("KILL", &new);
        procs.extend(new);
        let left: Vec<u32> = procs.iter().filter(|p| p.alive()).map(|p| p.pid).collect();
        if reaped && left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "processes {left:?} (main {}, reaped: {reaped}) still alive {FAULT_DEADLINE:?} after SIGKILL",
                child.id()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
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

    /// Starts a PostgreSQL server named `name` that replicas can follow, and that can follow another
    /// writer after a failover ([`DbServer::make_replica_of`]).
    pub async fn postgres_primary_for_replication(name: &str) -> Self {
        Self::create_with(Kind::Postgres, name, true).await
    }

    /// Starts a MariaDB server named `name` with a binary log (GTIDs, row format) that replicas can
    /// follow.
    pub async fn mariadb_primary_for_replication(name: &str) -> Self {
        Self::create_with(Kind::MariaDb, name, true).await
    }

    /// Starts a PostgreSQL standby named `name` of `primary`, streaming from it (see
    /// [`DbServer::replica_of`]).
    pub async fn postgres_replica_of(primary: &DbServer, name: &str) -> Self {
        assert_eq!(
            primary.kind,
            Kind::Postgres,
            "{} is not PostgreSQL",
            primary.name
        );
        Self::replica_of(primary, name).await
    }

    /// Starts a MariaDB replica named `name` of `primary`, following it by GTID (see
    /// [`DbServer::replica_of`]).
    pub async fn mariadb_replica_of(primary: &DbServer, name: &str) -> Self {
        assert_eq!(
            primary.kind,
            Kind::MariaDb,
            "{} is not MariaDB",
            primary.name
        );
        Self::replica_of(primary, name).await
    }

    /// Starts a replica named `name` of `primary` (a writer of the same kind), on a port of its own,
    /// and returns once it follows: PostgreSQL's `pg_stat_replication` on the primary shows it
    /// `streaming` (its `application_name` is `name`); a MariaDB replica has applied everything the
    /// primary had logged and its I/O thread runs. A replica refuses the application's writes.
    ///
    /// Its data is the primary's: its `whoami` table holds the primary's name, not `name`.
    ///
    /// # Panics
    /// When `primary` is a MariaDB server without a binary log (not made by
    /// [`DbServer::mariadb_primary_for_replication`]), or the replica does not follow within 30 s.
    pub async fn replica_of(primary: &DbServer, name: &str) -> Self {
        let mut server = Self::unstarted(primary.kind, name, true);
        server.follow(primary).await;
        server
    }

    /// Starts a server of `kind`.
    pub async fn create(kind: Kind, name: &str) -> Self {
        Self::create_with(kind, name, false).await
    }

    async fn create_with(kind: Kind, name: &str, replication: bool) -> Self {
        let mut server = Self::unstarted(kind, name, replication);
        server.init();
        server.start().await;
        server.setup().await;
        server
    }

    /// A server of `kind` with its folder and port, not initialised.
    fn unstarted(kind: Kind, name: &str, replication: bool) -> Self {
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
        Self {
            kind,
            name: name.to_owned(),
            dir,
            port: free_port(),
            child: None,
            run_as,
            replication,
            follower: AtomicBool::new(false),
        }
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
                self.allow_replication_connections();
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

    /// PostgreSQL: lets standbys connect from 127.0.0.1 (`initdb -A trust` usually has that line
    /// already).
    fn allow_replication_connections(&self) {
        let hba = self.data().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba)
            .unwrap_or_else(|e| panic!("reading {}: {e}", hba.display()));
        let allowed = text.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.len() >= 5
                && words[..4] == ["host", "replication", "all", "127.0.0.1/32"]
                && words[4] == "trust"
        });
        if !allowed {
            std::fs::write(
                &hba,
                format!("{text}\nhost replication all 127.0.0.1/32 trust\n"),
            )
            .unwrap_or_else(|e| panic!("writing {}: {e}", hba.display()));
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
                if self.replication {
                    cmd.args(["-c", "wal_log_hints=on", "-c", "hot_standby=on"]);
                }
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
                        "--innodb-buffer-pool-size=16M",
                        "--innodb-use-native-aio=0",
                        "--innodb-flush-log-at-trx-commit=2",
                        "--max-connections=60",
                        "--skip-name-resolve",
                    ]);
                if self.replication {
                    cmd.args([
                        "--log-bin=mysql-bin",
                        "--relay-log=relay-bin",
                        "--binlog-format=ROW",
                        "--log-slave-updates",
                    ])
                    .arg(format!("--server-id={}", self.port));
                    if self.follower.load(Ordering::SeqCst) {
                        cmd.arg("--read-only");
                    }
                } else {
                    cmd.arg("--skip-log-bin");
                }
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

    /// Which server.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The server's name (what `SELECT name FROM whoami` answers, except on a replica, which holds
    /// its writer's data).
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

    /// The server's main process as it is now.
    fn main_process(&self) -> Option<ProcInfo> {
        self.child.as_ref().and_then(|c| ProcInfo::read(c.id()))
    }

    /// The server's processes now: its main process first, then every descendant (empty when it is
    /// not running).
    pub fn pids(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|c| process_tree(c.id()))
            .unwrap_or_default()
    }

    /// kill -9 of every process of the server; returns once all are gone, so the port is free.
    ///
    /// # Panics
    /// When a process of the server is still alive 10 s after SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(&mut child).unwrap_or_else(|e| panic!("{}: {e}", self.name));
        }
    }

    /// SIGSTOP to every process of the server: the port still accepts connections, nothing answers,
    /// not even on connections already open. Returns once every process is stopped (or after 10 s).
    pub fn freeze(&self) {
        if let Some(root) = self.main_process() {
            stop_tree(root, true, Instant::now() + FAULT_DEADLINE);
        }
    }

    /// SIGCONT to every process of the server after [`DbServer::freeze`]; returns once none is stopped
    /// (or after 10 s).
    pub fn thaw(&self) {
        if let Some(root) = self.main_process() {
            continue_tree(root, Instant::now() + FAULT_DEADLINE);
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

    /// Makes the server a fresh replica of `writer` (an old primary after a failover): the server is
    /// killed, its data replaced by a copy of the writer's (PostgreSQL `pg_basebackup -R`; MariaDB a
    /// new data folder that replays the writer's binary log), and started on its port. Returns once it
    /// follows, as [`DbServer::replica_of`] does. Writes it took that the writer never had (split
    /// brain) are gone.
    ///
    /// # Panics
    /// When the kinds differ, or the server does not follow within 30 s.
    pub async fn make_replica_of(&mut self, writer: &DbServer) {
        self.replication = true;
        self.follow(writer).await;
    }

    async fn follow(&mut self, writer: &DbServer) {
        assert_eq!(
            self.kind, writer.kind,
            "{} cannot follow {}: another kind of server",
            self.name, writer.name
        );
        self.kill9();
        self.follower.store(true, Ordering::SeqCst);
        match self.kind {
            Kind::Postgres => {
                match std::fs::remove_dir_all(self.data()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("{}: removing its data: {e}", self.name),
                }
                // The application name written to `primary_conninfo` names the standby in the
                // writer's `pg_stat_replication`.
                let conninfo = format!(
                    "host=127.0.0.1 port={} user=postgres application_name={}",
                    writer.port,
                    sql_literal(&self.name)
                );
                output(
                    self.command(postgres_bin().join("pg_basebackup"))
                        .arg("-d")
                        .arg(conninfo)
                        .arg("-D")
                        .arg(self.data())
                        .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]),
                );
                self.start().await;
                self.wait_streaming(writer).await;
            }
            Kind::MariaDb => {
                assert!(
                    writer.replication,
                    "{} has no binary log to follow (make it with DbServer::mariadb_primary_for_replication)",
                    writer.name
                );
                self.init();
                self.start().await;
                self.admin(&[
                    &format!(
                        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
                         MASTER_USER='root', MASTER_USE_GTID=slave_pos",
                        writer.port
                    ),
                    "START SLAVE",
                ])
                .await;
                self.wait_caught_up(writer).await;
            }
        }
    }

    /// PostgreSQL: waits until `writer`'s `pg_stat_replication` shows this server streaming.
    async fn wait_streaming(&self, writer: &DbServer) {
        let query = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = {} AND state = 'streaming'",
            sql_literal(&self.name)
        );
        let deadline = Instant::now() + REPLICATION_DEADLINE;
        while writer.admin_count(&query).await == 0 {
            assert!(
                Instant::now() < deadline,
                "{} is not streaming from {} after {REPLICATION_DEADLINE:?}:\n{}",
                self.name,
                writer.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// MariaDB: waits until this server has applied everything `writer` has logged so far and its
    /// I/O thread runs.
    async fn wait_caught_up(&self, writer: &DbServer) {
        let position = writer.admin_text("SELECT @@gtid_binlog_pos").await;
        let query = format!(
            "SELECT CAST(MASTER_GTID_WAIT({}, 1) AS SIGNED)",
            sql_literal(&position)
        );
        let deadline = Instant::now() + REPLICATION_DEADLINE;
        loop {
            let io = self
                .replica_status()
                .await
                .get("Slave_IO_Running")
                .cloned()
                .unwrap_or_default();
            if io == "Yes" && self.admin_count(&query).await == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} has not caught up with {} (GTID {position}) after {REPLICATION_DEADLINE:?}: {:?}\n{}",
                self.name,
                writer.name,
                self.replica_status().await,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A text the administrator's query returns (MariaDB).
    async fn admin_text(&self, query: &str) -> String {
        let run = async {
            let mut conn = self.my_admin().connect().await?;
            sqlx::query_scalar::<_, String>(query)
                .fetch_one(&mut conn)
                .await
        };
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap_or_else(|_| panic!("{}: admin query timed out", self.name))
            .unwrap_or_else(|e| panic!("{}: {query}: {e}", self.name))
    }

    /// MariaDB's `SHOW REPLICA STATUS`, column name to value (`NULL` as an empty text): e.g.
    /// `Slave_IO_Running`, `Slave_SQL_Running`, `Seconds_Behind_Master`, `Gtid_IO_Pos`. Empty when
    /// the server follows no writer.
    ///
    /// # Panics
    /// On PostgreSQL, or when the server does not answer within 10 s.
    pub async fn replica_status(&self) -> BTreeMap<String, String> {
        assert_eq!(
            self.kind,
            Kind::MariaDb,
            "{}: SHOW REPLICA STATUS is MariaDB's",
            self.name
        );
        let run = async {
            let mut conn = self.my_admin().connect().await?;
            // The text protocol, so that every column reads as text.
            let rows = sqlx::raw_sql("SHOW REPLICA STATUS")
                .fetch_all(&mut conn)
                .await?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(rows.into_iter().next())
        };
        let row = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap_or_else(|_| panic!("{}: SHOW REPLICA STATUS timed out", self.name))
            .unwrap_or_else(|e| panic!("{}: SHOW REPLICA STATUS: {e}", self.name));
        let Some(row) = row else {
            return BTreeMap::new();
        };
        row.columns()
            .iter()
            .map(|column| {
                let value = row
                    .try_get_unchecked::<Option<String>, _>(column.ordinal())
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                (column.name().to_owned(), value)
            })
            .collect()
    }

    /// Whether the server follows a writer: PostgreSQL `pg_is_in_recovery()`; MariaDB a replica
    /// connection is configured (`SHOW REPLICA STATUS` has a row).
    pub async fn is_in_recovery(&self) -> bool {
        match self.kind {
            Kind::Postgres => {
                self.admin_count("SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END::bigint")
                    .await
                    == 1
            }
            Kind::MariaDb => !self.replica_status().await.is_empty(),
        }
    }

    /// Whether the server refuses the application's writes now: PostgreSQL in recovery or
    /// `default_transaction_read_only`; MariaDB `@@read_only`.
    pub async fn is_read_only(&self) -> bool {
        let query = match self.kind {
            Kind::Postgres => {
                "SELECT CASE WHEN pg_is_in_recovery() \
                 OR current_setting('default_transaction_read_only')::bool THEN 1 ELSE 0 END::bigint"
            }
            Kind::MariaDb => "SELECT CAST(@@read_only AS SIGNED)",
        };
        self.admin_count(query).await != 0
    }

    /// Promotes a replica to a writer and returns once it accepts writes: PostgreSQL `pg_promote()`
    /// (a new timeline); MariaDB `STOP SLAVE`, `RESET SLAVE ALL` and `read_only = 0` (and it starts
    /// writable from now on).
    ///
    /// # Panics
    /// When the server still refuses writes after 30 s.
    pub async fn promote(&self) {
        match self.kind {
            Kind::Postgres => self.admin(&["SELECT pg_promote(true, 8)"]).await,
            Kind::MariaDb => {
                self.follower.store(false, Ordering::SeqCst);
                self.admin(&["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"])
                    .await;
            }
        }
        let deadline = Instant::now() + REPLICATION_DEADLINE;
        while self.is_read_only().await {
            assert!(
                Instant::now() < deadline,
                "{} still refuses writes {REPLICATION_DEADLINE:?} after its promotion:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// PostgreSQL standby: pauses the replay of the WAL it receives (`pg_wal_replay_pause()`), so it
    /// lags: nothing the writer commits from now on shows until [`DbServer::resume_replay`].
    pub async fn pause_replay(&self) {
        assert_eq!(
            self.kind,
            Kind::Postgres,
            "{}: replay pause is PostgreSQL's",
            self.name
        );
        self.admin(&["SELECT pg_wal_replay_pause()"]).await;
    }

    /// PostgreSQL standby: resumes the replay after [`DbServer::pause_replay`].
    pub async fn resume_replay(&self) {
        assert_eq!(
            self.kind,
            Kind::Postgres,
            "{}: replay pause is PostgreSQL's",
            self.name
        );
        self.admin(&["SELECT pg_wal_replay_resume()"]).await;
    }

    /// PostgreSQL: the timeline of the latest checkpoint, after a `CHECKPOINT` (1 for a server never
    /// promoted; one more at each promotion).
    pub async fn timeline(&self) -> i64 {
        assert_eq!(
            self.kind,
            Kind::Postgres,
            "{}: timelines are PostgreSQL's",
            self.name
        );
        self.admin(&["CHECKPOINT"]).await;
        self.admin_count("SELECT timeline_id::bigint FROM pg_control_checkpoint()")
            .await
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        // SIGKILL ends stopped processes too. No panic here: this may run while a test unwinds.
        if let Some(mut child) = self.child.take() {
            let _ = kill_tree(&mut child);
        }
    }
}
