//! Memcached: every record of the prefix in one document, changed by `gets` / `cas`.
//!
//! Memcached cannot compare and set several keys at once, so the records live together in one item,
//! `{prefix}_shared`: a JSON object mapping `c:<name>` (a connection's record) and `f` (the fleet
//! record) to `{"value": <record text>, "expires_at_ms": <Unix ms>}` (the writer's clock, for
//! operators only: the document expires by memcached's TTL, on the server's clock, renewed by every
//! write, so no host's clock can make a record read as expired); a document that is not such an object reads as unreadable for every record (so a write
//! expecting that replaces it); an entry of another shape reads as unreadable.
//!
//! A load is one `get`. A compare-and-set reads the document with its CAS token (`gets`), checks every
//! expectation against it, and writes the new document with `cas`; a concurrent writer makes the `cas`
//! fail, and the request is checked again against what that writer left. A missing document is first
//! created empty (`add`, which never replaces one). After a write, the seed's keys of each connection
//! written are set with the TTL (not atomically: the document is what the engine reads). Memcached
//! cannot push changes: instances poll.

use crate::StoreSetupError;
use crate::keys::{SeedKeys, shared_document};
use dbfailover_core::record::{CasOutcome, RecordKey, Slot, Write};
use dbfailover_core::url::{mask_password, mask_text};
use dbfailover_engine::{StateStore, StoreError, StoreFuture};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// How many times a compare-and-set reads and tries again after losing a race to another writer.
const ATTEMPTS: usize = 8;

/// What a record that cannot be read is taken to hold: a value with no header.
const UNREADABLE: &[u8] = b"";

/// The longest memcached key.
const MAX_KEY: usize = 250;

/// Whether memcached's text protocol takes `key`: at most 250 bytes, no whitespace or control bytes.
fn is_memcached_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80)
}

/// The memcached store.
pub struct MemcachedStore {
    url: String,
    client: Arc<memcache::Client>,
    key: String,
    prefix: String,
    ttl: Duration,
}

impl MemcachedStore {
    /// A store at `url` (`memcache://host:port`), keys under `prefix`, records living `ttl`, every
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
                reason: mask_text(&e.to_string()),
            })?;
        let key = shared_document(prefix);
        if !is_memcached_key(&key) {
            return Err(StoreSetupError::InvalidSetting {
                key: "state.prefix",
                value: prefix.to_owned(),
                reason: format!(
                    "memcached keys are at most {MAX_KEY} bytes with no spaces or control characters, \
                     and `{{prefix}}_shared` would not be one"
                ),
            });
        }
        Ok(Self {
            url: url.to_owned(),
            client: Arc::new(client),
            key,
            prefix: prefix.to_owned(),
            ttl,
        })
    }

    /// Whether `prefix` makes valid memcached keys (what [`MemcachedStore::new`] checks).
    pub fn valid_prefix(prefix: &str) -> bool {
        is_memcached_key(&shared_document(prefix))
    }

    fn expiration(&self) -> u32 {
        // Memcached reads more than 30 days as a Unix timestamp: keep TTLs below that.
        const THIRTY_DAYS: u64 = 30 * 24 * 3600;
        u32::try_from(self.ttl.as_secs().clamp(1, THIRTY_DAYS)).unwrap_or(u32::MAX)
    }

    /// What a blocking call needs, owned.
    fn job(&self) -> Job {
        Job {
            url: self.url.clone(),
            client: Arc::clone(&self.client),
            key: self.key.clone(),
            prefix: self.prefix.clone(),
            ttl_ms: i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2),
            expiration: self.expiration(),
        }
    }
}

struct Job {
    url: String,
    client: Arc<memcache::Client>,
    key: String,
    prefix: String,
    ttl_ms: i64,
    expiration: u32,
}

type Gets = std::collections::HashMap<String, (Vec<u8>, u32, Option<u64>)>;

impl Job {
    fn error(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(format!(
            "memcached {}: {what}: {}",
            mask_password(&self.url),
            mask_text(&e.to_string())
        ))
    }

