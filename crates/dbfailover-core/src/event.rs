//! The events the engine publishes: the seed's events, each fired once per real transition.

use crate::status::{ActiveRole, ConnectionStatus, Role, RoleNames};
use crate::topology::TopologyEvent;
use crate::tracker::StatusTransition;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One event: what happened, and when (UTC).
///
/// Serialized as one flat JSON object, `{"event": "SwitchedToFailoverConnection", "at": "...", ...payload}`,
/// with the seed's event names (without the `Event` suffix) and payload fields in snake_case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailoverEvent {
    /// When the transition happened.
    pub at: DateTime<Utc>,
    /// Whether this instance made the transition, or learned it from the shared state store.
    #[serde(default)]
    pub origin: EventOrigin,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Who made a transition. With a shared store, one instance makes each transition (its events say
/// `local`); every other instance learns it from the store (its events say `learned`), so an alerting
/// listener can act once by ignoring learned events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOrigin {
    /// This instance's own check decided it.
    #[default]
    Local,
    /// Another instance decided it; this one learned it from the shared store.
    Learned,
}

#[cfg(feature = "actix")]
impl actix::Message for FailoverEvent {
    type Result = ();
}

/// What happened. The variants and their fields are the seed's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
#[non_exhaustive]
pub enum EventKind {
    /// The active connection switched to the primary database.
    SwitchedToPrimaryConnection {
        /// The connection used before.
        previous_connection_name: Option<String>,
        /// The primary's name.
        new_connection_name: String,
    },
    /// The active connection switched to the failover database.
    SwitchedToFailoverConnection {
        /// The connection used before.
        previous_connection_name: Option<String>,
        /// The failover's name.
        new_connection_name: String,
    },
    /// Primary and failover are both down: every query now fails at once with a typed error.
    LimitedFunctionalityModeActivated {
        /// The blocking connection's name.
        connection_name: String,
    },
    /// Limited functionality mode ended: queries go to a real database again.
    ExitedLimitedFunctionalityMode {
        /// The connection now used (primary or failover).
        restored_to_connection_name: String,
    },
    /// The primary became healthy after being down.
    PrimaryConnectionRestored {
        /// The primary's name.
        connection_name: String,
    },
    /// The failover became healthy after being down.
    FailoverConnectionRestored {
        /// The failover's name.
        connection_name: String,
    },
    /// The primary is confirmed down (failure threshold reached).
    PrimaryConnectionDown {
        /// The primary's name.
        connection_name: String,
        /// The failure of the deciding check.
        reason: Option<String>,
    },
    /// The failover is confirmed down (failure threshold reached).
    FailoverConnectionDown {
        /// The failover's name.
        connection_name: String,
        /// The failure of the deciding check.
        reason: Option<String>,
    },
    /// A monitored connection became healthy (from UNKNOWN or DOWN); not repeated on every check.
    ConnectionHealthy {
        /// The connection's name.
        connection_name: String,
    },
    /// A monitored connection that is neither primary nor failover is confirmed down.
    ConnectionDown {
        /// The connection's name.
        connection_name: String,
        /// The failure of the deciding check.
        reason: Option<String>,
    },
    /// The state store could not be used; the engine goes on from its local state.
    CacheUnavailable {
        /// What went wrong (no secrets).
        error: String,
    },
    /// The state store answers again after being unavailable.
    CacheRestored {},
    /// A replica was promoted (an outside tool made it writable): it is the writer of record.
    ReplicaPromoted {
        /// The promoted connection.
        connection_name: String,
        /// The connection it replaced, if known.
        replaced_connection_name: Option<String>,
    },
    /// A connection is fenced: no writes go to it until an operator forces a switch to it.
    ConnectionFenced {
        /// The fenced connection.
        connection_name: String,
        /// Why (left behind by a promotion, an older timeline).
        reason: String,
    },
    /// An operator forced a switch to a fenced connection: its fence is lifted.
    ConnectionUnfenced {
        /// The connection.
        connection_name: String,
    },
    /// Two connections of one replication cluster accept writes at once.
    SplitBrainDetected {
        /// The connections accepting writes.
        connection_names: Vec<String>,
    },
    /// No node can take writes, but replicas under the lag bound serve reads: writes fail at once
    /// (limited functionality mode fires too), reads go on.
    ReadOnlyModeActivated {
        /// The connections serving reads.
        read_connection_names: Vec<String>,
    },
    /// Read-only mode ended: a node takes writes again, or no replica can serve reads.
    ReadOnlyModeExited {},
    /// What is true now, the first thing a late subscriber of the event stream hears (never fired by
    /// a transition): the active connection, each routed connection's status, and whether the shared
    /// state store answers.
    CurrentState {
        /// The active connection (the blocking name in limited mode).
        active_connection_name: String,
        /// Each connection routing uses, with its status, in order (primary first).
        connections: Vec<(String, ConnectionStatus)>,
        /// Whether the state store answers.
        store_available: bool,
    },
    /// Accompanies every change of the active connection, whatever the target.
    DatabaseConnectionSwitched {
        /// The connection used before.
        previous_connection_name: Option<String>,
        /// The connection used now.
        new_connection_name: String,
    },
}

