//! The `Probe` trait (what a driver implements) and the `ProbeActor` (one per monitored connection).

use crate::contain::{Contained, contained};
use crate::error::ProbeError;
use crate::messages::{CheckNow, ProbeCompleted, RunCheck};
use actix::prelude::*;
use dbfailover_core::duration;
use dbfailover_core::{CheckResult, ConnectionStatus, Schedule};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What a probe's check returns; the engine measures the latency itself.
pub type ProbeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ProbeReport, ProbeError>> + Send + 'a>>;

/// What a successful check found besides "it answered".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeReport {
    /// Whether the connection accepts writes, when the probe can tell (`None`: unknown).
    pub writable: Option<bool>,
    /// Its place in a replication cluster, when the probe can tell (`None`: unknown).
    pub replication: Option<dbfailover_core::Replication>,
}

/// Checks one database: connect, run the health query, say whether it accepts writes.
///
/// The engine bounds every check by the configured timeout (it abandons the future when the timeout
/// passes) and never runs two checks of one connection at once; a probe should still apply the timeout
/// to its own connect and query so that nothing keeps running on the server. A probe that panics is
/// counted as a failed check: monitoring goes on.
pub trait Probe: Send + Sync + 'static {
    /// One check, expected to end within `timeout`.
    fn check(&self, timeout: Duration) -> ProbeFuture<'_>;
}

/// A [`Probe`] made of a closure returning a future, for tests and custom checks.
pub struct FnProbe<F>(F);

impl<F> FnProbe<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<F, Fut> Probe for FnProbe<F>
where
    F: Fn(Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ProbeReport, ProbeError>> + Send + 'static,
{
    fn check(&self, timeout: Duration) -> ProbeFuture<'_> {
        Box::pin((self.0)(timeout))
    }
}

/// Runs one check bounded by `timeout`, containing a panicking probe, and turns the answer into a result.
pub(crate) async fn run_check(
    connection: &str,
    probe: Arc<dyn Probe>,
    timeout: Duration,
    require_writable: bool,
) -> CheckResult {
    let started = tokio::time::Instant::now();
    let outcome = contained(timeout, async move { probe.check(timeout).await }).await;
    let latency = started.elapsed();
    match outcome {
        Contained::TimedOut => {
            CheckResult::failure(format!("timed out after {}", duration::format(timeout)))
        }
        Contained::Panicked(message) => {
            tracing::error!(
                connection,
                panic = %message,
                "probe panicked; counted as a failed check, monitoring continues"
            );
            CheckResult::failure(format!("probe panicked: {message}"))
        }
        Contained::Cancelled => CheckResult::failure("check cancelled"),
        Contained::Done(Err(error)) => CheckResult::failure(error.reason()),
        Contained::Done(Ok(report)) => {
            // A read-only node is reachable: routing gives it no writes, but it is not DOWN (a
            // healthy replica is not a dead database). With `require_writable = false`, what it says
            // of writes is not asked: routing may send it writes whatever it answers.
            CheckResult::Success {
                latency,
                writable: report.writable.filter(|_| require_writable),
                replication: report.replication,
            }
        }
    }
}

/// How a [`ProbeActor`] checks its connection.
#[derive(Clone)]
pub(crate) struct ProbeSettings {
    /// The connection's name.
    pub connection: Arc<str>,
    /// Bound on one check.
    pub timeout: Duration,
    /// Periodic checks.
    pub schedule: Schedule,
    /// Pause between confirming checks.
    pub fast_interval: Duration,
    /// Bound on a confirming check that follows a timed-out one.
    pub confirm_timeout: Duration,
    /// At most this many confirming checks in a row (the failure threshold).
    pub confirm_checks: u32,
    /// A read-only answer counts as a failure.
    pub require_writable: bool,
}

/// The pause before a confirming check that follows a refusal (a failure that was not a timeout).
pub(crate) const REFUSAL_RECHECK: Duration = Duration::from_millis(5);

