//! The records instances share through a store, and the one text form every store keeps them in.
//!
//! A store holds one record per monitored connection (its shared status, counts and the instances'
//! votes) and one fleet-wide record (what is decided once for every instance: a forced switch). Each
//! record carries a header: its format, a counter and the id of the write that made it:
//!
//! ```text
//! dbfo2 <counter> <write id> c <STATUS> <failures> <successes> <flags> <votes> <checked at>
//! dbfo2 <counter> <write id> f pref=<preference> by=<forced by> [<key>=<value> ...]
//! ```
//!
//! - **Order comes from the store, never from a clock.** The counter grows by one with each write of a
//!   record; the write id is random per write. A store that lost writes (restarted empty, failed over to
//!   a replica, evicted a key) cannot hand out a version that hides them: the next write there carries
//!   another write id, so a counter seen twice with two ids shows that the history was rewritten.
//! - **Compare-and-set expects a write id**, never a number a store computes: [`Expect`] says what the
//!   writer read (nothing, a header's write id, or an unreadable value), and every store applies
//!   [`Expect::matches`] (the Redis script applies the same rule to the same header).
//! - **A format this release does not know** ([`Slot::Foreign`]: a header `dbfoN` with 2 < N < 1000)
//!   is never overwritten: an instance keeps its own decision for that record and says so, so two
//!   releases can share a store during a rolling upgrade.
//! - **Anything else unreadable** (garbage, a wrong type, a forged counter) is [`Slot::Unreadable`]:
//!   never adopted, always replaced by the next write.

use crate::route::Preference;
use crate::status::ConnectionStatus;
use crate::tracker::Counts;
use std::fmt;
use std::sync::Arc;

/// The record format this release reads and writes.
pub const FORMAT: u32 = 2;

/// The most votes a record keeps; a record with more is unreadable.
pub const MAX_VOTES: usize = 512;

/// Counters above this are forged or corrupt (a record written once per millisecond for a million
/// years stays below it): such a record is unreadable and replaced.
pub const MAX_COUNTER: u64 = 1 << 53;

/// Which record of the shared state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKey {
    /// The fleet-wide record.
    Fleet,
    /// The record of one monitored connection.
    Connection(Arc<str>),
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fleet => f.write_str("fleet"),
            Self::Connection(name) => write!(f, "connection {name}"),
        }
    }
}

/// Which write made a record: its place in the record's history and the write's random id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// One more than the version the write replaced (1 for a new record).
    pub counter: u64,
    /// Random per write.
    pub write_id: u64,
}

/// One instance's latest result for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The instance (random per engine start).
    pub instance: u64,
    /// Whether its latest check succeeded.
    pub ok: bool,
    /// The instance's own count of the votes it wrote: readers time its changes on their own
    /// monotonic clocks, so a vote is fresh or stale whatever the writer's clock says.
    pub seq: u64,
}

/// The shared record of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionEntry {
    /// Status and consecutive counts, decided by the shared rule.
    pub counts: Counts,
    /// The instances' latest results.
    pub votes: Vec<Vote>,
    /// Written by a forced switch (adopting it publishes no status events, as on the forcing instance).
    pub forced: bool,
    /// When the writer's latest check ran, by the writer's wall clock, in milliseconds since the Unix
    /// epoch (0: unknown). Shown to operators only: no decision reads it.
    pub checked_at_ms: i64,
}

/// The fleet-wide record: what every instance applies alike.
///
/// Its fields are `key=value` tokens, so a later release can add fields without a new format: an
/// instance keeps the fields it does not know ([`FleetRecord::extra`]) when it rewrites the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetRecord {
    /// The routing preference a forced switch set (`pref`).
    pub preference: Preference,
    /// The instance that forced it, 0 for none (`by`).
    pub forced_by: u64,
    /// Fields this release does not know, kept as they were (key, value as stored).
    pub extra: Vec<(String, String)>,
}

