//! Parameters of [`FactorizationMachine`](super::FactorizationMachine).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{AdaGradParams, Rule, RuleParams};
use crate::transform::Params;

/// The loss, and so what `predict` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FmTask {
    /// Logistic loss on labels 0/1; `predict` gives `σ(ŷ)` = P(y = 1).
    Binary,
    /// Squared loss `½(ŷ − y)²`; `predict` gives `ŷ`.
    Regression,
}

/// Parameters of [`FactorizationMachine`](super::FactorizationMachine).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FmParams {
    /// Feature dimension (dense width or hashed space). Required, 1..=2^32.
    pub dim: u64,
    /// Factors per feature `k`, ≥ 1. Default 8.
    #[serde(default = "eight")]
    pub factors: usize,
    /// Binary classification or regression. Default binary.
    #[serde(default = "binary")]
    pub task: FmTask,
    /// Standard deviation `σ` of the normal initialization of `V`, finite and ≥ 0. Default 0.1
    /// (libFM's `init_stdev`).
    #[serde(default = "tenth")]
    pub init_std: f32,
    /// Seed of the initialization of `V`. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// L2 strength on the global bias `w0`, finite and ≥ 0. Default 0.
    #[serde(default)]
    pub l2_w0: f32,
    /// L2 strength on the linear weights `w`, finite and ≥ 0. Default 0.
    #[serde(default)]
    pub l2_w: f32,
    /// L2 strength on the factors `V`, finite and ≥ 0. Default 0.
    #[serde(default)]
    pub l2_v: f32,
    /// Update rule of `w0` and `w`. Default AdaGrad (`η = 0.1`).
    #[serde(default = "adagrad")]
    pub rule_w: RuleParams,
    /// Update rule of `V`. Default AdaGrad (`η = 0.1`).
    #[serde(default = "adagrad")]
    pub rule_v: RuleParams,
}

fn eight() -> usize {
    8
}
fn binary() -> FmTask {
    FmTask::Binary
}
fn tenth() -> f32 {
    0.1
}
fn adagrad() -> RuleParams {
    RuleParams::AdaGrad(AdaGradParams::default())
}

impl FmParams {
    /// Parameters with the defaults for `dim` features and `task`.
    pub fn new(dim: u64, task: FmTask) -> Self {
        FmParams {
            dim,
            factors: 8,
            task,
            init_std: 0.1,
            seed: 0,
            l2_w0: 0.0,
            l2_w: 0.0,
            l2_v: 0.0,
            rule_w: adagrad(),
            rule_v: adagrad(),
        }
    }
}

/// Checked [`FmParams`], with the rules built.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct FmValidParams {
    params: FmParams,
    #[serde(skip)]
    pub(super) rule_w: Rule,
    #[serde(skip)]
    pub(super) rule_v: Rule,
}

impl std::ops::Deref for FmValidParams {
    type Target = FmParams;
    fn deref(&self) -> &FmParams {
        &self.params
    }
}

fn rule(name: &str, p: &RuleParams) -> Result<Rule> {
    p.check().map_err(|e| match e {
        Error::InvalidParam { param, message } => {
            Error::param(format!("fm.{name}.{param}"), message)
        }
        other => other,
    })
}

fn non_negative(name: &str, v: f32) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            format!("fm.{name}"),
            "must be finite and >= 0",
        ))
    }
}

impl Params for FmParams {
    type Valid = FmValidParams;

    fn check(&self) -> Result<FmValidParams> {
        if self.dim == 0 || self.dim > u64::from(u32::MAX) + 1 {
            return Err(Error::param("fm.dim", "must be in 1..=2^32"));
        }
        if self.factors == 0 {
            return Err(Error::param("fm.factors", "must be at least 1"));
        }
        non_negative("init_std", self.init_std)?;
        non_negative("l2_w0", self.l2_w0)?;
        non_negative("l2_w", self.l2_w)?;
        non_negative("l2_v", self.l2_v)?;
        Ok(FmValidParams {
            params: *self,
            rule_w: rule("rule_w", &self.rule_w)?,
            rule_v: rule("rule_v", &self.rule_v)?,
        })
    }
}
