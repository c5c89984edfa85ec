//! [`StringIndexer`]: category value → index, by frequency then value.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Builder};
use arrow::record_batch::RecordBatch;

use super::vocab::{StringOrder, Unseen, VocabRules, Vocabulary};
use super::{check_columns, output_names, save_json};
use crate::columns::{str_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, FeatureStep, Mergeable, OnlineEstimator, Params, Transformer};

pub(crate) const KIND: &str = "string-indexer";

/// Parameters of a [`StringIndexer`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StringIndexerParams {
    /// The categorical columns (any type; non-text columns are indexed by their text form).
    /// Required.
    pub columns: Vec<String>,
    /// Output column names, one per column; empty (the default): `{column}_index`. An output
    /// may name its input column to replace it.
    pub outputs: Vec<String>,
    /// Values seen fewer times are left out of the vocabulary (treated as unseen). Default 1, ≥ 1.
    pub min_frequency: u64,
    /// At most this many values per column (the first in `order`); the rest are unseen.
    /// Default: no limit. ≥ 1 when set.
    pub max_categories: Option<u32>,
    /// Index order. Default: most frequent first, ties by value.
    pub order: StringOrder,
    /// Unseen-value policy. Default: error.
    pub unseen: Unseen,
}

impl Default for StringIndexerParams {
    fn default() -> Self {
        StringIndexerParams {
            columns: Vec::new(),
            outputs: Vec::new(),
            min_frequency: 1,
            max_categories: None,
            order: StringOrder::FrequencyDesc,
            unseen: Unseen::Error,
        }
    }
}

/// Checked [`StringIndexerParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct StringIndexerValidParams {
    params: StringIndexerParams,
    outputs: Vec<String>,
}

impl StringIndexerValidParams {
    /// The parameters.
    pub fn params(&self) -> &StringIndexerParams {
        &self.params
    }
}

impl Params for StringIndexerParams {
    type Valid = StringIndexerValidParams;

    fn check(&self) -> Result<StringIndexerValidParams> {
        check_vocab_params(KIND, &self.columns, self.min_frequency, self.max_categories)?;
        let outputs = output_names(
            &format!("{KIND}.outputs"),
            &self.columns,
            &self.outputs,
            "_index",
        )?;
        Ok(StringIndexerValidParams {
            params: self.clone(),
            outputs,
        })
    }
}

