//! Workflow specs: a TOML file → serde structs (`raw`, unknown keys refused, every value with
//! its span) → a checked [`Workflow`] (`check`). Every refusal is an
//! [`Error::Spec`] naming the line, column and key, with a hint where one
//! helps (the closest valid key for a typo, the known names for a dangling reference).
//!
//! ```
//! let wf = eddy_workflow::spec::Workflow::parse(r#"
//! [sources.history]
//! kind = "ctr"
//! rows = 2000
//!
//! [features.ctr]
//! label = "label"
//! categorical = ["c0", "c1"]
//! hash-bits = 10
//!
//! [nodes.train]
//! kind = "batch-train"
//! source = "history"
//! features = "ctr"
//! learner = "logistic"
//! "#)?;
//! assert_eq!(wf.nodes[0].name, "train");
//! # Ok::<(), eddy_workflow::Error>(())
//! ```
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | this one | the checked [`Workflow`] and its parts |
//! | [`schedule`] | durations and five-field [`Cron`] |
//! | `raw` | the serde structs |
//! | `check` | raw → checked: sources, feature pipelines, shared checks |
//! | `check_node` | raw → checked: nodes (kinds, keys per kind, values, triggers) |
//! | `check_ps` | raw → checked: a `stream-train` node's `parallelism`, `ps`, `consistency` |
//! | `graph` | references, cycles, topological order, type checks across nodes |
//! | `locate` | byte span → line:column, "did you mean" |

mod check;
pub(crate) mod check_node;
mod check_ps;
mod graph;
mod locate;
mod raw;
pub mod schedule;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use eddy_ps::{Consistency, JobPolicy};
pub use schedule::{parse_duration, Cron};

use crate::error::{Error, Result};

/// A checked workflow: every reference resolves, the graph has no cycle, every node has the
/// keys its kind needs.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// `[workflow] name`, else the file stem, else `"workflow"`.
    pub name: String,
    /// `[workflow] description`.
    pub description: Option<String>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceSpec>,
    /// Feature pipelines by name.
    pub features: BTreeMap<String, FeaturesSpec>,
    /// Nodes in a topological order of their `after` / `on-new-version` / `warm-start` edges.
    pub nodes: Vec<NodeSpec>,
    /// The directory relative paths (file sources, command programs) are resolved against.
    pub base_dir: PathBuf,
}

/// A data source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A CSV / JSON-lines / Parquet file or directory.
    File {
        /// The path (resolved against the spec's directory).
        path: PathBuf,
        /// `csv`, `jsonl` or `parquet`; `None` means by extension.
        format: Option<FileFormat>,
        /// Rows per batch (default 4096).
        batch_rows: usize,
        /// `follow = true`: keep reading the file (or directory) as it grows, until the run is
        /// stopped: an unbounded source (default false).
        follow: bool,
    },
    /// Rows `offset .. offset + rows` of eddy-core's synthetic click stream
    /// ([`CtrGenerator`](eddy_core::datagen::ctr::CtrGenerator)).
    Ctr {
        /// Generator seed (default the `eddy gen ctr` seed).
        seed: u64,
        /// First row.
        offset: u64,
        /// Number of rows.
        rows: u64,
        /// Rows per batch (default 1000).
        batch_rows: usize,
        /// Pace the stream at this many rows per second (`None`: as fast as consumed).
        rows_per_second: Option<f64>,
    },
    /// A Kafka topic: `address = "kafka://HOST:PORT/TOPIC[?group=…&start=…&format=…]"`, read
    /// until the run is stopped unless `follow = false` (then up to its end at open).
    Kafka {
        /// The parsed address; its `follow` is the source's `follow` (default true).
        uri: eddy_core::source::kafka::KafkaUri,
        /// Rows per batch (default 4096).
        batch_rows: usize,
    },
    /// All of `history`, then all of `live`, with the same schema.
    Hybrid {
        /// The bounded history source.
        history: String,
        /// The live source.
        live: String,
    },
    /// Training examples with delayed labels: the rows of `impressions`, each labelled by
    /// whether a row of `clicks` with the same key arrives within `wait` of it in event time
    /// (see [`labels`](crate::labels)).
    DelayedLabels(DelayedLabelsSpec),
}

