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

/// The configured names of the three roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleNames {
    /// Name of the primary connection.
    pub primary: String,
    /// Name of the failover connection.
    pub failover: String,
    /// Name reported for limited functionality mode.
    pub blocking: String,
}

impl RoleNames {
    /// The configured name of `role`.
    pub fn name(&self, role: ActiveRole) -> &str {
        match role {
            ActiveRole::Primary => &self.primary,
            ActiveRole::Failover => &self.failover,
            ActiveRole::Blocking => &self.blocking,
        }
    }

    /// The role a monitored connection called `name` plays.
    pub fn role_of(&self, name: &str) -> Role {
        if name == self.primary {
            Role::Primary
        } else if name == self.failover {
            Role::Failover
        } else {
            Role::Other
        }
    }
}
