//! Softmax (multinomial logistic) regression for `k` classes, trained online by any
//! [`Rule`].
//!
//! Class probabilities are `p = softmax(z)`, `z_c = b_c + Σ_i x_i · W[i·k + c]`, computed
//! stably (the largest logit is subtracted before `exp`). The weights are one flat array,
//! `k` per feature (`index · k + class`), so a sparse row touches `nnz · k` contiguous runs.
//! For a row with label `y` and importance weight `s`, the loss `−s · ln p_y` gives
//!
//! ```text
//! ∂/∂W[i·k + c] = s · (p_c − [c = y]) · x_i + λ · W[i·k + c]
//! ∂/∂b_c        = s · (p_c − [c = y])
//! ```
//!
//! and the rule takes one step per touched parameter (`x` = the feature value, 1 for the
//! intercepts; `t` = rows seen). The L2 term `λ` applies to the weights of the row's features
//! only (lazy regularization, the usual choice for sparse online learners; intercepts are not
//! regularized). Dense rows skip zero columns, so a dense and a sparse copy of the same data
//! train identically. Labels are class indices `0..k` as `f32`; `predict` gives the most
//! likely class, `predict_scores` the `k` probabilities. [`Task::Multiclass`].

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{OnlineLearner, Predictor, Task, UpdateRule};
use crate::optim::{AdaGradParams, Rule, RuleParams};
use crate::transform::Params;

const STEP: &str = "softmax";

/// Parameters of [`Softmax`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxParams {
    /// Feature dimension (dense width or hashed space). Required, 1..=2^32.
    pub dim: u64,
    /// Number of classes `k`, ≥ 2. Required.
    pub classes: usize,
    /// The update rule. Default AdaGrad (`η = 0.1`, `ε = 1e-8`).
    #[serde(default = "adagrad")]
    pub rule: RuleParams,
    /// L2 strength `λ`, finite and ≥ 0. Default 0.
    #[serde(default)]
    pub l2: f32,
    /// Learn one intercept per class. Default `true`.
    #[serde(default = "yes")]
    pub fit_intercept: bool,
}

fn adagrad() -> RuleParams {
    RuleParams::AdaGrad(AdaGradParams::default())
}

fn yes() -> bool {
    true
}

impl SoftmaxParams {
    /// Parameters with the defaults for `dim` features and `classes` classes.
    pub fn new(dim: u64, classes: usize) -> Self {
        SoftmaxParams {
            dim,
            classes,
            rule: adagrad(),
            l2: 0.0,
            fit_intercept: true,
        }
    }
}

/// Checked [`SoftmaxParams`], with the rule built.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SoftmaxValidParams {
    params: SoftmaxParams,
    #[serde(skip)]
    rule: Rule,
}

impl std::ops::Deref for SoftmaxValidParams {
    type Target = SoftmaxParams;
    fn deref(&self) -> &SoftmaxParams {
        &self.params
    }
}

impl Params for SoftmaxParams {
    type Valid = SoftmaxValidParams;

    fn check(&self) -> Result<SoftmaxValidParams> {
        if self.dim == 0 || self.dim > u64::from(u32::MAX) + 1 {
            return Err(Error::param("softmax.dim", "must be in 1..=2^32"));
        }
        if self.classes < 2 {
            return Err(Error::param("softmax.classes", "must be at least 2"));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(Error::param("softmax.l2", "must be finite and >= 0"));
        }
        let rule = self.rule.check().map_err(|e| match e {
            Error::InvalidParam { param, message } => {
                Error::param(format!("softmax.rule.{param}"), message)
            }
            other => other,
        })?;
        Ok(SoftmaxValidParams {
            params: *self,
            rule,
        })
    }
}

/// Softmax regression (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SoftmaxState")]
pub struct Softmax {
    #[serde(serialize_with = "crate::model::params_json::serialize")]
    params: SoftmaxValidParams,
    /// Weights, `index · k + class`.
    #[serde(with = "crate::model::table")]
    w: Vec<f32>,
    /// Rule state, `state_len` floats per weight.
    #[serde(with = "crate::model::table")]
    w_state: Vec<f32>,
    /// Intercepts, one per class.
    b: Vec<f32>,
    b_state: Vec<f32>,
    rows: u64,
}

#[derive(Deserialize)]
struct SoftmaxState {
    #[serde(deserialize_with = "crate::model::params_json::deserialize")]
    params: SoftmaxParams,
    #[serde(with = "crate::model::table")]
    w: Vec<f32>,
    #[serde(with = "crate::model::table")]
    w_state: Vec<f32>,
    b: Vec<f32>,
    b_state: Vec<f32>,
    rows: u64,
}

impl TryFrom<SoftmaxState> for Softmax {
    type Error = Error;

