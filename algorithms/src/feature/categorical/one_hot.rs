//! [`OneHotEncoder`]: categories as one-hot blocks of a sparse vector.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, UInt32Builder};
use arrow::record_batch::RecordBatch;

use super::string_indexer::{check_vocab_params, load_vocabs};
use super::vocab::{StringOrder, Unseen};
use super::{save_json, sparse_out};
use crate::columns::{str_column, with_columns};
use crate::error::{Error, Result};
use crate::features::{CsrMatrix, Features};
use crate::transform::{
    Estimator, FeatureStep, Mergeable, OnlineEstimator, Params, ToFeatures, Transformer,
};

use super::{StringIndexer, StringIndexerParams};

pub(crate) const KIND: &str = "one-hot-encoder";

/// Parameters of a [`OneHotEncoder`] (the vocabulary rules are those of the
/// [`StringIndexer`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct OneHotEncoderParams {
    /// The categorical columns (non-text columns by their text form). Required.
    pub columns: Vec<String>,
    /// Values seen fewer times are unseen. Default 1, ≥ 1.
    pub min_frequency: u64,
    /// Block width per column: at most this many values (the first in `order`). Setting it
    /// fixes the vector's dimension while the vocabulary grows. Default: no limit. ≥ 1 when set.
    pub max_categories: Option<u32>,
    /// Slot order within a block. Default: most frequent first, ties by value.
    pub order: StringOrder,
    /// Unseen-value policy: error, no entry, or the block's last slot. Default: error.
    pub unseen: Unseen,
}

impl Default for OneHotEncoderParams {
    fn default() -> Self {
        OneHotEncoderParams {
            columns: Vec::new(),
            min_frequency: 1,
            max_categories: None,
            order: StringOrder::FrequencyDesc,
            unseen: Unseen::Error,
        }
    }
}

/// Checked [`OneHotEncoderParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct OneHotEncoderValidParams(pub(crate) OneHotEncoderParams);

impl OneHotEncoderValidParams {
    /// The parameters.
    pub fn params(&self) -> &OneHotEncoderParams {
        &self.0
    }
}

impl Params for OneHotEncoderParams {
    type Valid = OneHotEncoderValidParams;

    fn check(&self) -> Result<OneHotEncoderValidParams> {
        check_vocab_params(KIND, &self.columns, self.min_frequency, self.max_categories)?;
        Ok(OneHotEncoderValidParams(self.clone()))
    }
}

/// One-hot encodes categorical columns into a sparse vector: column `k` owns the block
/// `offset(k) .. offset(k) + width(k)`, where `width(k)` is its vocabulary size (or
/// `max_categories`), plus one bucket slot under [`Unseen::Bucket`]; a row has at most one
/// entry (value 1.0) per column.
///
/// The vectors come out of [`ToFeatures`] (or a sparse [`VectorAssembler`](super::VectorAssembler),
/// which places them after its numeric columns), never as one column per category. As a
/// record-batch [`Transformer`] it appends, per column, a `UInt32` column `{column}_onehot`
/// holding the row's active index in that vector (null where there is none), which is the same
/// sparse information in columnar form.
///
/// Null: no entry. Empty string: a value. Unseen: [`Unseen`] (error naming column and row / no
/// entry / the bucket slot). Without `max_categories` the dimension grows with the vocabulary
/// and slots move as frequencies change; learners that need a fixed space set
/// `max_categories` or use the [`FeatureHasher`](super::FeatureHasher).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Saved", into = "Saved")]
pub struct OneHotEncoder {
    params: OneHotEncoderParams,
    indexer: StringIndexer,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    params: OneHotEncoderParams,
    counts: Vec<Vec<(String, u64)>>,
}

impl TryFrom<Saved> for OneHotEncoder {
    type Error = Error;

    fn try_from(s: Saved) -> Result<Self> {
        let mut step = OneHotEncoder::new(s.params.check()?);
        let (vocabs, rules) = step.indexer.vocabs();
        let vocabs = load_vocabs(s.counts, rules, vocabs.len())?;
        step.indexer.set_vocabs(vocabs);
        Ok(step)
    }
}

