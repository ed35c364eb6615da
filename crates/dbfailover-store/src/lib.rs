#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! ## Layout
//! - [`keys`]: the key layout: one key per record (`{prefix}_conn_state_{name}`, `{prefix}_fleet`),
//!   the seed's `{prefix}_conn_status_{name}` and `{prefix}_conn_failure_count_{name}`, the Redis
//!   channel `{prefix}_changes` and the text of its notices, memcached's `{prefix}_shared` document.
//! - `file` (feature `file`): [`FileStore`], a state file for the processes of one host: a lock file
//!   around read, compare and atomic replace.
//! - `redis` (feature `redis`): [`RedisStore`], one `MGET` per load, one Lua script per
//!   compare-and-set, notices by pub/sub, over one multiplexed connection; on one node, on the
//!   primary Redis Sentinel names, or on a Redis Cluster (every key under one hash tag).
//! - `memcached` (feature `memcached`): [`MemcachedStore`], every record in one document changed by
//!   `gets` / `cas`.
//! - this file: [`from_settings`], which builds the store the `[state]` settings name.
//!
//! Every store implements the engine's `StateStore` as its `MemoryStore` does: records in the text
//! form of `dbfailover_core::record`, changed by compare-and-set of one or several records at once,
//! all or none, each checked with `Expect::matches`; a write also mirrors each connection's status and
//! failure count under the seed's keys. Garbage in a store reads as an unreadable record (replaced by
//! the next write), never as an error (see `docs/state.md`).

pub mod keys;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "file")]
mod file;
#[cfg(feature = "memcached")]
mod memcached;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "file")]
pub use file::FileStore;
#[cfg(feature = "memcached")]
pub use memcached::MemcachedStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;

use dbfailover_core::{StateSettings, StoreKind};
use dbfailover_engine::{MemoryStore, StateStore};
use std::sync::Arc;
use thiserror::Error;

/// A store that cannot be set up from its settings.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreSetupError {
    /// This build has no support for the configured store.
    #[error(
        "state store `{store}` is not available in this build (enable the `{feature}` feature)"
    )]
    NotCompiled {
        /// The configured store.
        store: StoreKind,
        /// The cargo feature that brings it.
        feature: &'static str,
    },
    /// The store's settings are unusable.
    #[error("invalid setting `{key}` = `{value}`: {reason}")]
    InvalidSetting {
        /// The setting's key.
        key: &'static str,
        /// Its value, password masked.
        value: String,
        /// Why.
        reason: String,
    },
}

/// Runs a store client's blocking call on tokio's blocking threads (the engine bounds the wait).
#[cfg(any(feature = "file", feature = "memcached"))]
async fn blocking<T: Send + 'static>(
    store: String,
    call: impl FnOnce() -> Result<T, dbfailover_engine::StoreError> + Send + 'static,
) -> Result<T, dbfailover_engine::StoreError> {
    tokio::task::spawn_blocking(call).await.map_err(|e| {
        dbfailover_engine::StoreError::new(format!("{store}: blocking task failed: {e}"))
    })?
}

#[cfg(any(feature = "file", feature = "redis", feature = "memcached"))]
fn missing(key: &'static str, store: StoreKind) -> StoreSetupError {
    StoreSetupError::InvalidSetting {
        key,
        value: String::new(),
        reason: format!("the {store} store needs it"),
    }
}

/// Builds the store `settings` name. Connecting is lazy: an unreachable store is not an error here
/// (the engine goes on from its local state and reports `CacheUnavailable`).
pub fn from_settings(settings: &StateSettings) -> Result<Arc<dyn StateStore>, StoreSetupError> {
    match settings.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new(settings.ttl))),
        #[cfg(feature = "file")]
        StoreKind::File => {
            let path = settings
                .path
                .as_ref()
                .ok_or_else(|| missing("state.path", StoreKind::File))?;
            // A directory (or a path ending in `/`), something that is not a file, or a missing
            // folder can never hold the state file; other problems (no permission, a full disk) may
            // be fixed while the engine runs, which goes on from its local state and reports the
            // store unavailable meanwhile.
            if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
                return Err(StoreSetupError::InvalidSetting {
                    key: "state.path",
                    value: path.display().to_string(),
                    reason: "is a directory; name the state file in it".to_owned(),
                });
            }
            if file::is_somebody_else_s(path) {
                return Err(StoreSetupError::InvalidSetting {
                    key: "state.path",
                    value: path.display().to_string(),
                    reason:
                        "is a device, a FIFO or a socket, not a state file; it is never replaced"
                            .to_owned(),
                });
            }
            let folder = file::folder_of(path);
            if !folder.is_dir() {
                return Err(StoreSetupError::InvalidSetting {
                    key: "state.path",
                    value: path.display().to_string(),
                    reason: format!("its folder {} does not exist", folder.display()),
                });
            }
            Ok(Arc::new(FileStore::new(
                path,
                &settings.prefix,
                settings.ttl,
                settings.timeout,
            )))
        }
        #[cfg(feature = "redis")]
        StoreKind::Redis => {
            let (prefix, ttl, timeout) = (&settings.prefix, settings.ttl, settings.timeout);
            let exposed = |nodes: &dbfailover_core::RedisNodes| -> Vec<String> {
                nodes.urls().iter().map(|u| u.expose().to_owned()).collect()
            };
            let sentinels = exposed(&settings.sentinels);
            let cluster = exposed(&settings.cluster);
            let store = if !cluster.is_empty() {
                let nodes: Vec<&str> = cluster.iter().map(String::as_str).collect();
                RedisStore::cluster(&nodes, prefix, ttl, timeout)?
            } else if !sentinels.is_empty() {
                let master_name = settings
                    .master_name
                    .as_deref()
                    .ok_or_else(|| missing("state.master_name", StoreKind::Redis))?;
                let nodes: Vec<&str> = sentinels.iter().map(String::as_str).collect();
                RedisStore::sentinel(
                    &nodes,
                    master_name,
                    settings.node_auth.as_ref().map(|u| u.expose()),
                    prefix,
                    ttl,
                    timeout,
                )?
            } else {
                let url = settings
                    .url
                    .as_ref()
                    .ok_or_else(|| missing("state.url", StoreKind::Redis))?;
                RedisStore::new(url.expose(), prefix, ttl, timeout)?
            };
            Ok(Arc::new(store))
        }
        #[cfg(feature = "memcached")]
        StoreKind::Memcached => {
            let url = settings
                .url
                .as_ref()
                .ok_or_else(|| missing("state.url", StoreKind::Memcached))?;
            Ok(Arc::new(MemcachedStore::new(
                url.expose(),
                &settings.prefix,
                settings.ttl,
                settings.timeout,
            )?))
        }
        #[allow(unreachable_patterns)]
        other => Err(StoreSetupError::NotCompiled {
            store: other,
            feature: match other {
                StoreKind::File => "file",
                StoreKind::Redis => "redis",
                _ => "memcached",
            },
        }),
    }
}
