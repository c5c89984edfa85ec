//! `eddy learn`: trains a learner of the registry on a file with progressive validation
//! (predict each row, then learn it) and prints one JSON line:
//! `{"rows":…,"seconds":…,"rows_per_s":…,"logloss":…,"auc":…,"accuracy":…}`.
//!
//! It parses flags and calls the library's training job
//! ([`eddy_workflow::train::TrainJob`]): numeric columns are standardized with running
//! statistics, other columns hashed, with optional hashed crosses; the learner and its params
//! come from the learner registry (`--model NAME`, `--param KEY=VALUE`, the same names and
//! params as a workflow's `learner` and `params`).
//!
//! Checkpoints are on by default (every 10 s, exactly-once failover) in
//! `eddy-runs/learn/<data-file-stem>-<fingerprint>/checkpoints`: a run that was killed or
//! stopped resumes from the newest checkpoint when started again with the same data, learner
//! and label; a run that read its whole input clears them. `--follow` keeps reading a growing
//! file until Ctrl-C or SIGTERM, which take a last checkpoint, publish and exit 0.
//!
//! `--processes N` trains in N `eddy worker` processes under a local supervisor instead (a
//! Kafka topic, the model in parameter-server shards; see [`super::worker`]).
//!
//! Savepoints as for `eddy agg`: a running job takes the ones `eddy savepoint --checkpoint-dir
//! DIR NAME` asks for, `--savepoint-on-stop NAME` takes one when it is stopped, and
//! `--from-savepoint DIR/savepoints/NAME` starts a new job from one (at the same parallelism:
//! learner state is not redistributed, and a restore at another one is refused).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use arrow::datatypes::{DataType, SchemaRef};
use clap::Args;
use eddy_algorithms::eval::{ProgressiveConfig, Tail};
use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};
use eddy_core::dataflow::{CheckpointMode, FailoverMode};
use eddy_core::source::ErrorPolicy;
use eddy_workflow::train::{TrainConfig, TrainJob};

use super::{io, progress};

/// Arguments of `eddy learn`.
#[derive(Debug, Clone, Args)]
pub struct LearnArgs {
    /// Serve `/metrics` and the dashboard's training page over HTTP on this address while
    /// the job runs (e.g. 127.0.0.1:0; the URL is printed).
    #[arg(long)]
    pub ui: Option<std::net::SocketAddr>,
    /// Training data (CSV, JSON lines or Parquet, by extension).
    #[arg(long)]
    pub data: PathBuf,
    /// Input format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<io::DataFormat>,
    /// Column types, `name:type,…` (default: inferred).
    #[arg(long)]
    pub schema: Option<String>,
    /// The label column (0/1 for classification, a number for regression, a class index).
    #[arg(long)]
    pub label: String,
    /// The learner: ftrl, sgd, sgd-regression, fm, pa, nb, softmax, streaming-kmeans (online);
    /// logistic, linear, kmeans, tree (batch, fitted on the whole file).
    #[arg(long, default_value = "ftrl", value_parser = parse_learner)]
    pub model: LearnerKind,
    /// A learner parameter as in a workflow's `params` table, `KEY=VALUE` in TOML syntax with
    /// dotted keys for nested tables: `--param ftrl.alpha=0.05`,
    /// `--param 'rule={kind="adagrad",eta=0.1}'`. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Shorthands for common params (`--alpha`, `--lr`, `--factors`, …).
    #[command(flatten)]
    pub shorthand: Shorthand,
    /// The feature space has 2^bits hashed features.
    #[arg(long, default_value_t = 22)]
    pub hash_bits: u32,
    /// A hashed cross of two or more categorical columns, e.g. `--cross c0,c1`; repeatable.
    #[arg(long = "cross", value_delimiter = ' ')]
    pub crosses: Vec<String>,
    /// Cross every pair of categorical columns (like Vowpal Wabbit's `-q cc`).
    #[arg(long)]
    pub cross_all: bool,
    /// Use numeric columns as they are (default: standardized with running statistics).
    #[arg(long)]
    pub no_scale: bool,
    /// Also report metrics on the last 90% of the rows (the peers' `*_tail90` columns).
    #[arg(long)]
    pub tail90: bool,
    /// Keep reading the file as it grows, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Save the trained pipeline and model to this file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Dead-letter file for malformed records.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// What a malformed record does: `dead-letter` (default) or `fail`.
    #[arg(long, default_value = "dead-letter")]
    pub on_error: ErrorPolicy,
    /// Longest CSV / JSON-lines record in bytes; a longer one is a dead letter (default 16 MiB).
    #[arg(long)]
    pub max_record_bytes: Option<usize>,
    /// Checkpoints and failover.
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
    /// Publishing to a model registry.
    #[command(flatten)]
    pub publish: super::learn_publish::PublishArgs,
    /// Data-parallel training and parameter servers (`--parallelism`, `--ps`, `--consistency`).
    #[command(flatten)]
    pub parallel: super::learn_parallel::ParallelArgs,
}

