//! The feature-step contracts (ARCHITECTURE §4): [`Transformer`] (fitted: batch in, batch out),
//! [`Estimator`] (batch fit), [`OnlineEstimator`] (statistics that follow the stream),
//! [`Mergeable`] (partial states from parallel subtasks combine), [`ToFeatures`] (the last step
//! that produces the learner's matrix), and [`Params`] (checked before anything is built).

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::features::Features;

/// Parameters checked into their valid form before anything is built (linfa's pattern:
/// `XxxParams` → `XxxValidParams`).
pub trait Params {
    /// The checked parameters.
    type Valid;
    /// Validates every field, naming the first one out of range.
    fn check(&self) -> Result<Self::Valid>;
}

/// A fitted feature step. `transform` never changes the step: serving a request is the same
/// call as transforming a training batch, and N batches of one row equal one batch of N rows.
pub trait Transformer: Send + Sync {
    /// Transforms a batch (usually replacing or adding columns).
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch>;
}

/// A step fitted on bounded data.
pub trait Estimator {
    /// The fitted step.
    type Fitted: Transformer;
    /// Fits on `batches` (one pass unless documented otherwise).
    fn fit(&self, batches: &[RecordBatch]) -> Result<Self::Fitted>;
}

/// A step whose statistics follow the stream: `update` folds in a batch, `transform` uses the
/// statistics so far. Updating with every row equals fitting on them (within float tolerance)
/// wherever the statistic allows it.
pub trait OnlineEstimator: Transformer {
    /// Folds `batch` into the statistics.
    fn update(&mut self, batch: &RecordBatch) -> Result<()>;
}

/// Statistics that merge: merging the states of two partitions equals fitting on their union.
pub trait Mergeable {
    /// Merges `other` into `self`.
    fn merge(&mut self, other: &Self) -> Result<()>;
}

/// The step that turns a batch into the learner's feature matrix. `out` is reused between
/// calls so featurizing allocates nothing per row.
pub trait ToFeatures: Send + Sync {
    /// Writes the features of `batch` into `out` (replacing its contents).
    fn to_features(&self, batch: &RecordBatch, out: &mut Features) -> Result<()>;
    /// The dimension of the matrices it produces.
    fn dim(&self) -> u64;
}

/// A feature step as a pipeline holds it: it transforms, may follow the stream, and saves its
/// whole state (parameters and statistics) under a stable kind name, so a pipeline file can be
/// loaded back into the same steps.
pub trait FeatureStep: Transformer + std::fmt::Debug {
    /// The stable name of the step's kind in pipeline files, e.g. `"standard-scaler"`.
    fn kind(&self) -> &'static str;
    /// The step's full state as JSON (read back by the kind's loader).
    fn save(&self) -> Result<serde_json::Value>;
    /// Folds `batch` into the statistics; frozen or stateless steps do nothing.
    fn update(&mut self, _batch: &RecordBatch) -> Result<()> {
        Ok(())
    }
    /// Whether a row must not see itself in its own features: the step's statistics are other
    /// rows' labels or a key's history (target encoding, windowed aggregates), which a served
    /// row — never folded in, its label unknown — cannot see either. Such a step is
    /// transformed **before** a training batch is folded into it ([`follow`](Self::follow)),
    /// so training features equal served ones and no label leaks into its own row. Default
    /// `false`: statistics of the feature's own distribution (scalers, vocabularies) fold the
    /// batch in first.
    fn transforms_before_update(&self) -> bool {
        false
    }
    /// Follows the stream for one training batch: folds `batch` into the statistics and
    /// returns it transformed, in the order [`transforms_before_update`](Self::transforms_before_update)
    /// asks for. The one rule every training path (pipelines, feature operators) uses.
    fn follow(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.transforms_before_update() {
            let out = self.transform(batch)?;
            self.update(batch)?;
            Ok(out)
        } else {
            self.update(batch)?;
            self.transform(batch)
        }
    }
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn FeatureStep>;
    /// The step as [`Any`](std::any::Any), so a pipeline's per-row path
    /// ([`crate::pipeline::RowPlan`]) can find the steps it runs per row. Default `None`
    /// (the online numeric steps answer).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
    /// [`as_any`](Self::as_any), mutable.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

impl Clone for Box<dyn FeatureStep> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}
