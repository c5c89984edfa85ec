//! Passive-aggressive learners (Crammer, Dekel, Keshet, Shalev-Shwartz & Singer, "Online
//! Passive-Aggressive Algorithms", JMLR 2006): after each example the weights move the least
//! distance that puts the example (nearly) right.
//!
//! With margin `m = w·x + b`, loss `ℓ` and `q = ‖x‖² + 1` (the intercept is the paper's extra
//! constant feature of value 1, so it counts in the norm; without an intercept `q = ‖x‖²`):
//!
//! | variant | step `τ` |
//! |---|---|
//! | PA | `ℓ / q` |
//! | PA-I | `min(C, ℓ / q)` |
//! | PA-II | `ℓ / (q + 1 / (2C))` |
//!
//! - **Classification**: labels 0/1 map to `y = ∓1`; `ℓ = max(0, 1 − y·m)`; `w += τ·y·x`,
//!   `b += τ·y`. `predict` gives P(y = 1) through a logistic link of the margin, `σ(m)`: PA is
//!   not a probabilistic model, so this is a monotone score in (0, 1) with 0.5 at the decision
//!   boundary, not a calibrated probability.
//! - **Regression**: `ℓ = max(0, |y − m| − ε)`; `w += τ·sign(y − m)·x`; `predict` gives `m`.
//!
//! An importance weight `s` scales the aggressiveness: PA-I and PA-II use `C·s` (the weighted
//! objective), plain PA (which has no `C`) only skips rows of weight 0. Unlike scikit-learn,
//! which leaves the intercept out of `‖x‖²`, the intercept follows the paper's reduction.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{OnlineLearner, Predictor, Task};
use crate::transform::Params;

const STEP: &str = "passive-aggressive";

/// What a [`PassiveAggressive`] model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaTask {
    /// Binary classification with the hinge loss (labels 0/1).
    Classification,
    /// Regression with the ε-insensitive loss.
    Regression,
}

/// The step-size rule (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaVariant {
    /// Plain PA: `τ = ℓ / q` (no `C`).
    #[serde(rename = "pa")]
    Pa,
    /// PA-I: `τ = min(C, ℓ / q)`.
    #[serde(rename = "pa-i")]
    PaI,
    /// PA-II: `τ = ℓ / (q + 1 / (2C))`.
    #[serde(rename = "pa-ii")]
    PaII,
}

/// Parameters of [`PassiveAggressive`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveAggressiveParams {
    /// Feature dimension (dense width or hashed space). Required, 1..=2^32.
    pub dim: u64,
    /// Classification or regression. Default classification.
    #[serde(default = "classification")]
    pub task: PaTask,
    /// Step-size rule. Default PA-I (scikit-learn's default).
    #[serde(default = "pa_i")]
    pub variant: PaVariant,
    /// Aggressiveness `C` of PA-I / PA-II, finite and > 0. Default 1.
    #[serde(default = "one")]
    pub c: f32,
    /// Insensitivity `ε` of the regression loss, finite and ≥ 0. Default 0.1.
    #[serde(default = "tenth")]
    pub epsilon: f32,
    /// Learn an intercept `b`. Default `true`.
    #[serde(default = "yes")]
    pub fit_intercept: bool,
}

fn classification() -> PaTask {
    PaTask::Classification
}
fn pa_i() -> PaVariant {
    PaVariant::PaI
}
fn one() -> f32 {
    1.0
}
fn tenth() -> f32 {
    0.1
}
fn yes() -> bool {
    true
}

impl PassiveAggressiveParams {
    /// Parameters with the defaults for `dim` features and `task`.
    pub fn new(dim: u64, task: PaTask) -> Self {
        PassiveAggressiveParams {
            dim,
            task,
            variant: PaVariant::PaI,
            c: 1.0,
            epsilon: 0.1,
            fit_intercept: true,
        }
    }
}

/// Checked [`PassiveAggressiveParams`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PassiveAggressiveValidParams(PassiveAggressiveParams);

impl std::ops::Deref for PassiveAggressiveValidParams {
    type Target = PassiveAggressiveParams;
    fn deref(&self) -> &PassiveAggressiveParams {
        &self.0
    }
}

impl Params for PassiveAggressiveParams {
    type Valid = PassiveAggressiveValidParams;

    fn check(&self) -> Result<PassiveAggressiveValidParams> {
        if self.dim == 0 || self.dim > u64::from(u32::MAX) + 1 {
            return Err(Error::param(
                "passive-aggressive.dim",
                "must be in 1..=2^32",
            ));
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(Error::param(
                "passive-aggressive.c",
                "must be finite and > 0",
            ));
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return Err(Error::param(
                "passive-aggressive.epsilon",
                "must be finite and >= 0",
            ));
        }
        Ok(PassiveAggressiveValidParams(*self))
    }
}

/// A passive-aggressive classifier or regressor (see the [module docs](self)). Rows cost
/// O(nnz); dense rows skip zero columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PaState")]
pub struct PassiveAggressive {
    params: PassiveAggressiveValidParams,
    w: Vec<f32>,
    bias: f32,
    rows: u64,
}

#[derive(Deserialize)]
struct PaState {
    params: PassiveAggressiveParams,
    w: Vec<f32>,
    bias: f32,
    rows: u64,
}

impl TryFrom<PaState> for PassiveAggressive {
    type Error = Error;

    fn try_from(s: PaState) -> Result<Self> {
        let params = s.params.check()?;
        if s.w.len() as u64 != params.dim {
            return Err(Error::Shape(format!(
                "{STEP}: snapshot weights do not match dim"
            )));
        }
        Ok(PassiveAggressive {
            params,
            w: s.w,
            bias: s.bias,
            rows: s.rows,
        })
    }
}