/// Shorthand flags for the most used params; each sets one key of the learner's params (and
/// is refused for a learner that has no such parameter).
#[derive(Debug, Clone, Default, Args)]
pub struct Shorthand {
    /// FTRL alpha (`ftrl.alpha`).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// FTRL beta (`ftrl.beta`).
    #[arg(long)]
    pub beta: Option<f64>,
    /// FTRL L1 regularization (`ftrl.l1`).
    #[arg(long)]
    pub l1: Option<f64>,
    /// FTRL L2 regularization (`ftrl.l2`).
    #[arg(long)]
    pub l2: Option<f64>,
    /// SGD learning rate under normalized adaptive updates (`rule = {kind = "normalized-adaptive", eta}`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Factors of the factorization machine (`factors`).
    #[arg(long)]
    pub factors: Option<u64>,
    /// Classes of softmax and naive Bayes (`classes`).
    #[arg(long)]
    pub classes: Option<u64>,
    /// Clusters of streaming k-means (`k`) and k-means (`n-clusters`).
    #[arg(long)]
    pub k: Option<u64>,
    /// Aggressiveness C of passive-aggressive (`c`).
    #[arg(long)]
    pub c: Option<f64>,
}

/// Checkpoint and failover flags (`eddy learn`; the same keys as a workflow node's).
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Time between checkpoints; `off` disables checkpoints.
    #[arg(long, default_value = "10s")]
    pub checkpoint_every: String,
    /// Where checkpoints go (default `eddy-runs/learn/<data-stem>-<fingerprint>/checkpoints`).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Aligned or unaligned barriers.
    #[arg(long, value_enum, default_value = "aligned", value_parser = parse_mode)]
    pub checkpoint_mode: CheckpointMode,
    /// What a failure does: `exactly-once` (roll back to the last checkpoint) or `approximate`
    /// (restart the failed task alone; lost rows are counted). Default: exactly-once with
    /// `--parallelism 1`, approximate with more.
    #[arg(long, value_parser = parse_failover)]
    pub failover: Option<FailoverMode>,
    /// Restarts allowed per minute before the job fails.
    #[arg(long, default_value_t = 3)]
    pub max_restarts: usize,
    /// Start from this savepoint (`DIR/savepoints/NAME`, taken by `eddy savepoint` or
    /// `--savepoint-on-stop`) instead of the newest checkpoint; the checkpoint directory's
    /// earlier checkpoints are discarded.
    #[arg(long)]
    pub from_savepoint: Option<PathBuf>,
    /// When the job is stopped (Ctrl-C, SIGTERM), first take the savepoint NAME in the
    /// checkpoint directory's `savepoints/NAME`.
    #[arg(long)]
    pub savepoint_on_stop: Option<String>,
}

fn parse_learner(s: &str) -> Result<LearnerKind, String> {
    s.parse().map_err(|e: eddy_algorithms::Error| e.to_string())
}

fn parse_mode(s: &str) -> Result<CheckpointMode, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("`{s}`: expected aligned or unaligned"))
}

pub(super) fn parse_failover(s: &str) -> Result<FailoverMode, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("`{s}`: expected exactly-once or approximate"))
}

/// Parses `KEY=VALUE` with VALUE in TOML syntax (a bare word is a string).
fn parse_param(text: &str) -> anyhow::Result<(String, serde_json::Value)> {
    let Some((key, value)) = text.split_once('=') else {
        bail!("--param `{text}`: expected KEY=VALUE");
    };
    let key = key.trim();
    let value = value.trim();
    let parsed: toml::Table = toml::from_str(&format!("v = {value}"))
        .or_else(|_| toml::from_str(&format!("v = {}", toml::Value::String(value.into()))))
        .with_context(|| format!("--param `{text}`: the value is not TOML"))?;
    let json = serde_json::to_value(&parsed["v"])
        .with_context(|| format!("--param `{text}`: the value has no JSON form"))?;
    Ok((key.to_string(), json))
}

