//! `eddy learn`: reads a file, featurizes every row (numeric columns as standardized values,
//! other columns hashed, optional hashed crosses), trains an online learner with progressive
//! validation (predict each row, then learn it), and prints one JSON line:
//! `{"rows":…,"seconds":…,"rows_per_s":…,"logloss":…,"auc":…,"accuracy":…}`.
//!
//! The file is read by the dataflow runtime: the source parses on one thread while the learner
//! consumes parsed micro-batches on another, over a bounded channel (on one core they simply
//! take turns).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use clap::{Args, ValueEnum};
use eddy_algorithms::eval::{ProgressiveConfig, ProgressiveValidation, Report, Tail};
use eddy_algorithms::feature::categorical::Featurizer;
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::online::fm::{FactorizationMachine, FmParams, FmTask};
use eddy_algorithms::online::kmeans::{StreamingKMeans, StreamingKMeansParams};
use eddy_algorithms::online::linear::{FtrlLogisticParams, SgdLinearParams};
use eddy_algorithms::online::naive_bayes::{
    GaussianNb, GaussianNbParams, MultinomialNb, MultinomialNbParams,
};
use eddy_algorithms::online::passive_aggressive::{
    PaTask, PassiveAggressive, PassiveAggressiveParams,
};
use eddy_algorithms::online::softmax::{Softmax, SoftmaxParams};
use eddy_algorithms::optim::{FtrlProximalParams, NormalizedAdaptiveParams, RuleParams};
use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_algorithms::transform::Params;
use eddy_core::dataflow::{Dataflow, DataflowConfig};
use eddy_core::error::ErrorDomain;
use eddy_core::sink::Sink;
use eddy_core::source::ErrorPolicy;

use super::{io, progress};

/// Learners of `eddy learn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelKind {
    /// FTRL-Proximal logistic regression.
    Ftrl,
    /// SGD logistic regression (normalized adaptive updates).
    Sgd,
    /// SGD linear regression (squared loss).
    SgdRegression,
    /// Factorization machine (binary, logistic loss) over hashed features.
    Fm,
    /// Passive-aggressive classifier (PA-I).
    Pa,
    /// Naive Bayes: multinomial over hashed categorical features, or Gaussian over numeric
    /// columns when there are no categorical ones.
    Nb,
    /// Softmax regression (labels are class indices 0..classes).
    Softmax,
    /// Streaming k-means over the numeric columns (the label is ignored).
    Kmeans,
}

/// Arguments of `eddy learn`.
#[derive(Debug, Clone, Args)]
pub struct LearnArgs {
    /// Training data (CSV, JSON lines or Parquet, by extension).
    #[arg(long)]
    pub data: PathBuf,
    /// Input format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<io::DataFormat>,
    /// Column types, `name:type,…` (default: inferred).
    #[arg(long)]
    pub schema: Option<String>,
    /// The label column (0/1 for classification, a number for regression).
    #[arg(long)]
    pub label: String,
    /// The learner.
    #[arg(long, value_enum, default_value = "ftrl")]
    pub model: ModelKind,
    /// FTRL alpha (learning-rate scale).
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f32,
    /// FTRL beta (learning-rate smoothing).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f32,
    /// L1 regularization (FTRL).
    #[arg(long, default_value_t = 0.0)]
    pub l1: f32,
    /// L2 regularization (FTRL).
    #[arg(long, default_value_t = 0.0)]
    pub l2: f32,
    /// Learning rate (SGD).
    #[arg(long, default_value_t = 0.5)]
    pub lr: f32,
    /// Factors of the factorization machine.
    #[arg(long, default_value_t = 8)]
    pub factors: usize,
    /// Classes (softmax, naive Bayes); labels are 0..classes.
    #[arg(long, default_value_t = 2)]
    pub classes: usize,
    /// Clusters (k-means).
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Aggressiveness C (passive-aggressive).
    #[arg(long, default_value_t = 1.0)]
    pub c: f32,
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
    /// Save the trained pipeline and model to this file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Dead-letter file for malformed records.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// What a malformed record does: `dead-letter` (default) or `fail`.
    #[arg(long, default_value = "dead-letter")]
    pub on_error: ErrorPolicy,
    /// Publishing to a model registry.
    #[command(flatten)]
    pub publish: super::learn_publish::PublishArgs,
    /// Training through a parameter server (`--ps`, `--workers`, `--consistency`).
    #[command(flatten)]
    pub ps: super::learn_ps::PsArgs,
}

