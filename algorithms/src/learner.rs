//! The learner contracts (ARCHITECTURE §4).
//!
//! - [`Predictor`]: all serving needs. `predict` never mutates the model.
//! - [`OnlineLearner`]: `learn` a batch with per-example semantics (learning a batch equals
//!   learning its rows one by one), and `predict_learn` for progressive validation.
//! - [`BatchLearner`]: `fit` on bounded data into a predictor.
//! - [`UpdateRule`]: one optimizer step on one parameter with explicit state, shared by local
//!   learners and parameter-server shards so that both train identically.
//! - [`GradientModel`]: a model whose parameters live in an external store (the parameter
//!   server): it names the keys a batch touches and computes loss and gradients for them.

use crate::error::Result;
use crate::features::{Examples, Features};

/// What a model predicts, and so what `predict` returns per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// `predict` gives P(label = 1).
    BinaryClassification,
    /// `predict` gives the predicted value.
    Regression,
    /// `predict` gives the most likely class index; `predict_scores` one probability per class.
    Multiclass {
        /// Number of classes.
        classes: usize,
    },
    /// `predict` gives the index of the nearest cluster.
    Clustering {
        /// Number of clusters.
        clusters: usize,
    },
}

/// A model that predicts. Implementations are `Send + Sync` so one model serves many threads.
pub trait Predictor: Send + Sync {
    /// What the predictions mean.
    fn task(&self) -> Task;

    /// One prediction per row of `x` into `out` (cleared first). See [`Task`] for the meaning.
    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()>;

    /// Per-row score vectors, flattened row-major into `out`; returns the width. The default is
    /// `predict` with width 1; multiclass models give one probability per class.
    fn predict_scores(&self, x: &Features, out: &mut Vec<f32>) -> Result<usize> {
        self.predict(x, out)?;
        Ok(1)
    }
}

/// A model that learns from a stream.
pub trait OnlineLearner: Predictor {
    /// Learns every example of `examples`, in order, exactly as if they came one at a time.
    fn learn(&mut self, examples: &Examples) -> Result<()>;

    /// Progressive validation in one pass: for each example in order, predict it with the model
    /// as it is, then learn it. `out` gets the predictions (as [`Predictor::predict`]).
    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()>;

    /// Rows learned so far.
    fn rows_seen(&self) -> u64;
}

/// A learner trained on bounded data.
pub trait BatchLearner {
    /// The trained model.
    type Model: Predictor;
    /// Trains on `examples`.
    fn fit(&self, examples: &Examples) -> Result<Self::Model>;
}

/// One optimizer step on one parameter, with its state passed explicitly (burn's habit): the
/// same rule runs in a local learner and on a parameter-server shard.
///
/// A parameter is a weight `w` plus [`state_len`](UpdateRule::state_len) floats of state.
/// `grad` is the loss gradient with respect to `w`; `x` is the feature value the gradient came
/// from (1 where there is none, e.g. embedding factors), used by normalized rules; `t` is the
/// 1-based count of examples seen, for schedules and bias correction.
pub trait UpdateRule: Send + Sync + std::fmt::Debug {
    /// Floats of state per parameter.
    fn state_len(&self) -> usize;

    /// Initializes the state of a fresh parameter (zeros by default).
    fn init_state(&self, state: &mut [f32]) {
        state.fill(0.0);
    }

    /// Applies one step to `w`.
    fn update(&self, w: &mut f32, state: &mut [f32], grad: f32, x: f32, t: u64);

    /// Applies one step to each parameter of a row: `state` holds `state_len()` floats per
    /// parameter, in order.
    fn update_row(&self, w: &mut [f32], state: &mut [f32], grads: &[f32], xs: &[f32], t: u64) {
        let k = self.state_len();
        for i in 0..w.len() {
            let s = &mut state[i * k..(i + 1) * k];
            self.update(&mut w[i], s, grads[i], xs[i], t);
        }
    }
}

/// One parameter table of a [`GradientModel`]: `dim` floats per key (1 for linear weights, k for
/// factors or embeddings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSpec {
    /// Table name, unique within the model.
    pub name: String,
    /// Floats per key.
    pub dim: usize,
}

/// A model whose parameters live in an external store. A training step: `keys` → pull the rows
/// → `gradients` → push the gradients (the store applies the [`UpdateRule`]).
pub trait GradientModel: Send + Sync {
    /// The tables the model needs.
    fn tables(&self) -> Vec<TableSpec>;

    /// The distinct keys each table needs for `x`, one vector per table (in `tables()` order).
    fn keys(&self, x: &Features, keys: &mut [Vec<u64>]);

    /// Loss (sum over examples) and gradients for `examples`, given the pulled rows: `rows[t]`
    /// holds `dim` floats per key of `keys[t]`, in order; `grads[t]` is filled the same way.
    fn gradients(
        &self,
        examples: &Examples,
        keys: &[Vec<u64>],
        rows: &[Vec<f32>],
        grads: &mut [Vec<f32>],
    ) -> Result<f64>;

    /// Predictions for `x` given the pulled rows.
    fn predict_with(
        &self,
        x: &Features,
        keys: &[Vec<u64>],
        rows: &[Vec<f32>],
        out: &mut Vec<f32>,
    ) -> Result<()>;
}
