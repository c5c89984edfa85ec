//! [`Pipeline`]: feature steps and the featurizer as one value — fitted as one, updated as one,
//! saved and loaded as one versioned document — so the rows a model is served are featurized
//! exactly as its training rows were.
//!
//! The serialized form is `{"format": N, "steps": [{"kind": …, "state": …}, …], "featurizer": …,
//! "label": …}`. A document of a newer `format` than this build reads is refused with a message
//! that says so; an unknown step kind or a corrupt state is refused, never half-loaded.

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

/// The standard pipeline of `eddy learn` and workflow `[features]` sections: optionally
/// standard-scale the numeric columns, then either assemble them as a dense vector
/// (k-means, Gaussian naive Bayes) or hash numeric, categorical and crossed columns into a
/// sparse vector of `2^hash_bits` slots.
#[derive(Debug, Clone, PartialEq)]
pub struct StandardPipeline {
    /// The label column (and where training reads it).
    pub label: String,
    /// Numeric feature columns.
    pub numeric: Vec<String>,
    /// Categorical feature columns (hashed; ignored by a dense pipeline).
    pub categorical: Vec<String>,
    /// Crossed column groups (hashed; ignored by a dense pipeline).
    pub crosses: Vec<Vec<String>>,
    /// Standard-scale the numeric columns first.
    pub scale: bool,
    /// Assemble the numeric columns as a dense vector instead of hashing.
    pub dense: bool,
    /// Bits of the hashed feature space.
    pub hash_bits: u32,
}

impl StandardPipeline {
    /// The pipeline for rows of `schema` training `kind` on `label`: integer and float columns
    /// numeric (standard-scaled), string and boolean columns categorical (hashed into
    /// `2^hash_bits` slots), the label left out; dense numeric columns for the clustering
    /// learners and for naive Bayes without categorical columns; multinomial naive Bayes
    /// uses the categorical columns only. No crosses (set [`crosses`](Self::crosses) after).
    /// A missing label or a column of another type is refused, naming it.
    pub fn for_schema(
        schema: &arrow::datatypes::Schema,
        label: &str,
        kind: crate::learners::LearnerKind,
        hash_bits: u32,
    ) -> Result<StandardPipeline> {
        use crate::learners::LearnerKind;
        use arrow::datatypes::DataType;
        if schema.index_of(label).is_err() {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let message = format!("`{label}` is not a column (columns: {})", names.join(", "));
            return Err(Error::param("label", message));
        }
        let (mut numeric, mut categorical) = (Vec::new(), Vec::new());
        for f in schema.fields().iter().filter(|f| f.name() != label) {
            match f.data_type() {
                t if t.is_integer() || t.is_floating() => numeric.push(f.name().clone()),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Boolean => {
                    categorical.push(f.name().clone())
                }
                other => {
                    return Err(Error::ColumnType {
                        step: "pipeline".into(),
                        column: f.name().clone(),
                        found: other.to_string(),
                        expected: "an integer, float, string or boolean".into(),
                    })
                }
            }
        }
        let dense = kind.needs_dense() || (kind == LearnerKind::Nb && categorical.is_empty());
        if kind == LearnerKind::Nb && !dense {
            // multinomial naive Bayes counts non-negative features: the hashed categories
            numeric.clear();
        }
        Ok(StandardPipeline {
            label: label.to_string(),
            numeric,
            categorical,
            crosses: Vec::new(),
            scale: true,
            dense,
            hash_bits,
        })
    }

