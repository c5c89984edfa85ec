//! Factorization machines (Rendle, "Factorization Machines", ICDM 2010) of degree 2:
//!
//! ```text
//! ŷ(x) = w0 + Σ_i w_i x_i + Σ_{i<j} ⟨v_i, v_j⟩ x_i x_j
//!      = w0 + Σ_i w_i x_i + ½ Σ_f [(Σ_i v_if x_i)² − Σ_i v_if² x_i²]
//! ```
//!
//! The second form costs O(nnz · k). With `g = ∂loss/∂ŷ` (logistic: `σ(ŷ) − y`; squared:
//! `ŷ − y`), times the row's importance weight `s`, the gradients are
//!
//! ```text
//! ∂/∂w0 = g + λ0·w0,   ∂/∂w_i = g·x_i + λw·w_i,   ∂/∂v_if = g·x_i·(Σ_j v_jf x_j − v_if x_i) + λv·v_if
//! ```
//!
//! (L2 on the row's parameters only, as usual for sparse online learners). Each parameter takes
//! one step of an [`UpdateRule`]: `rule_w` for `w0` and `w`
//! (`x` = the feature value, 1 for `w0`), `rule_v` for `V` (`x` = 1, as the parameter server
//! passes it), `t` = rows seen. Both default to AdaGrad: it needs no tuning of a schedule and
//! is what a parameter-server table of factors runs; FTRL is one config line away for `w`.
//! The sums `Σ_j v_jf x_j` are taken before any update of the row.
//!
//! `V` starts at `N(0, σ²)` per entry, drawn by [`init_factors`] from the params seed and the
//! feature index (a ChaCha8 stream per feature), so a parameter-server shard can initialize any
//! key on its own and get the local learner's values. Dense rows skip zero columns, so a dense
//! and a sparse copy of the same data train identically. Rows are expected to hold each
//! feature index once (the featurizers sum duplicates).
//!
//! [`FmGradientModel`] is the same model with its parameters in an external store.

mod gradient;
mod params;
#[cfg(test)]
mod tests;

pub use gradient::{FmGradientModel, BIAS_KEY};
pub use params::{FmParams, FmTask, FmValidParams};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{OnlineLearner, Predictor, Task, UpdateRule};

const STEP: &str = "fm";

