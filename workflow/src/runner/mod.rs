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
//! | this one | [`run`], [`RunOptions`], [`RunSummary`]: the scheduler |
//! | [`state`] | [`RunState`]: `state.json` in the run directory |
//! | `finish` | schedules firing, failure propagation, when a node is finished |
//! | `data` | reading sources as record batches (holdouts of gates, example rows) |
//! | `sources` | a spec's sources as core sources for the training job's dataflow |
//! | `learners` | a node's feature pipeline and learner spec |
//! | `nodes` | one module per node kind |

mod data;
mod finish;
pub(crate) mod learners;
mod nodes;
mod sources;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use eddy_core::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use state::{NodeState, NodeStatus, RunState, STATE_FILE};

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::spec::{NodeSpec, Schedule, Workflow};
use nodes::{NodeCtx, Outcome, Progress};

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

enum Mode {
    Once,
    Service,
    After,
    NewVersion(String),
    Schedule(Schedule),
}

#[derive(Default)]
struct NodeRt {
    queue: VecDeque<Option<u64>>,
    running: bool,
    finished: bool,
    resume: bool,
    seen: BTreeSet<u64>,
    next_tick: Option<Instant>,
    /// A `serve` node has served in this start once its runs exceed this count.
    service_runs_from: u32,
}

struct Done {
    node: String,
    attempts: u32,
    result: Result<Outcome>,
}

struct Scheduler {
    wf: Arc<Workflow>,
    opts: RunOptions,
    registry: Registry,
    state: RunState,
    rt: BTreeMap<String, NodeRt>,
    stop: Arc<AtomicBool>,
    done_tx: mpsc::UnboundedSender<Done>,
    progress_tx: mpsc::UnboundedSender<Progress>,
    wind_down: tokio::sync::watch::Sender<bool>,
    generators: data::Generators,
    /// The run's training jobs, for the serve nodes' `/metrics`.
    jobs: Arc<eddy_core::metrics::JobBoard>,
}

/// The node metrics a training job's failover counters, source lag and label tally (a
/// `delayed-labels` source) are shown as (`eddy status`); they come from the job, not its
/// evaluation, so a published version keeps them.
const FAILOVER_METRICS: [&str; 10] = [
    "restarts",
    "records_lost",
    "records_replayed",
    "source_lag",
    "labels_positive",
    "labels_negative",
    "label_delay_mean_ms",
    "label_delay_max_ms",
    "late_impressions",
    "late_clicks",
];

