//! The dashboard: a small web UI and its JSON API over what a long-running eddy command holds —
//! a workflow run (DAG, node states), a model registry (versions, stages, lineage; promote,
//! roll back, pin), a model server (requests, latency, versions, swaps), training jobs
//! (rows, progressive metrics, restarts, records lost, checkpoints, backpressure) and
//! parameter-server shards — plus the one Prometheus renderer of all those figures.
//!
//! A [`Dashboard`] is built from the sources a command has ([`Dashboard::with_run`],
//! [`with_registry`](Dashboard::with_registry), [`with_serving`](Dashboard::with_serving) or
//! [`with_servers`](Dashboard::with_servers), [`with_jobs`](Dashboard::with_jobs),
//! [`with_training`](Dashboard::with_training), [`with_ps`](Dashboard::with_ps)); [`router`] mounts the pages, the API and (for commands
//! without a model server) `/metrics` on the command's port. The pages are static files
//! embedded in the binary (`workflow/assets/dashboard/`, vanilla JS drawing its own SVG, no
//! build step) and stay live through server-sent events. Every plotted figure is a sample of
//! the same text `/metrics` serves: a sampler ([`history`]) renders it every
//! [`SAMPLE_EVERY`], parses it back and keeps the last [`history::KEEP`] samples per series.
//!
//! Mutating actions (promote, roll back, pin) need the dashboard's token as
//! `Authorization: Bearer <token>`; the command prints the URL with the token in its fragment
//! (`http://127.0.0.1:PORT/#token=…`), which the page keeps for its requests. Commands bind
//! the dashboard to 127.0.0.1 unless told otherwise. The API is documented in
//! `docs/dashboard.md`.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | this one | [`Dashboard`]: the sources and the token |
//! | [`metrics`] | the Prometheus text of every source ([`metrics::render`]) and its parser |
//! | [`history`] | time series sampled from that text, for the plots |
//! | [`api`] | the router: pages, JSON API, server-sent events, actions |
//! | [`feed`] | [`TrainFeed`]: a training job's rows and progressive metrics, from its events |

pub mod api;
pub mod feed;
pub mod history;
pub mod metrics;

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_core::metrics::{JobBoard, MetricsRegistry};
use eddy_ps::grpc::PsStatsHandle;
use serde::Serialize;

pub use api::router;
pub use feed::TrainFeed;

pub(crate) use crate::runner::state::now_ms;

use crate::registry::Registry;
use crate::runner::RunState;
use crate::serving::{ServerBoard, ServingState};
use crate::spec::{NodeKind, Schedule, Workflow};

/// How often the sampler renders the metrics for the plots and the live pages.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A training job shown by the dashboard: its name, runtime counters and event feed.
#[derive(Debug, Clone)]
pub struct Training {
    /// The job's name (the `job` label).
    pub name: String,
    /// Its dataflow's counters (operators, checkpoints, failover).
    pub metrics: MetricsRegistry,
    /// Its rows and progressive metrics.
    pub feed: Arc<TrainFeed>,
}

/// One edge of the workflow DAG.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// The upstream node.
    pub from: String,
    /// The node it triggers.
    pub to: String,
    /// `after`, `on-new-version` or `warm-start`.
    pub kind: &'static str,
}

/// One node of the workflow DAG as the spec declares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DagNode {
    /// The node's name.
    pub name: String,
    /// Its kind (`stream-train`, `evaluate`, …).
    pub kind: &'static str,
    /// Its schedule (`every 10s`, `cron …`), if any.
    pub schedule: Option<String>,
}

/// A workflow run: its directory, spec graph, and the newest state this process saw.
#[derive(Debug, Default)]
struct RunSource {
    dir: PathBuf,
    nodes: Vec<DagNode>,
    edges: Vec<Edge>,
    live: Mutex<Option<RunState>>,
}

/// The model servers a dashboard shows.
#[derive(Debug)]
enum Servers {
    /// The process's one server (`eddy serve`): its figures unlabelled.
    One(Arc<ServingState>),
    /// A run's serve nodes: each server's figures labelled `node="…"`.
    Board(Arc<ServerBoard>),
}

impl Servers {
    /// The servers now, with their label value (`None`: unlabelled).
    fn list(&self) -> Vec<(Option<String>, Arc<ServingState>)> {
        match self {
            Servers::One(s) => vec![(None, s.clone())],
            Servers::Board(b) => b.servers().into_iter().map(|(n, s)| (Some(n), s)).collect(),
        }
    }
}

/// The dashboard of one process: its sources and its action token.
#[derive(Debug)]
pub struct Dashboard {
    title: String,
    token: String,
    run: Option<RunSource>,
    registry: Option<Registry>,
    servers: Option<Servers>,
    jobs: Option<Arc<JobBoard>>,
    trainings: Vec<Training>,
    ps: Option<PsStatsHandle>,
    history: history::History,
}

