//! The text form of the shared records as a store keeps it: what is read back, what is refused as
//! unreadable (and replaced), what is another release's (and never replaced), and what a
//! compare-and-set expects. Also the topology fields of the fleet record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_core::record::{
    ConnectionEntry, Expect, FleetRecord, MAX_COUNTER, MAX_VOTES, Record, RecordKey, Slot, Version,
    Vote, write_id_text,
};
use dbfailover_core::route::Preference;
use dbfailover_core::topology::{TopologyRecord, decode_record, encode_record};
use dbfailover_core::{ConnectionStatus, Counts};
use std::collections::BTreeMap;

fn conn() -> RecordKey {
    RecordKey::Connection("main".into())
}

fn decode(key: &RecordKey, raw: &str) -> Slot {
    Slot::decode(key, Some(raw.as_bytes()))
}

const V: Version = Version {
    counter: 7,
    write_id: 0xab,
};

fn forced_entry() -> Record {
    Record::Connection(ConnectionEntry {
        counts: Counts {
            status: ConnectionStatus::Healthy,
            failure_count: 0,
            success_count: 5,
        },
        votes: vec![Vote {
            instance: 0x1f,
            ok: true,
            seq: 3,
        }],
        forced: true,
        checked_at_ms: -1,
    })
}

#[test]
fn keys_are_named_for_operators() {
    assert_eq!(RecordKey::Fleet.to_string(), "fleet");
    assert_eq!(conn().to_string(), "connection main");
}

#[test]
fn a_connection_record_reads_back_exactly_as_written() {
    let text = forced_entry().encode(V);
    assert_eq!(
        text, "dbfo2 7 00000000000000ab c HEALTHY 0 5 F 1f:1:3 -1",
        "the documented text form"
    );
    assert_eq!(
        decode(&conn(), &text),
        Slot::Readable {
            version: V,
            record: forced_entry()
        }
    );
    let empty = Record::Connection(ConnectionEntry::default());
    let text = empty.encode(V);
    assert_eq!(text, "dbfo2 7 00000000000000ab c UNKNOWN 0 0 - - 0");
    assert_eq!(
        decode(&conn(), &text),
        Slot::Readable {
            version: V,
            record: empty
        }
    );
}

#[test]
fn a_fleet_record_reads_back_exactly_as_written() {
    let fleet = Record::Fleet(FleetRecord {
        preference: Preference::Primary,
        forced_by: 0xbeef,
        extra: vec![
            ("next_field".into(), "x".into()),
            ("tl".into(), "a:1".into()),
        ],
    });
    let text = fleet.encode(V);
    assert_eq!(
        text,
        "dbfo2 7 00000000000000ab f pref=primary by=beef next_field=x tl=a:1"
    );
    assert_eq!(
        decode(&RecordKey::Fleet, &text),
        Slot::Readable {
            version: V,
            record: fleet
        }
    );
    // Fields in another order, as a later release may write them.
    let reordered = decode(
        &RecordKey::Fleet,
        "dbfo2 7 00000000000000ab f by=1 other=2 pref=failover",
    );
    assert_eq!(
        reordered,
        Slot::Readable {
            version: V,
            record: Record::Fleet(FleetRecord {
                preference: Preference::Failover,
                forced_by: 1,
                extra: vec![("other".into(), "2".into())],
            })
        }
    );
}

#[test]
fn the_version_of_a_slot_is_that_of_a_readable_record_only() {
    let text = forced_entry().encode(V);
    assert_eq!(decode(&conn(), &text).version(), Some(V));
    assert_eq!(Slot::Missing.version(), None);
    assert_eq!(Slot::Unreadable { header: None }.version(), None);
    assert_eq!(Slot::Foreign { format: 3 }.version(), None);
}