/// Runs `wf` until every node has finished or `shutdown` completes (Ctrl-C), resuming the run
/// in `opts.run_dir` if one is there.
pub async fn run(
    wf: Workflow,
    opts: RunOptions,
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
        jobs: Arc::default(),
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

impl Scheduler {
    fn spec(&self, name: &str) -> &NodeSpec {
        self.wf
            .node(name)
            .expect("scheduler names come from the workflow")
    }

    fn mode(&self, name: &str) -> Mode {
        let n = self.spec(name);
        if matches!(n.kind, crate::spec::NodeKind::Serve(_)) {
            Mode::Service
        } else if let Some(s) = &n.triggers.schedule {
            Mode::Schedule(s.clone())
        } else if let Some(v) = &n.triggers.on_new_version {
            Mode::NewVersion(v.clone())
        } else if self.wf.waits_for(n).is_empty() {
            Mode::Once
        } else {
            Mode::After
        }
    }

    fn node(&mut self, name: &str) -> &mut NodeState {
        self.state.nodes.entry(name.to_string()).or_default()
    }

    fn gate_open(&self, name: &str) -> bool {
        self.wf
            .waits_for(self.spec(name))
            .iter()
            .all(|d| self.state.nodes.get(d).is_some_and(|s| s.succeeded_once))
    }

    fn init(&mut self) -> Result<()> {
        let names: Vec<String> = self.wf.nodes.iter().map(|n| n.name.clone()).collect();
        for name in &names {
            let st = self.node(name).clone();
            let mut rt = NodeRt {
                resume: matches!(
                    st.status,
                    NodeStatus::Running | NodeStatus::Retrying | NodeStatus::Interrupted
                ),
                seen: st.handled_versions.iter().copied().collect(),
                ..Default::default()
            };
            if st.status == NodeStatus::Failed {
                // a restart retries failed nodes
                let n = self.node(name);
                n.status = NodeStatus::Pending;
                n.error = None;
            }
            if st.status == NodeStatus::Skipped {
                self.node(name).status = NodeStatus::Pending;
            }
            if self.opts.serve_forever && matches!(self.mode(name), Mode::Service) {
                // a server lives as long as its `eddy run`: serving again is what
                // `--serve-forever` asks of a run whose server has gone with its last start
                rt.service_runs_from = st.runs;
                let n = self.node(name);
                n.succeeded_once = false;
                n.status = NodeStatus::Pending;
            }
            rt.finished = false;
            self.rt.insert(name.clone(), rt);
        }
        for name in &names {
            self.open_gate(name)?;
        }
        Ok(())
    }

    /// Queues what a node whose `waits_for` nodes have all succeeded should do now.
    fn open_gate(&mut self, name: &str) -> Result<()> {
        if !self.gate_open(name) || self.rt[name].finished {
            return Ok(());
        }
        match self.mode(name) {
            Mode::Once | Mode::After | Mode::Service => {
                let st = &self.state.nodes[name];
                let rt = &self.rt[name];
                if !st.succeeded_once && rt.queue.is_empty() && !rt.running {
                    let input = self
                        .wf
                        .waits_for(self.spec(name))
                        .iter()
                        .find_map(|d| self.state.nodes.get(d).and_then(|s| s.last_version));
                    self.rt
                        .get_mut(name)
                        .expect("known node")
                        .queue
                        .push_back(input);
                }
            }
            Mode::NewVersion(src) => {
                let model = src.clone();
                let versions: Vec<u64> = self
                    .registry
                    .versions(&model)?
                    .iter()
                    .map(|m| m.version)
                    .collect();
                for v in versions {
                    self.offer_version(name, v);
                }
            }
            Mode::Schedule(schedule) => {
                let rt = self.rt.get_mut(name).expect("known node");
                if rt.next_tick.is_none() {
                    rt.next_tick = finish::first_tick(&schedule, Instant::now());
                }
            }
        }
        Ok(())
    }

    fn offer_version(&mut self, name: &str, version: u64) {
        let rt = self.rt.get_mut(name).expect("known node");
        if !rt.finished && rt.seen.insert(version) {
            rt.queue.push_back(Some(version));
        }
    }

    fn start_ready(&mut self) {
        let ready: Vec<String> = self
            .rt
            .iter()
            .filter(|(_, r)| !r.running && !r.finished && !r.queue.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for name in ready {
            let rt = self.rt.get_mut(&name).expect("known node");
            let input = rt.queue.pop_front().flatten();
            rt.running = true;
            let resumed = std::mem::take(&mut rt.resume);
            let ctx = NodeCtx {
                wf: self.wf.clone(),
                spec: self.spec(&name).clone(),
                registry: self.registry.clone(),
                run_dir: self.opts.run_dir.clone(),
                stop: self.stop.clone(),
                progress: self.progress_tx.clone(),
                wind_down: self.wind_down.subscribe(),
                generators: self.generators.clone(),
                jobs: self.jobs.clone(),
                input_version: input,
                resumed,
            };
            let n = self.node(&name);
            n.status = NodeStatus::Running;
            n.attempts = 1;
            n.error = None;
            n.message = input.map(|v| format!("on version {v}"));
            let done = self.done_tx.clone();
            tokio::spawn(async move {
                let (result, attempts) = attempt_loop(ctx).await;
                let _ = done.send(Done {
                    node: name,
                    attempts,
                    result,
                });
            });
        }
    }

    fn on_done(&mut self, done: Done) -> Result<()> {
        let name = done.node;
        let mode = self.mode(&name);
        {
            let rt = self.rt.get_mut(&name).expect("known node");
            rt.running = false;
        }
        let stopped = self.stop.load(Ordering::Relaxed);
        let n = self.node(&name);
        n.attempts = done.attempts;
        match done.result {
            Err(_) if stopped => {
                n.status = NodeStatus::Interrupted;
            }
            Err(e) => {
                n.runs += 1;
                n.status = NodeStatus::Failed;
                n.error = Some(e.to_string());
                let cause = e.to_string();
                self.fail_dependents(&name, &cause);
                self.rt.get_mut(&name).expect("known node").queue.clear();
            }
            Ok(o) => {
                n.runs += 1;
                n.status = NodeStatus::Succeeded;
                // an earlier attempt's error is history once a retry succeeded
                n.error = None;
                n.rows = o.rows;
                if !o.metrics.is_empty() {
                    n.metrics = o.metrics.clone();
                }
                n.message = o.message.clone();
                if let (Mode::NewVersion(_), Some(v)) = (&mode, o.version) {
                    if !n.handled_versions.contains(&v) {
                        n.handled_versions.push(v);
                    }
                }
                if o.pass {
                    n.last_version = o.version.or(n.last_version);
                    n.succeeded_once = true;
                    self.on_success(&name, o.version)?;
                }
            }
        }
        if !stopped {
            self.offer_published_versions(&name)?;
        }
        Ok(())
    }

    /// Offers every version `name` has in the registry to its `on-new-version` subscribers.
    /// A node's last `Progress::Published` may arrive after its `Done`; without this, a
    /// subscriber could be marked finished before it saw the final version.
    fn offer_published_versions(&mut self, name: &str) -> Result<()> {
        let subscribers: Vec<String> = self
            .wf
            .nodes
            .iter()
            .filter(|s| s.triggers.on_new_version.as_deref() == Some(name))
            .map(|s| s.name.clone())
            .collect();
        if subscribers.is_empty() {
            return Ok(());
        }
        let versions: Vec<u64> = self
            .registry
            .versions(name)?
            .iter()
            .map(|m| m.version)
            .collect();
        for s in subscribers {
            if self.gate_open(&s) {
                for &v in &versions {
                    self.offer_version(&s, v);
                }
            }
        }
        Ok(())
    }

    /// Triggers the `after` dependents of `name`, which just succeeded and passed `version` on.
    fn on_success(&mut self, name: &str, version: Option<u64>) -> Result<()> {
        let dependents: Vec<String> = self
            .wf
            .nodes
            .iter()
            .filter(|n| self.wf.waits_for(n).iter().any(|d| d == name))
            .map(|n| n.name.clone())
            .collect();
        for d in dependents {
            if self.rt[&d].finished {
                continue;
            }
            match self.mode(&d) {
                Mode::After if self.gate_open(&d) => {
                    let st = &self.state.nodes[&d];
                    let rt = self.rt.get_mut(&d).expect("known node");
                    if st.succeeded_once || rt.queue.is_empty() {
                        rt.queue.push_back(version);
                    }
                }
                _ => self.open_gate(&d)?,
            }
        }
        Ok(())
    }

    fn on_progress(&mut self, p: Progress) -> Result<()> {
        match p {
            Progress::Published {
                node,
                version,
                rows,
                metrics,
            } => {
                let n = self.node(&node);
                if !n.versions.contains(&version) {
                    n.versions.push(version);
                }
                n.rows = rows;
                // the failover counters come from the job, not the evaluation: keep them
                let failover: Vec<(String, f64)> = FAILOVER_METRICS
                    .iter()
                    .filter_map(|k| n.metrics.get(*k).map(|v| (k.to_string(), *v)))
                    .collect();
                n.metrics = metrics;
                n.metrics.extend(failover);
                let subscribers: Vec<String> = self
                    .wf
                    .nodes
                    .iter()
                    .filter(|s| s.triggers.on_new_version.as_deref() == Some(node.as_str()))
                    .map(|s| s.name.clone())
                    .collect();
                for s in subscribers {
                    if self.gate_open(&s) {
                        self.offer_version(&s, version);
                    }
                }
            }
            Progress::Serving { node, url, curl } => {
                self.state.serving = Some(url);
                self.state.serving_example = curl;
                self.node(&node).message = self
                    .state
                    .serving
                    .clone()
                    .map(|u| format!("serving at {u}"));
            }
            Progress::Failover { node, counters } => {
                let n = self.node(&node);
                for (k, v) in counters {
                    n.metrics.insert(k.into(), v as f64);
                }
            }
            Progress::Rows { node, rows } => {
                self.node(&node).rows = rows;
                self.notify();
            }
            Progress::Retrying {
                node,
                attempt,
                error,
            } => {
                let n = self.node(&node);
                n.status = NodeStatus::Retrying;
                n.attempts = attempt + 1;
                n.error = Some(error);
            }
        }
        Ok(())
    }

    fn notify(&self) {
        if let Some(f) = &self.opts.on_update {
            f(&self.state);
        }
    }

    fn save(&mut self) -> Result<()> {
        self.state.save(&self.opts.run_dir)?;
        self.notify();
        Ok(())
    }
}

/// Runs a node's attempts: the first, then up to `retries` more after exponential backoff.
async fn attempt_loop(mut ctx: NodeCtx) -> (Result<Outcome>, u32) {
    let retry = ctx.spec.retry;
    let mut attempt = 1;
    loop {
        let result = nodes::run_node(ctx.clone()).await;
        match result {
            Err(e) if attempt <= retry.retries && !ctx.stopped() => {
                ctx.report(Progress::Retrying {
                    node: ctx.spec.name.clone(),
                    attempt,
                    error: e.to_string(),
                });
                // eddy-core's backoff: doubling from `backoff`, with jitter
                let ceiling = retry.backoff.saturating_mul(1 << 16);
                let wait = Backoff::new(retry.backoff, ceiling).delay(attempt - 1);
                tokio::time::sleep(wait).await;
                attempt += 1;
                ctx.resumed = true;
            }
            other => return (other, attempt),
        }
    }
}

/// The run directory's registry.
pub fn registry_of(run_dir: &Path) -> Result<Registry> {
    Registry::open(run_dir.join(REGISTRY_DIR))
}
