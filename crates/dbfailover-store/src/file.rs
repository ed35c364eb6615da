//! A state file shared by the processes of one host.
//!
//! The file is a JSON object `{"entries": {<key>: {"value": <text>, "boot": <boot id>, "expires":
//! <uptime ms>}}}` holding the records and the seed's keys under their key names ([`crate::keys`]).
//! Expiry is measured on the host's own clock since boot (`/proc/uptime`, with the boot's id), the
//! same for every process of the host whatever its wall clock says: an entry past its expiry, or
//! written before the last boot, reads as missing. A file that cannot be parsed, or a path that is not
//! a regular file (a link, a FIFO), reads as unreadable for every record, so a write expecting that
//! replaces it with a new file of its own records; a link is replaced, never followed. A device, a
//! FIFO, a socket or a directory at the path is never replaced (it is somebody else's): writes fail,
//! an outage, until an operator moves it.
//!
//! Every compare-and-set takes an exclusive lock on a lock file beside the state file (`PATH.lock`,
//! never replaced, never followed if it is a symbolic link), reads the state file, checks every
//! expectation, and replaces the file atomically with every record written, or leaves it alone (a
//! temporary file with a random name in the same folder, then a rename), so a reader never sees half a
//! file and no update is lost. Loads read without the lock. Files are created with mode 0600.

use crate::keys::{self, SeedKeys};
use dbfailover_core::record::{CasOutcome, RecordKey, Slot, Write};
use dbfailover_engine::{StateStore, StoreError, StoreFuture};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a record that cannot be read is taken to hold: a value with no header.
const UNREADABLE: &[u8] = b"";

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
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    value: String,
    /// The boot the expiry counts from.
    #[serde(default)]
    boot: String,
    /// Milliseconds since that boot after which the entry reads as missing.
    expires: u64,
}

/// The host's clock for expiry: the boot's id and the milliseconds since it, from the kernel, so that
/// no process's wall clock (or a clock-faking library) moves it. `None` where `/proc` does not tell.
fn host_clock() -> Option<(String, u64)> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    // Whole milliseconds since boot: far below u64's range for any real uptime.
    Some((boot.trim().to_owned(), (seconds * 1000.0) as u64))
}

impl Entry {
    fn live(&self, clock: Option<&(String, u64)>) -> bool {
        match clock {
            Some((boot, now)) => self.boot == *boot && self.expires > *now,
            // Without a host clock nothing expires.
            None => true,
        }
    }
}

/// The state file, as read.
enum State {
    /// The entries (none if the file is missing or empty).
    Contents(Contents),
    /// A file that is not a state file: every record is unreadable.
    Garbage,
}

impl State {
    /// The state file's bytes, read: empty is no entries, anything but a state file is garbage.
    fn parse(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return Self::Contents(Contents::default());
        }
        serde_json::from_slice(bytes).map_or(Self::Garbage, Self::Contents)
    }

    fn raw(&self, name: &str, clock: Option<&(String, u64)>) -> Option<&[u8]> {
        match self {
            Self::Garbage => Some(UNREADABLE),
            Self::Contents(contents) => contents
                .entries
                .get(name)
                .filter(|e| e.live(clock))
                .map(|e| e.value.as_bytes()),
        }
    }
}

impl FileStore {
    /// A store in the file at `path` (created on first write), keys under `prefix`, records living
    /// `ttl`, waiting at most `timeout` for the lock.
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

