//! An actor counting the `CacheUnavailable` events of the fleet benchmark's engines.

use actix::prelude::*;
use dbfailover::FailoverEvent;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counter(Arc<AtomicU64>);

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for Counter {
    type Result = ();

    fn handle(&mut self, event: FailoverEvent, _ctx: &mut Context<Self>) {
        if event.kind.name() == "CacheUnavailable" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A listener that counts `CacheUnavailable` events into `counter`.
pub(crate) fn listener(counter: Arc<AtomicU64>) -> Recipient<FailoverEvent> {
    Counter(counter).start().recipient()
}
