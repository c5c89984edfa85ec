//! `eddy agg`: a keyed event-time window aggregation over a file, bounded or following it.
//!
//! ```text
//! eddy agg --data clicks.csv --key c3 --time ts --window 10s --agg count --agg mean:f0 --out out.csv
//! ```
//!
//! With `--checkpoint-dir` the job checkpoints (every `--checkpoint-interval`, and on demand),
//! resumes from its newest checkpoint, takes the savepoints `eddy savepoint` asks for (and
//! `--savepoint-on-stop NAME` when a followed job is stopped), and `--from-savepoint` starts it
//! from one, the window possibly at another parallelism (`--window-parallelism`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use eddy_core::dataflow::{CheckpointConfig, Dataflow, DataflowConfig, JobHandle};
use eddy_core::metrics::JobSummary;
use eddy_core::source::ErrorPolicy;
use eddy_core::window::{Agg, WindowSpec, LATE};

use super::{duration, io, progress, savepoint};

/// Arguments of `eddy agg`.
#[derive(Debug, Clone, Args)]
pub struct AggArgs {
    /// Input file or directory (CSV, JSON lines or Parquet, by extension).
    #[arg(long)]
    pub data: PathBuf,
    /// Input format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<io::DataFormat>,
    /// Column types, `name:type,…` (int64, int32, float64, float32, utf8, bool); default: inferred
    /// from the first rows.
    #[arg(long)]
    pub schema: Option<String>,
    /// Key column(s); repeat or separate with commas.
    #[arg(long, value_delimiter = ',', required = true)]
    pub key: Vec<String>,
    /// Event-time column (Int64 milliseconds or an Arrow timestamp).
    #[arg(long)]
    pub time: String,
    /// Bound on out-of-order event time (watermark = max time seen − bound).
    #[arg(long, default_value = "500ms", value_parser = duration::parse)]
    pub out_of_orderness: Duration,
    /// Window size (tumbling; sliding with --slide).
    #[arg(long, value_parser = duration::parse, conflicts_with = "session")]
    pub window: Option<Duration>,
    /// Slide of sliding windows.
    #[arg(long, value_parser = duration::parse, requires = "window")]
    pub slide: Option<Duration>,
    /// Session windows closed by this gap of inactivity.
    #[arg(long, value_parser = duration::parse)]
    pub session: Option<Duration>,
    /// How long fired windows accept late records (and fire again).
    #[arg(long, default_value = "0s", value_parser = duration::parse)]
    pub lateness: Duration,
    /// Aggregates: `count`, or `sum|mean|min|max|last|distinct:COLUMN`; repeat for several.
    #[arg(long = "agg", default_value = "count")]
    pub aggs: Vec<String>,
    /// Output file (CSV, JSON lines or Parquet by extension); default: stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where late records go (same formats); default: counted only.
    #[arg(long)]
    pub late: Option<PathBuf>,
    /// Follow the input as it grows (stop with Ctrl-C, or with --stop-when-idle).
    #[arg(long)]
    pub follow: bool,
    /// With --follow: stop once no new record arrived for this long.
    #[arg(long, value_parser = duration::parse, requires = "follow")]
    pub stop_when_idle: Option<Duration>,
    /// Subtasks of the source (bounded: byte-range splits) and of the window.
    #[arg(long, default_value_t = 1)]
    pub parallelism: usize,
    /// Dead-letter file for malformed records (JSON lines). A record whose event time is
    /// empty is one of them.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// What a malformed record does: `dead-letter` (default) or `fail`.
    #[arg(long, default_value = "dead-letter")]
    pub on_error: ErrorPolicy,
    /// Longest CSV / JSON-lines record in bytes; a longer one is a dead letter (default 16 MiB).
    #[arg(long)]
    pub max_record_bytes: Option<usize>,
    /// Print the job summary as JSON on stdout after the output (requires --out).
    #[arg(long, requires = "out")]
    pub json: bool,
    /// Checkpoints, savepoints and rescaling.
    #[command(flatten)]
    pub state: AggStateArgs,
}

/// The checkpoint, savepoint and rescaling flags of `eddy agg`.
#[derive(Debug, Clone, Default, Args)]
pub struct AggStateArgs {
    /// Checkpoint directory: the job resumes from its newest checkpoint, and takes the
    /// savepoints `eddy savepoint --checkpoint-dir DIR NAME` asks for while it runs.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between periodic checkpoints (default: only savepoints).
    #[arg(long, value_parser = duration::parse, requires = "checkpoint_dir")]
    pub checkpoint_interval: Option<Duration>,
    /// Start from this savepoint (`DIR/savepoints/NAME`), possibly at another parallelism of
    /// the window (the file source keeps its parallelism); the checkpoint directory's earlier
    /// checkpoints are discarded.
    #[arg(long, requires = "checkpoint_dir")]
    pub from_savepoint: Option<PathBuf>,
    /// When a followed job is stopped (Ctrl-C, --stop-when-idle), first take the savepoint
    /// NAME in `DIR/savepoints/NAME`.
    #[arg(long, requires = "checkpoint_dir")]
    pub savepoint_on_stop: Option<String>,
    /// Subtasks of the window when they differ from --parallelism (e.g. to rescale the window
    /// from a savepoint while the source keeps its splits).
    #[arg(long)]
    pub window_parallelism: Option<usize>,
}

