//! [`LinearRegression`] (ordinary least squares) and [`Ridge`] (L2-penalized least squares),
//! both solved by linfa-linear's QR least squares, with sample weights.
//!
//! With weights `ω_i` (1 when absent), both minimize
//! `Σ_i ω_i (y_i − b − w·x_i)² + α ‖w‖²` (`α = 0` for ordinary least squares; the intercept `b`
//! is not penalized). With an intercept, `x` and `y` are centred on their weighted means first
//! and `b = ȳ − w·x̄`; rows are then scaled by `√ω_i`, and for `α > 0` the system is augmented
//! with the rows `√α · I` (targets 0), whose least-squares solution is the ridge solution. QR on
//! the augmented system avoids forming `XᵀX`, so ridge stays accurate on ill-conditioned data.

use linfa::traits::Fit;
use linfa::DatasetBase;
use ndarray::{concatenate, Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use super::data::{check_examples, dense_records, fit_failed, sample_weights};
use super::weights::LinearModelWeights;
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{BatchLearner, Predictor, Task};
use crate::transform::Params;

const LINEAR: &str = "linear-regression";
const RIDGE: &str = "ridge";

/// Parameters of [`LinearRegression`] (ordinary least squares).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LinearRegressionParams {
    /// Fit an intercept. Default true.
    pub fit_intercept: bool,
}

impl Default for LinearRegressionParams {
    fn default() -> Self {
        LinearRegressionParams {
            fit_intercept: true,
        }
    }
}

impl Params for LinearRegressionParams {
    type Valid = LinearRegression;

    /// Every value is valid.
    fn check(&self) -> Result<LinearRegression> {
        Ok(LinearRegression(*self))
    }
}

/// Ordinary least squares on bounded data: the checked [`LinearRegressionParams`].
///
/// Needs a design of full column rank (after centring, with an intercept): collinear or
/// constant columns, or fewer weighted rows than columns, make the solution not unique; such a
/// design is refused with an error naming the first dependent column — use [`Ridge`] for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearRegression(LinearRegressionParams);

impl LinearRegression {
    /// The parameters.
    pub fn params(&self) -> &LinearRegressionParams {
        &self.0
    }
}

impl BatchLearner for LinearRegression {
    type Model = LinearRegressionModel;

    fn fit(&self, examples: &Examples) -> Result<LinearRegressionModel> {
        least_squares(LINEAR, examples, 0.0, self.0.fit_intercept)
    }
}

/// Parameters of [`Ridge`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RidgeParams {
    /// L2 strength `α`, finite and `>= 0` (0 is ordinary least squares, which then needs a
    /// design of full column rank, as [`LinearRegression`]). Default 1.
    pub alpha: f64,
    /// Fit an (unpenalized) intercept. Default true.
    pub fit_intercept: bool,
}

impl Default for RidgeParams {
    fn default() -> Self {
        RidgeParams {
            alpha: 1.0,
            fit_intercept: true,
        }
    }
}

impl Params for RidgeParams {
    type Valid = Ridge;

    fn check(&self) -> Result<Ridge> {
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return Err(Error::param(
                format!("{RIDGE}.alpha"),
                format!("{} is not a finite number >= 0", self.alpha),
            ));
        }
        Ok(Ridge(*self))
    }
}

/// Ridge regression on bounded data: the checked [`RidgeParams`]. Any `α > 0` makes the system
/// non-singular, whatever the data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ridge(RidgeParams);

impl Ridge {
    /// The parameters.
    pub fn params(&self) -> &RidgeParams {
        &self.0
    }
}

impl BatchLearner for Ridge {
    type Model = LinearRegressionModel;

    fn fit(&self, examples: &Examples) -> Result<LinearRegressionModel> {
        least_squares(RIDGE, examples, self.0.alpha, self.0.fit_intercept)
    }
}

