//! Linear learners over hashed sparse or dense features.
//!
//! - [`FtrlLogisticRegression`]: FTRL-Proximal logistic regression (McMahan et al. 2013), the
//!   click-prediction workhorse; exact `l1` zeros.
//! - [`SgdLogisticRegression`] / [`SgdLinearRegression`]: logistic / squared loss with any
//!   [`Rule`](crate::optim::Rule) (default: Vowpal Wabbit's adaptive + normalized step).
//! - [`LogisticGradientModel`]: the same logistic model with its weights in a parameter server.
//! - [`SharedFtrl`]: FTRL weights several threads train at once (Hogwild), for data-parallel
//!   training on one machine.
//!
//! ## Shared semantics
//! - The model is `margin = b + Σ_i w_i x_i`; logistic learners predict
//!   `p = σ(margin) = 1 / (1 + e^(−margin))` with the margin clamped to `±35`, and treat a label
//!   `> 0.5` as positive (so 0/1 and −1/+1 labels both work). The loss gradient with respect to
//!   the margin is `ℓ' = ω (p − y)` (logistic) or `ℓ' = ω (ŷ − y)` (squared, `½(ŷ − y)²`), with
//!   `ω` the example's importance weight; coordinate `i` gets `g_i = ℓ' x_i`, the intercept
//!   `ℓ'` (it is a feature with value 1, under the same rule).
//! - Entries with `x = 0` are absent: they neither predict nor update.
//! - The dimension is fixed at construction (`bits`, or an explicit `dim`, e.g. `2^bits + 1`
//!   for a hasher with a bias column); a batch with a feature index `>= dim` is refused with
//!   [`Error::Shape`] before anything is learned.
//! - `learn` and `predict_learn` are one fused pass per row (the margin is computed once and
//!   serves both the prediction and the gradient) and allocate nothing per row. The entries of
//!   a row are updated in order, so an index repeated within a row is stepped twice.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | [`ftrl`] | [`FtrlLogisticRegression`], [`FtrlLogisticParams`]; `ftrl::shared`: [`SharedFtrl`]; `ftrl::hot`: a handle's replicas of the hot slots |
//! | [`sgd`] | [`SgdLogisticRegression`], [`SgdLinearRegression`], [`SgdLinearParams`] |
//! | [`gradient`] | [`LogisticGradientModel`] for parameter-server training |

pub mod ftrl;
pub mod gradient;
#[cfg(test)]
mod reference_tests;
pub mod sgd;
#[cfg(test)]
mod tests;

pub use ftrl::{FtrlLogisticParams, FtrlLogisticRegression, FtrlShape, SharedFtrl};
pub use gradient::{LogisticGradientModel, BIAS_KEY};
pub use sgd::{SgdLinearParams, SgdLinearRegression, SgdLogisticRegression};

use crate::error::{Error, Result};
use crate::features::{FeatureRow, Features};

/// Margins are clamped to `±MAX_MARGIN` before the sigmoid.
pub const MAX_MARGIN: f32 = 35.0;

/// `σ(m) = 1 / (1 + e^(−m))` with `m` clamped to `±35`.
#[inline(always)]
pub fn sigmoid(margin: f32) -> f32 {
    let m = margin.clamp(-MAX_MARGIN, MAX_MARGIN);
    1.0 / (1.0 + (-m).exp())
}

/// The 0/1 target of a binary label (`> 0.5` is positive).
#[inline(always)]
pub(crate) fn binary_target(label: f32) -> f32 {
    if label > 0.5 {
        1.0
    } else {
        0.0
    }
}

/// Calls `f(index, value)` for each nonzero entry of `row`.
#[inline(always)]
pub(crate) fn for_each_entry(row: &FeatureRow<'_>, mut f: impl FnMut(usize, f32)) {
    match row {
        FeatureRow::Sparse { indices, values } => {
            for (&i, &v) in indices.iter().zip(values.iter()) {
                if v != 0.0 {
                    f(i as usize, v);
                }
            }
        }
        FeatureRow::Dense(x) => {
            for (j, &v) in x.iter().enumerate() {
                if v != 0.0 {
                    f(j, v);
                }
            }
        }
    }
}

/// Resolves the dimension from `bits` and an optional explicit `dim`, naming `learner.bits` /
/// `learner.dim` when out of range (1..=31 bits; 1..=2^32 for `dim`, as indices are `u32`).
pub(crate) fn resolve_dim(learner: &str, bits: u32, dim: Option<u64>) -> Result<u64> {
    match dim {
        Some(d) if d == 0 || d > 1 << 32 => Err(Error::param(
            format!("{learner}.dim"),
            format!("{d} is not in 1..=2^32"),
        )),
        Some(d) => Ok(d),
        None if !(1..=31).contains(&bits) => Err(Error::param(
            format!("{learner}.bits"),
            format!("{bits} is not in 1..=31"),
        )),
        None => Ok(1 << bits),
    }
}

/// Refuses `x` if any of its feature indices is `>= dim` (one scan over the indices, before
/// any learning, so a refused batch leaves the model untouched).
pub(crate) fn check_indices(learner: &str, x: &Features, dim: u64) -> Result<()> {
    let bad = match x {
        Features::Dense(a) => (a.ncols() as u64 > dim).then(|| a.ncols() as u64 - 1),
        Features::Sparse(m) if m.dim() <= dim => None,
        Features::Sparse(m) => (0..m.rows())
            .filter_map(|r| m.row(r).0.iter().copied().max())
            .max()
            .map(u64::from)
            .filter(|&i| i >= dim),
    };
    match bad {
        Some(i) => Err(Error::Shape(format!(
            "{learner}: feature index {i} is out of range for the model's dim {dim} \
             (construct it with a larger `bits` or `dim`)"
        ))),
        None => Ok(()),
    }
}