/// Fills `out` (the `k` factors of feature `key`) with `N(0, std²)` draws from the ChaCha8
/// stream `key` of `seed` (Box–Muller): deterministic per key, independent of order.
pub fn init_factors(seed: u64, key: u64, std: f32, out: &mut [f32]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(key);
    let mut uniform = || (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    for pair in out.chunks_mut(2) {
        let u1 = 1.0 - uniform();
        let u2 = uniform();
        let r = (-2.0 * u1.ln()).sqrt() * f64::from(std);
        let theta = 2.0 * std::f64::consts::PI * u2;
        pair[0] = (r * theta.cos()) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second = (r * theta.sin()) as f32;
        }
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

/// `ŷ` of a row by the sum-square trick. `slot(e, i)` gives the positions in `w` and in `v`
/// (in rows of `k`) of entry number `e`, feature `i`; `sums` gets `Σ_i v_if x_i`.
#[inline]
fn score(
    row: &FeatureRow<'_>,
    w0: f32,
    w: &[f32],
    v: &[f32],
    sums: &mut [f32],
    slot: impl Fn(usize, usize) -> (usize, usize),
) -> f32 {
    let k = sums.len();
    sums.fill(0.0);
    let (mut lin, mut squares, mut e) = (w0, 0.0f32, 0);
    for_each_nz(row, |i, x| {
        let (sw, sv) = slot(e, i);
        e += 1;
        lin += w[sw] * x;
        for (s, &vf) in sums.iter_mut().zip(&v[sv * k..(sv + 1) * k]) {
            let vx = vf * x;
            *s += vx;
            squares += vx * vx;
        }
    });
    lin + 0.5 * (sums.iter().map(|s| s * s).sum::<f32>() - squares)
}

/// The loss of `ŷ` for label `y` and its derivative in `ŷ`.
#[inline]
fn loss(task: FmTask, yhat: f32, y: f32) -> (f32, f32) {
    match task {
        FmTask::Binary => {
            // softplus(ŷ) − y·ŷ, stably.
            let softplus = yhat.max(0.0) + (-yhat.abs()).exp().ln_1p();
            (softplus - y * yhat, sigmoid(yhat) - y)
        }
        FmTask::Regression => (0.5 * (yhat - y).powi(2), yhat - y),
    }
}

fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn output(task: FmTask, yhat: f32) -> f32 {
    match task {
        FmTask::Binary => sigmoid(yhat),
        FmTask::Regression => yhat,
    }
}

/// Checks row `i`'s label, weight and feature values.
fn check_row(task: FmTask, ex: &Examples, i: usize) -> Result<(f32, f32)> {
    let (y, s) = (ex.labels[i], ex.weight(i));
    let bad = |column: &str, message: String| Error::InvalidValue {
        step: STEP.into(),
        column: column.into(),
        row: i,
        message,
    };
    let label_ok = match task {
        FmTask::Binary => y == 0.0 || y == 1.0,
        FmTask::Regression => y.is_finite(),
    };
    if !label_ok {
        return Err(bad("label", format!("{y} is not a valid label")));
    }
    if !(s.is_finite() && s >= 0.0) {
        return Err(bad("weight", format!("{s} must be finite and >= 0")));
    }
    let mut finite = true;
    for_each_nz(&ex.features.row(i), |_, x| finite &= x.is_finite());
    if !finite {
        return Err(bad("features", "a feature is not finite".into()));
    }
    Ok((y, s))
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

/// A factorization machine trained online (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FmState")]
pub struct FactorizationMachine {
    #[serde(serialize_with = "crate::model::params_json::serialize")]
    params: FmValidParams,
    w0: f32,
    w0_state: Vec<f32>,
    #[serde(with = "crate::model::table")]
    w: Vec<f32>,
    #[serde(with = "crate::model::table")]
    w_state: Vec<f32>,
    /// Factors, `feature · k + f`.
    #[serde(with = "crate::model::table")]
    v: Vec<f32>,
    #[serde(with = "crate::model::table")]
    v_state: Vec<f32>,
    rows: u64,
}

#[derive(Deserialize)]
struct FmState {
    #[serde(deserialize_with = "crate::model::params_json::deserialize")]
    params: FmParams,
    w0: f32,
    w0_state: Vec<f32>,
    #[serde(with = "crate::model::table")]
    w: Vec<f32>,
    #[serde(with = "crate::model::table")]
    w_state: Vec<f32>,
    #[serde(with = "crate::model::table")]
    v: Vec<f32>,
    #[serde(with = "crate::model::table")]
    v_state: Vec<f32>,
    rows: u64,
}

/// The error for a feature outside a model of `dim` features.
fn outside(dim: u64, feature: u64) -> Error {
    Error::Shape(format!(
        "{STEP}: feature {feature} is outside the model's {dim} features"
    ))
}

impl TryFrom<FmState> for FactorizationMachine {
    type Error = Error;

    fn try_from(s: FmState) -> Result<Self> {
        use crate::transform::Params;
        let mut m = FactorizationMachine::new(s.params.check()?);
        let lens = [
            s.w0_state.len(),
            s.w.len(),
            s.w_state.len(),
            s.v.len(),
            s.v_state.len(),
        ];
        if lens
            != [
                m.w0_state.len(),
                m.w.len(),
                m.w_state.len(),
                m.v.len(),
                m.v_state.len(),
            ]
        {
            return Err(Error::Shape(format!(
                "{STEP}: snapshot arrays do not match the params"
            )));
        }
        (m.w0, m.w0_state, m.w, m.w_state) = (s.w0, s.w0_state, s.w, s.w_state);
        (m.v, m.v_state, m.rows) = (s.v, s.v_state, s.rows);
        Ok(m)
    }
}

impl FactorizationMachine {
    /// A model with zero `w0`, `w`, seeded `V` and fresh rule state.
    pub fn new(params: FmValidParams) -> Self {
        let (d, k) = (params.dim as usize, params.factors);
        let (sw, sv) = (params.rule_w.state_len(), params.rule_v.state_len());
        let mut m = FactorizationMachine {
            w0: 0.0,
            w0_state: vec![0.0; sw],
            w: vec![0.0; d],
            w_state: vec![0.0; d * sw],
            v: vec![0.0; d * k],
            v_state: vec![0.0; d * k * sv],
            params,
            rows: 0,
        };
        for (i, vi) in m.v.chunks_mut(k).enumerate() {
            init_factors(params.seed, i as u64, params.init_std, vi);
        }
        if sw > 0 {
            m.w0_state
                .chunks_mut(sw)
                .for_each(|s| params.rule_w.init_state(s));
            m.w_state
                .chunks_mut(sw)
                .for_each(|s| params.rule_w.init_state(s));
        }
        if sv > 0 {
            m.v_state
                .chunks_mut(sv)
                .for_each(|s| params.rule_v.init_state(s));
        }
        m
    }

    /// Seeds a weight trained elsewhere (a parameter server's row): the bias when `feature` is
    /// `None`, else feature `feature`'s linear weight. Its rule state stays as it is (fresh on
    /// a new model, as after any warm start). Refuses a feature outside `dim` and a non-finite
    /// value.
    pub fn set_weight(&mut self, feature: Option<u64>, w: f32) -> Result<()> {
        if !w.is_finite() {
            return Err(Error::Shape(format!("{STEP}: weight {w} is not finite")));
        }
        match feature {
            None => self.w0 = w,
            Some(i) => {
                let dim = self.params.dim;
                *self.w.get_mut(i as usize).ok_or_else(|| outside(dim, i))? = w
            }
        }
        Ok(())
    }

    /// Seeds feature `feature`'s `k` factors (see [`set_weight`](Self::set_weight)).
    pub fn set_factors(&mut self, feature: u64, v: &[f32]) -> Result<()> {
        let k = self.params.factors;
        if v.len() != k || v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Shape(format!(
                "{STEP}: feature {feature}: expected {k} finite factors, got {v:?}"
            )));
        }
        let at = (feature as usize).checked_mul(k);
        let slot = at
            .and_then(|a| self.v.get_mut(a..a + k))
            .ok_or_else(|| outside(self.params.dim, feature))?;
        slot.copy_from_slice(v);
        Ok(())
    }

    /// The global bias `w0`.
    pub fn bias(&self) -> f32 {
        self.w0
    }

    /// The linear weight of feature `i`.
    pub fn weight(&self, i: usize) -> f32 {
        self.w[i]
    }

    /// The `k` factors of feature `i`.
    pub fn factors(&self, i: usize) -> &[f32] {
        let k = self.params.factors;
        &self.v[i * k..(i + 1) * k]
    }

    /// `ŷ` (before the link) of row `i` of `x`.
    fn raw(&self, row: &FeatureRow<'_>, sums: &mut [f32]) -> f32 {
        score(row, self.w0, &self.w, &self.v, sums, |_, i| (i, i))
    }

    fn learn_inner(&mut self, ex: &Examples, mut out: Option<&mut Vec<f32>>) -> Result<()> {
        check_dim(&ex.features, self.params.dim)?;
        let p = self.params;
        let (k, sw, sv) = (p.factors, p.rule_w.state_len(), p.rule_v.state_len());
        let mut sums = vec![0.0f32; k];
        for i in 0..ex.len() {
            let (y, s) = check_row(p.task, ex, i)?;
            let row = ex.features.row(i);
            let yhat = self.raw(&row, &mut sums);
            if let Some(out) = out.as_deref_mut() {
                out.push(output(p.task, yhat));
            }
            self.rows += 1;
            if s == 0.0 {
                continue;
            }
            let (t, g) = (self.rows, s * loss(p.task, yhat, y).1);
            let g0 = g + p.l2_w0 * self.w0;
            p.rule_w
                .update(&mut self.w0, &mut self.w0_state, g0, 1.0, t);
            let (w, w_state, v, v_state) = (
                &mut self.w,
                &mut self.w_state,
                &mut self.v,
                &mut self.v_state,
            );
            for_each_nz(&row, |j, x| {
                let gw = g * x + p.l2_w * w[j];
                p.rule_w
                    .update(&mut w[j], &mut w_state[j * sw..(j + 1) * sw], gw, x, t);
                for (f, &sum) in sums.iter().enumerate() {
                    let at = j * k + f;
                    let gv = g * x * (sum - v[at] * x) + p.l2_v * v[at];
                    p.rule_v
                        .update(&mut v[at], &mut v_state[at * sv..(at + 1) * sv], gv, 1.0, t);
                }
            });
        }
        Ok(())
    }
}

impl Predictor for FactorizationMachine {
    fn task(&self) -> Task {
        match self.params.task {
            FmTask::Binary => Task::BinaryClassification,
            FmTask::Regression => Task::Regression,
        }
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        check_dim(x, self.params.dim)?;
        out.clear();
        let mut sums = vec![0.0f32; self.params.factors];
        for i in 0..x.rows() {
            out.push(output(self.params.task, self.raw(&x.row(i), &mut sums)));
        }
        Ok(())
    }
}

impl OnlineLearner for FactorizationMachine {
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
