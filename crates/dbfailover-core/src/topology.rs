//! Replication topology: what checks say about each node's role, which node is the writer of record,
//! and which nodes are fenced (never given writes again until an operator says so). Pure.
//!
//! - **Promotion.** A node observed replicating (PostgreSQL `pg_is_in_recovery()`; MariaDB/MySQL a
//!   running replica thread; not merely `read_only`) that later accepts writes was promoted: it becomes
//!   the writer of record, and the node it replaced (the previous writer of record, or else the node
//!   last seen accepting writes) is fenced.
//! - **Timelines** (PostgreSQL): a node accepting writes on an older timeline than the highest seen in
//!   its cluster (same `system_identifier`) was left behind: fenced.
//! - **Two writers of one cluster** at once (same `system_identifier`, or one of them was seen
//!   replicating) are reported. Two independent databases never are: the seed's two-node setting,
//!   neither ever a replica, keeps its behaviour.
//! - Fences and the writer of record are the fleet's: [`TopologyRecord`] is what the shared fleet
//!   record carries, so every instance fences the same node, and a restarted instance still does.

use std::collections::BTreeMap;

/// What one successful check found besides reachability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Whether it accepts writes, when the probe could tell.
    pub writable: Option<bool>,
    /// Whether it replicates from another server (PostgreSQL in recovery; a running replica thread).
    pub replicating: Option<bool>,
    /// The cluster it belongs to, when the database can tell (PostgreSQL `system_identifier`).
    pub cluster: Option<String>,
    /// The timeline it writes or replays (PostgreSQL).
    pub timeline: Option<u32>,
    /// How far a replica is behind its writer, when known.
    pub lag: Option<std::time::Duration>,
    /// Its GTID position (MariaDB), when known.
    pub gtid: Option<String>,
}

/// The topology decisions the fleet shares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyRecord {
    /// The node a promotion made the writer of record.
    pub writer: Option<String>,
    /// Fenced nodes, with the reason.
    pub fenced: BTreeMap<String, String>,
    /// The highest timeline seen per cluster.
    pub timelines: BTreeMap<String, u32>,
    /// Grows by one each time an operator lifts a fence: a record with a higher epoch says which
    /// fences still stand; two of the same epoch add up.
    pub epoch: u64,
}

impl TopologyRecord {
    /// What two instances decided, together: the fences of the higher epoch (of both, at equal
    /// epochs), the writer of record of the higher epoch (else `a`'s, else `b`'s), the highest
    /// timelines of both.
    pub fn merge(a: &Self, b: &Self) -> Self {
        let (high, low) = if b.epoch > a.epoch { (b, a) } else { (a, b) };
        let mut fenced = high.fenced.clone();
        if high.epoch == low.epoch {
            for (name, reason) in &low.fenced {
                fenced.entry(name.clone()).or_insert_with(|| reason.clone());
            }
        }
        // The highest timelines of both, except that a higher epoch (an operator's order) says
        // which timeline its clusters count from.
        let mut timelines = low.timelines.clone();
        for (cluster, timeline) in &high.timelines {
            let entry = timelines.entry(cluster.clone()).or_insert(*timeline);
            *entry = if high.epoch > low.epoch {
                *timeline
            } else {
                (*entry).max(*timeline)
            };
        }
        Self {
            writer: high.writer.clone().or_else(|| low.writer.clone()),
            fenced,
            timelines,
            epoch: high.epoch,
        }
    }
}

/// A topology change worth an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyEvent {
    /// A replica was promoted: it is the writer of record.
    Promoted {
        /// The promoted node.
        connection: String,
        /// The node it replaced, if any.
        replaced: Option<String>,
    },
    /// A node is fenced: no writes go to it until an operator forces a switch to it.
    Fenced {
        /// The node.
        connection: String,
        /// Why.
        reason: String,
    },
    /// A fence was lifted (an operator forced a switch to the node).
    Unfenced {
        /// The node.
        connection: String,
    },
    /// Two nodes of one cluster accept writes at once.
    SplitBrain {
        /// The nodes accepting writes.
        connections: Vec<String>,
    },
}

/// One instance's view of the topology. See the module documentation.
#[derive(Clone, Debug)]
pub struct Topology {
    names: Vec<String>,
    fencing: bool,
    seen_replicating: Vec<bool>,
    /// The latest facts of each node (cleared when it is found DOWN).
    facts: Vec<Option<NodeFacts>>,
    /// The node last seen accepting writes, never seen replicating since.
    last_writer: Option<usize>,
    record: TopologyRecord,
    split: bool,
}