/// A `delayed-labels` source (`kind = "delayed-labels"`): two named sources joined in label
/// mode by the runtime. Its rows are the impressions' columns, then `label` (1: clicked within
/// `wait`, 0: not) and `label_delay_ms`, handed on in event-time order.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayedLabelsSpec {
    /// `impressions`: the source of the rows to label (any plain source: file, ctr, kafka,
    /// hybrid).
    pub impressions: String,
    /// `clicks`: the source of the events that make a row positive.
    pub clicks: String,
    /// `key`: the columns an impression and its clicks share (in both sources, same types).
    pub key: Vec<String>,
    /// `time`: the event-time column (Int64 ms or a timestamp) of both sources.
    pub time: String,
    /// `wait`: how long after an impression a click still counts (> 0).
    pub wait: Duration,
    /// `out-of-orderness`: how far each source's event time may run out of order (default
    /// 500 ms, as `eddy agg`); a row later than that is late: counted, not labelled.
    pub out_of_orderness: Duration,
    /// `parallelism`: subtasks of the join (default 1).
    pub parallelism: u32,
}

/// File formats of a `file` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// CSV with a header row.
    Csv,
    /// JSON lines.
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// `given`, else the format `path`'s extension names (`.jsonl`, `.json`, `.ndjson`: JSON
    /// lines; `.parquet`: Parquet; anything else and directories: CSV).
    pub fn of(path: &std::path::Path, given: Option<FileFormat>) -> FileFormat {
        given.unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json" | "ndjson") => FileFormat::Jsonl,
            Some("parquet") => FileFormat::Parquet,
            _ => FileFormat::Csv,
        })
    }
}

/// A feature pipeline: which columns, how they become features.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturesSpec {
    /// The label column.
    pub label: String,
    /// Numeric columns.
    pub numeric: Vec<String>,
    /// Categorical columns (hashed).
    pub categorical: Vec<String>,
    /// Hashed crosses of categorical columns.
    pub crosses: Vec<Vec<String>>,
    /// `2^hash_bits` hashed features (default 18).
    pub hash_bits: u32,
    /// Standardize numeric columns with running statistics (default true).
    pub scale: bool,
    /// Dense numeric vectors instead of hashed features (k-means, Gaussian models).
    pub dense: bool,
}

/// One node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's name (its `[nodes.<name>]` key).
    pub name: String,
    /// What it does.
    pub kind: NodeKind,
    /// When it runs.
    pub triggers: Triggers,
    /// Retries after a failed run.
    pub retry: RetryPolicy,
}

/// When a node runs. With no trigger a node runs once, at the start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triggers {
    /// Run after all of these succeeded (and again each time one of them succeeds again).
    pub after: Vec<String>,
    /// Run for each model version this training node publishes.
    pub on_new_version: Option<String>,
    /// Run on a schedule.
    pub schedule: Option<Schedule>,
    /// Stop scheduling after this many runs.
    pub max_runs: Option<u32>,
}

/// A schedule trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every interval, the first run right away.
    Every(Duration),
    /// At the minutes a cron expression names (UTC).
    Cron(Cron),
}

/// Retries with exponential backoff: attempt `k` (from 1) waits `backoff · 2^(k-1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first failure (default 0).
    pub retries: u32,
    /// The first wait (default 1s).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            backoff: Duration::from_secs(1),
        }
    }
}

/// What a node does.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Train on a bounded source (a linfa learner, or a pass of an online one) and publish one
    /// version.
    BatchTrain(TrainSpec),
    /// Train an online learner over a source, publishing versions as it goes.
    StreamTrain(TrainSpec),
    /// Score a model version on held-out data; promote it to `validated` if it passes.
    Evaluate(EvaluateSpec),
    /// Move a model version to a stage.
    Deploy(DeploySpec),
    /// Run an external program.
    Command(CommandSpec),
    /// Serve a model over HTTP until the rest of the workflow has finished (or forever with
    /// `eddy run --serve-forever`).
    Serve(ServeSpec),
}

