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

/// The password the Sentinels of [`SentinelBed`] require (their own AUTH, not the data nodes').
pub const SENTINEL_PASSWORD: &str = "sentinel-secret";

/// The name the Sentinels of [`SentinelBed`] monitor the primary under.
pub const MASTER_NAME: &str = "dbfo-master";

/// One `redis-server` process of a replicated bed (a data node or a Sentinel), killed on drop.
struct RedisProcess {
    port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts `redis-server` with `args` on a free port (`--port` is added) and waits for the port.
    fn start(args: &[String]) -> Self {
        Self::start_on(free_port(), args)
    }

    /// Starts `redis-server` with `args` on `port` and waits for the port.
    fn start_on(port: u16, args: &[String]) -> Self {
        let child = Command::new("redis-server")
            .args(args)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-s", signal, &child.id().to_string()])
                .status();
        }
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill9();
    }
}

/// A free port for a cluster node: its cluster bus listens 10000 higher, so that one must be free
/// too (and exist: Redis refuses a port above 55535 in cluster mode).
fn free_cluster_port() -> u16 {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..1000 {
        let port = free_port();
        if port <= 55535 && free(port + 10000) {
            return port;
        }
    }
    (20000..=55535)
        .find(|p| free(*p) && free(p + 10000))
        .unwrap_or_else(|| panic!("no free port pair for a cluster node"))
}

