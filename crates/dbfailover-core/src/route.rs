//! The routing decision: which database the service uses, given the statuses of primary and failover.

use crate::event::{FailoverEvent, switch_events};
use crate::status::{ActiveRole, ConnectionStatus, Role, RoleNames};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What routing needs to know of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionView {
    /// The tracker's status.
    pub status: ConnectionStatus,
    /// Whether any check result is known (an UNKNOWN never checked differs from an UNKNOWN that failed).
    pub checked: bool,
}

impl ConnectionView {
    /// A view with the given status, marked as checked.
    pub fn checked(status: ConnectionStatus) -> Self {
        Self {
            status,
            checked: true,
        }
    }
}

/// Which database routing prefers while it is not down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// The normal case: the primary, whenever it is not DOWN.
    #[default]
    Primary,
    /// After a forced switch to the failover: the failover, whenever it is not DOWN.
    Failover,
}

/// The answer of [`route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Where to route; `None` keeps the current active connection until a pending check decides.
    pub active: Option<ActiveRole>,
    /// A connection to check at once (and at the fast interval until its status is decided).
    pub check_now: Option<Role>,
}

/// Decides where to route. Pure.
///
/// With the normal preference (the failover preference is the mirror image):
/// - primary not DOWN (HEALTHY, or UNKNOWN as before the first check): primary;
/// - primary DOWN, failover HEALTHY: failover;
/// - primary DOWN, failover DOWN: blocking (limited functionality mode);
/// - primary DOWN, failover never checked: keep routing as now, and check the failover at once;
/// - primary DOWN, failover failing but not yet DOWN: blocking, and keep checking the failover fast.
///
/// Routing leaves a connection only when it is DOWN, and a DOWN connection is only used again after
/// its tracker's recovery threshold made it HEALTHY.
pub fn route(
    primary: ConnectionView,
    failover: ConnectionView,
    preference: Preference,
) -> Decision {
    let (preferred, preferred_role, other, other_role) = match preference {
        Preference::Primary => (primary, ActiveRole::Primary, failover, ActiveRole::Failover),
        Preference::Failover => (failover, ActiveRole::Failover, primary, ActiveRole::Primary),
    };
    let check_role = match other_role {
        ActiveRole::Primary => Role::Primary,
        _ => Role::Failover,
    };
    if preferred.status != ConnectionStatus::Down {
        return Decision {
            active: Some(preferred_role),
            check_now: None,
        };
    }
    match other.status {
        ConnectionStatus::Healthy => Decision {
            active: Some(other_role),
            check_now: None,
        },
        ConnectionStatus::Down => Decision {
            active: Some(ActiveRole::Blocking),
            check_now: None,
        },
        ConnectionStatus::Unknown if !other.checked => Decision {
            active: None,
            check_now: Some(check_role),
        },
        ConnectionStatus::Unknown => Decision {
            active: Some(ActiveRole::Blocking),
            check_now: Some(check_role),
        },
    }
}

/// The active connection as the service sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveConnection {
    /// The active role.
    pub role: ActiveRole,
    /// The configured name of the active connection (the blocking name in limited mode).
    pub name: String,
    /// Increases by one on every switch; never goes back.
    pub epoch: u64,
}

/// What [`Router::update`] and [`Router::force`] produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteOutcome {
    /// The switch events, in the order they fire (empty when nothing switched).
    pub events: Vec<FailoverEvent>,
    /// A connection to check at once.
    pub check_now: Option<Role>,
}

/// The routing state: the active connection, its switch epoch and the preference. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Router {
    names: RoleNames,
    active: ActiveRole,
    epoch: u64,
    preference: Preference,
}

impl Router {
    /// Starts on the primary at epoch 0, as before the first check.
    pub fn new(names: RoleNames) -> Self {
        Self {
            names,
            active: ActiveRole::Primary,
            epoch: 0,
            preference: Preference::Primary,
        }
    }

    /// The configured names.
    pub fn names(&self) -> &RoleNames {
        &self.names
    }

    /// The active role.
    pub fn active_role(&self) -> ActiveRole {
        self.active
    }

    /// The switch epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The current preference.
    pub fn preference(&self) -> Preference {
        self.preference
    }

