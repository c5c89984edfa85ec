//! [`PsWorker`]: one training worker over a [`ParamStore`] (see the [module docs](super)).

use std::sync::Arc;

use eddy_algorithms::eval::{MetricSet, MetricValues};
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::{GradientModel, TableSpec, Task};
use eddy_algorithms::transform::Mergeable;

use crate::clock::{Consistency, WorkerId};
use crate::error::{Error, Result};
use crate::store::ParamStore;

/// Configuration of a [`PsWorker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsWorkerConfig {
    /// The worker's id, unique within the job.
    pub worker: WorkerId,
    /// How far workers may drift apart. Default `async`.
    pub consistency: Consistency,
    /// Rows per mini-batch (one pull, one push, one clock each; >= 1). Default 32.
    pub batch_rows: usize,
    /// The task the predictions are scored for. Default binary classification.
    pub task: Task,
}

impl PsWorkerConfig {
    /// Worker `worker` with the other fields at their defaults.
    pub fn new(worker: WorkerId) -> Self {
        PsWorkerConfig {
            worker,
            consistency: Consistency::Async,
            batch_rows: 32,
            task: Task::BinaryClassification,
        }
    }
}

/// What a worker did: rows predicted-then-learned, mini-batches, the summed training loss and
/// the progressive metrics.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Rows processed.
    pub rows: u64,
    /// Mini-batches (steps).
    pub steps: u64,
    /// The sum of the model's loss over the rows, at the pulled weights.
    pub loss: f64,
    /// The progressive metrics (predictions made before each mini-batch was learned).
    pub metrics: MetricValues,
    set: MetricSet,
}

impl WorkerReport {
    /// Merges another worker's report into this one (rows, steps, loss and metrics).
    pub fn merge(&mut self, other: &WorkerReport) -> Result<()> {
        self.rows += other.rows;
        self.steps += other.steps;
        self.loss += other.loss;
        self.set.merge(&other.set).map_err(|source| Error::Model {
            worker: WorkerId(u32::MAX),
            source,
        })?;
        self.metrics = self.set.values();
        Ok(())
    }
}

/// One training worker; see the [module docs](super).
pub struct PsWorker<S, M: ?Sized> {
    store: Arc<S>,
    model: Arc<M>,
    cfg: PsWorkerConfig,
    tables: Vec<TableSpec>,
    keys: Vec<Vec<u64>>,
    rows: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    /// Predictions of a batch (for the worker's own metrics).
    preds: Vec<f32>,
    /// Predictions of one mini-batch.
    part: Vec<f32>,
    metrics: MetricSet,
    report: (u64, u64, f64),
    registered: bool,
    paused: bool,
}