/// A record's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A connection's record.
    Connection(ConnectionEntry),
    /// The fleet record.
    Fleet(FleetRecord),
}

/// What a store holds under one record key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Nothing (never written, expired or evicted).
    Missing,
    /// A record of this release's format.
    Readable {
        /// Which write made it.
        version: Version,
        /// The record.
        record: Record,
    },
    /// Something that is not a record: never adopted, replaced by the next write. `header` is the
    /// write id of a readable header (text as stored), which a compare-and-set must expect.
    Unreadable {
        /// The write id text of a readable `dbfo2` header, if any.
        header: Option<String>,
    },
    /// A record of another release's format: never overwritten.
    Foreign {
        /// Its format number.
        format: u32,
    },
}

/// What a compare-and-set expects to find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No value.
    Missing,
    /// A `dbfo2` header with this write id (text as stored).
    Header(String),
    /// A value with neither a `dbfo2` header nor a foreign one (garbage, or a wrong type).
    Unreadable,
}

impl Expect {
    /// The expectation of a write replacing the record of `version`.
    pub fn after(version: Version) -> Self {
        Self::Header(write_id_text(version.write_id))
    }

    /// What a write replacing `slot` expects; `None` for a foreign record, which is never replaced.
    pub fn replacing(slot: &Slot) -> Option<Self> {
        match slot {
            Slot::Missing => Some(Self::Missing),
            Slot::Readable { version, .. } => Some(Self::after(*version)),
            Slot::Unreadable {
                header: Some(header),
            } => Some(Self::Header(header.clone())),
            Slot::Unreadable { header: None } => Some(Self::Unreadable),
            Slot::Foreign { .. } => None,
        }
    }

    /// Whether a store holding `raw` (`None`: nothing) meets this expectation. Every store decides
    /// with this function or, in a script, with the same rule on the same header.
    pub fn matches(&self, raw: Option<&[u8]>) -> bool {
        let header = raw.map(Header::parse);
        match (self, header) {
            (Self::Missing, None) => true,
            (Self::Header(expected), Some(Header::Current { write_id, .. })) => {
                write_id == expected.as_bytes()
            }
            (Self::Unreadable, Some(Header::None)) => true,
            _ => false,
        }
    }

    /// The text form a script receives: `-` (missing), `*` (unreadable) or the write id.
    pub fn as_script_arg(&self) -> &str {
        match self {
            Self::Missing => "-",
            Self::Unreadable => "*",
            Self::Header(id) => id,
        }
    }
}

/// A value's header, exactly as the Redis script reads it (`^dbfo(%d+) (%d+) (%x+) `).
enum Header<'a> {
    /// `dbfo2 COUNTER ID rest`.
    Current {
        counter: &'a [u8],
        write_id: &'a [u8],
        rest: &'a [u8],
    },
    /// A well-formed header of another format (2 < N < 1000, no leading zero).
    Foreign(u32),
    /// No header either way.
    None,
}

impl<'a> Header<'a> {
    fn parse(raw: &'a [u8]) -> Self {
        let Some(after_magic) = raw.strip_prefix(b"dbfo") else {
            return Self::None;
        };
        let mut fields = after_magic.splitn(4, |b| *b == b' ');
        let (Some(format), Some(counter), Some(write_id), Some(rest)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Self::None;
        };
        let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
        if !digits(format)
            || !digits(counter)
            || write_id.is_empty()
            || !write_id.iter().all(u8::is_ascii_hexdigit)
        {
            return Self::None;
        }
        if format == b"2" {
            return Self::Current {
                counter,
                write_id,
                rest,
            };
        }
        let foreign = format.len() <= 3 && format[0] != b'0';
        match std::str::from_utf8(format)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        {
            Some(n) if foreign && n > FORMAT => Self::Foreign(n),
            _ => Self::None,
        }
    }
}

/// The write id's text form: 16 lowercase hexadecimal digits.
pub fn write_id_text(write_id: u64) -> String {
    format!("{write_id:016x}")
}

