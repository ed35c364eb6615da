//! Redis (the `redis` client that deadpool-redis brings): the store for many instances.
//!
//! - **Topology.** One node (`url`); the primary that Redis Sentinel names (`sentinels` +
//!   `master_name`: asked for each new connection, its `ROLE` checked); or a Redis Cluster
//!   (`cluster`: the cluster client, every key and the channel under the hash tag `{prefix}`, so all
//!   of them live in one slot). The features `sentinel` and `cluster` of deadpool-redis bring the
//!   `redis` crate's clients; no pool is used (a pooled connection costs an `UNWATCH` and a `PING`
//!   each time it is handed out).
//! - **One connection.** Every call shares one multiplexed connection (on a cluster, the cluster
//!   client's connection), opened on first use and dropped after any error or timeout (the next
//!   call opens a new one), so a call costs Redis only its own commands. Every call is bounded by
//!   the store timeout. A call whose kept connection turns out closed, or (under Sentinel) reaches
//!   a demoted primary (`READONLY`), runs once more on a new connection.
//! - **Load** is one `MGET` of the record keys. A key holding another type than a string reads as
//!   missing (as `MGET` answers it), and the script treats it the same way.
//! - **Compare-and-set** is one Lua script for every record of the request: it reads each record
//!   (`GET`), applies [`Expect::matches`](dbfailover_core::record::Expect::matches)'s rule to its
//!   header, and either answers what it found (writing nothing) or writes every record and the seed's
//!   two keys with the TTL and publishes one notice with the written values on `{prefix}_changes`:
//!   the script, then per record one `GET`, one `SET` (and two for the seed's keys), then one `PUBLISH`.
//! - **Changes**: a subscriber task turns the notices into the engine's change feed
//!   ([`parse_notice`]; anything else asks for a reload), reconnecting with a bounded backoff when
//!   Redis goes away and asking for a reload after each reconnect; it ends when nobody listens. On
//!   a cluster the script publishes with `SPUBLISH` and the task listens with `SSUBSCRIBE` on a
//!   RESP3 cluster connection, whose pushes arrive on a channel.

use crate::StoreSetupError;
use crate::keys::{self, SeedKeys, changes_channel, notice_payload, parse_notice};
use dbfailover_core::record::{CasOutcome, Notice, RecordKey, Slot, Write};
use dbfailover_core::url::{mask_password, mask_text};
use dbfailover_engine::{StateStore, StoreError, StoreFuture};
use deadpool_redis::redis::cluster::{ClusterClient, ClusterClientBuilder};
use deadpool_redis::redis::cluster_async::ClusterConnection;

use deadpool_redis::redis::{
    self, AsyncConnectionConfig, IntoConnectionInfo, aio::MultiplexedConnection,
};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;

/// `KEYS`: per write its record key, then (when it carries a seed) the seed's status and failure
/// count keys. `ARGV`: the TTL in milliseconds, the channel, the notice, then per write its
/// expectation (`-`, `*` or a write id), its value, the seed's status and failure count (both empty
/// without a seed). Answers `OK`, or the value under every record key (nil: missing) when one is not
/// as expected.
const CAS_SCRIPT: &str = r"
local function matches(expect, value)
  if not value then return expect == '-' end
  local format, _, id = string.match(value, '^dbfo(%d+) (%d+) (%x+) ')
  if format == '2' then return expect == id end
  local foreign = format ~= nil and #format <= 3 and string.sub(format, 1, 1) ~= '0'
    and tonumber(format) > 2
  return expect == '*' and not foreign
