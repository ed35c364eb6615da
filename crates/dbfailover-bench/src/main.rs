//! `dbfailover-bench`: the failover benchmark on real PostgreSQL servers (beside HAProxy when it is
//! installed), the `GetActiveConnection` throughput, and the soak.
//!
//! ## Layout
//! - `failover.rs`: outage and restore windows, kill -9 and SIGSTOP, ours and HAProxy's, median of runs.
//! - `actor.rs`: `GetActiveConnection` round trips from another thread, 1 and 64 concurrent callers.
//! - `overhead.rs`: a real `SELECT 1` through the routed pool beside a plain pool.
//! - `soak.rs`: 10,000 transitions in virtual time, and a real flapping server: memory and tasks.
//! - `fleet.rs`: N engines on one real Redis (one node, under Sentinel, or a cluster): Redis
//!   commands per check and switch spread, 1 to 100.
//! - `plot.rs`: the SVG of the failover window.
//!
//! Run it with `scripts/bench` (see `docs/benchmarks.md`).

mod actor;
mod failover;
mod fleet;
mod fleet_listener;
mod overhead;
mod plot;
mod soak;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Benchmarks of dbfailover.
#[derive(Debug, Parser)]
#[command(name = "dbfailover-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Outage and restore windows on two real PostgreSQL, then MariaDB, servers: ours (with and
    /// without retries) and HAProxy's (plain and best settings), 1 and 8 clients.
    Failover {
        /// Repetitions of each scenario (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// The databases to run on.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "postgres,mariadb"
        )]
        databases: Vec<failover::Db>,
        /// Concurrent clients, each sending queries back to back.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        clients: Vec<usize>,
        /// Where to write the results as JSON.
        #[arg(long, default_value = "target/bench/failover.json")]
        json: PathBuf,
        /// Where to write the plot of the failover window.
        #[arg(long, default_value = "docs/failover-window.svg")]
        svg: PathBuf,
    },
    /// `GetActiveConnection` round trips per second from another thread.
    Actor {
        /// Calls per caller.
        #[arg(long, default_value_t = 50_000)]
        calls: usize,
    },
    /// The cost of routing on a real `SELECT 1`, beside a plain pool.
    Overhead {
        /// Interleaved rounds (the median is reported).
        #[arg(long, default_value_t = 21)]
        rounds: usize,
        /// Queries per round.
        #[arg(long, default_value_t = 2000)]
        per_round: usize,
    },
    /// N engines sharing one real Redis: commands per check and switch spread for each fleet size.
    Fleet {
        /// Where Redis runs: `single` (one node), `sentinel` (a primary and a replica under three
        /// Sentinels), `cluster` (three primaries, three replicas).
        #[arg(long, value_delimiter = ',', default_value = "single,sentinel,cluster")]
        topologies: Vec<fleet::Topology>,
        /// Fleet sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,10,30,100")]
        sizes: Vec<usize>,
        /// Check interval of every engine, in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Seconds of steady state measured.
        #[arg(long, default_value_t = 10)]
        steady_secs: u64,
        /// Primary outages (each down then up again).
        #[arg(long, default_value_t = 3)]
        flaps: usize,
        /// Where to write the results as JSON.
        #[arg(long, default_value = "target/bench/fleet.json")]
        json: PathBuf,
        /// Where to write the plot.
        #[arg(long, default_value = "docs/fleet-commands.svg")]
        svg: PathBuf,
    },
    /// Memory and task count over many transitions.
    Soak {
        /// Transitions in virtual time.
        #[arg(long, default_value_t = 10_000)]
        transitions: usize,
        /// Seconds of a real PostgreSQL primary killed and restarted every 300 ms.
        #[arg(long, default_value_t = 60)]
        flap_seconds: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Failover {
            reps,
            databases,
            clients,
            json,
            svg,
        } => failover::run(reps, &databases, &clients, &json, &svg),
        Command::Actor { calls } => actor::run(calls),
        Command::Fleet {
            topologies,
            sizes,
            interval_ms,
            steady_secs,
            flaps,
            json,
            svg,
        } => fleet::run(
            &topologies,
            &sizes,
            interval_ms,
            steady_secs,
            flaps,
            &json,
            &svg,
        ),
        Command::Overhead { rounds, per_round } => overhead::run(rounds, per_round),
        Command::Soak {
            transitions,
            flap_seconds,
        } => soak::run(transitions, flap_seconds),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dbfailover-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
