//! `eddy predict`: scores a file with a model saved by `eddy learn --save`. The rows go through
//! the model's own pipeline, so they are featurized exactly as the training rows were. Output:
//! the input columns plus `prediction` (and `score_<i>` columns for multiclass models), in the
//! order of the input.
//!
//! Scoring is data-parallel over `--threads` subtasks (default: one per core). For one CSV or
//! JSON-lines file written as CSV, JSON lines or to stdout, the whole path is split: subtask `i`
//! reads the records that start in its `1/threads` byte range of the input (quote-aware splits,
//! see `eddy_core::source::file`), scores them and writes them to its own part file; the parts
//! are then joined in subtask order ([`SplitParts`]), which is input order. Otherwise (a
//! directory or Parquet input, whose splits are round-robin, or Parquet output) one subtask
//! reads and writes, and each micro-batch is cut into `--threads` row ranges scored at once on
//! a rayon pool and put back together in order. Featurizing and scoring a row depend on that
//! row alone (the pipeline is frozen), so the output is the same bytes for any thread count;
//! malformed records go to the dead-letter file (in the order the subtasks meet them).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, Float32Array};
use arrow::record_batch::RecordBatch;
use clap::Args;
use eddy_algorithms::features::Features;
use eddy_algorithms::learner::Predictor;
use eddy_algorithms::trained::TrainedModel;
use eddy_core::dataflow::Stream;
use eddy_core::dataflow::{Dataflow, DataflowConfig};
use eddy_core::error::ErrorDomain;
use eddy_core::operators::with_column::set_column;
use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};
use eddy_core::sink::jsonl::{JsonLinesSink, JsonLinesSinkOptions};
use eddy_core::sink::split_parts::SplitParts;
use eddy_core::sink::Durable;
use eddy_core::source::ErrorPolicy;

use super::io;

/// Arguments of `eddy predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// A model file written by `eddy learn --save`.
    #[arg(long)]
    pub model: PathBuf,
    /// Rows to score (CSV, JSON lines or Parquet, by extension).
    #[arg(long)]
    pub data: PathBuf,
    /// Input format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<io::DataFormat>,
    /// Column types, `name:type,…` (default: inferred).
    #[arg(long)]
    pub schema: Option<String>,
    /// Output file (CSV, JSON lines or Parquet by extension); default: stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Dead-letter file for malformed records.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// What a malformed record does: `dead-letter` (default) or `fail`.
    #[arg(long, default_value = "dead-letter")]
    pub on_error: ErrorPolicy,
    /// Threads (default: one per core). One CSV or JSON-lines input file is split into this
    /// many byte ranges, each read, scored and written by its own thread; the output keeps
    /// the input order.
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
}

/// One thread per core.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Rows below which a batch is scored on one thread (a split costs more than it saves).
const MIN_PARALLEL_ROWS: usize = 2048;

/// Scores `batch` on `pool`: row ranges in parallel, put back together in order.
pub fn score_parallel(
    pool: &rayon::ThreadPool,
    model: &TrainedModel,
    batch: &RecordBatch,
) -> eddy_algorithms::Result<RecordBatch> {
    use rayon::prelude::*;
    let rows = batch.num_rows();
    let parts = pool
        .current_num_threads()
        .min(rows / (MIN_PARALLEL_ROWS / 2))
        .max(1);
    if parts == 1 {
        return score(model, batch);
    }
    let chunk = rows.div_ceil(parts);
    let scored = pool.install(|| {
        (0..parts)
            .into_par_iter()
            .map(|i| {
                let start = i * chunk;
                score(model, &batch.slice(start, chunk.min(rows - start)))
            })
            .collect::<eddy_algorithms::Result<Vec<RecordBatch>>>()
    })?;
    Ok(arrow::compute::concat_batches(
        &scored[0].schema(),
        &scored,
    )?)
}

/// Appends the model's predictions to `batch`.
pub fn score(model: &TrainedModel, batch: &RecordBatch) -> eddy_algorithms::Result<RecordBatch> {
    let mut features = Features::Sparse(Default::default());
    let mut out = Vec::new();
    model.pipeline.features(batch, &mut features)?;
    let width = model.model.predict_scores(&features, &mut out)?;
    // one score per row is the prediction itself (see `Predictor::predict_scores`): computed once
    let predictions = if width == 1 {
        std::mem::take(&mut out)
    } else {
        let mut predictions = Vec::new();
        model.model.predict(&features, &mut predictions)?;
        predictions
    };
    let mut scored = set_column(
        batch,
        "prediction",
        Arc::new(Float32Array::from(predictions)) as ArrayRef,
    )?;
    if width > 1 {
        for class in 0..width {
            let col: Vec<f32> = out.chunks(width).map(|row| row[class]).collect();
            scored = set_column(
                &scored,
                &format!("score_{class}"),
                Arc::new(Float32Array::from(col)) as ArrayRef,
            )?;
        }
    }
    Ok(scored)
}

