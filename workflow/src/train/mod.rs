//! The one training engine: source → feature pipeline → learner (from the
//! [learner registry](eddy_algorithms::learners)) → progressive evaluation → publisher, run as
//! an eddy-core [`Dataflow`]. `eddy learn` and workflow `batch-train` / `stream-train` nodes
//! are thin callers of [`TrainJob`]; nothing else has a training loop.
//!
//! ```no_run
//! use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
//! use eddy_algorithms::pipeline::StandardPipeline;
//! use eddy_core::source::file::{CsvOptions, CsvSource};
//! use eddy_workflow::train::{TrainConfig, TrainJob};
//!
//! let mut config = TrainConfig::new("ctr", LearnerSpec::new(LearnerKind::Ftrl));
//! config.checkpoint.dir = Some("eddy-runs/ctr/checkpoints".into());
//! let job = TrainJob::new(config)?;
//! let source = CsvSource::new(CsvOptions::new("clicks.csv"))?;
//! let input = job.flow().source("clicks", source);
//! let pipeline = StandardPipeline {
//!     label: "label".into(),
//!     numeric: vec!["f0".into()],
//!     categorical: vec!["c0".into(), "c1".into()],
//!     crosses: vec![],
//!     scale: true,
//!     dense: false,
//!     hash_bits: 18,
//! }
//! .build()?;
//! let outcome = job.start(input, pipeline, None)?.join()?;
//! println!("{}", outcome.report.to_json_line());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What runs
//! The source (any core [`Source`](eddy_core::source::Source), bounded or not) feeds the
//! operator `learn` over a rebalance edge. For an online learner that operator featurizes each
//! micro-batch (the pipeline's statistics follow the stream), predicts then learns it
//! (progressive validation, with the configured label delay) and publishes a version when the
//! [`PublishEvery`] policy says so. A batch learner's operator gathers the bounded input and
//! fits when it ends.
//!
//! ## Fault tolerance
//! The online operator's whole state — pipeline statistics, learner, evaluator, the position
//! in the chain of published versions — is its checkpointed operator state (one checksummed
//! frame). With [`CheckpointConfig::dir`] set (the callers set it: checkpoints are on by
//! default for users):
//! - **exactly-once** ([`FailoverMode::ExactlyOnce`]): a failure rolls the job back to the last
//!   completed checkpoint — the source seeks back, the learner restores — and a job started
//!   again on the same directory (after a crash, a kill or a stop) resumes from the newest
//!   checkpoint. The final model is byte for byte the one an uninterrupted run trains. A
//!   version the failed attempt published after the checkpoint is recognized when the replay
//!   reaches it, not published twice ([`ModelStream::publish`]).
//! - **approximate** ([`FailoverMode::Approximate`]): only the failed task restarts, from its
//!   own last snapshot, while the source keeps reading; what was routed to it while it was
//!   down is counted in `records_lost` ([`TrainOutcome::summary`]).
//!
//! A job whose bounded input ended clears its checkpoints (nothing is left to resume, as Flink
//! discards a finished job's checkpoints); a stopped, cancelled or failed one keeps them.
//! [`TrainHandle::stop`] takes a last checkpoint before it stops a followed source, so the
//! next start resumes from there. Batch fits and multi-pass (`epochs > 1`) training keep no
//! checkpoints: they restart from the beginning of their bounded input.
//!
//! A model whose predictions stop being finite numbers (a learner diverged on unscaled input)
//! fails the job with an error saying so; it is never published or returned.
//!
//! ## Parallelism and parameter servers
//! With [`TrainConfig::parallelism`] 1 and no [`TrainConfig::ps`], the learner runs as one
//! subtask holding its weights: its updates are sequential, which is what makes the final
//! model exactly reproducible.
//!
//! With `parallelism` N > 1 the N subtasks of `learn` train one model data-parallel: a
//! source read in N splits (a file) is chained split by split to the subtasks, N pipelines
//! with no hand-over; any other source deals each batch to the subtask sent the fewest rows.
//! - without a store, FTRL shares its weights in memory
//!   ([`SharedFtrl`](eddy_algorithms::online::linear::SharedFtrl), Hogwild: every subtask
//!   steps the one weight array without locks, each step the local learner's own; a collision
//!   can lose an update, so runs are not reproducible); any other learner goes through the
//!   in-process `LocalPs`;
//! - with a parameter server ([`PsConfig`]: `LocalPs`, running gRPC shards, or shards the job
//!   starts; also at parallelism 1), the weights live in the store: per mini-batch a subtask
//!   pulls, predicts (progressive validation), pushes gradients and clocks. How far subtasks
//!   drift apart is the [`Consistency`](eddy_ps::Consistency): `async` (a pull sees whatever
//!   pushes have landed), `bounded:S` (stale-synchronous) or `sync`.
//!
//! Each
//! subtask featurizes with its own copy of the pipeline (running statistics such as the
//! scaler's are per subtask; the published pipeline is subtask 0's), and keeps its own
//! evaluator: the final report merges them; intermediate versions carry subtask 0's metrics
//! and the rows all subtasks learned. Subtask 0 publishes.
//!
//! Fault tolerance: subtask 0's snapshot holds the shared weights or the store's tables.
//! - At parallelism 1, exactly-once holds as without a store (the one subtask snapshots the
//!   tables at its barrier and a failure restores them with it).
//! - At parallelism N > 1 the subtasks reach a barrier at different times while all of them
//!   update the one store, so no snapshot of the store matches a consistent cut: such jobs
//!   run **approximate** failover (the default there; exactly-once is refused). A failed
//!   subtask restarts alone from its last snapshot (pipeline statistics, evaluator, counts)
//!   while its peers keep training the store, which is not rolled back; the rows routed to it
//!   while it was down are counted in `records_lost`. A job resumed from its checkpoints
//!   restores the store once, from the newest snapshot.
//! - Across processes, N `eddy worker` processes each run a job at parallelism 1 on their own
//!   partitions and one store: see [`supervise`] (approximate failover of a whole process, or
//!   exactly-once through a job-wide epoch barrier at the shards).
//!
//! | module | what |
//! |---|---|
//! | `operator` | the online learner operator and its snapshot |
//! | `fit` | the batch-fit operator |
//! | `ps` | [`PsConfig`], and the store, gradient model and network runtime the subtasks share |
//! | [`supervise`] | worker processes of one job under a local supervisor: approximate or exactly-once failover across processes |

