//! The scheduler: the run's state, the nodes' runtime bookkeeping, and what each trigger,
//! completion and progress report does to them ([`run`](super::run) drives it).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eddy_core::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::nodes::{self, NodeCtx, Outcome, Progress};
use super::{data, finish, NodeState, NodeStatus, RunOptions, RunState};
use crate::error::Result;
use crate::registry::Registry;
use crate::spec::{NodeSpec, Schedule, Workflow};

pub(super) enum Mode {
    Once,
    Service,
    After,
    NewVersion(String),
    Schedule(Schedule),
}

#[derive(Default)]
pub(super) struct NodeRt {
    pub(super) queue: VecDeque<Option<u64>>,
    pub(super) running: bool,
    pub(super) finished: bool,
    pub(super) resume: bool,
    pub(super) seen: BTreeSet<u64>,
    pub(super) next_tick: Option<Instant>,
    /// A `serve` node has served in this start once its runs exceed this count.
    pub(super) service_runs_from: u32,
}

pub(super) struct Done {
    pub(super) node: String,
    pub(super) attempts: u32,
    pub(super) result: Result<Outcome>,
}

pub(super) struct Scheduler {
    pub(super) wf: Arc<Workflow>,
    pub(super) opts: RunOptions,
    pub(super) registry: Registry,
    pub(super) state: RunState,
    pub(super) rt: BTreeMap<String, NodeRt>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) done_tx: mpsc::UnboundedSender<Done>,
    pub(super) progress_tx: mpsc::UnboundedSender<Progress>,
    pub(super) wind_down: tokio::sync::watch::Sender<bool>,
    pub(super) generators: data::Generators,
    /// The run's training jobs, for the serve nodes' `/metrics`.
    pub(super) jobs: Arc<eddy_core::metrics::JobBoard>,
    /// The run's model servers, for a dashboard.
    pub(super) servers: Arc<crate::serving::ServerBoard>,
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

impl Scheduler {
    pub(super) fn spec(&self, name: &str) -> &NodeSpec {
        self.wf
            .node(name)
            .expect("scheduler names come from the workflow")
    }

    pub(super) fn mode(&self, name: &str) -> Mode {
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

    pub(super) fn node(&mut self, name: &str) -> &mut NodeState {
        self.state.nodes.entry(name.to_string()).or_default()
    }

    pub(super) fn gate_open(&self, name: &str) -> bool {
        self.wf
            .waits_for(self.spec(name))
            .iter()
            .all(|d| self.state.nodes.get(d).is_some_and(|s| s.succeeded_once))
    }

    pub(super) fn init(&mut self) -> Result<()> {
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
    pub(super) fn open_gate(&mut self, name: &str) -> Result<()> {
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

    pub(super) fn offer_version(&mut self, name: &str, version: u64) {
        let rt = self.rt.get_mut(name).expect("known node");
        if !rt.finished && rt.seen.insert(version) {
            rt.queue.push_back(Some(version));
        }
    }

    pub(super) fn start_ready(&mut self) {
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
                servers: self.servers.clone(),
                input_version: input,
                resumed,
                spec_path: self.opts.spec_path.clone(),
                program: self.opts.program.clone(),
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

    pub(super) fn on_done(&mut self, done: Done) -> Result<()> {
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
    pub(super) fn offer_published_versions(&mut self, name: &str) -> Result<()> {
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
    pub(super) fn on_success(&mut self, name: &str, version: Option<u64>) -> Result<()> {
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

    pub(super) fn on_progress(&mut self, p: Progress) -> Result<()> {
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

    pub(super) fn notify(&self) {
        if let Some(f) = &self.opts.on_update {
            f(&self.state);
        }
    }

    pub(super) fn save(&mut self) -> Result<()> {
        self.state.stamp_times(super::state::now_ms());
        self.state.save(&self.opts.run_dir)?;
        self.notify();
        Ok(())
    }
}

/// Runs a node's attempts: the first, then up to `retries` more after exponential backoff.
pub(super) async fn attempt_loop(mut ctx: NodeCtx) -> (Result<Outcome>, u32) {
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