/// Checks one connection on its schedule and reports each result to the `StateActor`, as it completes.
/// After a [`CheckNow`] with `confirm` (or a failed check), checks at the fast interval until the
/// status is decided; a refusal is rechecked within [`REFUSAL_RECHECK`].
///
/// One check runs at a time, except while a failure is being confirmed: when the latest check has
/// run for `fast_interval` without an answer (a hang is suspected), another starts beside it, up to
/// the failure threshold's checks at once, `fast_interval` apart. Each result counts as one check, in
/// the order results arrive; a success ends the overlapping.
pub(crate) struct ProbeActor {
    settings: ProbeSettings,
    probe: Arc<dyn Probe>,
    results: Recipient<ProbeCompleted>,
    /// Checks running now: one, or while a suspected hang is confirmed, up to the threshold's,
    /// started `fast_interval` apart.
    in_flight: u32,
    /// When the latest check started.
    last_start: Option<tokio::time::Instant>,
    /// Checks started so far (each check's number is its place in that order).
    started: u64,
    /// The number of the latest check that succeeded: a failure of an older check (a hung check
    /// that timed out after a newer one answered) is stale, and not counted.
    last_success: Arc<std::sync::atomic::AtomicU64>,
    again_now: bool,
    /// Confirming checks still to run at the fast interval (0: not confirming).
    confirm_left: u32,
    last_timed_out: bool,
    /// The last check failed at once (refused, an error): certain evidence, confirmed within a few ms.
    last_refused: bool,
    /// DOWN and answering again: the recovery is confirmed at the fast interval.
    recovering: bool,
    /// The last check's answer said DOWN: reported failures confirm nothing more.
    known_down: bool,
    next: Option<SpawnHandle>,
    /// `RunCheck` callers waiting for a check that has not started yet.
    waiting_next: Vec<tokio::sync::oneshot::Sender<Option<ConnectionStatus>>>,
    /// `RunCheck` callers waiting for the check in flight.
    waiting_current: Vec<tokio::sync::oneshot::Sender<Option<ConnectionStatus>>>,
}

impl ProbeActor {
    /// A probe actor reporting to `results`.
    pub(crate) fn new(
        settings: ProbeSettings,
        probe: Arc<dyn Probe>,
        results: Recipient<ProbeCompleted>,
    ) -> Self {
        Self {
            settings,
            probe,
            results,
            in_flight: 0,
            last_start: None,
            started: 0,
            last_success: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            again_now: false,
            confirm_left: 0,
            last_timed_out: false,
            last_refused: false,
            recovering: false,
            known_down: false,
            next: None,
            waiting_next: Vec::new(),
            waiting_current: Vec::new(),
        }
    }

    fn confirming(&self) -> bool {
        self.confirm_left > 0
    }

    fn cancel_next(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.next.take() {
            ctx.cancel_future(handle);
        }
    }

    fn schedule(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.cancel_next(ctx);
        self.next = Some(ctx.run_later(delay, |act, ctx| {
            act.next = None;
            act.start_check(ctx);
        }));
    }

    fn schedule_after_check(&mut self, ctx: &mut Context<Self>) {
        let delay = if self.again_now {
            Some(Duration::ZERO)
        } else if self.confirming() && self.last_refused {
            // A refusal is certain, not a slow answer: the next confirming check follows at once.
            Some(self.settings.fast_interval.min(REFUSAL_RECHECK))
        } else if self.confirming() || self.recovering {
            Some(self.settings.fast_interval)
        } else {
            self.settings.schedule.interval()
        };
        self.again_now = false;
        match delay {
            Some(delay) => self.schedule(delay, ctx),
            None => self.cancel_next(ctx),
        }
    }

    /// Confirms at the fast interval, for at most the failure threshold's checks.
    fn start_confirming(&mut self) {
        self.confirm_left = self.settings.confirm_checks.max(1);
    }

    /// Checks now, or right after the check in flight.
    fn check_soon(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight == 0 {
            self.cancel_next(ctx);
        }
        self.start_check(ctx);
    }

    /// Whether another check may start while some run: only while confirming a failure, when the
    /// latest check has been running for `fast_interval` without an answer (a hang is suspected),
    /// and fewer than the threshold's checks run.
    fn may_overlap(&self) -> bool {
        self.confirming()
            && self.in_flight < self.settings.confirm_checks.max(1)
            && self
                .last_start
                .is_some_and(|at| at.elapsed() >= self.settings.fast_interval)
    }