mod fit;
mod operator;
mod ps;
pub(crate) use ps::ps_error;
pub mod supervise;

pub use ps::{job_id_in, shard_model, EpochBarrier, JobPolicy, PsConfig, PsSpec};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_algorithms::eval::{MetricValues, ProgressiveConfig, ProgressiveValidation, Report};
use eddy_algorithms::feature::categorical::Featurizer;
use eddy_algorithms::learners::LearnerSpec;
use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_core::checkpoint::CheckpointStore;
use eddy_core::dataflow::{
    CheckpointConfig, Dataflow, DataflowConfig, FailoverConfig, FaultInjection, JobHandle,
    RestartPolicy, Stream,
};
use eddy_core::message::Epoch;
use eddy_core::metrics::JobSummary;
use eddy_core::operator::OperatorFactory;
use eddy_core::source::ErrorPolicy;
use eddy_ps::StoreCounters;

use crate::error::{Error, Result};
use crate::model_stream::{metric_map, ModelStream, PublishEvery};
use crate::registry::{NewVersion, Registry, VersionMeta};

pub use eddy_core::dataflow::{CheckpointMode, FailoverMode};

/// The learner operator's name in the dataflow (for metrics and fault injection).
pub const LEARN_OPERATOR: &str = "learn";

/// Default time between checkpoints of a training job.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Where and how a job publishes versions of its model.
#[derive(Debug, Clone)]
pub struct PublishTo {
    /// The model registry.
    pub registry: Registry,
    /// The model name.
    pub name: String,
    /// When to publish while training (a final version is published at the end regardless).
    pub every: PublishEvery,
    /// Metadata every version starts from (producer, lineage).
    pub template: NewVersion,
}

/// What a running job reports.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// Rows predicted-then-learned so far.
    Rows(u64),
    /// A learner subtask restored a checkpoint holding `rows` learned rows (the next `Rows`
    /// counts on from there). A process that knows the rows it learned before it died knows
    /// from this how many it will learn again (see [`supervise`]).
    Restored {
        /// The learner subtask.
        subtask: usize,
        /// Rows the subtask had learned at the checkpoint.
        rows: u64,
    },
    /// A version was published (or, on a replay, recognized as published already).
    Published {
        /// The version.
        version: u64,
        /// Rows trained into it.
        rows: u64,
        /// Progressive metrics at that point.
        metrics: std::collections::BTreeMap<String, f64>,
    },
}

