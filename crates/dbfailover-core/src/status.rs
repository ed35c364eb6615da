//! The words of the domain: a connection's status, its role, and the active role.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The health of one monitored connection, as the seed stores it.
///
/// `Unknown` means "not decided yet": never checked, or failing but not yet past the failure threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConnectionStatus {
    /// Not decided: never checked, or failing below the failure threshold without ever being healthy.
    #[default]
    Unknown,
    /// Serving: the last decisive checks succeeded.
    Healthy,
    /// Confirmed down: `failure_threshold` consecutive checks failed.
    Down,
}

impl ConnectionStatus {
    /// The seed's spelling: `HEALTHY`, `DOWN` or `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Healthy => "HEALTHY",
            Self::Down => "DOWN",
        }
    }

    /// Parses the seed's spelling (any case); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "UNKNOWN" => Some(Self::Unknown),
            "HEALTHY" => Some(Self::Healthy),
            "DOWN" => Some(Self::Down),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part a monitored connection plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The database the service uses while it is not down.
    Primary,
    /// The database the service uses while the primary is down.
    Failover,
    /// Any other monitored connection: watched and reported, never routed to.
    Other,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Primary => "primary",
            Self::Failover => "failover",
            Self::Other => "other",
        })
    }
}

/// Where the service's queries go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActiveRole {
    /// The primary database.
    Primary,
    /// The failover database.
    Failover,
    /// Limited functionality mode: every query fails at once with a typed error.
    Blocking,
}

impl ActiveRole {
    /// A small number for packing into an atomic word (0, 1, 2).
    pub fn to_index(self) -> u8 {
        match self {
            Self::Primary => 0,
            Self::Failover => 1,
            Self::Blocking => 2,
        }
    }

    /// The inverse of [`ActiveRole::to_index`]; `None` for any other number.
    pub fn from_index(index: u8) -> Option<Self> {
        match index {
            0 => Some(Self::Primary),
            1 => Some(Self::Failover),
            2 => Some(Self::Blocking),
            _ => None,
        }
    }
}

impl fmt::Display for ActiveRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Primary => "primary",
            Self::Failover => "failover",
            Self::Blocking => "blocking",
        })
    }
}

/// The configured names: the primary, the failovers in order, and limited functionality mode.
///
/// Routing numbers the nodes it can use: 0 is the primary, 1 and up the failovers in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleNames {
    /// Name of the primary connection.
    pub primary: String,
    /// Names of the failover connections, in order of preference (at least one).
    pub failovers: Vec<String>,
    /// Name reported for limited functionality mode.
    pub blocking: String,
}

impl RoleNames {
    /// Names for a primary and one failover (the seed's shape).
    pub fn pair(primary: &str, failover: &str, blocking: &str) -> Self {
        Self {
            primary: primary.to_owned(),
            failovers: vec![failover.to_owned()],
            blocking: blocking.to_owned(),
        }
    }

    /// The first failover.
    pub fn failover(&self) -> &str {
        self.failovers.first().map_or("", String::as_str)
    }

    /// How many nodes routing can use (the primary and the failovers).
    pub fn node_count(&self) -> usize {
        1 + self.failovers.len()
    }

    /// The name of node `index` (0: the primary); the blocking name for `None` or an unknown index.
    pub fn node_name(&self, index: Option<usize>) -> &str {
        match index {
            Some(0) => &self.primary,
            Some(i) => self
                .failovers
                .get(i - 1)
                .map_or(self.blocking.as_str(), String::as_str),
            None => &self.blocking,
        }
    }

    /// The node number of the connection called `name`, if routing can use it.
    pub fn node_of(&self, name: &str) -> Option<usize> {
        if name == self.primary {
            Some(0)
        } else {
            self.failovers.iter().position(|n| n == name).map(|i| i + 1)
        }
    }

    /// The role of node `index` (`None`: limited functionality mode).
    pub fn active_role(index: Option<usize>) -> ActiveRole {
        match index {
            Some(0) => ActiveRole::Primary,
            Some(_) => ActiveRole::Failover,
            None => ActiveRole::Blocking,
        }
    }

    /// The role a monitored connection called `name` plays.
    pub fn role_of(&self, name: &str) -> Role {
        match self.node_of(name) {
            Some(0) => Role::Primary,
            Some(_) => Role::Failover,
            None => Role::Other,
        }
    }
}
