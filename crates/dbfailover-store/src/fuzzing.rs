//! Entry points for the fuzz targets of `fuzz/` only: the stores' private decoders, reached without
//! a server or a file. Not part of the API (hidden from the documentation); may change at any time.

#[cfg(any(feature = "file", feature = "memcached"))]
use dbfailover_core::record::{RecordKey, Slot, Write};

/// What the state file `bytes` holds for `keys` under `prefix`, as the file store reads it (without
/// a host clock: nothing expires).
#[cfg(feature = "file")]
pub fn file_slots(bytes: &[u8], prefix: &str, keys: &[RecordKey]) -> Vec<Slot> {
    crate::file::decode_for_fuzzing(bytes, prefix, keys)
}

/// The state file the file store writes in place of `bytes` after `writes` (without a host clock);
/// `None` if it cannot be encoded.
#[cfg(feature = "file")]
pub fn file_rewrite(bytes: &[u8], prefix: &str, writes: &[Write]) -> Option<Vec<u8>> {
    crate::file::rewrite_for_fuzzing(bytes, prefix, writes)
}

/// What the memcached document `raw` (`None`: no item) holds for `keys`, as the memcached store
/// reads it.
#[cfg(feature = "memcached")]
pub fn memcached_slots(raw: Option<&[u8]>, keys: &[RecordKey]) -> Vec<Slot> {
    crate::memcached::decode_for_fuzzing(raw, keys)
}

/// The document the memcached store writes in place of `raw` after `writes` at `now_ms`, records
/// living `ttl_ms`.
#[cfg(feature = "memcached")]
pub fn memcached_rewrite(raw: Option<&[u8]>, writes: &[Write], now_ms: i64, ttl_ms: i64) -> String {
    crate::memcached::rewrite_for_fuzzing(raw, writes, now_ms, ttl_ms)
}
