//! [`StandardPipeline`]: the scale → hash/assemble pipeline of `eddy learn` and workflows.

use super::Pipeline;
use crate::error::{Error, Result};
use crate::feature::categorical::{Featurizer, LabelSpec};
use crate::transform::FeatureStep;

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
