//! [`VectorAssembler`]: chosen columns into the learner's dense or sparse matrix.

use std::borrow::Cow;

use arrow::array::{Array, Float64Array};
use arrow::record_batch::RecordBatch;
use ndarray::Array2;

use super::one_hot::check_dim;
use super::{
    check_columns, sparse_out, OneHotEncoder, OneHotEncoderParams, OneHotEncoderValidParams,
};
use crate::columns::f64_column;
use crate::error::{Error, Result};
use crate::features::Features;
use crate::transform::{Mergeable, Params, ToFeatures};

pub(crate) const KIND: &str = "vector-assembler";

/// The matrix a [`VectorAssembler`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssemblerOutput {
    /// `Array2<f32>`, one column per numeric column, in order. The default.
    #[default]
    Dense,
    /// CSR: numeric column `j` at index `j`, then the one-hot blocks.
    Sparse,
}

/// What a null, NaN or ±inf numeric value becomes.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvalidValues {
    /// An [`Error::InvalidValue`] naming the column and row. The default.
    #[default]
    Error,
    /// This finite constant.
    Replace(f32),
}

/// Parameters of a [`VectorAssembler`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct VectorAssemblerParams {
    /// Numeric columns, in output order (integers are cast). Default: none.
    pub numeric: Vec<String>,
    /// Categorical columns one-hot encoded after the numeric ones (sparse output only).
    /// Default: none.
    pub one_hot: Option<OneHotEncoderParams>,
    /// Dense or sparse. Default: dense.
    pub output: AssemblerOutput,
    /// Null / NaN / ±inf policy for numeric columns. Default: error.
    pub invalid: InvalidValues,
}

impl Default for VectorAssemblerParams {
    fn default() -> Self {
        VectorAssemblerParams {
            numeric: Vec::new(),
            one_hot: None,
            output: AssemblerOutput::Dense,
            invalid: InvalidValues::Error,
        }
    }
}

/// Checked [`VectorAssemblerParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct VectorAssemblerValidParams(VectorAssemblerParams);

impl VectorAssemblerValidParams {
    /// The parameters.
    pub fn params(&self) -> &VectorAssemblerParams {
        &self.0
    }
}

impl Params for VectorAssemblerParams {
    type Valid = VectorAssemblerValidParams;

    fn check(&self) -> Result<VectorAssemblerValidParams> {
        check_columns(
            &format!("{KIND}.numeric"),
            &self.numeric,
            self.one_hot.is_some(),
        )?;
        if let Some(one_hot) = &self.one_hot {
            if self.output == AssemblerOutput::Dense {
                return Err(Error::param(
                    format!("{KIND}.one-hot"),
                    "one-hot columns need `output = \"sparse\"`",
                ));
            }
            one_hot.check()?;
        }
        if let InvalidValues::Replace(c) = self.invalid {
            if !c.is_finite() {
                return Err(Error::param(
                    format!("{KIND}.invalid"),
                    "the replacement must be finite",
                ));
            }
        }
        Ok(VectorAssemblerValidParams(self.clone()))
    }
}

/// Assembles numeric columns (and, for sparse output, one-hot encoded categorical columns)
/// into a [`Features`] matrix, reusing the matrix's allocations.
///
/// - Dense: an `n × k` `Array2<f32>`, column `j` = `numeric[j]`.
/// - Sparse: numeric column `j` at index `j` (exact zeros are not stored), then the
///   [`OneHotEncoder`] blocks from index `numeric.len()`; the dimension is `numeric.len()` plus
///   the encoder's width, which grows with its vocabulary unless `max-categories` is set.
///
/// A null, NaN or ±inf numeric value follows [`InvalidValues`]; categorical values follow the
/// encoder's [`Unseen`](super::Unseen) policy. A missing column is [`Error::MissingColumn`]. The
/// numeric part is stateless; `update` and `merge` feed the encoder's vocabularies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Saved", into = "Saved")]
pub struct VectorAssembler {
    params: VectorAssemblerParams,
    one_hot: Option<OneHotEncoder>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    params: VectorAssemblerParams,
    one_hot: Option<OneHotEncoder>,
}

impl TryFrom<Saved> for VectorAssembler {
    type Error = Error;