/// A listener for [`TrainEvent`]s, called on the learner's thread (keep it quick).
pub type TrainEvents = Arc<dyn Fn(&TrainEvent) + Send + Sync>;

/// Configuration of a [`TrainJob`].
#[derive(Clone)]
pub struct TrainConfig {
    /// The job name (logs, metrics).
    pub name: String,
    /// The learner.
    pub learner: LearnerSpec,
    /// Progressive validation (metrics, label delay, windows, tail).
    pub eval: ProgressiveConfig,
    /// Publishing, if any.
    pub publish: Option<PublishTo>,
    /// Checkpoints: off without a `dir`; every [`DEFAULT_CHECKPOINT_INTERVAL`] by default.
    pub checkpoint: CheckpointConfig,
    /// Failover mode and restarts (default exactly-once, 3 restarts a minute).
    pub failover: FailoverConfig,
    /// What a malformed record does.
    pub on_error: ErrorPolicy,
    /// The dead-letter file.
    pub dead_letter: Option<PathBuf>,
    /// Rows per micro-batch the source cuts (default: the runtime's).
    pub batch_rows: Option<usize>,
    /// A listener for progress and publications.
    pub events: Option<TrainEvents>,
    /// Faults to inject (tests and benchmarks).
    pub faults: Vec<FaultInjection>,
    /// Learner subtasks (default 1; more train data-parallel through a parameter server, see
    /// the [module docs](self)).
    pub parallelism: usize,
    /// Train through a parameter server (implied, in-process, by `parallelism` > 1).
    pub ps: Option<PsConfig>,
    /// Keep the checkpoints when the input ends (default false: they are cleared). A worker
    /// process of a job with exactly-once failover keeps them: a peer's failure may still roll
    /// it back to one of them ([`supervise`]).
    pub keep_checkpoints: bool,
}

impl TrainConfig {
    /// A job training `learner`, with the defaults above and checkpoints off until a
    /// directory is given.
    pub fn new(name: impl Into<String>, learner: LearnerSpec) -> Self {
        TrainConfig {
            name: name.into(),
            learner,
            eval: ProgressiveConfig::default(),
            publish: None,
            checkpoint: CheckpointConfig {
                interval: Some(DEFAULT_CHECKPOINT_INTERVAL),
                ..CheckpointConfig::default()
            },
            failover: FailoverConfig {
                restart: RestartPolicy::restarts(3),
                ..FailoverConfig::default()
            },
            on_error: ErrorPolicy::default(),
            dead_letter: None,
            batch_rows: None,
            events: None,
            faults: Vec::new(),
            parallelism: 1,
            ps: None,
            keep_checkpoints: false,
        }
    }
}

/// What the learner operator leaves when its input ends.
pub(crate) struct Finished {
    /// The learner subtask.
    subtask: usize,
    pipeline: Pipeline,
    /// The subtask's own model; `None` data-parallel (the weights are the backend's).
    model: Option<OnlineModel>,
    /// Online: the evaluator (its report is taken at the end). Batch: none.
    eval: Option<ProgressiveValidation>,
    /// Batch: the training metrics.
    metrics: MetricValues,
    rows: u64,
    stream: Option<ModelStream>,
}

/// What every attempt of the learner operator shares.
pub(crate) struct Shared {
    learner: LearnerSpec,
    pipeline: Pipeline,
    model: Option<OnlineModel>,
    eval: ProgressiveConfig,
    publish: Option<PublishTo>,
    events: Option<TrainEvents>,
    /// The parameter store the subtasks train, if any.
    backend: Option<ps::Backend>,
    /// Whether failover is exactly-once (a restore rolls the store back too).
    exactly_once: bool,
    parallelism: usize,
    /// Rows all subtasks learned (parallelism > 1: when to publish).
    learned: AtomicU64,
    /// What each learner subtask left when its input ended.
    result: Mutex<Vec<Finished>>,
}

impl Shared {
    /// The shared weights (data-parallel or through a parameter server) as a local model.
    fn shared_model(&self) -> Result<OnlineModel> {
        match &self.backend {
            Some(backend) => backend.model(),
            None => Err(Error::InvalidArgument(
                "a learner subtask without a model of its own needs shared weights".into(),
            )),
        }
    }

