//! `eddy bench nexmark`: Nexmark queries on the dataflow core over the in-process generator or,
//! with `--data DIR`, over the CSV files `eddy gen nexmark` wrote there (the same files a peer
//! engine reads; parsing is then part of the work), as JSON lines: per query and parallelism, the median over `--repeat` runs of the wall time,
//! events/s (the stream's events, as Nexmark counts them), the rows of the kinds the query
//! reads per second (eddy generates only those; a file-based peer reads every event), and the
//! CPU time of the process (cores × seconds, from `/proc/self/stat`). The result goes to a
//! discarding sink, like Flink's blackhole connector.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use clap::Args;
use eddy_core::dataflow::{Dataflow, DataflowConfig};
use eddy_core::nexmark::{NexmarkConfig, NexmarkFiles, NexmarkGenerator, NexmarkInput, Query};
use eddy_core::sink::Sink;

/// Arguments of `eddy bench nexmark`.
#[derive(Debug, Args)]
pub struct NexmarkBenchArgs {
    /// Queries to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q0,q1,q2,q3,q4,q5,q7,q8,q9,q11"
    )]
    queries: Vec<String>,
    /// Events in the stream (people, auctions and bids together), generated in the process.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Read the events from this directory of `eddy gen nexmark` instead (its manifest gives
    /// their number; `--events` and `--seed` do not apply).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Parallelism levels (sources split their rows across as many subtasks).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    parallelism: Vec<usize>,
    /// Runs per configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Counts nothing, keeps nothing: the end of a benchmark job.
#[derive(Debug, Clone, Default)]
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _batch: &RecordBatch) -> eddy_core::Result<()> {
        Ok(())
    }
}

/// Runs `eddy bench nexmark`.
pub fn run(args: NexmarkBenchArgs) -> anyhow::Result<()> {
    let queries = args
        .queries
        .iter()
        .map(|q| q.parse::<Query>())
        .collect::<eddy_core::Result<Vec<_>>>()?;
    let input = match &args.data {
        Some(dir) => NexmarkInput::Files(
            NexmarkFiles::open(dir).with_context(|| format!("opening {}", dir.display()))?,
        ),
        None => NexmarkInput::Generated {
            generator: Arc::new(NexmarkGenerator::new(NexmarkConfig {
                seed: args.seed,
                ..NexmarkConfig::default()
            })),
            events: args.events,
        },
    };
    let events = input.events();
    for query in queries {
        let input_rows: u64 = query.inputs().iter().map(|k| k.count(events)).sum();
        for &p in &args.parallelism {
            let mut runs = Vec::new();
            for _ in 0..args.repeat.max(1) {
                runs.push(once(query, &input, p)?);
            }
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (seconds, cpu, rows_out) = runs[runs.len() / 2];
            let line = serde_json::json!({
                "bench": "nexmark",
                "system": "eddy",
                "input": if args.data.is_some() { "files" } else { "generator" },
                "query": query.name(),
                "parallelism": p,
                "events": events,
                "input_rows": input_rows,
                "output_rows": rows_out,
                "seconds": seconds,
                "events_per_s": events as f64 / seconds,
                "input_rows_per_s": input_rows as f64 / seconds,
                "cpu_seconds": (cpu * 100.0).round() / 100.0,
                "events_per_cpu_s": events as f64 / cpu.max(1e-9),
            });
            println!("{line}");
        }
    }
    Ok(())
}

/// One run: wall seconds, CPU seconds, rows out. A malformed input line fails the run.
fn once(query: Query, input: &NexmarkInput, parallelism: usize) -> anyhow::Result<(f64, f64, u64)> {
    let flow = Dataflow::new(DataflowConfig {
        name: format!("nexmark {}", query.name()),
        ..DataflowConfig::default()
    });
    query
        .build_on(&flow, input, parallelism)
        .sink("out", Discard)
        .parallelism(parallelism);
    let cpu = cpu_seconds()?;
    let start = Instant::now();
    let summary = flow.run()?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu;
    if summary.dead_letters > 0 {
        anyhow::bail!(
            "{}: {} malformed input lines (dead letters): the files are not what eddy gen nexmark wrote",
            query.name(),
            summary.dead_letters
        );
    }
    let rows = summary.operator("out").map_or(0, |o| o.records_in);
    Ok((seconds, cpu, rows))
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // fields after the command name (which may hold spaces) start at field 3
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/self/stat: no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        let v: u64 = fields
            .get(i)
            .context("/proc/self/stat: too few fields")?
            .parse()
            .context("/proc/self/stat: not a number")?;
        // USER_HZ is 100 on every Linux ABI eddy runs on
        Ok(v as f64 / 100.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name
    Ok(ticks(11)? + ticks(12)?)
}