impl Topology {
    /// A topology of `names` (the primary, then the failovers in order); `fencing` off never fences.
    pub fn new(names: Vec<String>, fencing: bool) -> Self {
        let count = names.len();
        Self {
            names,
            fencing,
            seen_replicating: vec![false; count],
            facts: vec![None; count],
            last_writer: None,
            record: TopologyRecord::default(),
            split: false,
        }
    }

    /// The shared decisions.
    pub fn record(&self) -> &TopologyRecord {
        &self.record
    }

    /// Whether each node is fenced, in order.
    pub fn fenced(&self) -> Vec<bool> {
        self.names
            .iter()
            .map(|n| self.record.fenced.contains_key(n))
            .collect()
    }

    /// The latest facts of node `node`.
    pub fn facts(&self, node: usize) -> Option<&NodeFacts> {
        self.facts.get(node).and_then(Option::as_ref)
    }

    fn fence(&mut self, node: usize, reason: String, events: &mut Vec<TopologyEvent>) {
        let Some(name) = self.names.get(node).cloned() else {
            return;
        };
        if !self.fencing || self.record.fenced.contains_key(&name) {
            return;
        }
        self.record.fenced.insert(name.clone(), reason.clone());
        events.push(TopologyEvent::Fenced {
            connection: name,
            reason,
        });
    }

    /// A successful check of node `node` found `facts`. Answers what changed.
    pub fn observe(&mut self, node: usize, facts: &NodeFacts) -> Vec<TopologyEvent> {
        let mut events = Vec::new();
        let Some(name) = self.names.get(node).cloned() else {
            return events;
        };
        if facts.replicating == Some(true) {
            self.seen_replicating[node] = true;
            if self.last_writer == Some(node) {
                self.last_writer = None;
            }
            if self.record.writer.as_deref() == Some(name.as_str()) {
                // The writer of record was demoted properly (a switchover): it replaces nobody now.
                self.record.writer = None;
            }
        }
        let writes = facts.writable == Some(true) && facts.replicating != Some(true);
        if let (Some(cluster), Some(timeline)) = (&facts.cluster, facts.timeline) {
            let highest = self.record.timelines.get(cluster).copied().unwrap_or(0);
            if timeline > highest {
                self.record.timelines.insert(cluster.clone(), timeline);
            } else if writes && timeline < highest {
                self.fence(
                    node,
                    format!("accepts writes on timeline {timeline}, older than timeline {highest} of its cluster"),
                    &mut events,
                );
            }
        }
        if writes
            && let (Some(own), Some(writer)) = (&facts.gtid, self.record.writer.clone())
            && writer != name
            && let Some(writer_gtid) = self
                .names
                .iter()
                .position(|n| *n == writer)
                .and_then(|w| self.facts.get(w)?.as_ref()?.gtid.clone())
            && gtid_diverges(own, &writer_gtid)
        {
            // Another node takes writes while the writer of record is elsewhere, on another history.
            self.fence(
                node,
                format!("accepts writes at GTID {own}, diverging from the writer of record {writer} at {writer_gtid}"),
                &mut events,
            );
        }
        if writes && self.seen_replicating[node] {
            // Promoted: it was a replica, now it takes writes.
            self.seen_replicating[node] = false;
            let replaced = self
                .record
                .writer
                .as_ref()
                .and_then(|w| self.names.iter().position(|n| n == w))
                .or(self.last_writer)
                .filter(|r| *r != node);
            self.record.writer = Some(name.clone());
            if self.record.fenced.remove(&name).is_some() {
                events.push(TopologyEvent::Unfenced {
                    connection: name.clone(),
                });
            }
            let replaced_name = replaced.and_then(|r| self.names.get(r).cloned());
            events.push(TopologyEvent::Promoted {
                connection: name.clone(),
                replaced: replaced_name,
            });
            if let Some(r) = replaced {
                self.fence(
                    r,
                    format!("left behind: {name} was promoted in its place"),
                    &mut events,
                );
            }
        }
        if writes && !self.record.fenced.contains_key(&name) {
            self.last_writer = Some(node);
        }
        if let Some(slot) = self.facts.get_mut(node) {
            *slot = Some(facts.clone());
        }
        self.check_split(&mut events);
        events
    }

    /// A check of node `node` failed (it is unreachable): its facts are unknown from now on.
    pub fn observe_down(&mut self, node: usize) -> Vec<TopologyEvent> {
        if let Some(slot) = self.facts.get_mut(node) {
            *slot = None;
        }
        let mut events = Vec::new();
        self.check_split(&mut events);
        events
    }

