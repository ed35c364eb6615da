//! Where connection state is kept and shared: the `StateStore` trait and the in-memory store.
//!
//! A store keeps one versioned entry per connection and updates it by compare-and-set, so that several
//! engines (instances of a service) sharing it never lose an update: each check result is applied to the
//! entry as it is in the store, with the core's tracker, and written only if nobody wrote in between.

use crate::error::StoreError;
use dbfailover_core::shared::Vote;
use dbfailover_core::{ConnectionStatus, Counts};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// What a store's operations return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One connection's entry: the seed's status and failure count, the consecutive successes of a
/// recovery, and when it was written (milliseconds since the Unix epoch, for reconciling after an outage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// Status and consecutive counts.
    pub counts: Counts,
    /// When this entry was written, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// Each instance's latest result (see `dbfailover_core::shared`).
    pub votes: Vec<Vote>,
}

impl StoredState {
    /// An entry with `counts`, written now.
    pub fn now(counts: Counts) -> Self {
        Self {
            counts,
            updated_at_ms: chrono::Utc::now().timestamp_millis(),
            votes: Vec::new(),
        }
    }

    /// What an entry that cannot be read counts as: UNKNOWN / 0, written at the epoch (so it is older
    /// than anything, and replaced by the next update).
    pub fn unreadable() -> Self {
        Self {
            counts: Counts::default(),
            updated_at_ms: 0,
            votes: Vec::new(),
        }
    }

    /// The text form stores keep: `STATUS failures successes updated_at_ms [instance:ok:at_ms,...]`.
    pub fn encode(&self) -> String {
        let mut text = format!(
            "{} {} {} {}",
            self.counts.status.as_str(),
            self.counts.failure_count,
            self.counts.success_count,
            self.updated_at_ms
        );
        if !self.votes.is_empty() {
            let votes: Vec<String> = self
                .votes
                .iter()
                .map(|v| format!("{}:{}:{}", v.instance, u8::from(v.ok), v.at_ms))
                .collect();
            text.push(' ');
            text.push_str(&votes.join(","));
        }
        text
    }

    /// Reads [`StoredState::encode`]'s form; `None` for anything else (an unreadable entry reads as
    /// missing, UNKNOWN / 0, as in the seed).
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        let status = ConnectionStatus::parse(parts.next()?)?;
        let failure_count = parts.next()?.parse().ok()?;
        let success_count = parts.next()?.parse().ok()?;
        let updated_at_ms = parts.next()?.parse().ok()?;
        let votes = parts
            .next()
            .map(|list| {
                list.split(',')
                    .filter_map(|vote| {
                        let mut fields = vote.split(':');
                        Some(Vote {
                            instance: fields.next()?.parse().ok()?,
                            ok: fields.next()? == "1",
                            at_ms: fields.next()?.parse().ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            counts: Counts {
                status,
                failure_count,
                success_count,
            },
            updated_at_ms,
            votes,
        })
    }
}

/// An entry with the store's version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The entry.
    pub state: StoredState,
    /// The store's version: changes on every write, never repeats while the store lives.
    pub version: u64,
}

/// Keeps connection state, and shares it when several engines use the same store.
///
/// - An entry that is missing or expired reads as `None` (UNKNOWN / 0, as in the seed).
/// - [`StateStore::compare_and_set`] writes only if the entry's version is still the expected one
///   (`None`: no entry), renewing the TTL; the engine retries on a conflict.
/// - [`StateStore::changes`] delivers the names of connections whose entry another writer changed, for
///   stores that can push (Redis pub/sub, the memory store); for the others the engine polls.
///
/// The engine bounds every call by its store timeout; an error or a timeout never stops monitoring: the
/// engine goes on from its local state, publishes `CacheUnavailable` once per outage, and reconciles
/// when the store is back.
pub trait StateStore: Send + Sync + 'static {
    /// The entry of `connection`, `None` when missing or expired.
    fn load<'a>(&'a self, connection: &'a str) -> StoreFuture<'a, Option<Versioned>>;

    /// Writes `state` if the entry's version is `expected`; answers the new version, or `None` when
    /// another writer came first.
    fn compare_and_set<'a>(
        &'a self,
        connection: &'a str,
        expected: Option<u64>,
        state: StoredState,
    ) -> StoreFuture<'a, Option<u64>>;