end
local writes = (#ARGV - 3) / 4
local found, record_keys, seeded = {}, {}, {}
local conflict = false
local k = 1
for i = 1, writes do
  local a = 3 + (i - 1) * 4
  record_keys[i] = k
  seeded[i] = ARGV[a + 3] ~= ''
  local ok, value = pcall(redis.call, 'GET', KEYS[k])
  if not ok then value = false end
  found[i] = value
  if not matches(ARGV[a + 1], value) then conflict = true end
  if seeded[i] then k = k + 3 else k = k + 1 end
end
if conflict then return found end
local ttl = ARGV[1]
for i = 1, writes do
  local a = 3 + (i - 1) * 4
  k = record_keys[i]
  redis.call('SET', KEYS[k], ARGV[a + 2], 'PX', ttl)
  if seeded[i] then
    redis.call('SET', KEYS[k + 1], ARGV[a + 3], 'PX', ttl)
    redis.call('SET', KEYS[k + 2], ARGV[a + 4], 'PX', ttl)
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {ok = 'OK'}
";

/// Where the data lives: one node, a primary that Sentinel names, or a Redis Cluster.
enum Topology {
    /// One node at a URL.
    Single(Box<redis::Client>),
    /// The primary the Sentinels name; asked again for each new connection. The address of the
    /// primary the latest connection reached is published to the change feed, which subscribes
    /// again when it moves (a subscription can outlive its node's role silently: a primary that
    /// hung and came back).
    Sentinel(Arc<Sentinels>, Arc<tokio::sync::watch::Sender<String>>),
    /// A Redis Cluster; the client follows its slots and failovers.
    Cluster {
        client: Box<ClusterClient>,
        nodes: Vec<String>,
    },
}

/// A connection to the data: multiplexed to one node, or the cluster client's.
#[derive(Clone)]
enum Connection {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The one connection every call shares, and which one it is (so a failed call drops only the
/// connection it used).
#[derive(Default)]
struct Shared {
    current: Option<(u64, Connection)>,
    opened: u64,
}

/// The change feed's sender while a subscriber task runs.
type Feed = Arc<Mutex<Option<broadcast::Sender<Notice>>>>;

/// The Redis store.
pub struct RedisStore {
    /// The store as shown (passwords masked).
    shown: String,
    topology: Topology,
    /// The prefix of every key: the configured one, or `{prefix}` on a cluster (one hash tag, so
    /// every key of the deployment, and the channel, live in one slot).
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    script: redis::Script,
    connection: Mutex<Shared>,
    feed: Feed,
}

/// The masked URLs of `urls`, separated by commas.
fn shown_list(urls: &[&str]) -> String {
    urls.iter()
        .map(|u| mask_password(u))
        .collect::<Vec<_>>()
        .join(",")
}

impl RedisStore {
    /// A store at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://` with the `redis-tls`
    /// feature), keys under `prefix`, records living `ttl`, every operation bounded by `timeout`.
    /// Connects lazily.
    pub fn new(
        url: &str,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Self, StoreSetupError> {
        let invalid = |reason: String| StoreSetupError::InvalidSetting {
            key: "state.url",
            value: mask_password(url),
            reason,
        };
        check_tls("state.url", url)?;
        let client = redis::Client::open(url).map_err(|e| invalid(mask_text(&e.to_string())))?;
        Ok(Self::with(
            format!("redis {}", mask_password(url)),
            Topology::Single(Box::new(client)),
            prefix.to_owned(),
            ttl,
            timeout,
            CAS_SCRIPT,
        ))
    }

    /// A store on the primary that the Sentinels at `sentinels` (each URL with that Sentinel's own
    /// AUTH) monitor as `master_name`; the data nodes are authenticated with the user, password and
    /// database of `node_auth` (its host is not used). Each new connection asks the Sentinels
    /// which node is the primary, and checks that it is one; a connection that meets a demoted
    /// primary (`READONLY`) is dropped and the Sentinels are asked again.
    pub fn sentinel(
        sentinels: &[&str],
        master_name: &str,
        node_auth: Option<&str>,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Self, StoreSetupError> {
        let shown = shown_list(sentinels);
        for url in sentinels {
            check_tls("state.sentinels", url)?;
        }
        let mut node = redis::RedisConnectionInfo::default();
        let mut node_tls = false;
        if let Some(auth) = node_auth {
            check_tls("state.node_auth", auth)?;
            let info =
                auth.into_connection_info()
                    .map_err(|e| StoreSetupError::InvalidSetting {
                        key: "state.node_auth",
                        value: mask_password(auth),
                        reason: mask_text(&e.to_string()),
                    })?;
            node = info.redis_settings().clone();
            node_tls = auth.starts_with("rediss:");
        }
        if sentinels.is_empty() {
            return Err(StoreSetupError::InvalidSetting {
                key: "state.sentinels",
                value: String::new(),
                reason: "lists no Sentinel".to_owned(),
            });
        }
        let clients = sentinels
            .iter()
            .map(|url| {
                redis::Client::open(*url).map_err(|e| StoreSetupError::InvalidSetting {
                    key: "state.sentinels",
                    value: mask_password(url),
                    reason: mask_text(&e.to_string()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = Sentinels {
            clients,
            master_name: master_name.to_owned(),
            node,
            node_tls,
            timeout,
        };
        Ok(Self::with(
            format!("redis sentinel {master_name} via {shown}"),
            Topology::Sentinel(
                Arc::new(client),
                Arc::new(tokio::sync::watch::Sender::new(String::new())),
            ),
            prefix.to_owned(),
            ttl,
            timeout,
            CAS_SCRIPT,
        ))
    }

    /// A store on the Redis Cluster that `nodes` belong to (each URL with the nodes' AUTH; the
    /// others are discovered). Every key and the change channel carry the hash tag `{prefix}`, so
    /// they live in one slot: one compare-and-set over several records is one script on one node,
    /// and the notices go by sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE`) to that node's shard.
    pub fn cluster(
        nodes: &[&str],
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Self, StoreSetupError> {
        let shown = shown_list(nodes);
        for url in nodes {
            check_tls("state.cluster", url)?;
        }
        if prefix.contains(['{', '}']) {
            return Err(StoreSetupError::InvalidSetting {
                key: "state.prefix",
                value: prefix.to_owned(),
                reason: "on a cluster the prefix is the keys' hash tag: no braces in it".to_owned(),
            });
        }
        let nodes: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
        let client = cluster_builder(&nodes, timeout).build().map_err(|e| {
            StoreSetupError::InvalidSetting {
                key: "state.cluster",
                value: shown.clone(),
                reason: mask_text(&e.to_string()),
            }
        })?;
        Ok(Self::with(
            format!("redis cluster {shown}"),
            Topology::Cluster {
                client: Box::new(client),
                nodes,
            },
            format!("{{{prefix}}}"),
            ttl,
            timeout,
            &CAS_SCRIPT.replace("'PUBLISH'", "'SPUBLISH'"),
        ))
    }

    fn with(
        shown: String,
        topology: Topology,
        prefix: String,
        ttl: Duration,
        timeout: Duration,
        script: &str,
    ) -> Self {
        Self {
            shown,
            topology,
            prefix,
            ttl,
            timeout,
            script: redis::Script::new(script),
            connection: Mutex::new(Shared::default()),
            feed: Arc::new(Mutex::new(None)),
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(format!(
            "{}: {what}: {}",
            self.shown,
            mask_text(&e.to_string())
        ))
    }

    /// A new connection to the data.
    async fn open(&self) -> redis::RedisResult<Connection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match &self.topology {
            Topology::Single(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map(Connection::Node),
            Topology::Sentinel(sentinel, primary) => {
                // Asks the Sentinels for the primary and checks its role (ROLE) before use.
                let client = sentinel.primary().await?;
                let mut node = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| wrap(e, "connecting to the primary (state.node_auth)"))?;
                let role: Vec<redis::Value> = redis::cmd("ROLE")
                    .query_async(&mut node)
                    .await
                    .map_err(|e| wrap(e, "asking the primary its role"))?;
                if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "the node the Sentinels name is not a primary (yet)",
                    )));
                }
                let connection = Connection::Node(node);
                let address = client.get_connection_info().addr().to_string();
                primary.send_if_modified(|current| {
                    let moved = *current != address;
                    if moved {
                        current.clone_from(&address);
                    }
                    moved
                });
                Ok(connection)
            }
            Topology::Cluster { client, .. } => {
                client.get_async_connection().await.map(Connection::Cluster)
            }
        }
    }

    /// The shared connection, opened if there is none.
    async fn connection(&self) -> Result<(u64, Connection), StoreError> {
        if let Some((id, connection)) = &self.shared().current {
            return Ok((*id, connection.clone()));
        }
        let connection = self.open().await.map_err(|e| self.error("connect", e))?;
        let mut shared = self.shared();
        // Another call may have connected meanwhile: keep one connection.
        if let Some((id, current)) = &shared.current {
            return Ok((*id, current.clone()));
        }
        shared.opened += 1;
        let id = shared.opened;
        shared.current = Some((id, connection.clone()));
        Ok((id, connection))
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // The guarded data is a plain cache: a panic elsewhere cannot leave it inconsistent.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops connection `id` if it is still the shared one.
    fn drop_connection(&self, id: u64) {
        let mut shared = self.shared();
        if shared
            .current
            .as_ref()
            .is_some_and(|(current, _)| *current == id)
        {
            shared.current = None;
        }
    }

    /// Runs `work` on the shared connection within the timeout; after an error or a timeout the
    /// connection it used is dropped. `work` runs once more, on a new connection, when the first
    /// attempt failed in a way that says the connection is stale, not the store: the kept
    /// connection was closed meanwhile (a restarted node, a client killed by Sentinel when it
    /// reconfigured the node after a failover), or, under Sentinel, the node refused the write as
    /// a replica (`READONLY`: a primary demoted since; the new connection asks the Sentinels for
    /// the primary again). Neither wrote anything: a closed connection never got the command to
    /// the node or lost its answer (then the retry finds its own write and answers a conflict,
    /// which the protocol resolves like any other), and a refused write wrote nothing.
    async fn call<T, F, Fut>(&self, what: &str, work: F) -> Result<T, StoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let sentinel = matches!(self.topology, Topology::Sentinel(..));
        let outcome = tokio::time::timeout(self.timeout, async {
            let mut retried = false;
            loop {
                let reused = self.shared().current.is_some();
                let (id, connection) = self.connection().await?;
                match work(connection).await {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        self.drop_connection(id);
                        let readonly = sentinel && is_readonly(&e);
                        let stale = reused && (e.is_connection_dropped() || e.is_io_error());
                        if !retried && (readonly || stale) {
                            if readonly {
                                tracing::warn!(
                                    store = %self.shown,
                                    "the node this store used is no primary any more \
                                     (READONLY); asking Sentinel for the primary again"
                                );
                            }
                            retried = true;
                            continue;
                        }
                        return Err(self.error(what, e));
                    }
                }
            }
        })
        .await;
        outcome.unwrap_or_else(|_| {
            // A timed-out call may have left its connection stuck: drop whichever is current.
            self.shared().current = None;
            Err(self.error(what, format!("no answer within {:?}", self.timeout)))
        })
    }

    /// The script's invocation for `writes`.
    fn invocation(&self, writes: &[Write]) -> redis::ScriptInvocation<'_> {
        let (keys, args) = script_input(&self.prefix, self.ttl, writes);
        let mut invocation = self.script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        invocation
    }
}

/// Whether `e` is a refused write of a replica (`READONLY`), directly or from inside the script.
fn is_readonly(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY") || e.to_string().contains("READONLY")
}

/// `rediss://` needs the `redis-tls` feature.
fn check_tls(key: &'static str, url: &str) -> Result<(), StoreSetupError> {
    if url.starts_with("rediss:") && !cfg!(feature = "redis-tls") {
        return Err(StoreSetupError::InvalidSetting {
            key,
            value: mask_password(url),
            reason: "TLS (rediss://) needs the `redis-tls` feature of this build".to_owned(),
        });
    }
    Ok(())
}

/// The cluster client's settings: every node's connection bounded by the store timeout.
fn cluster_builder(nodes: &[String], timeout: Duration) -> ClusterClientBuilder {
    // Each node gets a third of a call's bound: a node that hangs (its TCP port still accepts) is
    // given up in time for the others to answer within the call.
    let per_node = (timeout / 3).max(Duration::from_millis(10));
    ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(per_node)
        .response_timeout(per_node)
}

/// The script's `KEYS` and `ARGV` for `writes` (see [`CAS_SCRIPT`]).
fn script_input(prefix: &str, ttl: Duration, writes: &[Write]) -> (Vec<String>, Vec<Vec<u8>>) {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut keys = Vec::with_capacity(writes.len() * 3);
    let mut args = Vec::with_capacity(3 + writes.len() * 4);
    args.push(ttl_ms.to_string().into_bytes());
    args.push(changes_channel(prefix).into_bytes());
    args.push(notice_payload(writes).into_bytes());
    for write in writes {
        keys.push(keys::record(prefix, &write.key));
        args.push(write.expect.as_script_arg().as_bytes().to_vec());
        args.push(write.value.as_bytes().to_vec());
        match (SeedKeys::of(prefix, write), write.seed) {
            (Some(seed_keys), Some((status, failures))) => {
                keys.push(seed_keys.status);
                keys.push(seed_keys.failure_count);
                args.push(status.as_str().as_bytes().to_vec());
                args.push(failures.to_string().into_bytes());
            }
            _ => {
                args.push(Vec::new());
                args.push(Vec::new());
            }
        }
    }
    (keys, args)
}

/// What the script answered: written, or the value under every record key.
fn script_outcome(writes: &[Write], reply: redis::Value) -> Result<CasOutcome, String> {
    match reply {
        redis::Value::Array(found) if found.len() == writes.len() => {
            let slots = writes
                .iter()
                .zip(found)
                .map(|(write, value)| match value {
                    redis::Value::Nil | redis::Value::Boolean(false) => {
                        Ok(Slot::decode(&write.key, None))
                    }
                    redis::Value::BulkString(raw) => Ok(Slot::decode(&write.key, Some(&raw))),
                    other => Err(format!(
                        "unexpected value in the script's answer: {other:?}"
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(CasOutcome::Conflict(slots))
        }
        redis::Value::Okay => Ok(CasOutcome::Written),
        redis::Value::SimpleString(ok) if ok == "OK" => Ok(CasOutcome::Written),
        other => Err(format!("unexpected answer from the script: {other:?}")),
    }
}

impl StateStore for RedisStore {
    fn load<'a>(&'a self, keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let names: Vec<String> = keys.iter().map(|k| keys::record(&self.prefix, k)).collect();
            let names = &names;
            let values: Vec<Option<Vec<u8>>> = self
                .call("load", |mut connection| async move {
                    redis::cmd("MGET")
                        .arg(names)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
            if values.len() != keys.len() {
                return Err(self.error(
                    "load",
                    format!(
                        "MGET answered {} values for {} keys",
                        values.len(),
                        keys.len()
                    ),
                ));
            }
            Ok(keys
                .iter()
                .zip(values)
                .map(|(key, raw)| Slot::decode(key, raw.as_deref()))
                .collect())
        })
    }

    fn compare_and_set<'a>(&'a self, writes: &'a [Write]) -> StoreFuture<'a, CasOutcome> {
        Box::pin(async move {
            if writes.is_empty() {
                return Ok(CasOutcome::Written);
            }
            let invocation = &self.invocation(writes);
            let reply: redis::Value = self
                .call("compare-and-set", |mut connection| async move {
                    invocation.invoke_async(&mut connection).await
                })
                .await?;
            script_outcome(writes, reply).map_err(|e| self.error("compare-and-set", e))
        })
    }

    fn changes(&self) -> Option<broadcast::Receiver<Notice>> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = feed.as_ref() {
            return Some(sender.subscribe());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                store = %self.shown,
                "redis change feed unavailable outside a tokio runtime; instances will poll"
            );
            return None;
        };
        let (sender, receiver) = broadcast::channel(1024);
        let subscriber = Subscriber {
            channel: changes_channel(&self.prefix),
            timeout: self.timeout,
            sender: sender.clone(),
            feed: Arc::clone(&self.feed),
            shown: self.shown.clone(),
        };
        match &self.topology {
            Topology::Single(client) => {
                runtime.spawn(subscriber.node_forever(FeedSource::Node(client.clone())));
            }
            Topology::Sentinel(sentinel, primary) => {
                runtime.spawn(subscriber.node_forever(FeedSource::Sentinel(
                    Arc::clone(sentinel),
                    primary.subscribe(),
                )));
            }
            Topology::Cluster { nodes, .. } => {
                runtime.spawn(subscriber.cluster_forever(nodes.clone()));
            }
        }
        *feed = Some(sender);
        Some(receiver)
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// Whether the feed has no listener left; if so the task's sender is withdrawn (under the lock that
/// `changes` subscribes under, so no new listener is left without a task).
fn nobody_listens(feed: &Feed) -> bool {
    let mut current = feed.lock().unwrap_or_else(PoisonError::into_inner);
    let idle = current
        .as_ref()
        .is_none_or(|sender| sender.receiver_count() == 0);
    if idle {
        *current = None;
    }
    idle
}

/// The Sentinels of a primary: asked all at once, each bounded by half the store timeout, the first
/// answer wins, so that a Sentinel that hangs (or is gone) never holds the store up while the others
/// answer.
struct Sentinels {
    clients: Vec<redis::Client>,
    master_name: String,
    /// The data nodes' user, password and database.
    node: redis::RedisConnectionInfo,
    node_tls: bool,
    timeout: Duration,
}

impl Sentinels {
    /// A client for the node the Sentinels name as the primary now.
    async fn primary(&self) -> redis::RedisResult<redis::Client> {
        let bound = (self.timeout / 2).max(Duration::from_millis(10));
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(bound))
            .set_response_timeout(Some(bound));
        let asks = self.clients.iter().map(|sentinel| {
            let config = config.clone();
            Box::pin(async move {
                let ask = async {
                    let mut connection = sentinel
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.master_name)
                        .query_async::<Option<(String, u16)>>(&mut connection)
                        .await
                };
                match tokio::time::timeout(bound, ask).await {
                    Ok(Ok(Some(address))) => Ok(address),
                    Ok(Ok(None)) => Err(redis::RedisError::from((
                        redis::ErrorKind::MasterNameNotFoundBySentinel,
                        "a Sentinel knows no primary by the name state.master_name",
                    ))),
                    Ok(Err(e)) => Err(wrap(e, "asking a Sentinel (state.sentinels)")),
                    Err(_) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "a Sentinel did not answer in time",
                    ))),
                }
            })
        });
        let ((host, port), _) = futures_util::future::select_ok(asks).await?;
        let addr = if self.node_tls {
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(host, port)
        };
        let info = addr
            .into_connection_info()?
            .set_redis_settings(self.node.clone());
        redis::Client::open(info)
    }
}

/// `error` with what was being done in front, its kind kept.
fn wrap(error: redis::RedisError, doing: &'static str) -> redis::RedisError {
    redis::RedisError::from((error.kind(), doing, mask_text(&error.to_string())))
}

/// Where a node subscriber connects: one node, or the primary the Sentinels name at each attempt
/// (with the address of the primary the store's calls reach, to follow it).
enum FeedSource {
    Node(Box<redis::Client>),
    Sentinel(Arc<Sentinels>, tokio::sync::watch::Receiver<String>),
}

impl FeedSource {
    async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Self::Node(client) => Ok(client.as_ref().clone()),
            Self::Sentinel(sentinel, _) => sentinel.primary().await,
        }
    }

    /// Resolves once the store's calls reach another primary than `subscribed_on`; never for one
    /// node.
    async fn primary_moved(&mut self, subscribed_on: &str) {
        match self {
            Self::Node(_) => std::future::pending().await,
            Self::Sentinel(_, primary) => {
                let moved = primary
                    .wait_for(|current| !current.is_empty() && current != subscribed_on)
                    .await
                    .is_ok();
                if !moved {
                    // The store is gone: nothing will move any more.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// The task that turns the store's notices into the change feed.
struct Subscriber {
    channel: String,
    timeout: Duration,
    sender: broadcast::Sender<Notice>,
    feed: Feed,
    shown: String,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// How often a waiting subscriber looks whether anybody still listens (the engine may have stopped
/// while the channel is quiet).
const IDLE_CHECK: Duration = Duration::from_secs(1);

impl Subscriber {
    /// Forwards `notice`; false once nobody listens any more.
    fn forward(&self, notice: Notice) -> bool {
        !(self.sender.send(notice).is_err() && nobody_listens(&self.feed))
    }

    /// Waits `backoff` before the next attempt and doubles it (at most 1 s); false when nobody
    /// listens any more and the task should end instead.
    async fn back_off(&self, backoff: &mut Duration) -> bool {
        if self.idle() {
            return false;
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(1));
        true
    }

    /// Whether the task should end (nobody listens).
    fn idle(&self) -> bool {
        self.sender.receiver_count() == 0 && nobody_listens(&self.feed)
    }

    /// One node (or the Sentinels' primary): `SUBSCRIBE`, reconnecting with a bounded backoff, a
    /// reload asked after each reconnect.
    async fn node_forever(self, mut source: FeedSource) {
        use futures_util::StreamExt;
        use futures_util::future::{Either, select};
        let mut backoff = FIRST_BACKOFF;
        let mut first_attempt = true;
        loop {
            let attempt = async {
                let client = source.client().await?;
                let address = client.get_connection_info().addr().to_string();
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>((pubsub, address))
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok((pubsub, address))) => {
                    backoff = FIRST_BACKOFF;
                    // Notices published while there was no subscription were missed: reload.
                    if !first_attempt && !self.forward(Notice::Resync) {
                        return;
                    }
                    let mut messages = pubsub.into_on_message();
                    let mut idle_check = tokio::time::interval(IDLE_CHECK);
                    loop {
                        let next = messages.next();
                        let moved = source.primary_moved(&address);
                        let waiting = select(next, Box::pin(moved));
                        let message = match select(waiting, Box::pin(idle_check.tick())).await {
                            Either::Left((Either::Left((Some(message), _)), _)) => message,
                            Either::Left((Either::Left((None, _)), _)) => break,
                            Either::Left((Either::Right(((), _)), _)) => {
                                tracing::info!(
                                    store = %self.shown,
                                    "redis change feed: the primary moved; subscribing again"
                                );
                                break;
                            }
                            // Nobody listens any more (the engine stopped): unsubscribe now
                            // rather than at the next notice, which may never come.
                            Either::Right(_) if self.idle() => return,
                            Either::Right(_) => continue,
                        };
                        let notice =
                            parse_notice(message.get_payload_bytes()).unwrap_or(Notice::Resync);
                        if !self.forward(notice) {
                            return;
                        }
                    }
                    tracing::warn!(store = %self.shown, "redis change feed lost; reconnecting");
                }
                Ok(Err(error)) => tracing::debug!(
                    store = %self.shown,
                    error = %mask_text(&error.to_string()),
                    "redis change feed: connect failed"
                ),
                Err(_) => {
                    tracing::debug!(store = %self.shown, "redis change feed: connect timed out");
                }
            }
            first_attempt = false;
            if !self.back_off(&mut backoff).await {
                return;
            }
        }
    }

    /// A cluster: `SSUBSCRIBE` on a RESP3 cluster connection whose pushes come on a channel. A
    /// connection of it that drops (a node died: maybe the shard's primary, whose replica is being
    /// promoted) or a subscription the server ends (the slot moved) ends this cluster connection:
    /// a new one is built from the nodes' current slot map and subscribes on the shard's primary
    /// now, again with a bounded backoff until the cluster has one. Each new subscription after the
    /// first, and each subscription the client renews by itself, asks for a reload (notices may have
    /// been missed meanwhile).
    async fn cluster_forever(self, nodes: Vec<String>) {
        let mut backoff = FIRST_BACKOFF;
        let mut first_attempt = true;
        loop {
            let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel();
            let attempt = async {
                let client = cluster_builder(&nodes, self.timeout)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(pushes)
                    .build()?;
                let mut connection = client.get_async_connection().await?;
                connection.ssubscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(connection)
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(connection)) => {
                    backoff = FIRST_BACKOFF;
                    if !first_attempt && !self.forward(Notice::Resync) {
                        return;
                    }
                    // The confirmation of this connection's own subscription.
                    let mut confirmed = false;
                    let mut idle_check = tokio::time::interval(IDLE_CHECK);
                    loop {
                        let push = {
                            use futures_util::future::{Either, select};
                            let next = Box::pin(received.recv());
                            match select(next, Box::pin(idle_check.tick())).await {
                                Either::Left((Some(push), _)) => push,
                                Either::Left((None, _)) => break,
                                // Nobody listens any more: drop the cluster connection now.
                                Either::Right(_) if self.idle() => return,
                                Either::Right(_) => continue,
                            }
                        };
                        let notice = match push.kind {
                            redis::PushKind::SMessage => push
                                .data
                                .get(1)
                                .and_then(|payload| match payload {
                                    redis::Value::BulkString(bytes) => parse_notice(bytes),
                                    _ => None,
                                })
                                .unwrap_or(Notice::Resync),
                            redis::PushKind::SSubscribe if !confirmed => {
                                confirmed = true;
                                continue;
                            }
                            redis::PushKind::SSubscribe => Notice::Resync,
                            redis::PushKind::SUnsubscribe | redis::PushKind::Disconnection => {
                                break;
                            }
                            _ => continue,
                        };
                        if !self.forward(notice) {
                            return;
                        }
                    }
                    drop(connection);
                    tracing::warn!(
                        store = %self.shown,
                        "redis change feed: a cluster node went away; subscribing again"
                    );
                }
                Ok(Err(error)) => tracing::debug!(
                    store = %self.shown,
                    error = %mask_text(&error.to_string()),
                    "redis change feed: connect failed"
                ),
                Err(_) => {
                    tracing::debug!(store = %self.shown, "redis change feed: connect timed out");
                }
            }
            first_attempt = false;
            if !self.back_off(&mut backoff).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbfailover_core::ConnectionStatus;
    use dbfailover_core::record::Expect;

    fn write(name: &str, seed: bool) -> Write {
        Write {
            key: RecordKey::Connection(name.into()),
            expect: Expect::Missing,
            value: "v".to_owned(),
            seed: seed.then_some((ConnectionStatus::Down, 3)),
        }
    }

    #[test]
    fn tls_urls_need_the_feature_and_errors_mask_the_password() {
        let timeout = Duration::from_secs(1);
        let tls = RedisStore::new("rediss://:secret@h:6380", "p", timeout, timeout);
        if cfg!(feature = "redis-tls") {
            assert!(tls.is_ok());
        } else {
            let message = tls.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.contains("redis-tls") && !message.contains("secret"),
                "{message}"
            );
        }
        let store = RedisStore::new("redis://u:secret@h:6379/0", "p", timeout, timeout);
        let store = store.unwrap_or_else(|e| panic!("{e}"));
        assert!(!store.describe().contains("secret"));
        let error = store.error("load", "redis://u:secret@h:6379/0 refused");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn the_script_gets_its_keys_and_arguments_in_order() {
        let writes = [write("a", true), write("b", false)];
        let (keys, args) = script_input("p", Duration::from_secs(60), &writes);
        assert_eq!(
            keys,
            [
                "p_conn_state_a",
                "p_conn_status_a",
                "p_conn_failure_count_a",
                "p_conn_state_b"
            ]
        );
        let args: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(args.len(), 3 + 2 * 4);
        assert_eq!(args[..2], ["60000", "p_changes"]);
        assert_eq!(args[3..], ["-", "v", "DOWN", "3", "-", "v", "", ""]);
    }

    #[test]
    fn conflict_answers_tell_missing_from_empty() {
        let writes = [write("a", true), write("b", false), write("c", false)];
        let reply = redis::Value::Array(vec![
            redis::Value::Nil,
            redis::Value::BulkString(Vec::new()),
            redis::Value::BulkString(b"dbfo3 1 ab x".to_vec()),
        ]);
        assert_eq!(
            script_outcome(&writes, reply),
            Ok(CasOutcome::Conflict(vec![
                Slot::Missing,
                Slot::Unreadable { header: None },
                Slot::Foreign { format: 3 },
            ]))
        );
        assert_eq!(
            script_outcome(&writes, redis::Value::Okay),
            Ok(CasOutcome::Written)
        );
        assert!(script_outcome(&writes, redis::Value::Int(0)).is_err());
        assert!(script_outcome(&writes, redis::Value::Array(Vec::new())).is_err());
    }

    #[test]
    fn a_cluster_store_puts_every_key_under_one_hash_tag_and_publishes_sharded() {
        let timeout = Duration::from_secs(1);
        let store = RedisStore::cluster(
            &[
                "redis://:secret@127.0.0.1:7000",
                "redis://:secret@127.0.0.1:7001",
            ],
            "p",
            timeout,
            timeout,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!store.describe().contains("secret"), "{}", store.describe());
        assert!(store.describe().contains("cluster"), "{}", store.describe());
        let (keys, args) = script_input(&store.prefix, store.ttl, &[write("a", true)]);
        assert_eq!(
            keys,
            [
                "{p}_conn_state_a",
                "{p}_conn_status_a",
                "{p}_conn_failure_count_a"
            ]
        );
        assert_eq!(args[1], b"{p}_changes");
        assert!(store.script.get_hash() != redis::Script::new(CAS_SCRIPT).get_hash());
        assert!(CAS_SCRIPT.contains("'PUBLISH'"));
        let braces = RedisStore::cluster(&["redis://127.0.0.1:7000"], "a{b}", timeout, timeout);
        assert!(braces.is_err());
    }

    #[test]
    fn a_sentinel_store_keeps_the_keys_and_masks_every_password() {
        let timeout = Duration::from_secs(1);
        let store = RedisStore::sentinel(
            &["redis://:sentinel-secret@127.0.0.1:26379"],
            "mymaster",
            Some("redis://app:node-secret@mymaster/0"),
            "p",
            timeout,
            timeout,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = store.describe();
        assert!(
            shown.contains("mymaster") && !shown.contains("secret"),
            "{shown}"
        );
        assert_eq!(store.prefix, "p");
        let error = store.error("load", "redis://:node-secret@h:1 refused");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn a_replicas_refusal_is_told_apart() {
        let refusal =
            redis::parse_redis_value(b"-READONLY You can't write against a read only replica.\r\n")
                .and_then(redis::Value::extract_error);
        let refusal = refusal.err().unwrap_or_else(|| panic!("an error"));
        assert!(is_readonly(&refusal), "{refusal:?}");
        let scripted = redis::parse_redis_value(
            b"-ERR Error running script: @user_script:1: READONLY You can't write against a read only replica.\r\n",
        )
        .and_then(redis::Value::extract_error);
        assert!(scripted.err().is_some_and(|e| is_readonly(&e)));
        let other = redis::parse_redis_value(b"-ERR unknown command\r\n")
            .and_then(redis::Value::extract_error);
        assert!(other.err().is_some_and(|e| !is_readonly(&e)));
    }
}
