//! [`LogisticRegression`]: binary L2-regularized logistic regression fitted by linfa-logistic
//! (L-BFGS with a Moré–Thuente line search).

use linfa::traits::Fit;
use linfa::DatasetBase;
use ndarray::Array1;
use serde::{Deserialize, Serialize};

use super::data::{check_examples, dense_records, fit_failed, invalid, refuse_weights};
use super::weights::LinearModelWeights;
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{BatchLearner, Predictor, Task};
use crate::transform::Params;

const NAME: &str = "logistic-regression";

/// Margins are clamped to `±35` before the sigmoid, as in the online linear learners.
const MAX_MARGIN: f64 = 35.0;

/// The largest `f32` below 1: a probability is never rounded up to exactly 1.
const MAX_PROBABILITY: f32 = 1.0 - f32::EPSILON / 2.0;

/// Parameters of [`LogisticRegression`].
///
/// With `z_i = b + w·x_i` and `s_i = ±1` the class of row `i`, the fit minimizes
/// `Σ_i ln(1 + e^(−s_i z_i)) + α/2 ‖w‖²` (the loss is a sum over rows, not a mean; the
/// intercept `b` is not penalized).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LogisticRegressionParams {
    /// L2 strength `α`, finite and `>= 0`. Default 1 (linfa's default).
    pub alpha: f64,
    /// Fit an intercept. Default true.
    pub fit_intercept: bool,
    /// Maximum L-BFGS iterations, `>= 1`. Default 100.
    pub max_iterations: u64,
    /// Stop when the gradient norm falls below this; finite and `> 0`. Default `1e-4`.
    pub gradient_tolerance: f64,
}

impl Default for LogisticRegressionParams {
    fn default() -> Self {
        LogisticRegressionParams {
            alpha: 1.0,
            fit_intercept: true,
            max_iterations: 100,
            gradient_tolerance: 1e-4,
        }
    }
}

impl Params for LogisticRegressionParams {
    type Valid = LogisticRegression;

    fn check(&self) -> Result<LogisticRegression> {
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return Err(Error::param(
                format!("{NAME}.alpha"),
                format!("{} is not a finite number >= 0", self.alpha),
            ));
        }
        if self.max_iterations == 0 {
            return Err(Error::param(
                format!("{NAME}.max-iterations"),
                "must be >= 1",
            ));
        }
        if !self.gradient_tolerance.is_finite() || self.gradient_tolerance <= 0.0 {
            return Err(Error::param(
                format!("{NAME}.gradient-tolerance"),
                format!("{} is not a finite number > 0", self.gradient_tolerance),
            ));
        }
        Ok(LogisticRegression(*self))
    }
}

/// Binary logistic regression on bounded data: the checked [`LogisticRegressionParams`].
///
/// Labels follow the online learners: a label `> 0.5` is positive (so 0/1 and −1/+1 both
/// work), and both classes must occur. Sample weights other than 1 are refused (linfa-logistic
/// has none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticRegression(LogisticRegressionParams);

impl LogisticRegression {
    /// The parameters.
    pub fn params(&self) -> &LogisticRegressionParams {
        &self.0
    }
}

impl BatchLearner for LogisticRegression {
    type Model = LogisticRegressionModel;

    fn fit(&self, examples: &Examples) -> Result<LogisticRegressionModel> {
        check_examples(NAME, examples)?;
        refuse_weights(NAME, examples)?;
        let records = dense_records(NAME, &examples.features)?;
        let targets: Array1<bool> = examples.labels.iter().map(|&y| y > 0.5).collect();
        if targets.iter().all(|&t| t == targets[0]) {
            let message = format!(
                "all {} labels are in class {}; logistic regression needs both classes",
                targets.len(),
                u8::from(targets[0])
            );
            return Err(invalid(NAME, "label", 0, message));
        }
        let p = &self.0;
        let fitted = linfa_logistic::LogisticRegression::<f64>::default()
            .alpha(p.alpha)
            .with_intercept(p.fit_intercept)
            .max_iterations(p.max_iterations)
            .gradient_tolerance(p.gradient_tolerance)
            .fit(&DatasetBase::new(records, targets))
            .map_err(|e| fit_failed(NAME, e))?;
        // linfa calls the more frequent class "positive"; we always give P(label = 1).
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        let w: Vec<f64> = fitted.params().iter().map(|&w| sign * w).collect();
        let coef = LinearModelWeights::from_f64(NAME, &w, sign * fitted.intercept())?;
        Ok(LogisticRegressionModel { coef })
    }
}

/// A fitted [`LogisticRegression`]: `predict` gives `P(label = 1) = σ(b + w·x)`, on dense or
/// sparse features of the training dimension. The margin is clamped to `±35` (as online) and
/// the sigmoid computed in `f64`, then kept below 1 in `f32`, so every probability lies in the
/// open interval `(0, 1)` and logloss stays finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogisticRegressionModel {
    coef: LinearModelWeights,
}

impl LogisticRegressionModel {
    /// The coefficients, to warm-start an online logistic learner (see [`LinearModelWeights`]
    /// for which feature each weight belongs to).
    pub fn linear_weights(&self) -> LinearModelWeights {
        self.coef.clone()
    }
}

impl Predictor for LogisticRegressionModel {
    fn task(&self) -> Task {
        Task::BinaryClassification
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        self.coef.margins_for(NAME, x, out)?;
        for p in out.iter_mut() {
            let m = f64::from(*p).clamp(-MAX_MARGIN, MAX_MARGIN);
            *p = ((1.0 / (1.0 + (-m).exp())) as f32).min(MAX_PROBABILITY);
        }
        Ok(())
    }
}
