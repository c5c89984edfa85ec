//! A batch learner as a dataflow operator: it gathers its bounded input, and when the input
//! ends it fits the pipeline's statistics on all of it, featurizes it and fits the learner.
//!
//! It keeps no checkpoint state: a batch fit that fails is fitted again from the start of its
//! input (as Flink's batch execution mode recovers), so the job runs it without checkpoints.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use eddy_algorithms::eval::MetricSet;
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::Predictor;
use eddy_core::error::ErrorDomain;
use eddy_core::operator::{Collector, Operator, TaskInfo};

use super::{Finished, Shared};

/// The batch-fit operator (see the [module docs](self)).
pub(crate) struct FitOperator {
    shared: Arc<Shared>,
    name: String,
    subtask: usize,
    batches: Vec<RecordBatch>,
}

impl FitOperator {
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> Self {
        FitOperator {
            shared,
            name: name.to_string(),
            subtask: 0,
            batches: Vec::new(),
        }
    }

    fn error(&self, e: impl std::fmt::Display, domain: ErrorDomain) -> eddy_core::Error {
        eddy_core::Error::Operator {
            operator: self.name.clone(),
            subtask: self.subtask,
            message: e.to_string(),
            domain,
        }
    }

    /// Fits the pipeline and the learner on everything gathered.
    fn fit(&mut self) -> Result<Finished, eddy_core::Error> {
        let Some(first) = self.batches.first() else {
            return Err(self.error("the input is empty: nothing to fit", ErrorDomain::User));
        };
        let all = arrow::compute::concat_batches(&first.schema(), &self.batches)
            .map_err(|e| self.error(e, ErrorDomain::User))?;
        self.batches.clear();
        let user = |e: eddy_algorithms::Error| self.error(e, ErrorDomain::User);
        let mut pipeline = self.shared.pipeline.clone();
        pipeline.update(&all).map_err(user)?;
        let mut ex =
            Examples::new(Features::Sparse(Default::default()), Vec::new(), None).map_err(user)?;
        pipeline.examples_into(&all, &mut ex).map_err(user)?;
        let model = self.shared.learner.fit(pipeline.dim(), &ex).map_err(user)?;
        let mut metrics = eddy_algorithms::eval::MetricValues::default();
        if !self.shared.learner.kind.is_clustering() {
            let mut preds = Vec::new();
            model.predict(&ex.features, &mut preds).map_err(user)?;
            let mut set = MetricSet::for_task(model.task());
            set.update_batch(&preds, &ex.labels, ex.weights.as_deref())
                .map_err(user)?;
            for (k, v) in set.values().iter() {
                metrics.push(format!("train_{k}"), v);
            }
        }
        Ok(Finished {
            subtask: 0,
            rows: ex.len() as u64,
            pipeline,
            model: Some(model),
            eval: None,
            metrics,
            stream: None,
        })
    }
}

impl Operator for FitOperator {
    fn on_start(&mut self, task: &TaskInfo) -> eddy_core::Result<()> {
        self.subtask = task.subtask;
        Ok(())
    }

    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Collector,
    ) -> eddy_core::Result<()> {
        self.batches.push(batch);
        Ok(())
    }

    fn on_end(&mut self, _out: &mut Collector) -> eddy_core::Result<()> {
        let finished = self.fit()?;
        self.shared
            .result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(finished);
        Ok(())
    }
}
