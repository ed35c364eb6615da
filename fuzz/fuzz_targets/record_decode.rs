//! The record format (`Slot::decode`, `Record::encode`) and the topology fields of the fleet record
//! (`topology::decode_record`, `encode_record`): no input panics; what decodes re-encodes to text
//! that decodes the same; a compare-and-set built from what was read matches the bytes it was read
//! from; the topology fields round-trip inside a fleet record.
#![no_main]

use dbfailover_core::record::{Expect, FleetRecord, Record, RecordKey, Slot, Version};
use dbfailover_core::topology::{decode_record, encode_record};
use libfuzzer_sys::fuzz_target;

fn check_slot(key: &RecordKey, raw: &[u8]) -> Slot {
    let slot = Slot::decode(key, Some(raw));
    // What a writer expects after reading `raw` matches `raw` (else it could never replace it),
    // and a foreign record is never replaced.
    match Expect::replacing(&slot) {
        Some(expect) => assert!(expect.matches(Some(raw)), "{slot:?} / {expect:?}"),
        None => assert!(matches!(slot, Slot::Foreign { .. })),
    }
    assert!(!Expect::Missing.matches(Some(raw)));
    if let Slot::Readable { version, record } = &slot {
        assert_eq!(slot.version(), Some(*version));
        let text = record.encode(*version);
        assert_eq!(
            Slot::decode(key, Some(text.as_bytes())),
            slot,
            "{raw:?} re-encoded as {text:?}"
        );
    }
    slot
}

fn check_topology(fields: &[(String, String)]) {
    let Some(topology) = decode_record(fields) else {
        return;
    };
    let encoded = encode_record(&topology);
    assert_eq!(
        decode_record(&encoded).as_ref(),
        Some(&topology),
        "{fields:?}"
    );
    // Inside the fleet record, as stores keep it.
    let fleet = Record::Fleet(FleetRecord {
        extra: encoded,
        ..FleetRecord::default()
    });
    let version = Version {
        counter: 1,
        write_id: 7,
    };
    let text = fleet.encode(version);
    match Slot::decode(&RecordKey::Fleet, Some(text.as_bytes())) {
        Slot::Readable {
            record: Record::Fleet(read),
            ..
        } => assert_eq!(
            decode_record(&read.extra).as_ref(),
            Some(&topology),
            "{text:?}"
        ),
        other => panic!("{text:?} reads as {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let connection = RecordKey::Connection("main".into());
    check_slot(&connection, data);
    if let Slot::Readable {
        record: Record::Fleet(fleet),
        ..
    } = check_slot(&RecordKey::Fleet, data)
    {
        check_topology(&fleet.extra);
    }
    // The topology fields alone: `key=value` tokens separated by spaces.
    let text = String::from_utf8_lossy(data);
    let fields: Vec<(String, String)> = text
        .split(' ')
        .filter_map(|token| token.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    check_topology(&fields);
});