    /// Two nodes of one cluster accepting writes at once: reported once per occurrence.
    fn check_split(&mut self, events: &mut Vec<TopologyEvent>) {
        let writers: Vec<usize> = (0..self.names.len())
            .filter(|i| {
                self.facts[*i]
                    .as_ref()
                    .is_some_and(|f| f.writable == Some(true) && f.replicating != Some(true))
            })
            .collect();
        let related = |a: usize, b: usize| {
            let cluster = |i: usize| self.facts[i].as_ref().and_then(|f| f.cluster.clone());
            match (cluster(a), cluster(b)) {
                (Some(x), Some(y)) => x == y,
                _ => {
                    // Without a cluster identity: one of them was seen replicating, or is fenced, or
                    // was promoted (a topology, not two independent databases).
                    let topological = |i: usize| {
                        self.record.fenced.contains_key(&self.names[i])
                            || self.record.writer.as_deref() == Some(self.names[i].as_str())
                    };
                    topological(a) || topological(b)
                }
            }
        };
        let split: Vec<String> = writers
            .iter()
            .enumerate()
            .filter(|(k, a)| {
                writers
                    .iter()
                    .enumerate()
                    .any(|(l, b)| *k != l && related(**a, *b))
            })
            .map(|(_, i)| self.names[*i].clone())
            .collect();
        let now_split = !split.is_empty();
        if now_split && !self.split {
            events.push(TopologyEvent::SplitBrain { connections: split });
        }
        self.split = now_split;
    }

    /// An operator forced a switch to node `node`: its fence (if any) is lifted.
    pub fn unfence(&mut self, node: usize) -> Vec<TopologyEvent> {
        let Some(name) = self.names.get(node).cloned() else {
            return Vec::new();
        };
        if self.record.fenced.remove(&name).is_some() {
            if self.record.writer.is_some() {
                self.record.writer = Some(name.clone());
            }
            // The operator's node is the reference from now on: its timeline counts as its
            // cluster's newest, or it would be fenced again at its next check.
            if let Some(facts) = self.facts.get(node).and_then(Option::as_ref)
                && let (Some(cluster), Some(timeline)) = (&facts.cluster, facts.timeline)
            {
                self.record.timelines.insert(cluster.clone(), timeline);
            }
            self.record.epoch = self.record.epoch.saturating_add(1);
            return vec![TopologyEvent::Unfenced { connection: name }];
        }
        Vec::new()
    }

    /// The fleet's decisions, learned from the shared store, merged with this instance's
    /// ([`TopologyRecord::merge`]). Answers what changed here.
    pub fn adopt(&mut self, record: &TopologyRecord) -> Vec<TopologyEvent> {
        let merged = TopologyRecord::merge(&self.record, record);
        let mut events = Vec::new();
        for (name, reason) in &merged.fenced {
            if !self.record.fenced.contains_key(name) {
                events.push(TopologyEvent::Fenced {
                    connection: name.clone(),
                    reason: reason.clone(),
                });
            }
        }
        for name in self.record.fenced.keys() {
            if !merged.fenced.contains_key(name) {
                events.push(TopologyEvent::Unfenced {
                    connection: name.clone(),
                });
            }
        }
        if merged.writer != self.record.writer
            && let Some(writer) = &merged.writer
        {
            events.push(TopologyEvent::Promoted {
                connection: writer.clone(),
                replaced: self.record.writer.clone(),
            });
        }
        self.record = merged;
        events
    }
}

/// Whether two GTID positions (`domain-server-sequence`, comma-separated) differ in any domain: a
/// writer on another history, behind or ahead of the writer of record.
fn gtid_diverges(a: &str, b: &str) -> bool {
    fn entries(text: &str) -> Vec<&str> {
        let mut entries: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        entries.sort_unstable();
        entries
    }
    entries(a) != entries(b)
}

/// The fields of the shared fleet record that carry a [`TopologyRecord`]: `writer`, `fenced`
/// (`name:reason,...`) and `tl` (`cluster:timeline,...`), every name and reason percent-encoded.
pub fn encode_record(record: &TopologyRecord) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    if let Some(writer) = &record.writer {
        fields.push(("writer".to_owned(), encode(writer)));
    }
    if !record.fenced.is_empty() {
        let fenced: Vec<String> = record
            .fenced
            .iter()
            .map(|(n, r)| format!("{}:{}", encode(n), encode(r)))
            .collect();
        fields.push(("fenced".to_owned(), fenced.join(",")));
    }
    if record.epoch > 0 {
        fields.push(("fe".to_owned(), record.epoch.to_string()));
    }
    if !record.timelines.is_empty() {
        let timelines: Vec<String> = record
            .timelines
            .iter()
            .map(|(c, t)| format!("{}:{t}", encode(c)))
            .collect();
        fields.push(("tl".to_owned(), timelines.join(",")));
    }
    fields
}