    fn try_from(s: Saved) -> Result<Self> {
        let valid = s.params.check()?;
        if s.one_hot.as_ref().map(OneHotEncoder::params) != valid.0.one_hot.as_ref() {
            return Err(Error::param(
                format!("{KIND}.one-hot"),
                "saved encoder does not match the parameters",
            ));
        }
        Ok(VectorAssembler {
            params: valid.0,
            one_hot: s.one_hot,
        })
    }
}

impl From<VectorAssembler> for Saved {
    fn from(a: VectorAssembler) -> Saved {
        Saved {
            params: a.params,
            one_hot: a.one_hot,
        }
    }
}

impl VectorAssemblerParams {
    /// Checks the parameters and fits the one-hot vocabularies (if any) on `batches`.
    pub fn fit(&self, batches: &[RecordBatch]) -> Result<VectorAssembler> {
        let mut a = VectorAssembler::new(self.check()?);
        for b in batches {
            a.update(b)?;
        }
        Ok(a)
    }
}

impl VectorAssembler {
    /// An assembler with empty one-hot vocabularies.
    pub fn new(valid: VectorAssemblerValidParams) -> Self {
        let p = valid.0;
        // The encoder's parameters were checked with the assembler's.
        let one_hot = p
            .one_hot
            .clone()
            .map(|o| OneHotEncoder::new(OneHotEncoderValidParams(o)));
        VectorAssembler { params: p, one_hot }
    }

    /// The parameters.
    pub fn params(&self) -> &VectorAssemblerParams {
        &self.params
    }

    /// The one-hot encoder of the sparse categorical part.
    pub fn one_hot(&self) -> Option<&OneHotEncoder> {
        self.one_hot.as_ref()
    }

    /// Folds `batch` into the one-hot vocabularies (nothing to do without them).
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.one_hot {
            Some(o) => o.count(batch, KIND),
            None => Ok(()),
        }
    }

    #[inline]
    fn value(&self, col: &Float64Array, row: usize, column: &str) -> Result<f32> {
        let problem = if col.is_null(row) {
            "null"
        } else {
            let x = col.value(row);
            if x.is_finite() {
                return Ok(x as f32);
            }
            if x.is_nan() {
                "NaN"
            } else {
                "infinite value"
            }
        };
        match self.params.invalid {
            InvalidValues::Replace(c) => Ok(c),
            InvalidValues::Error => Err(Error::InvalidValue {
                step: KIND.into(),
                column: column.into(),
                row,
                message: format!("{problem} where a number is needed"),
            }),
        }
    }

    fn numeric<'a>(&self, batch: &'a RecordBatch) -> Result<Vec<Cow<'a, Float64Array>>> {
        self.params
            .numeric
            .iter()
            .map(|c| f64_column(batch, KIND, c))
            .collect()
    }

    fn dense(&self, batch: &RecordBatch, out: &mut Features) -> Result<()> {
        let columns = self.numeric(batch)?;
        let (n, k) = (batch.num_rows(), columns.len());
        let mut data = match std::mem::replace(out, Features::Dense(Array2::zeros((0, 0)))) {
            Features::Dense(a) => a.into_raw_vec_and_offset().0,
            Features::Sparse(_) => Vec::new(),
        };
        data.clear();
        data.reserve(n * k);
        for row in 0..n {
            for (col, name) in columns.iter().zip(&self.params.numeric) {
                data.push(self.value(col, row, name)?);
            }
        }
        let a = Array2::from_shape_vec((n, k), data).map_err(|e| Error::Shape(e.to_string()))?;
        *out = Features::Dense(a);
        Ok(())
    }

    fn sparse(&self, batch: &RecordBatch, out: &mut Features) -> Result<()> {
        let columns = self.numeric(batch)?;
        let base = columns.len() as u64;
        let (offsets, text) = match &self.one_hot {
            Some(o) => (o.offsets(), o.columns(batch, KIND)?),
            None => (vec![0], Vec::new()),
        };
        let dim = base + offsets.last().copied().unwrap_or(0);
        check_dim(KIND, dim)?;
        let m = sparse_out(out, dim);
        for row in 0..batch.num_rows() {
            for (j, (col, name)) in columns.iter().zip(&self.params.numeric).enumerate() {
                let x = self.value(col, row, name)?;
                if x != 0.0 {
                    m.push(j as u32, x);
                }
            }
            if let Some(o) = &self.one_hot {
                o.push_row(&text, &offsets, row, base, m, KIND)?;
            }
            m.finish_row();
        }
        Ok(())
    }
}