impl LearnArgs {
    /// The learner spec the flags describe.
    pub fn learner(&self) -> anyhow::Result<LearnerSpec> {
        let mut spec = LearnerSpec::new(self.model);
        self.shorthand.apply(&mut spec)?;
        for text in &self.params {
            let (key, value) = parse_param(text)?;
            spec.set(&key, value)
                .with_context(|| format!("--param `{text}`"))?;
        }
        spec.check()
            .with_context(|| format!("--model {} with its --param values", self.model))?;
        Ok(spec)
    }

    fn crosses(&self, categorical: &[String]) -> anyhow::Result<Vec<Vec<String>>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for spec in &self.crosses {
            let cols: Vec<String> = spec.split(',').map(|c| c.trim().to_string()).collect();
            if cols.len() < 2 {
                bail!("--cross `{spec}`: name two or more columns separated by commas");
            }
            out.push(cols);
        }
        if self.cross_all {
            for i in 0..categorical.len() {
                for j in i + 1..categorical.len() {
                    out.push(vec![categorical[i].clone(), categorical[j].clone()]);
                }
            }
        }
        Ok(out)
    }

    /// The feature pipeline for `schema`: numeric columns scaled, the others hashed (dense
    /// numeric columns for clustering, and for naive Bayes without categorical columns).
    pub(super) fn pipeline(&self, schema: &SchemaRef) -> anyhow::Result<Pipeline> {
        let (mut numeric, categorical) = feature_columns(schema, &self.label)?;
        let dense =
            self.model.needs_dense() || (self.model == LearnerKind::Nb && categorical.is_empty());
        if self.model == LearnerKind::Nb && !dense {
            // multinomial naive Bayes counts non-negative features: the hashed categories
            if !numeric.is_empty() {
                eprintln!(
                    "note: --model nb uses the categorical columns; numeric columns ({}) are left out",
                    numeric.join(", ")
                );
            }
            numeric.clear();
        }
        let standard = StandardPipeline {
            label: self.label.clone(),
            numeric,
            crosses: if dense {
                Vec::new()
            } else {
                self.crosses(&categorical)?
            },
            categorical,
            scale: !self.no_scale,
            dense,
            hash_bits: self.hash_bits,
        };
        Ok(standard.build()?)
    }

    /// The checkpoint directory: the flag, or one per (data, learner, label) under `eddy-runs/learn`.
    pub(super) fn checkpoint_dir(&self) -> PathBuf {
        if let Some(dir) = &self.checkpoints.checkpoint_dir {
            return dir.clone();
        }
        let data = std::fs::canonicalize(&self.data).unwrap_or_else(|_| self.data.clone());
        let key = format!("{}|{}|{}", data.display(), self.model, self.label);
        let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        let stem = self
            .data
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        PathBuf::from("eddy-runs/learn")
            .join(format!("{stem}-{hash:016x}"))
            .join("checkpoints")
    }

    pub(super) fn train_config(&self, learner: LearnerSpec) -> anyhow::Result<TrainConfig> {
        let mut config = TrainConfig::new("learn", learner);
        config.dead_letter = self.dead_letter.clone();
        config.on_error = self.on_error;
        config.parallelism = self.parallel.parallelism;
        config.ps = self.parallel.ps_config()?;
        config.batch_rows = self.parallel.batch_rows;
        config.failover.mode = self
            .checkpoints
            .failover
            .unwrap_or(if config.parallelism > 1 {
                FailoverMode::Approximate
            } else {
                FailoverMode::ExactlyOnce
            });
        config.failover.restart.max_restarts = self.checkpoints.max_restarts;
        config.checkpoint.mode = self.checkpoints.checkpoint_mode;
        match self.checkpoints.checkpoint_every.trim() {
            "off" | "none" | "0" => {
                if self.checkpoints.from_savepoint.is_some()
                    || self.checkpoints.savepoint_on_stop.is_some()
                {
                    bail!("savepoints need checkpoints: drop `--checkpoint-every off`");
                }
                config.checkpoint.interval = None
            }
            every => {
                config.checkpoint.interval = Some(
                    super::duration::parse(every)
                        .map_err(|e| anyhow::anyhow!("--checkpoint-every: {e}"))?,
                );
                config.checkpoint.dir = Some(self.checkpoint_dir());
                config.checkpoint.restore_from = self.checkpoints.from_savepoint.clone();
            }
        }
        if self.tail90 {
            if self.follow {
                bail!("--tail90 needs a bounded file (the rows are counted first)");
            }
            let format = self.format.unwrap_or_else(|| io::format_of(&self.data));
            if format == io::DataFormat::Parquet {
                bail!("--tail90 needs a CSV or JSON-lines file (rows are counted first)");
            }
            config.eval = ProgressiveConfig {
                tail: Some(Tail::peers(count_rows(&self.data, format)?)),
                ..ProgressiveConfig::default()
            };
        }
        config.publish = super::learn_publish::publish_to(&self.publish, &self.data)?;
        Ok(config)
    }
}

