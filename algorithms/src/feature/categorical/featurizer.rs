//! [`Featurizer`] (the matrix-producing step of a pipeline) and [`LabelSpec`] (labels and
//! weights from named columns).

use arrow::array::Array;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use super::{FeatureHasher, VectorAssembler};
use crate::columns::{column, f64_column};
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::transform::{Mergeable, ToFeatures};

/// The last step of a pipeline: the one that writes the learner's matrix. Serialized as
/// `{"hasher": {…}}` or `{"assembler": {…}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Featurizer {
    /// Hashed sparse features.
    Hasher(FeatureHasher),
    /// Assembled dense or sparse features.
    Assembler(VectorAssembler),
}

impl Featurizer {
    /// The kind name: `feature-hasher` or `vector-assembler`.
    pub fn kind(&self) -> &'static str {
        match self {
            Featurizer::Hasher(_) => super::hasher::KIND,
            Featurizer::Assembler(_) => super::assembler::KIND,
        }
    }

    /// Folds `batch` into the statistics (the assembler's one-hot vocabularies; the hasher has
    /// none).
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Featurizer::Hasher(_) => Ok(()),
            Featurizer::Assembler(a) => a.update(batch),
        }
    }
}

impl Mergeable for Featurizer {
    fn merge(&mut self, other: &Self) -> Result<()> {
        match (self, other) {
            (Featurizer::Hasher(a), Featurizer::Hasher(b)) if a == b => Ok(()),
            (Featurizer::Assembler(a), Featurizer::Assembler(b)) => a.merge(b),
            _ => Err(Error::param(
                "featurizer",
                "cannot merge different featurizers",
            )),
        }
    }
}

impl ToFeatures for Featurizer {
    fn to_features(&self, batch: &RecordBatch, out: &mut Features) -> Result<()> {
        match self {
            Featurizer::Hasher(h) => h.to_features(batch, out),
            Featurizer::Assembler(a) => a.to_features(batch, out),
        }
    }

    fn dim(&self) -> u64 {
        match self {
            Featurizer::Hasher(h) => h.dim(),
            Featurizer::Assembler(a) => a.dim(),
        }
    }
}

const LABELS: &str = "labels";

/// Where labels (and optional importance weights) come from.
///
/// The label column is numeric or boolean (true = 1); a null, NaN or ±inf label is an
/// [`Error::InvalidValue`] naming the row. The weight column is numeric; a null, NaN, ±inf or
/// negative weight is an error naming the row. A missing column is [`Error::MissingColumn`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LabelSpec {
    /// The label column.
    pub label: String,
    /// The weight column; `None`: every example weighs 1.
    #[serde(default)]
    pub weight: Option<String>,
}

impl LabelSpec {
    /// A spec with labels from `label` and no weights.
    pub fn new(label: impl Into<String>) -> Self {
        LabelSpec {
            label: label.into(),
            weight: None,
        }
    }

    /// Reads one column into `out` (replacing its contents), checking every value.
    fn read(batch: &RecordBatch, name: &str, weights: bool, out: &mut Vec<f32>) -> Result<()> {
        let c = column(batch, LABELS, name)?;
        let values = if !weights && c.data_type() == &DataType::Boolean {
            let casted = cast(c, &DataType::Float64)?;
            std::borrow::Cow::Owned(arrow::array::AsArray::as_primitive(&casted).clone())
        } else {
            f64_column(batch, LABELS, name)?
        };
        out.clear();
        out.reserve(values.len());
        for row in 0..values.len() {
            let x = (!values.is_null(row)).then(|| values.value(row));
            out.push(Self::checked(name, weights, row, x)?);
        }
        Ok(())
    }

    /// A label (or with `weights`, a weight) of column `name` at `row` (`None`: null),
    /// checked: the one check of the batch path and a pipeline's per-row path.
    pub(crate) fn checked(name: &str, weights: bool, row: usize, x: Option<f64>) -> Result<f32> {
        let problem = match x {
            None => Some("missing"),
            Some(x) if !x.is_finite() => Some("not a finite number"),
            Some(x) if weights && x < 0.0 => Some("negative"),
            Some(_) => None,
        };
        if let Some(p) = problem {
            let what = if weights { "weight" } else { "label" };
            return Err(Error::InvalidValue {
                step: LABELS.into(),
                column: name.into(),
                row,
                message: format!("{what} is {p}"),
            });
        }
        Ok(x.unwrap_or(f64::NAN) as f32)
    }

    /// The rows of `batch` a learner of `task` cannot learn from, with why: a missing or
    /// non-finite label, a multiclass label that is not a class index `0..classes`, a missing,
    /// non-finite or negative weight. Clustering ignores labels, so none of its rows is refused
    /// for one. `out` is cleared first; the check allocates nothing when every row is fine.
    pub fn invalid_rows(
        &self,
        batch: &RecordBatch,
        task: crate::learner::Task,
        out: &mut Vec<(usize, String)>,
    ) -> Result<()> {
        out.clear();
        if matches!(task, crate::learner::Task::Clustering { .. }) {
            return Ok(());
        }
        let c = column(batch, LABELS, &self.label)?;
        let labels = if c.data_type() == &DataType::Boolean {
            let casted = cast(c, &DataType::Float64)?;
            std::borrow::Cow::Owned(arrow::array::AsArray::as_primitive(&casted).clone())
        } else {
            f64_column(batch, LABELS, &self.label)?
        };
        for row in 0..labels.len() {
            let x = labels.value(row);
            let problem = if labels.is_null(row) {
                "label is missing".to_string()
            } else if !x.is_finite() {
                format!("label {x} is not a finite number")
            } else {
                match task {
                    crate::learner::Task::Multiclass { classes }
                        if x.fract() != 0.0 || x < 0.0 || x >= classes as f64 =>
                    {
                        format!("label {x} is not a class index 0..{classes}")
                    }
                    _ => continue,
                }
            };
            out.push((row, format!("`{}`: {problem}", self.label)));
        }
        if let Some(w) = &self.weight {
            let weights = f64_column(batch, LABELS, w)?;
            for row in 0..weights.len() {
                let x = weights.value(row);
                if weights.is_null(row) || !x.is_finite() || x < 0.0 {
                    out.push((
                        row,
                        format!("`{w}`: weight is missing, not finite or negative"),
                    ));
                }
            }
            out.sort_by_key(|&(row, _)| row);
            out.dedup_by_key(|(row, _)| *row);
        }
        Ok(())
    }