/// Solves the weighted, optionally penalized least-squares problem of the module docs.
fn least_squares(
    learner: &'static str,
    ex: &Examples,
    alpha: f64,
    fit_intercept: bool,
) -> Result<LinearRegressionModel> {
    check_examples(learner, ex)?;
    let mut x = dense_records(learner, &ex.features)?;
    let mut y: Array1<f64> = ex.labels.iter().map(|&v| f64::from(v)).collect();
    let weights = sample_weights(learner, ex)?;
    let (n, d) = x.dim();
    let (x_mean, y_mean) = if fit_intercept {
        let (x_mean, y_mean) = match &weights {
            Some(w) => {
                let total = w.sum();
                (x.t().dot(w) / total, w.dot(&y) / total)
            }
            None => (x.sum_axis(Axis(0)) / n as f64, y.sum() / n as f64),
        };
        x -= &x_mean;
        y -= y_mean;
        (x_mean, y_mean)
    } else {
        (Array1::zeros(d), 0.0)
    };
    if let Some(w) = &weights {
        let root = w.mapv(f64::sqrt);
        x *= &root.view().insert_axis(Axis(1));
        y *= &root;
    }
    let coef = if d == 0 {
        Array1::zeros(0)
    } else {
        if alpha == 0.0 {
            check_full_rank(learner, &x)?;
        } else {
            let penalty = Array2::eye(d) * alpha.sqrt();
            x = concatenate(Axis(0), &[x.view(), penalty.view()])
                .map_err(|e| fit_failed(learner, e))?;
            y = concatenate(Axis(0), &[y.view(), Array1::zeros(d).view()])
                .map_err(|e| fit_failed(learner, e))?;
        }
        let fitted = linfa_linear::LinearRegression::new()
            .with_intercept(false)
            .fit(&DatasetBase::new(x, y))
            .map_err(|e| fit_failed(learner, e))?;
        fitted.params().clone()
    };
    let intercept = y_mean - x_mean.dot(&coef);
    let coef = LinearModelWeights::from_f64(learner, &coef.to_vec(), intercept)?;
    Ok(LinearRegressionModel { coef })
}

/// Relative size below which a Cholesky pivot of `XᵀX` counts as zero (about a condition
/// number of `10^6` for `X`).
const RANK_TOLERANCE: f64 = 1e-12;

/// Refuses a rank-deficient design for ordinary least squares, whose solution is then not
/// unique (QR would return one arbitrary, possibly huge, solution): Cholesky of `XᵀX` with any
/// pivot `<= RANK_TOLERANCE ×` the largest diagonal entry.
fn check_full_rank(learner: &str, x: &Array2<f64>) -> Result<()> {
    let mut g = x.t().dot(x);
    let d = g.nrows();
    let tol = RANK_TOLERANCE * g.diag().iter().fold(0.0f64, |m, &v| m.max(v));
    for j in 0..d {
        let pivot = g[[j, j]] - (0..j).map(|k| g[[j, k]] * g[[j, k]]).sum::<f64>();
        if pivot <= tol {
            return Err(fit_failed(
                learner,
                format!(
                    "the design is rank-deficient at column {j} (collinear or constant columns, \
                     or fewer weighted rows than columns); use ridge"
                ),
            ));
        }
        let l = pivot.sqrt();
        g[[j, j]] = l;
        for i in j + 1..d {
            let dot = (0..j).map(|k| g[[i, k]] * g[[j, k]]).sum::<f64>();
            g[[i, j]] = (g[[i, j]] - dot) / l;
        }
    }
    Ok(())
}

/// A fitted [`LinearRegression`] or [`Ridge`]: `predict` gives `b + w·x`, on dense or sparse
/// features of the training dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LinearRegressionModel {
    coef: LinearModelWeights,
}

impl LinearRegressionModel {
    /// The coefficients, to warm-start an online linear regression (see [`LinearModelWeights`]
    /// for which feature each weight belongs to).
    pub fn linear_weights(&self) -> LinearModelWeights {
        self.coef.clone()
    }
}

impl Predictor for LinearRegressionModel {
    fn task(&self) -> Task {
        Task::Regression
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        self.coef.margins_for("linear-regression model", x, out)
    }
}
