//! Feature steps: each with batch fit, online update where it makes sense, and one transform
//! used identically in training and serving.
//!
//! | module | what |
//! |---|---|
//! | [`numeric`] | scalers, imputer, binarizer, normalizer, polynomial expansion, bucketizer, quantile discretizer |
//! | [`categorical`] | string indexer, one-hot, feature hasher and crosses, vector assembler, target encoding, windowed aggregates |

pub mod categorical;
pub mod numeric;

use crate::error::{Error, Result};
use crate::transform::FeatureStep;

/// Loads a step saved by [`FeatureStep::save`] under `kind`.
pub fn load_step(kind: &str, state: serde_json::Value) -> Result<Box<dyn FeatureStep>> {
    if let Some(step) = numeric::load(kind, &state) {
        return step;
    }
    if let Some(step) = categorical::load(kind, &state) {
        return step;
    }
    Err(Error::param(
        "pipeline.steps.kind",
        format!("unknown feature step kind `{kind}`"),
    ))
}
