//! Subcommands of the `eddy` binary, one module each.
//!
//! | module | command |
//! |---|---|
//! | [`gen`] | `eddy gen ctr`: the synthetic click stream |
//! | [`agg`] | `eddy agg`: keyed event-time window aggregation over a file |
//! | [`bench`] | `eddy bench`: throughput benchmarks |
//! | [`learn`] | `eddy learn`: flags → the library's training job (any learner of the registry, checkpoints on) |
//! | [`predict`] | `eddy predict`: score a file with a saved model |
//! | [`learn_parallel`] | `eddy learn --parallelism N --ps …`: the flags of data-parallel training through a parameter server |
//! | [`ps`] | `eddy ps serve`: one parameter-server shard over gRPC |
//! | [`worker`] | `eddy worker`: one training process of a job; `eddy learn --processes N`: N of them supervised |
//! | [`node_worker`] | `eddy node-worker`: one worker process of a workflow's `stream-train` node with `processes` |
//! | [`learn_publish`] | `eddy learn --registry/--name/--publish-every` → the job's publisher |
//! | [`models`] | `eddy models`: list registry models and versions, change stages |
//! | [`serve`] | `eddy serve`: HTTP/gRPC model serving with hot swap |
//! | [`bench_checkpoint`] | `eddy bench checkpoint`: checkpoint duration and recovery under backpressure |
//! | [`bench_failover`] | `eddy bench failover`: worker processes under `kill -9`: recovery time, peers' throughput |
//! | [`bench_nexmark`] | `eddy bench nexmark`: Nexmark queries, events/s and CPU seconds |
//! | [`bench_serve`] | `eddy bench serve`: serving latency and throughput on loopback |
//! | [`run`] | `eddy run`: execute a workflow spec |
//! | [`validate`] | `eddy validate`: check a workflow spec |
//! | [`status`] | `eddy status`: what a run did |
//! | [`ui`] | `eddy ui`: the dashboard of a run directory |
//! | [`savepoint`] | `eddy savepoint`: ask a running job for a named savepoint |
//! | [`io`] | sources and sinks chosen by file extension |
//! | [`duration`] | `10s`-style durations |
//! | [`progress`] | progress bars that stay silent off a terminal |
//! | [`shutdown`] | the shutdown signal of long-running commands: Ctrl-C or SIGTERM |

pub mod agg;
pub mod bench;
pub mod bench_checkpoint;
pub mod bench_failover;
pub mod bench_nexmark;
pub mod bench_serve;
pub mod duration;
pub mod gen;
pub mod io;
pub mod learn;
pub mod learn_parallel;
pub mod learn_publish;
pub mod models;
pub mod node_worker;
pub mod predict;
pub mod progress;
pub mod ps;
pub mod run;
pub mod savepoint;
pub mod serve;
pub mod shutdown;
pub mod status;
pub mod ui;
pub mod validate;
pub mod worker;

use clap::{Parser, Subcommand};

/// eddy: online machine-learning pipelines.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text or as one JSON object per line (on stderr). The level filter comes
    /// from `RUST_LOG`, or `EDDY_LOG` (an alias that wins when both are set); default `warn`.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal (and `NO_COLOR` is unset).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate synthetic data.
    #[command(subcommand)]
    Gen(gen::GenCommand),
    /// Aggregate a file per key over event-time windows (bounded, or following the file).
    Agg(agg::AggArgs),
    /// Train an online learner on a file with progressive validation; print one JSON line.
    Learn(Box<learn::LearnArgs>),
    /// One training process of a job of several: its share of a Kafka topic's partitions,
    /// the model in parameter-server shards (what `eddy learn --processes N` starts N of).
    Worker(Box<worker::WorkerArgs>),
    /// One worker process of a workflow's `stream-train` node with `processes = N` (what the
    /// node, or a Kubernetes StatefulSet, starts N of).
    NodeWorker(node_worker::NodeWorkerArgs),
    /// Score a file with a model saved by `eddy learn --save`.
    Predict(predict::PredictArgs),
    /// List the models and versions of a registry; promote, archive or pin versions.
    Models(models::ModelsArgs),
    /// Serve registry models over HTTP/JSON and gRPC, swapping in new versions live.
    Serve(serve::ServeArgs),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run parameter-server shards.
    #[command(subcommand)]
    Ps(ps::PsCommand),
    /// Run a workflow (TOML): train, evaluate, deploy and serve models as one DAG.
    Run(run::RunArgs),
    /// Check a workflow spec without running it.
    Validate(validate::ValidateArgs),
    /// Show what a workflow run did.
    Status(status::StatusArgs),
    /// Ask a running job (its --checkpoint-dir) to take a named savepoint.
    Savepoint(savepoint::SavepointArgs),
    /// Serve the dashboard of a workflow run directory (finished or running).
    Ui(ui::UiArgs),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(cmd) => gen::run(cmd),
        Command::Agg(args) => agg::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Ps(cmd) => ps::run(cmd),
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Status(args) => status::run(args),
        Command::Learn(args) => learn::run(*args),
        Command::Worker(args) => worker::run(*args),
        Command::NodeWorker(args) => node_worker::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Models(args) => models::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Savepoint(args) => savepoint::run(args),
        Command::Ui(args) => ui::run(args),
    }
}