#[test]
fn counters_run_from_one_to_the_forgery_bound() {
    let entry = forced_entry();
    for counter in [1, MAX_COUNTER] {
        let version = Version {
            counter,
            write_id: u64::MAX,
        };
        assert_eq!(
            decode(&conn(), &entry.encode(version)).version(),
            Some(version),
            "{counter}"
        );
    }
    for counter in [0, MAX_COUNTER + 1] {
        let text = entry.encode(Version {
            counter,
            write_id: 0xab,
        });
        assert_eq!(
            decode(&conn(), &text),
            Slot::Unreadable {
                header: Some("00000000000000ab".into())
            },
            "{counter}"
        );
    }
}

#[test]
fn malformed_headers_are_no_headers() {
    for raw in [
        "dbfoX 1 00000000000000ab c DOWN 3 0 - - 0",
        "dbfo 1 00000000000000ab c DOWN 3 0 - - 0",
        "dbfo2 x 00000000000000ab c DOWN 3 0 - - 0",
        "dbfo2 1a 00000000000000ab c DOWN 3 0 - - 0",
        "dbfo2  00000000000000ab c DOWN 3 0 - - 0",
        "dbfo2 1  c DOWN 3 0 - - 0",
        "dbfo2 1 00000000000000ag c DOWN 3 0 - - 0",
        "dbfo2 1 00000000000000ab",
        "dbf2 1 00000000000000ab c DOWN 3 0 - - 0",
        // Another format's header must be well formed too: no leading zero, at most three digits.
        "dbfo03 1 ab rest",
        "dbfo1000 1 ab rest",
        "dbfo1 1 ab rest",
        "dbfo0 1 ab rest",
    ] {
        assert_eq!(
            decode(&conn(), raw),
            Slot::Unreadable { header: None },
            "{raw:?}"
        );
        assert!(Expect::Unreadable.matches(Some(raw.as_bytes())), "{raw:?}");
        assert!(!Expect::Missing.matches(Some(raw.as_bytes())), "{raw:?}");
    }
}

#[test]
fn later_formats_are_foreign() {
    for (raw, format) in [
        ("dbfo3 1 ab rest", 3),
        ("dbfo10 9 ff anything", 10),
        ("dbfo999 1 0 x", 999),
    ] {
        assert_eq!(decode(&conn(), raw), Slot::Foreign { format }, "{raw:?}");
        assert!(!Expect::Unreadable.matches(Some(raw.as_bytes())));
    }
}

#[test]
fn bodies_this_release_cannot_read_are_replaced_expecting_their_write_id() {
    let header = "dbfo2 5 00000000000000ab";
    for body in [
        "c HEALTHY 0 0 X - 0",
        "c HEALTHY 0 0 - - x",
        "c HEALTHY 0 0 - 1:2:3 0",
        "c HEALTHY 0 0 - 1:1:3:4 0",
        "c HEALTHY 0 0 - 1:1 0",
        "c HEALTHY 0 0 - zz:1:3 0",
        "c HEALTHY x 0 - - 0",
        "c HEALTHY 0 0 - -",
        "f by=0",
        "f pref=primary pref=failover by=0",
        "f pref=primary by=0 by=1",
        "f pref=secondary by=0",
        "f pref=primary by=zz",
        "f pref=primary by=0 =1",
        "f pref=primary by=0 a-b=1",
        "f pref=primary by=0 a.b=1",
        "x",
    ] {
        let raw = format!("{header} {body}");
        let slot = decode(&conn(), &raw);
        let fleet_slot = decode(&RecordKey::Fleet, &raw);
        let expected = Slot::Unreadable {
            header: Some("00000000000000ab".into()),
        };
        // Each body is unreadable under one key at least; the `c`/`f` ones under both (wrong kind).
        if body.starts_with('c') {
            assert_eq!(slot, expected, "{raw:?}");
            assert_eq!(fleet_slot, expected, "{raw:?}");
        } else {
            assert_eq!(fleet_slot, expected, "{raw:?}");
        }
        assert_eq!(
            Expect::replacing(&fleet_slot),
            Some(Expect::Header("00000000000000ab".into()))
        );
    }
    // A fleet record under a connection's key is the wrong kind of record.
    assert_eq!(
        decode(&conn(), "dbfo2 5 00000000000000ab f pref=primary by=0"),
        Slot::Unreadable {
            header: Some("00000000000000ab".into())
        }
    );
}

