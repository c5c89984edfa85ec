//! Subcommands of the `eddy` binary, one module each.
//!
//! | module | command |
//! |---|---|
//! | [`gen`] | `eddy gen ctr`: the synthetic click stream |
//! | [`agg`] | `eddy agg`: keyed event-time window aggregation over a file |
//! | [`bench`] | `eddy bench`: throughput benchmarks |
//! | [`learn`] | `eddy learn`: online training with progressive validation |
//! | [`predict`] | `eddy predict`: score a file with a saved model |
//! | [`io`] | sources and sinks chosen by file extension |
//! | [`duration`] | `10s`-style durations |
//! | [`progress`] | progress bars that stay silent off a terminal |

pub mod agg;
pub mod bench;
pub mod duration;
pub mod gen;
pub mod io;
pub mod learn;
pub mod predict;
pub mod progress;

use clap::{Parser, Subcommand};

/// eddy: online machine-learning pipelines.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate synthetic data.
    #[command(subcommand)]
    Gen(gen::GenCommand),
    /// Aggregate a file per key over event-time windows (bounded, or following the file).
    Agg(agg::AggArgs),
    /// Train an online learner on a file with progressive validation; print one JSON line.
    Learn(learn::LearnArgs),
    /// Score a file with a model saved by `eddy learn --save`.
    Predict(predict::PredictArgs),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(cmd) => gen::run(cmd),
        Command::Agg(args) => agg::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Learn(args) => learn::run(args),
        Command::Predict(args) => predict::run(args),
    }
}
