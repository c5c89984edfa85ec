//! [`ServingState`]: the served models, each an atomically swappable [`LoadedModel`], and how
//! new versions are loaded and swapped in.
//!
//! **Hot swap.** A refresh resolves the model's [`VersionPolicy`] against the registry; if it
//! names a version other than the one serving, that version is read, decoded, probed and
//! warmed (on a blocking thread) while the old one keeps serving, then stored with one atomic
//! pointer swap (`arc-swap`). A request takes its own `Arc` of the model when it starts, so
//! in-flight requests finish on the old version and no request waits for a swap. A version
//! that fails to load is logged, remembered (not retried) and skipped: the previous version
//! keeps serving.
//!
//! **Compatibility.** Clients of a served model rely on what it answers and what it reads, so
//! a new version whose task or output kind ([`Task`]: binary / regression / `n` classes / `k`
//! clusters) or raw input columns ([`InputSchema`]) differ from the serving version's is
//! refused like a version that does not load — logged, counted in
//! `eddy_serving_model_load_failures_total`, not retried — unless the server was started with
//! `allow-incompatible-swap` ([`ServeConfig`](super::ServeConfig)). The first version a model
//! serves is never refused for this.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use eddy_algorithms::learner::Task;

use super::input::{InputSchema, Row};
use super::metrics::Metrics;
use super::model::{LoadedModel, Prediction};
use super::policy::{ModelSelector, VersionPolicy};
use crate::error::{Error, Result};
use crate::registry::Registry;

/// One served model: its policy and the version serving now.
#[derive(Debug)]
pub struct ServedModel {
    name: String,
    policy: VersionPolicy,
    current: ArcSwapOption<LoadedModel>,
    /// Versions that failed to load; never retried.
    failed: Mutex<HashSet<u64>>,
    /// Serializes refreshes of this model (held on a blocking thread, never across `.await`).
    refresh: Mutex<()>,
    requests: AtomicU64,
    errors: AtomicU64,
    swaps: AtomicU64,
    load_failures: AtomicU64,
    /// Revisions from a parameter server swapped in, and the rows they changed.
    revisions: AtomicU64,
    ps_rows: AtomicU64,
    /// When the served weights were last known equal to the parameter server's (ms since the
    /// Unix epoch; 0: never followed).
    followed_ms: AtomicU64,
    /// Swap in versions whose task, output kind or inputs differ from the serving one.
    allow_incompatible: bool,
}

impl ServedModel {
    fn new(selector: ModelSelector, allow_incompatible: bool) -> Self {
        ServedModel {
            allow_incompatible,
            name: selector.name,
            policy: selector.policy,
            current: ArcSwapOption::empty(),
            failed: Mutex::new(HashSet::new()),
            refresh: Mutex::new(()),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
            load_failures: AtomicU64::new(0),
            revisions: AtomicU64::new(0),
            ps_rows: AtomicU64::new(0),
            followed_ms: AtomicU64::new(0),
        }
    }

    /// The model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version policy.
    pub fn policy(&self) -> VersionPolicy {
        self.policy
    }

    /// The version serving now, if one has loaded.
    pub fn current(&self) -> Option<Arc<LoadedModel>> {
        self.current.load_full()
    }

    /// Resolves the policy and swaps in the version it names if that differs from the one
    /// serving; returns the version serving afterwards. Blocking (reads and decodes files).
    pub fn refresh(&self, registry: &Registry) -> Result<Option<u64>> {
        let _guard = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let serving = self.current.load().as_ref().map(|m| m.version());
        for version in self.policy.candidates(registry, &self.name)? {
            if Some(version) == serving {
                return Ok(serving);
            }
            if lock(&self.failed).contains(&version) {
                continue;
            }
            let loaded = LoadedModel::load(registry, &self.name, version).and_then(|model| {
                match self.current.load().as_deref() {
                    Some(old) if !self.allow_incompatible => compatible(old, model),
                    _ => Ok(model),
                }
            });
            match loaded {
                Ok(model) => {
                    self.current.store(Some(Arc::new(model)));
                    self.swaps.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(model = self.name, version, previous = ?serving, "serving new version");
                    return Ok(Some(version));
                }
                Err(e) => {
                    tracing::error!(model = self.name, version, error = %e, "cannot load model version; skipped");
                    self.load_failures.fetch_add(1, Ordering::Relaxed);
                    lock(&self.failed).insert(version);
                }
            }
        }
        Ok(serving)
    }
}

impl ServedModel {
    /// Swaps in `next`, a revision of `base` carrying `rows` changed rows, if `base` is still
    /// serving (a registry version swapped in meanwhile wins); whether it did.
    pub(crate) fn revise(&self, base: &Arc<LoadedModel>, next: LoadedModel, rows: u64) -> bool {
        let _guard = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let serving = self.current.load();
        if !serving.as_ref().is_some_and(|s| Arc::ptr_eq(s, base)) {
            return false;
        }
        self.current.store(Some(Arc::new(next)));
        self.revisions.fetch_add(1, Ordering::Relaxed);
        self.ps_rows.fetch_add(rows, Ordering::Relaxed);
        true
    }