    /// The active connection with its name and epoch.
    pub fn active(&self) -> ActiveConnection {
        ActiveConnection {
            role: self.active,
            name: self.names.name(self.active).to_owned(),
            epoch: self.epoch,
        }
    }

    /// Re-decides from the current statuses; switches (and says so) when the decision changed.
    pub fn update(
        &mut self,
        primary: ConnectionView,
        failover: ConnectionView,
        now: DateTime<Utc>,
    ) -> RouteOutcome {
        let decision = route(primary, failover, self.preference);
        let events = match decision.active {
            Some(target) => self.switch_to(target, now),
            None => Vec::new(),
        };
        RouteOutcome {
            events,
            check_now: decision.check_now,
        }
    }

    /// A forced switch: sets the preference to `target` and switches to it at once.
    ///
    /// The caller marks the target HEALTHY in its tracker (as the seed's forced switches do), so the
    /// next [`Router::update`] keeps it until probes find it DOWN again.
    pub fn force(&mut self, target: Preference, now: DateTime<Utc>) -> RouteOutcome {
        self.preference = target;
        let role = match target {
            Preference::Primary => ActiveRole::Primary,
            Preference::Failover => ActiveRole::Failover,
        };
        RouteOutcome {
            events: self.switch_to(role, now),
            check_now: None,
        }
    }

    fn switch_to(&mut self, target: ActiveRole, now: DateTime<Utc>) -> Vec<FailoverEvent> {
        if target == self.active {
            return Vec::new();
        }
        let events = switch_events(&self.names, self.active, target, now);
        self.active = target;
        self.epoch = self.epoch.saturating_add(1);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionStatus::{Down, Healthy, Unknown};

    fn view(status: ConnectionStatus) -> ConnectionView {
        ConnectionView::checked(status)
    }

    fn never_checked() -> ConnectionView {
        ConnectionView::default()
    }

    #[test]
    fn before_the_first_check_everything_routes_to_primary() {
        let d = route(never_checked(), never_checked(), Preference::Primary);
        assert_eq!(d.active, Some(ActiveRole::Primary));
    }

    #[test]
    fn the_seed_table_with_weakness_one_fixed() {
        let cases = [
            (Healthy, Healthy, ActiveRole::Primary),
            (Healthy, Down, ActiveRole::Primary),
            // The seed leaves an UNKNOWN (failing, below threshold) primary; we do not.
            (Unknown, Healthy, ActiveRole::Primary),
            (Down, Healthy, ActiveRole::Failover),
            (Down, Down, ActiveRole::Blocking),
            (Down, Unknown, ActiveRole::Blocking),
        ];
        for (p, f, expected) in cases {
            let d = route(view(p), view(f), Preference::Primary);
            assert_eq!(d.active, Some(expected), "primary {p}, failover {f}");
        }
    }

    #[test]
    fn primary_down_and_failover_unchecked_checks_failover_first() {
        let d = route(view(Down), never_checked(), Preference::Primary);
        assert_eq!(d.active, None);
        assert_eq!(d.check_now, Some(Role::Failover));
    }

    #[test]
    fn failover_preference_is_the_mirror_image() {
        let d = route(view(Healthy), view(Healthy), Preference::Failover);
        assert_eq!(d.active, Some(ActiveRole::Failover));
        let d = route(view(Healthy), view(Down), Preference::Failover);
        assert_eq!(d.active, Some(ActiveRole::Primary));
    }

    #[test]
    fn epoch_grows_only_on_switches() {
        let names = RoleNames {
            primary: "p".into(),
            failover: "f".into(),
            blocking: "b".into(),
        };
        let mut router = Router::new(names);
        let now = Utc::now();
        assert!(
            router
                .update(view(Healthy), view(Healthy), now)
                .events
                .is_empty()
        );
        assert_eq!(router.epoch(), 0);
        let out = router.update(view(Down), view(Healthy), now);
        assert_eq!(out.events.len(), 2);
        assert_eq!(router.active().name, "f");
        assert_eq!(router.epoch(), 1);
        assert!(
            router
                .update(view(Down), view(Healthy), now)
                .events
                .is_empty()
        );
        assert_eq!(router.epoch(), 1);
    }
}
