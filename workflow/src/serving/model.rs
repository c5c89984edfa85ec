//! [`LoadedModel`]: one version of a model, decoded, probed for its inputs and warmed up, ready
//! to score request rows.

use std::cell::RefCell;
use std::time::Instant;

use eddy_algorithms::features::Features;
use eddy_algorithms::learner::{Predictor, Task};
use eddy_algorithms::trained::TrainedModel;
use serde::Serialize;

use super::input::{InputSchema, Row};
use crate::error::{Error, Result};
use crate::registry::{Registry, VersionMeta};

/// One version of a model, ready to serve. Immutable: serving threads share it behind an
/// `Arc`, and a new version is a new `LoadedModel` swapped in beside it.
#[derive(Debug)]
pub struct LoadedModel {
    meta: VersionMeta,
    model: TrainedModel,
    inputs: InputSchema,
    task: Task,
    loaded_at: Instant,
    /// Revisions of the version's weights from a parameter server before this one (0: the
    /// registry's bytes; see [`follow_ps`](super::follow_ps)).
    revision: u64,
}

/// The answer to a predict request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The model that answered.
    pub model: String,
    /// The version that answered.
    pub version: u64,
    /// One prediction per row: P(label = 1) for binary classifiers, the value for regression,
    /// the class or cluster index otherwise.
    pub predictions: Vec<f32>,
    /// Class probabilities per row: `[P(0), P(1)]` for binary classifiers, one per class for
    /// multiclass models; absent for regression and clustering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Vec<Vec<f32>>>,
}

thread_local! {
    /// Per-thread scratch of the predict path: the feature matrix and the score buffer are
    /// reused across requests served by the same thread.
    static SCRATCH: RefCell<(Features, Vec<f32>)> =
        RefCell::new((Features::Sparse(Default::default()), Vec::new()));
}

impl LoadedModel {
    /// Reads, decodes, probes and warms version `version` of `name` from `registry`. Errors
    /// name the model file.
    pub fn load(registry: &Registry, name: &str, version: u64) -> Result<Self> {
        let meta = registry.get(name, version)?;
        let bytes = registry.load_bytes(name, version)?;
        let model = TrainedModel::from_bytes(&bytes).map_err(|source| Error::ModelFile {
            path: registry
                .root()
                .join(name)
                .join(format!("v{version}"))
                .join("model.eddy"),
            source,
        })?;
        LoadedModel::new(meta, model)
    }

    /// A model from its metadata and decoded value: finds its input columns and scores one
    /// probe row, so the first request does not pay for lazy initialization.
    pub fn new(meta: VersionMeta, model: TrainedModel) -> Result<Self> {
        let inputs = InputSchema::probe(&meta.model, &model.pipeline)?;
        let task = model.model.task();
        let loaded = LoadedModel {
            meta,
            model,
            inputs,
            task,
            loaded_at: Instant::now(),
            revision: 0,
        };
        loaded.predict(&[loaded.inputs.probe_row()])?;
        Ok(loaded)
    }

    /// The version's metadata.
    pub fn meta(&self) -> &VersionMeta {
        &self.meta
    }

    /// The model name.
    pub fn name(&self) -> &str {
        &self.meta.model
    }

    /// The version number.
    pub fn version(&self) -> u64 {
        self.meta.version
    }

    /// How many times a parameter server's weights revised this version (0: as published).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The next revision of this version: the same metadata with `model`'s weights, probed
    /// and warmed like a loaded version.
    pub fn revised(&self, model: TrainedModel) -> Result<Self> {
        let mut next = LoadedModel::new(self.meta.clone(), model)?;
        next.revision = self.revision + 1;
        Ok(next)
    }

    /// The raw input columns a row must provide.
    pub fn inputs(&self) -> &InputSchema {
        &self.inputs
    }

    /// The decoded pipeline and learner.
    pub fn trained(&self) -> &TrainedModel {
        &self.model
    }

    /// What the predictions mean.
    pub fn task(&self) -> Task {
        self.task
    }

    /// When this process loaded the version.
    pub fn loaded_at(&self) -> Instant {
        self.loaded_at
    }

    /// Scores raw rows: builds the Arrow batch from the rows with the pipeline's input schema,
    /// featurizes it with the pipeline and scores it with the learner — the path `eddy
    /// predict` takes. Never mutates the model.
    pub fn predict(&self, rows: &[Row]) -> Result<Prediction> {
        let batch = self.inputs.batch(self.name(), rows)?;
        let refused = |source| Error::Predict {
            model: self.meta.model.clone(),
            version: self.meta.version,
            source: Box::new(source),
        };
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let (features, scores) = &mut *scratch;
            self.model
                .pipeline
                .features(&batch, features)
                .map_err(refused)?;
            let (predictions, probabilities) = match self.task {
                Task::Multiclass { .. } => {
                    let width = self
                        .model
                        .model
                        .predict_scores(features, scores)
                        .map_err(refused)?;
                    let mut predictions = Vec::with_capacity(rows.len());
                    self.model
                        .model
                        .predict(features, &mut predictions)
                        .map_err(refused)?;
                    let probs = scores.chunks(width.max(1)).map(<[f32]>::to_vec).collect();
                    (predictions, Some(probs))
                }
                Task::BinaryClassification => {
                    let mut predictions = Vec::with_capacity(rows.len());
                    self.model
                        .model
                        .predict(features, &mut predictions)
                        .map_err(refused)?;
                    let probs = predictions.iter().map(|&p| vec![1.0 - p, p]).collect();
                    (predictions, Some(probs))
                }
                Task::Regression | Task::Clustering { .. } => {
                    let mut predictions = Vec::with_capacity(rows.len());
                    self.model
                        .model
                        .predict(features, &mut predictions)
                        .map_err(refused)?;
                    (predictions, None)
                }
            };
            Ok(Prediction {
                model: self.meta.model.clone(),
                version: self.meta.version,
                predictions,
                probabilities,
            })
        })
    }
}
