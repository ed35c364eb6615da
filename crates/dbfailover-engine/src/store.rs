//! Where connection state is kept: the `StateStore` trait and the in-memory store.

use crate::error::StoreError;
use dbfailover_core::ConnectionStatus;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What a store's operations return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What is stored per connection: the seed's two entries, `{prefix}_conn_status_{name}` and
/// `{prefix}_conn_failure_count_{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredState {
    /// The status.
    pub status: ConnectionStatus,
    /// Consecutive failed checks.
    pub failure_count: u32,
}

/// Keeps connection state, so that a restarted engine (and, with a shared store, other instances)
/// start from what is known. An entry that is missing or expired reads as `None` (UNKNOWN / 0).
///
/// The engine bounds every call by its store timeout; an error or a timeout never stops monitoring:
/// the engine goes on from its local state and publishes `CacheUnavailable` once per outage.
pub trait StateStore: Send + Sync + 'static {
    /// The stored state of `connection`, `None` when missing or expired.
    fn load<'a>(&'a self, connection: &'a str) -> StoreFuture<'a, Option<StoredState>>;
    /// Stores the state of `connection` (with the store's TTL).
    fn save<'a>(&'a self, connection: &'a str, state: StoredState) -> StoreFuture<'a, ()>;
}

/// A store in this process's memory, with the seed's TTL. The default store.
pub struct MemoryStore {
    ttl: Duration,
    entries: Mutex<HashMap<String, (StoredState, Instant)>>,
}

impl MemoryStore {
    /// The seed's default TTL, 300 s.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    /// An empty store whose entries expire `ttl` after their last write.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TTL)
    }
}

impl StateStore for MemoryStore {
    fn load<'a>(&'a self, connection: &'a str) -> StoreFuture<'a, Option<StoredState>> {
        let entry = self
            .entries
            .lock()
            .map_err(|_| StoreError::new("memory store lock poisoned"))
            .map(|entries| {
                entries
                    .get(connection)
                    .filter(|(_, written)| written.elapsed() < self.ttl)
                    .map(|(state, _)| *state)
            });
        Box::pin(async move { entry })
    }

    fn save<'a>(&'a self, connection: &'a str, state: StoredState) -> StoreFuture<'a, ()> {
        let result = self
            .entries
            .lock()
            .map_err(|_| StoreError::new("memory store lock poisoned"))
            .map(|mut entries| {
                entries.insert(connection.to_owned(), (state, Instant::now()));
            });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_to_unknown_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(10));
        let down = StoredState {
            status: ConnectionStatus::Down,
            failure_count: 3,
        };
        store.save("main", down).await.ok();
        assert_eq!(store.load("main").await.ok().flatten(), Some(down));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.load("main").await.ok().flatten(), None);
    }
}