impl From<OneHotEncoder> for Saved {
    fn from(s: OneHotEncoder) -> Saved {
        Saved {
            counts: s.indexer.vocabs().0.iter().map(|v| v.saved()).collect(),
            params: s.params,
        }
    }
}

impl OneHotEncoder {
    /// An encoder with empty vocabularies.
    pub fn new(valid: OneHotEncoderValidParams) -> Self {
        let p = valid.0;
        let indexer_params = StringIndexerParams {
            columns: p.columns.clone(),
            outputs: Vec::new(),
            min_frequency: p.min_frequency,
            max_categories: p.max_categories,
            order: p.order,
            unseen: p.unseen,
        };
        // The one-hot parameters passed the same checks as the indexer's.
        let indexer = StringIndexer::wrapped(indexer_params);
        OneHotEncoder { params: p, indexer }
    }

    /// The parameters.
    pub fn params(&self) -> &OneHotEncoderParams {
        &self.params
    }

    /// The vocabulary of input column `column`, in slot order.
    pub fn vocabulary(&self, column: usize) -> &[String] {
        self.indexer.vocabulary(column)
    }

    /// The first index of each column's block, and the total width, as `[o0, o1, …, dim]`.
    pub fn offsets(&self) -> Vec<u64> {
        let (vocabs, rules) = self.indexer.vocabs();
        let mut acc = 0u64;
        let mut out = Vec::with_capacity(vocabs.len() + 1);
        out.push(0);
        for v in vocabs {
            acc += u64::from(v.width(rules, self.params.unseen));
            out.push(acc);
        }
        out
    }

    /// The input columns of a batch, as text.
    pub(crate) fn columns<'a>(
        &self,
        batch: &'a RecordBatch,
        step: &str,
    ) -> Result<Vec<Cow<'a, StringArray>>> {
        self.params
            .columns
            .iter()
            .map(|c| str_column(batch, step, c))
            .collect()
    }

    /// Appends the entries of `row` to the row being built in `m`, shifted by `base`.
    /// `offsets` is [`offsets`](Self::offsets).
    #[inline]
    pub(crate) fn push_row(
        &self,
        columns: &[Cow<'_, StringArray>],
        offsets: &[u64],
        row: usize,
        base: u64,
        m: &mut CsrMatrix,
        step: &str,
    ) -> Result<()> {
        let (vocabs, rules) = self.indexer.vocabs();
        for (k, (vocab, values)) in vocabs.iter().zip(columns).enumerate() {
            let column = &self.params.columns[k];
            if let Some(i) = vocab.resolve(values, row, rules, self.params.unseen, step, column)? {
                m.push((base + offsets[k] + u64::from(i)) as u32, 1.0);
            }
        }
        Ok(())
    }

    /// Folds `batch` into the counts, naming `step` in errors.
    pub(crate) fn count(&mut self, batch: &RecordBatch, step: &str) -> Result<()> {
        self.indexer.count(batch, step)
    }

    /// Adds the counts of `other`.
    pub(crate) fn merge_counts(&mut self, other: &OneHotEncoder, step: &str) -> Result<()> {
        self.indexer.merge_counts(&other.indexer, step)
    }
}

/// The largest dimension a sparse vector with `u32` indices can have.
pub(crate) fn check_dim(step: &str, dim: u64) -> Result<()> {
    if dim > 1 << 32 {
        return Err(Error::Shape(format!(
            "{step}: dimension {dim} exceeds 2^32"
        )));
    }
    Ok(())
}

impl ToFeatures for OneHotEncoder {
    fn to_features(&self, batch: &RecordBatch, out: &mut Features) -> Result<()> {
        let offsets = self.offsets();
        let dim = offsets.last().copied().unwrap_or(0);
        check_dim(KIND, dim)?;
        let columns = self.columns(batch, KIND)?;
        let m = sparse_out(out, dim);
        for row in 0..batch.num_rows() {
            self.push_row(&columns, &offsets, row, 0, m, KIND)?;
            m.finish_row();
        }
        Ok(())
    }

    fn dim(&self) -> u64 {
        self.offsets().last().copied().unwrap_or(0)
    }
}