    /// Takes the lock, waiting at most the timeout. The lock file is opened without following a link
    /// and without blocking (a FIFO planted there never hangs a thread), and must be a regular file.
    fn lock(&self) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.lock_path)
            .map_err(|e| self.error("opening the lock file", e))?;
        let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        if !regular {
            return Err(self.error("opening the lock file", "not a regular file"));
        }
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

    /// Reads the state file. Anything but a regular file at the path (a link, a FIFO, a device)
    /// reads as garbage, never followed and never waited on; the next write replaces a link, and
    /// leaves anything else alone (an error).
    fn read(&self) -> Result<State, StoreError> {
        use std::io::Read as _;
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State::Contents(Contents::default()));
            }
            Err(e) => return Err(self.error("reading", e)),
            Ok(meta) if !meta.file_type().is_file() => return Ok(State::Garbage),
            Ok(_) => {}
        }
        let mut bytes = Vec::new();
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path);
        match opened {
            Ok(file) if file.metadata().map(|m| m.is_file()).unwrap_or(false) => {
                // At most 64 MiB: a state file is a few kilobytes; anything bigger is garbage.
                file.take(64 << 20)
                    .read_to_end(&mut bytes)
                    .map_err(|e| self.error("reading", e))?;
            }
            Ok(_) => return Ok(State::Garbage),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State::Contents(Contents::default()));
            }
            // Replaced by a link or a FIFO between the two looks.
            Err(_) => return Ok(State::Garbage),
        }
        Ok(State::parse(&bytes))
    }

    fn write(&self, contents: &Contents) -> Result<(), StoreError> {
        let dir = folder_of(&self.path);
        let bytes = encode(contents).map_err(|e| self.error("encoding", e))?;
        // Only a regular file (or a planted link, replaced, its target untouched) is ever replaced.
        if is_somebody_else_s(&self.path) {
            return Err(self.error(
                "replacing",
                std::io::Error::other("the path is not a regular file; it is left alone"),
            ));
        }
        // A new file with a random name, mode 0600, never an existing one.
        let mut temp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| self.error("writing", e))?;
        temp.write_all(&bytes)
            .and_then(|()| temp.as_file().sync_data())
            .map_err(|e| self.error("writing", e))?;
        temp.persist(&self.path)
            .map(drop)
            .map_err(|e| self.error("replacing", e.error))
    }

    fn slots<'k>(
        &self,
        state: &State,
        keys: impl Iterator<Item = &'k RecordKey>,
        clock: Option<&(String, u64)>,
    ) -> Vec<Slot> {
        keys.map(|key| Slot::decode(key, state.raw(&keys::record(&self.prefix, key), clock)))
            .collect()
    }

    fn load_blocking(&self, keys: &[RecordKey]) -> Result<Vec<Slot>, StoreError> {
        let state = self.read()?;
        Ok(self.slots(&state, keys.iter(), host_clock().as_ref()))
    }

    fn cas_blocking(&self, writes: &[Write]) -> Result<CasOutcome, StoreError> {
        let _lock = self.lock()?;
        let state = self.read()?;
        let clock = host_clock();
        let matched = writes.iter().all(|w| {
            w.expect
                .matches(state.raw(&keys::record(&self.prefix, &w.key), clock.as_ref()))
        });
        if !matched {
            return Ok(CasOutcome::Conflict(self.slots(
                &state,
                writes.iter().map(|w| &w.key),
                clock.as_ref(),
            )));
        }
        let contents = self.written(state, writes, clock.as_ref());
        self.write(&contents)?;
        Ok(CasOutcome::Written)
    }

    /// The file's contents after `writes` over `state` at `clock`: expired entries dropped, a garbage
    /// file replaced by the written records alone.
    fn written(&self, state: State, writes: &[Write], clock: Option<&(String, u64)>) -> Contents {
        let mut contents = match state {
            State::Contents(contents) => contents,
            State::Garbage => Contents::default(),
        };
        contents.entries.retain(|_, e| e.live(clock));
        let (boot, now) = clock.cloned().unwrap_or_default();
        let expires = now.saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let mut put = |name: String, value: String| {
            contents.entries.insert(
                name,
                Entry {
                    value,
                    boot: boot.clone(),
                    expires,
                },
            );
        };
        for write in writes {
            put(keys::record(&self.prefix, &write.key), write.value.clone());
            if let (Some(seed_keys), Some((status, failures))) =
                (SeedKeys::of(&self.prefix, write), write.seed)
            {
                put(seed_keys.status, status.as_str().to_owned());
                put(seed_keys.failure_count, failures.to_string());
            }
        }
        contents
    }
}

/// The state file's text.
fn encode(contents: &Contents) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec_pretty(contents)
}

/// The folder the state file at `path` lives in (`.` for a bare file name).
pub(crate) fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether what stands at `path` is neither a regular file nor a link (a device, a FIFO, a socket, a
/// directory): somebody else's (`/dev/null`), never replaced. Nothing at the path is not.
pub(crate) fn is_somebody_else_s(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| {
        let kind = meta.file_type();
        !kind.is_file() && !kind.is_symlink()
    })
}

/// For the fuzz targets ([`crate::fuzzing`]): what the state file `bytes` holds for `keys` under
/// `prefix`, without a host clock (nothing expires).
pub(crate) fn decode_for_fuzzing(bytes: &[u8], prefix: &str, keys: &[RecordKey]) -> Vec<Slot> {
    let store = FileStore::new("unused", prefix, Duration::ZERO, Duration::ZERO);
    store.slots(&State::parse(bytes), keys.iter(), None)
}

/// For the fuzz targets ([`crate::fuzzing`]): the state file that replaces `bytes` after `writes`,
/// without a host clock; `None` if it cannot be encoded.
pub(crate) fn rewrite_for_fuzzing(bytes: &[u8], prefix: &str, writes: &[Write]) -> Option<Vec<u8>> {
    let store = FileStore::new("unused", prefix, Duration::from_secs(1), Duration::ZERO);
    encode(&store.written(State::parse(bytes), writes, None)).ok()
}