impl Shorthand {
    /// Writes the given shorthands into `spec`'s params.
    fn apply(&self, spec: &mut LearnerSpec) -> anyhow::Result<()> {
        use serde_json::json;
        let kind = spec.kind;
        let mut set = |flag: &str, ok: bool, key: &str, value: serde_json::Value| {
            if !ok {
                bail!("--{flag} does not apply to --model {kind} (see --param)");
            }
            Ok(spec.set(key, value)?)
        };
        let ftrl = kind == LearnerKind::Ftrl;
        for (flag, value) in [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("l1", self.l1),
            ("l2", self.l2),
        ] {
            if let Some(v) = value {
                set(flag, ftrl, &format!("ftrl.{flag}"), json!(v))?;
            }
        }
        if let Some(eta) = self.lr {
            let sgd = matches!(kind, LearnerKind::Sgd | LearnerKind::SgdRegression);
            set(
                "lr",
                sgd,
                "rule",
                json!({"kind": "normalized-adaptive", "eta": eta}),
            )?;
        }
        if let Some(f) = self.factors {
            set("factors", kind == LearnerKind::Fm, "factors", json!(f))?;
        }
        if let Some(c) = self.classes {
            let ok = matches!(kind, LearnerKind::Nb | LearnerKind::Softmax);
            set("classes", ok, "classes", json!(c))?;
        }
        if let Some(k) = self.k {
            match kind {
                LearnerKind::Kmeans => set("k", true, "n-clusters", json!(k))?,
                other => set("k", other == LearnerKind::StreamingKmeans, "k", json!(k))?,
            }
        }
        if let Some(c) = self.c {
            set("c", kind == LearnerKind::Pa, "c", json!(c))?;
        }
        Ok(())
    }
}

