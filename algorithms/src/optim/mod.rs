//! Optimizers: [`UpdateRule`](crate::learner::UpdateRule) implementations, shared by the local
//! learners ([`crate::online::linear`]) and parameter-server shards so both train identically.
//!
//! Every rule follows the crate's params pattern: a serde `XxxParams` with documented defaults,
//! checked by [`Params::check`](crate::transform::Params::check) into the rule itself (errors
//! name the parameter, e.g. `adam.beta1`). Rules serialize as their params and re-check on
//! deserialization, so a snapshot can never smuggle in an invalid rule.
//!
//! In every formula `g` is the loss gradient with respect to the weight `w`, `x` the feature
//! value the gradient came from and `t` the 1-based count of examples seen.
//!
//! ## Modules
//! | module | rule | state per weight |
//! |---|---|---|
//! | [`sgd`] | [`Sgd`]: `w -= η_t g`, constant or inverse-scaling `η_t` | none |
//! | [`adagrad`] | [`AdaGrad`]: `w -= η g / (√G + ε)` | `G` |
//! | [`normalized`] | [`NormalizedAdaptive`]: Vowpal Wabbit's adaptive + normalized step | `G`, `s` |
//! | [`adam`] | [`Adam`]: bias-corrected moments | `m`, `v` |
//! | [`ftrl`] | [`FtrlProximal`]: McMahan et al. 2013, `w` stored after each step | `z`, `n` |
//! | [`rule`] | [`Rule`]: any of the above, chosen by config (`kind = "adam"`) | per variant |

pub mod adagrad;
pub mod adam;
pub mod ftrl;
pub mod normalized;
pub mod rule;
pub mod sgd;

pub use adagrad::{AdaGrad, AdaGradParams};
pub use adam::{Adam, AdamParams};
pub use ftrl::{FtrlProximal, FtrlProximalParams};
pub use normalized::{NormalizedAdaptive, NormalizedAdaptiveParams};
pub use rule::{Rule, RuleParams};
pub use sgd::{LearningRate, Sgd, SgdParams};

use crate::error::{Error, Result};

/// Serde through the params (`try_from` re-checks on load) and a `params()` accessor, for a
/// rule struct with a `params` field.
macro_rules! checked_rule {
    ($rule:ident, $params:ident) => {
        impl TryFrom<$params> for $rule {
            type Error = crate::error::Error;
            fn try_from(p: $params) -> crate::error::Result<Self> {
                crate::transform::Params::check(&p)
            }
        }

        impl From<$rule> for $params {
            fn from(r: $rule) -> Self {
                r.params
            }
        }

        impl $rule {
            /// The checked parameters.
            pub fn params(&self) -> &$params {
                &self.params
            }
        }
    };
}
pub(crate) use checked_rule;

/// Checks that `value` is finite and strictly positive.
pub(crate) fn positive(param: &str, value: f32) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            param,
            format!("{value} must be finite and > 0"),
        ))
    }
}

/// Checks that `value` is finite and not negative.
pub(crate) fn non_negative(param: &str, value: f32) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            param,
            format!("{value} must be finite and >= 0"),
        ))
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    /// Asserts `a ≈ b` within an absolute-plus-relative tolerance of `1e-6`.
    pub fn close(a: f32, b: f64) {
        let tol = 1e-6 * (1.0 + b.abs());
        assert!((f64::from(a) - b).abs() <= tol, "{a} vs {b}");
    }
}
