//! A state file shared by the processes of one host.
//!
//! Every update takes an exclusive lock on a lock file beside the state file (`PATH.lock`, never
//! replaced), reads the state file, and replaces it atomically (a temporary file in the same folder,
//! then a rename), so a reader never sees half a file and no update is lost. Files are created with
//! mode 0600. Entries carry their expiry; an expired entry reads as missing.

use crate::keys::Keys;
use dbfailover_engine::{StateStore, StoreError, StoreFuture, StoredState, Versioned};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file store.
#[derive(Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    version_seq: u64,
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    value: String,
    version: u64,
    expires_at_ms: i64,
}

impl FileStore {
    /// A store in the file at `path` (created on first write), keys under `prefix`, entries living `ttl`,
    /// waiting at most `timeout` for the lock.
    pub fn new(path: impl Into<PathBuf>, prefix: &str, ttl: Duration, timeout: Duration) -> Self {
        let path = path.into();
        let mut lock_name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        Self {
            path,
            lock_path,
            prefix: prefix.to_owned(),
            ttl,
            timeout,
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(format!("file {}: {what}: {e}", self.path.display()))
    }

    /// Takes the lock, waiting at most the timeout.
    fn lock(&self) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock_path)
            .map_err(|e| self.error("opening the lock file", e))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(self.error(
                        "lock",
                        format!("still held by another process after {:?}", self.timeout),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(self.error("lock", e)),
            }
        }
    }

    fn read(&self) -> Result<Contents, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) if bytes.is_empty() => Ok(Contents::default()),
            // An unreadable file reads as empty (UNKNOWN / 0, as in the seed); the next write replaces it.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents::default()),
            Err(e) => Err(self.error("reading", e)),
        }
    }

    fn write(&self, contents: &Contents) -> Result<(), StoreError> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut temp_name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        temp_name.push(format!(".tmp{}", std::process::id()));
        let temp = dir.join(temp_name);
        let bytes = serde_json::to_vec_pretty(contents).map_err(|e| self.error("encoding", e))?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.error("writing", e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| self.error("writing", e))?;
        std::fs::rename(&temp, &self.path).map_err(|e| self.error("replacing", e))
    }

    fn load_blocking(&self, connection: &str) -> Result<Option<Versioned>, StoreError> {
        let _lock = self.lock()?;
        let contents = self.read()?;
        let now = chrono::Utc::now().timestamp_millis();
        let key = Keys::new(&self.prefix, connection).state;
        Ok(contents
            .entries
            .get(&key)
            .filter(|e| e.expires_at_ms > now)
            .and_then(|e| {
                StoredState::decode(&e.value).map(|state| Versioned {
                    state,
                    version: e.version,
                })
            }))
    }

    fn cas_blocking(
        &self,
        connection: &str,
        expected: Option<u64>,
        state: StoredState,
    ) -> Result<Option<u64>, StoreError> {
        let _lock = self.lock()?;
        let mut contents = self.read()?;
        let now = chrono::Utc::now().timestamp_millis();
        contents.entries.retain(|_, e| e.expires_at_ms > now);
        let keys = Keys::new(&self.prefix, connection);
        let current = contents.entries.get(&keys.state).map(|e| e.version);
        if current != expected {
            return Ok(None);
        }
        contents.version_seq += 1;
        let version = contents.version_seq;
        let expires_at_ms = now + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let entry = |value: String| Entry {
            value,
            version,
            expires_at_ms,
        };
        contents.entries.insert(keys.state, entry(state.encode()));
        contents
            .entries
            .insert(keys.status, entry(state.counts.status.as_str().to_owned()));
        contents.entries.insert(
            keys.failure_count,
            entry(state.counts.failure_count.to_string()),
        );
        self.write(&contents)?;
        Ok(Some(version))
    }
}

impl StateStore for FileStore {
    fn load<'a>(&'a self, connection: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let store = self.clone();
        let connection = connection.to_owned();
        Box::pin(crate::blocking(self.describe(), move || {
            store.load_blocking(&connection)
        }))
    }

    fn compare_and_set<'a>(
        &'a self,
        connection: &'a str,
        expected: Option<u64>,
        state: StoredState,
    ) -> StoreFuture<'a, Option<u64>> {
        let store = self.clone();
        let connection = connection.to_owned();
        Box::pin(crate::blocking(self.describe(), move || {
            store.cas_blocking(&connection, expected, state)
        }))
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbfailover_core::{ConnectionStatus, Counts};
    use std::os::unix::fs::PermissionsExt;

    fn down() -> StoredState {
        StoredState::now(Counts {
            status: ConnectionStatus::Down,
            failure_count: 3,
            success_count: 0,
        })
    }

    #[tokio::test]
    async fn compare_and_set_round_trip_with_mode_0600_and_the_seeds_keys() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("state.json");
        let store = FileStore::new(&path, "p", Duration::from_secs(60), Duration::from_secs(1));
        assert_eq!(store.load("main").await.ok(), Some(None));
        let written = down();
        let v1 = store
            .compare_and_set("main", None, written.clone())
            .await
            .ok()
            .flatten();
        assert!(v1.is_some());
        assert_eq!(
            store.compare_and_set("main", None, down()).await.ok(),
            Some(None),
            "stale"
        );
        let loaded = store.load("main").await.ok().flatten();
        assert_eq!(
            loaded.map(|v| (v.state, Some(v.version))),
            Some((written, v1))
        );
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.contains("p_conn_status_main") && text.contains("p_conn_failure_count_main"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn expired_entries_read_as_missing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FileStore::new(
            dir.path().join("s"),
            "p",
            Duration::from_millis(50),
            Duration::from_secs(1),
        );
        store.compare_and_set("main", None, down()).await.ok();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(store.load("main").await.ok(), Some(None));
    }
}
