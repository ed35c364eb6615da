//! Redis, through deadpool-redis: the store for many instances.
//!
//! Each update is one Lua script: it compares the entry's version with the expected one, writes the
//! entry, its version and the seed's two keys with the TTL, takes the next version from a store-wide
//! counter, and announces the change on a pub/sub channel, all atomically. A subscriber task turns the
//! announcements into the engine's change feed, reconnecting (with a bounded backoff) when Redis goes
//! away; after a reconnect it asks the engine to reload everything it may have missed.

use crate::StoreSetupError;
use crate::keys::{Keys, changes_channel, version_counter};
use dbfailover_core::url::mask_password;
use dbfailover_engine::{StateStore, StoreError, StoreFuture, StoredState, Versioned};
use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Pool, Runtime};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::broadcast;

const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[2])
local expected = ARGV[1]
if current == false then
  if expected ~= '' then return 0 end
elseif current ~= expected then
  return 0
end
local version = redis.call('INCR', KEYS[5])
local ttl = ARGV[2]
redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
redis.call('SET', KEYS[2], version, 'PX', ttl)
redis.call('SET', KEYS[3], ARGV[4], 'PX', ttl)
redis.call('SET', KEYS[4], ARGV[5], 'PX', ttl)
redis.call('PUBLISH', ARGV[6], ARGV[7])
return version
";

/// The Redis store.
pub struct RedisStore {
    url: String,
    pool: Pool,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    script: redis::Script,
    changes: OnceLock<broadcast::Sender<String>>,
}

impl RedisStore {
    /// A store at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://` with the `redis-tls`
    /// feature), keys under `prefix`, entries living `ttl`, every operation bounded by `timeout`.
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
        if url.starts_with("rediss:") && !cfg!(feature = "redis-tls") {
            return Err(invalid(
                "TLS (rediss://) needs the `redis-tls` feature of this build".to_owned(),
            ));
        }
        let mut config = deadpool_redis::Config::from_url(url);
        config.pool = Some(deadpool_redis::PoolConfig {
            max_size: 8,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            },
            ..Default::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| invalid(mask_password(&e.to_string())))?;
        Ok(Self {
            url: url.to_owned(),
            pool,
            prefix: prefix.to_owned(),
            ttl,
            timeout,
            script: redis::Script::new(CAS_SCRIPT),
            changes: OnceLock::new(),
        })
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(format!(
            "redis {}: {what}: {}",
            mask_password(&self.url),
            mask_password(&e.to_string())
        ))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| self.error(what, format!("no answer within {:?}", self.timeout)))?
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.pool.get().await.map_err(|e| self.error("connect", e))
    }
}

impl StateStore for RedisStore {
    fn load<'a>(&'a self, connection: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(self.bounded("load", async move {
            let keys = Keys::new(&self.prefix, connection);
            let mut conn = self.connection().await?;
            // One MGET: entry and version are read together, atomically.
            let (state, version): (Option<String>, Option<u64>) = redis::cmd("MGET")
                .arg(&keys.state)
                .arg(&keys.version)
                .query_async(&mut *conn)
                .await
                .map_err(|e| self.error("load", e))?;
            Ok(version.map(|version| Versioned {
                // An unreadable (or evicted) entry reads as UNKNOWN / 0, written long ago: the next
                // update replaces it, with its version, instead of conflicting until it expires.
                state: state
                    .as_deref()
                    .and_then(StoredState::decode)
                    .unwrap_or_else(StoredState::unreadable),
                version,
            }))
        }))
    }

    fn compare_and_set<'a>(
        &'a self,
        connection: &'a str,
        expected: Option<u64>,
        state: StoredState,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(self.bounded("update", async move {
            let keys = Keys::new(&self.prefix, connection);
            let mut conn = self.connection().await?;
            let version: u64 = self
                .script
                .key(&keys.state)
                .key(&keys.version)
                .key(&keys.status)
                .key(&keys.failure_count)
                .key(version_counter(&self.prefix))
                .arg(expected.map(|v| v.to_string()).unwrap_or_default())
                .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
                .arg(state.encode())
                .arg(state.counts.status.as_str())
                .arg(state.counts.failure_count)
                .arg(changes_channel(&self.prefix))
                .arg(connection)
                .invoke_async(&mut *conn)
                .await
                .map_err(|e| self.error("update", e))?;
            Ok((version != 0).then_some(version))
        }))
    }

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        let sender = self.changes.get_or_init(|| {
            let (sender, _) = broadcast::channel(1024);
            match redis::Client::open(self.url.as_str()) {
                Ok(client) => {
                    tokio::spawn(subscribe_forever(
                        client,
                        changes_channel(&self.prefix),
                        self.timeout,
                        sender.clone(),
                        mask_password(&self.url),
                    ));
                }
                Err(error) => tracing::warn!(
                    url = %mask_password(&self.url),
                    error = %mask_password(&error.to_string()),
                    "redis change feed unavailable; instances will learn changes on their own checks"
                ),
            }
            sender
        });
        Some(sender.subscribe())
    }

    fn describe(&self) -> String {
        format!("redis {}", mask_password(&self.url))
    }
}

/// Forwards the change announcements to `sender` until nobody listens, reconnecting as needed.
async fn subscribe_forever(
    client: redis::Client,
    channel: String,
    timeout: Duration,
    sender: broadcast::Sender<String>,
    shown_url: String,
) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(50);
    let mut connected_before = false;
    loop {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(mut pubsub)) => {
                backoff = Duration::from_millis(50);
                if connected_before {
                    // Announcements made while disconnected were missed: reload everything.
                    let _ = sender.send(String::new());
                }
                connected_before = true;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    if let Ok(name) = message.get_payload::<String>()
                        && sender.send(name).is_err()
                    {
                        return; // nobody listens any more
                    }
                }
                tracing::warn!(url = %shown_url, "redis change feed lost; reconnecting");
            }
            Ok(Err(error)) => {
                tracing::debug!(url = %shown_url, error = %mask_password(&error.to_string()), "redis change feed: connect failed");
            }
            Err(_) => tracing::debug!(url = %shown_url, "redis change feed: connect timed out"),
        }
        if sender.receiver_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[allow(unused_imports)]
use AsyncCommands as _;