impl EventKind {
    /// The seed's name of the event, without the `Event` suffix.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SwitchedToPrimaryConnection { .. } => "SwitchedToPrimaryConnection",
            Self::SwitchedToFailoverConnection { .. } => "SwitchedToFailoverConnection",
            Self::LimitedFunctionalityModeActivated { .. } => "LimitedFunctionalityModeActivated",
            Self::ExitedLimitedFunctionalityMode { .. } => "ExitedLimitedFunctionalityMode",
            Self::PrimaryConnectionRestored { .. } => "PrimaryConnectionRestored",
            Self::FailoverConnectionRestored { .. } => "FailoverConnectionRestored",
            Self::PrimaryConnectionDown { .. } => "PrimaryConnectionDown",
            Self::FailoverConnectionDown { .. } => "FailoverConnectionDown",
            Self::ConnectionHealthy { .. } => "ConnectionHealthy",
            Self::ConnectionDown { .. } => "ConnectionDown",
            Self::CacheUnavailable { .. } => "CacheUnavailable",
            Self::CacheRestored {} => "CacheRestored",
            Self::DatabaseConnectionSwitched { .. } => "DatabaseConnectionSwitched",
            Self::ReplicaPromoted { .. } => "ReplicaPromoted",
            Self::ConnectionFenced { .. } => "ConnectionFenced",
            Self::ConnectionUnfenced { .. } => "ConnectionUnfenced",
            Self::SplitBrainDetected { .. } => "SplitBrainDetected",
            Self::ReadOnlyModeActivated { .. } => "ReadOnlyModeActivated",
            Self::ReadOnlyModeExited {} => "ReadOnlyModeExited",
            Self::CurrentState { .. } => "CurrentState",
        }
    }
}

impl FailoverEvent {
    /// An event of `kind` at `at`, made by this instance.
    pub fn new(at: DateTime<Utc>, kind: EventKind) -> Self {
        Self {
            at,
            origin: EventOrigin::Local,
            kind,
        }
    }

    /// The same event with `origin`.
    pub fn with_origin(mut self, origin: EventOrigin) -> Self {
        self.origin = origin;
        self
    }
}

/// The events a status transition of a connection playing `role` causes, in the order they fire.
///
/// To DOWN: the role's Down event. DOWN to HEALTHY: the role's Restored event (none for other
/// connections), then `ConnectionHealthy`. UNKNOWN to HEALTHY: `ConnectionHealthy` only (not a restore).
pub fn status_events(role: Role, name: &str, transition: &StatusTransition) -> Vec<FailoverEvent> {
    let at = transition.at;
    let connection_name = name.to_owned();
    let mut events = Vec::with_capacity(2);
    match transition.to {
        ConnectionStatus::Down => {
            let reason = transition.reason.clone();
            events.push(match role {
                Role::Primary => EventKind::PrimaryConnectionDown {
                    connection_name,
                    reason,
                },
                Role::Failover => EventKind::FailoverConnectionDown {
                    connection_name,
                    reason,
                },
                Role::Other => EventKind::ConnectionDown {
                    connection_name,
                    reason,
                },
            });
        }
        ConnectionStatus::Healthy => {
            if transition.from == ConnectionStatus::Down {
                match role {
                    Role::Primary => events.push(EventKind::PrimaryConnectionRestored {
                        connection_name: connection_name.clone(),
                    }),
                    Role::Failover => events.push(EventKind::FailoverConnectionRestored {
                        connection_name: connection_name.clone(),
                    }),
                    Role::Other => {}
                }
            }
            events.push(EventKind::ConnectionHealthy { connection_name });
        }
        ConnectionStatus::Unknown => {}
    }
    events
        .into_iter()
        .map(|kind| FailoverEvent::new(at, kind))
        .collect()
}

