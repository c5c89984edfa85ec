//! [`Adam`] (Kingma & Ba 2015), per coordinate, with `t` the examples seen:
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g
//! v ← β₂ v + (1 − β₂) g²
//! w ← w − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
//! ```
//!
//! On sparse features a coordinate's moments only move when its feature occurs, while the bias
//! correction follows the global `t` ("lazy Adam"). Defaults: `η = 0.001`, `β₁ = 0.9`,
//! `β₂ = 0.999`, `ε = 1e-8`. State: `[m, v]`.

use serde::{Deserialize, Serialize};

use super::{non_negative, positive};
use crate::error::{Error, Result};
use crate::learner::UpdateRule;
use crate::transform::Params;

/// Parameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdamParams {
    /// Step size `η` (> 0). Default 0.001.
    pub eta: f32,
    /// First-moment decay `β₁`, in `[0, 1)`. Default 0.9.
    pub beta1: f32,
    /// Second-moment decay `β₂`, in `[0, 1)`. Default 0.999.
    pub beta2: f32,
    /// `ε` (>= 0). Default 1e-8.
    pub epsilon: f32,
}

impl Default for AdamParams {
    fn default() -> Self {
        AdamParams {
            eta: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

impl Params for AdamParams {
    type Valid = Adam;
    fn check(&self) -> Result<Adam> {
        positive("adam.eta", self.eta)?;
        for (name, b) in [("adam.beta1", self.beta1), ("adam.beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::param(name, format!("{b} is not in [0, 1)")));
            }
        }
        non_negative("adam.epsilon", self.epsilon)?;
        Ok(Adam { params: *self })
    }
}

/// Adam; build it from [`AdamParams`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AdamParams", into = "AdamParams")]
pub struct Adam {
    params: AdamParams,
}

super::checked_rule!(Adam, AdamParams);

impl Adam {
    /// The bias corrections `(1 − β₁ᵗ, 1 − β₂ᵗ)` at `t` (0 is read as 1).
    #[inline]
    fn corrections(&self, t: u64) -> (f32, f32) {
        let t = t.max(1) as f64;
        let c1 = 1.0 - f64::from(self.params.beta1).powf(t);
        let c2 = 1.0 - f64::from(self.params.beta2).powf(t);
        (c1 as f32, c2 as f32)
    }

    #[inline]
    fn step(&self, w: &mut f32, state: &mut [f32], grad: f32, (c1, c2): (f32, f32)) {
        let p = &self.params;
        let [m, v] = state else { return };
        *m = p.beta1 * *m + (1.0 - p.beta1) * grad;
        *v = p.beta2 * *v + (1.0 - p.beta2) * grad * grad;
        let denom = (*v / c2).sqrt() + p.epsilon;
        if denom > 0.0 {
            *w -= p.eta * (*m / c1) / denom;
        }
    }
}

impl UpdateRule for Adam {
    fn state_len(&self) -> usize {
        2
    }

    #[inline]
    fn update(&self, w: &mut f32, state: &mut [f32], grad: f32, _x: f32, t: u64) {
        self.step(w, state, grad, self.corrections(t));
    }

    fn update_row(&self, w: &mut [f32], state: &mut [f32], grads: &[f32], _xs: &[f32], t: u64) {
        let c = self.corrections(t);
        for ((w, s), g) in w.iter_mut().zip(state.chunks_exact_mut(2)).zip(grads) {
            self.step(w, s, *g, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::close;

    #[test]
    fn hand_computed_steps() {
        let r = AdamParams {
            eta: 0.1,
            beta1: 0.5,
            beta2: 0.75,
            epsilon: 0.0,
        }
        .check()
        .unwrap();
        let (mut w, mut s) = (0.0, [0.0, 0.0]);
        // t = 1: m = 1, v = 1, corrections 0.5 and 0.25: mhat = 2, vhat = 4, w = -0.1·2/2
        r.update(&mut w, &mut s, 2.0, 1.0, 1);
        close(w, -0.1);
        // t = 2: m = 0.5 + 0.5·(-1) = 0, v = 0.75 + 0.25 = 1: step 0
        r.update(&mut w, &mut s, -1.0, 1.0, 2);
        close(w, -0.1);
        close(s[0], 0.0);
        close(s[1], 1.0);
        let mut ws = [0.0, 0.0];
        let mut st = [0.0; 4];
        r.update_row(&mut ws, &mut st, &[2.0, -2.0], &[1.0, 1.0], 1);
        close(ws[0], -0.1);
        close(ws[1], 0.1);
    }

    #[test]
    fn invalid_params_are_named() {
        let e = AdamParams {
            beta2: 1.0,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(e.to_string().contains("adam.beta2"));
    }
}
