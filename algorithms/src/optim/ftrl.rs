//! [`FtrlProximal`] (McMahan et al. 2013, "Ad click prediction: a view from the trenches",
//! algorithm 1), per coordinate, with state `z`, `n`:
//!
//! ```text
//! σ = (√(n + g²) − √n) / α
//! z ← z + g − σ · w
//! n ← n + g²
//! w ← 0                                              if |z| ≤ λ₁
//!     −(z − sgn(z) λ₁) / ((β + √n) / α + λ₂)         otherwise
//! ```
//!
//! The paper computes `w` lazily from `(z, n)` at prediction time; here `w` is stored after
//! each step, which is the same value (it only changes when `z`, `n` do), so a pull from a
//! parameter server answers `w` directly and predictions read one float. `l1 > 0` gives exact
//! zeros. Defaults: `α = 0.1`, `β = 1`, `λ₁ = 0`, `λ₂ = 0`. State: `[z, n]`.

use serde::{Deserialize, Serialize};

use super::{non_negative, positive};
use crate::error::{Error, Result};
use crate::learner::UpdateRule;
use crate::transform::Params;

/// Parameters of [`FtrlProximal`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct FtrlProximalParams {
    /// Learning-rate scale `α` (> 0). Default 0.1.
    pub alpha: f32,
    /// Learning-rate offset `β` (>= 0). Default 1.
    pub beta: f32,
    /// L1 strength `λ₁` (>= 0). Default 0.
    pub l1: f32,
    /// L2 strength `λ₂` (>= 0). Default 0.
    pub l2: f32,
}

impl Default for FtrlProximalParams {
    fn default() -> Self {
        FtrlProximalParams {
            alpha: 0.1,
            beta: 1.0,
            l1: 0.0,
            l2: 0.0,
        }
    }
}

impl Params for FtrlProximalParams {
    type Valid = FtrlProximal;
    fn check(&self) -> Result<FtrlProximal> {
        positive("ftrl.alpha", self.alpha)?;
        non_negative("ftrl.beta", self.beta)?;
        non_negative("ftrl.l1", self.l1)?;
        non_negative("ftrl.l2", self.l2)?;
        Ok(FtrlProximal {
            params: *self,
            inv_alpha: 1.0 / self.alpha,
            beta_over_alpha: self.beta / self.alpha,
        })
    }
}

/// FTRL-Proximal; build it from [`FtrlProximalParams`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FtrlProximalParams", into = "FtrlProximalParams")]
pub struct FtrlProximal {
    params: FtrlProximalParams,
    inv_alpha: f32,
    beta_over_alpha: f32,
}

super::checked_rule!(FtrlProximal, FtrlProximalParams);

impl FtrlProximal {
    /// One step on a coordinate: updates `z`, `n` with gradient `g` and returns the new `w`
    /// (`w` is the coordinate's current weight, which the step needs for `σ · w`).
    #[inline(always)]
    pub fn step(&self, w: f32, z: &mut f32, n: &mut f32, g: f32) -> f32 {
        let sqrt_old = n.sqrt();
        let n_new = *n + g * g;
        let sqrt_new = n_new.sqrt();
        let sigma = (sqrt_new - sqrt_old) * self.inv_alpha;
        *z += g - sigma * w;
        *n = n_new;
        self.weight(*z, sqrt_new)
    }

    /// The weight for state `z` and `√n`.
    #[inline(always)]
    pub fn weight(&self, z: f32, sqrt_n: f32) -> f32 {
        let l1 = self.params.l1;
        if z.abs() <= l1 {
            0.0
        } else {
            let shrunk = z - l1.copysign(z);
            -shrunk / (self.beta_over_alpha + sqrt_n * self.inv_alpha + self.params.l2)
        }
    }

    /// The state `z` that makes the weight equal `w` while `n = 0` (warm start): with
    /// `c = β/α + λ₂`, `z = −(w · c + sgn(w) · λ₁)` (and `z = 0` for `w = 0`); then
    /// `|z| = |w| c + λ₁ > λ₁` and `−(z − sgn(z) λ₁) / c = w`. Needs `c > 0`, that is `β > 0`
    /// or `λ₂ > 0`, else no finite `z` gives a nonzero weight.
    pub fn z_for_weight(&self, w: f32) -> Result<f32> {
        if w == 0.0 {
            return Ok(0.0);
        }
        let c = self.beta_over_alpha + self.params.l2;
        if c <= 0.0 {
            return Err(Error::param(
                "ftrl.beta",
                "a warm start needs beta > 0 or l2 > 0 (with n = 0 the weight is 0 or undefined)",
            ));
        }
        if !w.is_finite() {
            return Err(Error::param(
                "warm-start.weights",
                format!("{w} is not finite"),
            ));
        }
        Ok(-(w * c + self.params.l1.copysign(w)))
    }
}

impl UpdateRule for FtrlProximal {
    fn state_len(&self) -> usize {
        2
    }

    #[inline]
    fn update(&self, w: &mut f32, state: &mut [f32], grad: f32, _x: f32, _t: u64) {
        let [z, n] = state else { return };
        *w = self.step(*w, z, n, grad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::close;

    #[test]
    fn hand_computed_steps() {
        let r = FtrlProximalParams {
            alpha: 0.5,
            beta: 1.0,
            l1: 0.25,
            l2: 1.0,
        }
        .check()
        .unwrap();
        let (mut w, mut s) = (0.0, [0.0, 0.0]);
        // g = 2: σ = 2/0.5 = 4, z = 2, n = 4; w = -(2 - 0.25)/((1 + 2)/0.5 + 1) = -1.75/7
        r.update(&mut w, &mut s, 2.0, 1.0, 1);
        close(w, -0.25);
        close(s[0], 2.0);
        close(s[1], 4.0);
        // g = -1: σ = (√5 - 2)/0.5, z = 2 - 1 - σ·(-0.25), n = 5
        r.update(&mut w, &mut s, -1.0, 1.0, 2);
        let sigma = (5f64.sqrt() - 2.0) / 0.5;
        let z = 1.0 + sigma * 0.25;
        close(s[0], z);
        close(w, -(z - 0.25) / ((1.0 + 5f64.sqrt()) / 0.5 + 1.0));
        // |z| ≤ l1 gives an exact zero
        let (mut w, mut s) = (0.0, [0.0, 0.0]);
        r.update(&mut w, &mut s, 0.2, 1.0, 1);
        assert_eq!(w, 0.0);
    }

    #[test]
    fn warm_start_state_gives_the_weight() {
        let r = FtrlProximalParams {
            l1: 0.3,
            l2: 0.7,
            ..Default::default()
        }
        .check()
        .unwrap();
        for w in [0.0f32, 1.5, -0.25, 1e-4] {
            let z = r.z_for_weight(w).unwrap();
            let got = r.weight(z, 0.0);
            assert!((got - w).abs() <= 1e-6 * (1.0 + w.abs()), "{w}: {got}");
        }
        let flat = FtrlProximalParams {
            beta: 0.0,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert!(flat.z_for_weight(1.0).is_err());
    }

    #[test]
    fn invalid_params_are_named() {
        let e = FtrlProximalParams {
            l1: -1.0,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(e.to_string().contains("ftrl.l1"));
        assert!(serde_json::from_str::<FtrlProximal>(r#"{"alpha":0}"#).is_err());
        let r: FtrlProximal = serde_json::from_str(r#"{"alpha":0.2}"#).unwrap();
        assert_eq!(r.params().alpha, 0.2);
    }
}
