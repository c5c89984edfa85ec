//! `eddy bench`: throughput benchmarks on the project's own data, reported as JSON lines with
//! medians over repeated runs (never timed assertions in tests).
//!
//! `eddy bench window`: CSV source → event time → hash by a categorical column → per-key
//! tumbling-window count → CSV sink, over `eddy gen ctr --event-time` data, at each requested
//! parallelism. For a one-core figure run it under `taskset -c 0`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::agg::AggArgs;
use super::gen::{self, CtrArgs};
use super::io::DataFormat;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Keyed tumbling-window count over a CSV click stream, end to end.
    Window(WindowBenchArgs),
    /// Model serving over HTTP on loopback: latency and throughput by concurrency.
    Serve(super::bench_serve::ServeBenchArgs),
    /// Checkpoints aligned vs unaligned under backpressure; recovery per failover mode.
    Checkpoint(super::bench_checkpoint::CheckpointBenchArgs),
    /// Nexmark queries over the in-process generator: events/s and CPU seconds.
    Nexmark(super::bench_nexmark::NexmarkBenchArgs),
    /// Worker processes under failover: a `kill -9`ed worker's recovery time, its peers'
    /// throughput while it is down.
    Failover(super::bench_failover::FailoverBenchArgs),
}

/// Arguments of `eddy bench window`.
#[derive(Debug, Args)]
pub struct WindowBenchArgs {
    /// Rows of generated data (ignored with --data).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// An existing CSV with an event-time column `ts` (default: generated under --dir).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Working directory for generated data and outputs.
    #[arg(long, default_value = "target/eddy-bench")]
    dir: PathBuf,
    /// Parallelism levels to measure (source splits, window subtasks and worker threads).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    parallelism: Vec<usize>,
    /// Runs per level (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Key column.
    #[arg(long, default_value = "c3")]
    key: String,
    /// Tumbling window size.
    #[arg(long, default_value = "10s", value_parser = super::duration::parse)]
    window: Duration,
}

/// Runs `eddy bench …`.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Window(args) => window(args),
        BenchCommand::Serve(args) => super::bench_serve::run(args),
        BenchCommand::Checkpoint(args) => super::bench_checkpoint::run(args),
        BenchCommand::Nexmark(args) => super::bench_nexmark::run(args),
        BenchCommand::Failover(args) => super::bench_failover::run(args),
    }
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn window(args: WindowBenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let data = match &args.data {
        Some(d) => d.clone(),
        None => {
            let path = args.dir.join(format!("ctr_{}_ts.csv", args.rows));
            if !path.exists() {
                eprintln!("generating {} rows into {}", args.rows, path.display());
                gen::ctr(CtrArgs {
                    rows: args.rows,
                    seed: eddy_core::datagen::ctr::DEFAULT_SEED,
                    format: Some(gen::Format::Csv),
                    out: path.clone(),
                    oracle: false,
                    event_time: true,
                    rate: None,
                })?;
            }
            path
        }
    };
    for &p in &args.parallelism {
        let mut seconds = Vec::with_capacity(args.repeat);
        let mut rows = 0;
        let mut windows = 0;
        for _ in 0..args.repeat.max(1) {
            let job = AggArgs {
                data: data.clone(),
                format: Some(DataFormat::Csv),
                schema: None,
                max_record_bytes: None,
                key: vec![args.key.clone()],
                time: "ts".into(),
                out_of_orderness: Duration::from_millis(500),
                window: Some(args.window),
                slide: None,
                session: None,
                lateness: Duration::ZERO,
                aggs: vec!["count".into()],
                out: Some(args.dir.join(format!("window_counts_p{p}.csv"))),
                late: None,
                follow: false,
                stop_when_idle: None,
                parallelism: p,
                dead_letter: None,
                on_error: Default::default(),
                json: false,
                state: Default::default(),
            };
            let flow = job.build(job.config())?;
            let start = Instant::now();
            let summary = flow.run()?;
            seconds.push(start.elapsed().as_secs_f64());
            rows = summary.operators.first().map_or(0, |o| o.records_out);
            windows = summary.operator("window").map_or(0, |o| o.records_out);
        }
        let med = median(seconds.clone());
        println!(
            "{}",
            serde_json::json!({
                "bench": "window",
                "parallelism": p,
                "rows": rows,
                "windows_out": windows,
                "median_s": med,
                "rows_per_s": rows as f64 / med,
                "runs_s": seconds,
            })
        );
    }
    Ok(())
}
