//! The memcached store's shared document and the file store's state file, as each store reads and
//! rewrites them (`dbfailover_store::fuzzing`): no input panics; after a write, each record written
//! reads back as its value decodes, and every other record reads as before (or as missing, when the
//! document was garbage and was replaced).
#![no_main]

use dbfailover_core::ConnectionStatus;
use dbfailover_core::record::{ConnectionEntry, Expect, Record, RecordKey, Slot, Version, Write};
use dbfailover_store::fuzzing::{file_rewrite, file_slots, memcached_rewrite, memcached_slots};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PREFIX: &str = "p";

/// The record keys to read: the fleet, `main`, and the connections the document names.
fn keys(names: impl Iterator<Item = String>) -> Vec<RecordKey> {
    let mut keys = vec![RecordKey::Fleet, RecordKey::Connection("main".into())];
    for name in names.take(4) {
        let key = RecordKey::Connection(name.into());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The writes: `main`'s record with the input as its value, and the fleet record, valid.
fn writes(data: &[u8]) -> Vec<Write> {
    let version = Version {
        counter: 2,
        write_id: 0xabc,
    };
    vec![
        Write {
            key: RecordKey::Connection("main".into()),
            expect: Expect::Missing,
            value: String::from_utf8_lossy(data).into_owned(),
            seed: Some((ConnectionStatus::Down, 3)),
        },
        Write {
            key: RecordKey::Fleet,
            expect: Expect::Missing,
            value: Record::Connection(ConnectionEntry::default()).encode(version),
            seed: None,
        },
    ]
}

fn check_after(keys: &[RecordKey], before: &[Slot], after: &[Slot], writes: &[Write], what: &str) {
    for ((key, before), after) in keys.iter().zip(before).zip(after) {
        match writes.iter().find(|w| &w.key == key) {
            Some(write) => assert_eq!(
                after,
                &Slot::decode(key, Some(write.value.as_bytes())),
                "{what}: {key} written"
            ),
            None => assert!(
                after == before
                    || (before == &Slot::Unreadable { header: None } && after == &Slot::Missing),
                "{what}: {key} was {before:?}, now {after:?}"
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let json: Option<Value> = serde_json::from_slice(data).ok();
    let writes = writes(data);

    // Memcached: `{"c:<name>": {"value": ..., "expires_at_ms": ...}, "f": {...}}`.
    let names = json
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|o| o.keys())
        .filter_map(|k| k.strip_prefix("c:").map(str::to_owned));
    let keys_m = keys(names);
    assert!(
        memcached_slots(None, &keys_m)
            .iter()
            .all(|s| *s == Slot::Missing)
    );
    let before = memcached_slots(Some(data), &keys_m);
    let document = memcached_rewrite(Some(data), &writes, 1_000, 60_000);
    let after = memcached_slots(Some(document.as_bytes()), &keys_m);
    check_after(&keys_m, &before, &after, &writes, "memcached");

    // The state file: `{"entries": {"p_conn_state_<name>": {"value": ..., ...}, ...}}`.
    let names = json
        .as_ref()
        .and_then(|v| v.get("entries"))
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|o| o.keys())
        .filter_map(|k| k.strip_prefix("p_conn_state_").map(str::to_owned));
    let keys_f = keys(names);
    let before = file_slots(data, PREFIX, &keys_f);
    let Some(file) = file_rewrite(data, PREFIX, &writes) else {
        panic!("the state file after a write cannot be encoded");
    };
    let after = file_slots(&file, PREFIX, &keys_f);
    check_after(&keys_f, &before, &after, &writes, "file");
});