impl Transformer for OneHotEncoder {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let offsets = self.offsets();
        let columns = self.columns(batch, KIND)?;
        let (vocabs, rules) = self.indexer.vocabs();
        let mut arrays = Vec::with_capacity(columns.len());
        for (k, (vocab, values)) in vocabs.iter().zip(&columns).enumerate() {
            let column = &self.params.columns[k];
            let mut b = UInt32Builder::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let i = vocab.resolve(values, row, rules, self.params.unseen, KIND, column)?;
                b.append_option(i.map(|i| (offsets[k] + u64::from(i)) as u32));
            }
            arrays.push((format!("{column}_onehot"), Arc::new(b.finish()) as ArrayRef));
        }
        with_columns(batch, arrays)
    }
}

impl OnlineEstimator for OneHotEncoder {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.count(batch, KIND)
    }
}

impl Mergeable for OneHotEncoder {
    fn merge(&mut self, other: &Self) -> Result<()> {
        self.merge_counts(other, KIND)
    }
}

impl Estimator for OneHotEncoderParams {
    type Fitted = OneHotEncoder;

    fn fit(&self, batches: &[RecordBatch]) -> Result<OneHotEncoder> {
        let mut step = OneHotEncoder::new(self.check()?);
        for b in batches {
            step.count(b, KIND)?;
        }
        Ok(step)
    }
}

impl FeatureStep for OneHotEncoder {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn save(&self) -> Result<serde_json::Value> {
        save_json(KIND, self)
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.count(batch, KIND)
    }

    fn clone_box(&self) -> Box<dyn FeatureStep> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::UInt32Type;

    fn batch(a: Vec<Option<&str>>, b: Vec<i64>) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("a", Arc::new(StringArray::from(a)) as ArrayRef),
            ("b", Arc::new(Int64Array::from(b)) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn blocks_follow_vocabularies() {
        let p = OneHotEncoderParams {
            columns: vec!["a".into(), "b".into()],
            unseen: Unseen::Bucket,
            ..Default::default()
        };
        let step = p
            .fit(&[batch(vec![Some("x"), Some("y"), Some("x")], vec![5, 5, 6])])
            .unwrap();
        // a: [x, y, bucket] at 0..3; b: ["5", "6", bucket] at 3..6
        assert_eq!(step.offsets(), vec![0, 3, 6]);
        let mut out = Features::Dense(ndarray::Array2::zeros((1, 1)));
        step.to_features(
            &batch(vec![Some("y"), None, Some("new")], vec![6, 5, 9]),
            &mut out,
        )
        .unwrap();
        let Features::Sparse(m) = &out else {
            panic!("sparse expected")
        };
        assert_eq!(m.dim(), 6);
        assert_eq!(m.row(0), (&[1u32, 4][..], &[1.0f32, 1.0][..]));
        assert_eq!(m.row(1).0, &[3u32]);
        assert_eq!(m.row(2).0, &[2u32, 5]);
        let t = step.transform(&batch(vec![Some("y")], vec![6])).unwrap();
        let a = t
            .column_by_name("a_onehot")
            .unwrap()
            .as_primitive::<UInt32Type>();
        assert_eq!(a.value(0), 1);
        let b = t
            .column_by_name("b_onehot")
            .unwrap()
            .as_primitive::<UInt32Type>();
        assert_eq!(b.value(0), 4);
    }

    #[test]
    fn unseen_error_names_row_and_fixed_width() {
        let p = OneHotEncoderParams {
            columns: vec!["a".into()],
            max_categories: Some(4),
            ..Default::default()
        };
        let mut step = p.fit(&[batch(vec![Some("x")], vec![1])]).unwrap();
        assert_eq!(step.dim(), 4);
        let mut out = Features::Sparse(CsrMatrix::default());
        let e = step
            .to_features(&batch(vec![Some("x"), Some("q")], vec![1, 1]), &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        OnlineEstimator::update(&mut step, &batch(vec![Some("q"), Some("q")], vec![1, 1])).unwrap();
        assert_eq!(step.dim(), 4);
        assert_eq!(step.vocabulary(0), ["q", "x"]);
    }
}
