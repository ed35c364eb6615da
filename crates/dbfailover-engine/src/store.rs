//! Where shared state is kept: the `StateStore` trait and the in-memory store.
//!
//! A store keeps records (one per connection, one for the fleet; see `dbfailover_core::record`) as text
//! and changes them only by compare-and-set of one or several records at once, all or none, so that
//! several engines (instances of a service) sharing it never lose an update. The rules that decide what
//! to write live in `dbfailover_core::replica`; a store only reads, compares and writes.

use crate::error::StoreError;
use dbfailover_core::record::{CasOutcome, Notice, RecordKey, Slot, Write};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// What a store's operations return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Keeps the shared records, and shares them when several engines use the same store.
///
/// - [`StateStore::load`] answers what the store holds under each key ([`Slot::decode`] of the stored
///   bytes; a value of a wrong type reads as unreadable, never as an error).
/// - [`StateStore::compare_and_set`] writes every record of the request if each one's
///   [`Expect`](dbfailover_core::record::Expect) matches what is stored
///   ([`Expect::matches`](dbfailover_core::record::Expect::matches)), renewing the TTL, and mirrors a
///   connection's status and failure count under the seed's keys; otherwise it writes nothing and
///   answers what it found.
/// - [`StateStore::changes`] delivers the records other writers wrote, for stores that can push (Redis
///   pub/sub, the memory store); for the others the engine polls.
///
/// The engine bounds every call by its store timeout; an error or a timeout never stops monitoring: the
/// engine goes on from its local state, publishes `CacheUnavailable` once per outage, and reconciles
/// when the store is back.
pub trait StateStore: Send + Sync + 'static {
    /// What the store holds under each of `keys`, in order.
    fn load<'a>(&'a self, keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>>;

    /// Writes every record of `writes` if each is as expected, or none.
    fn compare_and_set<'a>(&'a self, writes: &'a [Write]) -> StoreFuture<'a, CasOutcome>;

    /// The records other writers write, when this store can push them; `None`: poll instead.
    fn changes(&self) -> Option<broadcast::Receiver<Notice>> {
        None
    }

    /// A short description for logs (`memory`, `redis://host:6379` with the password masked, ...).
    fn describe(&self) -> String;
}

/// A store in this process's memory, with the seed's TTL. The default store; engines in one process
/// that share one `MemoryStore` (through an `Arc`) share state and changes.
pub struct MemoryStore {
    ttl: Duration,
    records: Mutex<HashMap<RecordKey, (Vec<u8>, Instant)>>,
    changes: broadcast::Sender<Notice>,
}

impl MemoryStore {
    /// The seed's default TTL, 300 s.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    /// An empty store whose records expire `ttl` after their last write.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            records: Mutex::new(HashMap::new()),
            changes: broadcast::channel(1024).0,
        }
    }

    /// Puts `raw` under `key` as is, or removes it (`None`): what an eviction, a restart or a careless
    /// operator does to a store. For tests of what the engine makes of it.
    pub fn set_raw(&self, key: &RecordKey, raw: Option<&[u8]>) {
        if let Ok(mut records) = self.records.lock() {
            match raw {
                Some(raw) => {
                    records.insert(key.clone(), (raw.to_vec(), Instant::now()));
                }
                None => {
                    records.remove(key);
                }
            }
        }
    }

    /// The bytes stored under `key`, if any.
    pub fn raw(&self, key: &RecordKey) -> Option<Vec<u8>> {
        let records = self.records.lock().ok()?;
        records
            .get(key)
            .filter(|(_, written)| written.elapsed() < self.ttl)
            .map(|(raw, _)| raw.clone())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TTL)
    }
}

fn poisoned() -> StoreError {
    StoreError::new("memory store lock poisoned")
}

impl StateStore for MemoryStore {
    fn load<'a>(&'a self, keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>> {
        let slots = keys
            .iter()
            .map(|key| Slot::decode(key, self.raw(key).as_deref()))
            .collect();
        Box::pin(async move { Ok(slots) })
    }

    fn compare_and_set<'a>(&'a self, writes: &'a [Write]) -> StoreFuture<'a, CasOutcome> {
        let result = (|| {
            let mut records = self.records.lock().map_err(|_| poisoned())?;
            let current = |key: &RecordKey| {
                records
                    .get(key)
                    .filter(|(_, written)| written.elapsed() < self.ttl)
                    .map(|(raw, _)| raw.clone())
            };
            if !writes
                .iter()
                .all(|w| w.expect.matches(current(&w.key).as_deref()))
            {
                let found = writes
                    .iter()
                    .map(|w| Slot::decode(&w.key, current(&w.key).as_deref()))
                    .collect();
                return Ok(CasOutcome::Conflict(found));
            }
            let now = Instant::now();
            for write in writes {
                records.insert(write.key.clone(), (write.value.as_bytes().to_vec(), now));
            }
            let written = writes
                .iter()
                .map(|w| {
                    (
                        w.key.clone(),
                        Slot::decode(&w.key, Some(w.value.as_bytes())),
                    )
                })
                .collect();
            // Nobody listening is fine.
            let _ = self.changes.send(Notice::Written(written));
            Ok(CasOutcome::Written)
        })();
        Box::pin(async move { result })
    }

    fn changes(&self) -> Option<broadcast::Receiver<Notice>> {
        Some(self.changes.subscribe())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbfailover_core::record::{ConnectionEntry, Expect, Record, Version};

    fn key() -> RecordKey {
        RecordKey::Connection("main".into())
    }

    fn write(expect: Expect, counter: u64) -> (Write, Version) {
        let version = Version {
            counter,
            write_id: counter * 7,
        };
        let value = Record::Connection(ConnectionEntry::default()).encode(version);
        (
            Write {
                key: key(),
                expect,
                value,
                seed: None,
            },
            version,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn records_expire_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let (w, v) = write(Expect::Missing, 1);
        assert_eq!(
            store.compare_and_set(&[w]).await.ok(),
            Some(CasOutcome::Written)
        );
        let slots = store.load(&[key()]).await.unwrap_or_default();
        assert_eq!(slots.first().and_then(Slot::version), Some(v));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.load(&[key()]).await.ok(), Some(vec![Slot::Missing]));
    }

    #[tokio::test]
    async fn compare_and_set_refuses_what_it_did_not_expect() {
        let store = MemoryStore::default();
        let (first, v1) = write(Expect::Missing, 1);
        assert_eq!(
            store
                .compare_and_set(std::slice::from_ref(&first))
                .await
                .ok(),
            Some(CasOutcome::Written)
        );
        let again = store.compare_and_set(&[first]).await.ok();
        assert!(
            matches!(again, Some(CasOutcome::Conflict(ref slots)) if slots[0].version() == Some(v1))
        );
        let (second, _) = write(Expect::after(v1), 2);
        assert_eq!(
            store.compare_and_set(&[second]).await.ok(),
            Some(CasOutcome::Written)
        );
    }
}