/// Calls `f(index, value)` for each stored entry of a row (dense rows: each non-zero column).
#[inline]
fn for_each_nz(row: &FeatureRow<'_>, mut f: impl FnMut(usize, f32)) {
    match row {
        FeatureRow::Sparse { indices, values } => {
            for (&i, &v) in indices.iter().zip(values.iter()) {
                f(i as usize, v);
            }
        }
        FeatureRow::Dense(x) => {
            for (i, &v) in x.iter().enumerate() {
                if v != 0.0 {
                    f(i, v);
                }
            }
        }
    }
}

fn sigmoid(m: f32) -> f32 {
    if m >= 0.0 {
        1.0 / (1.0 + (-m).exp())
    } else {
        let e = m.exp();
        e / (1.0 + e)
    }
}

impl PassiveAggressive {
    /// A model with zero weights.
    pub fn new(params: PassiveAggressiveValidParams) -> Self {
        PassiveAggressive {
            w: vec![0.0; params.dim as usize],
            bias: 0.0,
            params,
            rows: 0,
        }
    }

    /// The weights, one per feature.
    pub fn weights(&self) -> &[f32] {
        &self.w
    }

    /// The intercept (0 without `fit_intercept`).
    pub fn intercept(&self) -> f32 {
        self.bias
    }

    /// The margin `w·x + b` of a row, and `‖x‖²`.
    #[inline]
    fn margin(&self, row: &FeatureRow<'_>) -> (f64, f64) {
        let (mut m, mut sq) = (f64::from(self.bias), 0.0);
        for_each_nz(row, |i, v| {
            m += f64::from(self.w[i]) * f64::from(v);
            sq += f64::from(v) * f64::from(v);
        });
        (m, sq)
    }

    #[inline]
    fn output(&self, m: f64) -> f32 {
        match self.params.task {
            PaTask::Classification => sigmoid(m as f32),
            PaTask::Regression => m as f32,
        }
    }

    /// The step size for loss `loss`, squared norm `q` and importance weight `s`.
    fn tau(&self, loss: f64, q: f64, s: f64) -> f64 {
        if loss <= 0.0 || s == 0.0 {
            return 0.0;
        }
        let c = f64::from(self.params.c) * s;
        match self.params.variant {
            PaVariant::Pa if q > 0.0 => loss / q,
            PaVariant::Pa => 0.0,
            PaVariant::PaI if q > 0.0 => (loss / q).min(c),
            PaVariant::PaI => 0.0,
            PaVariant::PaII => loss / (q + 0.5 / c),
        }
    }

    fn learn_inner(&mut self, ex: &Examples, mut out: Option<&mut Vec<f32>>) -> Result<()> {
        check_dim(&ex.features, self.params.dim)?;
        for i in 0..ex.len() {
            let (label, s) = (ex.labels[i], ex.weight(i));
            let y = match self.params.task {
                PaTask::Classification if label == 1.0 => 1.0,
                PaTask::Classification if label == 0.0 => -1.0,
                PaTask::Regression if label.is_finite() => f64::from(label),
                _ => return Err(invalid("label", i, format!("{label} is not a valid label"))),
            };
            if !(s.is_finite() && s >= 0.0) {
                return Err(invalid("weight", i, format!("{s} must be finite and >= 0")));
            }
            let row = ex.features.row(i);
            let (m, sq) = self.margin(&row);
            if !sq.is_finite() {
                return Err(invalid("features", i, "a feature is not finite".into()));
            }
            if let Some(out) = out.as_deref_mut() {
                out.push(self.output(m));
            }
            self.rows += 1;
            let (loss, dir) = match self.params.task {
                PaTask::Classification => ((1.0 - y * m).max(0.0), y),
                PaTask::Regression => (
                    ((y - m).abs() - f64::from(self.params.epsilon)).max(0.0),
                    (y - m).signum(),
                ),
            };
            let q = sq + if self.params.fit_intercept { 1.0 } else { 0.0 };
            let step = self.tau(loss, q, f64::from(s)) * dir;
            if step == 0.0 {
                continue;
            }
            let w = &mut self.w;
            for_each_nz(&row, |j, v| {
                w[j] = (f64::from(w[j]) + step * f64::from(v)) as f32
            });
            if self.params.fit_intercept {
                self.bias = (f64::from(self.bias) + step) as f32;
            }
        }
        Ok(())
    }
}

fn check_dim(x: &Features, dim: u64) -> Result<()> {
    if x.dim() != dim {
        return Err(Error::Shape(format!(
            "{STEP}: features have dim {} but the model has {dim}",
            x.dim()
        )));
    }
    Ok(())
}

fn invalid(column: &str, row: usize, message: String) -> Error {
    Error::InvalidValue {
        step: STEP.into(),
        column: column.into(),
        row,
        message,
    }
}

impl Predictor for PassiveAggressive {
    fn task(&self) -> Task {
        match self.params.task {
            PaTask::Classification => Task::BinaryClassification,
            PaTask::Regression => Task::Regression,
        }
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        check_dim(x, self.params.dim)?;
        out.clear();
        out.extend((0..x.rows()).map(|i| self.output(self.margin(&x.row(i)).0)));
        Ok(())
    }
}

impl OnlineLearner for PassiveAggressive {
    fn learn(&mut self, examples: &Examples) -> Result<()> {
        self.learn_inner(examples, None)
    }

    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        self.learn_inner(examples, Some(out))
    }

    fn rows_seen(&self) -> u64 {
        self.rows
    }
}

#[cfg(test)]
mod tests;
