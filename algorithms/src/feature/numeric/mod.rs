//! (being written)

use crate::error::Result;
use crate::transform::FeatureStep;

/// Loads a step of this module by kind; `None` when the kind is not one of this module's.
pub(crate) fn load(_kind: &str, _state: &serde_json::Value) -> Option<Result<Box<dyn FeatureStep>>> {
    None
}
