//! An actor that keeps every event it receives.

use actix::prelude::*;
use dbfailover::FailoverEvent;
use std::sync::{Arc, Mutex};

/// Collects events for assertions.
pub struct Collector(Arc<Mutex<Vec<FailoverEvent>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<FailoverEvent> for Collector {
    type Result = ();
    fn handle(&mut self, event: FailoverEvent, _ctx: &mut Context<Self>) {
        // The snapshot every subscriber hears first is not something that happened.
        if matches!(event.kind, dbfailover::EventKind::CurrentState { .. }) {
            return;
        }
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }
}

/// The events seen by a started [`Collector`].
#[derive(Clone)]
pub struct Events(Arc<Mutex<Vec<FailoverEvent>>>);

impl Events {
    /// Starts a collector on the current arbiter; returns its recipient and the list it fills.
    pub fn start() -> (Recipient<FailoverEvent>, Self) {
        let list = Arc::new(Mutex::new(Vec::new()));
        let addr = Collector(Arc::clone(&list)).start();
        (addr.recipient(), Self(list))
    }

    /// The names of the events so far.
    pub fn names(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .map(|events| events.iter().map(|e| e.kind.name()).collect())
            .unwrap_or_default()
    }

    /// The events so far.
    pub fn all(&self) -> Vec<FailoverEvent> {
        self.0
            .lock()
            .map(|events| events.clone())
            .unwrap_or_default()
    }

    /// How many events named `name` were seen.
    pub fn count(&self, name: &str) -> usize {
        self.names().iter().filter(|n| **n == name).count()
    }
}