    /// The labels of `batch`, into `out` (its allocation is reused).
    pub fn labels_into(&self, batch: &RecordBatch, out: &mut Vec<f32>) -> Result<()> {
        Self::read(batch, &self.label, false, out)
    }

    /// The labels and weights of `batch`.
    pub fn extract(&self, batch: &RecordBatch) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let mut labels = Vec::new();
        self.labels_into(batch, &mut labels)?;
        let weights = match &self.weight {
            Some(w) => {
                let mut out = Vec::new();
                Self::read(batch, w, true, &mut out)?;
                Some(out)
            }
            None => None,
        };
        Ok((labels, weights))
    }

    /// Features, labels and weights of `batch`, as learners take them.
    pub fn examples(&self, batch: &RecordBatch, featurizer: &dyn ToFeatures) -> Result<Examples> {
        let (labels, weights) = self.extract(batch)?;
        let mut features = Features::Sparse(Default::default());
        featurizer.to_features(batch, &mut features)?;
        Examples::new(features, labels, weights)
    }

    /// Like [`examples`](Self::examples), but writes into `out`, reusing its matrix, label and
    /// weight buffers.
    pub fn examples_into(
        &self,
        batch: &RecordBatch,
        featurizer: &dyn ToFeatures,
        out: &mut Examples,
    ) -> Result<()> {
        featurizer.to_features(batch, &mut out.features)?;
        self.labels_into(batch, &mut out.labels)?;
        match &self.weight {
            Some(w) => Self::read(batch, w, true, out.weights.get_or_insert_with(Vec::new))?,
            None => out.weights = None,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array};

    use crate::feature::categorical::{FeatureHasherParams, VectorAssemblerParams};
    use crate::transform::Params;

    fn batch(labels: Vec<Option<f64>>, weights: Vec<f64>) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("y", Arc::new(Float64Array::from(labels)) as ArrayRef),
            ("w", Arc::new(Float64Array::from(weights)) as ArrayRef),
            ("x", Arc::new(Int64Array::from(vec![3, 4])) as ArrayRef),
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn labels_weights_and_errors() {
        let spec = LabelSpec {
            label: "y".into(),
            weight: Some("w".into()),
        };
        let asm = Featurizer::Assembler(VectorAssembler::new(
            VectorAssemblerParams {
                numeric: vec!["x".into()],
                ..Default::default()
            }
            .check()
            .unwrap(),
        ));
        let ex = spec
            .examples(&batch(vec![Some(1.0), Some(0.0)], vec![2.0, 0.5]), &asm)
            .unwrap();
        assert_eq!(ex.labels, vec![1.0, 0.0]);
        assert_eq!(ex.weights, Some(vec![2.0, 0.5]));
        assert_eq!(ex.features.dim(), 1);
        let e = spec
            .extract(&batch(vec![Some(1.0), None], vec![1.0, 1.0]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1") && e.contains("missing"), "{e}");
        let e = spec
            .extract(&batch(vec![Some(f64::NAN), Some(1.0)], vec![1.0, 1.0]))
            .unwrap_err();
        assert!(e.to_string().contains("row 0"), "{e}");
        assert!(spec
            .extract(&batch(vec![Some(1.0), Some(1.0)], vec![1.0, -1.0]))
            .is_err());
        let (labels, w) = LabelSpec::new("b")
            .extract(&batch(vec![None, None], vec![1.0, 1.0]))
            .unwrap();
        assert_eq!((labels, w), (vec![1.0, 0.0], None));
        let b = batch(vec![None, None], vec![1.0, 1.0]);
        assert!(matches!(
            LabelSpec::new("nope").extract(&b),
            Err(Error::MissingColumn { .. })
        ));
    }

    #[test]
    fn featurizer_serde_and_examples_into() {
        let h = Featurizer::Hasher(FeatureHasher::new(
            FeatureHasherParams {
                numeric: vec!["x".into()],
                bits: 4,
                ..Default::default()
            }
            .check()
            .unwrap(),
        ));
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.starts_with("{\"hasher\""), "{json}");
        let back: Featurizer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(
            serde_json::from_str::<Featurizer>(&json.replace("\"bits\":4", "\"bits\":40")).is_err()
        );
        let mut ex = LabelSpec::new("y")
            .examples(&batch(vec![Some(0.0), Some(1.0)], vec![1.0, 1.0]), &h)
            .unwrap();
        LabelSpec::new("y")
            .examples_into(
                &batch(vec![Some(1.0), Some(1.0)], vec![1.0, 1.0]),
                &h,
                &mut ex,
            )
            .unwrap();
        assert_eq!(ex.labels, vec![1.0, 1.0]);
        assert_eq!(ex.features.rows(), 2);
        assert_eq!(h.kind(), "feature-hasher");
    }
}
