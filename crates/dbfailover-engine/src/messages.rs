//! The messages between the actors, and between the handle and the actors.

use actix::{Message, Recipient};
use chrono::{DateTime, Utc};
use dbfailover_core::route::Preference;
use dbfailover_core::{
    ActiveConnection, CheckResult, ConnectionState, ConnectionStatus, ConnectionView, EventOrigin,
    FailoverEvent, Role, StatusTransition,
};
use std::sync::Arc;

/// `ProbeActor` -> `StateActor`: one check of one connection finished.
/// The state actor answers with the connection's status after recording it.
#[derive(Debug, Message)]
#[rtype(result = "ConnectionStatus")]
pub(crate) struct ProbeCompleted {
    /// The connection's name.
    pub connection: Arc<str>,
    /// What the check found.
    pub result: CheckResult,
    /// When it finished.
    pub at: DateTime<Utc>,
}

/// handle or `RouterActor` -> `ProbeActor`: check now instead of waiting for the interval.
///
/// With `confirm`, the probe keeps checking at the fast interval until the connection's status is decided
/// (a success, or DOWN): this is how a reported query failure or an unchecked failover is confirmed quickly.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct CheckNow {
    /// Keep checking at the fast interval until decided.
    pub confirm: bool,
}

/// handle -> `ProbeActor`: run a check now (after the one in flight, if any) and
/// answer the connection's status once that check has been recorded.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<ConnectionStatus>")]
pub(crate) struct RunCheck;

/// `StateActor` -> `RouterActor`: a connection's state after a check or a forced change.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StatusChanged {
    /// The connection's name.
    pub connection: Arc<str>,
    /// Its role.
    pub role: Role,
    /// What routing needs to know of it now.
    pub view: ConnectionView,
    /// The transition this check caused, if any (its status events are published by the router).
    pub transition: Option<StatusTransition>,
    /// Whether this instance made the transition, or learned it from the shared store.
    pub origin: EventOrigin,
    /// What this instance's latest check found of the node's role (`None`: it failed, or none ran).
    pub facts: Option<dbfailover_core::topology::NodeFacts>,
}

/// A store's change feed -> `StateActor`: records other instances wrote, or the feed's end.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum StoreChanged {
    /// What the store pushed.
    Notice(dbfailover_core::record::Notice),
    /// The change feed ended: poll from now on.
    FeedEnded,
}

/// `StateActor` -> `RouterActor`: publish an event that is not a transition of routing (store events).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Publish(pub FailoverEvent);

/// `RouterActor` -> `StateActor`: a forced switch, to share with every instance (the fleet record and
/// the target's record change together). Answers the preference to apply once it is decided (shared,
/// or local while the store is away); `None` if it could not be.
#[derive(Debug, Message)]
#[rtype(result = "Option<Preference>")]
pub(crate) struct ShareForce {
    /// The preference to set.
    pub preference: Preference,
    /// The connection it forces to (marked HEALTHY).
    pub target: Arc<str>,
}

/// `StateActor` -> `RouterActor`: a forced switch another instance made; apply it as it did.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyForce {
    /// The preference it set.
    pub preference: Preference,
    /// Learned, for a switch made elsewhere.
    pub origin: EventOrigin,
}

/// handle -> `StateActor`: every monitored connection's state, primary and failover first.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ConnectionReport>")]
pub(crate) struct GetConnectionStates;

/// One connection's state, as [`FailoverHandle::connection_states`](crate::FailoverHandle::connection_states) answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ConnectionReport {
    /// The connection's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// What is known of it.
    pub state: ConnectionState,
}

/// handle -> `RouterActor`: which connection to use. Answers the active role, its name and the switch epoch.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ActiveConnection")]
pub struct GetActiveConnection;

/// handle -> `RouterActor`: deliver every event to this recipient from now on. Answers its id.
#[derive(Message)]
#[rtype(result = "SubscriptionId")]
pub struct Subscribe(pub Recipient<FailoverEvent>);

/// handle -> `RouterActor`: stop delivering events to a subscriber. Answers whether it was subscribed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct Unsubscribe(pub SubscriptionId);

/// Identifies one event subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

/// handle -> `RouterActor`: switch by hand. Answers the active connection after the switch.
///
/// The target is marked HEALTHY and becomes the preferred connection: routing stays on it until probes
/// find it DOWN (then the other one is used, as always). Forcing the primary restores the normal preference.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ActiveConnection")]
pub struct ForceSwitch(pub Preference);

/// `FailoverSystem` -> `RouterActor`: the probe actors of the nodes routing uses, for checks it asks for.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetProbes {
    /// Each node's probe (0: the primary, then the failovers in order).
    pub(crate) probes: Vec<Option<Recipient<CheckNow>>>,
}

/// `RouterActor` -> `StateActor`: this instance's topology decisions (fences, the writer of record,
/// timelines), to merge into the shared fleet record.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ShareTopology(pub dbfailover_core::topology::TopologyRecord);

/// `StateActor` -> `RouterActor`: the fleet's topology decisions, learned from the shared store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyTopology(pub dbfailover_core::topology::TopologyRecord);

/// handle -> `RouterActor`: an operator lifts the fence of a connection (it may take writes again).
/// Answers whether it was fenced.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct LiftFence(pub String);

/// handle -> `RouterActor`: a receiver of every event from now on, and the current state to hear
/// first (one turn of the router: nothing falls between them).
#[derive(Debug, Message)]
#[rtype(result = "(FailoverEvent, tokio::sync::broadcast::Receiver<FailoverEvent>)")]
pub struct SubscribeStream;

/// The handle -> every actor: stop now (the last handle was dropped, or `shutdown` was called).
/// The actors hold each other's addresses, so none stops on its own.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Stop;
