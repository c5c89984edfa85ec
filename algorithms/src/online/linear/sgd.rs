//! [`SgdLogisticRegression`] and [`SgdLinearRegression`]: linear models trained with any
//! [`Rule`] (default [`NormalizedAdaptive`](crate::optim::NormalizedAdaptive)).
//!
//! Layout: one flat `f32` array with a stride of `1 + state_len` per feature (`[w, state…]`, so
//! a feature's weight and state share a cache line), `dim + 1` slots, the last one the
//! intercept. The rule is matched once per batch and the row loop is compiled for the concrete
//! rule and loss.

use serde::{Deserialize, Serialize};

use super::{binary_target, check_indices, for_each_entry, resolve_dim, sigmoid};
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{OnlineLearner, Predictor, Task, UpdateRule};
use crate::optim::{Rule, RuleParams};
use crate::transform::Params;

/// Parameters of the SGD linear learners.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SgdLinearParams {
    /// The update rule. Default: `normalized-adaptive` with `eta` 0.1.
    pub rule: RuleParams,
    /// The model has `2^bits` weights (1..=31). Default 22. Ignored when `dim` is set.
    pub bits: u32,
    /// An explicit number of weights (1..=2^32). Default: none (`2^bits`).
    pub dim: Option<u64>,
    /// Learn an intercept (a constant feature 1 under the same rule). Default true.
    pub fit_intercept: bool,
}

impl Default for SgdLinearParams {
    fn default() -> Self {
        SgdLinearParams {
            rule: RuleParams::default(),
            bits: 22,
            dim: None,
            fit_intercept: true,
        }
    }
}

impl SgdLinearParams {
    fn core(&self, name: &str) -> Result<LinearCore> {
        let rule = self.rule.check()?;
        let dim = resolve_dim(name, self.bits, self.dim)?;
        let stride = 1 + rule.state_len();
        let mut table = vec![0.0; (dim as usize + 1) * stride];
        for slot in table.chunks_exact_mut(stride) {
            rule.init_state(&mut slot[1..]);
        }
        Ok(LinearCore {
            rule,
            dim,
            fit_intercept: self.fit_intercept,
            stride,
            table,
            rows_seen: 0,
        })
    }

    /// Checks the params and builds a fresh logistic regression.
    pub fn build_logistic(&self) -> Result<SgdLogisticRegression> {
        Ok(SgdLogisticRegression {
            core: self.core(Logistic::NAME)?,
        })
    }

    /// Checks the params and builds a fresh linear (least-squares) regression.
    pub fn build_regression(&self) -> Result<SgdLinearRegression> {
        Ok(SgdLinearRegression {
            core: self.core(Squared::NAME)?,
        })
    }
}

/// A loss on the margin.
trait Loss {
    const NAME: &'static str;
    /// The prediction for a margin.
    fn predict(margin: f32) -> f32;
    /// `∂loss/∂margin` at that prediction.
    fn derivative(prediction: f32, label: f32) -> f32;
}

/// Log loss on `σ(margin)`.
struct Logistic;
impl Loss for Logistic {
    const NAME: &'static str = "sgd-logistic-regression";
    #[inline(always)]
    fn predict(margin: f32) -> f32 {
        sigmoid(margin)
    }
    #[inline(always)]
    fn derivative(p: f32, label: f32) -> f32 {
        p - binary_target(label)
    }
}

/// `½ (margin − y)²`.
struct Squared;
impl Loss for Squared {
    const NAME: &'static str = "sgd-linear-regression";
    #[inline(always)]
    fn predict(margin: f32) -> f32 {
        margin
    }
    #[inline(always)]
    fn derivative(y_hat: f32, label: f32) -> f32 {
        y_hat - label
    }
}

/// Weights, state and the rule, shared by both learners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CoreSnapshot")]
struct LinearCore {
    rule: Rule,
    dim: u64,
    fit_intercept: bool,
    #[serde(skip_serializing)]
    stride: usize,
    #[serde(with = "crate::model::table")]
    table: Vec<f32>,
    rows_seen: u64,
}

#[derive(Deserialize)]
struct CoreSnapshot {
    rule: Rule,
    dim: u64,
    fit_intercept: bool,
    #[serde(with = "crate::model::table")]
    table: Vec<f32>,
    rows_seen: u64,
}

impl TryFrom<CoreSnapshot> for LinearCore {
    type Error = Error;
    fn try_from(s: CoreSnapshot) -> Result<Self> {
        let stride = 1 + s.rule.state_len();
        if s.table.len() as u64 != (s.dim + 1) * stride as u64 {
            return Err(Error::Shape(format!(
                "sgd linear snapshot: {} floats for dim {} and stride {stride}",
                s.table.len(),
                s.dim
            )));
        }
        Ok(LinearCore {
            rule: s.rule,
            dim: s.dim,
            fit_intercept: s.fit_intercept,
            stride,
            table: s.table,
            rows_seen: s.rows_seen,
        })
    }
}

impl LinearCore {
    #[inline(always)]
    fn margin(&self, x: &Features, r: usize) -> f32 {
        let (table, stride) = (&self.table[..], self.stride);
        let mut m = if self.fit_intercept {
            table[self.dim as usize * stride]
        } else {
            0.0
        };
        for_each_entry(&x.row(r), |i, v| m += table[i * stride] * v);
        m
    }