#[test]
fn a_fleet_record_keeps_at_most_the_vote_bound_of_unknown_fields() {
    let fields = |n: usize| -> String {
        (0..n)
            .map(|i| format!(" k{i}=v"))
            .collect::<Vec<_>>()
            .concat()
    };
    let raw = format!(
        "dbfo2 5 00000000000000ab f pref=primary by=0{}",
        fields(MAX_VOTES)
    );
    assert!(matches!(
        decode(&RecordKey::Fleet, &raw),
        Slot::Readable { .. }
    ));
    let raw = format!(
        "dbfo2 5 00000000000000ab f pref=primary by=0{}",
        fields(MAX_VOTES + 1)
    );
    assert!(matches!(
        decode(&RecordKey::Fleet, &raw),
        Slot::Unreadable { header: Some(_) }
    ));
}

#[test]
fn a_record_keeps_at_most_the_vote_bound_of_votes() {
    let votes = |n: usize| -> String {
        (0..n)
            .map(|i| format!("{i:x}:0:1"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let raw = format!(
        "dbfo2 5 00000000000000ab c DOWN 3 0 - {} 0",
        votes(MAX_VOTES)
    );
    let Slot::Readable {
        record: Record::Connection(entry),
        ..
    } = decode(&conn(), &raw)
    else {
        panic!("{MAX_VOTES} votes are readable");
    };
    assert_eq!(entry.votes.len(), MAX_VOTES);
    assert!(entry.votes.iter().all(|v| !v.ok && v.seq == 1));
}

#[test]
fn what_a_compare_and_set_expects() {
    assert_eq!(write_id_text(0xab), "00000000000000ab");
    assert_eq!(write_id_text(u64::MAX), "ffffffffffffffff");
    assert_eq!(Expect::after(V), Expect::Header("00000000000000ab".into()));
    let text = forced_entry().encode(V);
    let readable = decode(&conn(), &text);
    assert_eq!(Expect::replacing(&Slot::Missing), Some(Expect::Missing));
    assert_eq!(
        Expect::replacing(&readable),
        Some(Expect::Header("00000000000000ab".into()))
    );
    assert_eq!(
        Expect::replacing(&Slot::Unreadable { header: None }),
        Some(Expect::Unreadable)
    );
    assert_eq!(
        Expect::replacing(&Slot::Unreadable {
            header: Some("12".into())
        }),
        Some(Expect::Header("12".into()))
    );
    assert_eq!(Expect::replacing(&Slot::Foreign { format: 4 }), None);

    let expect = Expect::after(V);
    assert!(expect.matches(Some(text.as_bytes())));
    assert!(!expect.matches(None));
    assert!(!expect.matches(Some(b"garbage")));
    let other = forced_entry().encode(Version {
        counter: 7,
        write_id: 0xac,
    });
    assert!(!expect.matches(Some(other.as_bytes())));
    assert!(Expect::Missing.matches(None));
    assert!(!Expect::Unreadable.matches(None));
    assert!(!Expect::Missing.matches(Some(text.as_bytes())));
    assert!(!Expect::Unreadable.matches(Some(text.as_bytes())));

    assert_eq!(Expect::Missing.as_script_arg(), "-");
    assert_eq!(Expect::Unreadable.as_script_arg(), "*");
    assert_eq!(expect.as_script_arg(), "00000000000000ab");
}

// ---------------------------------------------------------------------------------------------
// The topology fields of the fleet record.

fn fields(record: &TopologyRecord) -> BTreeMap<String, String> {
    encode_record(record).into_iter().collect()
}

#[test]
fn topology_fields_are_written_only_when_there_is_something_to_say() {
    assert!(encode_record(&TopologyRecord::default()).is_empty());
    let mut record = TopologyRecord {
        writer: Some("db-1.a_B".into()),
        epoch: 1,
        ..TopologyRecord::default()
    };
    record
        .fenced
        .insert("old main".into(), "left behind".into());
    record.timelines.insert("7000".into(), 3);
    let written = fields(&record);
    assert_eq!(written.get("writer").map(String::as_str), Some("db-1.a_B"));
    assert_eq!(
        written.get("fenced").map(String::as_str),
        Some("old%20main:left%20behind")
    );
    assert_eq!(written.get("fe").map(String::as_str), Some("1"));
    assert_eq!(written.get("tl").map(String::as_str), Some("7000:3"));
    assert_eq!(decode_record(&encode_record(&record)), Some(record));
}

#[test]
fn malformed_topology_fields_are_no_record() {
    let bad = |key: &str, value: &str| decode_record(&[(key.to_owned(), value.to_owned())]);
    assert_eq!(bad("writer", "a%2"), None);
    assert_eq!(bad("writer", "a%zz"), None);
    assert_eq!(bad("writer", "%FF"), None, "not UTF-8");
    assert_eq!(
        bad("fenced", "a:%"),
        Some(TopologyRecord {
            fenced: [("a".to_owned(), String::new())].into(),
            ..TopologyRecord::default()
        })
    );
    assert_eq!(bad("tl", "a:x"), None);
    assert_eq!(bad("tl", "a"), None);
    assert_eq!(bad("fe", "x"), None);
    assert_eq!(bad("fe", &(1u64 << 53).to_string()), None, "a forged epoch");
    assert_eq!(
        bad("fe", &((1u64 << 53) - 1).to_string()).map(|r| r.epoch),
        Some((1 << 53) - 1)
    );
    assert_eq!(
        bad("other", "anything"),
        Some(TopologyRecord::default()),
        "another field is not the topology's"
    );
    assert_eq!(
        bad("writer", "a%3Ab%25").and_then(|r| r.writer),
        Some("a:b%".to_owned())
    );
}

#[test]
fn merging_two_instances_decisions() {
    let record = |epoch: u64, writer: &str, fence: &str, timeline: u32| {
        let mut r = TopologyRecord {
            writer: (!writer.is_empty()).then(|| writer.to_owned()),
            epoch,
            ..TopologyRecord::default()
        };
        if !fence.is_empty() {
            r.fenced.insert(fence.to_owned(), "why".to_owned());
        }
        r.timelines.insert("c".to_owned(), timeline);
        r
    };
    // Equal epochs: fences add up, the highest timeline wins, the first writer of record stays.
    let a = record(2, "a", "x", 2);
    let b = record(2, "b", "y", 5);
    let merged = TopologyRecord::merge(&a, &b);
    assert_eq!(merged.writer.as_deref(), Some("a"));
    assert_eq!(merged.fenced.keys().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(merged.timelines["c"], 5);
    assert_eq!(merged.epoch, 2);
    let merged = TopologyRecord::merge(&b, &a);
    assert_eq!(merged.writer.as_deref(), Some("b"));
    assert_eq!(merged.timelines["c"], 5);
    // A higher epoch (an operator lifted a fence) says which fences stand and which timeline counts.
    for (high, low) in [(record(3, "h", "x", 2), record(2, "l", "y", 5))] {
        for merged in [
            TopologyRecord::merge(&high, &low),
            TopologyRecord::merge(&low, &high),
        ] {
            assert_eq!(merged.writer.as_deref(), Some("h"));
            assert_eq!(merged.fenced.keys().collect::<Vec<_>>(), ["x"]);
            assert_eq!(merged.timelines["c"], 2);
            assert_eq!(merged.epoch, 3);
        }
    }
    // Without a writer of record at the higher epoch, the other's stands.
    let merged = TopologyRecord::merge(&record(1, "", "", 1), &record(4, "", "", 1));
    assert_eq!(merged.writer, None);
    let merged = TopologyRecord::merge(&record(4, "", "", 1), &record(1, "l", "", 1));
    assert_eq!(merged.writer.as_deref(), Some("l"));
}
