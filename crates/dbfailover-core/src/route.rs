//! The routing decision: which database the service uses, given the statuses of primary and failover.

use crate::config::Failback;
use crate::event::{FailoverEvent, switch_events};
use crate::status::{ActiveRole, ConnectionStatus, RoleNames};
use crate::topology::NodeFacts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What routing needs to know of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionView {
    /// The tracker's status.
    pub status: ConnectionStatus,
    /// Whether any check result is known (an UNKNOWN never checked differs from an UNKNOWN that failed).
    pub checked: bool,
    /// Whether it accepted writes at its last successful check, when known. A read-only node (a
    /// replica) is reachable, and never a target for writes.
    pub writable: Option<bool>,
    /// The latency of its last successful check.
    pub latency: Option<std::time::Duration>,
}

impl ConnectionView {
    /// A view with the given status, marked as checked.
    pub fn checked(status: ConnectionStatus) -> Self {
        Self {
            status,
            checked: true,
            writable: None,
            latency: None,
        }
    }
}

/// Which database routing prefers while it is not down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// The normal case: the primary, whenever it is usable.
    #[default]
    Primary,
    /// After a forced switch to the (first) failover: the failover, whenever it is usable.
    Failover,
}

impl Preference {
    /// The node it prefers (0: the primary, 1: the first failover).
    pub fn node(self) -> usize {
        match self {
            Self::Primary => 0,
            Self::Failover => 1,
        }
    }
}

/// The answer of [`route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Where to route: `Some(Some(node))`, `Some(None)` for limited functionality mode; `None` keeps the
    /// current routing until a pending check decides.
    pub active: Option<Option<usize>>,
    /// A node to check at once (and at the fast interval until its status is decided).
    pub check_now: Option<usize>,
}

/// Whether node `i` can take writes now: reachable (the preferred one: not DOWN; any other: HEALTHY),
/// not known to be read-only, not fenced.
fn usable(view: &ConnectionView, fenced: bool, preferred: bool) -> bool {
    let reachable = if preferred {
        view.status != ConnectionStatus::Down
    } else {
        view.status == ConnectionStatus::Healthy
    };
    reachable && !fenced && view.writable != Some(false)
}

/// Decides where writes go, among `views` (0: the primary, then the failovers in order). Pure.
///
/// - The preferred node (the primary, or the target of a forced switch or of a manual failback) while
///   it is usable: not DOWN (HEALTHY, or UNKNOWN as before the first check), not read-only, not fenced.
/// - Otherwise the first other node in order that is HEALTHY, writable (or not known to be read-only)
///   and not fenced. A node never checked before it keeps routing as it is and is checked at once; one
///   failing but not yet DOWN is passed over and checked fast.
/// - None: limited functionality mode.
///
/// Routing leaves a node only when it is DOWN, read-only or fenced, and a DOWN node is only used again
/// after its tracker's recovery threshold made it HEALTHY.
pub fn route(views: &[ConnectionView], fenced: &[bool], preferred: usize) -> Decision {
    let is_fenced = |i: usize| fenced.get(i).copied().unwrap_or(false);
    if let Some(view) = views.get(preferred)
        && usable(view, is_fenced(preferred), true)
    {
        return Decision {
            active: Some(Some(preferred)),
            check_now: None,
        };
    }
    let mut check_now = None;
    for (i, view) in views.iter().enumerate() {
        if i == preferred || is_fenced(i) || view.writable == Some(false) {
            continue;
        }
        match view.status {
            ConnectionStatus::Healthy => {
                return Decision {
                    active: Some(Some(i)),
                    check_now,
                };
            }
            ConnectionStatus::Unknown if !view.checked && check_now.is_none() => {
                return Decision {
                    active: None,
                    check_now: Some(i),
                };
            }
            ConnectionStatus::Unknown => {
                check_now = check_now.or(Some(i));
            }
            ConnectionStatus::Down => {}
        }
    }
    Decision {
        active: Some(None),
        check_now,
    }
}

/// Whether work already running on a node may finish there: it is not DOWN, not read-only, not
/// fenced (routing may have moved to a preferred node, but this one is sound). Pure.
pub fn sound(view: &ConnectionView, fenced: bool) -> bool {
    view.status != ConnectionStatus::Down && view.writable != Some(false) && !fenced
}

/// Whether a node may serve reads: HEALTHY, a replica (replicating, not writable), its replication lag
/// known and at most `max_lag`. Pure.
pub fn readable(
    view: &ConnectionView,
    facts: Option<&NodeFacts>,
    max_lag: std::time::Duration,
) -> bool {
    view.status == ConnectionStatus::Healthy
        && view.writable != Some(true)
        && facts
            .is_some_and(|f| f.replicating == Some(true) && f.lag.is_some_and(|lag| lag <= max_lag))
}

