//! The fleet benchmark: N engines (in this process, each with its own Redis client) sharing one real
//! Redis, checking scripted probes. Measures the Redis commands per check (the growth of Redis's
//! `total_commands_processed` over the checks all engines ran, less what the servers did without
//! any engine) in steady state and under a flapping primary, and the spread between the first and
//! the last engine to switch. The Redis is one node, a primary with a replica under three
//! Sentinels (commands counted on the primary), or a cluster of three primaries and three replicas
//! (commands summed over the primaries).

use dbfailover::core::{RedisNodes, StateSettings, StoreKind};
use dbfailover::engine::FnProbe;
use dbfailover::{
    ActiveRole, Config, DatabaseUrl, FailoverHandle, FailoverSystem, ProbeError, ProbeReport,
    Schedule,
};
use dbfailover_tests::cache::{CacheKind, CacheServer, ClusterBed, MASTER_NAME, SentinelBed};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the shared Redis runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Topology {
    /// One node.
    Single,
    /// A primary and a replica under three Sentinels.
    Sentinel,
    /// Three primaries and three replicas.
    Cluster,
}

impl std::str::FromStr for Topology {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "single" => Ok(Self::Single),
            "sentinel" => Ok(Self::Sentinel),
            "cluster" => Ok(Self::Cluster),
            other => Err(format!(
                "unknown topology `{other}` (single, sentinel, cluster)"
            )),
        }
    }
}

/// A running Redis of one topology.
enum Bed {
    Single(CacheServer),
    Sentinel(Box<SentinelBed>),
    Cluster(Box<ClusterBed>),
}

impl Bed {
    fn start(topology: Topology) -> Self {
        match topology {
            Topology::Single => Self::Single(CacheServer::start(CacheKind::Redis)),
            Topology::Sentinel => Self::Sentinel(Box::new(SentinelBed::start())),
            Topology::Cluster => Self::Cluster(Box::new(ClusterBed::start())),
        }
    }

    /// The `[state]` settings that reach it.
    fn state(&self) -> Result<StateSettings, String> {
        let url = |u: &str| DatabaseUrl::parse(u).map_err(|e| e.to_string());
        let nodes = |urls: Vec<String>| -> Result<RedisNodes, String> {
            urls.iter()
                .map(|u| url(u))
                .collect::<Result<Vec<_>, _>>()
                .map(RedisNodes::from)
        };
        let mut state = StateSettings::default();
        state.store = StoreKind::Redis;
        state.prefix = "bench".into();
        state.ttl = Duration::from_secs(300);
        state.timeout = Duration::from_millis(500);
        match self {
            Self::Single(redis) => state.url = Some(url(&redis.url())?),
            Self::Sentinel(bed) => {
                state.sentinels = nodes(bed.sentinel_urls())?;
                state.master_name = Some(MASTER_NAME.into());
                state.node_auth = Some(url(&bed.node_auth())?);
            }
            Self::Cluster(bed) => state.cluster = nodes(bed.urls())?,
        }
        Ok(state)
    }

    /// Commands processed so far by the primaries.
    fn commands(&self) -> u64 {
        match self {
            Self::Single(redis) => commands(redis),
            Self::Sentinel(bed) => bed.primary_commands_processed(),
            Self::Cluster(bed) => bed.primaries_commands_processed().0,
        }
    }
}

/// One fleet size's results.
#[derive(Debug, serde::Serialize)]
struct Row {
    topology: Topology,
    instances: usize,
    steady_commands_per_check: f64,
    flapping_commands_per_check: f64,
    switch_spread_ms: Vec<f64>,
    unavailable_events: usize,
}