impl Slot {
    /// Reads what a store holds under `key` (`None`: nothing).
    pub fn decode(key: &RecordKey, raw: Option<&[u8]>) -> Self {
        let Some(raw) = raw else {
            return Self::Missing;
        };
        match Header::parse(raw) {
            Header::None => Self::Unreadable { header: None },
            Header::Foreign(format) => Self::Foreign { format },
            Header::Current {
                counter,
                write_id,
                rest,
            } => {
                let header = String::from_utf8_lossy(write_id).into_owned();
                match decode_current(key, counter, write_id, rest) {
                    Some((version, record)) => Self::Readable { version, record },
                    None => Self::Unreadable {
                        header: Some(header),
                    },
                }
            }
        }
    }

    /// The version of a readable record.
    pub fn version(&self) -> Option<Version> {
        match self {
            Self::Readable { version, .. } => Some(*version),
            _ => None,
        }
    }
}

fn decode_current(
    key: &RecordKey,
    counter: &[u8],
    write_id: &[u8],
    rest: &[u8],
) -> Option<(Version, Record)> {
    let counter: u64 = std::str::from_utf8(counter).ok()?.parse().ok()?;
    if counter == 0 || counter > MAX_COUNTER || write_id.len() != 16 {
        return None;
    }
    let write_id_text_as_stored = std::str::from_utf8(write_id).ok()?;
    let write_id = u64::from_str_radix(write_id_text_as_stored, 16).ok()?;
    // Only the write id's own text form (lowercase): a write replacing the record expects that
    // text, so a record whose id is spelled otherwise (`00000000A00000AB`) could never be replaced.
    if write_id_text(write_id) != write_id_text_as_stored {
        return None;
    }
    let rest = std::str::from_utf8(rest).ok()?;
    let mut fields = rest.split(' ');
    let record = match (key, fields.next()?) {
        (RecordKey::Connection(_), "c") => {
            let status = ConnectionStatus::parse(fields.next()?)?;
            let failure_count = fields.next()?.parse().ok()?;
            let success_count = fields.next()?.parse().ok()?;
            let forced = match fields.next()? {
                "-" => false,
                "F" => true,
                _ => return None,
            };
            let votes = decode_votes(fields.next()?)?;
            let checked_at_ms = fields.next()?.parse().ok()?;
            Record::Connection(ConnectionEntry {
                counts: Counts {
                    status,
                    failure_count,
                    success_count,
                },
                votes,
                forced,
                checked_at_ms,
            })
        }
        (RecordKey::Fleet, "f") => {
            let mut fleet = FleetRecord::default();
            let (mut pref, mut by) = (false, false);
            for field in fields.by_ref() {
                let (key, value) = field.split_once('=')?;
                match key {
                    "pref" if !pref => {
                        pref = true;
                        fleet.preference = match value {
                            "primary" => Preference::Primary,
                            "failover" => Preference::Failover,
                            _ => return None,
                        };
                    }
                    "by" if !by => {
                        by = true;
                        fleet.forced_by = u64::from_str_radix(value, 16).ok()?;
                    }
                    "pref" | "by" => return None,
                    _ if key.is_empty()
                        || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        || fleet.extra.len() >= MAX_VOTES =>
                    {
                        return None;
                    }
                    _ => fleet.extra.push((key.to_owned(), value.to_owned())),
                }
            }
            if !pref || !by {
                return None;
            }
            Record::Fleet(fleet)
        }
        _ => return None,
    };
    if fields.next().is_some() {
        return None;
    }
    Some((Version { counter, write_id }, record))
}

fn decode_votes(text: &str) -> Option<Vec<Vote>> {
    if text == "-" {
        return Some(Vec::new());
    }
    let mut votes = Vec::new();
    for vote in text.split(',') {
        if votes.len() == MAX_VOTES {
            return None;
        }
        let mut parts = vote.split(':');
        let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
        let ok = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() || votes.iter().any(|v: &Vote| v.instance == instance) {
            return None;
        }
        votes.push(Vote { instance, ok, seq });
    }
    Some(votes)
}