/// The event of a topology change.
pub fn topology_event(event: TopologyEvent, at: DateTime<Utc>) -> FailoverEvent {
    let kind = match event {
        TopologyEvent::Promoted {
            connection,
            replaced,
        } => EventKind::ReplicaPromoted {
            connection_name: connection,
            replaced_connection_name: replaced,
        },
        TopologyEvent::Fenced { connection, reason } => EventKind::ConnectionFenced {
            connection_name: connection,
            reason,
        },
        TopologyEvent::Unfenced { connection } => EventKind::ConnectionUnfenced {
            connection_name: connection,
        },
        TopologyEvent::SplitBrain { connections } => EventKind::SplitBrainDetected {
            connection_names: connections,
        },
    };
    FailoverEvent::new(at, kind)
}

/// The events a change of the active node from `previous` to `new` (`None`: limited functionality
/// mode) causes, in the order they fire.
///
/// Empty when `previous == new`.
pub fn switch_events(
    names: &RoleNames,
    previous: Option<usize>,
    new: Option<usize>,
    at: DateTime<Utc>,
) -> Vec<FailoverEvent> {
    if previous == new {
        return Vec::new();
    }
    let previous_connection_name = Some(names.node_name(previous).to_owned());
    let new_connection_name = names.node_name(new).to_owned();
    let previous = RoleNames::active_role(previous);
    let mut events = Vec::with_capacity(3);
    match RoleNames::active_role(new) {
        ActiveRole::Primary => events.push(EventKind::SwitchedToPrimaryConnection {
            previous_connection_name: previous_connection_name.clone(),
            new_connection_name: new_connection_name.clone(),
        }),
        ActiveRole::Failover => events.push(EventKind::SwitchedToFailoverConnection {
            previous_connection_name: previous_connection_name.clone(),
            new_connection_name: new_connection_name.clone(),
        }),
        ActiveRole::Blocking => events.push(EventKind::LimitedFunctionalityModeActivated {
            connection_name: new_connection_name.clone(),
        }),
    }
    if previous == ActiveRole::Blocking {
        events.push(EventKind::ExitedLimitedFunctionalityMode {
            restored_to_connection_name: new_connection_name.clone(),
        });
    }
    events.push(EventKind::DatabaseConnectionSwitched {
        previous_connection_name,
        new_connection_name,
    });
    events
        .into_iter()
        .map(|kind| FailoverEvent::new(at, kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> RoleNames {
        RoleNames {
            primary: "main".into(),
            failovers: vec!["standby".into()],
            blocking: "blocking".into(),
        }
    }

    #[test]
    fn json_shape_is_flat_with_event_name_and_snake_case_fields() {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let events = switch_events(&names(), Some(0), Some(1), at);
        let json = serde_json::to_value(&events[0]).unwrap_or_default();
        assert_eq!(json["event"], "SwitchedToFailoverConnection");
        assert_eq!(json["previous_connection_name"], "main");
        assert_eq!(json["new_connection_name"], "standby");
        assert_eq!(json["at"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn leaving_blocking_exits_limited_mode() {
        let at = Utc::now();
        let kinds: Vec<_> = switch_events(&names(), None, Some(0), at)
            .into_iter()
            .map(|e| e.kind.name())
            .collect();
        assert_eq!(
            kinds,
            [
                "SwitchedToPrimaryConnection",
                "ExitedLimitedFunctionalityMode",
                "DatabaseConnectionSwitched"
            ]
        );
    }

    #[test]
    fn unknown_to_healthy_is_not_a_restore() {
        let transition = StatusTransition {
            from: ConnectionStatus::Unknown,
            to: ConnectionStatus::Healthy,
            at: Utc::now(),
            reason: None,
        };
        let kinds: Vec<_> = status_events(Role::Primary, "main", &transition)
            .into_iter()
            .map(|e| e.kind.name())
            .collect();
        assert_eq!(kinds, ["ConnectionHealthy"]);
    }
}
