//! Naive Bayes for streams: [`GaussianNb`] (real-valued features, per-class running mean and
//! variance) and [`MultinomialNb`] (non-negative counts over a hashed vocabulary).
//!
//! Both are exact online learners: their state is a set of (weighted) sufficient statistics,
//! so learning a batch equals learning its rows one by one and equals fitting on all rows seen.
//! Labels are class indices `0..classes` given as `f32`. With `classes == 2` the task is
//! [`Task::BinaryClassification`] and `predict` gives P(y = 1); with more classes it is
//! [`Task::Multiclass`]: `predict` gives the most likely class and `predict_scores` one
//! posterior probability per class. Before any row is learned the posterior is uniform.
//! Importance weights scale a row's contribution to every statistic (a weight-2 row counts as
//! two copies); they must be finite and non-negative.

mod gaussian;
mod multinomial;
#[cfg(test)]
mod tests;

pub use gaussian::{GaussianNb, GaussianNbParams, GaussianNbValidParams};
pub use multinomial::{MultinomialNb, MultinomialNbParams, MultinomialNbValidParams};

use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::Task;

/// The task for `classes` classes.
fn task(classes: usize) -> Task {
    if classes == 2 {
        Task::BinaryClassification
    } else {
        Task::Multiclass { classes }
    }
}

fn invalid(step: &str, column: &str, row: usize, message: String) -> Error {
    Error::InvalidValue {
        step: step.into(),
        column: column.into(),
        row,
        message,
    }
}

/// The class index of row `row`'s label, the row's weight, after checking both.
fn label_and_weight(step: &str, ex: &Examples, row: usize, classes: usize) -> Result<(usize, f64)> {
    let y = ex.labels[row];
    if !(y >= 0.0 && y.fract() == 0.0 && (y as usize) < classes) {
        return Err(invalid(
            step,
            "label",
            row,
            format!("{y} is not a class index below {classes}"),
        ));
    }
    let w = ex.weight(row);
    if !(w.is_finite() && w >= 0.0) {
        return Err(invalid(
            step,
            "weight",
            row,
            format!("{w} is not finite and non-negative"),
        ));
    }
    Ok((y as usize, f64::from(w)))
}

/// Checks that `x` has the model's dimension.
fn check_dim(step: &str, x: &Features, dim: u64) -> Result<()> {
    if x.dim() != dim {
        return Err(Error::Shape(format!(
            "{step}: features have dim {} but the model has {dim}",
            x.dim()
        )));
    }
    Ok(())
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

/// Turns joint log-likelihoods into posterior probabilities in place (log-sum-exp, so large
/// magnitudes do not overflow). Classes at −∞ get 0; if all are, the posterior is uniform.
fn to_posteriors(jll: &mut [f64]) {
    let max = jll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY || max.is_nan() {
        let u = 1.0 / jll.len() as f64;
        jll.fill(u);
        return;
    }
    let mut sum = 0.0;
    for v in jll.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in jll.iter_mut() {
        *v /= sum;
    }
}

/// Appends `predict`'s value for one row's posteriors: P(y = 1) for two classes, else the
/// most likely class (the first on ties).
fn push_prediction(post: &[f64], out: &mut Vec<f32>) {
    if post.len() == 2 {
        out.push(post[1] as f32);
    } else {
        let mut best = 0;
        for (c, &p) in post.iter().enumerate() {
            if p > post[best] {
                best = c;
            }
        }
        out.push(best as f32);
    }
}

/// `predict_scores` for a posterior-producing model: one probability per class for
/// multiclass models, P(y = 1) (width 1) for binary ones.
fn push_scores(post: &[f64], out: &mut Vec<f32>) {
    if post.len() == 2 {
        out.push(post[1] as f32);
    } else {
        out.extend(post.iter().map(|&p| p as f32));
    }
}

/// `ln(n / total)`, −∞ for an unseen class; uniform while nothing has been seen.
#[inline]
fn log_prior(n: f64, total: f64, classes: usize) -> f64 {
    if total <= 0.0 {
        -(classes as f64).ln()
    } else if n <= 0.0 {
        f64::NEG_INFINITY
    } else {
        (n / total).ln()
    }
}
