//! From a node's spec to runtime objects: the feature [`Pipeline`] and the learner spec of the
//! [learner registry](eddy_algorithms::learners) (which builds, fits and warm-starts learners).

use eddy_algorithms::learners::LearnerSpec;
use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};

use crate::error::{Error, Result};
use crate::spec::{FeaturesSpec, TrainSpec};

/// The feature pipeline a `[features.<name>]` section describes.
pub(crate) fn pipeline(f: &FeaturesSpec) -> Result<Pipeline> {
    let standard = StandardPipeline {
        label: f.label.clone(),
        numeric: f.numeric.clone(),
        categorical: f.categorical.clone(),
        crosses: f.crosses.clone(),
        scale: f.scale,
        dense: f.dense,
        hash_bits: f.hash_bits,
    };
    Ok(standard.build()?)
}

/// The node's learner and `params` as a spec of the learner registry.
pub(crate) fn spec(node: &str, t: &TrainSpec) -> Result<LearnerSpec> {
    crate::spec::check_node::learner_spec(t.learner, &t.params).map_err(|message| Error::Node {
        node: node.to_string(),
        message: format!("params: {message}"),
    })
}