impl Record {
    /// The text form a store keeps, with the write's `version`.
    pub fn encode(&self, version: Version) -> String {
        let header = format!(
            "dbfo{FORMAT} {} {} ",
            version.counter,
            write_id_text(version.write_id)
        );
        match self {
            Self::Connection(entry) => {
                let votes = if entry.votes.is_empty() {
                    "-".to_owned()
                } else {
                    entry
                        .votes
                        .iter()
                        .map(|v| format!("{:x}:{}:{}", v.instance, u8::from(v.ok), v.seq))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!(
                    "{header}c {} {} {} {} {votes} {}",
                    entry.counts.status.as_str(),
                    entry.counts.failure_count,
                    entry.counts.success_count,
                    if entry.forced { "F" } else { "-" },
                    entry.checked_at_ms,
                )
            }
            Self::Fleet(fleet) => {
                let mut text = format!(
                    "{header}f pref={} by={:x}",
                    match fleet.preference {
                        Preference::Primary => "primary",
                        Preference::Failover => "failover",
                    },
                    fleet.forced_by
                );
                for (key, value) in &fleet.extra {
                    text.push_str(&format!(" {key}={value}"));
                }
                text
            }
        }
    }
}

/// One record to write by compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// Which record.
    pub key: RecordKey,
    /// What the writer read there.
    pub expect: Expect,
    /// The new value's text ([`Record::encode`]).
    pub value: String,
    /// For a connection record: the seed's status and failure count, mirrored under the seed's keys.
    pub seed: Option<(ConnectionStatus, u32)>,
}

/// A store's answer to a compare-and-set of several records (all written, or none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// Every record was written.
    Written,
    /// Some record was not as expected: nothing was written; here is what the store holds under each
    /// key of the request, in order.
    Conflict(Vec<Slot>),
}

