//! A scripted probe for tests of many engines: up or refusing, as a shared flag says.

use dbfailover::engine::FnProbe;
use dbfailover::{ProbeError, ProbeReport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A probe that answers while `up` is set and refuses otherwise.
pub fn switch_probe(up: Arc<AtomicBool>) -> impl dbfailover::Probe {
    FnProbe::new(move |_| {
        let up = up.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(ProbeReport::default())
            } else {
                Err(ProbeError::new("connection refused"))
            }
        }
    })
}
