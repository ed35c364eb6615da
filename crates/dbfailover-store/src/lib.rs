#![doc = include_str!("../README.md")]
//!
//! ## Layout
//! - this file: [`from_settings`], which builds the store the `[state]` settings name.

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

/// Builds the store `settings` name. Connecting is lazy: an unreachable store is not an error here
/// (the engine goes on from its local state and reports `CacheUnavailable`).
pub fn from_settings(settings: &StateSettings) -> Result<Arc<dyn StateStore>, StoreSetupError> {
    match settings.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new(settings.ttl))),
        StoreKind::File => Err(StoreSetupError::NotCompiled {
            store: StoreKind::File,
            feature: "file",
        }),
        StoreKind::Redis => Err(StoreSetupError::NotCompiled {
            store: StoreKind::Redis,
            feature: "redis",
        }),
        StoreKind::Memcached => Err(StoreSetupError::NotCompiled {
            store: StoreKind::Memcached,
            feature: "memcached",
        }),
    }
}