    /// The served weights were equal to the parameter server's at `at_ms`.
    pub(crate) fn followed(&self, at_ms: u64) {
        self.followed_ms.fetch_max(at_ms, Ordering::Relaxed);
    }

    /// When the served weights were last known equal to the parameter server's (ms since the
    /// Unix epoch), if the server follows one.
    pub fn followed_ms(&self) -> Option<u64> {
        Some(self.followed_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }
}

/// `new` if it answers and reads like `old` (same [`Task`], the same input columns and kinds
/// in any order), else an error saying what differs.
fn compatible(old: &LoadedModel, new: LoadedModel) -> Result<LoadedModel> {
    let mut differences = Vec::new();
    if old.task() != new.task() {
        differences.push(format!(
            "task {} instead of {}",
            task_text(new.task()),
            task_text(old.task())
        ));
    }
    // The same columns in another probe order are the same inputs.
    let sorted = |m: &LoadedModel| {
        let mut c = m.inputs().columns().to_vec();
        c.sort();
        c
    };
    if sorted(old) != sorted(&new) {
        differences.push(format!(
            "input columns {} instead of {}",
            columns_text(new.inputs()),
            columns_text(old.inputs())
        ));
    }
    if differences.is_empty() {
        return Ok(new);
    }
    Err(Error::InvalidArgument(format!(
        "version {} is incompatible with the serving version {}: {} (start the server with \
         allow-incompatible-swap to serve it anyway)",
        new.version(),
        old.version(),
        differences.join("; ")
    )))
}

fn task_text(task: Task) -> String {
    match task {
        Task::BinaryClassification => "binary classification".into(),
        Task::Regression => "regression".into(),
        Task::Multiclass { classes } => format!("multiclass ({classes} classes)"),
        Task::Clustering { clusters } => format!("clustering ({clusters} clusters)"),
    }
}

fn columns_text(inputs: &InputSchema) -> String {
    let cols: Vec<String> = inputs
        .columns()
        .iter()
        .map(|(name, kind)| format!("{name}:{kind:?}"))
        .collect();
    format!("[{}]", cols.join(", "))
}

/// A per-model counter: metric name, type, help, and how to read it.
type Counter = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ServedModel) -> u64,
);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything the HTTP and gRPC front ends share: the registry, the served models and the
/// metrics. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ServingState {
    registry: Registry,
    models: ArcSwap<BTreeMap<String, Arc<ServedModel>>>,
    /// Serve every model of the registry (new ones included) at its latest version.
    serve_all: bool,
    route_prefix: Option<String>,
    /// See [`ServedModel`]'s compatibility check.
    allow_incompatible: bool,
    metrics: Metrics,
    /// The training jobs of this process whose counters `/metrics` shows (`eddy run`).
    jobs: std::sync::OnceLock<Arc<eddy_core::metrics::JobBoard>>,
}

impl ServingState {
    /// State serving `selectors` (every model of the registry at its latest version, new ones
    /// included, when empty) from `registry`; `route_prefix` enables per-key routing (the
    /// model of a routed request is the prefix followed by the request's key). No version is
    /// loaded yet: call [`refresh_all`](Self::refresh_all). `allow_incompatible` lets a new
    /// version with another task, output kind or inputs replace the serving one (see the
    /// module docs).
    pub fn new(
        registry: Registry,
        selectors: Vec<ModelSelector>,
        route_prefix: Option<String>,
        allow_incompatible: bool,
    ) -> Self {
        let serve_all = selectors.is_empty();
        let models = selectors
            .into_iter()
            .map(|s| {
                (
                    s.name.clone(),
                    Arc::new(ServedModel::new(s, allow_incompatible)),
                )
            })
            .collect();
        ServingState {
            registry,
            models: ArcSwap::from_pointee(models),
            serve_all,
            route_prefix,
            allow_incompatible,
            metrics: Metrics::default(),
            jobs: std::sync::OnceLock::new(),
        }
    }

    /// The registry served from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The server-wide request metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Shows the counters of the jobs on `board` (restarts, records lost and replayed,
    /// checkpoints) on `/metrics` from now on. A server shows one board; later calls are
    /// ignored.
    pub fn show_jobs(&self, board: Arc<eddy_core::metrics::JobBoard>) {
        let _ = self.jobs.set(board);
    }

    /// Appends the counters of the jobs shown (see [`show_jobs`](Self::show_jobs)).
    pub fn render_job_metrics(&self, out: &mut String) {
        if let Some(board) = self.jobs.get() {
            board.render_prometheus(out);
        }
    }

    /// Whether every served model has a version loaded (and there is one): what `GET /healthz`
    /// and the gRPC health service report.
    pub fn is_ready(&self) -> bool {
        let models = self.models.load();
        !models.is_empty() && models.values().all(|m| m.current.load().is_some())
    }

    /// The served models, by name.
    pub fn models(&self) -> Vec<Arc<ServedModel>> {
        self.models.load().values().cloned().collect()
    }