/// Checks the parameters a vocabulary step shares.
pub(crate) fn check_vocab_params(
    kind: &str,
    columns: &[String],
    min_frequency: u64,
    max_categories: Option<u32>,
) -> Result<()> {
    check_columns(&format!("{kind}.columns"), columns, false)?;
    if min_frequency == 0 {
        return Err(Error::param(
            format!("{kind}.min-frequency"),
            "must be at least 1",
        ));
    }
    if max_categories == Some(0) {
        return Err(Error::param(
            format!("{kind}.max-categories"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Maps each categorical column to a `UInt32` index column. Index `i` is the `i`-th value in
/// [`StringOrder`] among values seen at least `min_frequency` times. Nulls are not counted and
/// give a null index; an empty string is a value; a value outside the vocabulary follows
/// [`Unseen`] (error naming column and row / null index / the bucket index).
///
/// Online: `update` adds counts and recomputes the map, so indices may shift as frequencies
/// change (use [`StringOrder::AlphabetAsc`] or a hasher where a learner needs stable ids).
/// Merging adds counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Saved", into = "Saved")]
pub struct StringIndexer {
    valid: StringIndexerValidParams,
    rules: VocabRules,
    vocabs: Vec<Vocabulary>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    params: StringIndexerParams,
    counts: Vec<Vec<(String, u64)>>,
}

impl TryFrom<Saved> for StringIndexer {
    type Error = Error;

    fn try_from(s: Saved) -> Result<Self> {
        let mut step = StringIndexer::new(s.params.check()?);
        step.vocabs = load_vocabs(s.counts, &step.rules, step.vocabs.len())?;
        Ok(step)
    }
}

impl From<StringIndexer> for Saved {
    fn from(s: StringIndexer) -> Saved {
        Saved {
            counts: s.vocabs.iter().map(Vocabulary::saved).collect(),
            params: s.valid.params,
        }
    }
}

/// Vocabularies from saved counts, one per column.
pub(crate) fn load_vocabs(
    counts: Vec<Vec<(String, u64)>>,
    rules: &VocabRules,
    columns: usize,
) -> Result<Vec<Vocabulary>> {
    if counts.len() != columns {
        return Err(Error::param(
            "counts",
            format!("{} vocabularies for {columns} columns", counts.len()),
        ));
    }
    counts
        .into_iter()
        .map(|c| Vocabulary::from_saved(c, rules))
        .collect()
}

impl StringIndexer {
    /// An indexer with empty vocabularies (every value unseen until `update`).
    pub fn new(valid: StringIndexerValidParams) -> Self {
        let p = &valid.params;
        let rules = VocabRules {
            min_frequency: p.min_frequency,
            max_categories: p.max_categories,
            order: p.order,
        };
        let vocabs = vec![Vocabulary::default(); p.columns.len()];
        StringIndexer {
            valid,
            rules,
            vocabs,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &StringIndexerParams {
        &self.valid.params
    }

    /// The output column names.
    pub fn outputs(&self) -> &[String] {
        &self.valid.outputs
    }

    /// The vocabulary of input column `column` (by position), in index order.
    pub fn vocabulary(&self, column: usize) -> &[String] {
        self.vocabs.get(column).map_or(&[], |v| v.labels())
    }

    /// The index of `value` in column `column`'s vocabulary.
    pub fn index_of(&self, column: usize, value: &str) -> Option<u32> {
        self.vocabs.get(column).and_then(|v| v.get(value))
    }

    /// An indexer for parameters already checked by a step that wraps it (default outputs).
    pub(crate) fn wrapped(params: StringIndexerParams) -> Self {
        let outputs = params
            .columns
            .iter()
            .map(|c| format!("{c}_index"))
            .collect();
        StringIndexer::new(StringIndexerValidParams { params, outputs })
    }

    /// Replaces the vocabularies (one per column, checked by the caller).
    pub(crate) fn set_vocabs(&mut self, vocabs: Vec<Vocabulary>) {
        self.vocabs = vocabs;
    }

    /// How many times `value` was seen in column `column` (rare values included).
    pub fn frequency(&self, column: usize, value: &str) -> u64 {
        self.vocabs.get(column).map_or(0, |v| v.count_of(value))
    }

    /// Folds `batch` into the counts, naming `step` in errors.
    pub(crate) fn count(&mut self, batch: &RecordBatch, step: &str) -> Result<()> {
        let columns = self
            .valid
            .params
            .columns
            .iter()
            .map(|c| str_column(batch, step, c))
            .collect::<Result<Vec<_>>>()?;
        for (vocab, values) in self.vocabs.iter_mut().zip(&columns) {
            vocab.count(values);
            vocab.rebuild(&self.rules);
        }
        Ok(())
    }

    /// Adds the counts of `other`, which must index the same columns.
    pub(crate) fn merge_counts(&mut self, other: &StringIndexer, step: &str) -> Result<()> {
        if other.valid.params.columns != self.valid.params.columns {
            return Err(Error::param(
                format!("{step}.columns"),
                "cannot merge steps over different columns",
            ));
        }
        for (a, b) in self.vocabs.iter_mut().zip(&other.vocabs) {
            a.merge(b);
            a.rebuild(&self.rules);
        }
        Ok(())
    }

    /// The vocabularies with their rules, for the one-hot layout.
    pub(crate) fn vocabs(&self) -> (&[Vocabulary], &VocabRules) {
        (&self.vocabs, &self.rules)
    }

    /// The index of every row of every column, as `UInt32` arrays (null: null or skipped).
    pub(crate) fn index_arrays(&self, batch: &RecordBatch, step: &str) -> Result<Vec<ArrayRef>> {
        let p = &self.valid.params;
        let mut arrays = Vec::with_capacity(p.columns.len());
        for (vocab, column) in self.vocabs.iter().zip(&p.columns) {
            let values = str_column(batch, step, column)?;
            let mut b = UInt32Builder::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                b.append_option(vocab.resolve(
                    &values,
                    row,
                    &self.rules,
                    p.unseen,
                    step,
                    column,
                )?);
            }
            arrays.push(Arc::new(b.finish()) as ArrayRef);
        }
        Ok(arrays)
    }
}

impl Transformer for StringIndexer {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let arrays = self.index_arrays(batch, KIND)?;
        with_columns(batch, self.valid.outputs.iter().cloned().zip(arrays))
    }
}

impl OnlineEstimator for StringIndexer {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        self.count(batch, KIND)
    }
}

impl Mergeable for StringIndexer {
    fn merge(&mut self, other: &Self) -> Result<()> {
        self.merge_counts(other, KIND)
    }
}

impl Estimator for StringIndexerParams {
    type Fitted = StringIndexer;

    fn fit(&self, batches: &[RecordBatch]) -> Result<StringIndexer> {
        let mut step = StringIndexer::new(self.check()?);
        for b in batches {
            step.count(b, KIND)?;
        }
        Ok(step)
    }
}

impl FeatureStep for StringIndexer {
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
    use crate::feature::categorical::state_error;

    fn load_state(state: &serde_json::Value) -> Result<StringIndexer> {
        serde::Deserialize::deserialize(state).map_err(|e| state_error(KIND, e))
    }
    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::UInt32Type;

    fn batch(values: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_from_iter([("c", Arc::new(StringArray::from(values)) as ArrayRef)])
            .unwrap()
    }

    fn params(unseen: Unseen) -> StringIndexerParams {
        StringIndexerParams {
            columns: vec!["c".into()],
            unseen,
            ..Default::default()
        }
    }

    #[test]
    fn indexes_by_frequency_with_policies() {
        let train = batch(vec![Some("b"), Some("a"), Some("b"), None, Some("")]);
        let step = params(Unseen::Error).fit(&[train]).unwrap();
        assert_eq!(step.vocabulary(0), ["b", "", "a"]);
        assert_eq!((step.frequency(0, "b"), step.frequency(0, "zz")), (2, 0));
        let out = step
            .transform(&batch(vec![Some("a"), None, Some("b"), Some("")]))
            .unwrap();
        let idx = out
            .column_by_name("c_index")
            .unwrap()
            .as_primitive::<UInt32Type>();
        assert_eq!(
            idx.iter().collect::<Vec<_>>(),
            vec![Some(2), None, Some(0), Some(1)]
        );

        let e = step
            .transform(&batch(vec![Some("a"), Some("zz")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`c`") && e.contains("row 1") && e.contains("zz"),
            "{e}"
        );

        let mut skip = step.clone();
        skip.valid.params.unseen = Unseen::Skip;
        let out = skip.transform(&batch(vec![Some("zz")])).unwrap();
        assert!(out.column(1).is_null(0));
        let mut bucket = step.clone();
        bucket.valid.params.unseen = Unseen::Bucket;
        let out = bucket.transform(&batch(vec![Some("zz")])).unwrap();
        assert_eq!(out.column(1).as_primitive::<UInt32Type>().value(0), 3);
    }

    #[test]
    fn non_text_columns_and_missing_columns() {
        let b = RecordBatch::try_from_iter([(
            "n",
            Arc::new(Int64Array::from(vec![7, 7, 3])) as ArrayRef,
        )])
        .unwrap();
        let p = StringIndexerParams {
            columns: vec!["n".into()],
            ..Default::default()
        };
        let step = p.fit(&[b]).unwrap();
        assert_eq!(step.vocabulary(0), ["7", "3"]);
        let err = step.transform(&batch(vec![Some("x")])).unwrap_err();
        assert!(
            matches!(err, Error::MissingColumn { ref column, .. } if column == "n"),
            "{err}"
        );
    }

    #[test]
    fn params_are_checked() {
        assert!(StringIndexerParams::default().check().is_err());
        let mut p = params(Unseen::Error);
        p.min_frequency = 0;
        assert!(p.check().unwrap_err().to_string().contains("min-frequency"));
        let mut p = params(Unseen::Error);
        p.outputs = vec!["a".into(), "b".into()];
        assert!(p.check().unwrap_err().to_string().contains("outputs"));
    }

    #[test]
    fn save_load_and_corrupt_state() {
        let step = params(Unseen::Bucket)
            .fit(&[batch(vec![Some("x"), Some("y"), Some("x")])])
            .unwrap();
        let back = load_state(&step.save().unwrap()).unwrap();
        assert_eq!(back, step);
        let mut bad = step.save().unwrap();
        bad["counts"] = serde_json::json!([[["x", 0]]]);
        assert!(load_state(&bad).is_err());
        let mut bad = step.save().unwrap();
        bad["params"]["min-frequency"] = serde_json::json!(0);
        assert!(load_state(&bad).is_err());
        let mut bad = step.save().unwrap();
        bad["counts"] = serde_json::json!([]);
        assert!(load_state(&bad).is_err(), "one vocabulary per column");
    }
}
