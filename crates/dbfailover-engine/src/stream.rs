//! [`EventStream`]: the engine's events for services without actors, on any async runtime.

use dbfailover_core::FailoverEvent;

/// The events of an engine, for services without actors ([`FailoverHandle::event_stream`](crate::FailoverHandle::event_stream)).
pub struct EventStream {
    first: Option<FailoverEvent>,
    receiver: tokio::sync::broadcast::Receiver<FailoverEvent>,
}

/// Why [`EventStream::recv`] gave no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventStreamError {
    /// The receiver fell this many events behind; they were skipped. The next call goes on.
    #[error("the event stream skipped {0} events it could not keep up with")]
    Lagged(u64),
    /// The engine stopped: no event will come.
    #[error("the engine stopped")]
    Closed,
}

impl EventStream {
    pub(crate) fn new(
        first: FailoverEvent,
        receiver: tokio::sync::broadcast::Receiver<FailoverEvent>,
    ) -> Self {
        Self {
            first: Some(first),
            receiver,
        }
    }

    /// The next event: `CurrentState` first, then every event as it fires.
    pub async fn recv(&mut self) -> Result<FailoverEvent, EventStreamError> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        use tokio::sync::broadcast::error::RecvError;
        match self.receiver.recv().await {
            Ok(event) => Ok(event),
            Err(RecvError::Lagged(skipped)) => Err(EventStreamError::Lagged(skipped)),
            Err(RecvError::Closed) => Err(EventStreamError::Closed),
        }
    }
}
