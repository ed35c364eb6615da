//! The Redis change notices (`keys::parse_notice`, `keys::notice_payload`): no payload panics;
//! a payload that parses, rebuilt from its triples, parses the same.
#![no_main]

use dbfailover_core::record::{Expect, Notice, RecordKey, Slot, Write};
use dbfailover_store::keys::{notice_payload, parse_notice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(notice) = parse_notice(data) else {
        return;
    };
    let Notice::Written(records) = &notice else {
        panic!("a payload parsed as {notice:?}");
    };
    let triples: Vec<(String, String, String)> = match serde_json::from_slice(data) {
        Ok(triples) => triples,
        Err(e) => panic!("{data:?} parsed as a notice but not as triples: {e}"),
    };
    assert_eq!(records.len(), triples.len());
    let writes: Vec<Write> = triples
        .into_iter()
        .map(|(kind, name, value)| Write {
            key: if kind == "f" {
                RecordKey::Fleet
            } else {
                RecordKey::Connection(name.into())
            },
            expect: Expect::Missing,
            value,
            seed: None,
        })
        .collect();
    for ((key, slot), write) in records.iter().zip(&writes) {
        assert_eq!(key, &write.key);
        assert_eq!(slot, &Slot::decode(key, Some(write.value.as_bytes())));
    }
    let payload = notice_payload(&writes);
    assert_eq!(
        parse_notice(payload.as_bytes()).as_ref(),
        Some(&notice),
        "{payload}"
    );
});
