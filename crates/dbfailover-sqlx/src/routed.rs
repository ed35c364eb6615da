//! The routed handle: the active database's `sqlx` pool, or at once the limited-mode error.

use crate::error::RoutedError;
use crate::metrics::PoolMetrics;
use dbfailover_core::config::ReadPicker;
use dbfailover_core::{ActiveRole, Config, RoleNames};
use dbfailover_engine::{ActiveSnapshot, FailoverHandle, SharedActive};
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::{Database, Pool};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Whether a driver error means the connection itself was lost, refused or timed out (as opposed to a
/// bad query): the errors worth reporting to the engine for a fast recheck.
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            #[cfg(feature = "sqlite")]
            if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                // Primary result codes: read-only (8), I/O error (10), cannot open (14), not a database (26).
                let primary = sqlx::error::DatabaseError::code(sqlite)
                    .and_then(|c| c.parse::<u32>().ok())
                    .map(|c| c & 0xff);
                return matches!(primary, Some(8 | 10 | 14 | 26));
            }
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            let message = db.message().to_ascii_lowercase();
            // SQLSTATE class 08 (connection exception: PostgreSQL, MySQL 08S01 server gone);
            // PostgreSQL 57P01..57P03 (shutting down, cannot connect now) and 25006 (read-only
            // transaction: a demoted primary); MySQL/MariaDB read-only (error 1290, HY000).
            code.starts_with("08")
                || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
                || message.contains("read-only")
                || message.contains("read only")
        }
        _ => false,
    }
}

/// A connection taken from the active database's pool, with the node it came from.
pub struct RoutedConnection<DB: Database> {
    connection: PoolConnection<DB>,
    node: usize,
    epoch: u64,
}

impl<DB: Database> RoutedConnection<DB> {
    /// The role of the database this connection belongs to.
    pub fn role(&self) -> ActiveRole {
        RoleNames::active_role(Some(self.node))
    }

    /// The node it belongs to (0: the primary, then the failovers in order).
    pub fn node(&self) -> usize {
        self.node
    }

    /// The switch epoch at which it was routed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The pooled connection itself.
    pub fn into_inner(self) -> PoolConnection<DB> {
        self.connection
    }
}

impl<DB: Database> Deref for RoutedConnection<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.connection
    }
}

impl<DB: Database> DerefMut for RoutedConnection<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.connection
    }
}

/// Where a query should go now: the active pool with its role, name and epoch. No I/O to get one.
pub struct Route<'a, DB: Database> {
    /// The active role (never blocking: that is an error).
    pub role: ActiveRole,
    /// The active node (0: the primary, then the failovers in order).
    pub node: usize,
    /// The active connection's configured name.
    pub name: &'a str,
    /// The switch epoch.
    pub epoch: u64,
    /// The active database's pool.
    pub pool: &'a Pool<DB>,
}

/// Gives the application the active database's pool: one atomic load to decide, no mailbox round trip.
///
/// In limited mode it answers [`RoutedError::AllConnectionsUnavailable`] at once, with no network or
/// file access. Pools are created lazily (no connection is opened before the first query), one per
/// database; after a switch, new acquisitions go to the new database and the idle connections of the
/// database left behind are closed, so nothing keeps talking to it.
pub struct RoutedPool<DB: Database> {
    engine: FailoverHandle,
    shared: Arc<SharedActive>,
    /// One pool per node: the primary's, then the failovers' in order.
    pools: Vec<Pool<DB>>,
    seen_epoch: AtomicU64,
    report_slow_acquire_after: Duration,
    read_picker: ReadPicker,
    next_read: AtomicUsize,
    query_deadline: Option<Duration>,
    metrics: PoolMetrics,
}

/// What a connection serves: the write route, or the read route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Work routed like writes: released when routing leaves its database.
    Writes,
    /// Reads: released when its database neither takes writes nor serves reads any more.
    Reads,
}

/// How the end of routed work came.
enum Guarded<T> {
    Done(T),
    Left,
    Deadline,
}

/// How [`RoutedPool::with_retry`] tries again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// At most this many attempts in all.
    pub attempts: u32,
    /// Within this time from the first attempt.
    pub within: Duration,
    /// Running the work twice is harmless (a read, an upsert): it is retried even when it had started.
    pub idempotent: bool,
    /// The longest wait for routing to switch between attempts.
    pub backoff: Duration,
    /// The route it takes: the writer's, or the read route (replicas under the lag bound).
    pub purpose: Use,
}