    fn try_from(s: SoftmaxState) -> Result<Self> {
        let mut m = Softmax::new(s.params.check()?);
        if [s.w.len(), s.w_state.len(), s.b.len(), s.b_state.len()]
            != [m.w.len(), m.w_state.len(), m.b.len(), m.b_state.len()]
        {
            return Err(Error::Shape(format!(
                "{STEP}: snapshot arrays do not match the params"
            )));
        }
        (m.w, m.w_state, m.b, m.b_state, m.rows) = (s.w, s.w_state, s.b, s.b_state, s.rows);
        Ok(m)
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

impl Softmax {
    /// A model with zero weights and fresh rule state.
    pub fn new(params: SoftmaxValidParams) -> Self {
        let (k, sl) = (params.classes, params.rule.state_len());
        let n = params.dim as usize * k;
        let mut m = Softmax {
            w: vec![0.0; n],
            w_state: vec![0.0; n * sl],
            b: vec![0.0; k],
            b_state: vec![0.0; k * sl],
            params,
            rows: 0,
        };
        if sl > 0 {
            m.w_state
                .chunks_mut(sl)
                .for_each(|s| params.rule.init_state(s));
            m.b_state
                .chunks_mut(sl)
                .for_each(|s| params.rule.init_state(s));
        }
        m
    }

    /// The weight of `feature` for `class`.
    pub fn weight(&self, feature: usize, class: usize) -> f32 {
        self.w[feature * self.params.classes + class]
    }

    /// Class probabilities of a row into `p` (`k` values).
    fn probabilities(&self, row: &FeatureRow<'_>, p: &mut [f32]) {
        let k = self.params.classes;
        p.copy_from_slice(&self.b);
        for_each_nz(row, |i, x| {
            for (pc, &w) in p.iter_mut().zip(&self.w[i * k..(i + 1) * k]) {
                *pc += w * x;
            }
        });
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for pc in p.iter_mut() {
            *pc = (*pc - max).exp();
            sum += *pc;
        }
        p.iter_mut().for_each(|pc| *pc /= sum);
    }

    fn learn_inner(&mut self, ex: &Examples, mut out: Option<&mut Vec<f32>>) -> Result<()> {
        check_dim(&ex.features, self.params.dim)?;
        let (k, sl) = (self.params.classes, self.params.rule.state_len());
        let rule = self.params.rule;
        let l2 = self.params.l2;
        let mut p = vec![0.0f32; k];
        for i in 0..ex.len() {
            let (label, s) = (ex.labels[i], ex.weight(i));
            if !(label >= 0.0 && label.fract() == 0.0 && (label as usize) < k) {
                return Err(invalid(
                    "label",
                    i,
                    format!("{label} is not a class index below {k}"),
                ));
            }
            if !(s.is_finite() && s >= 0.0) {
                return Err(invalid("weight", i, format!("{s} must be finite and >= 0")));
            }
            let row = ex.features.row(i);
            let mut finite = true;
            for_each_nz(&row, |_, x| finite &= x.is_finite());
            if !finite {
                return Err(invalid("features", i, "a feature is not finite".into()));
            }
            self.probabilities(&row, &mut p);
            if let Some(out) = out.as_deref_mut() {
                out.push(argmax(&p) as f32);
            }
            self.rows += 1;
            if s == 0.0 {
                continue;
            }
            let t = self.rows;
            let y = label as usize;
            for (c, pc) in p.iter_mut().enumerate() {
                *pc = s * (*pc - if c == y { 1.0 } else { 0.0 });
            }
            let (w, w_state) = (&mut self.w, &mut self.w_state);
            for_each_nz(&row, |j, x| {
                for (c, &g) in p.iter().enumerate() {
                    let at = j * k + c;
                    let grad = g * x + l2 * w[at];
                    rule.update(&mut w[at], &mut w_state[at * sl..(at + 1) * sl], grad, x, t);
                }
            });
            if self.params.fit_intercept {
                for (c, &g) in p.iter().enumerate() {
                    rule.update(
                        &mut self.b[c],
                        &mut self.b_state[c * sl..(c + 1) * sl],
                        g,
                        1.0,
                        t,
                    );
                }
            }
        }
        Ok(())
    }
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (c, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = c;
        }
    }
    best
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

impl Predictor for Softmax {
    fn task(&self) -> Task {
        Task::Multiclass {
            classes: self.params.classes,
        }
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        check_dim(x, self.params.dim)?;
        out.clear();
        let mut p = vec![0.0f32; self.params.classes];
        for i in 0..x.rows() {
            self.probabilities(&x.row(i), &mut p);
            out.push(argmax(&p) as f32);
        }
        Ok(())
    }

    fn predict_scores(&self, x: &Features, out: &mut Vec<f32>) -> Result<usize> {
        check_dim(x, self.params.dim)?;
        out.clear();
        let k = self.params.classes;
        out.resize(x.rows() * k, 0.0);
        for (i, p) in out.chunks_mut(k).enumerate() {
            self.probabilities(&x.row(i), p);
        }
        Ok(k)
    }
}

impl OnlineLearner for Softmax {
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
