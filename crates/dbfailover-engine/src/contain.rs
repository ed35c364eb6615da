//! Running what the engine does not control (a probe, a store call) so that it cannot stop the engine:
//! in a task of its own, waited for at most a timeout, a panic turned into an outcome.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

/// How contained work ended.
pub(crate) enum Contained<T> {
    /// It finished with this.
    Done(T),
    /// It did not finish within the timeout; it was aborted.
    TimedOut,
    /// It panicked, with this message.
    Panicked(String),
    /// Its task was cancelled (the runtime is shutting down).
    Cancelled,
}

/// Runs `work` in a task of its own and waits at most `timeout` for it.
pub(crate) async fn contained<T: Send + 'static>(
    timeout: Duration,
    work: impl Future<Output = T> + Send + 'static,
) -> Contained<T> {
    let task = tokio::spawn(work);
    let abort = task.abort_handle();
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(done)) => Contained::Done(done),
        Err(_) => {
            abort.abort();
            Contained::TimedOut
        }
        Ok(Err(join)) if join.is_panic() => Contained::Panicked(panic_message(join.into_panic())),
        Ok(Err(_)) => Contained::Cancelled,
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_owned()
    }
}