/// The active connection as the service sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActiveConnection {
    /// The active role.
    pub role: ActiveRole,
    /// The configured name of the active connection (the blocking name in limited mode).
    pub name: String,
    /// Increases by one on every switch; never goes back.
    pub epoch: u64,
}

impl ActiveConnection {
    /// The active connection `name` in `role`, at switch `epoch`.
    pub fn new(role: ActiveRole, name: impl Into<String>, epoch: u64) -> Self {
        Self {
            role,
            name: name.into(),
            epoch,
        }
    }
}

/// What [`Router::update`] and [`Router::force`] produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteOutcome {
    /// The switch events, in the order they fire (empty when nothing switched).
    pub events: Vec<FailoverEvent>,
    /// A node to check at once.
    pub check_now: Option<usize>,
}

/// The routing state: the active node, its switch epoch and the preferred node. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Router {
    names: RoleNames,
    active: Option<usize>,
    epoch: u64,
    preferred: usize,
    failback: Failback,
}

impl Router {
    /// Starts on the primary at epoch 0, as before the first check, failing back automatically.
    pub fn new(names: RoleNames) -> Self {
        Self {
            names,
            active: Some(0),
            epoch: 0,
            preferred: 0,
            failback: Failback::Auto,
        }
    }

    /// With `failback = manual`: once routing switched to a node, that node is preferred until a
    /// forced switch.
    pub fn with_failback(mut self, failback: Failback) -> Self {
        self.failback = failback;
        self
    }

    /// The configured names.
    pub fn names(&self) -> &RoleNames {
        &self.names
    }

    /// The active role.
    pub fn active_role(&self) -> ActiveRole {
        RoleNames::active_role(self.active)
    }

    /// The active node (`None`: limited functionality mode).
    pub fn active_node(&self) -> Option<usize> {
        self.active
    }

    /// The switch epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The preferred node.
    pub fn preferred(&self) -> usize {
        self.preferred
    }

    /// The active connection with its name and epoch.
    pub fn active(&self) -> ActiveConnection {
        ActiveConnection {
            role: self.active_role(),
            name: self.names.node_name(self.active).to_owned(),
            epoch: self.epoch,
        }
    }

    /// Re-decides from the current views (one per node) and fences; switches (and says so) when the
    /// decision changed.
    pub fn update(
        &mut self,
        views: &[ConnectionView],
        fenced: &[bool],
        now: DateTime<Utc>,
    ) -> RouteOutcome {
        let decision = route(views, fenced, self.preferred);
        let events = match decision.active {
            Some(target) => {
                let events = self.switch_to(target, now);
                if self.failback == Failback::Manual
                    && let Some(node) = target
                {
                    // Stay here until an operator forces the switch back.
                    self.preferred = node;
                }
                events
            }
            None => Vec::new(),
        };
        RouteOutcome {
            events,
            check_now: decision.check_now,
        }
    }

    /// A forced switch: `node` becomes the preferred node and routing switches to it at once.
    ///
    /// The caller marks the target HEALTHY in its tracker (as the seed's forced switches do), so the
    /// next [`Router::update`] keeps it until probes find it DOWN again.
    pub fn force(&mut self, node: usize, now: DateTime<Utc>) -> RouteOutcome {
        let node = node.min(self.names.node_count().saturating_sub(1));
        self.preferred = node;
        RouteOutcome {
            events: self.switch_to(Some(node), now),
            check_now: None,
        }
    }