/// What a store pushes to every instance sharing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// These records were just written (hints: ordered by their counters, checked by loads).
    Written(Vec<(RecordKey, Slot)>),
    /// Changes may have been missed (the feed reconnected or lagged): load everything.
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> RecordKey {
        RecordKey::Connection("main".into())
    }

    fn entry() -> Record {
        Record::Connection(ConnectionEntry {
            counts: Counts {
                status: ConnectionStatus::Down,
                failure_count: 3,
                success_count: 0,
            },
            votes: vec![
                Vote {
                    instance: 0xabc,
                    ok: true,
                    seq: 7,
                },
                Vote {
                    instance: u64::MAX,
                    ok: false,
                    seq: 1,
                },
            ],
            forced: false,
            checked_at_ms: 1_700_000_000_123,
        })
    }

    const V: Version = Version {
        counter: 41,
        write_id: 0x00ff_0000_0000_0001,
    };

    #[test]
    fn records_round_trip() {
        let text = entry().encode(V);
        assert_eq!(
            Slot::decode(&conn(), Some(text.as_bytes())),
            Slot::Readable {
                version: V,
                record: entry()
            }
        );
        let fleet = Record::Fleet(FleetRecord {
            preference: Preference::Failover,
            forced_by: 9,
            extra: vec![("writer".into(), "replica1".into())],
        });
        let text = fleet.encode(V);
        assert_eq!(
            Slot::decode(&RecordKey::Fleet, Some(text.as_bytes())),
            Slot::Readable {
                version: V,
                record: fleet
            }
        );
    }

    #[test]
    fn garbage_is_unreadable_and_a_readable_header_is_expected() {
        for raw in [
            &b"HEALTHY 0 0 1700000000000"[..],
            b"",
            b"\xff\xfe",
            b"dbfo2 1 zz c HEALTHY 0 0 - -",
            b"dbfo02 1 ab rest",
            b"dbfo1 1 ab rest",
            b"dbfo1000 1 ab rest",
        ] {
            assert_eq!(
                Slot::decode(&conn(), Some(raw)),
                Slot::Unreadable { header: None },
                "{raw:?}"
            );
            assert!(Expect::Unreadable.matches(Some(raw)));
        }
        // A current header with a bad body, a forged counter, or the other record kind: replaceable,
        // and the write replacing it expects its write id.
        for raw in [
            &b"dbfo2 5 00000000000000ab c MAYBE 0 0 - -"[..],
            b"dbfo2 99999999999999999999999 00000000000000ab c DOWN 3 0 - -",
            b"dbfo2 5 00000000000000ab f pref=primary by=0",
            b"dbfo2 5 00000000000000ab f pref=primary",
            b"dbfo2 5 00000000000000ab f pref=primary by=0 by=1",
            b"dbfo2 5 00000000000000ab f pref=primary by=0 a b",
            b"dbfo2 5 ab c DOWN 3 0 - -",
            b"dbfo2 5 00000000000000ab c DOWN 3 0 - 1:1:1,1:0:2",
            b"dbfo2 5 00000000000000ab c DOWN 3 0 - - extra",
            b"dbfo2 5 00000000000000ab \xff",
        ] {
            let slot = Slot::decode(&conn(), Some(raw));
            let Slot::Unreadable {
                header: Some(header),
            } = &slot
            else {
                panic!("{raw:?} read as {slot:?}");
            };
            let expect = Expect::replacing(&slot);
            assert_eq!(expect, Some(Expect::Header(header.clone())));
            assert!(expect.is_some_and(|e| e.matches(Some(raw))), "{raw:?}");
        }
    }

    /// Found by the `record_decode` fuzz target: an uppercase write id read as a record whose
    /// replacing write expected the lowercase id, which the stored bytes never matched.
    #[test]
    fn a_write_id_in_uppercase_is_unreadable_and_replaceable() {
        let raw = b"dbfo2 5 00000000A00000ab c DOWN 3 0 F 1a:1:7,2b:0:9 1700000000000";
        let slot = Slot::decode(&conn(), Some(raw));
        assert_eq!(
            slot,
            Slot::Unreadable {
                header: Some("00000000A00000ab".into())
            }
        );
        let expect = Expect::replacing(&slot);
        assert!(expect.is_some_and(|e| e.matches(Some(raw))));
    }

    #[test]
    fn another_release_s_format_is_foreign_and_never_replaced() {
        let raw = b"dbfo3 1 ab anything at all";
        let slot = Slot::decode(&conn(), Some(raw));
        assert_eq!(slot, Slot::Foreign { format: 3 });
        assert_eq!(Expect::replacing(&slot), None);
        for expect in [
            Expect::Missing,
            Expect::Unreadable,
            Expect::Header("ab".into()),
        ] {
            assert!(!expect.matches(Some(raw)));
        }
    }

    #[test]
    fn expectations_match_only_what_they_name() {
        let text = entry().encode(V);
        let current = Expect::replacing(&Slot::decode(&conn(), Some(text.as_bytes())));
        assert!(
            current
                .as_ref()
                .is_some_and(|e| e.matches(Some(text.as_bytes())))
        );
        assert!(!current.as_ref().is_some_and(|e| e.matches(None)));
        let other = entry().encode(Version { write_id: 2, ..V });
        assert!(!current.is_some_and(|e| e.matches(Some(other.as_bytes()))));
        assert!(Expect::Missing.matches(None));
        assert!(!Expect::Missing.matches(Some(b"x")));
        assert!(!Expect::Unreadable.matches(Some(text.as_bytes())));
    }

    #[test]
    fn too_many_votes_is_unreadable() {
        let votes: Vec<String> = (0..=MAX_VOTES).map(|i| format!("{i:x}:1:1")).collect();
        let raw = format!(
            "dbfo2 1 0000000000000001 c HEALTHY 0 0 - {}",
            votes.join(",")
        );
        assert!(matches!(
            Slot::decode(&conn(), Some(raw.as_bytes())),
            Slot::Unreadable { header: Some(_) }
        ));
    }
}