/// The scoring operator's error: a failure of the user's model or data.
fn operator_error(e: eddy_algorithms::Error) -> eddy_core::Error {
    eddy_core::Error::Operator {
        operator: "predict".into(),
        subtask: 0,
        message: e.to_string(),
        domain: ErrorDomain::User,
    }
}

/// Where split subtasks write: part files joined in order after the job, into `--out` or
/// onto stdout.
struct SplitOutput {
    parts: SplitParts,
    out: Option<PathBuf>,
}

impl SplitOutput {
    /// Ends `scored` in one text sink subtask per split writing a part file.
    fn sink(
        out: Option<&std::path::Path>,
        scored: &Stream,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let jsonl = out.is_some_and(|p| io::format_of(p) == io::DataFormat::Jsonl);
        let header = (!jsonl).then_some(b',');
        let parts = match out {
            Some(path) => SplitParts::beside(path, threads, header),
            None => SplitParts::under(&std::env::temp_dir(), "stdout.csv", threads, header),
        }
        .context("creating the part files of the output")?;
        // the parts after the first are copied into it and synced there
        let node = if jsonl {
            let options = JsonLinesSinkOptions {
                durable: Durable::FirstOnly,
                ..JsonLinesSinkOptions::new(parts.sink_path())
            };
            scored.sink("out", JsonLinesSink::new(options)?)
        } else {
            let options = CsvSinkOptions {
                durable: Durable::FirstOnly,
                ..CsvSinkOptions::new(parts.sink_path())
            };
            scored.sink("out", CsvSink::new(options)?)
        };
        node.parallelism(threads);
        Ok(SplitOutput {
            parts,
            out: out.map(std::path::Path::to_path_buf),
        })
    }

    /// Joins the parts in input order.
    fn finish(self) -> anyhow::Result<()> {
        match &self.out {
            Some(path) => self
                .parts
                .finish_into_file(path)
                .with_context(|| format!("writing {}", path.display())),
            None => self
                .parts
                .finish_into(&mut std::io::stdout().lock(), "stdout")
                .context("writing stdout"),
        }
    }
}

/// Runs `eddy predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let model = Arc::new(
        TrainedModel::load(&args.model)
            .with_context(|| format!("loading the model {}", args.model.display()))?,
    );
    let flow = Dataflow::new(DataflowConfig {
        name: "predict".into(),
        dead_letter_path: args.dead_letter.clone(),
        on_error: args.on_error,
        ..DataflowConfig::default()
    });
    let schema = args.schema.as_deref().map(io::parse_schema).transpose()?;
    let threads = args.threads.max(1);
    let text = |f: io::DataFormat| f != io::DataFormat::Parquet;
    let split = threads > 1
        && args.data.is_file()
        && text(args.format.unwrap_or_else(|| io::format_of(&args.data)))
        && args.out.as_deref().is_none_or(|p| text(io::format_of(p)));
    let m = model.clone();
    let output = if split {
        let (source, _) = io::source(&flow, &args.data, args.format, schema, false, threads)?;
        let scored = source.map("predict", move |batch| {
            score(&m, &batch).map_err(operator_error)
        });
        Some(SplitOutput::sink(args.out.as_deref(), &scored, threads)?)
    } else {
        let (source, _) = io::source(&flow, &args.data, args.format, schema, false, 1)?;
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("eddy-predict-{i}"))
                .build()
                .context("starting the scoring threads")?,
        );
        let scored = source.map("predict", move |batch| {
            score_parallel(&pool, &m, &batch).map_err(operator_error)
        });
        io::sink(&scored, "out", args.out.as_deref(), None)?;
        None
    };
    let summary = flow.run()?;
    if let Some(output) = output {
        output.finish()?;
    }
    if summary.dead_letters > 0 {
        eprintln!("malformed records: {}", summary.dead_letters);
    }
    if let Some(out) = &args.out {
        eprintln!(
            "scored {} rows with {} → {}",
            summary.operator("predict").map_or(0, |o| o.records_out),
            args.model.display(),
            out.display()
        );
    }
    Ok(())
}