impl NodeKind {
    /// The kind as spelled in specs.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::BatchTrain(_) => "batch-train",
            NodeKind::StreamTrain(_) => "stream-train",
            NodeKind::Evaluate(_) => "evaluate",
            NodeKind::Deploy(_) => "deploy",
            NodeKind::Command(_) => "command",
            NodeKind::Serve(_) => "serve",
        }
    }

    /// Whether the node trains and publishes model versions.
    pub fn trains(&self) -> bool {
        self.train().is_some()
    }

    /// The training spec of a `batch-train` or `stream-train` node.
    pub fn train(&self) -> Option<&TrainSpec> {
        match self {
            NodeKind::BatchTrain(t) | NodeKind::StreamTrain(t) => Some(t),
            _ => None,
        }
    }
}

/// Learners by name: the [learner registry](eddy_algorithms::learners)'s.
pub use eddy_algorithms::learners::LearnerKind;
pub use eddy_core::dataflow::FailoverMode;

/// A training node (`batch-train` or `stream-train`).
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// The source it reads.
    pub source: String,
    /// The feature pipeline.
    pub features: String,
    /// The learner.
    pub learner: LearnerKind,
    /// Learner hyperparameters (the learner's params type, kebab-case), checked when built.
    pub params: toml::Table,
    /// Passes over the data (batch pass of an online learner; default 1).
    pub epochs: u32,
    /// Start from the latest model of this training node.
    pub warm_start: Option<String>,
    /// Publish a version every this long (stream-train).
    pub publish_every: Option<Duration>,
    /// Publish a version every this many rows (stream-train).
    pub publish_rows: Option<u64>,
    /// `failover`: what a failure of a training task does (stream-train): roll back to the
    /// last checkpoint (`"exactly-once"`, the default) or restart the failed task alone
    /// (`"approximate"`, the default and the only mode with `parallelism` > 1). See
    /// [`TrainJob`](crate::train::TrainJob).
    pub failover: FailoverMode,
    /// `checkpoint-every`: time between checkpoints of a stream-train node (default 10 s;
    /// `"off"`: none). Checkpoints live in `<run dir>/checkpoints/<node>/`; a retry or a
    /// restarted run resumes from the newest.
    pub checkpoint_every: Option<Duration>,
    /// `parallelism`: training workers sharing one model (stream-train; default 1). More than
    /// one implies `ps = "local"` when `ps` is not given.
    pub parallelism: u32,
    /// `ps`: where the model lives while the node trains (stream-train, `ftrl` or `fm`);
    /// `None`: in the node, as one local learner. See [`PsSpec`].
    pub ps: Option<PsSpec>,
    /// `consistency`: how far the workers may drift apart, `"async"` (the default),
    /// `"bounded:S"` or `"sync"` (only with a parameter server).
    pub consistency: Consistency,
    /// `ps-existing`: what running shards (`ps = ["HOST:PORT", ...]`) holding another job's
    /// tables do: `"refuse"` (the default: the node fails, naming the job they hold),
    /// `"resume"` (train on top of them) or `"fresh"` (clear them first).
    pub ps_existing: JobPolicy,
    /// `processes`: train in this many worker processes (`eddy worker`) under the node's
    /// supervisor instead of in the run's process (stream-train on a Kafka topic, `ftrl` or
    /// `fm`; default `None`). The topic's partitions split over the workers, the model lives
    /// in parameter-server shards (`ps = ["HOST:PORT", ...]`, or as many shard processes as
    /// workers started by the node), a dead worker restarts alone (`failover =
    /// "approximate"`, the default here) or the job rolls back to its last job-wide epoch
    /// (`"exactly-once"`). The node publishes one version when every worker finished: worker
    /// 0's pipeline with the shards' tables. See
    /// [`supervise`](crate::train::supervise).
    pub processes: Option<u32>,
    /// `supervision = "external"`: the node's worker processes are started and restarted by
    /// someone else — a Kubernetes StatefulSet running `eddy node-worker` — and the node only
    /// passes worker 0's versions on to the run until it is stopped (default `"node"`: the
    /// node starts and supervises them). Needs `processes`, running shards and approximate
    /// failover.
    pub external_workers: bool,
}