    fn load(&self, keys: &[RecordKey]) -> Result<Vec<Slot>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .client
            .get(&self.key)
            .map_err(|e| self.error("load", e))?;
        let document = Document::parse(raw.as_deref());
        Ok(document.slots(keys.iter()))
    }

    fn compare_and_set(&self, writes: &[Write]) -> Result<CasOutcome, StoreError> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let found: Gets = self
                .client
                .gets(&[self.key.as_str()])
                .map_err(|e| self.error("load", e))?;
            let (document, token) = match found.get(&self.key) {
                Some((raw, _, token)) => (Document::parse(Some(raw)), *token),
                None => (Document::Absent, None),
            };
            let now = now_ms();
            if !writes
                .iter()
                .all(|w| w.expect.matches(document.raw(&w.key)))
            {
                return Ok(CasOutcome::Conflict(
                    document.slots(writes.iter().map(|w| &w.key)),
                ));
            }
            match token {
                Some(token) => {
                    let text = document.with(writes, now, self.ttl_ms);
                    let written = self
                        .client
                        .cas(&self.key, text.as_str(), self.expiration, token)
                        .map_err(|e| self.error("update", e))?;
                    if written {
                        self.mirror_seeds(writes);
                        return Ok(CasOutcome::Written);
                    }
                }
                None if matches!(document, Document::Absent) => {
                    // Create the document empty (`add` never replaces one), then compare and set it
                    // like any other: a writer that created it first wins the race.
                    match self.client.add(&self.key, "{}", self.expiration) {
                        Ok(())
                        | Err(memcache::MemcacheError::CommandError(
                            memcache::CommandError::KeyExists,
                        )) => {}
                        Err(e) => return Err(self.error("create", e)),
                    }
                }
                None => return Err(self.error("update", "the server gave no CAS token")),
            }
            last = Some(document.slots(writes.iter().map(|w| &w.key)));
        }
        // Lost every race: answer what the last read found.
        Ok(CasOutcome::Conflict(last.unwrap_or_default()))
    }

    /// The seed's keys mirror each connection written (best effort).
    fn mirror_seeds(&self, writes: &[Write]) {
        for write in writes {
            let (Some(keys), Some((status, failures))) =
                (SeedKeys::of(&self.prefix, write), write.seed)
            else {
                continue;
            };
            if !is_memcached_key(&keys.status) || !is_memcached_key(&keys.failure_count) {
                // A connection name memcached cannot key (spaces, length): its records are in the
                // document all the same; only the seed's mirror is skipped.
                continue;
            }
            let mirrored = self
                .client
                .set(&keys.status, status.as_str(), self.expiration)
                .and_then(|()| {
                    self.client
                        .set(&keys.failure_count, failures, self.expiration)
                });
            if let Err(error) = mirrored {
                tracing::debug!(
                    url = %mask_password(&self.url),
                    key = %keys.status,
                    %error,
                    "memcached: the seed's keys were not updated"
                );
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The name of a record inside the document.
fn entry_name(key: &RecordKey) -> String {
    match key {
        RecordKey::Fleet => "f".to_owned(),
        RecordKey::Connection(name) => format!("c:{name}"),
    }
}

/// The shared document, as read.
#[derive(Debug)]
enum Document {
    /// No item.
    Absent,
    /// An item that is not a JSON object: every record is unreadable.
    Garbage,
    /// The entries by name.
    Entries(Map<String, Value>),
}

impl Document {
    fn parse(raw: Option<&[u8]>) -> Self {
        match raw.map(serde_json::from_slice::<Value>) {
            None => Self::Absent,
            Some(Ok(Value::Object(entries))) => Self::Entries(entries),
            Some(_) => Self::Garbage,
        }
    }

    /// What the document holds for `key`, as stored bytes (`None`: nothing). No host's clock decides
    /// what is missing: the item expires by memcached's TTL.
    fn raw(&self, key: &RecordKey) -> Option<&[u8]> {
        match self {
            Self::Absent => None,
            Self::Garbage => Some(UNREADABLE),
            Self::Entries(entries) => {
                let entry = entries.get(&entry_name(key))?;
                match (
                    entry.get("value").and_then(Value::as_str),
                    entry.get("expires_at_ms").and_then(Value::as_i64),
                ) {
                    // Expiry is memcached's, by the server's clock (the item's TTL, renewed on every
                    // write); `expires_at_ms` is a writer's clock and decides nothing.
                    (Some(value), _) => Some(value.as_bytes()),
                    _ => Some(UNREADABLE),
                }
            }
        }
    }

    fn slots<'k>(&self, keys: impl Iterator<Item = &'k RecordKey>) -> Vec<Slot> {
        keys.map(|key| Slot::decode(key, self.raw(key))).collect()
    }

    /// The document's text after `writes` at `now`: expired entries dropped, and a garbage document
    /// replaced by the written records alone.
    fn with(&self, writes: &[Write], now: i64, ttl_ms: i64) -> String {
        let mut entries = match self {
            Self::Entries(entries) => entries.clone(),
            Self::Absent | Self::Garbage => Map::new(),
        };
        let expires_at_ms = now.saturating_add(ttl_ms);
        for write in writes {
            entries.insert(
                entry_name(&write.key),
                serde_json::json!({ "value": write.value, "expires_at_ms": expires_at_ms }),
            );
        }
        Value::Object(entries).to_string()
    }
}

/// For the fuzz targets ([`crate::fuzzing`]): what the document `raw` (`None`: no item) holds for
/// `keys`.
pub(crate) fn decode_for_fuzzing(raw: Option<&[u8]>, keys: &[RecordKey]) -> Vec<Slot> {
    Document::parse(raw).slots(keys.iter())
}

/// For the fuzz targets ([`crate::fuzzing`]): the document that replaces `raw` after `writes` at
/// `now_ms`.
pub(crate) fn rewrite_for_fuzzing(
    raw: Option<&[u8]>,
    writes: &[Write],
    now_ms: i64,
    ttl_ms: i64,
) -> String {
    Document::parse(raw).with(writes, now_ms, ttl_ms)
}

impl StateStore for MemcachedStore {
    fn load<'a>(&'a self, keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>> {
        let job = self.job();
        let keys = keys.to_vec();
        Box::pin(crate::blocking(self.describe(), move || job.load(&keys)))
    }

    fn compare_and_set<'a>(&'a self, writes: &'a [Write]) -> StoreFuture<'a, CasOutcome> {
        let job = self.job();
        let writes = writes.to_vec();
        Box::pin(crate::blocking(self.describe(), move || {
            job.compare_and_set(&writes)
        }))
    }

    fn describe(&self) -> String {
        format!("memcached {}", mask_password(&self.url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbfailover_core::record::{ConnectionEntry, Expect, Record, Version};

    fn main() -> RecordKey {
        RecordKey::Connection("main".into())
    }

    fn value(counter: u64) -> String {
        Record::Connection(ConnectionEntry::default()).encode(Version {
            counter,
            write_id: counter,
        })
    }

    fn write(key: RecordKey, expect: Expect, value: String) -> Write {
        Write {
            key,
            expect,
            value,
            seed: None,
        }
    }

    #[test]
    fn records_round_trip_through_the_document_whatever_the_writers_clock() {
        let writes = [
            write(main(), Expect::Missing, value(1)),
            write(RecordKey::Fleet, Expect::Missing, "garbage".to_owned()),
        ];
        let text = Document::Absent.with(&writes, 1_000, 500);
        let document = Document::parse(Some(text.as_bytes()));
        let slots = document.slots([main(), RecordKey::Fleet].iter());
        assert_eq!(slots[0].version().map(|v| v.counter), Some(1));
        assert_eq!(slots[1], Slot::Unreadable { header: None });
        // A writer whose clock ran far behind dated it long ago: still there (memcached expires the
        // whole item by its own clock).
        assert_eq!(
            document.slots([main()].iter())[0]
                .version()
                .map(|v| v.counter),
            Some(1)
        );
        // A later write keeps the other records.
        let other = RecordKey::Connection("other".into());
        let text = document.with(
            &[write(other.clone(), Expect::Missing, value(1))],
            1_200,
            500,
        );
        let document = Document::parse(Some(text.as_bytes()));
        assert!(matches!(
            document.slots([main(), other].iter())[..],
            [Slot::Readable { .. }, Slot::Readable { .. }]
        ));
    }

    #[test]
    fn garbage_reads_as_unreadable_and_is_replaced() {
        for raw in [&b"not json"[..], b"[1,2]", b"\xff", b"\"text\""] {
            let document = Document::parse(Some(raw));
            assert_eq!(
                document.slots([main(), RecordKey::Fleet].iter()),
                vec![Slot::Unreadable { header: None }; 2]
            );
            assert!(Expect::Unreadable.matches(document.raw(&main())));
            let text = document.with(&[write(main(), Expect::Unreadable, value(1))], 0, 10);
            let replaced = Document::parse(Some(text.as_bytes()));
            assert_eq!(
                replaced.slots([RecordKey::Fleet].iter()),
                vec![Slot::Missing]
            );
        }
        let document = Document::parse(Some(
            br#"{"c:main": 7, "f": {"value": "dbfo3 1 ab x"}, "c:x": {"value": "dbfo3 1 ab x", "expires_at_ms": 10}}"#,
        ));
        assert_eq!(
            document.slots([main(), RecordKey::Fleet, RecordKey::Connection("x".into())].iter()),
            vec![
                Slot::Unreadable { header: None },
                Slot::Foreign { format: 3 },
                Slot::Foreign { format: 3 }
            ]
        );
        assert_eq!(
            Document::parse(None).slots([main()].iter()),
            vec![Slot::Missing]
        );
    }
}