impl StateStore for FileStore {
    fn load<'a>(&'a self, keys: &'a [RecordKey]) -> StoreFuture<'a, Vec<Slot>> {
        let store = self.clone();
        let keys = keys.to_vec();
        Box::pin(crate::blocking(self.describe(), move || {
            store.load_blocking(&keys)
        }))
    }

    fn compare_and_set<'a>(&'a self, writes: &'a [Write]) -> StoreFuture<'a, CasOutcome> {
        let store = self.clone();
        let writes = writes.to_vec();
        Box::pin(crate::blocking(self.describe(), move || {
            store.cas_blocking(&writes)
        }))
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbfailover_core::ConnectionStatus;
    use dbfailover_core::record::{ConnectionEntry, Expect, FleetRecord, Record, Version};
    use std::os::unix::fs::PermissionsExt;

    fn main() -> RecordKey {
        RecordKey::Connection("main".into())
    }

    fn version(counter: u64) -> Version {
        Version {
            counter,
            write_id: counter * 11,
        }
    }

    fn conn_write(expect: Expect, counter: u64) -> Write {
        Write {
            key: main(),
            expect,
            value: Record::Connection(ConnectionEntry::default()).encode(version(counter)),
            seed: Some((ConnectionStatus::Down, 3)),
        }
    }

    fn fleet_write(expect: Expect, counter: u64) -> Write {
        Write {
            key: RecordKey::Fleet,
            expect,
            value: Record::Fleet(FleetRecord::default()).encode(version(counter)),
            seed: None,
        }
    }

    fn store(dir: &tempfile::TempDir, ttl: Duration) -> FileStore {
        FileStore::new(
            dir.path().join("state.json"),
            "p",
            ttl,
            Duration::from_secs(1),
        )
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    async fn load(store: &FileStore, keys: &[RecordKey]) -> Vec<Slot> {
        store.load(keys).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn cas(store: &FileStore, writes: &[Write]) -> CasOutcome {
        store
            .compare_and_set(writes)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn records_round_trip_with_mode_0600_and_the_seeds_keys() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_secs(60));
        let keys = [main(), RecordKey::Fleet];
        assert_eq!(
            load(&store, &keys).await,
            vec![Slot::Missing, Slot::Missing]
        );
        let first = [
            conn_write(Expect::Missing, 1),
            fleet_write(Expect::Missing, 1),
        ];
        assert_eq!(cas(&store, &first).await, CasOutcome::Written);
        let slots = load(&store, &keys).await;
        assert_eq!(
            slots.iter().map(Slot::version).collect::<Vec<_>>(),
            vec![Some(version(1)), Some(version(1))]
        );
        for file in ["state.json", "state.json.lock"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600, "{file}");
        }
        let text = std::fs::read_to_string(dir.path().join("state.json")).unwrap_or_default();
        assert!(
            text.contains("p_conn_state_main")
                && text.contains("p_fleet")
                && text.contains("p_conn_status_main")
                && text.contains("p_conn_failure_count_main")
                && text.contains("\"DOWN\""),
            "{text}"
        );
        // Only the state file and its lock are left: no temporary file.
        let names = std::fs::read_dir(dir.path())
            .map(Iterator::count)
            .unwrap_or(0);
        assert_eq!(names, 2);
    }

    #[tokio::test]
    async fn a_socket_or_fifo_at_the_path_is_never_replaced() {
        // A device would do the same (`/dev/null`): a socket is one that a test may make.
        let dir = temp_dir();
        let path = dir.path().join("state.json");
        let _socket =
            std::os::unix::net::UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        let store = store(&dir, Duration::from_secs(60));
        // It reads as garbage; the write that replaces garbage is refused, the socket left alone.
        let outcome = store
            .compare_and_set(&[fleet_write(Expect::Unreadable, 1)])
            .await;
        assert!(outcome.is_err(), "{outcome:?}");
        let kind = std::fs::symlink_metadata(&path).map(|m| m.file_type());
        assert!(
            kind.is_ok_and(|k| std::os::unix::fs::FileTypeExt::is_socket(&k)),
            "the socket is still there"
        );
        let mut settings = dbfailover_core::config::StateSettings::default();
        settings.store = dbfailover_core::config::StoreKind::File;
        settings.path = Some(path.clone());
        let refused = crate::from_settings(&settings).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("not a state file")),
            "{refused:?}"
        );
        settings.path = Some(dir.path().join("no-such-folder").join("state.json"));
        let refused = crate::from_settings(&settings).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("does not exist")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_conflict_writes_nothing_and_answers_what_it_found() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_secs(60));
        assert_eq!(
            cas(&store, &[conn_write(Expect::Missing, 1)]).await,
            CasOutcome::Written
        );
        // The connection is not as expected: the fleet record is not written either.
        let stale = [
            fleet_write(Expect::Missing, 1),
            conn_write(Expect::Missing, 2),
        ];
        let CasOutcome::Conflict(found) = cas(&store, &stale).await else {
            panic!("a stale write was accepted");
        };
        assert_eq!(found[0], Slot::Missing);
        assert_eq!(found[1].version(), Some(version(1)));
        assert_eq!(load(&store, &[RecordKey::Fleet]).await, vec![Slot::Missing]);
        let next = [
            conn_write(Expect::after(version(1)), 2),
            fleet_write(Expect::Missing, 1),
        ];
        assert_eq!(cas(&store, &next).await, CasOutcome::Written);
        assert_eq!(load(&store, &[main()]).await[0].version(), Some(version(2)));
    }

    #[tokio::test]
    async fn a_garbage_file_is_unreadable_and_replaced_by_the_next_write() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_secs(60));
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap_or_default();
        let keys = [main(), RecordKey::Fleet];
        assert_eq!(
            load(&store, &keys).await,
            vec![Slot::Unreadable { header: None }; 2]
        );
        assert!(matches!(
            cas(&store, &[conn_write(Expect::Missing, 1)]).await,
            CasOutcome::Conflict(_)
        ));
        assert_eq!(
            cas(&store, &[conn_write(Expect::Unreadable, 1)]).await,
            CasOutcome::Written
        );
        let slots = load(&store, &keys).await;
        assert_eq!(slots[0].version(), Some(version(1)));
        assert_eq!(slots[1], Slot::Missing);
    }

    #[tokio::test]
    async fn a_foreign_record_is_never_overwritten() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_secs(60));
        let boot = host_clock().map(|(boot, _)| boot).unwrap_or_default();
        let text = serde_json::json!({"entries": {"p_conn_state_main": {
            "value": "dbfo3 1 ab x", "boot": boot, "expires": u64::MAX}}});
        std::fs::write(dir.path().join("state.json"), text.to_string()).unwrap_or_default();
        for expect in [
            Expect::Missing,
            Expect::Unreadable,
            Expect::Header("ab".into()),
        ] {
            assert_eq!(
                cas(&store, &[conn_write(expect, 1)]).await,
                CasOutcome::Conflict(vec![Slot::Foreign { format: 3 }])
            );
        }
    }

    fn mkfifo(path: &std::path::Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(made, "mkfifo {}", path.display());
    }

    #[tokio::test]
    async fn a_fifo_planted_at_the_lock_path_is_an_error_at_once_never_a_hung_thread() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_secs(60));
        mkfifo(&dir.path().join("state.json.lock"));
        let started = std::time::Instant::now();
        let outcome = store
            .compare_and_set(&[conn_write(Expect::Missing, 1)])
            .await;
        assert!(outcome.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_fifo_is_never_waited_on_nor_replaced_and_a_link_is_replaced_not_followed() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_secs(60));
        let path = dir.path().join("state.json");
        mkfifo(&path);
        assert_eq!(
            load(&store, &[main()]).await,
            vec![Slot::Unreadable { header: None }]
        );
        // Not ours to replace (a device would be the same): the write is an error, the FIFO stays.
        assert!(
            store
                .compare_and_set(&[conn_write(Expect::Unreadable, 1)])
                .await
                .is_err()
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        );
        // A link to another file: never written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap_or_default();
        std::fs::remove_file(&path).unwrap_or_default();
        std::os::unix::fs::symlink(&victim, &path).unwrap_or_default();
        assert_eq!(
            load(&store, &[main()]).await,
            vec![Slot::Unreadable { header: None }]
        );
        assert_eq!(
            cas(&store, &[conn_write(Expect::Unreadable, 1)]).await,
            CasOutcome::Written
        );
        assert_eq!(std::fs::read(&victim).unwrap_or_default(), b"keep me");
    }

    #[tokio::test]
    async fn expired_records_read_as_missing() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_millis(50));
        assert_eq!(
            cas(&store, &[conn_write(Expect::Missing, 1)]).await,
            CasOutcome::Written
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(load(&store, &[main()]).await, vec![Slot::Missing]);
        assert_eq!(
            cas(&store, &[conn_write(Expect::Missing, 1)]).await,
            CasOutcome::Written
        );
    }

    #[tokio::test]
    async fn a_symbolic_link_as_lock_file_is_refused() {
        let dir = temp_dir();
        let store = store(&dir, Duration::from_secs(60));
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("state.json.lock"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            store
                .compare_and_set(&[conn_write(Expect::Missing, 1)])
                .await
                .is_err()
        );
        assert!(!target.exists());
    }
}