impl Dashboard {
    /// A dashboard titled `title` (the command: `eddy run ctr`, `eddy serve`, …) with no
    /// source yet and a fresh random token.
    pub fn new(title: impl Into<String>) -> Self {
        Dashboard {
            title: title.into(),
            token: random_token(),
            run: None,
            registry: None,
            servers: None,
            jobs: None,
            trainings: Vec::new(),
            ps: None,
            history: history::History::default(),
        }
    }

    /// Shows the run in `dir` of `wf` (None: the spec is read from the run state, for
    /// `eddy ui`; a spec that no longer loads leaves the DAG without edges).
    pub fn with_run(mut self, dir: PathBuf, wf: Option<&Workflow>) -> Self {
        let loaded;
        let wf = match wf {
            Some(w) => Some(w),
            None => {
                loaded = crate::runner::RunState::load(&dir)
                    .ok()
                    .flatten()
                    .and_then(|s| Workflow::load(&s.spec).ok());
                loaded.as_ref()
            }
        };
        let (nodes, edges) = wf.map(graph).unwrap_or_default();
        self.run = Some(RunSource {
            dir,
            nodes,
            edges,
            ..RunSource::default()
        });
        self
    }

    /// Shows (and lets the token holder change) the models of `registry`.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Shows a model server's models, versions and request figures.
    pub fn with_serving(mut self, state: Arc<ServingState>) -> Self {
        self.servers = Some(Servers::One(state));
        self
    }

    /// Shows the model servers on `board` (a run's serve nodes, labelled `node="…"` on
    /// `/metrics`), those that start later included.
    pub fn with_servers(mut self, board: Arc<ServerBoard>) -> Self {
        self.servers = Some(Servers::Board(board));
        self
    }

    /// Shows the jobs on `board`: failover and checkpoint counters, source lags and
    /// per-operator figures (backpressure, busy time, records).
    pub fn with_jobs(mut self, board: Arc<JobBoard>) -> Self {
        self.jobs = Some(board);
        self
    }

    /// Shows a training job: its operators, checkpoints, rows and progressive metrics.
    pub fn with_training(mut self, training: Training) -> Self {
        self.trainings.push(training);
        self
    }

    /// Shows a parameter-server shard.
    pub fn with_ps(mut self, ps: PsStatsHandle) -> Self {
        self.ps = Some(ps);
        self
    }

    /// The token mutating actions need (`Authorization: Bearer <token>`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URL to print for a dashboard bound at `addr`: the token rides in the fragment,
    /// which browsers never send to the server.
    pub fn url(&self, addr: std::net::SocketAddr) -> String {
        format!("http://{addr}/#token={}", self.token)
    }

    /// Takes the run state a runner reports (`RunOptions::on_update`); node start and end
    /// times come with it ([`RunState::stamp_times`]).
    pub fn update_run(&self, state: &RunState) {
        if let Some(run) = &self.run {
            *run.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(state.clone());
        }
    }

    /// The run state: the newest one reported, else `state.json` of the run directory.
    pub fn run_state(&self) -> Option<RunState> {
        let run = self.run.as_ref()?;
        if let Some(s) = run.live.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(s);
        }
        RunState::load(&run.dir).ok().flatten()
    }

    /// The samples kept for the plots.
    pub fn history(&self) -> &history::History {
        &self.history
    }
}

/// The nodes and trigger edges of a workflow.
fn graph(wf: &Workflow) -> (Vec<DagNode>, Vec<Edge>) {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for n in &wf.nodes {
        let schedule = n.triggers.schedule.as_ref().map(|s| match s {
            Schedule::Every(d) => format!("every {d:?}"),
            Schedule::Cron(c) => format!("cron {c}"),
        });
        nodes.push(DagNode {
            name: n.name.clone(),
            kind: n.kind.name(),
            schedule,
        });
        for a in &n.triggers.after {
            edges.push(edge(a, &n.name, "after"));
        }
        if let Some(v) = &n.triggers.on_new_version {
            edges.push(edge(v, &n.name, "on-new-version"));
        }
        if let NodeKind::BatchTrain(t) | NodeKind::StreamTrain(t) = &n.kind {
            if let Some(w) = &t.warm_start {
                edges.push(edge(w, &n.name, "warm-start"));
            }
        }
    }
    (nodes, edges)
}

fn edge(from: &str, to: &str, kind: &'static str) -> Edge {
    Edge {
        from: from.to_string(),
        to: to.to_string(),
        kind,
    }
}

/// 128 random bits as hex, from the standard library's per-process random hash keys.
fn random_token() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::new();
    for salt in [now_ms(), u64::from(std::process::id())] {
        let mut h = state.build_hasher();
        h.write_u64(salt);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