fn commands(redis: &CacheServer) -> u64 {
    redis
        .redis_cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn all_reach(engines: &[FailoverHandle], role: ActiveRole) -> Result<f64, String> {
    let started = Instant::now();
    let mut reached: Vec<Option<Instant>> = vec![None; engines.len()];
    while reached.iter().any(Option::is_none) {
        for (i, e) in engines.iter().enumerate() {
            if reached[i].is_none() && e.active().role == role {
                reached[i] = Some(Instant::now());
            }
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(format!("not every engine reached {role}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let times: Vec<Instant> = reached.into_iter().flatten().collect();
    let spread = times.iter().max().copied().unwrap_or(started)
        - times.iter().min().copied().unwrap_or(started);
    Ok(spread.as_secs_f64() * 1000.0)
}

async fn one(
    topology: Topology,
    size: usize,
    interval: Duration,
    steady: Duration,
    flaps: usize,
) -> Result<Row, String> {
    let redis = Bed::start(topology);
    let state = redis.state()?;
    // What the servers do without any engine (Sentinels' and replicas' own commands, and the
    // measurement's `redis-cli` calls), per second.
    const BASELINE: Duration = Duration::from_secs(3);
    let b0 = redis.commands();
    tokio::time::sleep(BASELINE).await;
    let background = (redis.commands() - b0) as f64 / BASELINE.as_secs_f64();
    let primary_up = Arc::new(AtomicBool::new(true));
    let checks = Arc::new(AtomicU64::new(0));
    let probe = |up: Option<Arc<AtomicBool>>| {
        let checks = Arc::clone(&checks);
        FnProbe::new(move |_| {
            checks.fetch_add(1, Ordering::Relaxed);
            let ok = up.as_ref().is_none_or(|u| u.load(Ordering::Relaxed));
            async move {
                if ok {
                    Ok(ProbeReport::default())
                } else {
                    Err(ProbeError::new("connection refused"))
                }
            }
        })
    };
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut engines = Vec::new();
    for _ in 0..size {
        let url = |s: &str| DatabaseUrl::parse(s).map_err(|e| e.to_string());
        let mut config = Config::with_databases(
            ("main", url("postgres://app@127.0.0.1:1/app")?),
            ("standby", url("postgres://app@127.0.0.1:2/app")?),
        );
        config.health_check.interval = Schedule::Every(interval);
        config.health_check.timeout = Duration::from_millis(300);
        config.health_check.fast_interval = Some(Duration::from_millis(20));
        config.state = state.clone();
        let store = dbfailover::store::from_settings(&state).map_err(|e| e.to_string())?;
        let engine = FailoverSystem::builder(config)
            .probe("main", probe(Some(Arc::clone(&primary_up))))
            .probe("standby", probe(None))
            .shared_store(store)
            .build()
            .map_err(|e| e.to_string())?
            .start();
        let counter = Arc::clone(&unavailable);
        engine
            .subscribe(crate::fleet_listener::listener(counter))
            .await
            .map_err(|e| e.to_string())?;
        engines.push(engine);
    }
    tokio::time::sleep(interval * 6).await;

    // Steady state.
    let (c0, k0) = (redis.commands(), checks.load(Ordering::Relaxed));
    tokio::time::sleep(steady).await;
    let (c1, k1) = (redis.commands(), checks.load(Ordering::Relaxed));
    let engines_only =
        |c: u64, took: Duration| (c as f64 - background * took.as_secs_f64()).max(0.0);
    let steady_per_check = engines_only(c1 - c0, steady) / (k1 - k0).max(1) as f64;

    // Flapping: down until every engine switched, up until every engine switched back.
    let mut spreads = Vec::new();
    let flapping_from = Instant::now();
    let (c2, k2) = (redis.commands(), checks.load(Ordering::Relaxed));
    for _ in 0..flaps {
        primary_up.store(false, Ordering::Relaxed);
        spreads.push(all_reach(&engines, ActiveRole::Failover).await?);
        primary_up.store(true, Ordering::Relaxed);
        spreads.push(all_reach(&engines, ActiveRole::Primary).await?);
    }
    let (c3, k3) = (redis.commands(), checks.load(Ordering::Relaxed));
    let flapping_per_check =
        engines_only(c3 - c2, flapping_from.elapsed()) / (k3 - k2).max(1) as f64;
    for engine in engines {
        drop(engine);
    }
    Ok(Row {
        topology,
        instances: size,
        steady_commands_per_check: steady_per_check,
        flapping_commands_per_check: flapping_per_check,
        switch_spread_ms: spreads,
        unavailable_events: unavailable.load(Ordering::Relaxed) as usize,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// A line plot of commands per check against the fleet size. No plotting dependency.
fn svg(rows: &[Row]) -> String {
    let (w, h, left, bottom) = (520.0, 300.0, 50.0, 40.0);
    let max_n = rows.iter().map(|r| r.instances).max().unwrap_or(1) as f64;
    let max_y = rows
        .iter()
        .map(|r| {
            r.flapping_commands_per_check
                .max(r.steady_commands_per_check)
        })
        .fold(5.0_f64, f64::max);
    let x = |n: usize| left + (n as f64 / max_n) * (w - left - 20.0);
    let y = |v: f64| (h - bottom) - (v / max_y) * (h - bottom - 30.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><text x="{left}" y="16">Redis commands per check against the number of instances</text>"#
    );
    let _ = write!(
        out,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#888" stroke-dasharray="4"/><text x="{}" y="{}">target: 5</text>"##,
        y(5.0),
        w - 20.0,
        y(5.0),
        w - 70.0,
        y(5.0) - 4.0
    );
    for (label, color, pick) in [("steady", "#3b6fd6", 0), ("flapping primary", "#d23c3c", 1)] {
        let points: Vec<String> = rows
            .iter()
            .map(|r| {
                let v = if pick == 0 {
                    r.steady_commands_per_check
                } else {
                    r.flapping_commands_per_check
                };
                format!("{:.1},{:.1}", x(r.instances), y(v))
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        if let Some(last) = rows.last() {
            let v = if pick == 0 {
                last.steady_commands_per_check
            } else {
                last.flapping_commands_per_check
            };
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" fill="{color}">{label}</text>"#,
                x(last.instances) - 90.0,
                y(v) - 6.0
            );
        }
    }
    for r in rows {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}">{}</text>"#,
            x(r.instances) - 6.0,
            h - bottom + 16.0,
            r.instances
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}">instances</text></svg>"#,
        w / 2.0,
        h - 6.0
    );
    out
}

pub(crate) fn run(
    topologies: &[Topology],
    sizes: &[usize],
    interval_ms: u64,
    steady_secs: u64,
    flaps: usize,
    json: &Path,
    plot: &Path,
) -> Result<(), String> {
    let interval = Duration::from_millis(interval_ms);
    let system = actix::System::new();
    let mut rows = Vec::new();
    for &topology in topologies {
        for &size in sizes {
            let row = system.block_on(one(
                topology,
                size,
                interval,
                Duration::from_secs(steady_secs),
                flaps,
            ))?;
            println!(
                "{:>8?} {:>4} instances: {:.2} commands/check steady, {:.2} flapping; switch spread median {:.1} ms, max {:.1} ms; CacheUnavailable {}",
                row.topology,
                row.instances,
                row.steady_commands_per_check,
                row.flapping_commands_per_check,
                median(&row.switch_spread_ms),
                row.switch_spread_ms.iter().copied().fold(0.0, f64::max),
                row.unavailable_events
            );
            rows.push(row);
        }
    }
    if let Some(parent) = json.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        json,
        serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let single: Vec<Row> = rows
        .into_iter()
        .filter(|r| r.topology == Topology::Single)
        .collect();
    if !single.is_empty() {
        std::fs::write(plot, svg(&single)).map_err(|e| e.to_string())?;
    }
    Ok(())
}
