//! [`Rule`]: any of the crate's update rules, chosen by configuration, e.g.
//! `{ kind = "ftrl", alpha = 0.05 }` or `{ kind = "adam" }` (kebab-case `kind`, the rule's
//! own params beside it, every param defaulted). A parameter-server table declares its rule
//! this way; the SGD learners hold one.

use serde::{Deserialize, Serialize};

use super::{
    AdaGrad, AdaGradParams, Adam, AdamParams, FtrlProximal, FtrlProximalParams, NormalizedAdaptive,
    NormalizedAdaptiveParams, Sgd, SgdParams,
};
use crate::error::Result;
use crate::learner::UpdateRule;
use crate::transform::Params;

/// Unchecked parameters of a [`Rule`], tagged by `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RuleParams {
    /// [`Sgd`].
    Sgd(SgdParams),
    /// [`AdaGrad`].
    #[serde(rename = "adagrad")]
    AdaGrad(AdaGradParams),
    /// [`NormalizedAdaptive`] (the default).
    NormalizedAdaptive(NormalizedAdaptiveParams),
    /// [`Adam`].
    Adam(AdamParams),
    /// [`FtrlProximal`].
    Ftrl(FtrlProximalParams),
}

impl Default for RuleParams {
    fn default() -> Self {
        RuleParams::NormalizedAdaptive(NormalizedAdaptiveParams::default())
    }
}

impl Params for RuleParams {
    type Valid = Rule;
    fn check(&self) -> Result<Rule> {
        Ok(match self {
            RuleParams::Sgd(p) => Rule::Sgd(p.check()?),
            RuleParams::AdaGrad(p) => Rule::AdaGrad(p.check()?),
            RuleParams::NormalizedAdaptive(p) => Rule::NormalizedAdaptive(p.check()?),
            RuleParams::Adam(p) => Rule::Adam(p.check()?),
            RuleParams::Ftrl(p) => Rule::Ftrl(p.check()?),
        })
    }
}

/// A checked update rule of any kind. Learners dispatch on it once per batch and run a loop
/// specialized for the concrete rule.
///
/// It serializes externally tagged (`{"ftrl": {...}}`), not like [`RuleParams`]: snapshots and
/// model files use bincode, which cannot read internally tagged enums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Plain SGD.
    Sgd(Sgd),
    /// AdaGrad.
    #[serde(rename = "adagrad")]
    AdaGrad(AdaGrad),
    /// Adaptive + normalized.
    NormalizedAdaptive(NormalizedAdaptive),
    /// Adam.
    Adam(Adam),
    /// FTRL-Proximal.
    Ftrl(FtrlProximal),
}

impl TryFrom<RuleParams> for Rule {
    type Error = crate::error::Error;
    fn try_from(p: RuleParams) -> Result<Self> {
        p.check()
    }
}

impl From<Rule> for RuleParams {
    fn from(r: Rule) -> Self {
        match r {
            Rule::Sgd(r) => RuleParams::Sgd(*r.params()),
            Rule::AdaGrad(r) => RuleParams::AdaGrad(*r.params()),
            Rule::NormalizedAdaptive(r) => RuleParams::NormalizedAdaptive(*r.params()),
            Rule::Adam(r) => RuleParams::Adam(*r.params()),
            Rule::Ftrl(r) => RuleParams::Ftrl(*r.params()),
        }
    }
}

impl Rule {
    /// The rule as a trait object.
    pub fn as_dyn(&self) -> &dyn UpdateRule {
        match self {
            Rule::Sgd(r) => r,
            Rule::AdaGrad(r) => r,
            Rule::NormalizedAdaptive(r) => r,
            Rule::Adam(r) => r,
            Rule::Ftrl(r) => r,
        }
    }
}

impl UpdateRule for Rule {
    fn state_len(&self) -> usize {
        self.as_dyn().state_len()
    }

    fn init_state(&self, state: &mut [f32]) {
        self.as_dyn().init_state(state);
    }

    #[inline]
    fn update(&self, w: &mut f32, state: &mut [f32], grad: f32, x: f32, t: u64) {
        self.as_dyn().update(w, state, grad, x, t);
    }

    fn update_row(&self, w: &mut [f32], state: &mut [f32], grads: &[f32], xs: &[f32], t: u64) {
        self.as_dyn().update_row(w, state, grads, xs, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_and_checks() {
        let p: RuleParams = serde_json::from_str(r#"{"kind":"ftrl","alpha":0.05,"l1":1}"#).unwrap();
        let r = p.check().unwrap();
        let Rule::Ftrl(f) = r else {
            panic!("not ftrl: {r:?}")
        };
        assert_eq!(f.params().alpha, 0.05);
        assert_eq!(f.params().beta, 1.0);
        let back: Rule = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let back: Rule = bincode::deserialize(&bincode::serialize(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(RuleParams::from(r), p);
        assert_eq!(r.state_len(), 2);
        let a: RuleParams = serde_json::from_str(r#"{"kind":"adagrad"}"#).unwrap();
        assert_eq!(a.check().unwrap().state_len(), 1);
        let a: RuleParams = serde_json::from_str(r#"{"kind":"adam","beta1":2}"#).unwrap();
        let e = a.check().unwrap_err();
        assert!(e.to_string().contains("adam.beta1"), "{e}");
        assert!(serde_json::from_str::<RuleParams>(r#"{"kind":"adam","bogus":1}"#).is_err());
        // a snapshot cannot smuggle in an invalid rule
        assert!(serde_json::from_str::<Rule>(r#"{"adam":{"beta1":2}}"#).is_err());
        assert_eq!(
            RuleParams::default().check().unwrap().state_len(),
            2,
            "normalized-adaptive keeps G and s"
        );
    }

    #[test]
    fn dispatch_matches_the_concrete_rule() {
        let p = AdamParams::default();
        let (concrete, any) = (p.check().unwrap(), RuleParams::Adam(p).check().unwrap());
        let (mut w1, mut s1, mut w2, mut s2) = (0.5, [0.0; 2], 0.5, [0.0; 2]);
        for t in 1..5 {
            concrete.update(&mut w1, &mut s1, 0.3 * t as f32, 1.0, t);
            any.update(&mut w2, &mut s2, 0.3 * t as f32, 1.0, t);
        }
        assert_eq!((w1, s1), (w2, s2));
    }
}
