//! Reading and planting shared records the way a store keeps them, for tests that look inside.

use dbfailover::core::record::{ConnectionEntry, Expect, Record, RecordKey, Slot, Version, Write};
use dbfailover::core::{ConnectionStatus, Counts};
use dbfailover::engine::StateStore;

/// The seed's view of a connection's shared record (status and failure count); `None` when the store
/// holds no readable record (missing, expired, garbage) or cannot be read.
pub async fn counts(store: &dyn StateStore, connection: &str) -> Option<(ConnectionStatus, u32)> {
    let key = RecordKey::Connection(connection.into());
    let slots = store.load(std::slice::from_ref(&key)).await.ok()?;
    match slots.into_iter().next()? {
        Slot::Readable {
            record: Record::Connection(entry),
            ..
        } => Some((entry.counts.status, entry.counts.failure_count)),
        _ => None,
    }
}

/// A write of a fresh DOWN record for `connection` (expecting none there).
pub fn down_record(connection: &str) -> Write {
    let counts = Counts {
        status: ConnectionStatus::Down,
        failure_count: 3,
        success_count: 0,
    };
    Write {
        key: RecordKey::Connection(connection.into()),
        expect: Expect::Missing,
        value: Record::Connection(ConnectionEntry {
            counts,
            votes: Vec::new(),
            forced: false,
            checked_at_ms: 0,
        })
        .encode(Version {
            counter: 1,
            write_id: 0x5eed,
        }),
        seed: Some((counts.status, counts.failure_count)),
    }
}