    /// The rows trained into the model, after a subtask that has learned `mine` rows in all
    /// learned `batch` more: its own count at parallelism 1 (exact, restored with it), the
    /// count over all subtasks otherwise.
    fn rows_learned(&self, mine: u64, batch: u64) -> u64 {
        if self.parallelism <= 1 {
            mine
        } else {
            self.learned.fetch_add(batch, Ordering::Relaxed) + batch
        }
    }

    /// The rows trained so far, for progress (see [`rows_learned`](Self::rows_learned)).
    fn rows_so_far(&self, mine: u64) -> u64 {
        if self.parallelism <= 1 {
            mine
        } else {
            self.learned.load(Ordering::Relaxed)
        }
    }
}

/// A training job being assembled: add the source to [`flow`](Self::flow), then
/// [`start`](Self::start) it.
pub struct TrainJob {
    config: TrainConfig,
    flow: Dataflow,
}

impl TrainJob {
    /// Checks the learner's params and prepares the dataflow.
    pub fn new(mut config: TrainConfig) -> Result<Self> {
        config.learner.check()?;
        check_parallel(&mut config)?;
        if !config.learner.kind.is_online() {
            config.checkpoint.dir = None;
        }
        let mut bounds = DataflowConfig::default().bounds;
        if let Some(rows) = config.batch_rows {
            bounds.max_rows = rows.max(1);
        }
        let flow = Dataflow::new(DataflowConfig {
            name: config.name.clone(),
            bounds,
            threads: config.parallelism,
            dead_letter_path: config.dead_letter.clone(),
            on_error: config.on_error,
            checkpoint: config.checkpoint.clone(),
            failover: config.failover.clone(),
            faults: config.faults.clone(),
            ..DataflowConfig::default()
        });
        Ok(TrainJob { config, flow })
    }

    /// The dataflow: add the job's source here.
    pub fn flow(&self) -> &Dataflow {
        &self.flow
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// A fresh learner of the job's spec for `pipeline`'s features.
    pub fn fresh_model(&self, pipeline: &Pipeline) -> Result<OnlineModel> {
        let dense = matches!(pipeline.featurizer(), Featurizer::Assembler(_));
        Ok(self.config.learner.online(pipeline.dim(), dense)?)
    }

    /// Starts training on `input` with `pipeline`, from `model` (a warm start or a resumed
    /// version) or a fresh learner when `None`. A batch learner takes no model.
    pub fn start(
        self,
        input: Stream,
        pipeline: Pipeline,
        model: Option<OnlineModel>,
    ) -> Result<TrainHandle> {
        let online = self.config.learner.kind.is_online();
        let model = match (online, model) {
            (true, Some(m)) => Some(m),
            (true, None) => Some(self.fresh_model(&pipeline)?),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "`{}` is a batch learner: it fits from scratch and takes no starting model",
                    self.config.learner.kind
                )))
            }
        };
        let parallel = self.config.ps.is_some() || self.config.parallelism > 1;
        let backend = match &model {
            Some(m) if parallel => Some(ps::Backend::open(
                self.config.ps.as_ref(),
                &self.config.learner,
                pipeline.dim(),
                m,
                self.config.failover.mode == FailoverMode::ExactlyOnce,
            )?),
            _ => None,
        };
        let shared = Arc::new(Shared {
            learner: self.config.learner.clone(),
            pipeline,
            model,
            eval: self.config.eval.clone(),
            publish: self.config.publish.clone(),
            events: self.config.events.clone(),
            backend,
            exactly_once: self.config.failover.mode == FailoverMode::ExactlyOnce,
            parallelism: self.config.parallelism,
            learned: AtomicU64::new(0),
            result: Mutex::new(Vec::new()),
        });
        let factory_shared = shared.clone();
        let factory: OperatorFactory = Arc::new(move |_| {
            let shared = factory_shared.clone();
            if online {
                Box::new(operator::LearnOperator::new(shared, LEARN_OPERATOR))
            } else {
                Box::new(fit::FitOperator::new(shared, LEARN_OPERATOR))
            }
        });
        // one subtask: a rebalance edge, so reading and learning run on two threads (pipeline
        // parallelism); N subtasks over a source of N splits: each split chained to its
        // subtask (N independent pipelines, no hand-over); otherwise the default rebalance
        let input = match self.config.parallelism {
            1 => input.rebalance(),
            _ => input,
        };
        input
            .apply(LEARN_OPERATOR, factory)
            .parallelism(self.config.parallelism)
            .sink("learned", NoOutput);
        let job = self.flow.start()?;
        Ok(TrainHandle {
            job,
            shared,
            started: Instant::now(),
            checkpoint: self.config.checkpoint,
            stopped: AtomicBool::new(self.config.keep_checkpoints),
        })
    }
}