impl ToFeatures for VectorAssembler {
    fn to_features(&self, batch: &RecordBatch, out: &mut Features) -> Result<()> {
        match self.params.output {
            AssemblerOutput::Dense => self.dense(batch, out),
            AssemblerOutput::Sparse => self.sparse(batch, out),
        }
    }

    fn dim(&self) -> u64 {
        let one_hot = self.one_hot.as_ref().map_or(0, ToFeatures::dim);
        self.params.numeric.len() as u64 + one_hot
    }
}

impl Mergeable for VectorAssembler {
    fn merge(&mut self, other: &Self) -> Result<()> {
        if self.params != other.params {
            return Err(Error::param(
                KIND,
                "cannot merge assemblers with different parameters",
            ));
        }
        match (&mut self.one_hot, &other.one_hot) {
            (Some(a), Some(b)) => a.merge_counts(b, KIND),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};

    use crate::feature::categorical::Unseen;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    None,
                    Some(f64::NAN),
                    Some(0.0),
                ])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "c",
                Arc::new(StringArray::from(vec!["a", "b", "a", "z"])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn dense_in_order_with_policies() {
        let p = VectorAssemblerParams {
            numeric: vec!["n".into(), "x".into()],
            ..Default::default()
        };
        let a = VectorAssembler::new(p.check().unwrap());
        let mut out = Features::Sparse(Default::default());
        let e = a.to_features(&batch(), &mut out).unwrap_err().to_string();
        assert!(
            e.contains("`x`") && e.contains("row 1") && e.contains("null"),
            "{e}"
        );
        let a = VectorAssembler::new(
            VectorAssemblerParams {
                invalid: InvalidValues::Replace(-1.0),
                ..p
            }
            .check()
            .unwrap(),
        );
        a.to_features(&batch(), &mut out).unwrap();
        let Features::Dense(d) = &out else {
            panic!("dense expected")
        };
        assert_eq!(
            d,
            &ndarray::arr2(&[[1.0, 1.5], [2.0, -1.0], [3.0, -1.0], [4.0, 0.0]])
        );
        assert_eq!(a.dim(), 2);
    }

    #[test]
    fn sparse_numeric_then_one_hot() {
        let p = VectorAssemblerParams {
            numeric: vec!["n".into(), "x".into()],
            one_hot: Some(OneHotEncoderParams {
                columns: vec!["c".into()],
                unseen: Unseen::Bucket,
                ..Default::default()
            }),
            output: AssemblerOutput::Sparse,
            invalid: InvalidValues::Replace(0.0),
        };
        let train = batch().slice(0, 3);
        let a = p.fit(&[train]).unwrap();
        assert_eq!(a.dim(), 2 + 3); // n, x, then [a, b, bucket]
        let mut out = Features::Dense(Array2::zeros((2, 2)));
        a.to_features(&batch(), &mut out).unwrap();
        let Features::Sparse(m) = &out else {
            panic!("sparse expected")
        };
        assert_eq!(m.row(0), (&[0u32, 1, 2][..], &[1.0f32, 1.5, 1.0][..]));
        assert_eq!(m.row(1).0, &[0u32, 3]);
        assert_eq!(
            m.row(3).0,
            &[0u32, 4],
            "unseen `z` goes to the bucket, zero x not stored"
        );
        let dense = VectorAssemblerParams {
            output: AssemblerOutput::Dense,
            ..p
        };
        assert!(dense.check().unwrap_err().to_string().contains("one-hot"));
    }

    #[test]
    fn saved_state_round_trips_and_is_checked() {
        let p = VectorAssemblerParams {
            numeric: vec!["x".into()],
            one_hot: Some(OneHotEncoderParams {
                columns: vec!["c".into()],
                ..Default::default()
            }),
            output: AssemblerOutput::Sparse,
            invalid: InvalidValues::Replace(0.0),
        };
        let a = p.fit(&[batch()]).unwrap();
        let json = serde_json::to_value(&a).unwrap();
        let back: VectorAssembler = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, a);
        let mut bad = json.clone();
        bad["one_hot"] = serde_json::Value::Null;
        assert!(serde_json::from_value::<VectorAssembler>(bad).is_err());
        let mut bad = json;
        bad["params"]["invalid"] = serde_json::json!({"replace": "x"});
        assert!(serde_json::from_value::<VectorAssembler>(bad).is_err());
    }
}
