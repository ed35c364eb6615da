//! `dbfailover-bench`: the failover benchmark on real PostgreSQL servers (beside HAProxy when it is
//! installed), the `GetActiveConnection` throughput, and the soak.
//!
//! ## Layout
//! - `failover.rs`: outage and restore windows, kill -9 and SIGSTOP, ours and HAProxy's, median of runs.
//! - `actor.rs`: `GetActiveConnection` round trips from another thread, 1 and 64 concurrent callers.
//! - `overhead.rs`: a real `SELECT 1` through the routed pool beside a plain pool.
//! - `soak.rs`: 10,000 transitions in virtual time, and a real flapping server: memory and tasks.
//! - `plot.rs`: the SVG of the failover window.
//!
//! Run it with `scripts/bench` (see `docs/benchmarks.md`).

mod actor;
mod failover;
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
    /// Outage and restore windows on two real PostgreSQL servers, ours and HAProxy's.
    Failover {
        /// Repetitions of each scenario (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
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
        Command::Failover { reps, json, svg } => failover::run(reps, &json, &svg),
        Command::Actor { calls } => actor::run(calls),
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