    fn switch_to(&mut self, target: Option<usize>, now: DateTime<Utc>) -> Vec<FailoverEvent> {
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
    fn reads_go_to_healthy_replicas_under_the_lag_bound() {
        let replica = |lag_ms: Option<u64>| NodeFacts {
            writable: Some(false),
            replicating: Some(true),
            lag: lag_ms.map(std::time::Duration::from_millis),
            ..NodeFacts::default()
        };
        let max = std::time::Duration::from_secs(1);
        let healthy = read_only(Healthy);
        assert!(readable(&healthy, Some(&replica(Some(10))), max));
        assert!(
            !readable(&healthy, Some(&replica(Some(5000))), max),
            "too far behind"
        );
        assert!(
            !readable(&healthy, Some(&replica(None)), max),
            "lag unknown"
        );
        assert!(
            !readable(&read_only(Down), Some(&replica(Some(0))), max),
            "down"
        );
        let writer = NodeFacts {
            writable: Some(true),
            replicating: Some(false),
            lag: Some(std::time::Duration::ZERO),
            ..NodeFacts::default()
        };
        assert!(
            !readable(&view(Healthy), Some(&writer), max),
            "the writer is not a replica"
        );
        assert!(!readable(&healthy, None, max));
    }

    fn read_only(status: ConnectionStatus) -> ConnectionView {
        ConnectionView {
            writable: Some(false),
            ..view(status)
        }
    }

    fn pair(p: ConnectionView, f: ConnectionView, preferred: usize) -> Decision {
        route(&[p, f], &[false, false], preferred)
    }

    #[test]
    fn before_the_first_check_everything_routes_to_primary() {
        let d = pair(never_checked(), never_checked(), 0);
        assert_eq!(d.active, Some(Some(0)));
    }

    #[test]
    fn the_seed_table_with_weakness_one_fixed() {
        let cases = [
            (Healthy, Healthy, Some(0)),
            (Healthy, Down, Some(0)),
            // The seed leaves an UNKNOWN (failing, below threshold) primary; we do not.
            (Unknown, Healthy, Some(0)),
            (Down, Healthy, Some(1)),
            (Down, Down, None),
            (Down, Unknown, None),
        ];
        for (p, f, expected) in cases {
            let d = pair(view(p), view(f), 0);
            assert_eq!(d.active, Some(expected), "primary {p}, failover {f}");
        }
    }

    #[test]
    fn primary_down_and_failover_unchecked_checks_failover_first() {
        let d = pair(view(Down), never_checked(), 0);
        assert_eq!(d.active, None);
        assert_eq!(d.check_now, Some(1));
    }

    #[test]
    fn failover_preference_is_the_mirror_image() {
        let d = pair(view(Healthy), view(Healthy), 1);
        assert_eq!(d.active, Some(Some(1)));
        let d = pair(view(Healthy), view(Down), 1);
        assert_eq!(d.active, Some(Some(0)));
    }

    #[test]
    fn writes_go_to_the_first_writable_node_in_order_never_to_a_replica_or_a_fenced_node() {
        // Primary down; replica1 a healthy read-only replica; replica2 promoted (writable).
        let views = [view(Down), read_only(Healthy), view(Healthy)];
        assert_eq!(route(&views, &[false; 3], 0).active, Some(Some(2)));
        // The old primary is back, writable, but fenced: writes stay on the promoted node.
        let views = [view(Healthy), read_only(Healthy), view(Healthy)];
        assert_eq!(
            route(&views, &[true, false, false], 0).active,
            Some(Some(2))
        );
        // A read-only primary is no target for writes either.
        let views = [read_only(Healthy), view(Healthy)];
        assert_eq!(route(&views, &[false; 2], 0).active, Some(Some(1)));
        // Nothing writable: limited functionality mode.
        let views = [view(Down), read_only(Healthy), read_only(Healthy)];
        assert_eq!(route(&views, &[false; 3], 0).active, Some(None));
    }

    #[test]
    fn a_failing_node_is_passed_over_and_checked_fast() {
        let views = [view(Down), view(Unknown), view(Healthy)];
        let d = route(&views, &[false; 3], 0);
        assert_eq!(d.active, Some(Some(2)));
        assert_eq!(d.check_now, Some(1));
    }

    #[test]
    fn manual_failback_stays_where_it_switched_until_forced() {
        let names = RoleNames::pair("p", "f", "b");
        let mut router = Router::new(names).with_failback(Failback::Manual);
        let now = Utc::now();
        router.update(&[view(Down), view(Healthy)], &[false; 2], now);
        assert_eq!(router.active_node(), Some(1));
        router.update(&[view(Healthy), view(Healthy)], &[false; 2], now);
        assert_eq!(router.active_node(), Some(1), "no automatic failback");
        router.force(0, now);
        assert_eq!(router.active_node(), Some(0));
        let mut auto = Router::new(RoleNames::pair("p", "f", "b"));
        auto.update(&[view(Down), view(Healthy)], &[false; 2], now);
        auto.update(&[view(Healthy), view(Healthy)], &[false; 2], now);
        assert_eq!(auto.active_node(), Some(0), "the seed's automatic failback");
    }

    #[test]
    fn epoch_grows_only_on_switches() {
        let mut router = Router::new(RoleNames::pair("p", "f", "b"));
        let now = Utc::now();
        let healthy = [view(Healthy), view(Healthy)];
        assert!(router.update(&healthy, &[false; 2], now).events.is_empty());
        assert_eq!(router.epoch(), 0);
        let out = router.update(&[view(Down), view(Healthy)], &[false; 2], now);
        assert_eq!(out.events.len(), 2);
        assert_eq!(router.active().name, "f");
        assert_eq!(router.epoch(), 1);
        assert!(
            router
                .update(&[view(Down), view(Healthy)], &[false; 2], now)
                .events
                .is_empty()
        );
        assert_eq!(router.epoch(), 1);
    }
}
