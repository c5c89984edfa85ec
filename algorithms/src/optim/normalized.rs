//! [`NormalizedAdaptive`]: the per-coordinate part of Vowpal Wabbit's default update
//! (`--adaptive --normalized`, Ross, Mineiro & Langford 2013, "Normalized online learning";
//! AdaGrad of Duchi et al. 2011), with `x` the feature value the gradient came from:
//!
//! ```text
//! a = max(|x|, 1e-30)
//! if a > s:  w ← w · s / a  (when s > 0);  s ← a        # new scale: keep w·x unchanged in units
//! G ← G + g²
//! w ← w − η · g / (s · √G)
//! ```
//!
//! `s` is the largest `|x|` seen for the feature, so the step is invariant to rescaling a
//! feature: multiply `x` by `c` and `w` follows as `w / c`. Defaults: `η = 0.1`. State:
//! `[G, s]`.
//!
//! Vowpal Wabbit adds two row-level parts that a per-coordinate rule cannot see (and that a
//! parameter-server shard could not apply either): the global normalizer `√(t / N)` with
//! `N = Σ_examples Σ_i x_i² / s_i²`, which scales every step by about `1 / √(features per row)`,
//! and the importance-invariant closed form of Karampatziakis & Langford. Hence the smaller
//! default `η` than Vowpal Wabbit's 0.5: with ~20 features per row, `0.5 / √20 ≈ 0.1`.

use serde::{Deserialize, Serialize};

use super::positive;
use crate::error::Result;
use crate::learner::UpdateRule;
use crate::transform::Params;

/// The smallest feature scale, so a zero value never divides by zero.
const MIN_SCALE: f32 = 1e-30;

/// Parameters of [`NormalizedAdaptive`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NormalizedAdaptiveParams {
    /// Step size `η` (> 0). Default 0.1.
    pub eta: f32,
}

impl Default for NormalizedAdaptiveParams {
    fn default() -> Self {
        NormalizedAdaptiveParams { eta: 0.1 }
    }
}

impl Params for NormalizedAdaptiveParams {
    type Valid = NormalizedAdaptive;
    fn check(&self) -> Result<NormalizedAdaptive> {
        positive("normalized-adaptive.eta", self.eta)?;
        Ok(NormalizedAdaptive { params: *self })
    }
}

/// The adaptive + normalized rule; build it from [`NormalizedAdaptiveParams`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "NormalizedAdaptiveParams",
    into = "NormalizedAdaptiveParams"
)]
pub struct NormalizedAdaptive {
    params: NormalizedAdaptiveParams,
}

super::checked_rule!(NormalizedAdaptive, NormalizedAdaptiveParams);

impl UpdateRule for NormalizedAdaptive {
    fn state_len(&self) -> usize {
        2
    }

    #[inline]
    fn update(&self, w: &mut f32, state: &mut [f32], grad: f32, x: f32, _t: u64) {
        let [g2, s] = state else { return };
        let a = x.abs().max(MIN_SCALE);
        if a > *s {
            if *s > 0.0 {
                *w *= *s / a;
            }
            *s = a;
        }
        *g2 += grad * grad;
        if *g2 > 0.0 {
            *w -= self.params.eta * grad / (*s * g2.sqrt());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::testutil::close;

    #[test]
    fn hand_computed_steps() {
        let r = NormalizedAdaptiveParams { eta: 0.5 }.check().unwrap();
        let (mut w, mut s) = (0.0, [0.0, 0.0]);
        // x = 2, g = 4: s = 2, G = 16, w = -0.5·4/(2·4) = -0.25
        r.update(&mut w, &mut s, 4.0, 2.0, 1);
        close(w, -0.25);
        close(s[1], 2.0);
        // x = 4 (new scale): w = -0.25·2/4 = -0.125; g = -3: G = 25, w += 0.5·3/(4·5)
        r.update(&mut w, &mut s, -3.0, 4.0, 2);
        close(w, -0.125 + 0.075);
        close(s[0], 25.0);
        // a smaller x keeps the scale
        r.update(&mut w, &mut s, 0.0, 1.0, 3);
        close(s[1], 4.0);
    }

    #[test]
    fn scale_invariance() {
        // the prediction w·x after a step is the same whatever the feature's units
        let r = NormalizedAdaptiveParams::default().check().unwrap();
        let run = |c: f32| {
            let (mut w, mut s) = (0.0f32, [0.0, 0.0]);
            for (x, dl) in [(1.0f32, 0.5f32), (2.0, -0.25), (0.5, 0.75)] {
                r.update(&mut w, &mut s, dl * x * c, x * c, 1);
            }
            w * c
        };
        let (a, b) = (run(1.0), run(1000.0));
        assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }

    #[test]
    fn invalid_params_are_named() {
        let e = NormalizedAdaptiveParams { eta: 0.0 }.check().unwrap_err();
        assert!(e.to_string().contains("normalized-adaptive.eta"));
    }
}