fn feature_columns(schema: &SchemaRef, label: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    if schema.index_of(label).is_err() {
        bail!(
            "--label `{label}` is not a column of the data (columns: {})",
            names(schema)
        );
    }
    let (mut numeric, mut categorical) = (Vec::new(), Vec::new());
    for f in schema.fields() {
        if f.name() == label {
            continue;
        }
        match f.data_type() {
            t if t.is_integer() || t.is_floating() => numeric.push(f.name().clone()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Boolean => {
                categorical.push(f.name().clone())
            }
            other => bail!(
                "column `{}` has type {other}, which eddy learn cannot use",
                f.name()
            ),
        }
    }
    Ok((numeric, categorical))
}

fn names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts the data rows of a CSV or JSON-lines file (for the tail metrics), quickly.
fn count_rows(path: &Path, format: io::DataFormat) -> anyhow::Result<u64> {
    use std::io::Read;
    let reading = || format!("reading {}", path.display());
    let mut file = std::fs::File::open(path).with_context(reading)?;
    // streamed in 1 MiB blocks: memory stays flat whatever the file's size
    let mut block = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut block).with_context(reading)?;
        if n == 0 {
            break;
        }
        lines += block[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = block[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    Ok(match format {
        io::DataFormat::Csv => lines.saturating_sub(1),
        _ => lines,
    })
}

/// Runs `eddy learn` (with `--processes N`: N worker processes under a supervisor).
pub fn run(args: LearnArgs) -> anyhow::Result<()> {
    if args.parallel.processes.is_some() {
        if args.ui.is_some() {
            bail!("--ui shows the job of one process; it is not supported with --processes");
        }
        return super::worker::supervise(args);
    }
    let learner = args.learner()?;
    if args.follow && !learner.kind.is_online() {
        bail!(
            "--follow needs an online learner; `{}` is fitted on bounded data",
            learner.kind
        );
    }
    let mut config = args.train_config(learner)?;
    let feed = args
        .ui
        .map(|_| Arc::new(eddy_workflow::ui::TrainFeed::default()));
    if let Some(f) = &feed {
        config.events = Some(f.listener(config.events.take()));
    }
    let checkpoint_dir = config.checkpoint.dir.clone();
    let job = TrainJob::new(config)?;
    let format = args.format.unwrap_or_else(|| io::format_of(&args.data));
    let schema_override = args.schema.as_deref().map(io::parse_schema).transpose()?;
    let input = io::InputOptions {
        format: Some(format),
        schema: schema_override,
        follow: args.follow,
        parallelism: args.parallel.parallelism,
        max_record_bytes: args.max_record_bytes,
        ..io::InputOptions::default()
    };
    let (source, schema) = io::source_with(job.flow(), &args.data, &input)?;
    let pipeline = args.pipeline(&schema)?;
    let handle = job.start(source, pipeline, None)?;
    let _ui = super::ui::learn_dashboard(args.ui, feed, handle.job().metrics())?;
    if let (Some(epoch), Some(dir)) = (handle.job().restored_checkpoint(), &checkpoint_dir) {
        eprintln!("resuming from checkpoint {epoch} in {}", dir.display());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    super::shutdown::on_signal(move || flag.store(true, Ordering::SeqCst), false)?;
    let bar = progress::byte_bar(0);
    let mut stopping = false;
    let mut shards = super::learn_parallel::ShardHealth::default();
    let mut lag_shown = None;
    while !handle.is_finished() {
        if let Some(counters) = handle.store_counters() {
            shards.report(counters, &bar);
        }
        std::thread::sleep(Duration::from_millis(10));
        if let Some(dir) = &checkpoint_dir {
            super::savepoint::serve_requests(handle.job(), dir);
        }
        if stop.load(Ordering::SeqCst) && !stopping {
            stopping = true;
            if let Some(name) = &args.checkpoints.savepoint_on_stop {
                let path = handle
                    .job()
                    .savepoint(name)
                    .with_context(|| format!("taking savepoint `{name}` on stop"))?;
                bar.suspend(|| eprintln!("savepoint `{name}`: {}", path.display()));
            }
            bar.suspend(|| eprintln!("stopping: a last checkpoint, then the final model"));
            handle.stop(Duration::from_secs(30));
        }
        let (done, total) = handle.job().metrics().progress();
        bar.set_length(total);
        bar.set_position(done);
        show_lag(&bar, handle.job().metrics().lag(), &mut lag_shown);
    }
    bar.finish_and_clear();
    let outcome = handle.join()?;
    if args.checkpoints.checkpoint_dir.is_none() {
        // the default directory's parent, once the job cleared it (a no-op when it holds any)
        if let Some(parent) = checkpoint_dir.as_deref().and_then(Path::parent) {
            let _ = std::fs::remove_dir(parent);
        }
    }
    let summary = &outcome.summary;
    if summary.dead_letters > 0 {
        eprintln!(
            "malformed records: {}{}",
            summary.dead_letters,
            summary
                .dead_letter_path
                .as_ref()
                .map(|p| format!(" (see {})", p.display()))
                .unwrap_or_default()
        );
    }
    if summary.restarts > 0 {
        eprintln!(
            "restarts: {} (records lost: {}, replayed: {})",
            summary.restarts, summary.records_lost, summary.records_replayed
        );
    }
    if let Some(path) = &args.save {
        outcome
            .trained
            .save(path)
            .with_context(|| format!("saving the model to {}", path.display()))?;
        eprintln!(
            "saved the {} model to {}",
            outcome.trained.model.name(),
            path.display()
        );
    }
    if let (Some(meta), Some(p)) = (&outcome.version, &args.publish.name) {
        eprintln!(
            "published {p} version {} ({} versions this run)",
            meta.version, outcome.versions
        );
    }
    let mut report = outcome.report.rounded();
    if summary.restarts > 0 {
        report.metrics.push("restarts", summary.restarts as f64);
        report
            .metrics
            .push("records_lost", summary.records_lost as f64);
        report
            .metrics
            .push("records_replayed", summary.records_replayed as f64);
    }
    if let Some(store) = outcome.store {
        let m = &mut report.metrics;
        m.push("workers", args.parallel.parallelism as f64);
        m.push("retries", store.retries as f64);
        m.push("duplicate_pushes", store.duplicate_pushes as f64);
        m.push("shard_restarts", store.shard_restarts as f64);
        m.push("lost_updates", store.lost_updates as f64);
    }
    println!("{}", report.to_json_line());
    Ok(())
}

/// Puts the sources' lag (a Kafka source's consumer lag) on the progress line once one is
/// measured; the bytes bar means nothing for such a source. `shown`: the lag on the line.
fn show_lag(bar: &indicatif::ProgressBar, lag: Option<u64>, shown: &mut Option<u64>) {
    let Some(lag) = lag.filter(|l| Some(*l) != *shown) else {
        return;
    };
    if shown.is_none() {
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
        {
            bar.set_style(style);
        }
    }
    *shown = Some(lag);
    bar.set_message(format!("consumer lag {lag} records"));
}