    /// Builds the pipeline; bad settings (no columns, too many bits) are refused by the steps'
    /// own checks.
    pub fn build(&self) -> Result<Pipeline> {
        use crate::feature::categorical::{
            FeatureHasher, FeatureHasherParams, VectorAssembler, VectorAssemblerParams,
        };
        use crate::feature::numeric::{StandardScaler, StandardScalerParams};
        use crate::transform::Params;

        let mut steps: Vec<Box<dyn FeatureStep>> = Vec::new();
        if self.scale && !self.numeric.is_empty() {
            let scaler = StandardScalerParams {
                input_cols: self.numeric.clone(),
                ..Default::default()
            };
            steps.push(Box::new(StandardScaler::new(scaler.check()?)));
        }
        let featurizer = if self.dense {
            let assembler = VectorAssemblerParams {
                numeric: self.numeric.clone(),
                ..Default::default()
            };
            Featurizer::Assembler(VectorAssembler::new(assembler.check()?))
        } else {
            let hasher = FeatureHasherParams {
                numeric: self.numeric.clone(),
                categorical: self.categorical.clone(),
                crosses: self.crosses.clone(),
                bits: self.hash_bits,
                ..Default::default()
            };
            Featurizer::Hasher(FeatureHasher::new(hasher.check()?))
        };
        Ok(Pipeline::new(
            steps,
            featurizer,
            Some(LabelSpec::new(self.label.clone())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::feature::categorical::{FeatureHasher, FeatureHasherParams};
    use crate::feature::numeric::{StandardScaler, StandardScalerParams};
    use crate::transform::{Estimator, Params};

    fn batch(rows: usize, offset: usize) -> RecordBatch {
        let f: Vec<f64> = (0..rows)
            .map(|i| ((i + offset) % 13) as f64 * 0.7)
            .collect();
        let c: Vec<String> = (0..rows)
            .map(|i| format!("v{}", (i + offset) % 5))
            .collect();
        let d: Vec<String> = (0..rows)
            .map(|i| format!("w{}", (i + offset) % 3))
            .collect();
        let y: Vec<i64> = (0..rows).map(|i| ((i + offset) % 3 == 0) as i64).collect();
        RecordBatch::try_from_iter([
            ("f", Arc::new(Float64Array::from(f)) as ArrayRef),
            ("c", Arc::new(StringArray::from(c)) as ArrayRef),
            ("d", Arc::new(StringArray::from(d)) as ArrayRef),
            ("label", Arc::new(Int64Array::from(y)) as ArrayRef),
        ])
        .unwrap()
    }

    fn pipeline() -> Pipeline {
        let scaler: StandardScaler = StandardScalerParams {
            input_cols: vec!["f".into()],
            ..Default::default()
        }
        .fit(&[batch(50, 0)])
        .unwrap();
        let hasher = FeatureHasher::new(
            FeatureHasherParams {
                numeric: vec!["f".into()],
                categorical: vec!["c".into(), "d".into()],
                crosses: vec![vec!["c".into(), "d".into()]],
                bits: 12,
                ..Default::default()
            }
            .check()
            .unwrap(),
        );
        Pipeline::new(
            vec![Box::new(scaler)],
            Featurizer::Hasher(hasher),
            Some(LabelSpec::new("label")),
        )
    }

    #[test]
    fn save_load_gives_identical_features() {
        let p = pipeline();
        let json = p.to_json().unwrap();
        let back = Pipeline::from_json(json.clone()).unwrap();
        assert_eq!(back, p);
        let b = batch(40, 3);
        let (mut x1, mut x2) = (
            Features::Sparse(Default::default()),
            Features::Sparse(Default::default()),
        );
        p.features(&b, &mut x1).unwrap();
        back.features(&b, &mut x2).unwrap();
        assert_eq!(x1, x2);
        // through serde too (how it travels inside model files)
        let text = serde_json::to_string(&p).unwrap();
        let again: Pipeline = serde_json::from_str(&text).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn pipeline_files_round_trip_and_damaged_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.eddy");
        let p = pipeline();
        p.save(&path).unwrap();
        let back = Pipeline::load(&path).unwrap();
        let b = batch(25, 7);
        assert_eq!(back.transform(&b).unwrap(), p.transform(&b).unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = Pipeline::load(&path).unwrap_err().to_string();
        assert!(e.contains("features.eddy"), "{e}");
    }

    #[test]
    fn newer_formats_unknown_kinds_and_corruption_are_refused() {
        let mut json = pipeline().to_json().unwrap();
        json["format"] = serde_json::json!(PIPELINE_FORMAT + 1);
        let e = Pipeline::from_json(json).unwrap_err().to_string();
        assert!(e.contains("newer eddy"), "{e}");

        let mut json = pipeline().to_json().unwrap();
        json["steps"][0]["kind"] = serde_json::json!("flux-capacitor");
        let e = Pipeline::from_json(json).unwrap_err().to_string();
        assert!(e.contains("flux-capacitor"), "{e}");

        let mut json = pipeline().to_json().unwrap();
        json["steps"][0]["state"] = serde_json::json!({"nonsense": true});
        assert!(Pipeline::from_json(json).is_err());

        assert!(Pipeline::from_json(serde_json::json!({"steps": []})).is_err());
    }

    #[test]
    fn update_follows_the_stream_and_examples_carry_labels() {
        let mut p = pipeline();
        let before = p.to_json().unwrap();
        p.update(&batch(30, 100)).unwrap();
        assert_ne!(p.to_json().unwrap(), before, "the scaler statistics moved");
        let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
        p.examples_into(&batch(9, 0), &mut ex).unwrap();
        let mut q = pipeline();
        let mut ex2 = ex.clone();
        q.learn_examples_into(&batch(30, 100), &mut ex2).unwrap();
        assert_eq!(
            q.to_json().unwrap(),
            p.to_json().unwrap(),
            "one-pass update == update"
        );
        assert_eq!(ex.len(), 9);
        assert_eq!(ex.labels[0], 1.0);
        assert_eq!(ex.features.rows(), 9);
    }

    #[test]
    fn a_label_statistic_trains_on_what_it_served_before_the_batch() {
        use crate::feature::categorical::{TargetEncoder, TargetEncoderParams};

        let te = TargetEncoderParams {
            columns: vec!["c".into()],
            label: "label".into(),
            smoothing: 1.0,
            ..Default::default()
        };
        let hasher = FeatureHasher::new(
            FeatureHasherParams {
                numeric: vec!["c_te".into()],
                bits: 8,
                ..Default::default()
            }
            .check()
            .unwrap(),
        );
        let mut p = Pipeline::new(
            vec![Box::new(TargetEncoder::new(te.check().unwrap()))],
            Featurizer::Hasher(hasher),
            Some(LabelSpec::new("label")),
        );
        p.update(&batch(30, 0)).unwrap();
        let b = batch(12, 30);
        let served = {
            let mut f = Features::Sparse(Default::default());
            p.features(&b, &mut f).unwrap();
            f
        };
        let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
        let mut learned = p.clone();
        learned.learn_examples_into(&b, &mut ex).unwrap();
        assert_eq!(ex.features, served, "no row sees its own label");
        let mut updated = p.clone();
        updated.update(&b).unwrap();
        assert_eq!(
            updated, learned,
            "update and learning fold the batch in alike"
        );
        assert_ne!(updated, p, "the batch was folded in");
    }

    #[test]
    fn the_standard_pipeline_scales_then_hashes_or_assembles() {
        let mut spec = StandardPipeline {
            label: "y".into(),
            numeric: vec!["x".into()],
            categorical: vec!["c".into()],
            crosses: vec![vec!["c".into(), "x".into()]],
            scale: true,
            dense: false,
            hash_bits: 10,
        };
        let sparse = spec.build().unwrap();
        assert_eq!(sparse.dim(), 1 << 10);
        assert_eq!(sparse.steps().len(), 1, "the scaler");
        spec.dense = true;
        spec.scale = false;
        let dense = spec.build().unwrap();
        assert_eq!(dense.dim(), 1);
        assert!(dense.steps().is_empty());
        spec.hash_bits = 40;
        spec.dense = false;
        assert!(spec.build().is_err(), "too many bits is refused");
    }

    #[test]
    fn for_schema_splits_columns_by_type_and_refuses_what_it_cannot_use() {
        use crate::learners::LearnerKind;
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Schema::new(vec![
            Field::new("label", DataType::Int64, false),
            Field::new("f", DataType::Float64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("c", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
        ]);
        let p = StandardPipeline::for_schema(&schema, "label", LearnerKind::Ftrl, 18).unwrap();
        assert_eq!(
            (p.numeric.clone(), p.categorical.clone()),
            (
                vec!["f".to_string(), "n".to_string()],
                vec!["c".to_string(), "b".to_string()]
            )
        );
        assert!(!p.dense && p.scale && p.hash_bits == 18);
        let km = StandardPipeline::for_schema(&schema, "label", LearnerKind::StreamingKmeans, 18);
        assert!(km.unwrap().dense);
        let nb = StandardPipeline::for_schema(&schema, "label", LearnerKind::Nb, 18).unwrap();
        assert!(
            nb.numeric.is_empty() && !nb.dense,
            "multinomial NB counts categories only"
        );
        let err = StandardPipeline::for_schema(&schema, "y", LearnerKind::Ftrl, 18).unwrap_err();
        assert!(err.to_string().contains("`y` is not a column"), "{err}");
        let dates = Schema::new(vec![
            Field::new("label", DataType::Int64, false),
            Field::new("d", DataType::Date32, true),
        ]);
        let err = StandardPipeline::for_schema(&dates, "label", LearnerKind::Ftrl, 18).unwrap_err();
        assert!(err.to_string().contains("column `d`"), "{err}");
    }
}