impl RetryPolicy {
    /// Reads on the write route: idempotent, 4 attempts within 5 s, waiting at most 200 ms for a switch.
    /// For the read route, set `purpose` to [`Use::Reads`].
    pub fn reads() -> Self {
        Self {
            attempts: 4,
            within: Duration::from_secs(5),
            idempotent: true,
            backoff: Duration::from_millis(200),
            purpose: Use::Writes,
        }
    }

    /// Work that must not run twice: retried only when it never started.
    pub fn not_idempotent() -> Self {
        Self {
            idempotent: false,
            ..Self::reads()
        }
    }
}

/// How often a slow acquisition looks at the router's decision.
const SLOW_ACQUIRE_POLL: Duration = Duration::from_millis(2);

impl<DB: Database> RoutedPool<DB> {
    /// A routed handle over two pools (primary's and failover's) that the caller built.
    pub fn new(engine: FailoverHandle, primary: Pool<DB>, failover: Pool<DB>) -> Self {
        Self::with_pools(engine, vec![primary, failover])
    }

    /// A routed handle over one pool per node that the caller built: the primary's, then the
    /// failovers' in the configured order.
    pub fn with_pools(engine: FailoverHandle, pools: Vec<Pool<DB>>) -> Self {
        let shared = engine.shared_active();
        let seen_epoch = AtomicU64::new(shared.load().epoch);
        let metrics = PoolMetrics::new(engine.names());
        Self {
            engine,
            shared,
            pools,
            seen_epoch,
            report_slow_acquire_after: Self::DEFAULT_REPORT_SLOW_ACQUIRE_AFTER,
            read_picker: ReadPicker::RoundRobin,
            next_read: AtomicUsize::new(0),
            query_deadline: None,
            metrics,
        }
    }

    /// Which replica a read goes to ([`RoutedPool::read_route`]). Default round robin.
    pub fn read_picker(mut self, picker: ReadPicker) -> Self {
        self.read_picker = picker;
        self
    }

    /// The default of [`RoutedPool::report_slow_acquire_after`]: 10 ms.
    pub const DEFAULT_REPORT_SLOW_ACQUIRE_AFTER: Duration = Duration::from_millis(10);

    /// An acquisition still waiting after `after` is reported to the engine as a suspected failure
    /// (the drivers retry a refused connect until the acquire timeout, which would otherwise hide a
    /// dead database for that long). The report only starts confirming checks: a healthy database
    /// answers the first one and nothing changes.
    pub fn report_slow_acquire_after(mut self, after: Duration) -> Self {
        self.report_slow_acquire_after = after;
        self
    }

    /// A routed handle with lazy pools for the primary and the failovers of `config`, built with `options`
    /// (their acquire timeout defaults to the health check's timeout). The pools close a connection
    /// given back while their database is not the active one (this replaces any `after_release` hook
    /// of `options`).
    pub fn connect_lazy(
        engine: FailoverHandle,
        config: &Config,
        options: Option<PoolOptions<DB>>,
    ) -> Result<Self, sqlx::Error> {
        let options = options.unwrap_or_else(|| {
            PoolOptions::<DB>::new().acquire_timeout(config.health_check.timeout)
        });
        let url_of = |name: &str| {
            config
                .databases
                .get(name)
                .map(|d| crate::probe::driver_url(d.url.expose()))
                .ok_or_else(|| {
                    sqlx::Error::Configuration(
                        format!("connection `{name}` is not configured under [databases]").into(),
                    )
                })
        };
        let shared = engine.shared_active();
        // A connection given back to the pool of a database that is no longer active is closed, not
        // kept idle: nothing keeps talking to a database routing has left.
        let for_node = |node: usize| {
            let shared = Arc::clone(&shared);
            options.clone().after_release(move |_conn, _meta| {
                let keep = shared.load().node == Some(node)
                    || (node < 64 && shared.reads().nodes & (1 << node) != 0);
                Box::pin(async move { Ok(keep) })
            })
        };
        let names = config.role_names();
        let mut pools = Vec::with_capacity(names.node_count());
        for node in 0..names.node_count() {
            pools.push(for_node(node).connect_lazy(&url_of(names.node_name(Some(node)))?)?);
        }
        Ok(Self::with_pools(engine, pools).read_picker(config.failover.read_picker))
    }

    /// The engine this handle follows.
    pub fn engine(&self) -> &FailoverHandle {
        &self.engine
    }

    /// The router's decision, one atomic load.
    #[inline]
    pub fn snapshot(&self) -> ActiveSnapshot {
        self.shared.load()
    }

    /// The pool of node `node` (0: the primary, then the failovers in order).
    pub fn pool_of(&self, node: usize) -> Option<&Pool<DB>> {
        self.pools.get(node)
    }

