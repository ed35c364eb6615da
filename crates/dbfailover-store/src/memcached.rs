//! Memcached: compare-and-set updates with the same key layout and TTL as the other stores.
//!
//! The entry key holds `STATE|VERSION`, the version coming from a store-wide `incr` counter. An update
//! reads the entry with its CAS token (`gets`), checks the version, and writes with `cas` (or `add` when
//! there is no entry), so a concurrent writer makes it fail and the engine retries. The seed's keys are
//! written after each update. Memcached cannot push changes: instances poll at the check interval.

use crate::StoreSetupError;
use crate::keys::{Keys, version_counter};
use dbfailover_core::url::mask_password;
use dbfailover_engine::{StateStore, StoreError, StoreFuture, StoredState, Versioned};
use std::sync::Arc;
use std::time::Duration;

/// The memcached store.
pub struct MemcachedStore {
    url: String,
    client: Arc<memcache::Client>,
    prefix: String,
    ttl: Duration,
}

impl MemcachedStore {
    /// A store at `url` (`memcache://host:port`), keys under `prefix`, entries living `ttl`, every
    /// operation bounded by `timeout`.
    pub fn new(
        url: &str,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Self, StoreSetupError> {
        let normalized = url.replacen("memcached://", "memcache://", 1);
        let separator = if normalized.contains('?') { '&' } else { '?' };
        let with_timeout = format!(
            "{normalized}{separator}timeout={}&tcp_nodelay=true",
            timeout.as_secs_f64()
        );
        // r2d2 connects lazily enough: building the client only parses the URL and sizes the pool.
        let client = memcache::Client::builder()
            .add_server(with_timeout.as_str())
            .and_then(|b| {
                b.with_max_pool_size(4)
                    .with_connection_timeout(timeout)
                    .build()
            })
            .map_err(|e| StoreSetupError::InvalidSetting {
                key: "state.url",
                value: mask_password(url),
                reason: e.to_string(),
            })?;
        Ok(Self {
            url: url.to_owned(),
            client: Arc::new(client),
            prefix: prefix.to_owned(),
            ttl,
        })
    }

    fn expiration(&self) -> u32 {
        // Memcached reads more than 30 days as a Unix timestamp: keep TTLs below that.
        const THIRTY_DAYS: u64 = 30 * 24 * 3600;
        u32::try_from(self.ttl.as_secs().clamp(1, THIRTY_DAYS)).unwrap_or(u32::MAX)
    }
}

fn error(url: &str, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("memcached {}: {what}: {e}", mask_password(url)))
}

fn decode(value: &[u8]) -> Option<Versioned> {
    let text = std::str::from_utf8(value).ok()?;
    let (state, version) = text.rsplit_once('|')?;
    Some(Versioned {
        state: StoredState::decode(state)?,
        version: version.parse().ok()?,
    })
}

type Gets = std::collections::HashMap<String, (Vec<u8>, u32, Option<u64>)>;

impl StateStore for MemcachedStore {
    fn load<'a>(&'a self, connection: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let client = Arc::clone(&self.client);
        let key = Keys::new(&self.prefix, connection).state;
        let url = self.url.clone();
        Box::pin(crate::blocking(self.describe(), move || {
            let value: Option<Vec<u8>> = client.get(&key).map_err(|e| error(&url, "load", e))?;
            Ok(value.as_deref().and_then(decode))
        }))
    }

    fn compare_and_set<'a>(
        &'a self,
        connection: &'a str,
        expected: Option<u64>,
        state: StoredState,
    ) -> StoreFuture<'a, Option<u64>> {
        let client = Arc::clone(&self.client);
        let keys = Keys::new(&self.prefix, connection);
        let counter = version_counter(&self.prefix);
        let expiration = self.expiration();
        let url = self.url.clone();
        Box::pin(crate::blocking(self.describe(), move || {
            let fail = |what: &str, e: memcache::MemcacheError| error(&url, what, e);
            let found: Gets = client
                .gets(&[keys.state.as_str()])
                .map_err(|e| fail("load", e))?;
            // An entry that cannot be read counts as missing (UNKNOWN / 0) and is replaced, with its
            // CAS token, rather than blocking every write until it expires.
            let current = found
                .get(&keys.state)
                .and_then(|(value, _, cas)| Some((decode(value).map(|v| v.version), (*cas)?)));
            if current.as_ref().and_then(|(version, _)| *version) != expected {
                return Ok(None);
            }
            // The counter never expires; `add` creates it once, `increment` is atomic.
            let _ = client.add(&counter, 0u64, 0);
            let version = client
                .increment(&counter, 1)
                .map_err(|e| fail("version", e))?;
            let value = format!("{}|{version}", state.encode());
            let written = match current {
                Some((_, token)) => client
                    .cas(&keys.state, value.as_str(), expiration, token)
                    .map_err(|e| fail("update", e))?,
                None => client.add(&keys.state, value.as_str(), expiration).is_ok(),
            };
            if !written {
                return Ok(None);
            }
            // The seed's keys mirror the entry (not atomically: the entry is what the engine reads).
            let _ = client.set(&keys.status, state.counts.status.as_str(), expiration);
            let _ = client.set(&keys.failure_count, state.counts.failure_count, expiration);
            Ok(Some(version))
        }))
    }

    fn describe(&self) -> String {
        format!("memcached {}", mask_password(&self.url))
    }
}