    fn predict<L: Loss>(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        check_indices(L::NAME, x, self.dim)?;
        out.extend((0..x.rows()).map(|r| L::predict(self.margin(x, r))));
        Ok(())
    }

    fn run<L: Loss, const PREDICT: bool>(
        &mut self,
        ex: &Examples,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_indices(L::NAME, &ex.features, self.dim)?;
        match self.rule {
            Rule::Sgd(r) => self.run_with::<L, _, PREDICT>(&r, ex, out),
            Rule::AdaGrad(r) => self.run_with::<L, _, PREDICT>(&r, ex, out),
            Rule::NormalizedAdaptive(r) => self.run_with::<L, _, PREDICT>(&r, ex, out),
            Rule::Adam(r) => self.run_with::<L, _, PREDICT>(&r, ex, out),
            Rule::Ftrl(r) => self.run_with::<L, _, PREDICT>(&r, ex, out),
        }
        self.rows_seen += ex.len() as u64;
        Ok(())
    }

    /// The fused pass for a concrete rule: margin once per row, prediction, then one rule step
    /// per nonzero entry and the intercept.
    fn run_with<L: Loss, R: UpdateRule, const PREDICT: bool>(
        &mut self,
        rule: &R,
        ex: &Examples,
        out: &mut Vec<f32>,
    ) {
        let stride = self.stride;
        let bias = self.dim as usize * stride;
        if PREDICT {
            out.reserve(ex.len());
        }
        for r in 0..ex.len() {
            let pred = L::predict(self.margin(&ex.features, r));
            if PREDICT {
                out.push(pred);
            }
            let d = ex.weight(r) * L::derivative(pred, ex.labels[r]);
            let t = self.rows_seen + r as u64 + 1;
            let table = &mut self.table[..];
            for_each_entry(&ex.features.row(r), |i, v| {
                let (w, state) = table[i * stride..(i + 1) * stride].split_at_mut(1);
                rule.update(&mut w[0], state, d * v, v, t);
            });
            if self.fit_intercept {
                let (w, state) = table[bias..bias + stride].split_at_mut(1);
                rule.update(&mut w[0], state, d, 1.0, t);
            }
        }
    }

    fn warm_start(&mut self, name: &str, weights: &[f32], intercept: f32) -> Result<()> {
        if weights.len() as u64 > self.dim {
            return Err(Error::Shape(format!(
                "{name}: warm start with {} weights, but the model's dim is {}",
                weights.len(),
                self.dim
            )));
        }
        if let Some(w) = weights.iter().chain([&intercept]).find(|w| !w.is_finite()) {
            return Err(Error::param(
                "warm-start.weights",
                format!("{w} is not finite"),
            ));
        }
        let (stride, rule) = (self.stride, self.rule);
        let set = |slot: &mut [f32], w: f32| {
            slot[0] = w;
            rule.init_state(&mut slot[1..]);
        };
        for (slot, &w) in self.table.chunks_exact_mut(stride).zip(weights) {
            set(slot, w);
        }
        if self.fit_intercept {
            let b = self.dim as usize * stride;
            set(&mut self.table[b..b + stride], intercept);
        }
        Ok(())
    }
}

macro_rules! sgd_learner {
    ($name:ident, $loss:ty, $task:expr, $what:literal) => {
        #[doc = concat!("SGD ", $what, "; build it with [`SgdLinearParams`].")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name {
            core: LinearCore,
        }

        impl $name {
            /// The number of weights.
            pub fn dim(&self) -> u64 {
                self.core.dim
            }

            /// The update rule.
            pub fn rule(&self) -> &Rule {
                &self.core.rule
            }

            /// The weight of feature `i` (None when out of range).
            pub fn weight(&self, i: usize) -> Option<f32> {
                (i < self.core.dim as usize).then(|| self.core.table[i * self.core.stride])
            }

            /// The intercept (0 when `fit_intercept` is false).
            pub fn intercept(&self) -> f32 {
                if self.core.fit_intercept {
                    self.core.table[self.core.dim as usize * self.core.stride]
                } else {
                    0.0
                }
            }

            /// Seeds the model with weights trained elsewhere (a batch linear model): feature
            /// `i < weights.len()` gets `weights[i]` and fresh rule state, the intercept
            /// `intercept`. Meant for a fresh model. Refuses more weights than `dim` and
            /// non-finite values.
            pub fn warm_start(&mut self, weights: &[f32], intercept: f32) -> Result<()> {
                self.core.warm_start(<$loss>::NAME, weights, intercept)
            }
        }

        impl Predictor for $name {
            fn task(&self) -> Task {
                $task
            }

            fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
                self.core.predict::<$loss>(x, out)
            }
        }

        impl OnlineLearner for $name {
            fn learn(&mut self, examples: &Examples) -> Result<()> {
                self.core.run::<$loss, false>(examples, &mut Vec::new())
            }

            fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
                out.clear();
                self.core.run::<$loss, true>(examples, out)
            }

            fn rows_seen(&self) -> u64 {
                self.core.rows_seen
            }
        }
    };
}

sgd_learner!(
    SgdLogisticRegression,
    Logistic,
    Task::BinaryClassification,
    "logistic regression (`predict` gives `P(label = 1)`)"
);
sgd_learner!(
    SgdLinearRegression,
    Squared,
    Task::Regression,
    "linear least-squares regression (`predict` gives the value)"
);
