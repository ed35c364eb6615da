//! The key layout every shared store uses, the seed's keys included, and the text of the change
//! notices Redis publishes.
//!
//! Under the configured `prefix`:
//!
//! | key | holds |
//! |---|---|
//! | `{prefix}_conn_state_{name}` | the record of connection `name` (`dbfailover_core::record`) |
//! | `{prefix}_fleet` | the fleet record |
//! | `{prefix}_conn_status_{name}` | the seed's status key: `HEALTHY`, `DOWN` or `UNKNOWN` |
//! | `{prefix}_conn_failure_count_{name}` | the seed's failure count key |
//! | `{prefix}_changes` | the Redis pub/sub channel of change notices |
//! | `{prefix}_shared` | memcached: one document holding every record |

use dbfailover_core::record::{Notice, RecordKey, Slot, Write};

/// The key of `record` under `prefix`.
pub fn record(prefix: &str, record: &RecordKey) -> String {
    match record {
        RecordKey::Fleet => format!("{prefix}_fleet"),
        RecordKey::Connection(name) => format!("{prefix}_conn_state_{name}"),
    }
}

/// The seed's keys of one connection, which mirror its record's status and failure count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedKeys {
    /// `{prefix}_conn_status_{name}`: `HEALTHY`, `DOWN` or `UNKNOWN`.
    pub status: String,
    /// `{prefix}_conn_failure_count_{name}`: consecutive failed checks.
    pub failure_count: String,
}

impl SeedKeys {
    /// The seed's keys of `connection` under `prefix`.
    pub fn new(prefix: &str, connection: &str) -> Self {
        Self {
            status: format!("{prefix}_conn_status_{connection}"),
            failure_count: format!("{prefix}_conn_failure_count_{connection}"),
        }
    }

    /// The seed's keys a write mirrors: those of a connection record written with a seed.
    pub fn of(prefix: &str, write: &Write) -> Option<Self> {
        match (&write.key, write.seed) {
            (RecordKey::Connection(name), Some(_)) => Some(Self::new(prefix, name)),
            _ => None,
        }
    }
}

/// The Redis channel change notices are published on.
pub fn changes_channel(prefix: &str) -> String {
    format!("{prefix}_changes")
}

/// The memcached key of the one document that holds every record under `prefix`.
pub fn shared_document(prefix: &str) -> String {
    format!("{prefix}_shared")
}

/// The kind tag and name of a record key in a notice (`"c"` with the connection's name, `"f"` with
/// an empty name).
fn tag(key: &RecordKey) -> (&'static str, &str) {
    match key {
        RecordKey::Fleet => ("f", ""),
        RecordKey::Connection(name) => ("c", name),
    }
}

/// The notice announcing `writes`: a JSON array of `[kind, name, value]` triples, kind `"c"` (a
/// connection, by name) or `"f"` (the fleet record, empty name).
pub fn notice_payload(writes: &[Write]) -> String {
    let triples: Vec<[&str; 3]> = writes
        .iter()
        .map(|w| {
            let (kind, name) = tag(&w.key);
            [kind, name, w.value.as_str()]
        })
        .collect();
    // Serializing strings cannot fail; an empty array would only make receivers do nothing.
    serde_json::to_string(&triples).unwrap_or_else(|_| "[]".to_owned())
}

/// The notice `payload` ([`notice_payload`]) announces; `None` if it is not one (the subscriber then
/// asks for a full reload).
pub fn parse_notice(payload: &[u8]) -> Option<Notice> {
    let triples: Vec<(String, String, String)> = serde_json::from_slice(payload).ok()?;
    triples
        .into_iter()
        .map(|(kind, name, value)| {
            let key = match kind.as_str() {
                "c" => RecordKey::Connection(name.into()),
                "f" => RecordKey::Fleet,
                _ => return None,
            };
            let slot = Slot::decode(&key, Some(value.as_bytes()));
            Some((key, slot))
        })
        .collect::<Option<Vec<_>>>()
        .map(Notice::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbfailover_core::ConnectionStatus;
    use dbfailover_core::record::{ConnectionEntry, Expect, FleetRecord, Record, Version};

    const V: Version = Version {
        counter: 3,
        write_id: 0xfeed,
    };

    #[test]
    fn the_seeds_keys_are_kept() {
        let keys = SeedKeys::new("dynamic_db_failover_status", "mysql");
        assert_eq!(keys.status, "dynamic_db_failover_status_conn_status_mysql");
        assert_eq!(
            keys.failure_count,
            "dynamic_db_failover_status_conn_failure_count_mysql"
        );
        assert_eq!(
            record("p", &RecordKey::Connection("mysql".into())),
            "p_conn_state_mysql"
        );
        assert_eq!(record("p", &RecordKey::Fleet), "p_fleet");
        assert_eq!(changes_channel("p"), "p_changes");
        assert_eq!(shared_document("p"), "p_shared");
    }

    #[test]
    fn only_connection_writes_with_a_seed_mirror_it() {
        let mut write = Write {
            key: RecordKey::Connection("main".into()),
            expect: Expect::Missing,
            value: String::new(),
            seed: Some((ConnectionStatus::Down, 3)),
        };
        assert_eq!(SeedKeys::of("p", &write), Some(SeedKeys::new("p", "main")));
        write.seed = None;
        assert_eq!(SeedKeys::of("p", &write), None);
        write.key = RecordKey::Fleet;
        write.seed = Some((ConnectionStatus::Down, 3));
        assert_eq!(SeedKeys::of("p", &write), None);
    }

    #[test]
    fn notices_round_trip_whatever_the_names_and_values_hold() {
        let name = "we\"ird \\ näme\n\u{0}[],";
        let entry = Record::Connection(ConnectionEntry::default()).encode(V);
        let fleet = Record::Fleet(FleetRecord::default()).encode(V);
        let writes = [
            Write {
                key: RecordKey::Connection(name.into()),
                expect: Expect::Missing,
                value: entry.clone(),
                seed: None,
            },
            Write {
                key: RecordKey::Fleet,
                expect: Expect::Unreadable,
                value: fleet.clone(),
                seed: None,
            },
            Write {
                key: RecordKey::Connection("other".into()),
                expect: Expect::Missing,
                value: "garbage \"\u{1}\"".to_owned(),
                seed: None,
            },
        ];
        let payload = notice_payload(&writes);
        let expected: Vec<(RecordKey, Slot)> = writes
            .iter()
            .map(|w| {
                (
                    w.key.clone(),
                    Slot::decode(&w.key, Some(w.value.as_bytes())),
                )
            })
            .collect();
        assert!(matches!(expected[0].1, Slot::Readable { .. }));
        assert!(matches!(expected[1].1, Slot::Readable { .. }));
        assert_eq!(
            parse_notice(payload.as_bytes()),
            Some(Notice::Written(expected))
        );
        assert_eq!(
            parse_notice(notice_payload(&[]).as_bytes()),
            Some(Notice::Written(Vec::new()))
        );
    }

    #[test]
    fn anything_else_is_no_notice() {
        for payload in [
            &b""[..],
            b"main",
            b"{}",
            b"[[\"x\",\"main\",\"v\"]]",
            b"[[\"c\",\"main\"]]",
            b"[[\"c\",\"main\",1]]",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_notice(payload), None, "{payload:?}");
        }
    }
}