    /// One served model.
    pub fn model(&self, name: &str) -> Result<Arc<ServedModel>> {
        self.models
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownModel {
                model: name.to_string(),
            })
    }

    /// The model a routed request with `key` goes to.
    pub fn route(&self, key: &str) -> Result<Arc<ServedModel>> {
        let prefix = self
            .route_prefix
            .as_deref()
            .ok_or_else(|| Error::BadRequest {
                message: "this server has no per-key routing (start it with a route prefix)".into(),
            })?;
        self.model(&format!("{prefix}{key}"))
    }

    /// Scores `rows` with the version of `model` serving now.
    pub fn predict(&self, model: &ServedModel, rows: &[Row]) -> Result<Prediction> {
        model.requests.fetch_add(1, Ordering::Relaxed);
        let result = match model.current() {
            Some(loaded) => loaded.predict(rows),
            None => Err(Error::NotReady {
                model: model.name.clone(),
            }),
        };
        if result.is_err() {
            model.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Adds newly published models when serving every model. Blocking.
    fn discover(&self) -> Result<()> {
        if !self.serve_all {
            return Ok(());
        }
        let names = self.registry.models()?;
        let current = self.models.load();
        if names.iter().all(|n| current.contains_key(n)) {
            return Ok(());
        }
        self.models.rcu(|old| {
            let mut next = BTreeMap::clone(old);
            for n in &names {
                next.entry(n.clone()).or_insert_with(|| {
                    Arc::new(ServedModel::new(
                        ModelSelector::latest(n),
                        self.allow_incompatible,
                    ))
                });
            }
            next
        });
        Ok(())
    }

    /// Refreshes one model by name (discovering it first when serving every model); unknown
    /// names are ignored. Blocking.
    pub fn refresh_model(&self, name: &str) -> Result<()> {
        self.discover()?;
        if let Some(m) = self.models.load().get(name).cloned() {
            m.refresh(&self.registry)?;
        }
        Ok(())
    }

    /// Refreshes every served model; errors of one model are logged and do not stop the
    /// others. Blocking.
    pub fn refresh_all(&self) -> Result<()> {
        self.discover()?;
        for m in self.models() {
            if let Err(e) = m.refresh(&self.registry) {
                tracing::error!(model = m.name(), error = %e, "refreshing the served model failed");
            }
        }
        Ok(())
    }

    /// Appends the per-model metrics in the Prometheus text format.
    pub fn render_model_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let models = self.models();
        let gauges: [Counter; 6] = [
            (
                "eddy_serving_model_requests_total",
                "counter",
                "Predict requests per model.",
                |m| m.requests.load(Ordering::Relaxed),
            ),
            (
                "eddy_serving_model_errors_total",
                "counter",
                "Failed predict requests per model.",
                |m| m.errors.load(Ordering::Relaxed),
            ),
            (
                "eddy_serving_model_swaps_total",
                "counter",
                "Versions swapped in per model.",
                |m| m.swaps.load(Ordering::Relaxed),
            ),
            (
                "eddy_serving_model_load_failures_total",
                "counter",
                "Versions that failed to load.",
                |m| m.load_failures.load(Ordering::Relaxed),
            ),
            (
                "eddy_serving_model_ps_revisions_total",
                "counter",
                "Revisions of the serving version from the parameter server.",
                |m| m.revisions.load(Ordering::Relaxed),
            ),
            (
                "eddy_serving_model_ps_rows_total",
                "counter",
                "Parameter-server rows applied to served versions.",
                |m| m.ps_rows.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for m in &models {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", m.name, value(m));
            }
        }
        out.push_str("# HELP eddy_serving_model_version The version serving now.\n");
        out.push_str("# TYPE eddy_serving_model_version gauge\n");
        for m in &models {
            if let Some(cur) = m.current() {
                let _ = writeln!(
                    out,
                    "eddy_serving_model_version{{model=\"{}\"}} {}",
                    m.name,
                    cur.version()
                );
            }
        }
        out.push_str("# HELP eddy_serving_model_age_seconds Seconds since the serving version was published.\n");
        out.push_str("# TYPE eddy_serving_model_age_seconds gauge\n");
        for m in &models {
            if let Some(cur) = m.current() {
                let age = now_ms.saturating_sub(cur.meta().created_ms) as f64 / 1000.0;
                let _ = writeln!(
                    out,
                    "eddy_serving_model_age_seconds{{model=\"{}\"}} {age}",
                    m.name
                );
            }
        }
        out.push_str("# HELP eddy_serving_model_ps_behind_seconds Seconds since the served weights were last equal to the parameter server's.\n");
        out.push_str("# TYPE eddy_serving_model_ps_behind_seconds gauge\n");
        for m in &models {
            if let Some(at) = m.followed_ms() {
                let behind = now_ms.saturating_sub(at) as f64 / 1000.0;
                let _ = writeln!(
                    out,
                    "eddy_serving_model_ps_behind_seconds{{model=\"{}\"}} {behind}",
                    m.name
                );
            }
        }
    }
}