/// Checks `config`'s parallelism against its learner and failover mode.
fn check_parallel(config: &mut TrainConfig) -> Result<()> {
    config.parallelism = config.parallelism.max(1);
    let online = config.learner.kind.is_online();
    if !online && (config.parallelism > 1 || config.ps.is_some()) {
        return Err(Error::InvalidArgument(format!(
            "`{}` is a batch learner: it fits on one subtask, without a parameter server",
            config.learner.kind
        )));
    }
    if config.parallelism > 1 && config.failover.mode == FailoverMode::ExactlyOnce {
        return Err(Error::InvalidArgument(format!(
            "parallelism {} trains one model from several subtasks, which no checkpoint can \
             capture at one consistent point: use approximate failover, or parallelism 1 for \
             exactly-once",
            config.parallelism
        )));
    }
    Ok(())
}

/// The end of the job's stream: the learner emits no records (its output is the model).
#[derive(Clone)]
struct NoOutput;

impl eddy_core::sink::Sink for NoOutput {
    fn write(&mut self, _batch: &arrow::record_batch::RecordBatch) -> eddy_core::Result<()> {
        Ok(())
    }
}

/// A running training job.
pub struct TrainHandle {
    job: JobHandle,
    shared: Arc<Shared>,
    started: Instant,
    checkpoint: CheckpointConfig,
    /// Stopped (or [`TrainConfig::keep_checkpoints`]): the checkpoints are kept at the end.
    stopped: AtomicBool,
}

/// What a finished job produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The final pipeline and model.
    pub trained: TrainedModel,
    /// Rows, seconds (the job's run time, up to its final checkpoint; exporting and
    /// publishing the model come after) and metrics: progressive for online learners,
    /// `train_*` for batch fits.
    pub report: Report,
    /// The dataflow's summary: dead letters, restarts, `records_lost`, checkpoints.
    pub summary: JobSummary,
    /// The newest version this job published (the final one), when publishing.
    pub version: Option<VersionMeta>,
    /// Versions published (or recognized on a replay) by this run.
    pub versions: u64,
    /// The checkpoint this run resumed from, if any.
    pub restored: Option<Epoch>,
    /// Through a remote parameter server: what its client counted (retries, duplicate
    /// pushes, shard restarts, lost updates); zeros for the in-process store.
    pub store: Option<StoreCounters>,
}

impl TrainHandle {
    /// The running dataflow (metrics, progress, checkpoints).
    pub fn job(&self) -> &JobHandle {
        &self.job
    }

    /// Whether the job has finished.
    pub fn is_finished(&self) -> bool {
        self.job.is_finished()
    }

    /// Through a parameter server, what its client counted so far (retries, duplicate
    /// pushes, shard restarts, lost updates); `None` without one.
    pub fn store_counters(&self) -> Option<StoreCounters> {
        self.shared.backend.as_ref().and_then(|b| b.counters())
    }

    /// Stops the job cleanly: with checkpoints on, takes a last checkpoint (waiting up to
    /// `wait` for it to complete), then ends followed sources; the learner drains and the
    /// final version is published by [`join`](Self::join). The checkpoints are kept, so the
    /// next start resumes from the last one.
    pub fn stop(&self, wait: Duration) {
        self.stopped.store(true, Ordering::SeqCst);
        if self.checkpoint.dir.is_some() && !self.job.is_finished() {
            // a failed last checkpoint leaves the previous one to resume from
            let _ = self.job.checkpoint_now(Some(wait));
        }
        self.job.stop();
    }