    /// Starts a check, or (one in flight, no overlap allowed) asks for another right after it.
    fn start_check(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight > 0 && !self.may_overlap() {
            self.again_now = true;
            return;
        }
        self.in_flight += 1;
        self.last_start = Some(tokio::time::Instant::now());
        self.started += 1;
        let number = self.started;
        let last_success = Arc::clone(&self.last_success);
        if self.confirming() && self.in_flight < self.settings.confirm_checks.max(1) {
            // If this one hangs too, the next confirming check starts beside it.
            self.schedule(self.settings.fast_interval, ctx);
        }
        self.waiting_current.append(&mut self.waiting_next);
        let settings = self.settings.clone();
        let probe = Arc::clone(&self.probe);
        let results = self.results.clone();
        // After a timeout, the server is likely hung: the next checks wait no longer than the confirm
        // timeout, so a hang is confirmed in about one timeout plus the threshold's confirming checks.
        let timeout = if self.last_timed_out && self.confirming() {
            settings.timeout.min(settings.confirm_timeout)
        } else {
            settings.timeout
        };
        let span = tracing::info_span!("probe", connection = %settings.connection);
        let check = async move {
            let started = tokio::time::Instant::now();
            let result = run_check(
                &settings.connection,
                probe,
                timeout,
                settings.require_writable,
            )
            .await;
            let timed_out = !result.is_success() && started.elapsed() >= timeout;
            crate::metrics::record_check(&settings.connection, &result);
            match &result {
                CheckResult::Success {
                    latency, writable, ..
                } => tracing::debug!(
                    latency_ms = latency.as_secs_f64() * 1000.0,
                    writable = ?writable,
                    "check succeeded"
                ),
                CheckResult::Failure { reason } => tracing::debug!(%reason, "check failed"),
            }
            let success = result.is_success();
            use std::sync::atomic::Ordering;
            if success {
                last_success.fetch_max(number, Ordering::AcqRel);
            } else if last_success.load(Ordering::Acquire) > number {
                // A newer check answered while this one hung: its failure says nothing new.
                tracing::debug!(check = number, "stale failure of an older check ignored");
                return (false, timed_out, None);
            }
            let message = ProbeCompleted {
                connection: Arc::clone(&settings.connection),
                result,
                at: chrono::Utc::now(),
            };
            // Bounded: the state actor answers once the store did (itself bounded), or at once.
            let status = tokio::time::timeout(Duration::from_secs(5), results.send(message)).await;
            (success, timed_out, status.ok().and_then(Result::ok))
        }
        .instrument(span);
        ctx.spawn(
            check
                .into_actor(self)
                .map(|(success, timed_out, status), act, ctx| {
                    act.in_flight = act.in_flight.saturating_sub(1);
                    for waiter in act.waiting_current.drain(..) {
                        // A caller that stopped waiting is no loss.
                        let _ = waiter.send(status);
                    }
                    // With periodic checks, a failure is confirmed at the fast interval until the
                    // connection is decided, like a reported query failure; a DOWN connection is checked
                    // at the normal interval again. Without them, only the checks asked for run.
                    let down = status == Some(ConnectionStatus::Down);
                    // A DOWN connection that answers again is confirmed at the fast interval, as
                    // failures are: a restored database is used again as soon as the recovery
                    // threshold's checks agree, not intervals later.
                    act.recovering = success && down && act.settings.schedule.interval().is_some();
                    act.last_refused = !success && !timed_out;
                    act.known_down = down;
                    if success || down {
                        act.confirm_left = 0;
                        act.last_timed_out = false;
                    } else {
                        act.last_timed_out = timed_out;
                        if act.confirming() {
                            // A connection that stays undecided (another instance vetoes its DOWN)
                            // goes back to the normal interval after the threshold's checks.
                            act.confirm_left -= 1;
                        } else if act.settings.schedule.interval().is_some() {
                            act.start_confirming();
                        }
                    }
                    if act.in_flight == 0 {
                        act.schedule_after_check(ctx);
                    } else if !act.confirming() {
                        // Decided while others run: no more overlapping checks.
                        act.cancel_next(ctx);
                    }
                }),
        );
    }
}

impl Actor for ProbeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.settings.schedule.interval().is_some() {
            self.schedule(Duration::ZERO, ctx);
        }
    }
}

impl Handler<CheckNow> for ProbeActor {
    type Result = ();

    fn handle(&mut self, msg: CheckNow, ctx: &mut Context<Self>) {
        if msg.confirm && (self.confirming() || self.known_down) {
            // Already confirming (or already DOWN): a burst of reported failures must not turn into
            // a burst of checks, or a blip of a few milliseconds could reach the threshold.
            return;
        }
        if msg.confirm {
            self.start_confirming();
        }
        self.check_soon(ctx);
    }
}

impl Handler<RunCheck> for ProbeActor {
    type Result = ResponseFuture<Option<ConnectionStatus>>;

    fn handle(&mut self, _msg: RunCheck, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting_next.push(tx);
        self.check_soon(ctx);
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<crate::messages::Stop> for ProbeActor {
    type Result = ();

    fn handle(&mut self, _msg: crate::messages::Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
