//! Multinomial naive Bayes over non-negative (hashed) counts, with Lidstone smoothing.

use serde::{Deserialize, Serialize};

use super::{
    check_dim, for_each_nz, invalid, label_and_weight, log_prior, push_prediction, push_scores,
    task,
};
use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{OnlineLearner, Predictor, Task};
use crate::transform::Params;

const STEP: &str = "multinomial-nb";

/// Parameters of [`MultinomialNb`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultinomialNbParams {
    /// Size of the (hashed) vocabulary: feature indices are below it. Required, 1..=2^32.
    pub dim: u64,
    /// Number of classes, ≥ 2. Default 2.
    #[serde(default = "two")]
    pub classes: usize,
    /// Additive (Laplace for 1, Lidstone below 1) smoothing, finite and > 0. Default 1.
    #[serde(default = "one")]
    pub alpha: f64,
}

fn two() -> usize {
    2
}

fn one() -> f64 {
    1.0
}

impl MultinomialNbParams {
    /// Parameters with the defaults for a vocabulary of `dim` and `classes` classes.
    pub fn new(dim: u64, classes: usize) -> Self {
        MultinomialNbParams {
            dim,
            classes,
            alpha: 1.0,
        }
    }
}

/// Checked [`MultinomialNbParams`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct MultinomialNbValidParams(MultinomialNbParams);

impl std::ops::Deref for MultinomialNbValidParams {
    type Target = MultinomialNbParams;
    fn deref(&self) -> &MultinomialNbParams {
        &self.0
    }
}

impl Params for MultinomialNbParams {
    type Valid = MultinomialNbValidParams;

    fn check(&self) -> Result<MultinomialNbValidParams> {
        if self.dim == 0 || self.dim > u64::from(u32::MAX) + 1 {
            return Err(Error::param("multinomial-nb.dim", "must be in 1..=2^32"));
        }
        if self.classes < 2 {
            return Err(Error::param("multinomial-nb.classes", "must be at least 2"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::param(
                "multinomial-nb.alpha",
                "must be finite and > 0",
            ));
        }
        Ok(MultinomialNbValidParams(self.clone()))
    }
}

/// Multinomial naive Bayes (see the [module docs](super)). Per class `c` it keeps the weight
/// `W_c`, the count `N_cj` of each feature and their total `N_c`; with `d = dim`,
/// `θ_cj = (N_cj + α) / (N_c + α·d)` and the joint log-likelihood is
/// `ln(W_c / W) + Σ_j x_j ln θ_cj` (scikit-learn's `MultinomialNB` with `fit_prior`). Rows
/// cost O(nnz · classes). Learning rejects negative or non-finite feature values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MultinomialNbState")]
pub struct MultinomialNb {
    params: MultinomialNbValidParams,
    /// Weight per class.
    class_weight: Vec<f64>,
    /// Total count per class.
    class_total: Vec<f64>,
    /// Count of each feature per class, `feature * classes + class`.
    counts: Vec<f64>,
    rows: u64,
}

#[derive(Deserialize)]
struct MultinomialNbState {
    params: MultinomialNbParams,
    class_weight: Vec<f64>,
    class_total: Vec<f64>,
    counts: Vec<f64>,
    rows: u64,
}

impl TryFrom<MultinomialNbState> for MultinomialNb {
    type Error = Error;

    fn try_from(s: MultinomialNbState) -> Result<Self> {
        let mut m = MultinomialNb::new(s.params.check()?);
        if s.class_weight.len() != m.class_weight.len()
            || s.class_total.len() != m.class_total.len()
            || s.counts.len() != m.counts.len()
        {
            return Err(Error::Shape(format!(
                "{STEP}: snapshot arrays do not match the params"
            )));
        }
        m.class_weight = s.class_weight;
        m.class_total = s.class_total;
        m.counts = s.counts;
        m.rows = s.rows;
        Ok(m)
    }
}

impl MultinomialNb {
    /// An empty model.
    pub fn new(params: MultinomialNbValidParams) -> Self {
        let k = params.classes;
        MultinomialNb {
            counts: vec![0.0; params.dim as usize * k],
            class_weight: vec![0.0; k],
            class_total: vec![0.0; k],
            params,
            rows: 0,
        }
    }

    /// The smoothed `ln θ_cj` of feature `j` in class `c`.
    pub fn feature_log_prob(&self, c: usize, j: usize) -> f64 {
        let (a, d) = (self.params.alpha, self.params.dim as f64);
        (self.counts[j * self.params.classes + c] + a).ln() - (self.class_total[c] + a * d).ln()
    }

    fn posterior(&self, row: &FeatureRow<'_>, post: &mut [f64]) {
        let k = self.params.classes;
        let (a, d) = (self.params.alpha, self.params.dim as f64);
        let total: f64 = self.class_weight.iter().sum();
        post.fill(0.0);
        let mut x_sum = 0.0;
        for_each_nz(row, |j, v| {
            let v = f64::from(v);
            x_sum += v;
            for (c, p) in post.iter_mut().enumerate() {
                *p += v * (self.counts[j * k + c] + a).ln();
            }
        });
        for (c, p) in post.iter_mut().enumerate() {
            let prior = log_prior(self.class_weight[c], total, k);
            *p = prior + *p - x_sum * (self.class_total[c] + a * d).ln();
        }
        super::to_posteriors(post);
    }

    fn each_row(
        &self,
        x: &Features,
        out: &mut Vec<f32>,
        push: fn(&[f64], &mut Vec<f32>),
    ) -> Result<()> {
        check_dim(STEP, x, self.params.dim)?;
        out.clear();
        let mut post = vec![0.0; self.params.classes];
        for i in 0..x.rows() {
            self.posterior(&x.row(i), &mut post);
            push(&post, out);
        }
        Ok(())
    }

    fn learn_inner(&mut self, ex: &Examples, mut out: Option<&mut Vec<f32>>) -> Result<()> {
        check_dim(STEP, &ex.features, self.params.dim)?;
        let k = self.params.classes;
        let mut post = vec![0.0; k];
        for i in 0..ex.len() {
            let (c, w) = label_and_weight(STEP, ex, i, k)?;
            let row = ex.features.row(i);
            let mut bad = None;
            for_each_nz(&row, |j, v| {
                if !(v.is_finite() && v >= 0.0) && bad.is_none() {
                    bad = Some((j, v));
                }
            });
            if let Some((j, v)) = bad {
                let msg = format!("feature {j} = {v}: counts must be finite and non-negative");
                return Err(invalid(STEP, "features", i, msg));
            }
            if let Some(out) = out.as_deref_mut() {
                self.posterior(&row, &mut post);
                push_prediction(&post, out);
            }
            self.rows += 1;
            let mut added = 0.0;
            for_each_nz(&row, |j, v| {
                let v = w * f64::from(v);
                self.counts[j * k + c] += v;
                added += v;
            });
            self.class_total[c] += added;
            self.class_weight[c] += w;
        }
        Ok(())
    }
}

impl Predictor for MultinomialNb {
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

impl OnlineLearner for MultinomialNb {
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