    /// Waits for the end of the input (or a [`stop`](Self::stop)), publishes the final version
    /// and returns the outcome.
    pub fn join(self) -> Result<TrainOutcome> {
        let TrainHandle {
            job,
            shared,
            started,
            checkpoint,
            stopped,
        } = self;
        let restored = job.restored_checkpoint();
        let summary = job.join()?;
        // the training job's run time (exporting and publishing the model come after)
        let seconds = started.elapsed().as_secs_f64();
        let finished =
            std::mem::take(&mut *shared.result.lock().unwrap_or_else(|p| p.into_inner()));
        let (trained, report, stream) = merge_finished(&shared, finished)?;
        if let Some(why) = diverged(&report.metrics, report.rows) {
            return Err(Error::InvalidArgument(why));
        }
        let report = Report::new(report.rows, seconds, report.metrics);
        let (version, versions) = publish_final(&shared, stream, &trained, &report)?;
        if !stopped.load(Ordering::SeqCst) {
            if let Some(dir) = &checkpoint.dir {
                CheckpointStore::open(dir, checkpoint.retain.max(1))?.clear()?;
                // the directory itself too, when nothing else is in it
                let _ = std::fs::remove_dir(dir);
            }
        }
        let store = shared.backend.as_ref().and_then(|b| b.counters());
        if let Some(backend) = &shared.backend {
            backend.close()?;
        }
        Ok(TrainOutcome {
            trained,
            report,
            store,
            summary,
            version,
            versions,
            restored,
        })
    }
}

/// One model, report and publication stream from what the learner subtasks left: subtask 0's
/// pipeline, model and stream, every subtask's evaluator merged (see the [module
/// docs](self)).
fn merge_finished(
    shared: &Shared,
    mut finished: Vec<Finished>,
) -> Result<(TrainedModel, Report, Option<ModelStream>)> {
    if finished.len() != shared.parallelism {
        return Err(Error::InvalidArgument(format!(
            "{} of {} learner subtasks finished",
            finished.len(),
            shared.parallelism
        )));
    }
    finished.sort_by_key(|f| f.subtask);
    let mut rest = finished.split_off(1);
    let Some(Finished {
        pipeline,
        model,
        eval,
        metrics,
        rows,
        stream,
        ..
    }) = finished.pop()
    else {
        return Err(Error::InvalidArgument("the learner did not finish".into()));
    };
    let model = match model {
        Some(model) => model,
        None => shared.shared_model()?,
    };
    let mut trained = TrainedModel { pipeline, model };
    let report = match eval {
        Some(mut eval) => {
            for other in rest.iter_mut().filter_map(|f| f.eval.as_ref()) {
                eval.merge(other)?;
            }
            eval.finish(&mut trained.model)?
        }
        None => Report::new(rows, 0.0, metrics),
    };
    Ok((trained, report, stream))
}

/// Why a model whose progressive metrics are `metrics` after `rows` rows has diverged, if it
/// has: a metric that is NaN or infinite means predictions that are (the log loss clamps its
/// probabilities, so only a NaN prediction makes it non-finite). Such a model is neither
/// published nor returned. AUC, precision, recall and F1 are left out: they are NaN when the
/// labels so far do not define them (one class only, e.g. delayed labels before the first
/// click), and a NaN prediction makes the log loss NaN anyway. Metrics over no rows at all
/// (an empty input, or an approximate restart that lost every row it was sent) are undefined,
/// not diverged.
pub(crate) fn diverged(metrics: &MetricValues, rows: u64) -> Option<String> {
    const UNDEFINED_BY_LABELS: [&str; 4] = ["auc", "precision", "recall", "f1"];
    if rows == 0 {
        return None;
    }
    let (name, value) = metrics.iter().find(|(name, v)| {
        !v.is_finite() && !UNDEFINED_BY_LABELS.iter().any(|u| name.ends_with(u))
    })?;
    Some(format!(
        "the model diverged after {rows} rows: its {name} is {value} (its predictions are not \
         finite numbers), so it is not published; scale the numeric columns (drop --no-scale, \
         or `scale = true` in the features) or lower the learning rate"
    ))
}

/// Publishes the final version (a batch fit's only one) unless the last periodic version
/// already holds exactly this model.
fn publish_final(
    shared: &Shared,
    stream: Option<ModelStream>,
    trained: &TrainedModel,
    report: &Report,
) -> Result<(Option<VersionMeta>, u64)> {
    let mut stream = match (stream, &shared.publish) {
        (Some(s), _) => s,
        (None, Some(p)) => ModelStream::new(
            p.registry.clone(),
            p.name.clone(),
            p.every,
            p.template.clone(),
        )?,
        (None, None) => return Ok((None, 0)),
    };
    let before = stream.published();
    let metrics = metric_map(&report.metrics);
    let meta = stream.finish(trained, report.rows, metrics.clone())?;
    if stream.published() > before {
        if let Some(events) = &shared.events {
            events(&TrainEvent::Published {
                version: meta.version,
                rows: report.rows,
                metrics,
            });
        }
    }
    Ok((Some(meta), stream.published()))
}
