//! Gaussian naive Bayes with per-class running (weighted Welford) means and variances.

use serde::{Deserialize, Serialize};

use super::{check_dim, label_and_weight, log_prior, push_prediction, push_scores, task};
use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{OnlineLearner, Predictor, Task};
use crate::transform::Params;

const STEP: &str = "gaussian-nb";

/// Parameters of [`GaussianNb`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianNbParams {
    /// Number of feature columns (dense width, or the sparse dimension; absent sparse entries
    /// are zeros). Required, ≥ 1.
    pub dim: u64,
    /// Number of classes, ≥ 2. Default 2.
    #[serde(default = "two")]
    pub classes: usize,
    /// Variance smoothing, > 0: every variance gets `ε = var_smoothing · max_j Var(x_j)` added
    /// (the largest per-feature variance over all rows seen, as scikit-learn's `fit` computes
    /// it; when that is 0, `ε = var_smoothing`). Default `1e-9`.
    #[serde(default = "default_smoothing")]
    pub var_smoothing: f64,
}

fn two() -> usize {
    2
}

fn default_smoothing() -> f64 {
    1e-9
}

impl GaussianNbParams {
    /// Parameters with the defaults for `dim` features and `classes` classes.
    pub fn new(dim: u64, classes: usize) -> Self {
        GaussianNbParams {
            dim,
            classes,
            var_smoothing: default_smoothing(),
        }
    }
}

/// Checked [`GaussianNbParams`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct GaussianNbValidParams(GaussianNbParams);

impl std::ops::Deref for GaussianNbValidParams {
    type Target = GaussianNbParams;
    fn deref(&self) -> &GaussianNbParams {
        &self.0
    }
}

impl Params for GaussianNbParams {
    type Valid = GaussianNbValidParams;

    fn check(&self) -> Result<GaussianNbValidParams> {
        if self.dim == 0 || self.dim > u64::from(u32::MAX) + 1 {
            return Err(Error::param("gaussian-nb.dim", "must be in 1..=2^32"));
        }
        if self.classes < 2 {
            return Err(Error::param("gaussian-nb.classes", "must be at least 2"));
        }
        if !(self.var_smoothing.is_finite() && self.var_smoothing > 0.0) {
            return Err(Error::param(
                "gaussian-nb.var_smoothing",
                "must be finite and > 0",
            ));
        }
        Ok(GaussianNbValidParams(self.clone()))
    }
}

/// Gaussian naive Bayes (see the [module docs](super)). Per class `c` it keeps the weight
/// `W_c` and, per feature `j`, the running mean `μ_cj` and population variance `σ²_cj`; the
/// joint log-likelihood is
/// `ln(W_c / W) − ½ Σ_j [ln(2π(σ²_cj + ε)) + (x_j − μ_cj)² / (σ²_cj + ε)]`.
/// Every row costs O(dim · classes), sparse or dense.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GaussianNbState")]
pub struct GaussianNb {
    params: GaussianNbValidParams,
    /// Weight per class.
    class_weight: Vec<f64>,
    /// Running mean, `class * dim + feature`.
    mean: Vec<f64>,
    /// Running sum of squared deviations, `class * dim + feature`.
    m2: Vec<f64>,
    /// Over all rows, per feature (for ε): mean and sum of squared deviations.
    all_mean: Vec<f64>,
    all_m2: Vec<f64>,
    rows: u64,
}

#[derive(Deserialize)]
struct GaussianNbState {
    params: GaussianNbParams,
    class_weight: Vec<f64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
    all_mean: Vec<f64>,
    all_m2: Vec<f64>,
    rows: u64,
}

impl TryFrom<GaussianNbState> for GaussianNb {
    type Error = Error;

    fn try_from(s: GaussianNbState) -> Result<Self> {
        let mut m = GaussianNb::new(s.params.check()?);
        let shapes_ok = s.class_weight.len() == m.class_weight.len()
            && s.mean.len() == m.mean.len()
            && s.m2.len() == m.m2.len()
            && s.all_mean.len() == m.all_mean.len()
            && s.all_m2.len() == m.all_m2.len();
        if !shapes_ok {
            return Err(Error::Shape(format!(
                "{STEP}: snapshot arrays do not match the params"
            )));
        }
        m.class_weight = s.class_weight;
        m.mean = s.mean;
        m.m2 = s.m2;
        m.all_mean = s.all_mean;
        m.all_m2 = s.all_m2;
        m.rows = s.rows;
        Ok(m)
    }
}

impl GaussianNb {
    /// An empty model.
    pub fn new(params: GaussianNbValidParams) -> Self {
        let (k, d) = (params.classes, params.dim as usize);
        GaussianNb {
            params,
            class_weight: vec![0.0; k],
            mean: vec![0.0; k * d],
            m2: vec![0.0; k * d],
            all_mean: vec![0.0; d],
            all_m2: vec![0.0; d],
            rows: 0,
        }
    }

    /// The running mean of feature `j` in class `c`.
    pub fn mean(&self, c: usize, j: usize) -> f64 {
        self.mean[c * self.params.dim as usize + j]
    }