/// Parses `count` / `KIND:COLUMN` into an aggregate named `count` / `KIND_COLUMN`.
pub fn parse_agg(spec: &str) -> anyhow::Result<Agg> {
    let (kind, column) = match spec.split_once(':') {
        Some((k, c)) => (k, Some(c)),
        None => (spec, None),
    };
    let alias = |c: &str| format!("{kind}_{c}");
    Ok(match (kind, column) {
        ("count", None) => Agg::count("count"),
        ("sum", Some(c)) => Agg::sum(c, &alias(c)),
        ("mean", Some(c)) => Agg::mean(c, &alias(c)),
        ("min", Some(c)) => Agg::min(c, &alias(c)),
        ("max", Some(c)) => Agg::max(c, &alias(c)),
        ("last", Some(c)) => Agg::last(c, &alias(c)),
        ("distinct", Some(c)) => Agg::distinct_count(c, &alias(c)),
        _ => bail!("--agg `{spec}`: expected `count` or `sum|mean|min|max|last|distinct:COLUMN`"),
    })
}

impl AggArgs {
    fn window_spec(&self) -> anyhow::Result<WindowSpec> {
        let spec = match (self.window, self.slide, self.session) {
            (Some(size), None, None) => WindowSpec::tumbling(size),
            (Some(size), Some(slide), None) => WindowSpec::sliding(size, slide),
            (None, None, Some(gap)) => WindowSpec::session(gap),
            _ => bail!("give --window SIZE [--slide S] or --session GAP"),
        };
        Ok(spec.allowed_lateness(self.lateness))
    }

    /// Builds the dataflow: source → event time → key → window → sink (+ late sink).
    pub fn build(&self, config: DataflowConfig) -> anyhow::Result<Dataflow> {
        let aggs = self
            .aggs
            .iter()
            .map(|a| parse_agg(a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let spec = self.window_spec()?;
        let flow = Dataflow::new(config);
        let p = self.parallelism.max(1);
        let input = io::InputOptions {
            format: self.format,
            schema: self.schema.as_deref().map(io::parse_schema).transpose()?,
            follow: self.follow,
            parallelism: p,
            max_record_bytes: self.max_record_bytes,
            // a record without an event time cannot be windowed: a dead letter, not a failure
            required: vec![self.time.clone()],
        };
        let (source, _) = io::source_with(&flow, &self.data, &input)?;
        let windows = source
            .assign_timestamps("event time", &self.time, self.out_of_orderness)
            .key_by(self.key.clone())
            .window("window", spec, aggs)
            .parallelism(self.state.window_parallelism.unwrap_or(p).max(1));
        let checkpoints = self.state.checkpoint_dir.as_deref();
        io::sink(&windows, "sink", self.out.as_deref(), checkpoints)?;
        if let Some(late) = &self.late {
            io::sink(
                &windows.side_output(LATE),
                "late sink",
                Some(late),
                checkpoints,
            )?;
        }
        Ok(flow)
    }

    /// The job settings these arguments ask for.
    pub fn config(&self) -> DataflowConfig {
        DataflowConfig {
            name: "agg".into(),
            threads: self.parallelism.max(1),
            dead_letter_path: self.dead_letter.clone(),
            on_error: self.on_error,
            checkpoint: CheckpointConfig {
                dir: self.state.checkpoint_dir.clone(),
                interval: self.state.checkpoint_interval,
                restore_from: self.state.from_savepoint.clone(),
                ..CheckpointConfig::default()
            },
            ..DataflowConfig::default()
        }
    }
}

/// Runs `eddy agg`. A job that fails leaves no partial output behind: the files it was
/// writing are removed.
pub fn run(args: AggArgs) -> anyhow::Result<()> {
    let flow = args.build(args.config())?;
    let handle = flow.start().context("starting the job")?;
    let summary = match supervise(handle, &args) {
        Ok(summary) => summary,
        Err(e) => {
            for out in [&args.out, &args.late].into_iter().flatten() {
                if std::fs::remove_file(out).is_ok() {
                    eprintln!("removed the partial output {}", out.display());
                }
            }
            return Err(e);
        }
    };
    eprint!("{summary}");
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

/// Waits for the job: shows progress on a terminal, stops a followed job on Ctrl-C or when idle.
fn supervise(handle: JobHandle, args: &AggArgs) -> anyhow::Result<JobSummary> {
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if args.follow {
        let flag = interrupted.clone();
        super::shutdown::on_signal(
            move || {
                eprintln!("\nstopping: finishing what was read (Ctrl-C again to abort)");
                flag.store(true, std::sync::atomic::Ordering::SeqCst)
            },
            true,
        )?;
    }
    let bar = if args.follow {
        progress::bar(0, "rows")
    } else {
        progress::byte_bar(0)
    };
    let mut last_rows = 0;
    let mut last_change = Instant::now();
    let mut stopping = false;
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let (done, total) = handle.metrics().progress();
        let rows: u64 = handle
            .metrics()
            .snapshot()
            .first()
            .map_or(0, |s| s.records_out);
        if args.follow {
            bar.set_position(rows);
        } else {
            bar.set_length(total);
            bar.set_position(done);
        }
        if rows != last_rows {
            last_rows = rows;
            last_change = Instant::now();
        }
        let idle = args
            .stop_when_idle
            .is_some_and(|d| last_change.elapsed() >= d);
        if let Some(dir) = &args.state.checkpoint_dir {
            savepoint::serve_requests(&handle, dir);
        }
        if !stopping && (idle || interrupted.load(std::sync::atomic::Ordering::SeqCst)) {
            if let Some(name) = &args.state.savepoint_on_stop {
                let path = handle
                    .savepoint(name)
                    .with_context(|| format!("taking savepoint `{name}` on stop"))?;
                eprintln!("savepoint `{name}`: {}", path.display());
            }
            handle.stop();
            stopping = true;
        }
    }
    bar.finish_and_clear();
    Ok(handle.join()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agg_specs() {
        assert!(parse_agg("count").is_ok());
        assert!(parse_agg("mean:f0").is_ok());
        assert!(parse_agg("median:f0").is_err());
        assert!(parse_agg("sum").is_err());
    }
}