/// The parameter server a `stream-train` node trains through (`ps = ...`): the training job's
/// `learn` operator runs `parallelism` subtasks, each training the store's tables (FTRL or FM)
/// on its share of the source; every publication reads the tables back into a local model and
/// publishes it like any other version. Checkpoints and failover are the training job's (see
/// [`train`](crate::train), "Parallelism and parameter servers").
///
/// A node with a parameter server cannot `warm-start` (the store applies the learner's updates
/// to its rows and cannot be seeded with weights).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsSpec {
    /// `ps = "local"`: an in-process [`LocalPs`](eddy_ps::LocalPs), fresh for each run.
    Local,
    /// `ps = ["HOST:PORT", ...]`: running shards (`eddy ps serve --shard I/N`), shard `i` at
    /// the `i`-th address, reached over gRPC. They keep their tables between runs.
    Remote(Vec<String>),
    /// `ps = { shards = N }`: the node starts `N` [`PsServer`](eddy_ps::PsServer) shards in
    /// process on `127.0.0.1` (port 0, not persisted), trains through them over real gRPC
    /// loopback and stops them when it ends. For trying the remote path on one machine.
    Spawn(u32),
}

/// An `evaluate` node: a gate over a holdout.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateSpec {
    /// The training node whose versions it scores.
    pub model: String,
    /// The held-out data.
    pub source: String,
    /// Pass only if AUC ≥ this.
    pub min_auc: Option<f64>,
    /// Pass only if logloss ≤ this.
    pub max_logloss: Option<f64>,
    /// Pass only if accuracy ≥ this.
    pub min_accuracy: Option<f64>,
}

/// A `deploy` node.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploySpec {
    /// The training node whose version it moves.
    pub model: String,
    /// The target stage (default production).
    pub stage: crate::registry::Stage,
}

/// A `serve` node.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSpec {
    /// The training node whose model it serves.
    pub model: String,
    /// Serve the newest version in this stage (default production; `candidate` serves the
    /// newest version of any stage).
    pub stage: crate::registry::Stage,
    /// The address to listen on (default `127.0.0.1:0`, a free port).
    pub address: std::net::SocketAddr,
}

/// A `command` node.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    /// The program (a path relative to the spec's directory if it contains a `/`, else looked
    /// up on `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Kill it after this long.
    pub timeout: Option<Duration>,
}

impl Workflow {
    /// Parses and checks a spec held in a string (relative paths resolve against the current
    /// directory; errors carry no file name).
    pub fn parse(text: &str) -> Result<Workflow> {
        check::check(text, Path::new(""))
    }

    /// Reads, parses and checks the spec file at `path`.
    pub fn load(path: &Path) -> Result<Workflow> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        check::check(&text, path)
    }

    /// The nodes `node` waits for before its first run: its `after` nodes, its warm-start
    /// node, and — for an `evaluate` or `deploy` node with no trigger — the node whose model it
    /// uses.
    pub fn waits_for(&self, node: &NodeSpec) -> Vec<String> {
        let mut deps = node.triggers.after.clone();
        match &node.kind {
            NodeKind::BatchTrain(t) | NodeKind::StreamTrain(t) => deps.extend(t.warm_start.clone()),
            NodeKind::Evaluate(EvaluateSpec { model, .. })
            | NodeKind::Deploy(DeploySpec { model, .. })
                if node.triggers == Triggers::default() =>
            {
                deps.push(model.clone())
            }
            _ => {}
        }
        deps.dedup();
        deps
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