/// `redis-cli -p port -a password args...`; answers its output.
fn cli(port: u16, password: &str, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--no-auth-warning", "-a", password])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `total_commands_processed` of the node at `port` (0 if it does not answer).
fn commands_processed(port: u16) -> u64 {
    cli(port, REDIS_PASSWORD, &["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `ready()` holds, for at most `limit`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The arguments of a data node: no persistence, the test bed's password for clients and for
/// replication, and a replica that syncs at once (Redis 7 waits 5 s by default before a diskless
/// sync).
fn data_node_args(dir: &std::path::Path) -> Vec<String> {
    [
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        REDIS_PASSWORD,
        "--masterauth",
        REDIS_PASSWORD,
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([dir.display().to_string()])
    .collect()
}

/// Redis under Sentinel: a primary, one replica and three Sentinels (quorum 2, a primary is down
/// after 1 s of silence), on free loopback ports. The data nodes require [`REDIS_PASSWORD`], the
/// Sentinels [`SENTINEL_PASSWORD`]. [`SentinelBed::start`] returns once every Sentinel knows the
/// replica and the two other Sentinels (before that, killing the primary promotes nobody).
pub struct SentinelBed {
    primary: RedisProcess,
    replica: RedisProcess,
    sentinels: Vec<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl SentinelBed {
    /// Starts the bed and waits until it can fail over.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let primary = RedisProcess::start(&data_node_args(dir.path()));
        let mut replica_args = data_node_args(dir.path());
        replica_args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port.to_string(),
        ]);
        let replica = RedisProcess::start(&replica_args);
        wait_for("the replica's link", Duration::from_secs(10), || {
            cli(replica.port, REDIS_PASSWORD, &["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels = (0..3)
            .map(|i| {
                let conf = dir.path().join(format!("sentinel-{i}.conf"));
                let text = format!(
                    "bind 127.0.0.1\n\
                     dir {dir}\n\
                     requirepass {SENTINEL_PASSWORD}\n\
                     sentinel sentinel-pass {SENTINEL_PASSWORD}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 2\n\
                     sentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n",
                    dir = dir.path().display(),
                    port = primary.port,
                );
                std::fs::write(&conf, text).unwrap_or_else(|e| panic!("sentinel.conf: {e}"));
                RedisProcess::start(&[conf.display().to_string(), "--sentinel".to_owned()])
            })
            .collect::<Vec<_>>();
        let bed = Self {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        bed.wait_until_ready();
        bed
    }

    fn sentinel_cli(&self, i: usize, args: &[&str]) -> String {
        cli(self.sentinels[i].port, SENTINEL_PASSWORD, args)
    }

    /// Waits until every Sentinel lists the replica and the two other Sentinels.
    fn wait_until_ready(&self) {
        let replica = format!("{}", self.replica.port);
        wait_for(
            "the Sentinels to know the replica and each other",
            Duration::from_secs(20),
            || {
                (0..self.sentinels.len()).all(|i| {
                    let replicas = self.sentinel_cli(i, &["SENTINEL", "replicas", MASTER_NAME]);
                    let others = self.sentinel_cli(i, &["SENTINEL", "sentinels", MASTER_NAME]);
                    replicas.lines().any(|l| l.trim() == replica)
                        && others.matches("127.0.0.1").count() >= 2
                })
            },
        );
    }

    /// The Sentinels' URLs, each with [`SENTINEL_PASSWORD`].
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://:{SENTINEL_PASSWORD}@127.0.0.1:{}", s.port))
            .collect()
    }

    /// The data nodes' AUTH as `state.node_auth` takes it.
    pub fn node_auth(&self) -> String {
        format!("redis://:{REDIS_PASSWORD}@{MASTER_NAME}/0")
    }

    /// The port of the primary the Sentinels name now.
    pub fn current_primary_port(&self) -> Option<u16> {
        let out = self.sentinel_cli(0, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// `SENTINEL FAILOVER`: the Sentinels move the primary to the replica and demote the old one,
    /// which stays up as a replica. Answers the Sentinel's reply.
    pub fn sentinel_failover(&self) -> String {
        self.sentinel_cli(0, &["SENTINEL", "FAILOVER", MASTER_NAME])
    }

    /// `total_commands_processed` of the primary the Sentinels name now (each call adds two: the
    /// `AUTH` and the `INFO` of `redis-cli`).
    pub fn primary_commands_processed(&self) -> u64 {
        self.current_primary_port().map_or(0, commands_processed)
    }

    /// How many bytes of the replication stream the first primary wrote that its replica has not
    /// acknowledged (`master_repl_offset` minus the replica's `offset`, from the primary's
    /// `INFO replication`): writes a promotion of the replica would lose.
    pub fn unreplicated_bytes(&self) -> Option<i64> {
        let info = cli(self.primary.port, REDIS_PASSWORD, &["INFO", "replication"]);
        let field = |line: &str, name: &str| -> Option<i64> {
            line.split(',')
                .find_map(|kv| kv.trim().strip_prefix(name)?.parse().ok())
        };
        let primary = info.lines().find_map(|l| field(l, "master_repl_offset:"))?;
        let replica = info
            .lines()
            .filter(|l| l.starts_with("slave0:"))
            .find_map(|l| field(l, "offset="))?;
        Some(primary - replica)
    }

    /// kill -9 of the first primary.
    pub fn kill_primary(&mut self) {
        self.primary.kill9();
    }

    /// SIGSTOP of the first primary: it keeps its connections and answers nothing.
    pub fn freeze_primary(&self) {
        self.primary.signal("STOP");
    }

    /// SIGCONT of the first primary.
    pub fn thaw_primary(&self) {
        self.primary.signal("CONT");
    }

    /// SIGSTOP of the replica: it receives nothing more from the primary until [`Self::thaw_replica`].
    pub fn freeze_replica(&self) {
        self.replica.signal("STOP");
    }

    /// SIGCONT of the replica.
    pub fn thaw_replica(&self) {
        self.replica.signal("CONT");
    }

    /// SIGSTOP of Sentinel `index` (in [`Self::sentinel_urls`] order): its port still accepts,
    /// nothing answers.
    pub fn freeze_sentinel(&self, index: usize) {
        if let Some(sentinel) = self.sentinels.get(index) {
            sentinel.signal("STOP");
        }
    }

    /// SIGCONT of Sentinel `index`.
    pub fn thaw_sentinel(&self, index: usize) {
        if let Some(sentinel) = self.sentinels.get(index) {
            sentinel.signal("CONT");
        }
    }

    /// The ports of the first primary and of the replica.
    pub fn ports(&self) -> (u16, u16) {
        (self.primary.port, self.replica.port)
    }

    /// Runs `redis-cli` on the data node at `port`.
    pub fn node_cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, REDIS_PASSWORD, args)
    }

    /// Runs `redis-cli` on the replica.
    pub fn replica_cli(&self, args: &[&str]) -> String {
        cli(self.replica.port, REDIS_PASSWORD, args)
    }

    /// Whether the first primary still runs.
    pub fn primary_alive(&self) -> bool {
        self.primary.alive()
    }
}

/// A Redis Cluster of three primaries with one replica each, on free loopback ports, every node
/// requiring [`REDIS_PASSWORD`]; a node is failed after 1 s of silence (`cluster-node-timeout`).
pub struct ClusterBed {
    nodes: Vec<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl ClusterBed {
    /// Starts six nodes, creates the cluster and waits until every node says `cluster_state:ok`
    /// and every replica's link is up.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let nodes: Vec<RedisProcess> = (0..6)
            .map(|i| {
                let mut args = data_node_args(dir.path());
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-config-file",
                    ]
                    .iter()
                    .map(|s| (*s).to_owned()),
                );
                args.push(format!("nodes-{i}-{}.conf", std::process::id()));
                RedisProcess::start_on(free_cluster_port(), &args)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args([
                "--no-auth-warning",
                "-a",
                REDIS_PASSWORD,
                "--cluster",
                "create",
            ])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        assert!(
            output.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let bed = Self { nodes, _dir: dir };
        bed.wait_until_ok(Duration::from_secs(20));
        wait_for("every replica's link", Duration::from_secs(20), || {
            bed.nodes.iter().filter(|n| n.alive()).all(|n| {
                let info = cli(n.port, REDIS_PASSWORD, &["INFO", "replication"]);
                !info.contains("role:slave") || info.contains("master_link_status:up")
            })
        });
        bed
    }

    /// Waits until every running node says `cluster_state:ok`.
    pub fn wait_until_ok(&self, limit: Duration) {
        wait_for("cluster_state:ok on every node", limit, || {
            self.nodes.iter().filter(|n| n.alive()).all(|n| {
                cli(n.port, REDIS_PASSWORD, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            })
        });
    }

    /// The sum of `total_commands_processed` over the running primaries, and how many they are
    /// (each call adds two commands per node asked: the `AUTH` and the `INFO` of `redis-cli`, and
    /// one `ROLE` each).
    pub fn primaries_commands_processed(&self) -> (u64, usize) {
        let primaries: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.alive())
            .filter(|n| cli(n.port, REDIS_PASSWORD, &["ROLE"]).starts_with("master"))
            .map(|n| n.port)
            .collect();
        (
            primaries.iter().map(|p| commands_processed(*p)).sum(),
            primaries.len(),
        )
    }

    /// The nodes' URLs, each with [`REDIS_PASSWORD`].
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", n.port))
            .collect()
    }

    /// The port of the primary that owns `key`'s slot now (asked of a running node).
    pub fn owner_of(&self, key: &str) -> Option<u16> {
        let node = self.nodes.iter().find(|n| n.alive())?;
        let slot: u16 = cli(node.port, REDIS_PASSWORD, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .ok()?;
        let nodes = cli(node.port, REDIS_PASSWORD, &["CLUSTER", "NODES"]);
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_primary = fields.get(2)?.contains("master") && !fields[2].contains("fail");
            let owns = fields.iter().skip(8).any(|range| {
                let mut bounds = range.split('-');
                let (Some(a), b) = (bounds.next(), bounds.next()) else {
                    return false;
                };
                let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.unwrap_or(a).parse::<u16>()) else {
                    return false;
                };
                (a..=b).contains(&slot)
            });
            if !(is_primary && owns) {
                return None;
            }
            let address = fields.get(1)?.split('@').next()?;
            address.rsplit(':').next()?.parse().ok()
        })
    }

    /// kill -9 of the node at `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.kill9();
        }
    }

    /// Runs `redis-cli -c` (following redirections) on a running node.
    pub fn cli(&self, args: &[&str]) -> String {
        let node = self.nodes.iter().find(|n| n.alive());
        node.map(|n| {
            let mut all = vec!["-c"];
            all.extend_from_slice(args);
            cli(n.port, REDIS_PASSWORD, &all)
        })
        .unwrap_or_default()
    }

    /// Runs `redis-cli` on the node at `port` (no redirections followed).
    pub fn cli_at(&self, port: u16, args: &[&str]) -> String {
        cli(port, REDIS_PASSWORD, args)
    }
}
