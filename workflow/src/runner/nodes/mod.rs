//! One module per node kind. Each takes a [`NodeCtx`] and returns an [`Outcome`]; the scheduler
//! (`runner`) handles triggers, retries and state.
//!
//! | module | kind |
//! |---|---|
//! | `train` | `batch-train`, `stream-train` |
//! | `evaluate` | `evaluate` (the gate) |
//! | `deploy` | `deploy` |
//! | `serve` | `serve` |
//! | `command` | `command` |

pub(crate) mod command;
pub(crate) mod deploy;
pub(crate) mod evaluate;
pub(crate) mod processes;
pub(crate) mod serve;
pub(crate) mod train;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::Result;
use crate::registry::Registry;
use crate::spec::{NodeKind, NodeSpec, Workflow};

/// What a node reports while it runs.
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    /// A training node published a version.
    Published {
        /// The node.
        node: String,
        /// The version.
        version: u64,
        /// Rows trained so far.
        rows: u64,
        /// Progressive metrics so far.
        metrics: BTreeMap<String, f64>,
    },
    /// A training job's failover counters, source lag or label tally changed while it runs.
    Failover {
        /// The node.
        node: String,
        /// The job's failover counters (`restarts`, `records_lost`, `records_replayed`), its
        /// sources' lag (`source_lag`) and/or its label tally
        /// ([`LabelTally::named`](crate::labels::LabelTally::named)).
        counters: Vec<(&'static str, u64)>,
    },
    /// An attempt failed and will be retried after a backoff.
    Retrying {
        /// The node.
        node: String,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// Why.
        error: String,
    },
    /// A serving node listens.
    Serving {
        /// The node.
        node: String,
        /// The predict URL.
        url: String,
        /// A ready-to-paste request, if an example row could be read.
        curl: Option<String>,
    },
    /// Rows processed so far.
    Rows {
        /// The node.
        node: String,
        /// Rows.
        rows: u64,
    },
}

/// Everything a node run sees.
#[derive(Clone)]
pub(crate) struct NodeCtx {
    pub wf: Arc<Workflow>,
    pub spec: NodeSpec,
    pub registry: Registry,
    pub run_dir: PathBuf,
    /// Set on Ctrl-C: long-running nodes stop soon after.
    pub stop: Arc<AtomicBool>,
    pub progress: mpsc::UnboundedSender<Progress>,
    /// Becomes true when serving nodes should stop (the rest of the workflow finished).
    pub wind_down: tokio::sync::watch::Receiver<bool>,
    /// The run's shared click generators.
    pub generators: crate::runner::data::Generators,
    /// The run's training jobs: train nodes put theirs here, serve nodes show them on
    /// `/metrics`.
    pub jobs: Arc<eddy_core::metrics::JobBoard>,
    /// The run's model servers: serve nodes put theirs here, for a dashboard.
    pub servers: Arc<crate::serving::ServerBoard>,
    /// The model version that triggered this run (a gate's or deploy's input), if any.
    pub input_version: Option<u64>,
    /// Whether this is a retry or a restart of an interrupted run.
    pub resumed: bool,
    /// The workflow's spec file (what worker processes load).
    pub spec_path: PathBuf,
    /// The `eddy` binary worker processes run ([`RunOptions::program`](super::RunOptions)).
    pub program: Option<PathBuf>,
}

impl NodeCtx {
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn report(&self, p: Progress) {
        // The scheduler outlives every node task; a send can only fail during shutdown.
        let _ = self.progress.send(p);
    }
}

/// What a successful node run produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Rows read.
    pub rows: u64,
    /// Metrics (training or evaluation).
    pub metrics: BTreeMap<String, f64>,
    /// The version produced or acted on, passed to dependents.
    pub version: Option<u64>,
    /// False when a gate rejected the version: dependents do not run.
    pub pass: bool,
    /// A line for the status and summary.
    pub message: Option<String>,
}

/// Runs one attempt of the node.
pub(crate) async fn run_node(ctx: NodeCtx) -> Result<Outcome> {
    match &ctx.spec.kind {
        NodeKind::BatchTrain(_) | NodeKind::StreamTrain(_) => {
            let c = ctx.clone();
            blocking(&ctx.spec.name, move || train::run(&c)).await
        }
        NodeKind::Evaluate(_) => {
            let c = ctx.clone();
            blocking(&ctx.spec.name, move || evaluate::run(&c)).await
        }
        NodeKind::Deploy(_) => deploy::run(&ctx),
        NodeKind::Command(_) => command::run(&ctx).await,
        NodeKind::Serve(_) => serve::run(&ctx).await,
    }
}

async fn blocking<T: Send + 'static>(
    node: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(crate::Error::Node {
            node: node.to_string(),
            message: format!("the node's task panicked: {e}"),
        })
    })
}