/// Everything the learner sink owns; shared with the command so it can read the result.
struct LearnState {
    pipeline: Pipeline,
    model: OnlineModel,
    eval: ProgressiveValidation,
    examples: Examples,
    publisher: Option<super::learn_publish::Publisher>,
}

/// The learner as the dataflow's sink: featurize, predict, learn, score.
#[derive(Clone)]
struct LearnSink {
    state: Arc<Mutex<LearnState>>,
}

fn user_error(e: eddy_algorithms::Error) -> eddy_core::Error {
    let domain = match &e {
        eddy_algorithms::Error::Core(inner) => inner.domain(),
        _ => ErrorDomain::User,
    };
    eddy_core::Error::Operator {
        operator: "learn".into(),
        subtask: 0,
        message: e.to_string(),
        domain,
    }
}

impl Sink for LearnSink {
    fn write(&mut self, batch: &RecordBatch) -> eddy_core::Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut *guard;
        s.pipeline
            .learn_examples_into(batch, &mut s.examples)
            .map_err(user_error)?;
        s.eval
            .process(&mut s.model, &s.examples)
            .map_err(user_error)?;
        if let Some(p) = s.publisher.as_mut() {
            p.on_batch(&s.pipeline, &s.model, &mut s.eval)?;
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

impl LearnArgs {
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

    /// Whether the model reads dense numeric columns (k-means, Gaussian naive Bayes) rather
    /// than hashed features.
    fn dense(&self, categorical: &[String]) -> bool {
        self.model == ModelKind::Kmeans || (self.model == ModelKind::Nb && categorical.is_empty())
    }

    pub(super) fn pipeline(&self, schema: &SchemaRef) -> anyhow::Result<Pipeline> {
        let (mut numeric, categorical) = feature_columns(schema, &self.label)?;
        let dense = self.dense(&categorical);
        if self.model == ModelKind::Nb && !dense {
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

    fn sgd(&self, dim: u64) -> SgdLinearParams {
        SgdLinearParams {
            rule: RuleParams::NormalizedAdaptive(NormalizedAdaptiveParams { eta: self.lr }),
            dim: Some(dim),
            ..SgdLinearParams::default()
        }
    }

    fn model(&self, dim: u64, dense: bool) -> anyhow::Result<OnlineModel> {
        Ok(match self.model {
            ModelKind::Ftrl => OnlineModel::Ftrl(
                FtrlLogisticParams {
                    ftrl: FtrlProximalParams {
                        alpha: self.alpha,
                        beta: self.beta,
                        l1: self.l1,
                        l2: self.l2,
                    },
                    dim: Some(dim),
                    ..Default::default()
                }
                .build()?,
            ),
            ModelKind::Sgd => OnlineModel::SgdLogistic(self.sgd(dim).build_logistic()?),
            ModelKind::SgdRegression => OnlineModel::SgdLinear(self.sgd(dim).build_regression()?),
            ModelKind::Fm => {
                let params = FmParams {
                    factors: self.factors,
                    ..FmParams::new(dim, FmTask::Binary)
                };
                OnlineModel::Fm(FactorizationMachine::new(params.check()?))
            }
            ModelKind::Pa => {
                let params = PassiveAggressiveParams {
                    c: self.c,
                    ..PassiveAggressiveParams::new(dim, PaTask::Classification)
                };
                OnlineModel::PassiveAggressive(PassiveAggressive::new(params.check()?))
            }
            ModelKind::Nb if dense => OnlineModel::GaussianNb(GaussianNb::new(
                GaussianNbParams::new(dim, self.classes).check()?,
            )),
            ModelKind::Nb => OnlineModel::MultinomialNb(MultinomialNb::new(
                MultinomialNbParams::new(dim, self.classes).check()?,
            )),
            ModelKind::Softmax => {
                OnlineModel::Softmax(Softmax::new(SoftmaxParams::new(dim, self.classes).check()?))
            }
            ModelKind::Kmeans => OnlineModel::KMeans(StreamingKMeans::new(
                StreamingKMeansParams::new(dim, self.k).check()?,
            )),
        })
    }
}

/// Counts the data rows of a CSV or JSON-lines file (for the tail metrics), quickly.
fn count_rows(path: &std::path::Path, format: io::DataFormat) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    if bytes.last().is_some_and(|&b| b != b'\n') {
        lines += 1;
    }
    Ok(match format {
        io::DataFormat::Csv => lines.saturating_sub(1),
        _ => lines,
    })
}

/// Runs `eddy learn`.
pub fn run(args: LearnArgs) -> anyhow::Result<()> {
    if args.ps.ps.is_some() {
        return super::learn_ps::run(&args);
    }
    let format = args.format.unwrap_or_else(|| io::format_of(&args.data));
    let schema_override = args.schema.as_deref().map(io::parse_schema).transpose()?;
    let flow = Dataflow::new(DataflowConfig {
        name: "learn".into(),
        threads: 1,
        dead_letter_path: args.dead_letter.clone(),
        on_error: args.on_error,
        ..DataflowConfig::default()
    });
    let (source, schema) = io::source(&flow, &args.data, Some(format), schema_override, false, 1)?;
    let pipeline = args.pipeline(&schema)?;
    let dense = matches!(pipeline.featurizer(), Featurizer::Assembler(_));
    let model = args.model(pipeline.dim(), dense)?;
    let tail = if args.tail90 {
        if format == io::DataFormat::Parquet {
            bail!("--tail90 needs a CSV or JSON-lines file (rows are counted first)");
        }
        Some(Tail::peers(count_rows(&args.data, format)?))
    } else {
        None
    };
    let eval = ProgressiveConfig {
        tail,
        ..Default::default()
    }
    .build(eddy_algorithms::learner::Predictor::task(&model))?;
    let state = Arc::new(Mutex::new(LearnState {
        pipeline,
        model,
        eval,
        examples: Examples::new(Features::Sparse(Default::default()), Vec::new(), None)?,
        publisher: super::learn_publish::Publisher::from_args(&args.publish, &args.data)?,
    }));
    source.rebalance().sink(
        "learn",
        LearnSink {
            state: state.clone(),
        },
    );
    let start = Instant::now();
    let handle = flow.start()?;
    let bar = progress::byte_bar(0);
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
        let (done, total) = handle.metrics().progress();
        bar.set_length(total);
        bar.set_position(done);
    }
    bar.finish_and_clear();
    let summary = handle.join()?;
    let seconds = start.elapsed().as_secs_f64();
    let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
    let s = &mut *guard;
    let report: Report = s.eval.finish(&mut s.model)?;
    let report = Report::new(report.rows, seconds, report.metrics);
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
    if let Some(path) = &args.save {
        let trained = TrainedModel {
            pipeline: s.pipeline.clone(),
            model: s.model.clone(),
        };
        trained
            .save(path)
            .with_context(|| format!("saving the model to {}", path.display()))?;
        eprintln!("saved the {} model to {}", s.model.name(), path.display());
    }
    if let Some(p) = s.publisher.as_mut() {
        p.finish(&s.pipeline, &s.model, report.rows, &report.metrics)?;
    }
    println!("{}", report.rounded().to_json_line());
    Ok(())
}
