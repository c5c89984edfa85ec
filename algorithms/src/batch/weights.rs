//! [`LinearModelWeights`]: a linear model's coefficients, the value an online linear learner is
//! warm-started from.

use serde::{Deserialize, Serialize};

use super::data::check_dim;
use crate::error::{Error, Result};
use crate::features::Features;

/// The coefficients of a linear model: `margin = intercept + Σ_i weights[i] · x_i`.
///
/// Exported by [`LogisticRegressionModel`](super::LogisticRegressionModel) (the margin is the
/// log-odds of label 1) and [`LinearRegressionModel`](super::LinearRegressionModel) (the margin
/// is the prediction). `weights[i]` belongs to feature index `i`: column `i` of the features the
/// batch model was trained on. An online learner warm-started from it (`warm_start(&weights,
/// intercept)`) must therefore see features from the same featurizer; its own dimension may be
/// larger (the extra features start at zero), never smaller.
///
/// Deserializing checks that `dim` equals the number of weights and that every number is finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawWeights", rename_all = "kebab-case")]
pub struct LinearModelWeights {
    /// One weight per feature index, `0..dim`.
    pub weights: Vec<f32>,
    /// The intercept (bias); 0 when the model was trained without one.
    pub intercept: f32,
    /// The dimension of the features the model was trained on (`weights.len()`).
    pub dim: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawWeights {
    weights: Vec<f32>,
    intercept: f32,
    dim: u64,
}

impl TryFrom<RawWeights> for LinearModelWeights {
    type Error = Error;

    fn try_from(raw: RawWeights) -> Result<Self> {
        LinearModelWeights::new(raw.weights, raw.intercept).and_then(|w| {
            if w.dim == raw.dim {
                Ok(w)
            } else {
                Err(Error::Shape(format!(
                    "linear model weights: dim {} but {} weights",
                    raw.dim, w.dim
                )))
            }
        })
    }
}

impl LinearModelWeights {
    /// Weights for feature indices `0..weights.len()` and an intercept; refuses non-finite
    /// numbers.
    pub fn new(weights: Vec<f32>, intercept: f32) -> Result<Self> {
        if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
            return Err(Error::Shape(format!(
                "linear model weights: weight {i} is {}",
                weights[i]
            )));
        }
        if !intercept.is_finite() {
            return Err(Error::Shape(format!(
                "linear model weights: intercept is {intercept}"
            )));
        }
        let dim = weights.len() as u64;
        Ok(LinearModelWeights {
            weights,
            intercept,
            dim,
        })
    }

    /// From `f64` coefficients as linfa fits them.
    pub(crate) fn from_f64(learner: &str, weights: &[f64], intercept: f64) -> Result<Self> {
        let w = weights.iter().map(|&w| w as f32).collect();
        LinearModelWeights::new(w, intercept as f32).map_err(|e| {
            Error::param(learner, format!("training gave non-finite coefficients (a singular or ill-conditioned problem): {e}"))
        })
    }

    /// The margin of each row of `x` into `out` (cleared first). `x` must have the dimension
    /// the weights were trained on.
    pub fn margins(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        self.margins_for("linear model", x, out)
    }

    /// [`margins`](Self::margins), with errors naming `learner`.
    pub(crate) fn margins_for(
        &self,
        learner: &str,
        x: &Features,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_dim(learner, x, self.weights.len() as u64)?;
        out.clear();
        out.extend((0..x.rows()).map(|r| self.intercept + x.row(r).dot(&self.weights)));
        Ok(())
    }
}
