//! [`AdaGrad`] (Duchi, Hazan & Singer 2011), per coordinate:
//!
//! ```text
//! G ← G + g²
//! w ← w − η · g / (√G + ε)
//! ```
//!
//! Defaults: `η = 0.1`, `ε = 1e-8`. State: `[G]`.

use serde::{Deserialize, Serialize};

use super::{non_negative, positive};
use crate::error::Result;
use crate::learner::UpdateRule;
use crate::transform::Params;

/// Parameters of [`AdaGrad`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdaGradParams {
    /// Step size `η` (> 0). Default 0.1.
    pub eta: f32,
    /// `ε` added to `√G` (>= 0). Default 1e-8.
    pub epsilon: f32,
}

impl Default for AdaGradParams {
    fn default() -> Self {
        AdaGradParams {
            eta: 0.1,
            epsilon: 1e-8,
        }
    }
}

impl Params for AdaGradParams {
    type Valid = AdaGrad;
    fn check(&self) -> Result<AdaGrad> {
        positive("adagrad.eta", self.eta)?;
        non_negative("adagrad.epsilon", self.epsilon)?;
        Ok(AdaGrad { params: *self })
    }
}

/// AdaGrad; build it from [`AdaGradParams`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AdaGradParams", into = "AdaGradParams")]
pub struct AdaGrad {
    params: AdaGradParams,
}

super::checked_rule!(AdaGrad, AdaGradParams);

impl UpdateRule for AdaGrad {
    fn state_len(&self) -> usize {
        1
    }

    #[inline]
    fn update(&self, w: &mut f32, state: &mut [f32], grad: f32, _x: f32, _t: u64) {
        let g2 = &mut state[0];
        *g2 += grad * grad;
        let denom = g2.sqrt() + self.params.epsilon;
        if denom > 0.0 {
            *w -= self.params.eta * grad / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::close;

    #[test]
    fn hand_computed_steps() {
        let r = AdaGradParams {
            eta: 0.5,
            epsilon: 0.0,
        }
        .check()
        .unwrap();
        let (mut w, mut s) = (0.0, [0.0]);
        r.update(&mut w, &mut s, 2.0, 1.0, 1); // G = 4, w = -0.5·2/2
        close(w, -0.5);
        r.update(&mut w, &mut s, 1.0, 1.0, 2); // G = 5, w -= 0.5/√5
        close(w, -0.5 - 0.5 / 5f64.sqrt());
        close(s[0], 5.0);
        // a zero gradient on fresh state does not divide by zero
        let (mut w, mut s) = (1.0, [0.0]);
        r.update(&mut w, &mut s, 0.0, 1.0, 1);
        assert_eq!(w, 1.0);
    }

    #[test]
    fn invalid_params_are_named() {
        let e = AdaGradParams {
            eta: f32::NAN,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(e.to_string().contains("adagrad.eta"));
    }
}
