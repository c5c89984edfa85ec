//! [`Pipeline`]: feature steps and the featurizer as one value — fitted as one, updated as one,
//! saved and loaded as one versioned document — so the rows a model is served are featurized
//! exactly as its training rows were.
//!
//! The serialized form is `{"format": N, "steps": [{"kind": …, "state": …}, …], "featurizer": …,
//! "label": …}`. A document of a newer `format` than this build reads is refused with a message
//! that says so; an unknown step kind or a corrupt state is refused, never half-loaded.
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | this one | [`Pipeline`] over record batches: fit, follow, featurize, save/load |
//! | [`row`] | [`RowPlan`]: one row at a time with no record batch and no allocation per row, through the batch path's own per-value code (River's `learn_one`) |
//! | [`standard`] | [`StandardPipeline`]: the scale → hash/assemble pipeline of `eddy learn` and workflows |

mod row;
mod standard;
#[cfg(test)]
mod tests;

pub use row::{RowPlan, RowType, RowValue, RowValues};
pub use standard::StandardPipeline;

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::feature::categorical::{Featurizer, LabelSpec};
use crate::feature::load_step;
use crate::features::{Examples, Features};
use crate::transform::{FeatureStep, ToFeatures};

/// The kind written in model files that hold a bare [`Pipeline`].
pub const PIPELINE_KIND: &str = "eddy-pipeline";

/// The pipeline document format this build writes and the newest it reads.
pub const PIPELINE_FORMAT: u32 = 1;

/// Feature steps in order, then the featurizer that writes the learner's matrix.
#[derive(Debug, Clone)]
pub struct Pipeline {
    steps: Vec<Box<dyn FeatureStep>>,
    featurizer: Featurizer,
    label: Option<LabelSpec>,
}

impl PartialEq for Pipeline {
    fn eq(&self, other: &Self) -> bool {
        // steps compare by their saved state
        let saved = |p: &Pipeline| SavedPipeline::of(p).ok();
        saved(self) == saved(other)
    }
}

impl Pipeline {
    /// A pipeline of `steps` ending in `featurizer`; `label` says where labels and weights come
    /// from when training.
    pub fn new(
        steps: Vec<Box<dyn FeatureStep>>,
        featurizer: Featurizer,
        label: Option<LabelSpec>,
    ) -> Self {
        Pipeline {
            steps,
            featurizer,
            label,
        }
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Box<dyn FeatureStep>] {
        &self.steps
    }

    /// The featurizer.
    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    /// Where labels come from.
    pub fn label(&self) -> Option<&LabelSpec> {
        self.label.as_ref()
    }

    /// The dimension of the feature matrices the pipeline produces.
    pub fn dim(&self) -> u64 {
        self.featurizer.dim()
    }

    /// Runs every step on `batch` (not the featurizer).
    pub fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut b = batch.clone();
        for s in &self.steps {
            b = s.transform(&b)?;
        }
        Ok(b)
    }

    /// Runs the steps and the featurizer, writing the matrix into `out` (reused).
    pub fn features(&self, batch: &RecordBatch, out: &mut Features) -> Result<()> {
        let b = self.transform(batch)?;
        self.featurizer.to_features(&b, out)
    }

    /// Features plus labels and weights of a training batch, into `out` (reused).
    pub fn examples_into(&self, batch: &RecordBatch, out: &mut Examples) -> Result<()> {
        let label = self
            .label
            .as_ref()
            .ok_or_else(|| Error::param("pipeline.label", "the pipeline has no label column"))?;
        let b = self.transform(batch)?;
        label.examples_into(&b, &self.featurizer, out)
    }

    /// Folds `batch` into every step's statistics, in order: each step is updated with the rows
    /// as the steps before it transform them, and transforms them for the next
    /// ([`FeatureStep::follow`]).
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let b = self.follow(batch)?;
        self.featurizer.update(&b)
    }

    /// Online training in one pass: every step folds `batch` into its statistics and
    /// transforms it (as [`update`](Pipeline::update)), and the result becomes examples in
    /// `out`. A step that [transforms before updating](FeatureStep::transforms_before_update)
    /// (target encoding, windowed aggregates) gives the batch the features it had before it
    /// was folded in — what serving gives a row whose label is unknown; every other step gives
    /// what [`examples_into`](Pipeline::examples_into) gives after `update`.
    pub fn learn_examples_into(&mut self, batch: &RecordBatch, out: &mut Examples) -> Result<()> {
        let label = self
            .label
            .clone()
            .ok_or_else(|| Error::param("pipeline.label", "the pipeline has no label column"))?;
        let b = self.follow(batch)?;
        self.featurizer.update(&b)?;
        label.examples_into(&b, &self.featurizer, out)
    }

    /// Every step follows `batch` in order; returns it as the featurizer receives it.
    fn follow(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut b = batch.clone();
        for s in &mut self.steps {
            b = s.follow(&b)?;
        }
        Ok(b)
    }

    /// Writes the pipeline as a model file (checksummed, versioned; temp file, fsync, rename).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::model::save_model(path, PIPELINE_KIND, &self.to_json()?.to_string())
    }

    /// Reads a pipeline file, refusing a corrupt, truncated, foreign or newer one.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text: String = crate::model::load_model(path, PIPELINE_KIND)?;
        let value = serde_json::from_str(&text).map_err(|e| Error::ModelFile {
            path: path.display().to_string(),
            message: format!("corrupt pipeline document: {e}"),
        })?;
        Self::from_json(value)
    }

    /// The versioned document of the whole pipeline.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(SavedPipeline::of(self)?)
            .map_err(|e| Error::param("pipeline", format!("cannot encode: {e}")))
    }

    /// Reads a document written by [`to_json`](Pipeline::to_json).
    pub fn from_json(value: serde_json::Value) -> Result<Self> {
        let format = value
            .get("format")
            .and_then(|f| f.as_u64())
            .ok_or_else(|| Error::ModelFile {
                path: "<pipeline>".into(),
                message: "no `format` field: not an eddy pipeline".into(),
            })?;
        if format > u64::from(PIPELINE_FORMAT) {
            return Err(Error::ModelFile {
                path: "<pipeline>".into(),
                message: format!(
                    "written by a newer eddy (pipeline format {format}; this build reads up to {PIPELINE_FORMAT})"
                ),
            });
        }
        let saved: SavedPipeline = serde_json::from_value(value).map_err(|e| Error::ModelFile {
            path: "<pipeline>".into(),
            message: format!("corrupt pipeline document: {e}"),
        })?;
        let steps = saved
            .steps
            .into_iter()
            .map(|s| load_step(&s.kind, s.state))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pipeline {
            steps,
            featurizer: saved.featurizer,
            label: saved.label,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedStep {
    kind: String,
    state: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedPipeline {
    format: u32,
    steps: Vec<SavedStep>,
    featurizer: Featurizer,
    label: Option<LabelSpec>,
}

impl SavedPipeline {
    fn of(p: &Pipeline) -> Result<Self> {
        Ok(SavedPipeline {
            format: PIPELINE_FORMAT,
            steps: p
                .steps
                .iter()
                .map(|s| {
                    Ok(SavedStep {
                        kind: s.kind().to_string(),
                        state: s.save()?,
                    })
                })
                .collect::<Result<_>>()?,
            featurizer: p.featurizer.clone(),
            label: p.label.clone(),
        })
    }
}

impl Serialize for Pipeline {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SavedPipeline::of(self)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Pipeline {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Pipeline::from_json(value).map_err(serde::de::Error::custom)
    }
}