    /// Notifications of changed connections, when this store can push them; `None`: poll instead.
    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        None
    }

    /// A short description for logs (`memory`, `redis://host:6379` with the password masked, ...).
    fn describe(&self) -> String;
}

/// A store in this process's memory, with the seed's TTL. The default store; engines in one process
/// that share one `MemoryStore` (through an `Arc`) share state and changes.
pub struct MemoryStore {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Versioned, Instant)>>,
    versions: AtomicU64,
    changes: broadcast::Sender<String>,
}

impl MemoryStore {
    /// The seed's default TTL, 300 s.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    /// An empty store whose entries expire `ttl` after their last write.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            versions: AtomicU64::new(0),
            changes: broadcast::channel(1024).0,
        }
    }

    fn current(&self, connection: &str) -> Result<Option<Versioned>, StoreError> {
        let entries = self
            .entries
            .lock()
            .map_err(|_| StoreError::new("memory store lock poisoned"))?;
        Ok(entries
            .get(connection)
            .filter(|(_, written)| written.elapsed() < self.ttl)
            .map(|(entry, _)| entry.clone()))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TTL)
    }
}

impl StateStore for MemoryStore {
    fn load<'a>(&'a self, connection: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let entry = self.current(connection);
        Box::pin(async move { entry })
    }

    fn compare_and_set<'a>(
        &'a self,
        connection: &'a str,
        expected: Option<u64>,
        state: StoredState,
    ) -> StoreFuture<'a, Option<u64>> {
        let result = (|| {
            let mut entries = self
                .entries
                .lock()
                .map_err(|_| StoreError::new("memory store lock poisoned"))?;
            let current = entries
                .get(connection)
                .filter(|(_, written)| written.elapsed() < self.ttl)
                .map(|(entry, _)| entry.version);
            if current != expected {
                return Ok(None);
            }
            let version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
            entries.insert(
                connection.to_owned(),
                (Versioned { state, version }, Instant::now()),
            );
            // Nobody listening is fine.
            let _ = self.changes.send(connection.to_owned());
            Ok(Some(version))
        })();
        Box::pin(async move { result })
    }

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.changes.subscribe())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> StoredState {
        StoredState {
            counts: Counts {
                status: ConnectionStatus::Down,
                failure_count: 3,
                success_count: 0,
            },
            updated_at_ms: 1,
            votes: vec![Vote {
                instance: 7,
                ok: true,
                at_ms: 1,
            }],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_to_unknown_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(10));
        store.compare_and_set("main", None, down()).await.ok();
        assert_eq!(
            store.load("main").await.ok().flatten().map(|v| v.state),
            Some(down())
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.load("main").await.ok().flatten(), None);
    }

    #[tokio::test]
    async fn compare_and_set_refuses_a_stale_version() {
        let store = MemoryStore::default();
        let first = store
            .compare_and_set("main", None, down())
            .await
            .ok()
            .flatten();
        assert!(first.is_some());
        assert_eq!(
            store.compare_and_set("main", None, down()).await.ok(),
            Some(None)
        );
        let second = store
            .compare_and_set("main", first, down())
            .await
            .ok()
            .flatten();
        assert!(second > first);
        assert_eq!(
            store.compare_and_set("main", first, down()).await.ok(),
            Some(None),
            "stale"
        );
    }

    #[test]
    fn the_text_form_round_trips_and_garbage_reads_as_missing() {
        assert_eq!(StoredState::decode(&down().encode()), Some(down()));
        assert_eq!(StoredState::decode("HEALTHY"), None);
        assert_eq!(StoredState::decode("maybe 1 2 3"), None);
    }
}
