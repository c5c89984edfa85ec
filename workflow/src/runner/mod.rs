//! The runner: executes a checked [`Workflow`] in one process.
//!
//! Nodes run as tokio tasks (their CPU work on the blocking pool); the scheduler loop owns the
//! [`RunState`], starts a node when a trigger fires, and saves the state (atomically) after
//! every change, so a killed run restarts where it stopped. Triggers:
//!
//! - no trigger: once, at the start;
//! - `after`: once all of those nodes have succeeded (a gate counts only when it passed), then
//!   again each time one of them succeeds again, with the version it passed on;
//! - `on-new-version`: once per version its training node publishes;
//! - `every` / `cron`: on the schedule (after its `after` nodes succeeded), until `max-runs`,
//!   or until every unscheduled node has finished.
//!
//! A failed attempt is retried `retries` times with exponential backoff; a node that still
//! fails fails the nodes waiting for it (with the cause), and the rest keep running.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | this one | [`run`], [`run_showing`], [`RunOptions`], [`RunBoard`], [`RunSummary`]: the run loop |
//! | [`state`] | [`RunState`]: `state.json` in the run directory |
//! | `scheduler` | the scheduler: node bookkeeping, triggers, completions, progress |
//! | `finish` | schedules firing, failure propagation, when a node is finished |
//! | `data` | reading sources as record batches (holdouts of gates, example rows) |
//! | `sources` | a spec's sources as core sources for the training job's dataflow |
//! | `learners` | a node's feature pipeline and learner spec |
//! | `nodes` | one module per node kind |

mod data;
mod finish;
pub(crate) mod learners;
mod nodes;
mod scheduler;
mod sources;
pub mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

pub use nodes::processes::{node_worker, NodeWorker};
pub use state::{NodeState, NodeStatus, RunState, STATE_FILE};

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::spec::Workflow;
use scheduler::Scheduler;

/// The registry directory inside a run directory.
pub const REGISTRY_DIR: &str = "registry";

/// A callback that sees the run state after every change (for live status lines).
pub type OnUpdate = Arc<dyn Fn(&RunState) + Send + Sync>;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// The run directory: `state.json`, `registry/`, `logs/`.
    pub run_dir: PathBuf,
    /// The spec file (recorded in the state).
    pub spec_path: PathBuf,
    /// A hash of the spec text ([`state::spec_hash`]); a run directory refuses another spec.
    pub spec_hash: String,
    /// Called after every state change.
    pub on_update: Option<OnUpdate>,
    /// Keep serving nodes up after the rest of the workflow finished (until the shutdown
    /// future completes).
    pub serve_forever: bool,
    /// The `eddy` binary a `stream-train` node with `processes` starts its worker and shard
    /// processes from (`eddy run` passes itself; `None`: `eddy` on `PATH`).
    pub program: Option<PathBuf>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("run_dir", &self.run_dir)
            .field("spec_path", &self.spec_path)
            .finish_non_exhaustive()
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The final state (also in `state.json`).
    pub state: RunState,
    /// Whether Ctrl-C (the shutdown future) stopped it before every node finished.
    pub interrupted: bool,
    /// The registry directory.
    pub registry: PathBuf,
}

impl RunSummary {
    /// The nodes that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.state
            .nodes
            .iter()
            .filter(|(_, n)| n.status == NodeStatus::Failed)
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Runs `wf` until every node has finished or `shutdown` completes (Ctrl-C), resuming the run
/// in `opts.run_dir` if one is there.
pub async fn run(
    wf: Workflow,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary> {
    run_showing(wf, opts, RunBoard::default(), shutdown).await
}

/// What a run shows while it runs, for a dashboard in the same process: its training jobs
/// (counters, operators, source lags) and its `serve` nodes' model servers.
#[derive(Debug, Clone, Default)]
pub struct RunBoard {
    /// The training nodes' jobs, by node name.
    pub jobs: Arc<eddy_core::metrics::JobBoard>,
    /// The serve nodes' servers, by node name.
    pub servers: Arc<crate::serving::ServerBoard>,
}

/// [`run`], showing its training jobs and model servers on `board` (for a dashboard).
pub async fn run_showing(
    wf: Workflow,
    opts: RunOptions,
    board: RunBoard,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary> {
    std::fs::create_dir_all(&opts.run_dir).map_err(|e| Error::io(&opts.run_dir, e))?;
    let registry = Registry::open(opts.run_dir.join(REGISTRY_DIR))?;
    let mut state = match RunState::load(&opts.run_dir)? {
        Some(s) if s.spec_hash != opts.spec_hash => {
            return Err(Error::InvalidArgument(format!(
            "{} holds a run of another spec (or the spec changed since); use another run directory",
            opts.run_dir.display()
        )))
        }
        Some(s) => s,
        None => RunState {
            workflow: wf.name.clone(),
            spec: opts.spec_path.clone(),
            spec_hash: opts.spec_hash.clone(),
            ..Default::default()
        },
    };
    state.starts += 1;
    state.finished = false;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let mut s = Scheduler {
        wf: Arc::new(wf),
        opts,
        registry,
        state,
        rt: BTreeMap::new(),
        stop: Arc::new(AtomicBool::new(false)),
        done_tx,
        progress_tx,
        wind_down: tokio::sync::watch::channel(false).0,
        generators: Default::default(),
        jobs: board.jobs,
        servers: board.servers,
    };
    s.init()?;
    tokio::pin!(shutdown);
    let mut stopping = false;
    loop {
        if !stopping {
            s.start_ready();
        }
        s.update_finished();
        s.state.settled = s.settled();
        if stopping || (s.state.settled && !s.opts.serve_forever) {
            s.wind_down.send_replace(true);
        }
        s.save()?;
        let running = s.rt.values().any(|r| r.running);
        if !running && (stopping || s.rt.values().all(|r| r.finished)) {
            break;
        }
        let deadline = s.rt.values().filter_map(|r| r.next_tick).min();
        // each event is shown on its own (before the nodes it makes ready start), so a
        // listener sees every verdict, in the order things happened
        tokio::select! {
            Some(done) = done_rx.recv() => {
                s.on_done(done)?;
                // the verdict is on disk before the nodes it makes ready start: a run
                // killed right after never reruns a node that finished
                s.save()?;
            }
            Some(p) = progress_rx.recv() => s.on_progress(p)?,
            () = sleep_until(deadline), if !stopping => s.on_ticks(),
            () = &mut shutdown, if !stopping => {
                stopping = true;
                s.stop.store(true, Ordering::Relaxed);
            }
        }
    }
    while let Ok(p) = progress_rx.try_recv() {
        s.on_progress(p)?;
    }
    // Ctrl-C after everything but the servers finished is the normal end of a served run.
    let interrupted = stopping && !s.state.settled;
    s.state.finished = !interrupted;
    s.save()?;
    Ok(RunSummary {
        state: s.state.clone(),
        interrupted,
        registry: s.registry.root().to_path_buf(),
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The run directory's registry.
pub fn registry_of(run_dir: &Path) -> Result<Registry> {
    Registry::open(run_dir.join(REGISTRY_DIR))
}