/// Reads [`encode_record`]'s fields among `fields` (others are ignored); `None` when one is malformed.
pub fn decode_record(fields: &[(String, String)]) -> Option<TopologyRecord> {
    let mut record = TopologyRecord::default();
    for (key, value) in fields {
        match key.as_str() {
            "writer" => record.writer = Some(decode(value)?),
            "fenced" => {
                for pair in value.split(',') {
                    let (name, reason) = pair.split_once(':')?;
                    record.fenced.insert(decode(name)?, decode(reason)?);
                }
            }
            // A forged epoch near the end of the range would pin every later merge: not a record.
            "fe" => record.epoch = value.parse().ok().filter(|e| *e < 1 << 53)?,
            "tl" => {
                for pair in value.split(',') {
                    let (cluster, timeline) = pair.split_once(':')?;
                    record
                        .timelines
                        .insert(decode(cluster)?, timeline.parse().ok()?);
                }
            }
            _ => {}
        }
    }
    Some(record)
}

/// The keys [`encode_record`] writes.
pub const RECORD_KEYS: [&str; 4] = ["writer", "fenced", "tl", "fe"];

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

fn decode(text: &str) -> Option<String> {
    if text == "%" {
        return Some(String::new());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["main".into(), "replica1".into(), "replica2".into()]
    }

    fn writer(tl: u32) -> NodeFacts {
        NodeFacts {
            writable: Some(true),
            replicating: Some(false),
            cluster: Some("7000".into()),
            timeline: Some(tl),
            lag: None,
            gtid: None,
        }
    }

    fn replica(tl: u32) -> NodeFacts {
        NodeFacts {
            writable: Some(false),
            replicating: Some(true),
            cluster: Some("7000".into()),
            timeline: Some(tl),
            lag: None,
            gtid: None,
        }
    }

    #[test]
    fn a_promoted_replica_becomes_the_writer_and_the_old_primary_is_fenced() {
        let mut t = Topology::new(names(), true);
        t.observe(0, &writer(1));
        t.observe(1, &replica(1));
        t.observe(2, &replica(1));
        assert_eq!(t.fenced(), [false, false, false]);
        t.observe_down(0);
        let events = t.observe(2, &writer(2));
        assert!(events.contains(&TopologyEvent::Promoted {
            connection: "replica2".into(),
            replaced: Some("main".into())
        }));
        assert_eq!(t.fenced(), [true, false, false]);
        assert_eq!(t.record().writer.as_deref(), Some("replica2"));
        // The old primary comes back writable on its old timeline: fenced still, and a split brain.
        let events = t.observe(0, &writer(1));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, TopologyEvent::SplitBrain { .. })),
            "{events:?}"
        );
        assert_eq!(t.fenced(), [true, false, false]);
        // An operator forces the switch back: the fence is lifted.
        t.unfence(0);
        assert_eq!(t.fenced(), [false, false, false]);
    }

    #[test]
    fn a_writer_on_an_older_timeline_is_fenced_even_without_seeing_the_promotion() {
        let mut t = Topology::new(names(), true);
        // This instance started after the promotion: it never saw replica2 as a replica.
        t.observe(2, &writer(2));
        let events = t.observe(0, &writer(1));
        assert!(
            matches!(events.first(), Some(TopologyEvent::Fenced { connection, .. }) if connection == "main")
        );
        assert_eq!(t.fenced(), [true, false, false]);
    }

    #[test]
    fn read_only_for_maintenance_is_no_replication_evidence() {
        let mut t = Topology::new(names(), true);
        t.observe(0, &writer(1));
        let maintenance = NodeFacts {
            writable: Some(false),
            replicating: Some(false),
            cluster: None,
            timeline: None,
            lag: None,
            gtid: None,
        };
        t.observe(1, &maintenance);
        let events = t.observe(
            1,
            &NodeFacts {
                writable: Some(true),
                replicating: Some(false),
                ..NodeFacts::default()
            },
        );
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(t.fenced(), [false, false, false]);
    }

    #[test]
    fn two_independent_writable_databases_are_the_seed_s_setting_not_a_split_brain() {
        let mut t = Topology::new(vec!["main".into(), "standby".into()], true);
        let independent = NodeFacts {
            writable: Some(true),
            replicating: None,
            cluster: None,
            timeline: None,
            lag: None,
            gtid: None,
        };
        assert!(t.observe(0, &independent).is_empty());
        assert!(t.observe(1, &independent).is_empty());
        assert_eq!(t.fenced(), [false, false]);
    }

    #[test]
    fn a_writer_on_another_gtid_history_than_the_writer_of_record_is_fenced() {
        let mut t = Topology::new(names(), true);
        let maria = |writable: bool, replicating: bool, gtid: &str| NodeFacts {
            writable: Some(writable),
            replicating: Some(replicating),
            gtid: Some(gtid.into()),
            ..NodeFacts::default()
        };
        t.observe(0, &maria(true, false, "0-1-100"));
        t.observe(1, &maria(false, true, "0-1-100"));
        // replica1 is promoted and writes; the old primary is fenced by the promotion.
        t.observe(1, &maria(true, false, "0-2-105"));
        assert_eq!(t.fenced(), [true, false, false]);
        // An operator lifts the fence, and the old primary still writes on its own history.
        t.unfence(0);
        t.record.writer = Some("replica1".into());
        let events = t.observe(0, &maria(true, false, "0-1-101"));
        assert!(
            events.iter().any(
                |e| matches!(e, TopologyEvent::Fenced { reason, .. } if reason.contains("GTID"))
            ),
            "{events:?}"
        );
        assert!(!gtid_diverges("0-1-5,1-2-9", "1-2-9, 0-1-5"));
    }

    #[test]
    fn lifting_a_fence_on_an_older_timeline_holds_and_a_demoted_writer_replaces_nobody() {
        let mut t = Topology::new(names(), true);
        t.observe(0, &writer(1));
        t.observe(2, &replica(1));
        t.observe_down(0);
        t.observe(2, &writer(2));
        t.observe(0, &writer(1));
        assert_eq!(t.fenced(), [true, false, false]);
        t.unfence(0);
        assert!(
            t.observe(0, &writer(1))
                .iter()
                .all(|e| !matches!(e, TopologyEvent::Fenced { .. }))
        );
        assert_eq!(
            t.fenced(),
            [false, false, false],
            "the operator's order holds"
        );
        // replica2 is demoted properly (a switchover), then replica1 promoted: nobody is fenced.
        let mut t = Topology::new(names(), true);
        t.observe(0, &writer(1));
        t.observe(1, &replica(1));
        t.observe(2, &replica(1));
        t.observe_down(0);
        t.observe(2, &writer(2));
        t.observe(2, &replica(2));
        t.observe(1, &writer(3));
        assert_eq!(t.fenced(), [true, false, false], "only the crashed primary");
    }

    #[test]
    fn fencing_off_never_fences() {
        let mut t = Topology::new(names(), false);
        t.observe(0, &writer(1));
        t.observe(2, &replica(1));
        t.observe(2, &writer(2));
        t.observe(0, &writer(1));
        assert_eq!(t.fenced(), [false, false, false]);
    }

    #[test]
    fn the_record_round_trips_through_fleet_fields_whatever_the_names() {
        let mut record = TopologyRecord {
            writer: Some("a b,c:d=e%".into()),
            ..TopologyRecord::default()
        };
        record
            .fenced
            .insert("x:y".into(), "left behind: a b was promoted".into());
        record.fenced.insert(String::new(), "é".into());
        record.timelines.insert("7302,1".into(), 3);
        record.epoch = 4;
        let fields = encode_record(&record);
        for (key, value) in &fields {
            assert!(RECORD_KEYS.contains(&key.as_str()));
            assert!(!value.contains(' ') && !value.contains('='), "{value}");
        }
        assert_eq!(decode_record(&fields), Some(record));
        assert_eq!(decode_record(&[("fenced".into(), "nocolon".into())]), None);
    }

    #[test]
    fn adopting_the_fleet_s_record_reports_new_fences_and_lifted_ones() {
        let mut t = Topology::new(names(), true);
        let mut record = TopologyRecord {
            writer: Some("replica2".into()),
            ..TopologyRecord::default()
        };
        record.fenced.insert("main".into(), "left behind".into());
        let events = t.adopt(&record);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(t.fenced(), [true, false, false]);
        // A record of the same epoch without the fence does not lift it (it adds up)...
        assert!(t.adopt(&TopologyRecord::default()).is_empty());
        assert_eq!(t.fenced(), [true, false, false]);
        // ...one of a higher epoch (an operator lifted it) does.
        let lifted = TopologyRecord {
            epoch: 1,
            ..TopologyRecord::default()
        };
        assert_eq!(
            t.adopt(&lifted),
            [TopologyEvent::Unfenced {
                connection: "main".into()
            }]
        );
        assert_eq!(t.fenced(), [false, false, false]);
    }
}
