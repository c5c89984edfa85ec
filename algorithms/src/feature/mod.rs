//! Feature steps: each with batch fit, online update where it makes sense, and one transform
//! used identically in training and serving.
//!
//! | module | what |
//! |---|---|
//! | [`numeric`] | scalers, imputer, binarizer, normalizer, polynomial expansion, bucketizer, quantile discretizer |
//! | [`categorical`] | string indexer, one-hot, feature hasher and crosses, vector assembler, target encoding, windowed aggregates |
//! | this one | [`StepKind`] (every step kind a pipeline file holds) and [`load_step`] |

pub mod categorical;
pub mod numeric;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::transform::FeatureStep;

use categorical::{OneHotEncoder, StringIndexer, TargetEncoder, WindowedAggregateFeatures};
use numeric::common::load_as;
use numeric::{
    Binarizer, Bucketizer, Imputer, MaxAbsScaler, MinMaxScaler, Normalizer, PolynomialExpansion,
    QuantileDiscretizer, RobustScaler, StandardScaler,
};

/// Every feature-step kind a [`Pipeline`](crate::pipeline::Pipeline) can hold: the registry
/// [`load_step`] reads pipeline files through, so a step kind that is not listed here cannot be
/// loaded (and a conformance test that matches on this enum covers every kind). The steps that
/// end a pipeline and write the learner's matrix are the variants of
/// [`Featurizer`](categorical::Featurizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// [`StandardScaler`].
    StandardScaler,
    /// [`MinMaxScaler`].
    MinMaxScaler,
    /// [`MaxAbsScaler`].
    MaxAbsScaler,
    /// [`RobustScaler`].
    RobustScaler,
    /// [`Imputer`].
    Imputer,
    /// [`Bucketizer`].
    Bucketizer,
    /// [`QuantileDiscretizer`].
    QuantileDiscretizer,
    /// [`Binarizer`].
    Binarizer,
    /// [`Normalizer`].
    Normalizer,
    /// [`PolynomialExpansion`].
    PolynomialExpansion,
    /// [`StringIndexer`].
    StringIndexer,
    /// [`OneHotEncoder`].
    OneHotEncoder,
    /// [`TargetEncoder`].
    TargetEncoder,
    /// [`WindowedAggregateFeatures`].
    WindowedAggregates,
}

impl StepKind {
    /// Every kind, numeric steps first (the order of the module tables).
    pub const ALL: [StepKind; 14] = [
        StepKind::StandardScaler,
        StepKind::MinMaxScaler,
        StepKind::MaxAbsScaler,
        StepKind::RobustScaler,
        StepKind::Imputer,
        StepKind::Bucketizer,
        StepKind::QuantileDiscretizer,
        StepKind::Binarizer,
        StepKind::Normalizer,
        StepKind::PolynomialExpansion,
        StepKind::StringIndexer,
        StepKind::OneHotEncoder,
        StepKind::TargetEncoder,
        StepKind::WindowedAggregates,
    ];

    /// The kind's name in pipeline files ([`FeatureStep::kind`]).
    pub fn name(self) -> &'static str {
        match self {
            StepKind::StandardScaler => StandardScaler::KIND,
            StepKind::MinMaxScaler => MinMaxScaler::KIND,
            StepKind::MaxAbsScaler => MaxAbsScaler::KIND,
            StepKind::RobustScaler => RobustScaler::KIND,
            StepKind::Imputer => Imputer::KIND,
            StepKind::Bucketizer => Bucketizer::KIND,
            StepKind::QuantileDiscretizer => QuantileDiscretizer::KIND,
            StepKind::Binarizer => Binarizer::KIND,
            StepKind::Normalizer => Normalizer::KIND,
            StepKind::PolynomialExpansion => PolynomialExpansion::KIND,
            StepKind::StringIndexer => categorical::STRING_INDEXER_KIND,
            StepKind::OneHotEncoder => categorical::ONE_HOT_KIND,
            StepKind::TargetEncoder => categorical::TARGET_ENCODER_KIND,
            StepKind::WindowedAggregates => categorical::WINDOWED_KIND,
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StepKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        StepKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::param(
                    "pipeline.steps.kind",
                    format!("unknown feature step kind `{s}`"),
                )
            })
    }
}

/// Loads a step saved by [`FeatureStep::save`] under `kind`; an unknown kind or a state that
/// does not check is an error, never a half-loaded step.
pub fn load_step(kind: &str, state: serde_json::Value) -> Result<Box<dyn FeatureStep>> {
    let state = &state;
    match kind.parse::<StepKind>()? {
        StepKind::StandardScaler => load_as::<StandardScaler>(kind, state),
        StepKind::MinMaxScaler => load_as::<MinMaxScaler>(kind, state),
        StepKind::MaxAbsScaler => load_as::<MaxAbsScaler>(kind, state),
        StepKind::RobustScaler => load_as::<RobustScaler>(kind, state),
        StepKind::Imputer => load_as::<Imputer>(kind, state),
        StepKind::Bucketizer => load_as::<Bucketizer>(kind, state),
        StepKind::QuantileDiscretizer => load_as::<QuantileDiscretizer>(kind, state),
        StepKind::Binarizer => load_as::<Binarizer>(kind, state),
        StepKind::Normalizer => load_as::<Normalizer>(kind, state),
        StepKind::PolynomialExpansion => load_as::<PolynomialExpansion>(kind, state),
        StepKind::StringIndexer => load_as::<StringIndexer>(kind, state),
        StepKind::OneHotEncoder => load_as::<OneHotEncoder>(kind, state),
        StepKind::TargetEncoder => load_as::<TargetEncoder>(kind, state),
        StepKind::WindowedAggregates => load_as::<WindowedAggregateFeatures>(kind, state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_kind_name_round_trips_and_none_clash() {
        for kind in StepKind::ALL {
            assert_eq!(kind.name().parse::<StepKind>().unwrap(), kind);
        }
        let mut names: Vec<_> = StepKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), StepKind::ALL.len());
        let e = load_step("flux-capacitor", serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("flux-capacitor"), "{e}");
    }
}
