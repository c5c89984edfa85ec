//! [`Sgd`]: plain stochastic gradient descent, `w ← w − η_t · g`.
//!
//! Schedules ([`LearningRate`]): `constant` (`η_t = η`) and `inverse-scaling`
//! (`η_t = η / t^p`, scikit-learn's `invscaling`). Defaults: inverse scaling, `η = 0.5`,
//! `p = 0.5`.

use serde::{Deserialize, Serialize};

use super::{non_negative, positive};
use crate::error::Result;
use crate::learner::UpdateRule;
use crate::transform::Params;

/// A learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearningRate {
    /// `η_t = η`.
    Constant,
    /// `η_t = η / t^p` (the default).
    #[default]
    InverseScaling,
}

/// Parameters of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SgdParams {
    /// The schedule. Default `inverse-scaling`.
    pub learning_rate: LearningRate,
    /// The (initial) step size `η` (> 0). Default 0.5.
    pub eta: f32,
    /// The decay exponent `p` of inverse scaling (>= 0). Default 0.5.
    pub power_t: f32,
}

impl Default for SgdParams {
    fn default() -> Self {
        SgdParams {
            learning_rate: LearningRate::InverseScaling,
            eta: 0.5,
            power_t: 0.5,
        }
    }
}

impl SgdParams {
    /// A constant step size `eta`.
    pub fn constant(eta: f32) -> Self {
        SgdParams {
            learning_rate: LearningRate::Constant,
            eta,
            power_t: 0.0,
        }
    }
}

impl Params for SgdParams {
    type Valid = Sgd;
    fn check(&self) -> Result<Sgd> {
        positive("sgd.eta", self.eta)?;
        non_negative("sgd.power-t", self.power_t)?;
        Ok(Sgd { params: *self })
    }
}

/// Plain SGD: `w ← w − η_t · g`; no state. Build it from [`SgdParams`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SgdParams", into = "SgdParams")]
pub struct Sgd {
    params: SgdParams,
}

super::checked_rule!(Sgd, SgdParams);

impl Sgd {
    /// The step size at example `t` (1-based; 0 is read as 1).
    #[inline]
    pub fn eta_at(&self, t: u64) -> f32 {
        let p = &self.params;
        match p.learning_rate {
            LearningRate::Constant => p.eta,
            LearningRate::InverseScaling => p.eta / (t.max(1) as f32).powf(p.power_t),
        }
    }
}

impl UpdateRule for Sgd {
    fn state_len(&self) -> usize {
        0
    }

    #[inline]
    fn update(&self, w: &mut f32, _state: &mut [f32], grad: f32, _x: f32, t: u64) {
        *w -= self.eta_at(t) * grad;
    }

    fn update_row(&self, w: &mut [f32], _state: &mut [f32], grads: &[f32], _xs: &[f32], t: u64) {
        let eta = self.eta_at(t);
        for (w, g) in w.iter_mut().zip(grads) {
            *w -= eta * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::close;

    #[test]
    fn constant_and_inverse_scaling_steps() {
        let c = SgdParams::constant(0.1).check().unwrap();
        let mut w = 1.0;
        c.update(&mut w, &mut [], 2.0, 1.0, 7);
        close(w, 1.0 - 0.1 * 2.0);

        let s = SgdParams::default().check().unwrap();
        let mut w = 0.0;
        s.update(&mut w, &mut [], 1.0, 1.0, 4); // η = 0.5 / √4 = 0.25
        close(w, -0.25);
        let mut ws = [0.0, 1.0];
        s.update_row(&mut ws, &mut [], &[1.0, -2.0], &[1.0, 1.0], 4);
        close(ws[0], -0.25);
        close(ws[1], 1.5);
    }

    #[test]
    fn invalid_params_are_named() {
        let bad = SgdParams {
            power_t: -1.0,
            ..Default::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("sgd.power-t"), "{e}");
        let json = r#"{"learning-rate":"constant","eta":0}"#;
        assert!(serde_json::from_str::<Sgd>(json).is_err());
    }
}
