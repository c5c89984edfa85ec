//! [`LogisticGradientModel`]: logistic regression whose weights live in a parameter server.
//!
//! One table `"w"` of dimension 1; the keys of a batch are its distinct feature indices as
//! `u64`, sorted ascending, followed by [`BIAS_KEY`] for the intercept. A training step:
//! [`keys`](GradientModel::keys) → pull → [`gradients`](GradientModel::gradients) → push, the
//! store applying the table's [`UpdateRule`](crate::learner::UpdateRule) (e.g.
//! [`FtrlProximal`](crate::optim::FtrlProximal)). A batch's gradient is the sum of its rows'
//! gradients at the pulled weights, so with one-row batches and a row without repeated indices
//! this trains exactly like [`FtrlLogisticRegression`](super::FtrlLogisticRegression).

use super::{binary_target, check_indices, for_each_entry, sigmoid};
use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{GradientModel, TableSpec};

const NAME: &str = "logistic-gradient-model";

/// The key of the intercept (past every feature index).
pub const BIAS_KEY: u64 = u64::MAX;

/// Probabilities are clamped to `[1e-7, 1 − 1e-7]` in the log loss.
const EPS: f64 = 1e-7;

/// Logistic regression over a parameter-server table `"w"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogisticGradientModel {
    dim: u64,
    fit_intercept: bool,
}

impl LogisticGradientModel {
    /// A model over feature indices below `dim`, with or without an intercept.
    pub fn new(dim: u64, fit_intercept: bool) -> Self {
        LogisticGradientModel { dim, fit_intercept }
    }

    /// Positions of `row`'s entries within `keys` (sorted), as `(position, value)` pairs to `f`.
    fn each_position(
        keys: &[u64],
        row: &FeatureRow<'_>,
        mut f: impl FnMut(usize, f32),
    ) -> Result<()> {
        let mut missing = None;
        for_each_entry(row, |i, v| match keys.binary_search(&(i as u64)) {
            Ok(pos) => f(pos, v),
            Err(_) => missing = Some(i),
        });
        match missing {
            Some(i) => Err(Error::Shape(format!(
                "{NAME}: feature {i} has no pulled key (keys must come from `keys()`)"
            ))),
            None => Ok(()),
        }
    }

    /// The margin of each row, given the pulled weights, to `f(row, margin)`.
    fn margins(
        &self,
        x: &Features,
        keys: &[Vec<u64>],
        rows: &[Vec<f32>],
        mut f: impl FnMut(usize, f32),
    ) -> Result<()> {
        check_indices(NAME, x, self.dim)?;
        let (keys, w) = match (keys, rows) {
            ([k], [w]) if k.len() == w.len() => (k, w),
            _ => {
                return Err(Error::Shape(format!(
                    "{NAME}: expected one table with one weight per key"
                )))
            }
        };
        let bias = match (self.fit_intercept, keys.last()) {
            (true, Some(&BIAS_KEY)) => w[w.len() - 1],
            (true, _) if x.rows() > 0 => {
                return Err(Error::Shape(format!(
                    "{NAME}: the intercept key is missing"
                )))
            }
            _ => 0.0,
        };
        for r in 0..x.rows() {
            let mut m = bias;
            Self::each_position(keys, &x.row(r), |pos, v| m += w[pos] * v)?;
            f(r, m);
        }
        Ok(())
    }
}

impl GradientModel for LogisticGradientModel {
    fn tables(&self) -> Vec<TableSpec> {
        vec![TableSpec {
            name: "w".into(),
            dim: 1,
        }]
    }

    fn keys(&self, x: &Features, keys: &mut [Vec<u64>]) {
        let Some(k) = keys.first_mut() else { return };
        k.clear();
        for r in 0..x.rows() {
            for_each_entry(&x.row(r), |i, _| k.push(i as u64));
        }
        k.sort_unstable();
        k.dedup();
        if self.fit_intercept {
            k.push(BIAS_KEY);
        }
    }

    fn gradients(
        &self,
        examples: &Examples,
        keys: &[Vec<u64>],
        rows: &[Vec<f32>],
        grads: &mut [Vec<f32>],
    ) -> Result<f64> {
        let [g] = grads else {
            return Err(Error::Shape(format!("{NAME}: expected one gradient table")));
        };
        let n_keys = keys.first().map_or(0, Vec::len);
        g.clear();
        g.resize(n_keys, 0.0);
        let mut margins = Vec::with_capacity(examples.len());
        self.margins(&examples.features, keys, rows, |_, m| margins.push(m))?;
        let key_list = &keys[0];
        let mut loss = 0.0f64;
        for (r, &m) in margins.iter().enumerate() {
            let p = sigmoid(m);
            let y = binary_target(examples.labels[r]);
            let omega = examples.weight(r);
            let pc = f64::from(p).clamp(EPS, 1.0 - EPS);
            let nll = if y > 0.5 { -pc.ln() } else { -(1.0 - pc).ln() };
            loss += f64::from(omega) * nll;
            let d = omega * (p - y);
            Self::each_position(key_list, &examples.features.row(r), |pos, v| {
                g[pos] += d * v
            })?;
            if self.fit_intercept {
                g[n_keys - 1] += d;
            }
        }
        Ok(loss)
    }

    fn predict_with(
        &self,
        x: &Features,
        keys: &[Vec<u64>],
        rows: &[Vec<f32>],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        out.clear();
        self.margins(x, keys, rows, |_, m| out.push(sigmoid(m)))
    }
}