impl<S: ParamStore, M: GradientModel + ?Sized> PsWorker<S, M> {
    /// A worker training `model` on `store` (whose tables must include the model's).
    pub fn new(store: Arc<S>, model: Arc<M>, cfg: PsWorkerConfig) -> Self {
        let tables = model.tables();
        let n = tables.len();
        PsWorker {
            store,
            model,
            metrics: MetricSet::for_task(cfg.task),
            cfg,
            tables,
            keys: vec![Vec::new(); n],
            rows: vec![Vec::new(); n],
            grads: vec![Vec::new(); n],
            preds: Vec::new(),
            part: Vec::new(),
            report: (0, 0, 0.0),
            registered: false,
            paused: false,
        }
    }

    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.cfg.worker
    }

    /// Rows learned so far.
    pub fn rows(&self) -> u64 {
        self.report.0
    }

    /// The task the model's predictions are for.
    pub fn task(&self) -> Task {
        self.cfg.task
    }

    /// Registers with the store's clocks under `bounded`/`sync` consistency (an `async` worker
    /// never waits, so it neither registers nor clocks).
    pub async fn start(&mut self) -> Result<()> {
        if self.cfg.consistency.staleness().is_some() {
            self.store.register(self.cfg.worker).await?;
            self.registered = true;
        }
        Ok(())
    }

    fn model_error(&self, source: eddy_algorithms::Error) -> Error {
        Error::Model {
            worker: self.cfg.worker,
            source,
        }
    }

    /// Ends a [`checkpoint`](Self::checkpoint) pause: registers again with the clocks (at the
    /// slowest registered worker's clock, or 0 when none is). A driver that resumes every
    /// worker before giving any of them work starts them all at the same clock; otherwise
    /// [`process`](Self::process) resumes lazily.
    pub async fn resume(&mut self) -> Result<()> {
        if self.paused {
            self.store.register(self.cfg.worker).await?;
            self.registered = true;
            self.paused = false;
        }
        Ok(())
    }

    /// Predicts then learns every row of `examples`, one mini-batch at a time, and records the
    /// predictions in the worker's own metrics ([`WorkerReport::metrics`]).
    pub async fn process(&mut self, examples: &Examples) -> Result<()> {
        let mut preds = std::mem::take(&mut self.preds);
        let learned = self.predict_learn(examples, &mut preds).await;
        let recorded = learned.and_then(|()| {
            self.metrics
                .update_batch(&preds, &examples.labels, examples.weights.as_deref())
                .map_err(|e| self.model_error(e))
        });
        self.preds = preds;
        recorded
    }

    /// Predicts then learns every row of `examples`, one mini-batch at a time, and leaves the
    /// predictions (each made before its mini-batch was learned) in `out`, for a caller that
    /// scores them itself (the training engine's progressive validation). The worker's own
    /// metrics are not updated.
    pub async fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        self.resume().await?;
        out.clear();
        let n = examples.len();
        let step = self.cfg.batch_rows.max(1);
        if n <= step {
            return self.step(examples, out).await;
        }
        let mut start = 0;
        while start < n {
            let end = (start + step).min(n);
            self.step(&examples.slice(start, end), out).await?;
            start = end;
        }
        Ok(())
    }

    /// Predictions for `x` at the store's current weights (pulled; nothing is learned).
    pub async fn predict(&mut self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        self.model.keys(x, &mut self.keys);
        for (t, spec) in self.tables.iter().enumerate() {
            self.store
                .pull(&spec.name, &self.keys[t], &mut self.rows[t])
                .await?;
        }
        self.model
            .predict_with(x, &self.keys, &self.rows, out)
            .map_err(|e| self.model_error(e))
    }

    /// One mini-batch: wait, pull, predict (appended to `out`), gradients, push, clock.
    async fn step(&mut self, batch: &Examples, out: &mut Vec<f32>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(s) = self.cfg.consistency.staleness() {
            self.store.wait_bounded(self.cfg.worker, s).await?;
        }
        self.model.keys(&batch.features, &mut self.keys);
        for (t, spec) in self.tables.iter().enumerate() {
            self.store
                .pull(&spec.name, &self.keys[t], &mut self.rows[t])
                .await?;
        }
        let mut part = std::mem::take(&mut self.part);
        let predicted = self
            .model
            .predict_with(&batch.features, &self.keys, &self.rows, &mut part);
        out.extend_from_slice(&part);
        self.part = part;
        predicted.map_err(|e| self.model_error(e))?;
        let loss = self
            .model
            .gradients(batch, &self.keys, &self.rows, &mut self.grads)
            .map_err(|e| self.model_error(e))?;
        for (t, spec) in self.tables.iter().enumerate() {
            self.store
                .push(&spec.name, &self.keys[t], &self.grads[t], None)
                .await?;
        }
        if self.registered {
            self.store.clock(self.cfg.worker).await?;
        }
        self.report.0 += batch.len() as u64;
        self.report.1 += 1;
        self.report.2 += loss;
        Ok(())
    }

    /// Deregisters (so the worker no longer holds others back) and reports.
    pub async fn finish(mut self) -> Result<WorkerReport> {
        if self.registered {
            self.store.deregister(self.cfg.worker).await?;
        }
        Ok(self.report())
    }

    /// Pauses the worker at a publication point and reports what it did so far (the counters
    /// keep running). Under `bounded`/`sync` it deregisters, so workers still finishing their
    /// share are not held back by this idle one; its next [`process`](Self::process)
    /// registers it again at the slowest worker's clock.
    pub async fn checkpoint(&mut self) -> Result<WorkerReport> {
        if self.registered {
            self.store.deregister(self.cfg.worker).await?;
            self.registered = false;
            self.paused = true;
        }
        Ok(self.report())
    }

    fn report(&mut self) -> WorkerReport {
        let (rows, steps, loss) = self.report;
        WorkerReport {
            rows,
            steps,
            loss,
            metrics: self.metrics.values(),
            set: self.metrics.clone(),
        }
    }
}