    /// The population variance of feature `j` in class `c` (without smoothing; 0 if unseen).
    pub fn variance(&self, c: usize, j: usize) -> f64 {
        let w = self.class_weight[c];
        if w > 0.0 {
            self.m2[c * self.params.dim as usize + j] / w
        } else {
            0.0
        }
    }

    /// The smoothing `ε` added to every variance now.
    pub fn epsilon(&self) -> f64 {
        let total: f64 = self.class_weight.iter().sum();
        let max_var = if total > 0.0 {
            self.all_m2.iter().fold(0.0f64, |a, &b| a.max(b / total))
        } else {
            0.0
        };
        self.params.var_smoothing * if max_var > 0.0 { max_var } else { 1.0 }
    }

    /// Writes row `i` as dense values into `buf` (sparse entries are summed onto zeros).
    fn densify(row: &FeatureRow<'_>, buf: &mut [f64]) {
        match row {
            FeatureRow::Dense(x) => {
                for (b, &v) in buf.iter_mut().zip(x.iter()) {
                    *b = f64::from(v);
                }
            }
            FeatureRow::Sparse { indices, values } => {
                buf.fill(0.0);
                for (&j, &v) in indices.iter().zip(values.iter()) {
                    buf[j as usize] += f64::from(v);
                }
            }
        }
    }

    /// Posteriors of the dense row `x` into `post`.
    fn posterior(&self, x: &[f64], eps: f64, post: &mut [f64]) {
        let d = x.len();
        let total: f64 = self.class_weight.iter().sum();
        let ln_2pi = (2.0 * std::f64::consts::PI).ln();
        for (c, p) in post.iter_mut().enumerate() {
            let w = self.class_weight[c];
            let mut jll = log_prior(w, total, self.params.classes);
            if w > 0.0 {
                let (mean, m2) = (&self.mean[c * d..(c + 1) * d], &self.m2[c * d..(c + 1) * d]);
                let mut s = 0.0;
                for j in 0..d {
                    let var = m2[j] / w + eps;
                    let dev = x[j] - mean[j];
                    s += ln_2pi + var.ln() + dev * dev / var;
                }
                jll -= 0.5 * s;
            }
            *p = jll;
        }
        super::to_posteriors(post);
    }

    fn learn_row(&mut self, x: &[f64], c: usize, w: f64) {
        self.rows += 1;
        if w == 0.0 {
            return;
        }
        let d = x.len();
        let total_before: f64 = self.class_weight.iter().sum();
        welford(&mut self.all_mean, &mut self.all_m2, total_before, x, w);
        let n = self.class_weight[c];
        welford(
            &mut self.mean[c * d..(c + 1) * d],
            &mut self.m2[c * d..(c + 1) * d],
            n,
            x,
            w,
        );
        self.class_weight[c] = n + w;
    }

    fn each_row(
        &self,
        x: &Features,
        out: &mut Vec<f32>,
        push: fn(&[f64], &mut Vec<f32>),
    ) -> Result<()> {
        check_dim(STEP, x, self.params.dim)?;
        out.clear();
        let mut buf = vec![0.0; self.params.dim as usize];
        let mut post = vec![0.0; self.params.classes];
        let eps = self.epsilon();
        for i in 0..x.rows() {
            Self::densify(&x.row(i), &mut buf);
            self.posterior(&buf, eps, &mut post);
            push(&post, out);
        }
        Ok(())
    }

    fn learn_inner(&mut self, ex: &Examples, mut out: Option<&mut Vec<f32>>) -> Result<()> {
        check_dim(STEP, &ex.features, self.params.dim)?;
        let mut buf = vec![0.0; self.params.dim as usize];
        let mut post = vec![0.0; self.params.classes];
        for i in 0..ex.len() {
            let (c, w) = label_and_weight(STEP, ex, i, self.params.classes)?;
            Self::densify(&ex.features.row(i), &mut buf);
            if let Some(j) = buf.iter().position(|v| !v.is_finite()) {
                return Err(super::invalid(
                    STEP,
                    "features",
                    i,
                    format!("feature {j} is not finite"),
                ));
            }
            if let Some(out) = out.as_deref_mut() {
                self.posterior(&buf, self.epsilon(), &mut post);
                push_prediction(&post, out);
            }
            self.learn_row(&buf, c, w);
        }
        Ok(())
    }
}

/// Folds `x` with weight `w` into running means and squared-deviation sums that so far hold
/// weight `n` (West's weighted form of Welford's update).
fn welford(mean: &mut [f64], m2: &mut [f64], n: f64, x: &[f64], w: f64) {
    let total = n + w;
    for ((m, s), &v) in mean.iter_mut().zip(m2.iter_mut()).zip(x) {
        let delta = v - *m;
        *m += delta * w / total;
        *s += w * delta * (v - *m);
    }
}

impl Predictor for GaussianNb {
    fn task(&self) -> Task {
        task(self.params.classes)
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        self.each_row(x, out, push_prediction)
    }

    fn predict_scores(&self, x: &Features, out: &mut Vec<f32>) -> Result<usize> {
        self.each_row(x, out, push_scores)?;
        Ok(if self.params.classes == 2 {
            1
        } else {
            self.params.classes
        })
    }
}

impl OnlineLearner for GaussianNb {
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
