//! The routed pool's counters (`dbfailover_pool_acquires_total`, `dbfailover_pool_errors_total`, named
//! in `dbfailover_engine::metrics`), recorded through the [`metrics`] facade.
//!
//! Every series is registered when the routed pool is built (at 0, so `rate()` works from the first
//! scrape) and its handle kept: counting on the data path is an atomic add, with no key built or
//! looked up. The handles belong to the recorder installed when the pool was built: install the
//! recorder first.

use crate::error::RoutedError;
use ::metrics::{Counter, counter};
use dbfailover_core::RoleNames;
use dbfailover_engine::metrics::{POOL_ACQUIRES, POOL_ERRORS};

/// One node's counters.
struct NodeCounters {
    acquired: Counter,
    acquire_failed: Counter,
    connection_errors: Counter,
    query_errors: Counter,
    switched: Counter,
    deadline: Counter,
}

/// The counters of one routed pool: one set per node, and limited mode's.
pub(crate) struct PoolMetrics {
    nodes: Vec<NodeCounters>,
    limited_acquires: Counter,
    limited_errors: Counter,
}

impl PoolMetrics {
    /// Registers every series of a pool over the nodes of `names`, at 0.
    pub(crate) fn new(names: &RoleNames) -> Self {
        let acquires = |connection: &str, result: &'static str| {
            let counter =
                counter!(POOL_ACQUIRES, "connection" => connection.to_owned(), "result" => result);
            counter.increment(0);
            counter
        };
        let errors = |connection: &str, kind: &'static str| {
            let counter =
                counter!(POOL_ERRORS, "connection" => connection.to_owned(), "kind" => kind);
            counter.increment(0);
            counter
        };
        let nodes = (0..names.node_count())
            .map(|node| {
                let name = names.node_name(Some(node));
                NodeCounters {
                    acquired: acquires(name, "success"),
                    acquire_failed: acquires(name, "failure"),
                    connection_errors: errors(name, "connection"),
                    query_errors: errors(name, "query"),
                    switched: errors(name, "switched"),
                    deadline: errors(name, "deadline"),
                }
            })
            .collect();
        Self {
            nodes,
            limited_acquires: acquires(&names.blocking, "limited"),
            limited_errors: errors(&names.blocking, "limited"),
        }
    }

    /// An acquisition from node `node`'s pool ended, with a connection or without.
    pub(crate) fn acquired(&self, node: usize, success: bool) {
        if let Some(counters) = self.nodes.get(node) {
            if success {
                counters.acquired.increment(1);
            } else {
                counters.acquire_failed.increment(1);
            }
        }
    }

    /// An acquisition refused at once in limited mode (an acquisition and an error).
    pub(crate) fn limited(&self) {
        self.limited_acquires.increment(1);
        self.limited_errors.increment(1);
    }

    /// The pool answers `error` about work on node `node`.
    pub(crate) fn error(&self, node: usize, error: &RoutedError) {
        let Some(counters) = self.nodes.get(node) else {
            return;
        };
        let counter = match error {
            RoutedError::Database {
                connection_error: true,
                ..
            } => &counters.connection_errors,
            RoutedError::Database { .. } => &counters.query_errors,
            RoutedError::Switched { .. } => &counters.switched,
            RoutedError::Deadline { .. } => &counters.deadline,
            RoutedError::AllConnectionsUnavailable { .. } => &self.limited_errors,
            // The retry helper's verdict wraps an error counted when it happened.
            RoutedError::RetriesExhausted { .. } => return,
        };
        counter.increment(1);
    }
}