    /// Where a query should go now, or the limited-mode error. No I/O, no waiting.
    #[inline]
    pub fn route(&self) -> Result<Route<'_, DB>, RoutedError> {
        let snapshot = self.snapshot();
        self.after_switch(snapshot);
        let names = self.engine.names();
        match snapshot
            .node
            .and_then(|node| Some((node, self.pool_of(node)?)))
        {
            Some((node, pool)) => Ok(Route {
                role: snapshot.role,
                node,
                name: names.node_name(Some(node)),
                epoch: snapshot.epoch,
                pool,
            }),
            None => Err(RoutedError::AllConnectionsUnavailable {
                blocking_connection: names.blocking.clone(),
            }),
        }
    }

    /// Where a read should go now: a healthy replica whose replication lag is under
    /// `max_replication_lag` (chosen by the read picker), else the node taking writes, else the
    /// limited-mode error. No I/O, no waiting. Reads keep working while no node takes writes.
    pub fn read_route(&self) -> Result<Route<'_, DB>, RoutedError> {
        let reads = self.shared.reads();
        // The replicas with a pool here, one bit each: no allocation on the data path.
        let nodes = if self.pools.len() >= 64 {
            reads.nodes
        } else {
            reads.nodes & ((1u64 << self.pools.len()) - 1)
        };
        let count = nodes.count_ones() as usize;
        // The `k`-th set bit of `nodes`.
        let nth = |k: usize| {
            let mut rest = nodes;
            for _ in 0..k {
                rest &= rest - 1;
            }
            (rest != 0).then(|| rest.trailing_zeros() as usize)
        };
        let chosen = match self.read_picker {
            _ if count == 0 => None,
            ReadPicker::LowestLatency => reads
                .fastest
                .filter(|f| *f < 64 && nodes & (1 << f) != 0)
                .or_else(|| nth(0)),
            ReadPicker::RoundRobin => {
                let turn = self.next_read.fetch_add(1, Ordering::Relaxed);
                nth(turn % count)
            }
        };
        let Some((node, pool)) = chosen.and_then(|n| Some((n, self.pool_of(n)?))) else {
            return self.route();
        };
        let snapshot = self.snapshot();
        Ok(Route {
            role: RoleNames::active_role(Some(node)),
            node,
            name: self.engine.names().node_name(Some(node)),
            epoch: snapshot.epoch,
            pool,
        })
    }

    /// A connection for reads ([`RoutedPool::read_route`]), bounded by the pool's acquire timeout; a
    /// connection error is reported to the engine for a fast recheck.
    pub async fn acquire_read(&self) -> Result<RoutedConnection<DB>, RoutedError> {
        let route = self.read_route().inspect_err(|_| self.metrics.limited())?;
        let (node, epoch) = (route.node, route.epoch);
        let acquired = route.pool.acquire().await;
        self.metrics.acquired(node, acquired.is_ok());
        let connection = self.observe(node, acquired)?;
        Ok(RoutedConnection {
            connection,
            node,
            epoch,
        })
    }

    /// Runs read-only `work` on a connection of [`RoutedPool::read_route`]'s node, and passes its
    /// result through [`RoutedPool::observe`].
    pub async fn with_read_connection<T>(
        &self,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, RoutedError> {
        let switches = self.shared.switches();
        let connection = self.acquire_read().await?;
        self.run_guarded(connection, switches, Use::Reads, None, work)
            .await
    }

    /// The active database's pool, or the limited-mode error.
    pub fn pool(&self) -> Result<&Pool<DB>, RoutedError> {
        self.route().map(|route| route.pool)
    }

    /// A connection from the active database's pool (bounded by the pool's acquire timeout), or the
    /// limited-mode error at once. A connection error is reported to the engine for a fast recheck; so
    /// is an acquisition that is still waiting after [`RoutedPool::report_slow_acquire_after`]. If
    /// routing switches while an acquisition waits, it is abandoned and made again on the new route.
    pub async fn acquire(&self) -> Result<RoutedConnection<DB>, RoutedError> {
        loop {
            let route = self.route().inspect_err(|_| self.metrics.limited())?;
            let (node, epoch) = (route.node, route.epoch);
            let mut acquire = std::pin::pin!(route.pool.acquire());
            // The common case: an idle connection is there; no timer is armed for it.
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(acquire.as_mut().poll(cx))).await;
            let result = match first {
                std::task::Poll::Ready(result) => Some(result),
                std::task::Poll::Pending => self.wait_for(acquire, node, epoch).await,
            };
            if let Some(result) = result {
                self.metrics.acquired(node, result.is_ok());
                let connection = self.observe(node, result)?;
                return Ok(RoutedConnection {
                    connection,
                    node,
                    epoch,
                });
            }
        }
    }

    /// Runs `work` on a connection of the active database, and passes its result through
    /// [`RoutedPool::observe`]: the limited-mode error at once, connection errors reported.
    ///
    /// **Work on a database routing leaves is released at the switch**: if routing switches away from
    /// the database while `work` runs because it is DOWN, read-only or fenced, or limited mode begins,
    /// `work` is stopped at once and its connection discarded (a switch back to a preferred, sound
    /// database lets it finish), and the answer is
    /// [`RoutedError::Switched`] instead of a wait for a dead or frozen server. The same with the
    /// handle's [`RoutedPool::query_deadline`], if set ([`RoutedError::Deadline`]).
    ///
    /// ```rust,ignore
    /// let name: String = routed
    ///     .with_connection(async |conn| sqlx::query_scalar("SELECT name FROM whoami").fetch_one(conn).await)
    ///     .await?;
    /// ```
    pub async fn with_connection<T>(
        &self,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, RoutedError> {
        // Watch before routing, so that no switch after the choice goes unseen.
        let switches = self.shared.switches();
        let connection = self.acquire().await?;
        self.run_guarded(connection, switches, Use::Writes, None, work)
            .await
    }

    /// Stops the handle's work when it runs longer than `deadline` ([`RoutedError::Deadline`]);
    /// default none.
    pub fn query_deadline(mut self, deadline: Duration) -> Self {
        self.query_deadline = Some(deadline);
        self
    }

    /// Runs `work` on `connection` until it ends, routing leaves the connection's database, or the
    /// deadline passes; in the two last cases the work is dropped and the connection discarded.
    async fn run_guarded<T>(
        &self,
        mut connection: RoutedConnection<DB>,
        mut switches: tokio::sync::watch::Receiver<u64>,
        purpose: Use,
        limit: Option<Duration>,
        work: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, RoutedError> {
        let limit = match (self.query_deadline, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let node = connection.node();
        let shared = Arc::clone(&self.shared);
        // Released only when routing left the database because it is unsound (DOWN, read-only,
        // fenced) or limited mode began; a switch back to a preferred database lets it finish.
        let still_routed = move || {
            let snapshot = shared.load();
            if snapshot.node == Some(node) {
                return true;
            }
            match purpose {
                Use::Writes => snapshot.node.is_some() && shared.is_sound(node),
                // A read may finish wherever the database still answers.
                Use::Reads => shared.is_up(node),
            }
        };
        let outcome = {
            let left = async {
                loop {
                    if !still_routed() {
                        return;
                    }
                    if switches.changed().await.is_err() {
                        // The engine is gone: nothing will switch any more.
                        std::future::pending::<()>().await;
                    }
                }
            };
            let deadline = async {
                match limit {
                    Some(deadline) => tokio::time::sleep(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let work = work(&mut connection);
            tokio::select! {
                biased;
                result = work => Guarded::Done(result),
                () = left => Guarded::Left,
                () = deadline => Guarded::Deadline,
            }
        };
        let names = self.engine.names();
        let from = names.node_name(Some(node)).to_owned();
        match outcome {
            Guarded::Done(result) => self.observe(node, result),
            Guarded::Left => {
                // Mid-query on a database routing left: never given back to the pool, never closed
                // politely (the server may be frozen).
                drop(connection.into_inner().detach());
                let to = names.node_name(self.snapshot().node).to_owned();
                tracing::warn!(from = %from, to = %to, "work released at the switch");
                let error = RoutedError::Switched { from, to };
                self.metrics.error(node, &error);
                Err(error)
            }
            Guarded::Deadline => {
                drop(connection.into_inner().detach());
                let error = RoutedError::Deadline {
                    connection: from,
                    deadline: limit.unwrap_or_default(),
                };
                self.metrics.error(node, &error);
                Err(error)
            }
        }
    }

    /// Runs `work` like [`RoutedPool::with_connection`], and runs it again on the new route when it
    /// failed in a way another attempt may not: a connection lost, refused or timed out, or routing
    /// switched away while it ran ([`RoutedError::is_retryable`]). Work that never started (no
    /// connection could be had) is always tried again; work that started is tried again only if
    /// `policy.idempotent` says running it twice is harmless: writes are never retried otherwise.
    /// Between attempts it waits for routing to switch (at most `policy.backoff`). Bounded by
    /// `policy.attempts` and `policy.within`; then [`RoutedError::RetriesExhausted`] carries the last
    /// error. Limited mode is answered at once.
    pub async fn with_retry<T>(
        &self,
        policy: RetryPolicy,
        mut work: impl AsyncFnMut(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, RoutedError> {
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut switches = self.shared.switches();
            let acquired = match policy.purpose {
                Use::Writes => self.acquire().await,
                Use::Reads => self.acquire_read().await,
            };
            // No attempt outlives the policy's time.
            let left = policy.within.saturating_sub(started.elapsed());
            let (error, started_work) = match acquired {
                Ok(connection) => {
                    match self
                        .run_guarded(
                            connection,
                            switches.clone(),
                            policy.purpose,
                            Some(left),
                            async |conn| work(conn).await,
                        )
                        .await
                    {
                        Ok(value) => return Ok(value),
                        Err(error) => (error, true),
                    }
                }
                Err(error) => (error, false),
            };
            let again = error.is_retryable() && (policy.idempotent || !started_work);
            if !again {
                return Err(error);
            }
            let left = policy.within.saturating_sub(started.elapsed());
            if attempts >= policy.attempts || left.is_zero() {
                return Err(RoutedError::RetriesExhausted {
                    attempts,
                    last: Box::new(error),
                });
            }
            tracing::debug!(attempt = attempts, %error, "retrying on the new route");
            // A connection error is usually followed by a switch within a few confirming checks.
            let _ = tokio::time::timeout(policy.backoff.min(left), switches.changed()).await;
        }
    }

    /// Waits for a pending acquisition; `None` when routing switched meanwhile.
    async fn wait_for<F>(
        &self,
        mut acquire: std::pin::Pin<&mut F>,
        node: usize,
        epoch: u64,
    ) -> Option<F::Output>
    where
        F: std::future::Future,
    {
        let started = tokio::time::Instant::now();
        let mut reported = false;
        loop {
            tokio::select! {
                result = acquire.as_mut() => return Some(result),
                () = tokio::time::sleep(SLOW_ACQUIRE_POLL) => {
                    if self.snapshot().epoch != epoch {
                        return None;
                    }
                    if !reported && started.elapsed() >= self.report_slow_acquire_after {
                        reported = true;
                        // The engine may have stopped; the acquisition goes on regardless.
                        let _ = self.engine.report_node_failure(Some(node));
                    }
                }
            }
        }
    }

    /// Passes a query's result through: a connection error (lost, refused, timed out) is reported to
    /// the engine for a fast recheck of the database it came from (node `node`), and wrapped with that
    /// database's name.
    pub fn observe<T>(
        &self,
        node: usize,
        result: Result<T, sqlx::Error>,
    ) -> Result<T, RoutedError> {
        result.map_err(|source| {
            let connection_error = is_connection_error(&source);
            if connection_error {
                // The engine may have stopped; the query's own error is what the caller needs.
                let _ = self.engine.report_node_failure(Some(node));
            }
            let error = RoutedError::Database {
                connection: self.engine.names().node_name(Some(node)).to_owned(),
                connection_error,
                source,
            };
            self.metrics.error(node, &error);
            error
        })
    }

    fn after_switch(&self, snapshot: ActiveSnapshot) {
        let epoch = snapshot.epoch;
        // Epochs only grow: the first reader of a newer epoch (and only it) closes the idle
        // connections; a reader holding an older epoch never moves it back.
        if self.seen_epoch.load(Ordering::Relaxed) >= epoch
            || self.seen_epoch.fetch_max(epoch, Ordering::AcqRel) >= epoch
        {
            return;
        }
        // Close the idle connections of every database that is not active now.
        let reads = self.shared.reads().nodes;
        for (node, pool) in self.pools.iter().enumerate() {
            if Some(node) == snapshot.node || (node < 64 && reads & (1 << node) != 0) {
                continue;
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let pool = pool.clone();
                runtime.spawn(async move { close_idle(&pool).await });
            }
        }
    }
}

/// Closes the connections sitting idle in `pool`; returns how many. (Connections in use when routing
/// left their database are closed when given back, by the pools `connect_lazy` builds.)
pub async fn close_idle<DB: Database>(pool: &Pool<DB>) -> usize {
    use sqlx::Connection;
    let mut closed = 0;
    // `try_acquire` only hands out idle connections and never opens one or waits.
    while let Some(connection) = pool.try_acquire() {
        let _ = connection.detach().close().await;
        closed += 1;
        if closed >= 1024 {
            break;
        }
    }
    closed
}
